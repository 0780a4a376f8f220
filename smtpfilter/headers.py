"""Header fields of a message as the filter holds it (CRLF line ends): each field with
its continuation lines, and removing fields.

A filter that adds a header which later stages, the rules or the users trust must first
remove any field of that name that arrived with the message: otherwise a sender could
write it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_FIELD_START = re.compile(rb"(?m)^(?=[^ \t])")


def without_fields(data: bytes, name: str, matches: Callable[[bytes], bool] | None = None) -> bytes:
    """The message without its header fields called `name` (any case), or only those whose
    value `matches` says; continuation lines go with their field. The body is untouched."""
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
    wanted = name.lower().encode()
    if wanted not in head.lower():
        return data
    kept = []
    for field in field_blocks(head):
        field_name, _, value = field.partition(b":")
        if field_name.strip().lower() == wanted and (matches is None or matches(value)):
            continue
        kept.append(field)
    return b"".join(kept) + rest


def field_blocks(head: bytes) -> list[bytes]:
    """A header block's fields, each with its continuation lines and line breaks, as
    written (a lone CR stays inside its line)."""
    return [field for field in _FIELD_START.split(head) if field]
