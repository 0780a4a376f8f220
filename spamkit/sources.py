"""Where messages come from on the command line: files, directories, Maildirs, mboxes, stdin.

Each source yields `SourceItem`s: a name to report, and either the bytes or the reason
they could not be read. A bad file never stops the others. A symbolic link named on the
command line is followed; one met inside a directory is reported, not followed, so that
nothing outside the directories given is read (and a link to a parent cannot loop).
"""

from __future__ import annotations

import errno
import functools
import io
import itertools
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from spamkit.stored import UnreadableStored, stored_message

MAX_FILE_BYTES = 32 << 20  # larger files are reported, not read
LINK_NOT_FOLLOWED = "a symbolic link: not followed inside a directory"

# An mbox separator: "From " sender and an asctime date, so that a body line starting
# with "From " (unescaped by a careless writer) does not split a message in two.
_MBOX_FROM = re.compile(rb"^From \S*\s+(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+\w{3}\s+\d{1,2}\s+\d", re.MULTILINE)


@dataclass(frozen=True)
class SourceItem:
    name: str
    data: bytes | None
    error: str | None = None
    path: Path | None = None  # the file, when the message is a whole file
    token_keys: Sequence[bytes] | None = None  # already tokenized (by the scanner): not analysed again
    key: bytes | None = None  # its message key, already worked out (with token_keys, the bytes
    # are not needed again: `spamkit evaluate` keeps only these of each message)
    byte_sample: bytes | None = None  # what a new byte model reads (bytemodel.byte_sample)


def leading_failures(items: Iterable[SourceItem]) -> tuple[list[SourceItem], Iterator[SourceItem] | None]:
    """The items that could not be read before the first that could, and every item from
    that one on; None for the second when not one could be read."""
    iterator = iter(items)
    failed = []
    for item in iterator:
        if item.data is None and item.key is None:
            failed.append(item)
        else:
            return failed, itertools.chain((item,), iterator)
    return failed, None


def iter_messages(paths: Iterable[str]) -> Iterator[SourceItem]:
    for path in paths:
        if path == "-":
            yield from _read_stdin(sys.stdin.buffer)
        else:
            yield from _iter_path(Path(path))


def _iter_path(path: Path, named: bool = True) -> Iterator[SourceItem]:
    """What a path holds: a directory's messages, a file's, or why not. A link is followed
    only when the path was `named` on the command line, not met inside a directory."""
    try:
        info = path.lstat()
    except OSError as error:
        yield SourceItem(str(path), None, _reason(error))
        return
    if stat.S_ISLNK(info.st_mode):
        if not named:  # (a directory entry that became a link since it was listed)
            yield SourceItem(str(path), None, LINK_NOT_FOLLOWED, path)
            return
        try:
            info = path.stat()
        except OSError as error:
            yield SourceItem(str(path), None, _reason(error))
            return
    if stat.S_ISDIR(info.st_mode):
        yield from _iter_directory(path)
    elif stat.S_ISREG(info.st_mode):
        yield from _read_file(path, follow=named)
    else:
        yield SourceItem(str(path), None, "not a regular file")


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _iter_directory(path: Path) -> Iterator[SourceItem]:
    """Maildir: cur/ and new/ (never tmp/). Anything else: its files, recursively."""
    if is_maildir(path):
        for sub in (path / "cur", path / "new"):
            for entry in sorted(os.scandir(sub), key=lambda e: e.name):
                if not entry.name.startswith("."):
                    yield from _read_entry(entry, recurse=False)
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as error:
        yield SourceItem(str(path), None, _reason(error))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        yield from _read_entry(entry, recurse=True)


def _read_entry(entry: os.DirEntry[str], recurse: bool) -> Iterator[SourceItem]:
    """A directory entry, by its own type (no stat): a file's messages; a link reported,
    never followed; and, when `recurse`, what anything else holds (a Maildir's cur/ and
    new/ hold nothing else to read)."""
    if entry.is_file(follow_symlinks=False):
        yield from _read_file(Path(entry.path))
    elif entry.is_symlink():
        yield SourceItem(entry.path, None, LINK_NOT_FOLLOWED, Path(entry.path))
    elif recurse:
        yield from _iter_path(Path(entry.path), named=False)


