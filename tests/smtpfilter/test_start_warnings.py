"""What `spamkit lint` reports and `serve` logs as it starts about its TLS certificate and
DKIM keys. lint said "0 errors" for a certificate `serve` then refused to start with, and
nothing warned of one about to expire or of DKIM keys that would sign nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from smtpfilter.dkimkeys import generate, key_problems
from smtpfilter.tls import RENEW_DAYS, certificate_end, expiry_warnings
from tests.servers.net import self_signed_certificate
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink


def lint(config: Path) -> tuple[int, dict[str, list[str]]]:
    done = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--json", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_lint_reports_a_certificate_serve_would_refuse(tmp_path: Path) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n')
    status, found = lint(config)
    assert status == 0 and not found["errors"]
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    status, found = lint(config)
    assert status == 1 and [e for e in found["errors"] if e.startswith(
        f"TlsCertificate/TlsKey ({config}:1): cannot load {certificate} with key {key}")]
    config.write_text(f'TlsCertificate = "{certificate}"\n')
    status, found = lint(config)
    assert status == 1 and f"TlsCertificate is set ({config}:1) but TlsKey is empty" in found["errors"][0]


def test_a_certificate_near_its_end_or_past_it_is_warned_of(tmp_path: Path) -> None:
    certificate, key = self_signed_certificate(tmp_path, days=5)
    end = certificate_end(str(certificate))
    assert end is not None
    day = time.strftime("%Y-%m-%d", time.gmtime(end))
    assert expiry_warnings(str(certificate), "here", now=end - (RENEW_DAYS + 1) * 86400) == []
    assert expiry_warnings(str(certificate), "here", now=end - 3.5 * 86400) == [
        f"TlsCertificate (here): {certificate} expires on {day}, in 3 days: renew it"]
    assert expiry_warnings(str(certificate), "here", now=end + 1) == [
        f"TlsCertificate (here): {certificate} expired on {day}: clients that check "
        "certificates refuse STARTTLS with it; renew it"]
    assert certificate_end(str(key)) is None and expiry_warnings(str(key), "here") == []
    config = tmp_path / "spamkit.toml"
    config.write_text(f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n')
    status, found = lint(config)
    assert status == 0 and [w for w in found["warnings"] if f"{certificate} expires on {day}" in w]


def test_dkim_keys_that_would_sign_nothing(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    assert key_problems(root) == [f"dkimsign: no key pair in {root} (make one with `spamkit dkim "
                                  "keygen`): it signs nothing"]
    generate(root, None, bits=1024)
    generate(root, "example.net", "mail2026", bits=1024)
    assert key_problems(root) == []
    (root / "example.net" / "private").write_bytes(b"not a key\n")
    (root / "default" / "selector").write_text("my selector\n")
    assert key_problems(root) == [
        f"dkimsign: the selector 'my selector' in {root / 'default'} is not a DNS name: no one "
        "can look up the key it signs with",
        f"dkimsign: {root / 'example.net' / 'private'} is not a PEM RSA private key (Private key "
        "not found): mail from example.net goes unsigned"]
    config = tmp_path / "spamkit.toml"
    config.write_text(f'DkimKeyDirectory = "{root}"\nSmtpFilters = ["dkimsign"]\n')
    status, found = lint(config)
    assert status == 0 and [w for w in found["warnings"] if "example.net goes unsigned" in w]
    config.write_text(f'DkimKeyDirectory = "{root}"\n')  # dkimsign not in the chain: no word
    assert not [w for w in lint(config)[1]["warnings"] if "dkimsign" in w]


def test_serve_logs_them_as_it_starts(tmp_path: Path, sink: Sink) -> None:
    certificate, key = self_signed_certificate(tmp_path, days=5)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\nUseBayes = false\n'
                      f'DkimKeyDirectory = "{tmp_path / "keys"}"\nSmtpFilters = ["dkimsign"]\n')
    process, _ = start_serve(sink.port, tmp_path / "db", config)
    status, stderr = stop_serve(process)
    assert status == 0
    logged = stderr.decode()
    assert f"{certificate} expires on" in logged and f"no key pair in {tmp_path / 'keys'}" in logged


def test_a_private_key_every_user_may_read_is_warned_of(open_tmp: Path) -> None:
    """A key copied with cp under umask 022, or opened with chmod 644 for the filter's user
    to read: anyone with a login could pose as this server, or sign as our domains."""
    import os

    base = open_tmp  # (its own directory's mode counts)
    certificate, key = self_signed_certificate(base)
    config = base / "spamkit.toml"
    config.write_text(f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n')
    warning = (f"TlsKey ({config}:2): {key} can be read by every user of this machine (mode 644): "
               "anyone with a login can pose as this server; chmod 600 it (640, group ssl-cert, "
               "for serve's user to read it)")
    assert warning not in lint(config)[1]["warnings"]  # (openssl writes it 600)
    key.chmod(0o644)
    assert warning in lint(config)[1]["warnings"]
    base.chmod(0o700)  # a directory no one else may enter keeps it
    assert warning not in lint(config)[1]["warnings"]
    base.chmod(0o755)
    root = base / "dkim"
    generate(root, "example.net", bits=1024)
    assert key_problems(root) == []  # (keygen writes it 400)
    os.chmod(root, 0o755)
    os.chmod(root / "example.net", 0o755)
    (root / "example.net" / "private").chmod(0o444)
    assert key_problems(root) == [
        f"dkimsign: {root / 'example.net' / 'private'} can be read by every user of this machine "
        "(mode 444): anyone with a login can sign mail as example.net; chmod 400 it"]
