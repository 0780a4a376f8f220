"""parse_message takes any bytes: the whole corpus, hand-made oddities and hypothesis."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tracemalloc
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.message import (
    ParseLimits,
    _multipart_spans,
    list_attachments,
    message_key,
    normalize_newlines,
    parse_message,
)
from spamkit.message.decode import decode_quoted_printable
from spamkit.message.headers import split_header_block
from spamkit.tokenizer import EmailTokenizer


def test_every_corpus_message_parses_without_parser_error(all_messages: list[CorpusMessage]) -> None:
    assert len(all_messages) == 6046
    for message in all_messages:
        parsed = parse_message(message.data)
        errors = [f for f in parsed.facts if f.startswith("parser-error")]
        assert not errors, (message.path, errors)
        assert parsed.headers, message.path


def _zip_of(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, name.encode() * 10)
    return out.getvalue()


@given(st.binary(max_size=4096))
def test_any_bytes_parse(data: bytes) -> None:
    parsed = parse_message(data)
    assert not [f for f in parsed.facts if f.startswith("parser-error")]
    EmailTokenizer().tokenize(parsed)
    listed = list_attachments(data, ParseLimits(max_message_bytes=len(data) + 1))
    assert not [f for f in listed.facts if f.startswith("parser-error")]


_HEADERS = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=XX\n",
    b"Content-Type: text/html; charset=bogus\n",
    b"Content-Type: text/plain; charset=\"unknown-8bit\"\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"Content-Transfer-Encoding: x-uuencode\n",
    b"Subject: =?utf-8?B?w6k=?= =?bogus?Q?a=FF?= =?utf-8?B?!!!?=\n",
    b"From: \"\n\n",
    b"To: a@b.c,,,;;;<>\n",
    b"Content-Type: message/rfc822\n",
])
_BODIES = st.sampled_from([
    b"--XX\nContent-Type: text/html\n\n<p style='display:none'>hidden</p>visible\n--XX--\n",
    b"--XX\n\n--XX\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\n",
    b"begin 644 x.exe\nM9F]O\n`\nend\n", b"=E9t=\n=ZZ", b"w6k=\n!!!\n", b"\x00\xff\xfe",
    b"<a href='http://1.2.3.4/x'>y</a><img alt='buy now' src=cid:x>",
    b"--XX\nContent-Type: application/zip; name*0*=utf-8''a%E2; name*1*=%82%AC.zip\n"
    b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(_zip_of("a.js", "inner.zip")),
    b"PK\x05\x06" + bytes(18), b"--XX\nContent-Type: text/plain; name==?utf-8?B?w6k=?=.exe\n\nx\n",
])


@given(st.lists(_HEADERS, max_size=6), st.lists(st.one_of(_BODIES, st.binary(max_size=200)), max_size=6))
def test_structured_garbage_parses(headers: list[bytes], bodies: list[bytes]) -> None:
    raw = b"".join(headers) + b"\n" + b"".join(bodies)
    parsed = parse_message(raw)
    assert not [f for f in parsed.facts if f.startswith("parser-error")]
    EmailTokenizer().tokenize(parsed)
    listed = list_attachments(raw, ParseLimits(max_message_bytes=len(raw) + 1))
    assert not [f for f in listed.facts if f.startswith("parser-error")]


def test_bare_lf_and_crlf_parse_the_same(all_messages: list[CorpusMessage]) -> None:
    tokenizer = EmailTokenizer()
    for message in all_messages[::50]:
        lf = message.data.replace(b"\r\n", b"\n")
        crlf = lf.replace(b"\n", b"\r\n")
        assert tokenizer.tokenize(parse_message(lf)) == tokenizer.tokenize(parse_message(crlf))
        assert message_key(lf) == message_key(crlf)


_ANY_MESSAGE_ID_LINE = re.compile(rb"^message-id[ \t]*:(.*(?:\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def _split_as_defined(data: bytes) -> tuple[bytes, bytes]:
    """Headers end at the first empty line ("\n\n" or "\n\r\n"); no field name first: no headers."""
    if data.startswith(b"\n"):
        return b"", data[1:]
    if not re.match(rb"[\x21-\x39\x3b-\x7e]{1,100}[ \t]*:", data) and not data.startswith(b"From "):
        return b"", data
    end = re.search(rb"\n\r?\n", data)
    return (data, b"") if end is None else (data[:end.start() + 1], data[end.end():])


def _message_key_as_defined(raw: bytes) -> bytes:
    """The learned-once key as first written: the seen tables of existing databases hold it."""
    head, body = _split_as_defined(normalize_newlines(raw))
    match = _ANY_MESSAGE_ID_LINE.search(head)
    message_id = b" ".join(match.group(1).split()) if match else b""
    return hashlib.blake2b(message_id + b"\x00" + body, digest_size=16).digest()


def test_message_key_never_changes(all_messages: list[CorpusMessage]) -> None:
    # a changed key would have every message learned before the change learned again
    assert message_key(b"Received: from x\nmessage-ID:  <abc@example.com>\n\tfolded\n"
                       b"Subject: hi\n\nbody line\n").hex() == "f5dbb26757f34b023c26888904c42695"
    assert message_key(b"Subject: no id\r\n\r\nbody line\r\n").hex() == "3d0ab931781971c4bd494083bda1e3ab"
    for message in all_messages:
        assert message_key(message.data) == _message_key_as_defined(message.data), message.path


_ID_PIECES = st.sampled_from([b"Message-ID:", b"message-id :", b"MESSAGE-ID:\t", b"X-Message-Id: ",
                              b"Message-Idx: ", b"<a@b>", b" ", b"\n", b"\r\n", b"\n\t", b"\r",
                              b"Subject: x", b"body", b"\x00", b"From a"])


@given(st.lists(_ID_PIECES, max_size=20).map(b"".join))
def test_message_key_as_defined_on_any_bytes(raw: bytes) -> None:
    assert message_key(raw) == _message_key_as_defined(raw)
    assert split_header_block(raw) == _split_as_defined(raw)


def test_rfc2047_and_bogus_charsets_decode() -> None:
    raw = (b"Subject: =?iso-8859-1?Q?Caf=E9?= =?utf-8?B?w6lsw6g=?=\n"
           b"From: =?x-no-such-charset?Q?Bob?= <bob@example.com>\n"
           b"Content-Type: text/plain; charset=bogus\n\ncaf\xe9 ol\xe9\n")
    parsed = parse_message(raw)
    assert parsed.header("subject") == "Caf\xe9\xe9l\xe8"
    assert "Bob" in (parsed.header("from") or "")
    assert "caf\xe9" in parsed.text[0]
    assert "charset-unknown" in parsed.facts


def test_transfer_encodings_decode_tolerantly() -> None:
    text = base64.b64encode("hello wörld".encode()).decode()
    raw = (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
           b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
           + text[:-2].encode() + b"*&^\n"
           b"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
           b"soft=\nbreak =C3=A9t=C3=A9\n"
           b"--b\nContent-Type: application/pdf; name=\"report.pdf\"\nContent-Transfer-Encoding: base64\n\n"
           + base64.b64encode(b"%PDF" * 300) + b"\n--b--\n")
    parsed = parse_message(raw)
    assert parsed.text[0].startswith("hello w")
    assert "softbreak" in parsed.text[1]
    assert parsed.attachments[0].content_type == "application/pdf"
    assert parsed.attachments[0].filename == "report.pdf"
    assert 1100 < parsed.attachments[0].size < 1300


def test_quoted_printable_drops_line_end_padding() -> None:
    """RFC 2045: white space at the end of an encoded line is padding, deleted when
    decoding (SpamAssassin's qp_decode does too); an encoded space (=20) is text, and
    so is white space before a soft line break."""
    assert decode_quoted_printable(b"Dear Sir, \t\nkept=20\r\nsoft =\nbreak \nend ") == \
        b"Dear Sir,\nkept \r\nsoft break\nend "


def _quoted_printable(data: bytes) -> bytes:
    """Every byte but printable ASCII and LF encoded (a CR as =0D before its LF)."""
    return b"".join(bytes([byte]) if 33 <= byte <= 126 and byte != 61 or byte == 10 else b"=%02X" % byte
                    for byte in data)


# (no surrogates: a line is text a mailer encodes as UTF-8)
_TEXT_LINES = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                               max_size=40), min_size=1, max_size=8)


def _text_part(content_type: bytes, encoding: bytes, body: bytes) -> bytes:
    return (b"Subject: x\nMIME-Version: 1.0\nContent-Type: " + content_type + b"; charset=utf-8\n"
            b"Content-Transfer-Encoding: " + encoding + b"\n\n" + body)


@given(_TEXT_LINES, st.sampled_from([b"text/plain", b"text/html"]))
def test_encoded_crlf_line_ends_give_the_text_of_lf_ones(lines: list[str], content_type: bytes) -> None:
    """A text part base64- or QP-encoded with CRLF line ends (as Windows mailers encode
    them) is the same text as one with LF: SpamAssassin decodes them so, and its HTML
    length, rawbody and `$` rules read that (HTML_SHORT_LINK_IMG_1/2 differed on two
    corpus messages)."""
    text = "\n".join(lines).encode("utf-8") + b"\n"
    lf = parse_message(_text_part(content_type, b"base64", base64.encodebytes(text)))
    as_windows = text.replace(b"\n", b"\r\n")
    for encoded in (_text_part(content_type, b"base64", base64.encodebytes(as_windows)),
                    _text_part(content_type, b"quoted-printable", _quoted_printable(as_windows))):
        crlf = parse_message(encoded)
        assert (crlf.raw_text, crlf.text, crlf.html_sources) == (lf.raw_text, lf.text, lf.html_sources)


def test_uuencoded_block_becomes_an_attachment() -> None:
    raw = b"Subject: x\n\nsee attached\nbegin 644 cat.txt\n#8V%T\n`\nend\n"
    parsed = parse_message(raw)
    assert parsed.attachments[0].filename == "cat.txt"
    assert parsed.attachments[0].size == 3
    assert "see attached" in parsed.text[0]


def test_file_names_are_read_as_mail_programs_read_them() -> None:
    """RFC 2231 sections joined in their numbers' order and decoded once (a character
    may straddle two), RFC 2047 words in a name undone (Outlook and Gmail write them),
    and a Content-Type name that differs from the filename kept beside it. The first
    section alone was read before: invoice.exe was "inv"."""
    def part(params: bytes, disposition: bytes = b"") -> bytes:
        return (b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream"
                + params + b"\n" + disposition + b"\nMZ\n--b--\n")

    cases = {
        b"; name*0*=utf-8''inv; name*1*=oice.exe": ("invoice.exe", ()),
        b"; name*1=ce.exe; name*0=invoi": ("invoice.exe", ()),
        b"; name*0*=utf-8''%E2%82; name*1*=%AC.exe": ("\u20ac.exe", ()),
        b"; name=\"x.pdf\"; name*=utf-8''x%2Eexe": ("x.exe", ()),
        b"; name=\"=?UTF-8?B?aW52b2ljZS5leGU=?=\"": ("invoice.exe", ()),
        b"; name*0=inv; name*" + b"9" * 5000 + b"=oice.exe": ("invoice.exe", ()),  # (int() refuses 5,000 digits)
    }
    for params, (filename, others) in cases.items():
        (attachment,) = parse_message(part(params)).attachments
        assert (attachment.filename, attachment.other_names) == (filename, others), params
    (attachment,) = parse_message(part(b"; name=\"a.exe\"",
                                       b"Content-Disposition: attachment; filename=\"a.pdf\"\n")).attachments
    assert (attachment.filename, attachment.other_names) == ("a.pdf", ("a.exe",))


def test_list_attachments_sees_every_file_a_mail_program_could_save() -> None:
    """What the blocked-extensions check reads: a text part with a name, every
    uuencoded file, the members of a zip (found by its first bytes, whatever it is
    called), and parts past the scoring cap."""
    raw = (b"Content-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: image/jpeg; name=big.jpg\n\n" + b"\xff" * 600_000 + b"\n"
           b"--b\nContent-Type: text/plain; name=notes.exe\n\nMZ\n"
           b"--b\nContent-Type: text/plain\n\nbegin 644 one.txt\n#8V%T\n`\nend\nbegin 644 two.scr\n#8V%T\n`\nend\n"
           b"--b\nContent-Type: application/octet-stream; name=photos.dat\nContent-Transfer-Encoding: base64\n\n"
           + base64.encodebytes(_zip_of("docs/a.js", "b.txt")) + b"--b--\n")
    assert [a.filename for a in parse_message(raw).attachments] == ["big.jpg"]  # scoring stops at 500 KB
    listed = list_attachments(raw, ParseLimits(max_message_bytes=len(raw)))
    assert [(a.filename, a.members) for a in listed.attachments] == [
        ("big.jpg", ()), ("notes.exe", ()), ("one.txt", ()), ("two.scr", ()), ("photos.dat", ("docs/a.js", "b.txt"))]


def test_uuencoded_files_count_against_the_parts_cap() -> None:
    """Each uuencoded file is a file to check, and a part against the cap: 20,000 of them
    in one text are more than the attachment check looks through, as 20,000 MIME parts
    would be (it refuses such mail as uncheckable)."""
    raw = b"Subject: files\n\n" + b"begin 644 a.txt\n`\nend\n" * 20_000
    limits = ParseLimits(max_message_bytes=len(raw), max_parts=10_000)
    listed = list_attachments(raw, limits)
    assert "cap-mime-parts" in listed.facts
    assert [a.filename for a in listed.attachments] == ["a.txt"] * (10_000 - 1)  # (the message is a part)
    few = list_attachments(raw[:2_000], limits)
    assert "cap-mime-parts" not in few.facts and len(few.attachments) == raw[:2_000].count(b"begin ")


def test_one_messages_archives_are_unpacked_against_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two gzipped tars in one message, and room to unpack one: the second's members are
    not read, its name is, and that is said."""
    import gzip
    import tarfile

    import spamkit.message as message_module
    from spamkit.message.archives import UnpackBudget

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("run.js")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    packed = gzip.compress(out.getvalue(), mtime=0)
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n" + b"".join(
        b"--b\nContent-Type: application/gzip; name=%s.tar.gz\nContent-Transfer-Encoding: base64\n\n" % name
        + base64.encodebytes(packed) for name in (b"one", b"two")) + b"--b--\n"
    whole = list_attachments(raw, ParseLimits())
    assert [a.members for a in whole.attachments] == [("one.tar", "one.tar/run.js"), ("two.tar", "two.tar/run.js")]
    monkeypatch.setattr(message_module, "UnpackBudget", lambda: UnpackBudget(len(out.getvalue())))
    tight = list_attachments(raw, ParseLimits())
    assert [a.members for a in tight.attachments] == [("one.tar", "one.tar/run.js"), ("two.tar",)]
    assert "archive-nested-unread" in tight.facts and "archive-nested-unread" not in whole.facts


