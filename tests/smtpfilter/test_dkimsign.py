"""dkimsign (SME's DKIMSigning) end to end: `spamkit dkim keygen` makes the keys, `spamkit
dkim dns` the record, the filter signs our users' mail, and dkimpy verifies what reached
the next hop against that record."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from spamkit.errors import ConfigError
from smtpfilter.dkimkeys import dns_record, generate
from smtpfilter.filter import Action, Transaction
from smtpfilter.plugins.dkimsign import DkimSign
from smtpfilter.networks import LocalClients
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks
from tests.smtpfilter.conftest import PLAIN

OURS = 'LocalNetworks = ["127.0.0.0/8"]\nLocalDomains = ["example.com", "example.net"]\n'


def spamkit(*arguments: str) -> str:
    done = subprocess.run([sys.executable, "-m", "spamkit", *arguments], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def from_domain(domain: str) -> bytes:
    return PLAIN.replace(b"From: a@example.org", f"From: Someone <a@{domain}>".encode())


def records(config: Path, *domains: str) -> dict[bytes, bytes]:
    """What DNS would answer for each domain's key: name -> TXT value."""
    out = {}
    for domain in domains:
        dkim_record = json.loads(spamkit("dkim", "dns", domain, "--json", "--config", str(config)))["dkim"]
        out[f"{dkim_record['name']}.{domain}.".encode()] = dkim_record["value"].encode()
    return out


def verifies(message: bytes, published: dict[bytes, bytes]) -> bool:
    crlf = message.replace(b"\n", b"\r\n")
    return bool(dkim.verify(crlf, dnsfunc=lambda name, timeout=5: published.get(name)))


