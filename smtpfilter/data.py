"""The message after DATA, read as Postfix's smtpd reads it: lines of any length.

aiosmtpd answers a message with a line over 1,001 bytes with "500 Line too long", a
permanent refusal, so its sender gets a bounce. RFC 5321 sets 1,000 as the line limit,
but Postfix, Exim and qmail take longer lines (Postfix cuts them into records of 2,048
bytes and joins them again on delivery), and mail programs still send them: 6 of the
SpamAssassin corpus's 4,150 ham and 18 of its 1,896 spam have one. A filter in front of
Postfix has to take what Postfix takes.

A long line is read in pieces no longer than the stream's limit, so memory is bounded
by the message size limit, however the lines run. The result is what aiosmtpd gives for
a message without long lines: lines end at CRLF only (a bare CR or LF belongs to its
line), a leading dot is removed (RFC 5321 4.5.2), and a line of one dot ends the
message."""

from __future__ import annotations

import asyncio

END_OF_DATA = b".\r\n"


async def read_data(reader: asyncio.StreamReader, size_limit: int | None) -> bytes | None:
    """The message up to the line of one dot, with its dot-stuffing undone; None when
    the bytes as sent passed `size_limit` (0 or None: no limit). What follows the limit
    is still read and dropped, so the session can go on after a 552.

    Raises asyncio.IncompleteReadError when the stream ends before the dot."""
    pieces: list[bytes] = []
    received = 0
    at_line_start = True
    too_large = False
    while True:
        try:
            piece = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as overrun:
            # no CRLF within the stream's limit: take what surely holds none, the rest of
            # the line comes in the next pieces
            piece = await reader.readexactly(overrun.consumed)
        if at_line_start and piece == END_OF_DATA:
            break
        received += len(piece)  # (as sent: its dot-stuffing counted)
        if at_line_start and piece[:1] == b".":
            piece = piece[1:]
        at_line_start = piece[-2:] == b"\r\n"
        if too_large:
            continue
        if size_limit and received > size_limit:
            too_large = True
            pieces.clear()
            continue
        pieces.append(piece)
    return None if too_large else b"".join(pieces)