def test_html_keeps_visible_invisible_urls_and_alt_apart() -> None:
    html = (b"Content-Type: text/html\n\n<html><body>Buy <b>V</b>iagra"
            b"<div style='display:none'>poison words</div>"
            b"<a href=\"http://evil.example.com/buy?x=1\">here</a>"
            b"<img src='http://img.example.net/a.gif' alt='cheap pills'><!-- secret --></body></html>")
    parsed = parse_message(html)
    assert "Viagra" in parsed.text[0]
    assert "poison" not in parsed.text[0]
    assert "poison words" in parsed.invisible[0]
    assert "http://evil.example.com/buy?x=1" in parsed.urls
    assert "cheap pills" in parsed.alt_text


def test_caps_are_facts_not_errors() -> None:
    limits = ParseLimits()
    nested = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
                      for i in range(1000))
    many = b"Content-Type: multipart/mixed; boundary=z\n\n" + b"--z\n\nx\n" * 100_000 + b"--z--\n"
    stuffed = b"To: " + b";" * 200_000 + b"\nSubject: hi\n\nbody\n"
    cases = {"cap-mime-depth": nested, "cap-mime-parts": many, "cap-header-bytes": stuffed,
             "cap-message-bytes": b"Subject: big\n\n" + b"x" * (limits.max_message_bytes + 10)}
    for fact, raw in cases.items():  # (how long each takes is tests/fuzz/pumped.py's to time)
        assert fact in parse_message(raw).facts


