"""Tolerant decoding: charsets, transfer encodings and RFC 2047 encoded words.

Real mail lies about its charset and mangles its base64. Every function here returns
something usable and never raises; what went wrong is reported through the `facts`
set the caller passes in, so the tokenizer can turn damage into evidence.
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

# Labels that mean "we do not know" or are common misspellings; they decode as UTF-8
# when that works and as Windows-1252 otherwise, which is what mail clients do.
_UNKNOWN_CHARSETS = frozenset({"", "unknown", "unknown-8bit", "x-unknown", "default", "us-ascii"})
_ALIASES = {"uft-8": "utf-8", "utf8": "utf-8", "cp-850": "cp850", "iso-8859-8-i": "iso-8859-8",
            "ks_c_5601-1987": "euc-kr", "x-mac-roman": "mac-roman", "gb2312": "gb18030",
            "gbk": "gb18030", "iso-8859-1": "cp1252", "latin1": "cp1252", "ascii": "us-ascii"}


@lru_cache(maxsize=256)
def text_codec(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None when it is unknown or not text."""
    name = label.strip().strip("\"'").lower()
    name = _ALIASES.get(name, name)
    if name in _UNKNOWN_CHARSETS:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    # bytes-to-bytes codecs (base64_codec, zlib_codec, ...) are not text encodings
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_text(data: bytes, charset: str | None, facts: set[str] | None = None) -> str:
    """Bytes to text with the declared charset, falling back rather than failing."""
    codec = text_codec(charset) if charset else None
    if codec is not None:
        try:
            return data.decode(codec, "replace")
        except Exception:  # a codec with a bug of its own must not stop the parse
            if facts is not None:
                facts.add("charset-failed")
    elif charset and charset.strip().strip("\"'").lower() not in _UNKNOWN_CHARSETS:
        if facts is not None:
            facts.add("charset-unknown")
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def decode_base64(data: bytes, facts: set[str]) -> bytes:
    """Base64 that tolerates junk characters, missing padding and trailing garbage."""
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        pass
    facts.add("base64-damaged")
    clean = _B64_JUNK.sub(b"", data)
    clean = clean[: len(clean) - len(clean) % 4]
    try:
        return binascii.a2b_base64(clean)
    except (binascii.Error, ValueError):
        return b""


# white space at a line's end is padding a gateway may have added: RFC 2045 says a
# decoder deletes it, and SpamAssassin does (binascii.a2b_qp keeps it)
_QP_PADDING = re.compile(rb"[ \t]+(?=\r?\n)")


def _without_padding(data: bytes) -> bytes:
    """Each line's end padding gone (not the last line's: it has no line break). Line by
    line, as the parser gives LF lines: 8x faster than the regex, which tries every space."""
    if b"\r" in data:
        return _QP_PADDING.sub(b"", data)
    *lines, last = data.split(b"\n")
    return b"\n".join([line.rstrip(b" \t") for line in lines] + [last])


def decode_quoted_printable(data: bytes) -> bytes:
    if b" \n" in data or b"\t\n" in data or b" \r\n" in data or b"\t\r\n" in data:
        data = _without_padding(data)
    try:
        return binascii.a2b_qp(data)
    except (binascii.Error, ValueError):
        return data


_UU_BEGIN = re.compile(rb"^begin [0-7]{3,4} (.+)$", re.MULTILINE)


def decode_uuencode(data: bytes, facts: set[str]) -> tuple[bytes, str | None]:
    """Decode the first uuencoded block of `data`; returns (bytes, file name)."""
    match = _UU_BEGIN.search(data)
    name = match.group(1).strip().decode("latin-1") if match else None
    lines = data[match.end():].split(b"\n") if match else data.split(b"\n")
    out = bytearray()
    for line in lines:
        line = line.rstrip(b"\r")
        if line == b"end" or not line:
            if line == b"end":
                break
            continue
        try:
            out += binascii.a2b_uu(line)
        except (binascii.Error, ValueError):
            # the classic workaround for encoders that padded lines wrongly
            try:
                nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
                out += binascii.a2b_uu(line[:nbytes])
            except (binascii.Error, ValueError, IndexError):
                facts.add("uuencode-damaged")
    return bytes(out), name


def decode_transfer(data: bytes, encoding: str, facts: set[str]) -> bytes:
    """Undo a Content-Transfer-Encoding; unknown encodings pass through unchanged."""
    encoding = encoding.strip().lower()
    if encoding == "base64":
        return decode_base64(data, facts)
    if encoding == "quoted-printable":
        return decode_quoted_printable(data)
    if encoding in ("x-uuencode", "uuencode", "x-uue"):
        return decode_uuencode(data, facts)[0]
    if encoding not in ("", "7bit", "8bit", "binary"):
        facts.add("cte-unknown")
    return data


_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)[ \t]+(=\?)")


def decode_rfc2047(value: str, facts: set[str]) -> str:
    """Decode =?charset?B|Q?...?= words in a header value; anything odd stays as written."""
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1\2", value)  # white space between encoded words is dropped

    def replace(match: re.Match[str]) -> str:
        charset, kind, payload = match.group(1), match.group(2).lower(), match.group(3)
        charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
        raw = payload.encode("latin-1", "replace")
        if kind == "b":
            raw = decode_base64(raw, facts)
        else:
            raw = decode_quoted_printable(raw.replace(b"_", b" "))
        return decode_text(raw, charset, facts)

    facts.add("header-encoded")
    return _ENCODED_WORD.sub(replace, value)
