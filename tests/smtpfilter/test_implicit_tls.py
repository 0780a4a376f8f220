"""TLS from the first byte on `serve --listen-tls` (port 465, SME's "SMTP over SSL"), and
how handshakes that fail, there and at STARTTLS, are logged, counted and let go of."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smtpfilter.chain import FilterChain
from smtpfilter.limits import LimitedController, SessionLimits
from smtpfilter.metrics import Metrics
from smtpfilter.server import FilterHandler
from smtpfilter.trace import Trace
from smtpfilter.tls import server_context
from tests.servers.net import free_port, self_signed_certificate, wait_for_port
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks

MESSAGE = (b"From: a@example.org\r\nTo: user@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
           b"Subject: over SSL\r\n\r\nhello over port 465\r\n")


@dataclass
class TlsServer:
    port: int  # plain SMTP, STARTTLS offered
    tls_port: int  # TLS from the first byte
    certificate: Path
    metrics: Metrics  # (in this process; a `serve` process's are at metrics_port)
    metrics_port: int = 0
    pid: int = 0  # a `serve` process's
    log: str = ""  # what it logged, once stopped

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate))

    def tls_client(self) -> Client:
        client = Client(self.tls_port)
        client.sock = self.context().wrap_socket(client.sock, server_hostname="localhost")
        return client

    def handshakes(self) -> dict[tuple[str, ...], int]:
        return self.metrics.tls.counts()


def in_process(sink: Sink, tmp_path: Path, limits: SessionLimits, timeout: float = 60.0
               ) -> tuple[LimitedController, TlsServer]:
    """A filter with both listeners, in this process (its log is caplog's)."""
    certificate, key = self_signed_certificate(tmp_path)
    metrics = Metrics()
    handler = FilterHandler(FilterChain([]), ("127.0.0.1", sink.port), metrics=metrics,
                            verify_recipients=False, trace=Trace(None, "mx.example.org"))
    port, tls_port = free_port(), free_port()
    controller = LimitedController(handler, limits, hostname="127.0.0.1", port=port,
                                   tls_listen=("127.0.0.1", tls_port), timeout=timeout,
                                   tls_context=server_context(str(certificate), str(key), {}),
                                   require_starttls=False)
    controller.start()
    return controller, TlsServer(port, tls_port, certificate, metrics)


@contextlib.contextmanager
def serving_tls(tmp_path: Path, sink: Sink, tls_port: int | None = None) -> Iterator[TlsServer]:
    """`spamkit serve --listen-tls`, started as its users start it; what it logged is the
    server's `log` once it has stopped (with exit status 0)."""
    certificate, key = self_signed_certificate(tmp_path)
    config = tmp_path / "spamkit.toml"
    metrics_port, tls_port = free_port(), tls_port or free_port()
    config.write_text(f'UseBayes = false\nLocalDomains = ["example.org"]\nTlsCertificate = "{certificate}"\n'
                      f'TlsKey = "{key}"\nMetricsListen = "127.0.0.1:{metrics_port}"\n')
    process, port = start_serve(sink.port, tmp_path / "db", config, "--listen-tls", f"127.0.0.1:{tls_port}")
    server = TlsServer(port, tls_port, certificate, Metrics(), metrics_port, process.pid)
    try:
        wait_for_port(tls_port)
        yield server
    finally:
        code, stderr = stop_serve(process)
        server.log = stderr.decode()
    assert code == 0, server.log


def test_mail_over_tls_from_the_first_byte(sink: Sink, tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(MESSAGE)
    with serving_tls(tmp_path, sink) as server:
        # swaks as a mail program set to "SSL" on port 465
        assert swaks(server.tls_port, message, "a@example.org", "user@example.org",
                     extra=("--tlsc",)).startswith("250")
        # a client that checks the certificate
        with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=server.context(), timeout=30) as client:
            client.ehlo("client.example.org")
            assert not client.has_extn("starttls")  # the session is encrypted already
            assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
            client.sendmail("a@example.org", ["user@example.org"], MESSAGE)
        # the plain port goes on as before, STARTTLS and all
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.starttls(context=server.context())
            client.sendmail("a@example.org", ["user@example.org"], MESSAGE)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                         timeout=10).read().decode()
    delivered = sink.messages()
    assert len(delivered) == 3 and all(b"hello over port 465" in m for m in delivered)
    assert all(b"with ESMTPS id" in m for m in delivered)  # RFC 3848: ESMTP under TLS
    assert 'spamkit_smtp_tls_total{how="implicit",outcome="ok"} 2' in metrics
    assert 'spamkit_smtp_tls_total{how="starttls",outcome="ok"} 1' in metrics
    assert f"and 127.0.0.1:{server.tls_port} (TLS)" in server.log
    assert server.log.count("tls=yes from=<a@example.org>") == 3