def test_a_nested_boundary_that_extends_the_outer_one_is_not_the_outer_one() -> None:
    """Outlook Express names a nested multipart's boundary after its parent's, plus "AA":
    "--outerAA" lines belong to the inner part (RFC 2046: a delimiter line is the
    delimiter alone, or with "--", then white space only)."""
    raw = (b'Content-Type: multipart/related; boundary="----=_Next"\n\n'
           b'------=_Next\nContent-Type: multipart/alternative;\n\tboundary="----=_NextAA"\n\n\n'
           b"------=_NextAA\nContent-Type: text/html\n\n<p>Hello <b>there</b></p>\n"
           b"------=_NextAA--  \n------=_Next--\n")
    parsed = parse_message(raw)
    assert parsed.content_types == ["multipart/related", "multipart/alternative", "text/html"]
    assert not parsed.facts & {"mime-missing-boundary", "mime-unterminated", "header-malformed"}
    assert [text.strip() for text in parsed.text] == ["Hello there"] and parsed.html_sources
    # a line that only begins with the delimiter is part of the text
    text = b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\none\n--bx\ntwo\n--b--\n'
    assert parse_message(text).text == ["one\n--bx\ntwo"]


def _parts_as_defined(body: bytes, delimiter: bytes) -> tuple[list[bytes], bool, bytes] | None:
    """RFC 2046 read line by line: (parts, closed, epilogue), None without a delimiter line."""
    lines = body.split(b"\n")
    delimiters = [i for i, line in enumerate(lines)
                  if line.startswith(delimiter) and line[len(delimiter):].rstrip() in (b"", b"--")]
    if not delimiters:
        return None
    parts: list[bytes] = []
    for n, i in enumerate(delimiters):
        if lines[i][len(delimiter):].rstrip() == b"--":
            return parts, True, b"\n".join(lines[i + 1:])
        if i == len(lines) - 1:  # the delimiter ends the body: no part after it
            return parts, False, b""
        following = delimiters[n + 1] if n + 1 < len(delimiters) else len(lines)
        parts.append(b"\n".join(lines[i + 1:following]))
    return parts, False, b""


