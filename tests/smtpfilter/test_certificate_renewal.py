"""A TLS certificate renewed while `spamkit serve` runs is shown to the next clients.

Before, serve kept the certificate it read at start, and a SIGHUP did not read it again:
after a certbot renewal (every 60 days, files swapped under /etc/letsencrypt/live, nothing
reloaded unless told to) the filter went on showing the old certificate until it expired,
and mail programs on 465 and 587 refused to send. And since serve gave up every group
with root, a key readable by Debian's ssl-cert group (as /etc/ssl/private keeps them) was
out of its reach too."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpfilter.tls import certificate_end
from tests.servers.net import free_port, self_signed_certificate, wait_for_port
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="serve gives up root only when started as root")

GROUP = "spamkit-test-keys"  # stands for Debian's ssl-cert: the group the key is readable by


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def shown_by_starttls(port: int) -> bytes:
    """The certificate a new STARTTLS session is shown (DER), after which a message goes
    through it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=unverified())
        assert client.sock is not None
        shown = client.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        client.sendmail("a@example.org", ["user@example.org"],
                        b"From: a@example.org\r\nTo: user@example.org\r\nSubject: tls\r\n\r\nhello\r\n")
    assert shown is not None
    return bytes(shown)


def shown_by_implicit_tls(port: int) -> bytes:
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=30, context=unverified()) as client:
        client.ehlo("client.example.org")
        shown = client.sock.getpeercert(binary_form=True)
    assert shown is not None
    return bytes(shown)


def der(certificate: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.read_text())


class Certbot:
    """Certificates laid out as certbot keeps them: numbered files under archive/, and the
    names the configuration gives, under live/, symbolic links swapped at each renewal."""

    def __init__(self, base: Path) -> None:
        self.archive, self.live = base / "archive", base / "live"
        self.archive.mkdir()
        self.live.mkdir()
        self.renewals = 0
        self.certificate, self.key = self.live / "fullchain.pem", self.live / "privkey.pem"

    def renew(self, key_mode: int = 0o644, key_group: int = 0) -> Path:
        """A new pair, put in force as certbot does; the new certificate's file."""
        self.renewals += 1
        made = self.archive / str(self.renewals)
        made.mkdir()
        certificate, key = self_signed_certificate(made)
        os.chown(key, 0, key_group)
        key.chmod(key_mode)
        for link, target in ((self.key, key), (self.certificate, certificate)):
            swapped = link.with_name(link.name + ".new")
            swapped.symlink_to(target)
            swapped.replace(link)
        return certificate