def test_broken_handshakes_are_logged_counted_and_give_their_place_back(
        sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    controller, server = in_process(sink, tmp_path, SessionLimits(max_sessions=2), timeout=2.0)
    try:
        with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
            # mail programs set to plain SMTP on the SSL port: each is let go of
            for _ in range(5):
                client = socket.create_connection(("127.0.0.1", server.tls_port), timeout=10)
                client.sendall(b"EHLO laptop.example.com\r\n")
                assert client.recv(100) == b""  # closed: no plaintext reply a TLS client could not read
                client.close()
            # a client that does not trust the certificate, and one that hangs up at once
            with pytest.raises(ssl.SSLCertVerificationError):
                ssl.create_default_context().wrap_socket(
                    socket.create_connection(("127.0.0.1", server.tls_port), timeout=10),
                    server_hostname="localhost")
            socket.create_connection(("127.0.0.1", server.tls_port), timeout=10).close()
            time.sleep(0.3)
            # two that say nothing hold both places while they handshake ...
            silent = [socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) for _ in range(2)]
            time.sleep(0.3)
            refused = Client(server.port)
            assert refused.reply().startswith(b"421 4.7.0 Too many connections")
            # ... until the handshake timeout (SmtpTimeout, 2 s here) closes them
            started = time.monotonic()
            assert [s.recv(100) for s in silent] == [b"", b""]
            assert 1.5 < time.monotonic() - started < 10
            time.sleep(0.3)
            client = server.tls_client()
            assert client.reply().startswith(b"220")
            assert client.command(b"EHLO laptop.example.com").startswith(b"250")
            client.command(b"QUIT")
    finally:
        controller.stop()
    failures = [r.getMessage() for r in caplog.records if "tls=failed" in r.getMessage()]
    assert failures.count("client=127.0.0.1 tls=failed how=implicit reason=WRONG_VERSION_NUMBER") == 5
    assert "client=127.0.0.1 tls=failed how=implicit reason=TLSV1_ALERT_UNKNOWN_CA" in failures
    # (the hang-up reads as a reset or as a close, as the kernel delivers it)
    assert {"client=127.0.0.1 tls=failed how=implicit reason=closed",
            "client=127.0.0.1 tls=failed how=implicit reason=reset"} & set(failures)
    assert failures.count("client=127.0.0.1 tls=failed how=implicit reason=timeout") == 2
    assert server.handshakes() == {("implicit", "failed"): 9, ("implicit", "ok"): 1}
    assert "Traceback" not in caplog.text