@given(st.lists(st.sampled_from([b"--b", b"--b--", b"--bb", b"\n", b"x", b" ", b"\t", b"-", b"b", b"\r"]),
                max_size=30).map(b"".join),
       st.sampled_from([b"", b"\n", b"x", b"--b\n"]), st.sampled_from([b"", b"\n--b\n", b"x"]),
       st.integers(1, 6))
def test_multipart_spans_are_the_parts_as_defined(body: bytes, before: bytes, after: bytes, limit: int) -> None:
    """The walker reads parts in place, as spans of the message: the same parts, up to
    the number the parts cap leaves, whether it closes and where its epilogue starts,
    and nothing before or after the body they are read from."""
    data = before + body + after
    found = _multipart_spans(data, len(before), len(before) + len(body), b"--b", limit)
    expected = _parts_as_defined(body, b"--b")
    if found is None or expected is None:
        assert found is expected
        return
    parts, closed, epilogue_start = found
    assert ([data[start:end] for start, end in parts], closed, data[epilogue_start:len(before) + len(body)]) \
        == (expected[0][:limit], *expected[1:])


def test_nesting_is_read_in_place_not_copied_at_each_level() -> None:
    """99 nested multiparts (or message/rfc822 parts) around 2 MB, read by the attachment
    check, which takes the whole message: each level held its own copy of the rest of the
    message (400 MB at the peak); a leaf's bytes are the only copy now."""
    whole = ParseLimits(max_message_bytes=10**9, max_parts=10_000, max_boundary_length=10**9)
    multiparts = b"Content-Type: multipart/mixed; boundary=B0\n\n" + b"".join(
        b"--B%d\nContent-Type: multipart/mixed; boundary=B%d\n\n" % (i, i + 1) for i in range(99)) \
        + b"--B99\nContent-Type: application/octet-stream; name=a.exe\n\n" + b"x" * 2_000_000
    messages = b"Content-Type: message/rfc822\n\n" * 99 \
        + b"Content-Type: application/octet-stream; name=a.exe\n\n" + b"x" * 2_000_000
    for raw in (multiparts, messages):
        tracemalloc.start()
        try:
            listing = list_attachments(raw, whole)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [(a.filename, a.size) for a in listing.attachments] == [("a.exe", 2_000_000)]
        assert peak < 3 * len(raw)


