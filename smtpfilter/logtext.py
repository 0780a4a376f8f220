"""Text a client chose (HELO, addresses, Message-ID, spamc's User, a file or virus name),
made safe to log or to put in an SMTP reply."""

from __future__ import annotations


def printable(text: str, limit: int = 200) -> str:
    """The text cut to `limit` characters, with anything not printable escaped, so that a
    log line stays one line of text a log reader can parse: a NUL or a vertical tab is
    written as \\x00, \\x0b; a byte that was not UTF-8 as \\udcff."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def reply_text(text: str, limit: int = 60) -> str:
    """The text fit for an SMTP reply line (RFC 5321 replies are ASCII): anything not
    printable ASCII as "?", cut to `limit` characters with "..." where it was cut."""
    shown = "".join(c if " " <= c <= "~" else "?" for c in text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."