def greeted(port: int, within: float = 10.0) -> bool:
    """Whether a new session is greeted 220 within `within` seconds (one that is turned
    away, its place not yet given back, tries again)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        client = Client(port)
        try:
            if client.reply().startswith(b"220"):
                client.command(b"QUIT")
                return True
        except ConnectionError:
            pass
        finally:
            client.sock.close()
        time.sleep(0.1)
    return False


def test_a_failed_starttls_is_one_log_line_and_frees_its_place(
        sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """aiosmtpd logged a traceback for each client whose STARTTLS handshake failed, and
    one that went quiet after STARTTLS kept its place under MaxSessions for good."""
    controller, server = in_process(sink, tmp_path, SessionLimits(max_sessions=1), timeout=2.0)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                client = told_starttls(server)
                client.sock.sendall(b"MAIL FROM:<not-tls@example.net>\r\n")
                assert client.sock.recv(100) == b""
                client.sock.close()
                assert greeted(server.port)
            # one that hangs up instead of starting its handshake
            told_starttls(server).sock.close()
            assert greeted(server.port)
            # one that goes quiet instead: at SmtpTimeout (2 s here) the TLS layer ended
            # STARTTLS as if all were well and told no one, and the place stayed taken
            client = told_starttls(server)
            quiet_since = time.monotonic()
            assert greeted(server.port)
            assert time.monotonic() - quiet_since > 1.5
            assert client.sock.recv(100) == b""
            client.sock.close()
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:  # the one place is free
                smtp.starttls(context=server.context())
                assert smtp.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
                smtp.sendmail("a@example.org", ["user@example.org"], MESSAGE)
    finally:
        controller.stop()
    failures = [r.getMessage().removeprefix("client=127.0.0.1 tls=failed how=starttls reason=")
                for r in caplog.records if "tls=failed" in r.getMessage()]
    assert failures[:3] == ["WRONG_VERSION_NUMBER"] * 3
    assert failures[3] in ("closed", "reset") and failures[4:] == ["timeout"]
    assert "Traceback" not in caplog.text and "SMTP session exception" not in caplog.text
    assert server.handshakes() == {("starttls", "failed"): 5, ("starttls", "ok"): 1}
    assert len(sink.messages()) == 1


def _serve_refusing(tmp_path: Path, config: Path) -> Callable[..., tuple[int, str]]:
    """serve(*options) -> (exit status, stderr) of a `spamkit serve` expected to refuse."""
    def serve(*options: str) -> tuple[int, str]:
        result = subprocess.run([sys.executable, "-m", "spamkit", "serve", "--user", "nobody", *options,
                                 "--db", str(tmp_path / "db"), "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stderr

    return serve


def test_listen_tls_needs_a_certificate_and_a_port_of_its_own_and_says_so(tmp_path: Path, sink: Sink) -> None:
    config = tmp_path / "spamkit.toml"
    config.write_text("UseBayes = false\n")
    serve = _serve_refusing(tmp_path, config)

    tls_port, hop = free_port(), f"127.0.0.1:{sink.port}"
    code, stderr = serve("--listen-tls", f"127.0.0.1:{tls_port}", "--next-hop", hop)
    assert code == 2 and "--listen-tls 127.0.0.1:" in stderr and "needs TlsCertificate and TlsKey" in stderr
    for plain_host in ("127.0.0.1", "0.0.0.0"):  # (the second: listen(2) would fail for one of them)
        code, stderr = serve("--listen", f"{plain_host}:{tls_port}", "--listen-tls", f"127.0.0.1:{tls_port}",
                             "--next-hop", hop)
        assert code == 2 and "is --listen's address too" in stderr
    certificate, key = self_signed_certificate(tmp_path)
    config.write_text(f'UseBayes = false\nTlsCertificate = "{certificate}"\nTlsKey = "{key}"\n')
    with socket.socket() as taken:  # a port something else listens on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        code, stderr = serve("--listen", f"127.0.0.1:{free_port()}", "--listen-tls", f"127.0.0.1:{busy}",
                             "--next-hop", hop)
    assert code == 74 and f"cannot listen on 127.0.0.1:{busy} (--listen-tls): Address already in use" \
        in stderr, stderr
    code, stderr = serve("--listen-tls", f"127.0.0.1:{tls_port}", "--next-hop", f"127.0.0.1:{tls_port}")
    assert code == 2 and "is where this filter listens (--listen-tls" in stderr


def test_listen_submission_needs_logins_and_a_port_of_its_own_and_says_so(tmp_path: Path, sink: Sink) -> None:
    """--listen-submission (587) takes only the mail of users who log in: without
    SmtpAuthentication, or with passwords kept for TLS and no certificate, it would take
    nothing, and `serve` says so instead of starting."""
    config = tmp_path / "spamkit.toml"
    serve = _serve_refusing(tmp_path, config)
    port, hop = free_port(), f"127.0.0.1:{sink.port}"
    config.write_text("UseBayes = false\n")
    code, stderr = serve("--listen-submission", f"127.0.0.1:{port}", "--next-hop", hop)
    assert code == 2 and f"--listen-submission 127.0.0.1:{port} takes mail only from users who log in, " \
        "and SmtpAuthentication is off (SmtpAuthentication (the default))" in stderr, stderr
    config.write_text(f'UseBayes = false\nSmtpAuthentication = true\nDovecotAuthAddress = "{tmp_path / "auth"}"\n')
    code, stderr = serve("--listen-submission", f"127.0.0.1:{port}", "--next-hop", hop)
    assert code == 2 and "they log in after STARTTLS, which needs TlsCertificate and TlsKey" in stderr, stderr
    for option, value in (("--listen", f"127.0.0.1:{port}"), ("--listen-tls", f"0.0.0.0:{port}")):
        code, stderr = serve(option, value, "--listen-submission", f"127.0.0.1:{port}", "--next-hop", hop)
        assert code == 2 and f"--listen-submission 127.0.0.1:{port} is {option}'s address too" in stderr, stderr
    code, stderr = serve("--listen-submission", hop, "--next-hop", hop)
    assert code == 2 and "is where this filter listens (--listen-submission" in stderr, stderr
    certificate, key = self_signed_certificate(tmp_path)
    config.write_text(f'UseBayes = false\nImplicitTlsLoginRequired = true\nTlsCertificate = "{certificate}"\n'
                      f'TlsKey = "{key}"\n')
    code, stderr = serve("--listen-tls", f"127.0.0.1:{port}", "--next-hop", hop)
    assert code == 2 and f"--listen-tls 127.0.0.1:{port} takes mail only from users who log in, and " \
        "SmtpAuthentication is off" in stderr, stderr


def _free_privileged_port() -> int | None:
    """A port below 1024 free on loopback (465 if it is), or None."""
    for port in (465, *range(900, 1000)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def test_port_465_is_bound_as_root_before_serve_becomes_its_user(tmp_path: Path, sink: Sink) -> None:
    """Port 465 is below 1024: `serve` binds it while still root, then switches (--user)."""
    if os.geteuid() != 0:
        pytest.skip("binding a port below 1024 needs root")
    port = _free_privileged_port()
    if port is None:
        pytest.skip("no port below 1024 free on this machine")
    with serving_tls(tmp_path, sink, port) as server:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=server.context(), timeout=30) as client:
            client.sendmail("a@example.org", ["user@example.org"], MESSAGE)
        status = Path(f"/proc/{server.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert set(uid_line.split()[1:]) == {str(pwd.getpwnam("nobody").pw_uid)}  # real, effective, saved
    assert len(sink.messages()) == 1


def test_an_idle_tls_session_gives_its_place_back_soon_after_smtp_timeout(sink: Sink, tmp_path: Path) -> None:
    """Closing a TLS session waits for the client's close_notify, which asyncio gives 30 s:
    an idle client kept its place under MaxSessions that long past SmtpTimeout."""
    controller, server = in_process(sink, tmp_path, SessionLimits(max_sessions=1), timeout=2.0)
    try:
        for open_session in (lambda: greeted_tls_client(server), lambda: starttls_client(server)):
            idle = open_session()
            assert idle.command(b"EHLO laptop.example.com").startswith(b"250")
            quiet_since = time.monotonic()
            assert greeted(server.port, within=10.0)
            assert 1.5 < time.monotonic() - quiet_since < 10.0
            assert idle.reply() == b"421 4.4.2 Timeout exceeded, closing the session"
            idle.sock.close()
    finally:
        controller.stop()


def greeted_tls_client(server: TlsServer) -> Client:
    """A session on the TLS port, its greeting read."""
    client = server.tls_client()
    assert client.reply().startswith(b"220")
    return client


def told_starttls(server: TlsServer) -> Client:
    """A session on the plain port that has sent STARTTLS and heard 220, no handshake yet."""
    client = Client(server.port)
    assert client.reply().startswith(b"220")
    client.command(b"EHLO laptop.example.com")
    assert client.command(b"STARTTLS").startswith(b"220")
    return client


def starttls_client(server: TlsServer) -> Client:
    """A session on the plain port after STARTTLS and its handshake, before its second EHLO."""
    client = told_starttls(server)
    client.sock = server.context().wrap_socket(client.sock, server_hostname="localhost")
    client.buffer = b""
    return client
