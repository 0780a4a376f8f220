"""The dump format: a versioned, line-oriented text file any backend writes and reads.

    spamkit-dump 1
    meta <name> <value>                      (nspam, nham, tokenizer, last_expire, bytemodel, ...)
    token <16 hex digits> <spam> <ham> <day>
    seen <32 hex digits> <spam|ham> <day> [<byte model step>]
    event <48 hex digits: message key and time> <JSON record>
    end <number of token lines> <number of seen lines> [<number of event lines>]

Lines starting with # are comments. The `end` line lets a restore tell a complete dump
from a truncated one; a restore that finds any error changes nothing.
docs/dump-format.md describes it for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import IO

from spamkit.bytemodel import META_NAME as BYTE_MODEL_META
from spamkit.bytemodel import META_SERIAL as BYTE_MODEL_SERIAL
from spamkit.bytemodel import RATE, ByteModel
from spamkit.errors import DumpError
from spamkit.store.base import Label, TokenRecord

FORMAT_VERSION = 1
MAGIC = "spamkit-dump"
_U32 = 1 << 32  # counts and days are stored as unsigned 32-bit numbers
# meta records every reader takes for numbers: a dump must not restore them as anything else
NUMERIC_META = frozenset({"nspam", "nham", "created", "last_expire", "last_expire_removed",
                          "last_seen_expire", "last_seen_expire_removed"})


@dataclass(frozen=True)
class SeenRecord:
    key: bytes
    label: Label
    day: int
    byte_step: float = 0.0  # the byte model's step on the message, if it took one


def write_dump(out: IO[str], meta: Mapping[str, object], tokens: Iterable[TokenRecord],
               seen: Iterable[SeenRecord], events: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """The dump of a store's contents. Meta values that are empty or hold a space (which a
    `meta` line cannot carry) are left out. The totals are always written: a store that
    never committed has none, and the same contents must give the same dump, whichever
    backend and history made them."""
    out.write(f"{MAGIC} {FORMAT_VERSION}\n")
    named = {"nspam": 0, "nham": 0, **meta}
    for name, value in sorted(named.items()):
        if str(value) and " " not in str(value):
            out.write(f"meta {name} {value}\n")
    ntokens = nseen = 0
    for record in tokens:
        out.write(f"token {record.key.hex()} {record.spam} {record.ham} {record.day}\n")
        ntokens += 1
    for mark in seen:
        step = f" {mark.byte_step!r}" if mark.byte_step else ""
        out.write(f"seen {mark.key.hex()} {mark.label.value} {mark.day}{step}\n")
        nseen += 1
    nevents = 0
    for key, event in events:
        out.write(f"event {key.hex()} {event.decode()}\n")
        nevents += 1
    out.write(f"end {ntokens} {nseen} {nevents}\n")


class DumpReader:
    """Reads a dump, validating as it goes; raises DumpError naming the line."""

    def __init__(self, source: IO[str]) -> None:
        self.source = source
        self._line_number = 0  # the last line read whole
        self.meta: dict[str, str] = {}
        self.tokens: list[TokenRecord] = []
        self.seen: list[SeenRecord] = []
        self.events: list[tuple[bytes, bytes]] = []

    def read(self) -> DumpReader:
        """The whole dump, read and checked; DumpError naming the line if it is bad."""
        try:
            return self._read(self._numbered())
        except UnicodeDecodeError:  # (a strict text stream decodes ahead, a block at a time)
            raise DumpError(f"dump is not UTF-8 text (after line {self._line_number}); "
                            "is this a spamkit dump?") from None

    def _numbered(self) -> Iterator[tuple[int, str]]:
        """The lines, numbered. Bytes that are not UTF-8, which a stream opened with
        errors="surrogateescape" (`spamkit db restore`) keeps as surrogates, are an error
        naming their line."""
        for number, line in enumerate(self.source, start=1):
            if not line.isascii():
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:
                    raise DumpError(f"dump line {number}: not UTF-8 text; is this a spamkit dump?") from None
            self._line_number = number
            yield number, line

    def _read(self, lines: Iterator[tuple[int, str]]) -> DumpReader:
        number, header = self._first_line(lines)
        if header != f"{MAGIC} {FORMAT_VERSION}":
            raise DumpError(f"dump line {number}: expected '{MAGIC} {FORMAT_VERSION}', found {header[:60]!r}")
        for number, line in lines:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                if self._take(fields):
                    return self
            except (ValueError, IndexError, KeyError) as error:
                raise DumpError(f"dump line {number}: cannot read {line.strip()[:80]!r} ({error})") from None
        raise DumpError("dump is truncated: no 'end' line")

    @staticmethod
    def _first_line(lines: Iterator[tuple[int, str]]) -> tuple[int, str]:
        for number, line in lines:
            if line.strip() and not line.startswith("#"):
                return number, line.strip()
        raise DumpError("dump is empty")

    def _take(self, fields: list[str]) -> bool:
        kind = fields[0]
        if kind == "token":
            key = bytes.fromhex(fields[1])
            spam, ham, day = _u32(fields[2]), _u32(fields[3]), _u32(fields[4])
            if len(key) != 8:
                raise ValueError("bad token record")
            self.tokens.append(TokenRecord(key, spam, ham, day))
        elif kind == "seen":
            key = bytes.fromhex(fields[1])
            if len(key) != 16:
                raise ValueError("bad message key")
            step = _byte_step(fields[4]) if len(fields) > 4 else 0.0
            self.seen.append(SeenRecord(key, Label(fields[2]), _u32(fields[3]), step))
        elif kind == "event":
            key = bytes.fromhex(fields[1])
            if len(key) != 24:
                raise ValueError("bad event key")
            record = " ".join(fields[2:])
            json.loads(record)
            self.events.append((key, record.encode()))
        elif kind == "meta":
            value = " ".join(fields[2:])
            if fields[1] in NUMERIC_META:
                value = str(_count(value))
            elif fields[1] == BYTE_MODEL_META:
                ByteModel.decode(value)  # ValueError says what is wrong with it
            self.meta[fields[1]] = value
        elif kind == "end":
            counts = [int(field) for field in fields[1:4]]
            read = [len(self.tokens), len(self.seen), len(self.events)][: len(counts)]
            if len(counts) < 2 or counts != read:
                raise ValueError(f"end line says {' '.join(fields[1:])} records, read {read}")
            if BYTE_MODEL_META not in self.meta:  # no model: no serial, no step to take back
                self.meta.pop(BYTE_MODEL_SERIAL, None)
                self.seen = [replace(mark, byte_step=0.0) for mark in self.seen]
            return True
        else:
            raise ValueError(f"unknown record type {kind!r}")
        return False


def _count(text: str) -> int:
    """A non-negative whole number written in ASCII digits."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{text[:20]!r} is not a count")
    return int(text)


def _byte_step(text: str) -> float:
    """A byte model step: a finite number no larger than a step can be (RATE)."""
    step = float(text)
    if not (math.isfinite(step) and abs(step) <= RATE):
        raise ValueError(f"{text[:20]!r} is not a byte model step")
    return step


def _u32(text: str) -> int:
    value = _count(text)
    if value >= _U32:
        raise ValueError(f"{value} does not fit in 32 bits")
    return value