def _read_file(path: Path, follow: bool = False) -> Iterator[SourceItem]:
    """One file's bytes: open, fstat, and os.read to the end of the file. Unless `follow`,
    a symbolic link is not opened (one put in place of a listed file included).

    No buffered file object: iterating the corpus's training folders this way costs
    16.4 us a file against 22.5 (docs/decisions/0009).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        reason = LINK_NOT_FOLLOWED if error.errno == errno.ELOOP and not follow else _reason(error)
        yield SourceItem(str(path), None, reason, path)
        return
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            yield SourceItem(str(path), None, "not a regular file", path)
            return
        if info.st_size > MAX_FILE_BYTES:
            if os.pread(fd, 5, 0) == b"From ":  # an mbox archive: a message at a time
                with os.fdopen(os.dup(fd), "rb", buffering=1 << 20) as stream:
                    yield from _stream_mbox(str(path), stream, path)
            else:
                yield SourceItem(str(path), None, _too_large(), path)
            return
        data = _read_all(functools.partial(os.read, fd), info.st_size + 1)  # (+1: in case it grew)
    except OSError as error:
        yield SourceItem(str(path), None, _reason(error), path)
        return
    finally:
        os.close(fd)
    try:
        data = stored_message(data, MAX_FILE_BYTES)  # (a Maildir file Dovecot compressed)
    except UnreadableStored as error:
        yield SourceItem(str(path), None, str(error), path)
        return
    yield from _split_if_mbox(str(path), data, path)


def _read_all(read: Callable[[int], bytes], limit: int) -> bytes:
    """Up to `limit` bytes from `read` (os.read on a file, a pipe's read), until end of
    input: a read may return less than asked."""
    chunks: list[bytes] = []
    while limit > 0 and (chunk := read(limit)):
        chunks.append(chunk)
        limit -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _split_if_mbox(name: str, data: bytes, path: Path | None) -> Iterator[SourceItem]:
    """A file with more than one mbox separator is an mbox; otherwise one message."""
    if not data.startswith(b"From ") or b"\nFrom " not in data:
        yield SourceItem(name, data, None, path)
        return
    starts = [m.start() for m in _MBOX_FROM.finditer(data)]
    if len(starts) <= 1:
        yield SourceItem(name, data, None, path)
        return
    starts.append(len(data))
    for number, (begin, end) in enumerate(zip(starts, starts[1:]), start=1):
        yield SourceItem(f"{name}#{number}", _unquote_mbox(data[begin:end]))


def _read_stdin(stdin: BinaryIO) -> Iterator[SourceItem]:
    """Standard input as a file is read: a message, or an mbox, whole up to
    MAX_FILE_BYTES; a longer mbox a message at a time, anything else too large."""
    head = _read_all(stdin.read, MAX_FILE_BYTES + 1)
    if len(head) <= MAX_FILE_BYTES:
        yield from _split_if_mbox("-", head, None)
    elif head.startswith(b"From "):
        stream = io.BufferedReader(_Prepended(head, stdin), 1 << 20)
        del head  # (the stream lets it go as it is read)
        yield from _stream_mbox("-", stream, None)
    else:
        yield SourceItem("-", None, _too_large())


class _Prepended(io.RawIOBase):
    """What was read already, then the rest of the stream: stdin cannot seek back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:] if count < len(self._head) else memoryview(b"")
            return count
        chunk = self._rest.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def _stream_mbox(name: str, stream: BinaryIO | io.BufferedReader, path: Path | None
                 ) -> Iterator[SourceItem]:
    """An mbox larger than MAX_FILE_BYTES (an archive of years of spam), split as it is
    read: memory holds one message, not the file. A message over MAX_FILE_BYTES is
    reported and skipped; so is a line that long, read in pieces."""
    number, lines, size = 0, list[bytes](), 0
    while line := stream.readline(MAX_FILE_BYTES + 1):
        if line.startswith(b"From ") and _MBOX_FROM.match(line):
            if number:
                yield _mbox_message(name, number, lines, size)
            number, lines, size = number + 1, [line], len(line)
            continue
        size += len(line)
        if size <= MAX_FILE_BYTES:
            lines.append(line)
        elif lines:
            lines = []  # (too large: what it had is let go at once)
    if number:
        yield _mbox_message(name, number, lines, size)
    else:  # no separator after all: one message, too large
        yield SourceItem(name, None, _too_large(), path)


def _mbox_message(name: str, number: int, lines: list[bytes], size: int) -> SourceItem:
    if size > MAX_FILE_BYTES:
        return SourceItem(f"{name}#{number}", None, _too_large())
    return SourceItem(f"{name}#{number}", _unquote_mbox(b"".join(lines)))


_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def _unquote_mbox(data: bytes) -> bytes:
    return _QUOTED_FROM.sub(rb"\1", data)


def _too_large() -> str:
    return f"larger than {MAX_FILE_BYTES >> 20} MiB"


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
