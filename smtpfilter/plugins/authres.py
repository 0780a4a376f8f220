"""Authentication-Results headers (RFC 8601): written by the dkim and dmarc filters.

A receiver must not let a sender speak in its name: an Authentication-Results header that
arrives carrying this server's authserv-id is removed before ours is added (RFC 8601 5),
so the rules read only what this server found.
"""

from __future__ import annotations

import re

from smtpfilter.headers import without_fields

_UNSAFE = re.compile(r"[^\x21-\x7e ]|[()\\\";]")


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
    ours = authserv_id.lower().encode()
    return without_fields(data, "Authentication-Results",
                          lambda value: value.split(b";", 1)[0].strip().lower().split(b" ")[0] == ours)