def test_five_megabyte_single_line_parses() -> None:
    raw = b"Subject: long\n\n" + b"A" * 5_000_000
    tokens = EmailTokenizer().tokenize(parse_message(raw))
    assert "fact:cap-message-bytes" in tokens


def test_message_key_follows_message_id_and_body_only() -> None:
    one = b"Received: from a\nMessage-ID: <1@x>\nSubject: s\n\nbody\n"
    relayed = b"Received: from b\nReceived: from a\nMessage-ID: <1@x>\nSubject: s\n\nbody\n"
    other = b"Message-ID: <2@x>\nSubject: s\n\nbody\n"
    assert message_key(one) == message_key(relayed)
    assert message_key(one) != message_key(other)
    assert len(message_key(one)) == 16


@given(st.lists(st.sampled_from(["http", "https://", "://", "www.", "ww", "w.", "h", "a.b",
                                 " ", "\n", "<", "x" * 5, "HTTP://", "é"]), max_size=40))
def test_text_url_scan_equals_the_regex(pieces: list[str]) -> None:
    from spamkit.message import _TEXT_URL, _TEXT_URL_ANY_CASE, text_urls

    text = "".join(pieces)
    expected = (_TEXT_URL_ANY_CASE if "HTTP" in text else _TEXT_URL).findall(text)
    assert text_urls(text) == expected
