"""disclaimer (SME's smtpd disclaimer) end to end: swaks sends through the filter, Postfix's
smtp-sink keeps what reached the next hop, and the standard library's `email` reads it as
a mail program would."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import subprocess
import sys
from pathlib import Path

import dkim
import pytest

from smtpfilter.plugins import check_chain
from spamkit.config import config_from_text
from spamkit.errors import ConfigError
from tests.servers.smtp_sink import Sink
from tests.smtpfilter.test_dkimsign import records, spamkit, verifies

OURS = 'LocalNetworks = ["127.0.0.0/8"]\nLocalDomains = ["example.com", "example.net"]\n'
ON = OURS + 'SmtpFilters = ["disclaimer"]\n'
TEXT = "This e-mail and its attachments are confidential.\nExample Ltd, Cardiff\n"


def note(subject: str, body: str = "Hello Bob,\r\nsee you at 10.\r\n") -> bytes:
    return (f"From: Ann <ann@example.com>\r\nTo: bob@elsewhere.org\r\nSubject: {subject}\r\n"
            f"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.com>\r\n\r\n"
            + body).encode()


def delivered(sink: Sink) -> dict[str, email.message.Message]:
    """What reached the next hop, by Subject (smtp-sink's files sort by name, not arrival)."""
    out = {}
    for data in sink.messages_as_sent():
        message = email.message_from_bytes(data, policy=email.policy.default)
        out[str(message["Subject"])] = message
    return out


def shown_text(message: email.message.Message) -> str:
    """The plain text a reader sees, one line break at its end (swaks adds blank lines)."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n").rstrip("\n") + "\n"


def test_outgoing_mail_gets_it_and_internal_mail_does_not(  # type: ignore[no-untyped-def]
        filter_server, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "disclaimer").write_text(TEXT)
    send = filter_server(ON)
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        assert send(note("out"), "ann@example.com", "bob@elsewhere.org").startswith("250")
        assert send(note("in"), "ann@example.com", "carol@example.net").startswith("250")
        assert send(note("both"), "ann@example.com", "carol@example.com,bob@elsewhere.org").startswith("250")
        assert send(note("bounce"), "", "bob@elsewhere.org").startswith("250")
        assert send(note("not-ours"), "ann@gmail.example", "bob@elsewhere.org").startswith("250")
    got = delivered(sink)
    assert shown_text(got["out"]) == "Hello Bob,\nsee you at 10.\n\n" + TEXT
    assert shown_text(got["both"]) == shown_text(got["out"]), "one copy: every recipient sees it"
    for plain in ("in", "bounce", "not-ours"):
        assert shown_text(got[plain]) == "Hello Bob,\nsee you at 10.\n", plain
    logged = [record.getMessage() for record in caplog.records if " rcpts=" in record.getMessage()]
    assert [line.endswith(" disclaimer=added") for line in logged] == [True, False, True, False, False]


def test_a_stranger_gets_none(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "disclaimer").write_text(TEXT)
    send = filter_server('LocalNetworks = []\nRelayClients = []\nLocalDomains = ["example.com"]\n'
                         'SmtpFilters = ["disclaimer"]\n')
    assert send(note("stranger"), "ann@example.com", "bob@elsewhere.org").startswith("250")
    assert TEXT.split("\n")[0] not in shown_text(delivered(sink)["stranger"])


def test_each_domain_its_own_text_and_an_edit_needs_no_restart(  # type: ignore[no-untyped-def]
        filter_server, sink: Sink, tmp_path: Path) -> None:
    (tmp_path / "disclaimer").write_text(TEXT)
    (tmp_path / "disclaimer_example.net").write_text("Example Net GmbH, Köln\n")
    (tmp_path / "disclaimer_partner.org").write_text("Partner text\n")  # a file of its own, not in LocalDomains
    send = filter_server(ON)
    assert send(note("com"), "ann@example.com", "x@elsewhere.org").startswith("250")
    assert send(note("net"), "ann@EXAMPLE.NET", "x@elsewhere.org").startswith("250")
    assert send(note("partner"), "ann@partner.org", "x@elsewhere.org").startswith("250")
    (tmp_path / "disclaimer").write_text("Changed text\n")
    assert send(note("edited"), "ann@example.com", "x@elsewhere.org").startswith("250")
    (tmp_path / "disclaimer").unlink()
    assert send(note("removed"), "ann@example.com", "x@elsewhere.org").startswith("250")
    got = delivered(sink)
    assert shown_text(got["com"]).endswith("\n\n" + TEXT)
    assert shown_text(got["net"]).endswith("\n\nExample Net GmbH, Köln\n")
    assert got["net"].get_body(preferencelist=("plain",))["Content-Transfer-Encoding"] == "quoted-printable"
    assert shown_text(got["partner"]).endswith("\n\nPartner text\n")
    assert shown_text(got["edited"]).endswith("\n\nChanged text\n")
    assert shown_text(got["removed"]) == "Hello Bob,\nsee you at 10.\n"


def test_html_mail_gets_the_html_form(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "disclaimer").write_text(TEXT)
    (tmp_path / "disclaimer.html").write_text('<p style="color:gray">Confidential. <a href="https://example.com/legal">'
                                              "Legal notice</a> — Example Ltd</p>\n")
    body = ("This is a multipart message.\r\n--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello\r\n"
            "--alt\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html><body><p>Hello</p></body></html>\r\n"
            "--alt--\r\n")
    data = note("html", body).replace(b"\r\n\r\n", b'\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; '
                                                   b'boundary="alt"\r\n\r\n', 1)
    send = filter_server(ON)
    assert send(data, "ann@example.com", "bob@elsewhere.org").startswith("250")
    message = delivered(sink)["html"]
    assert shown_text(message) == "Hello\n\n" + TEXT
    html = message.get_body(preferencelist=("html",))
    assert html is not None and html.get_content_charset() == "us-ascii"
    assert str(html.get_content()).replace("\r\n", "\n").rstrip("\n") == (
        '<html><body><p>Hello</p>\n<p style="color:gray">Confidential. <a href="https://example.com/legal">'
        "Legal notice</a> &#8212; Example Ltd</p>\n</body></html>")


def test_signed_after_the_footer_verifies(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "spamkit.toml"
    config.write_text(OURS)
    spamkit("dkim", "keygen", "--config", str(config))
    (tmp_path / "disclaimer").write_text(TEXT)
    send = filter_server(OURS + 'SmtpFilters = ["disclaimer", "dkimsign"]\n')
    assert send(note("signed"), "ann@example.com", "bob@elsewhere.org").startswith("250")
    [sent] = sink.messages_as_sent()
    assert sent.startswith(b"DKIM-Signature:") and b"Example Ltd, Cardiff" in sent
    assert verifies(sent, records(config, "example.com"))
    assert not dkim.verify(sent.replace(b"Example Ltd", b"Other Ltd").replace(b"\n", b"\r\n"),
                           dnsfunc=lambda name, timeout=5: records(config, "example.com").get(name))


def test_a_scan_sent_as_a_bare_pdf_gets_it_in_a_part_of_its_own_and_is_signed(  # type: ignore[no-untyped-def]
        filter_server, sink: Sink, tmp_path: Path) -> None:
    """A copier's scan to e-mail: the message is nothing but the PDF. It reaches the next
    hop as a multipart/mixed of the same PDF and the disclaimer, signed after it."""
    config = tmp_path / "spamkit.toml"
    config.write_text(OURS)
    spamkit("dkim", "keygen", "--config", str(config))
    (tmp_path / "disclaimer").write_text(TEXT)
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    scan = note("scan", "").replace(b"\r\n\r\n", b"\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf; "
                                    b"name=scan.pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\n"
                                    b"Content-Transfer-Encoding: base64\r\n\r\n", 1) \
        + base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    send = filter_server(OURS + 'SmtpFilters = ["disclaimer", "dkimsign"]\n')
    assert send(scan, "ann@example.com", "bob@elsewhere.org").startswith("250")
    [sent] = sink.messages_as_sent()
    assert verifies(sent, records(config, "example.com"))
    got = email.message_from_bytes(sent, policy=email.policy.default)
    attachment, footer = got.get_payload()  # type: ignore[misc]
    assert (got.get_content_type(), attachment.get_filename()) == ("multipart/mixed", "scan.pdf")
    assert attachment.get_payload(decode=True) == pdf
    assert footer.get_content().replace("\r\n", "\n") == TEXT.rstrip("\n")


def test_mail_it_cannot_change_goes_on_as_it_came(  # type: ignore[no-untyped-def]
        filter_server, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "disclaimer").write_text(TEXT)
    signed = note("smime").replace(b"\r\n\r\n", b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; "
                                                b'protocol="application/pkcs7-signature"; boundary="s"\r\n\r\n', 1) \
        .replace(b"Hello Bob", b"--s\r\nContent-Type: text/plain\r\n\r\nHello Bob") + b"--s\r\nContent-Type: " \
        b"application/pkcs7-signature\r\n\r\nMIIB\r\n--s--\r\n"
    send = filter_server(ON)
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        assert send(signed, "ann@example.com", "bob@elsewhere.org").startswith("250")
    assert caplog.records[-1].getMessage().endswith(" disclaimer=signed")
    [sent] = sink.messages_as_sent()
    assert sent.rstrip(b"\n").endswith(signed.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n").rstrip(b"\n"))


def test_it_must_come_before_dkimsign_and_lint_says_when_it_has_no_text(tmp_path: Path) -> None:
    config_path = tmp_path / "spamkit.toml"
    config_path.write_text(OURS + 'SmtpFilters = ["dkimsign", "disclaimer"]\n')
    with pytest.raises(ConfigError, match=r"spamkit.toml:3: the disclaimer filter changes the message, so it "
                                          r"must come before dkimsign"):
        check_chain(config_from_text(config_path.read_text(), config_path, {}))
    config_path.write_text(ON)
    lint = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--json", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=120)
    warnings = json.loads(lint.stdout)["warnings"]
    assert any("the disclaimer filter has no text to add: write it to "
               f"{tmp_path / 'disclaimer'}" in warning for warning in warnings), warnings
    (tmp_path / "disclaimer_example.net").write_text("Example Net\n")
    lint = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--json", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=120)
    assert not any("disclaimer filter" in warning for warning in json.loads(lint.stdout)["warnings"])
