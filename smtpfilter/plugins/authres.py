"""Authentication-Results headers (RFC 8601): written by the dkim and dmarc filters.

A receiver must not let a sender speak in its name: an Authentication-Results header that
arrives carrying this server's authserv-id is removed before ours is added (RFC 8601 5),
so the rules read only what this server found.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^\x21-\x7e ]|[()\\\";]")
_FIELD_START = re.compile(rb"(?m)^(?=[^ \t])")


def clean(text: str, limit: int = 200) -> str:
    """Text safe inside a header's comment or value: no line break, quote, parenthesis or
    semicolon. What a sender or a domain's owner chose goes through this."""
    return _UNSAFE.sub("_", text)[:limit]


def header(authserv_id: str, results: list[str]) -> bytes:
    """One Authentication-Results field with a result per line ("dkim=pass header.d=...")."""
    body = ";\r\n\t".join([authserv_id, *results]) if results else f"{authserv_id}; none"
    return f"Authentication-Results: {body}\r\n".encode("utf-8", "replace")


def without_ours(data: bytes, authserv_id: str) -> bytes:
    """The message without the Authentication-Results fields that claim `authserv_id`."""
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
    if b"authentication-results" not in head.lower():
        return data
    ours = authserv_id.lower().encode()
    kept = []
    for field in _FIELD_START.split(head):
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"authentication-results" \
                and value.split(b";", 1)[0].strip().lower().split(b" ")[0] == ours:
            continue
        kept.append(field)
    return b"".join(kept) + rest
