"""Header blocks: split from the body, unfolded, capped, and their parameters read.

A hand-written reader rather than `email`: it is linear in the input (the standard
library's header parser is quadratic on some inputs, reliability.md 2.4), it caps the
header bytes it reads, and it never raises.
"""

from __future__ import annotations

import re

HEADER_BYTES_CAP = 100_000

_HEADER_END = re.compile(rb"\n\r?\n")
_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]{1,100})[ \t]*:")


def split_header_block(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body), split at the first empty line.

    `data` has LF line endings. A message that starts with a body line (no header at
    all) gets an empty header block.
    """
    if data.startswith(b"\n"):
        return b"", data[1:]
    if not _FIELD_NAME.match(data) and not data.startswith(b"From "):
        return b"", data
    match = _HEADER_END.search(data)
    if match is None:
        return data, b""
    return data[:match.start() + 1], data[match.end():]


def parse_header_block(block: bytes, facts: set[str]) -> list[tuple[str, bytes]]:
    """Unfolded (lower-case name, raw value) pairs in order; bad lines become facts."""
    if len(block) > HEADER_BYTES_CAP:
        facts.add("cap-header-bytes")
        block = block[:HEADER_BYTES_CAP]
    fields: list[tuple[str, bytes]] = []
    name: str | None = None
    value: list[bytes] = []
    for line in block.split(b"\n"):
        if not line:
            continue
        if line[0] in (0x20, 0x09):  # continuation of the previous field
            if name is not None:
                value.append(line)
            else:
                facts.add("header-continuation-orphan")
            continue
        if name is not None:
            fields.append((name, b" ".join(v.strip() for v in value)))
            name = None
        match = _FIELD_NAME.match(line)
        if match is None:
            if line.startswith(b"From ") and not fields:
                continue  # mbox separator line
            facts.add("header-malformed")
            continue
        name = match.group(1).decode("ascii").lower()
        value = [line[match.end():]]
    if name is not None:
        fields.append((name, b" ".join(v.strip() for v in value)))
    return fields


_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)')


def split_parameters(value: str) -> tuple[str, dict[str, str]]:
    """Content-Type style value: ('text/html', {'charset': 'utf-8', ...})."""
    main, _, _ = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(value):
        key = match.group(1).lower()
        raw = match.group(2)
        if raw.startswith('"'):
            raw = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
            raw = raw.replace('\\"', '"')
        if key.endswith("*"):  # RFC 2231: charset'lang'percent-encoded
            key = key.rstrip("*").split("*", 1)[0]
            charset, _, rest = raw.partition("'")
            _, _, encoded = rest.partition("'")
            raw = _percent_decode(encoded or raw, charset)
        elif "*" in key:
            key = key.split("*", 1)[0]
            params[key] = params.get(key, "") + raw
            continue
        params.setdefault(key, raw)
    return main.strip().lower(), params


def _percent_decode(text: str, charset: str) -> str:
    from urllib.parse import unquote_to_bytes

    from spamkit.message.decode import decode_text

    return decode_text(unquote_to_bytes(text), charset or "utf-8")
