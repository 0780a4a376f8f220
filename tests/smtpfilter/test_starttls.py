"""STARTTLS on `spamkit serve`: offered only when configured, mail goes through encrypted,
and plaintext pipelined after STARTTLS is dropped (CVE-2011-0411's command injection)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.net import self_signed_certificate
from tests.servers.smtp_client import Client
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks

MESSAGE = (b"From: a@example.org\r\nTo: user@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
           b"Subject: over TLS\r\n\r\nhello over TLS\r\n")


def serve_with(tmp_path: Path, sink: Sink, config_text: str, wait: bool = True
               ) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp_path / "spamkit.toml"
    config.write_text('UseBayes = false\nLocalDomains = ["example.org"]\n' + config_text)
    return start_serve(sink.port, tmp_path / "db", config, wait=wait)


@pytest.fixture
def tls_serve(tmp_path: Path, sink: Sink) -> Iterator[tuple[int, Path]]:
    certificate, key = self_signed_certificate(tmp_path)
    process, port = serve_with(tmp_path, sink, f'TlsCertificate = "{certificate}"\nTlsKey = "{key}"\n')
    try:
        yield port, certificate
    finally:
        assert stop_serve(process)[0] == 0


def test_starttls_offered_and_mail_goes_through(tls_serve: tuple[int, Path], sink: Sink,
                                                tmp_path: Path) -> None:
    port, certificate = tls_serve
    message = tmp_path / "m.eml"
    message.write_bytes(MESSAGE)
    reply = swaks(port, message, "a@example.org", "user@example.org", extra=("--tls",))
    assert reply.startswith("250"), reply
    [delivered] = sink.messages()
    assert b"hello over TLS" in delivered
    # a client that checks the certificate against the CA it trusts
    import smtplib

    context = ssl.create_default_context(cafile=str(certificate))
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo("client.example.org")
        assert not client.has_extn("starttls")  # once is enough
        client.sendmail("a@example.org", ["user@example.org"], MESSAGE)
    assert len(sink.messages()) == 2


def test_plaintext_pipelined_after_starttls_is_dropped(tls_serve: tuple[int, Path], sink: Sink) -> None:
    port, certificate = tls_serve
    client = Client(port)
    assert client.reply().startswith(b"220")
    assert client.command(b"EHLO client.example.org").startswith(b"250")
    # a man in the middle appends a command to the client's STARTTLS, in plaintext
    client.sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
    assert client.reply().startswith(b"220")
    context = ssl.create_default_context(cafile=str(certificate))
    client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
    client.buffer = b""
    assert client.command(b"EHLO client.example.org").startswith(b"250")
    # had the injected MAIL run inside the TLS session, RCPT would be accepted
    assert client.command(b"RCPT TO:<user@example.org>").startswith(b"503")
    assert client.command(b"MAIL FROM:<a@example.org>").startswith(b"250")
    assert client.command(b"RCPT TO:<user@example.org>").startswith(b"250")
    assert client.command(b"DATA").startswith(b"354")
    assert client.command(MESSAGE + b".").startswith(b"250")
    client.command(b"QUIT")
    [delivered] = sink.messages()
    assert b"injected" not in delivered


def test_no_login_is_offered_under_tls_that_every_password_would_fail(tls_serve: tuple[int, Path]) -> None:
    """aiosmtpd offered AUTH LOGIN PLAIN once TLS was on, with a check that refused every
    login 535 "credentials invalid": a mail program set to log in told its user the
    password was wrong. The filter takes no logins, so it offers none, and says so (and
    HELP lists neither AUTH nor, once TLS is on, STARTTLS)."""
    port, certificate = tls_serve
    client = Client(port)
    assert client.reply().startswith(b"220")
    client.command(b"EHLO client.example.org")
    listed = client.command(b"HELP")  # (HELP lists what EHLO offers: aiosmtpd listed AUTH)
    assert listed.startswith(b"250 2.0.0 Supported commands:") and b"STARTTLS" in listed and b"AUTH" not in listed
    assert client.command(b"STARTTLS").startswith(b"220")
    client.sock = ssl.create_default_context(cafile=str(certificate)).wrap_socket(
        client.sock, server_hostname="localhost")
    features = client.command(b"EHLO client.example.org")
    assert features.startswith(b"250") and b"AUTH" not in features.upper()
    listed = client.command(b"HELP")
    assert b"EHLO" in listed and b"STARTTLS" not in listed and b"AUTH" not in listed
    assert client.command(b"AUTH PLAIN AHVzZXIAcGFzcw==") == \
        b"502 5.5.1 Authentication is not offered here; use the submission port"
    assert client.command(b"MAIL FROM:<a@example.org>").startswith(b"250")  # the session goes on
    client.command(b"QUIT")


def test_no_starttls_without_a_certificate_and_bad_tls_settings_are_named(
        tmp_path: Path, sink: Sink) -> None:
    process, port = serve_with(tmp_path, sink, "")
    try:
        client = Client(port)
        client.reply()
        assert b"STARTTLS" not in client.command(b"EHLO client.example.org")
        assert client.command(b"STARTTLS").startswith(b"454")
    finally:
        stop_serve(process)
    certificate, _ = self_signed_certificate(tmp_path)
    for settings, expected in ((f'TlsCertificate = "{certificate}"\n', "TlsKey is empty"),
                               (f'TlsCertificate = "{certificate}"\nTlsKey = "{tmp_path}/none.pem"\n',
                                "cannot load")):
        process, _ = serve_with(tmp_path, sink, settings, wait=False)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 2, stderr
        assert expected in stderr.decode(), stderr
