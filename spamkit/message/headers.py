"""Header blocks: split from the body, unfolded, capped, and their parameters read.

A hand-written reader rather than `email`: it is linear in the input (the standard
library's header parser is quadratic on some inputs, reliability.md 2.4), it caps the
header bytes it reads, and it never raises.
"""

from __future__ import annotations

import re

from spamkit.message.decode import decode_text

HEADER_BYTES_CAP = 100_000

_HEADER_END = re.compile(rb"\n\r?\n")
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]{1,100})[ \t]*:")  # matched where a block starts


def split_header_block(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body), split at the first empty line.

    `data` has LF line endings. A message that starts with a body line (no header at
    all) gets an empty header block.
    """
    head_end, body_start = header_block_span(data, 0, len(data))
    return data[:head_end], data[body_start:]


def header_block_span(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(where the header block ends, where the body starts) in data[start:end], split as
    split_header_block splits it: the MIME walker reads every part in place, so that
    nested parts do not each copy the message."""
    if data.startswith(b"\n", start, end):
        return start, start + 1
    if not _FIELD_NAME.match(data, start, end) and not data.startswith(b"From ", start, end):
        return start, start
    match = _HEADER_END.search(data, start, end)
    if match is None:
        return end, end
    return match.start() + 1, match.end()


_FOLD = re.compile(r"\n[ \t]+")
_FIELD = re.compile(r"^([\x21-\x39\x3b-\x7e]{1,100})[ \t]*:[ \t]*(.*)$", re.MULTILINE)


def parse_header_block(block: bytes, facts: set[str], keep_case: bool = False) -> list[tuple[str, str]]:
    """Unfolded (lower-case name, decoded value) pairs in order; bad lines become facts.

    With `keep_case` the names are as written (for rules that test the whole header).

    One decode, one unfold and one findall over the whole block: a loop per header
    line cost a quarter of all parsing time. Values keep RFC 2047 words encoded;
    `decode_rfc2047` undoes them where wanted.
    """
    if len(block) > HEADER_BYTES_CAP:
        facts.add("cap-header-bytes")
        block = block[:HEADER_BYTES_CAP]
    text = _decoded(block, facts)
    if text[:1] in (" ", "\t"):
        facts.add("header-continuation-orphan")
    fields, lines = _header_fields(text, keep_case)
    if len(fields) != lines and not (len(fields) == lines - 1 and text.startswith("From ")):
        facts.add("header-malformed")
    return fields


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """Every field of a header block (LF line ends) as parse_header_block reads it, with
    no cap and no facts: for the SMTP headers check, which must see a field repeated
    past the 100 KB that scoring reads."""
    return _header_fields(_decoded(block, set()), False)[0]


def _decoded(block: bytes, facts: set[str]) -> str:
    if block.isascii():
        return block.decode("ascii")
    facts.add("header-8bit")
    return decode_text(block, None)


def header_fields_py(text: str, keep_case: bool) -> tuple[list[tuple[str, str]], int]:
    """(fields, lines) of a decoded header block: unfolded, then each line that starts
    with a field name and a colon as (name, right-stripped value), the name lower-cased
    unless keep_case; and the unfolded block's line count."""
    text = _FOLD.sub(" ", text)
    fields = _FIELD.findall(text)
    lines = text.count("\n") + (not text.endswith("\n"))
    if keep_case:
        return [(name, value.rstrip()) for name, value in fields], lines
    return [(name.lower(), value.rstrip()) for name, value in fields], lines


try:  # the same in C (spamkit/message/_scans.c), 3x faster
    from spamkit.message._scans import header_fields as _header_fields
except ImportError:  # built without a compiler
    _header_fields = header_fields_py


_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)')


def split_parameters(value: str) -> tuple[str, dict[str, str]]:
    """Content-Type style value: ('text/html', {'charset': 'utf-8', ...}).

    RFC 2231 values are put together as a mail program does: `name*=utf-8''a%20b`, and
    sections `name*0*=utf-8''inv`, `name*1*=oice.exe` joined in the order of their numbers
    and decoded once (a character may straddle two). Such a value is the one taken over
    a plain `name=` (a program that reads RFC 2231 shows it); otherwise the first wins.
    Reading only the first section once let `invoice.exe` through the attachment check
    as `inv`."""
    main, _, _ = value.partition(";")
    params: dict[str, str] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for match in _PARAM.finditer(value):
        key = match.group(1).lower()
        raw = match.group(2)
        if raw.startswith('"'):
            raw = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
            raw = raw.replace('\\"', '"')
        if "*" not in key:
            params.setdefault(key, raw)
            continue
        name, _, number = key.partition("*")  # name*, name*N or name*N*
        encoded = key.endswith("*")
        number = number.rstrip("*")  # (int() refuses over 4,300 digits: a longer one sorts last)
        place = int(number) if number.isdigit() and len(number) <= 9 else (10**9 if number else 0)
        sections.setdefault(name, []).append((place, encoded, raw))
    for name, parts in sections.items():
        params[name] = _join_sections(sorted(parts, key=lambda part: part[0]))
    return main.strip().lower(), params


def _join_sections(parts: list[tuple[int, bool, str]]) -> str:
    """One RFC 2231 value from its sections, in order: the first encoded one may begin
    with charset'language'; encoded ones are percent-encoded bytes in that charset."""
    from urllib.parse import unquote_to_bytes

    charset = ""
    data = bytearray()
    for position, (_, encoded, raw) in enumerate(parts):
        if not encoded:
            data += raw.encode("utf-8", "replace")
            continue
        if position == 0 and raw.count("'") >= 2:
            charset, _, rest = raw.partition("'")
            raw = rest.partition("'")[2]
        data += unquote_to_bytes(raw)
    return decode_text(bytes(data), charset or "utf-8")
