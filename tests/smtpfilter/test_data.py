"""smtpfilter/data.py: the message after DATA, read from a real asyncio stream in pieces
of every size the stream's limit makes, against the plain line-by-line reading of
RFC 5321 4.5.2."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfilter.data import read_data

# lines as a mail program writes them: dots first, bare CR and LF inside, long runs
LINE = st.one_of(st.binary(max_size=40).map(lambda line: line.replace(b"\r\n", b"")),
                 st.sampled_from([b"", b".", b"..", b".x", b"\r", b"\n", b"\r.", b"x" * 300, b"." * 70]))


def stuffed(lines: list[bytes]) -> bytes:
    """The lines as a client sends them after DATA: a dot doubled at the start of a line,
    CRLF after each, and the line of one dot."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def read(sent: bytes, limit: int, size_limit: int | None, chunk: int) -> tuple[bytes | None, bytes]:
    """(what read_data gives, what is left in the stream after it) for `sent` arriving
    `chunk` bytes at a time through a stream whose limit is `limit`."""

    async def run() -> tuple[bytes | None, bytes]:
        reader = asyncio.StreamReader(limit=limit)

        async def arrive() -> None:
            for start in range(0, len(sent), chunk):
                reader.feed_data(sent[start:start + chunk])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeding = asyncio.create_task(arrive())
        content = await read_data(reader, size_limit)
        await feeding
        return content, await reader.read()

    return asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINE, max_size=12), limit=st.integers(2, 64), chunk=st.integers(1, 50),
       after=st.sampled_from([b"", b"QUIT\r\n", b"MAIL FROM:<a@example.org>\r\n.\r\n"]))
def test_any_lines_come_back_as_written_whatever_the_pieces(
        lines: list[bytes], limit: int, chunk: int, after: bytes) -> None:
    """Lines longer than the stream's limit come back whole (aiosmtpd refused them with
    500), dots unstuffed; what the client sent after the final dot (pipelined commands)
    is left for the session."""
    content, left = read(stuffed(lines) + after, limit, None, chunk)
    assert content == b"".join(line + b"\r\n" for line in lines)
    assert left == after


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(LINE, max_size=12), limit=st.integers(2, 64), size_limit=st.integers(1, 400))
def test_over_the_size_limit_gives_none_and_the_session_goes_on(
        lines: list[bytes], limit: int, size_limit: int) -> None:
    """The size counts the bytes as sent (dots doubled, the final dot not counted), as
    aiosmtpd counted them; the rest of a message too large is read up to its final dot."""
    sent = stuffed(lines)
    content, left = read(sent + b"QUIT\r\n", limit, size_limit, 7)
    if len(sent) - len(b".\r\n") > size_limit:
        assert content is None
    else:
        assert content == b"".join(line + b"\r\n" for line in lines)
    assert left == b"QUIT\r\n"


def test_one_line_of_a_megabyte_is_one_line() -> None:
    line = b"=" + b"x" * 1_000_000
    content, left = read(stuffed([b"Subject: one line", b"", line, b"..", b"end"]), 1001, 15_000_000, 65_536)
    assert content == b"Subject: one line\r\n\r\n" + line + b"\r\n..\r\nend\r\n"
    assert left == b""


def test_a_stream_that_ends_before_the_dot_raises() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"Subject: cut\r\n\r\nhalf a mess", 16, None, 5)
