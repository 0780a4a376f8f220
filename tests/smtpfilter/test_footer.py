"""The footer the disclaimer filter adds (smtpfilter/footer.py), judged by a MIME reader
that is not ours: the standard library's `email` with its default policy, which decodes
each part as a mail program shows it."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
from email.message import Message

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpfilter.footer import Footed, Footer, append_footer

FOOTER = Footer.from_text("This e-mail is confidential.\r\nCafé Müller GmbH, Köln\n\n")
SHORT = Footer.from_text("Sent from example.com")


def parsed(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.default)


def leaves(data: bytes) -> list[tuple[str, str | bytes]]:
    """Each leaf part as a reader shows it: (type, text for text, bytes for the rest),
    line breaks as LF."""
    out: list[tuple[str, str | bytes]] = []
    for part in parsed(data).walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
            out.append((part.get_content_type(), part.get_content().replace("\r\n", "\n")))
        else:
            out.append((part.get_content_type(), part.get_payload(decode=True)))
    return out


def entity(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def plain(text: str, charset: str = "utf-8", encoding: str = "8bit") -> bytes:
    """A text/plain part whose text ends with a line break, as mail programs write it."""
    content = (text + "\n").replace("\n", "\r\n").encode(charset)
    if encoding == "base64":
        body = base64.encodebytes(content).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        body = binascii.b2a_qp(content, istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        body = content
    return entity(f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {encoding}\n", body)


def html_part(markup: str, charset: str = "utf-8", encoding: str = "quoted-printable") -> bytes:
    return plain(markup, charset, encoding).replace(b"text/plain", b"text/html", 1)


def multipart(kind: str, *parts: bytes, boundary: str = "=_b") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return entity(f'Content-Type: multipart/{kind}; boundary="{boundary}"\n',
                  b"This is a MIME message.\r\n\r\n" + body + b"--" + boundary.encode() + b"--\r\n")


def message(body_entity: bytes) -> bytes:
    return (b"From: Ann <ann@example.com>\r\nTo: bob@elsewhere.org\r\nSubject: offer\r\n"
            b"MIME-Version: 1.0\r\n" + body_entity)


PDF = entity("Content-Type: application/pdf; name=q.pdf\nContent-Disposition: attachment; filename=q.pdf\n"
             "Content-Transfer-Encoding: base64\n", base64.encodebytes(b"%PDF-1.4 " + bytes(range(256))))
FOOTER_LF = FOOTER.text


def test_a_plain_body_ends_with_the_footer() -> None:
    original = message(plain("Dear Bob,\nthe price is 12 €."))
    footed = append_footer(original, FOOTER)
    assert footed.outcome == "added" and footed.data is not None
    [(kind, text)] = leaves(footed.data)
    assert kind == "text/plain" and text == "Dear Bob,\nthe price is 12 €.\n\n" + FOOTER_LF + "\n"
    head = original.split(b"\r\n\r\n")[0]
    assert footed.data.startswith(head), "the message's header is kept as it was"
    assert append_footer(footed.data, FOOTER).outcome == "already"


@pytest.mark.parametrize("charset, encoding, becomes", [
    ("us-ascii", "7bit", ("utf-8", "quoted-printable")),  # é needs 8 bits and another charset
    ("iso-8859-1", "quoted-printable", ("iso-8859-1", "quoted-printable")),  # é and ü are Latin-1
    ("iso-8859-1", "base64", ("iso-8859-1", "base64")),
    ("koi8-r", "8bit", ("utf-8", "8bit")),  # KOI8-R has no é
    ("shift_jis", "base64", ("utf-8", "base64")),
])
def test_each_part_keeps_its_encoding_where_it_can(charset: str, encoding: str, becomes: tuple[str, str]) -> None:
    text = {"koi8-r": "Привет", "shift_jis": "こんにちは"}.get(charset, "Hello")
    footed = append_footer(message(plain(text, charset, encoding)), FOOTER).data
    assert footed is not None
    part = parsed(footed)
    assert (part.get_content_charset(), part["Content-Transfer-Encoding"]) == becomes
    assert part.get_content().replace("\r\n", "\n") == f"{text}\n\n{FOOTER_LF}\n"
    assert all(len(line) <= 998 for line in footed.split(b"\r\n"))


def test_html_gets_it_before_body_end_and_alternatives_both() -> None:
    markup = "<html><body><p>Grüße</p></body></html>"
    original = message(multipart("alternative", plain("Grüße", "iso-8859-1", "quoted-printable"),
                                 html_part(markup, "utf-8", "base64")))
    footed = append_footer(original, FOOTER).data
    assert footed is not None
    (_, text), (_, html) = leaves(footed)
    assert text == f"Grüße\n\n{FOOTER_LF}\n"
    assert isinstance(html, str) and html.startswith("<html><body><p>Grüße</p>\n<br>\n<div>This e-mail")
    assert html.endswith("Caf&#233; M&#252;ller GmbH, K&#246;ln</div>\n</body></html>\n")
    assert original.split(b"--=_b")[0] == footed.split(b"--=_b")[0], "preamble and header kept"
    assert footed.endswith(b"--=_b--\r\n")


def test_an_attachment_is_kept_byte_for_byte() -> None:
    original = message(multipart("mixed", plain("See the quote."), PDF))
    footed = append_footer(original, FOOTER).data
    assert footed is not None
    assert PDF in footed
    assert leaves(footed)[1] == leaves(original)[1]
    assert leaves(footed)[0] == ("text/plain", f"See the quote.\n\n{FOOTER_LF}\n")


def test_no_body_text_first_means_a_part_of_its_own() -> None:
    original = message(multipart("mixed", PDF))
    footed = append_footer(original, FOOTER).data
    assert footed is not None
    assert leaves(footed) == [*leaves(original), ("text/plain", FOOTER_LF)]
    assert append_footer(footed, FOOTER).outcome == "already"


def test_a_signed_part_inside_mixed_is_not_touched() -> None:
    signed = multipart("signed", plain("I agree."), entity("Content-Type: application/pgp-signature\n",
                                                           b"-----BEGIN PGP SIGNATURE-----\r\nxx\r\n"),
                       boundary="sig")
    original = message(multipart("mixed", signed))
    footed = append_footer(original, FOOTER).data
    assert footed is not None and signed in footed
    assert leaves(footed)[-1] == ("text/plain", FOOTER_LF)


def test_related_html_gets_it_in_its_root() -> None:
    image = entity("Content-Type: image/png\nContent-ID: <logo>\nContent-Transfer-Encoding: base64\n",
                   base64.encodebytes(b"\x89PNG\r\n\x1a\n" + bytes(40)))
    original = message(multipart("mixed", multipart("alternative", plain("Hi"), multipart(
        "related", html_part("<p>Hi <img src=cid:logo></p>"), image, boundary="rel"), boundary="alt"), PDF))
    footed = append_footer(original, SHORT).data
    assert footed is not None
    kinds = leaves(footed)
    assert [kind for kind, _ in kinds] == ["text/plain", "text/html", "image/png", "application/pdf"]
    assert kinds[0][1] == "Hi\n\nSent from example.com\n"
    assert kinds[1][1] == "<p>Hi <img src=cid:logo></p>\n<br>\n<div>Sent from example.com</div>\n"
    assert kinds[2:] == leaves(original)[2:]


@pytest.mark.parametrize("data, why", [
    (message(multipart("signed", plain("x"), plain("sig"))), "signed"),
    (message(entity("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n", b"MIIB\r\n")),
     "signed"),
    (message(multipart("encrypted", plain("x"), plain("y"))), "encrypted"),
    (b"DKIM-Signature: v=1; d=example.com; b=abc\r\n" + message(plain("x")), "dkim-signed"),
    (message(multipart("report", plain("Delivery failed"), plain("x"))), "report"),
    (message(multipart("alternative", PDF)), "not-text"),
    (message(entity("Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n", b"begin 644 a\r\n")),
     "encoding"),
    (message(entity("Content-Type: text/plain; charset=no-such-charset\n", b"x\r\n")), "charset"),
    (message(multipart("mixed", plain("x"))).replace(b"--=_b", b"--other"), "malformed"),
    (message(multipart("mixed", PDF)).replace(b"--=_b--", b""), "malformed"),  # cut: where to add?
    (b"no header at all\r\n", "malformed"),
])
def test_what_is_left_alone(data: bytes, why: str) -> None:
    assert append_footer(data, FOOTER) == Footed(None, why)


@pytest.mark.parametrize("body", [
    PDF,  # a copier's scan, sent as nothing but the PDF
    entity("Content-Type: message/rfc822\n", message(plain("inner"))),  # a message forwarded whole
    entity("Content-Type: text/csv\nContent-Disposition: attachment; filename=a.csv\n", b"a,b\r\n1,2\r\n"),
    plain("a note").replace(b"Content-Type: text/plain", b"Content-Disposition: attachment; filename=n.txt\r\n"
                                                         b"Content-Type: text/plain", 1),
])
def test_a_message_that_is_one_attachment_gets_a_part_of_its_own(body: bytes) -> None:
    """The attachment goes down into the first part of a new multipart/mixed, its
    Content-* fields with it and byte for byte as it was; the footer follows in a part of
    its own; the other fields stay on top, once each. Filtered twice, it gets one footer."""
    original = message(body)
    footed = append_footer(original, FOOTER)
    assert footed.outcome == "added" and footed.data is not None
    top = parsed(footed.data)
    assert top.get_content_type() == "multipart/mixed"
    assert [top[name] for name in ("From", "Subject", "MIME-Version")] == ["Ann <ann@example.com>", "offer", "1.0"]
    assert len(top.get_all("MIME-Version") or []) == 1 and len(top.get_all("Content-Type") or []) == 1
    first, own = top.get_payload()  # type: ignore[misc]
    assert first.as_bytes(policy=email.policy.SMTP) == parsed(body).as_bytes(policy=email.policy.SMTP)
    assert [leaf for leaf in leaves(footed.data)] == [*leaves(body), ("text/plain", FOOTER_LF)]
    assert own.get_content_disposition() == "inline"
    assert append_footer(footed.data, FOOTER).outcome == "already"
    without_mime_version = original.replace(b"MIME-Version: 1.0\r\n", b"")
    assert parsed(append_footer(without_mime_version, FOOTER).data or b"")["MIME-Version"] == "1.0"


def test_bytes_a_charset_does_not_name_are_kept_as_they_were() -> None:
    """Latin-1 bytes in a part labelled UTF-8 are kept as they were, the footer written in
    UTF-8 after them. A part whose label names no charset (none, us-ascii, "default")
    but holds 8-bit bytes is taken for UTF-8 where its bytes are UTF-8, and labelled so;
    otherwise what its bytes are is not known, and only an ASCII footer is added to it."""
    mislabelled = message(entity("Content-Type: text/plain; charset=utf-8\n", b"Gr\xfc\xdfe\r\n"))
    footed = append_footer(mislabelled, FOOTER).data
    assert footed is not None
    assert parsed(footed).get_payload(decode=True) == (b"Gr\xfc\xdfe\r\n\r\n"
                                                       + FOOTER_LF.replace("\n", "\r\n").encode() + b"\r\n")
    for label in ("", "; charset=us-ascii", "; charset=default"):
        utf8 = append_footer(message(entity(f"Content-Type: text/plain{label}\n", "Grüße\r\n".encode())), FOOTER)
        assert utf8.data is not None and parsed(utf8.data).get_content_charset() == "utf-8"
        assert parsed(utf8.data).get_content().replace("\r\n", "\n") == f"Grüße\n\n{FOOTER_LF}\n"
        latin = message(entity(f"Content-Type: text/plain{label}\n", b"Gr\xfc\xdfe\r\n"))
        assert append_footer(latin, FOOTER).outcome == "charset"
        footed = append_footer(latin, SHORT).data  # (8-bit bytes in a 7bit part: now quoted-printable)
        assert footed is not None
        assert parsed(footed).get_payload(decode=True) == b"Gr\xfc\xdfe\r\n\r\nSent from example.com\r\n"


def test_a_cut_multipart_gets_it_in_its_first_part() -> None:
    cut = message(multipart("alternative", plain("Hi"), html_part("<p>Hi</p>"))).replace(b"--=_b--\r\n", b"")
    footed = append_footer(cut, SHORT).data
    assert footed is not None
    assert [content for _, content in leaves(footed)] == [
        "Hi\n\nSent from example.com\n", "<p>Hi</p>\n<br>\n<div>Sent from example.com</div>\n"]


def test_a_change_that_would_make_a_delimiter_is_not_made() -> None:
    """Quoted-printable breaks a line at 76 characters: text ending "...xx--b1" comes out
    with a line "--b1", which would end the first part there. The multipart is read again
    after the change, which is not made: in a multipart/mixed the footer goes in a part
    of its own instead, and an alternative is left alone."""
    quoted = entity("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n",
                    b"x" * 40 + b"=\r\n" + b"x" * 35 + b"--b1\r\n")
    original = message(multipart("mixed", quoted, PDF, boundary="b1"))
    assert [kind for kind, _ in leaves(original)] == ["text/plain", "application/pdf"]
    footed = append_footer(original, SHORT).data
    assert footed is not None and quoted in footed
    assert leaves(footed) == [*leaves(original), ("text/plain", "Sent from example.com")]
    alternative = message(multipart("alternative", quoted, boundary="b1"))
    assert append_footer(alternative, SHORT) == Footed(None, "malformed")


def test_a_dotted_capital_i_does_not_move_the_html_footer() -> None:
    """"İ".lower() is two characters: finding </body> in a lower-cased copy put the footer
    inside the tag, and again on every pass."""
    data = message(html_part("<html><body>İ</body></html>"))
    footed = append_footer(data, SHORT).data
    assert footed is not None
    assert leaves(footed)[0][1] == "<html><body>İ\n<br>\n<div>Sent from example.com</div>\n</body></html>\n"
    assert append_footer(footed, SHORT).outcome == "already"


def test_long_lines_and_bare_line_feeds() -> None:
    long_footer = Footer.from_text("x" * 1500)
    footed = append_footer(b"Subject: s\n\nhello\n", long_footer).data
    assert footed is not None and max(map(len, footed.split(b"\n"))) <= 76 + 1
    assert b"\r" not in footed and parsed(footed).get_content() == "hello\n\n" + "x" * 1500 + "\n"


# -- any message: built from parts a mail program writes, and any bytes at all ----------

charsets = st.sampled_from(["utf-8", "iso-8859-1", "us-ascii", "koi8-r", "windows-1252", "shift_jis"])
encodings = st.sampled_from(["7bit", "8bit", "quoted-printable", "base64"])


@st.composite
def text_parts(draw: st.DrawFn) -> bytes:
    charset = draw(charsets)
    words = draw(st.text(st.characters(codec=charset if charset != "us-ascii" else "ascii",
                                       exclude_categories=("Cs", "Cc")), max_size=80))
    lines = draw(st.lists(st.just(words) | st.text("abc <>&", max_size=20), max_size=4))
    encoding = draw(encodings)
    text = "\n".join(lines)
    if encoding == "7bit" and not text.isascii():
        encoding = "quoted-printable"
    if draw(st.booleans()):
        return html_part(f"<html><body>{text}</body></html>", charset, encoding)
    return plain(text, charset, encoding)


leaf_parts = text_parts() | st.just(PDF)
bodies = st.recursive(leaf_parts, lambda inner: st.builds(
    lambda kind, parts, unique: multipart(kind, *parts, boundary=f"b{unique.hex}"),
    st.sampled_from(["mixed", "alternative", "related"]), st.lists(inner, min_size=1, max_size=3),
    st.uuids()), max_leaves=6)  # (nested multiparts never share a boundary: RFC 2046 5.1.1)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies)
def test_any_message_gets_the_footer_once_and_keeps_the_rest(body: bytes) -> None:
    original = message(body)
    footed = append_footer(original, FOOTER)
    again = append_footer(footed.data, FOOTER) if footed.data is not None else footed
    assert again.outcome == ("already" if footed.data is not None else footed.outcome)
    if footed.data is None:
        return
    before, after = leaves(original), leaves(footed.data)
    own_part = ("text/plain", FOOTER_LF)
    added = len(after) - len(before)
    assert added in (0, 1)
    if added:  # a part of its own, somewhere: the leaves line up once it is taken out
        places = [index for index, leaf in enumerate(after) if leaf == own_part
                  and [kind for kind, _ in after[:index] + after[index + 1:]] == [kind for kind, _ in before]]
        assert places
        after = after[:places[0]] + after[places[0] + 1:]
    shown = 0
    for (kind, content), (new_kind, new_content) in zip(before, after):
        assert kind == new_kind
        if content == new_content:
            continue
        assert isinstance(content, str) and isinstance(new_content, str)
        if kind == "text/plain":
            assert new_content.startswith(content.rstrip("\n")) and FOOTER_LF in new_content
        else:
            assert content in (new_content.replace("\n" + FOOTER.html + "\n", "", 1),  # before </body>
                               new_content.replace("\n" + FOOTER.html, "", 1))  # at the end
        shown += 1
    assert shown + added >= 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000) | st.builds(lambda head, tail: head + tail, st.sampled_from(
    [message(multipart("mixed", plain("a"), PDF)), message(plain("x", "utf-8", "base64"))]), st.binary(max_size=200)))
def test_any_bytes_are_footed_or_left_and_never_raise(data: bytes) -> None:
    footed = append_footer(data, FOOTER)
    if footed.data is not None:
        assert footed.outcome == "added"
        assert append_footer(footed.data, FOOTER).outcome == "already"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies, st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=3)), max_size=4))
def test_a_damaged_message_is_footed_once_or_left(body: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(message(body))
    for place, new in edits:
        place %= len(data) + 1
        data[place:place + len(new)] = new
    footed = append_footer(bytes(data), FOOTER)
    if footed.data is not None:
        assert append_footer(footed.data, FOOTER).outcome == "already"