def until(shown: bytes, get: Callable[[], bytes], seconds: float = 20.0) -> bytes:
    """What get() gives once it is `shown`, or the last it gave after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        now = get()
        if now == shown or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def test_a_renewed_certificate_is_shown_without_a_restart(open_tmp: Path, sink: Sink) -> None:
    certbot = Certbot(open_tmp)
    first = certbot.renew()
    metrics_port, tls_port = free_port(), free_port()
    config = open_tmp / "spamkit.toml"
    config.write_text(f'UseBayes = false\nLocalDomains = ["example.org"]\nTlsCertificate = "{certbot.certificate}"\n'
                      f'TlsKey = "{certbot.key}"\nMetricsListen = "127.0.0.1:{metrics_port}"\n')
    log = open_tmp / "serve.log"
    with log.open("wb") as written:
        process, port = start_serve(sink.port, open_tmp / "db", config, "--listen-tls", f"127.0.0.1:{tls_port}",
                                    stderr=written.fileno())
        try:
            wait_for_port(metrics_port)
            assert shown_by_starttls(port) == der(first)
            # a key that does not go with the certificate (caught half way through a
            # renewal) is not loaded: the pair in force stays, and TLS goes on working
            certbot.renew()
            shutil.copy(certbot.archive / "1" / "key.pem", certbot.archive / "2" / "key.pem")
            time.sleep(6)  # (the files are looked at every 5 s)
            assert shown_by_starttls(port) == der(first)
            # a renewal that went right: its certificate, on both ports, with no SIGHUP
            second = certbot.renew()
            assert until(der(second), lambda: shown_by_starttls(port)) == der(second)
            assert shown_by_implicit_tls(tls_port) == der(second)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as answer:
                exposition = answer.read().decode()
            end = certificate_end(str(second))
            assert end is not None
            assert f"spamkit_tls_certificate_expiry_timestamp_seconds {end:.0f}" in exposition
            # a SIGHUP loads the pair the configuration names now, at once
            third = open_tmp / "third"
            third.mkdir()
            certificate, key = self_signed_certificate(third)
            key.chmod(0o644)
            config.write_text(config.read_text().replace(str(certbot.certificate), str(certificate))
                              .replace(str(certbot.key), str(key)))
            process.send_signal(signal.SIGHUP)
            assert until(der(certificate), lambda: shown_by_starttls(port), seconds=5) == der(certificate)
        finally:
            assert stop_serve(process)[0] == 0
    written_log = log.read_text()
    assert written_log.count("tls: changed: ") == 2, written_log  # (the mismatch, said once)
    assert "key values mismatch" in written_log and "the certificate in force (until " in written_log
    assert f"tls: changed: {certbot.certificate} loaded, valid until " in written_log
    assert f"tls: reload: {certificate} loaded, valid until " in written_log
    assert len(sink.messages()) >= 5  # (each certificate looked at carried a message through)


@pytest.fixture
def key_group() -> Iterator[int]:
    """A group nobody (serve's user in these tests) is a member of, as an administrator
    adds the filter's user to ssl-cert."""
    subprocess.run(["groupdel", GROUP], capture_output=True)
    subprocess.run(["groupadd", "--system", "--users", "nobody", GROUP], check=True, capture_output=True)
    try:
        import grp

        yield grp.getgrnam(GROUP).gr_gid
    finally:
        subprocess.run(["groupdel", GROUP], check=True, capture_output=True)


def test_a_key_readable_by_the_users_group_is_read_and_one_it_cannot_read_is_named(
        open_tmp: Path, sink: Sink, key_group: int) -> None:
    certbot = Certbot(open_tmp)
    first = certbot.renew(key_mode=0o640, key_group=key_group)
    config = open_tmp / "spamkit.toml"
    config.write_text(f'UseBayes = false\nLocalDomains = ["example.org"]\nTlsCertificate = "{certbot.certificate}"\n'
                      f'TlsKey = "{certbot.key}"\n')
    log = open_tmp / "serve.log"
    with log.open("wb") as written:
        process, port = start_serve(sink.port, open_tmp / "db", config, stderr=written.fileno())
        try:
            assert shown_by_starttls(port) == der(first)
            # root's alone: the filter's user cannot load it, says so, and keeps the one in force
            second = certbot.renew(key_mode=0o600)
            time.sleep(6)
            assert shown_by_starttls(port) == der(first)
            # the administrator gives the group read access: loaded, as nobody, with no restart
            (certbot.archive / "2" / "key.pem").chmod(0o640)
            os.chown(certbot.archive / "2" / "key.pem", 0, key_group)
            assert until(der(second), lambda: shown_by_starttls(port)) == der(second)
        finally:
            assert stop_serve(process)[0] == 0
    written_log = log.read_text()
    assert (f"{certbot.key} cannot be read by nobody, the user serve runs as; give one of nobody's "
            "groups read access") in written_log, written_log
    assert f"tls: changed: {certbot.certificate} loaded" in written_log


def test_tls_switched_on_by_a_reload_waits_for_a_restart(open_tmp: Path, sink: Sink) -> None:
    config = open_tmp / "spamkit.toml"
    config.write_text('UseBayes = false\nLocalDomains = ["example.org"]\n')
    log = open_tmp / "serve.log"
    with log.open("wb") as written:
        process, port = start_serve(sink.port, open_tmp / "db", config, stderr=written.fileno())
        try:
            certificate, key = self_signed_certificate(open_tmp)
            config.write_text(config.read_text() + f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n')
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "reload:" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.ehlo("client.example.org")
                assert not client.has_extn("starttls")
        finally:
            assert stop_serve(process)[0] == 0
    assert ("reload: TlsCertificate, TlsKey changed, which takes effect only when serve restarts"
            in log.read_text())


def test_the_daily_warning_is_of_the_certificate_in_force(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A renewed file that could not be loaded leaves the old certificate, whose end the
    log goes on giving once a day (and the metrics all along)."""
    from smtpfilter.tls import RENEW_DAYS, CertificateInForce

    certificate, key = self_signed_certificate(tmp_path, days=RENEW_DAYS - 4)
    clock = [1000.0]
    in_force = CertificateInForce(str(certificate), str(key), {"TlsCertificate": "here"},
                                  clock=lambda: clock[0])
    installed: list[ssl.SSLContext] = []
    in_force.installing_with(installed.append)
    ends = in_force.ends
    assert ends is not None
    certificate.write_text("not a certificate\n")  # (a renewal that went wrong)
    clock[0] += 6
    in_force.poll()
    assert installed == [] and in_force.ends == ends and in_force.context is not None
    [error] = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(f"tls: changed: TlsCertificate/TlsKey (here): cannot load {certificate} "
                            f"with key {key}: [SSL] PEM lib (_ssl.c:")
    assert error.endswith(f"; the certificate in force (until {time.strftime('%Y-%m-%d', time.gmtime(ends))}) stays")
    caplog.clear()
    clock[0] += 3600
    in_force.poll()
    assert caplog.records == []  # (said at start, and then once a day)
    clock[0] += 86400
    in_force.poll()
    day = time.strftime("%Y-%m-%d", time.gmtime(ends))
    assert [r.message for r in caplog.records] == [
        f"tls: TlsCertificate (here): {certificate} expires on {day}, in {RENEW_DAYS - 5} days: renew it"]