def test_our_mail_is_signed_and_verifies(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "spamkit.toml"  # where filter_server's configuration lives
    config.write_text(OURS)
    spamkit("dkim", "keygen", "--config", str(config))  # the default pair
    spamkit("dkim", "keygen", "example.net", "--selector", "mail2026", "--config", str(config))
    assert oct((tmp_path / "dkim_keys" / "default" / "private").stat().st_mode)[-3:] == "400"
    published = records(config, "example.com", "example.net")
    assert list(published) == [b"default._domainkey.example.com.", b"mail2026._domainkey.example.net."]
    # the filter after spamscore, as its docstring says: the X-Spam headers go on top
    send = filter_server(OURS + 'SmtpFilters = ["spamscore", "dkimsign"]\n')
    for domain in ("example.com", "example.net", "elsewhere.org"):
        assert send(from_domain(domain)).startswith("250")
    signed = {m.split(b" d=")[1].split(b";")[0]: m for m in sink.messages_as_sent()
              if m.startswith(b"DKIM-Signature:")}
    assert sorted(signed) == [b"example.com", b"example.net"], "not elsewhere.org: not ours"
    assert b"s=mail2026;" in signed[b"example.net"] and b"s=default;" in signed[b"example.com"]
    assert all(verifies(message, published) for message in signed.values())
    tampered = signed[b"example.com"].replace(b"hello", b"HELLO")
    assert not verifies(tampered, published)


def test_what_is_not_signed(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "spamkit.toml"
    config.write_text(OURS)
    spamkit("dkim", "keygen", "--config", str(config))
    stranger = filter_server('LocalNetworks = []\nRelayClients = []\nLocalDomains = ["example.com"]\n'
                             'SmtpFilters = ["dkimsign"]\n')
    assert stranger(from_domain("example.com")).startswith("250"), "a stranger's mail: not ours"
    excepted = filter_server(OURS + 'SmtpFilters = ["dkimsign"]\nDkimSigningExcept = ["example.com"]\n')
    assert excepted(from_domain("example.com")).startswith("250")
    assert not any(m.startswith(b"DKIM-Signature:") for m in sink.messages_as_sent())


def test_a_broken_key_costs_no_mail(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = tmp_path / "dkim_keys" / "default"
    keys.mkdir(parents=True)
    (keys / "private").write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    (keys / "selector").write_text("default\n")
    send = filter_server(OURS + 'SmtpFilters = ["dkimsign"]\n')
    assert send(from_domain("example.com")).startswith("250")
    assert len(sink.messages()) == 1 and not sink.messages_as_sent()[0].startswith(b"DKIM-Signature:")


def test_dns_prints_a_zone_file_and_keygen_keeps_a_pair(tmp_path: Path) -> None:
    config = tmp_path / "spamkit.toml"
    config.write_text(OURS)
    spamkit("dkim", "keygen", "--config", str(config))
    zone = spamkit("dkim", "dns", "--config", str(config))  # the first LocalDomains entry
    assert "; DNS records for example.com." in zone
    dkim_line = next(line for line in zone.splitlines() if line.startswith("default._domainkey IN TXT"))
    assert all(len(piece) <= 255 for piece in dkim_line.split('"')[1::2])  # TXT strings
    assert '_dmarc IN TXT "v=DMARC1; p=none;' in zone
    again = subprocess.run([sys.executable, "-m", "spamkit", "dkim", "keygen", "--config", str(config)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize("domain, selector, words", [
    ("../../etc", "default", "is not a domain name"),  # once written to <root>/../../etc/private
    ("example.org/x", "default", "is not a domain name"),
    ("example.org", "a b", "is not a DNS name"),
    ("example.org", "s1\nx", "is not a DNS name"),
])
def test_keygen_takes_only_names_dns_can_publish(tmp_path: Path, domain: str, selector: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        generate(tmp_path / "keys", domain, selector, bits=1024)
    assert not (tmp_path / "keys").exists() and not (tmp_path.parent / "etc").exists()
    if selector == "default":
        with pytest.raises(ConfigError, match=words):
            dns_record(tmp_path / "keys", domain)
    made = generate(tmp_path / "keys", "Mail-2.Example.org.", "s2026_01", bits=1024)
    assert (made / "private").is_file() and made.name == "mail-2.example.org"


@pytest.fixture(scope="module")
def key_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    generate(root, None, bits=1024)
    return root


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=3000), st.lists(st.sampled_from(
    [b"From: a@example.com", b"From: <>", b"From: a@example.com, b@example.net", b"From: \xff@\xfe",
     b"Subject: x", b" folded", b"", b"DKIM-Signature: v=1; d=x", b"\x00", b"To: b@example.org"]),
    max_size=8).map(lambda lines: b"\r\n".join(lines) + b"\r\n\r\nbody\r\n")))
def test_any_message_is_signed_or_passed_on_never_lost(key_root: Path, data: bytes) -> None:
    """Whatever our users send: the filter goes on (never refuses, never raises) and the
    message is either the same bytes or the same bytes under one DKIM-Signature."""
    signer = DkimSign(LocalClients(["127.0.0.0/8"], []), key_root, ["example.com"], [])
    tx = Transaction(peer="127.0.0.1", helo="client", mail_from="a@example.com",
                     rcpt_tos=["b@example.org"], data=data)
    assert signer.data(tx).action is Action.CONTINUE
    assert tx.data == data or (tx.data.startswith(b"DKIM-Signature:") and tx.data.endswith(data))


@pytest.mark.skipif(os.geteuid() != 0, reason="serve gives up root only when started as root")
def test_serve_as_its_user_signs_with_the_keys_root_made(sink: Sink) -> None:
    """`keygen` run as root makes the private key 0400, root's; `serve --user nobody` gives
    up root before its first message, and read the key only then: "no readable key", and
    every message went unsigned. It reads the keys as it builds its filters now, and a
    SIGHUP (its filters built again, as nobody) keeps them. A key made after the start
    cannot be read then: the reload says so (a restart reads it)."""
    base = Path(tempfile.mkdtemp(prefix="spamkit-dkim-"))  # nobody reads it again at SIGHUP
    try:
        base.chmod(0o755)
        config = base / "spamkit.toml"
        config.write_text(OURS + 'UseBayes = false\nSmtpFilters = ["dkimsign"]\n')
        spamkit("dkim", "keygen", "--config", str(config))
        published = records(config, "example.com")
        message = base / "message.eml"
        message.write_bytes(from_domain("example.com"))
        log = base / "serve.log"
        with log.open("wb") as written:
            process, port = start_serve(sink.port, base / "db", config, stderr=written.fileno())
            try:
                assert swaks(port, message, "a@example.com", "b@example.org").startswith("250")
                process.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while b"reload: configuration" not in log.read_bytes() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert swaks(port, message, "a@example.com", "b@example.org").startswith("250")
                assert b"dkimsign:" not in log.read_bytes()  # (no "no readable key", no complaint)
                spamkit("dkim", "keygen", "example.net", "--config", str(config))
                process.send_signal(signal.SIGHUP)
                while log.read_bytes().count(b"reload: configuration") < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                assert stop_serve(process)[0] == 0
        text = log.read_text()
        assert "running as nobody" in text and text.count("reload: configuration") == 2
        assert f"reload: dkimsign: {base / 'dkim_keys' / 'example.net' / 'private'} cannot be read: " \
               "mail from example.net goes unsigned" in text
        sent = sink.messages_as_sent()
        assert len(sent) == 2 and all(m.startswith(b"DKIM-Signature:") for m in sent)
        assert all(verifies(m, published) for m in sent)
    finally:
        shutil.rmtree(base)
