"""The TokenStore seam: what the learner and the classifier need from a database.

Tokens are 8-byte hashes. A store keeps, per token, how many learned spam and ham
messages held it and the day it was last learned; the totals of learned messages; and
the learned-once table ("seen") mapping a message key to the label it was learned as.

Changes happen only inside `writer()`: everything a writer did is committed together
when its block ends normally, or none of it when it raises, so counts, totals and seen
marks always agree, whatever instant a crash comes at.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Protocol, overload

import numpy as np
import numpy.typing as npt


class Label(enum.Enum):
    HAM = "ham"
    SPAM = "spam"

    @property
    def other(self) -> Label:
        return Label.SPAM if self is Label.HAM else Label.HAM


@dataclass(frozen=True)
class Totals:
    nspam: int  # messages learned as spam
    nham: int
    ntokens: int


@dataclass(frozen=True)
class TokenCounts:
    """Counts of the tokens a store knows, out of those asked for (unknown ones are left
    out), in key order."""

    key_numbers: npt.NDArray[np.uint64]  # the known tokens' keys, read as big-endian numbers
    spam: npt.NDArray[np.float64]
    ham: npt.NDArray[np.float64]
    totals: Totals  # read in the same transaction as the counts

    @property
    def keys(self) -> list[bytes]:
        """The known tokens' 8-byte keys (made on demand: only --explain names tokens)."""
        return keys_of(self.key_numbers)


def numbers_of(joined_keys: bytes) -> npt.NDArray[np.uint64]:
    """8-byte keys, concatenated, as numbers whose order is the keys' byte order."""
    if len(joined_keys) % 8:
        raise ValueError("token keys are 8 bytes each")
    return np.frombuffer(joined_keys, dtype=">u8").astype(np.uint64)


def pack_keys(keys: Sequence[bytes]) -> bytes:
    """Keys held compactly: one bytes object of 8 bytes a key, against ~41 bytes a key
    for a list of them (what `spamkit train` keeps for every message it read); the
    bytes themselves for keys already packed (PackedKeys)."""
    return keys.packed if isinstance(keys, PackedKeys) else b"".join(keys)


def unpack_keys(packed: bytes) -> list[bytes]:
    """The keys `pack_keys` packed, in order (numpy splits them 4x faster than slicing)."""
    keys: list[bytes] = np.frombuffer(packed, dtype="V8").tolist()
    return keys


class PackedKeys(Sequence[bytes]):
    """A message's keys as `pack_keys` packed them, read as the sequence of its 8-byte
    keys without making them: `train` hands what it holds to the lookups and to learning
    as it is, where unpacking the keys and joining them again cost ~60 ms a `train` of
    the training folds (`pack_keys` takes the bytes straight back)."""

    __slots__ = ("packed",)

    def __init__(self, packed: bytes) -> None:
        if len(packed) % 8:
            raise ValueError("token keys are 8 bytes each")
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed) // 8

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return unpack_keys(self.packed)[index]
        start = 8 * range(len(self))[index]  # (IndexError, negative indexes)
        return self.packed[start:start + 8]

    def __iter__(self) -> Iterator[bytes]:
        return iter(unpack_keys(self.packed))


def keys_of(numbers: npt.NDArray[np.uint64]) -> list[bytes]:
    """The 8-byte keys of numbers made by `numbers_of`."""
    return unpack_keys(numbers.astype(">u8").tobytes())


def sorted_distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values in order, how often each occurs): np.unique with return_counts
    by one native sort; np.unique cost twice as much here and loads numpy.ma (16 ms)."""
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


@dataclass(frozen=True)
class BatchLookup:
    """The keys of several messages, set out for one read of each distinct key."""

    numbers: npt.NDArray[np.uint64]  # every message's keys, each message's in key order
    sizes: list[int]  # keys per message
    wanted: npt.NDArray[np.uint64]  # the distinct keys, in order: what a store reads

    @classmethod
    def of(cls, key_lists: Sequence[Sequence[bytes]]) -> BatchLookup:
        numbers = numbers_of(b"".join(pack_keys(keys) for keys in key_lists))
        sizes = [len(keys) for keys in key_lists]
        start = 0
        for size in sizes:
            numbers[start:start + size].sort()  # each message's known keys come out in key order
            start += size
        return cls(numbers, sizes, sorted_distinct(numbers)[0])

    def split(self, known: npt.NDArray[np.uint64], spam: npt.NDArray[np.float64],
              ham: npt.NDArray[np.float64], totals: Totals) -> list[TokenCounts]:
        """Each message's TokenCounts from the counts of the known keys (in key order):
        numpy matches them back, each message's share a slice of one array."""
        if len(known) == 0:
            nothing = TokenCounts(np.zeros(0, dtype=np.uint64), np.zeros(0), np.zeros(0), totals)
            return [nothing] * len(self.sizes)
        position = np.minimum(np.searchsorted(known, self.numbers), len(known) - 1)
        hit = known[position] == self.numbers
        position = position[hit]
        owner = np.repeat(np.arange(len(self.sizes)), self.sizes)
        bounds = [0, *itertools.accumulate(
            np.bincount(owner[hit], minlength=len(self.sizes)).tolist())]
        numbers, spam, ham = self.numbers[hit], spam[position], ham[position]
        return [TokenCounts(numbers[start:end], spam[start:end], ham[start:end], totals)
                for start, end in zip(bounds, bounds[1:])]


@dataclass(frozen=True)
class TokenRecord:
    key: bytes
    spam: int
    ham: int
    day: int  # days since the Unix epoch when the token was last learned


def today() -> int:
    return int(time.time() // 86400)


class StoreWriter(Protocol):
    """One all-or-nothing batch of changes."""

    def learned_as(self, message_key: bytes) -> Label | None: ...

    def prefetch_seen(self, message_keys: Sequence[bytes]) -> None:
        """A hint: `learned_as` is about to be asked for these keys; a store across a
        network reads them in one round trip now."""

    def add_tokens(self, keys: Sequence[bytes], label: Label, delta: int = 1) -> None: ...

    def add_messages(self, label: Label, delta: int) -> None: ...

    def remember(self, message_key: bytes, label: Label | None) -> None:
        """Mark the message as learned with `label` (None: forgotten), as of today."""

    def byte_step(self, message_key: bytes) -> float:
        """The byte model's step recorded with the message's seen mark (0.0: none)."""

    def record_byte_step(self, message_key: bytes, step: float) -> None:
        """Keep the byte model's step on a message with the mark this batch gives it."""

    def set_meta(self, name: str, value: str) -> None: ...

    def meta_value(self, name: str) -> str | None:
        """One meta value as the batch's transaction sees it (the byte model's weights)."""

    def log_event(self, message_key: bytes, by: str, action: str, outcome: str) -> None: ...


class TokenStore(Protocol):
    def totals(self) -> Totals: ...

    def counts(self, keys: Sequence[bytes]) -> TokenCounts: ...

    def counts_many(self, key_lists: Sequence[Sequence[bytes]]) -> list[TokenCounts]: ...

    def learned_as(self, message_key: bytes) -> Label | None: ...

    def learned_as_many(self, message_keys: Sequence[bytes]) -> list[Label | None]:
        """`learned_as` of each key, read together."""

    def writer(self) -> AbstractContextManager[StoreWriter]: ...

    def magic(self) -> dict[str, object]: ...

    def verify(self) -> list[str]:
        """Damage found in the store's own structure, before its records are read (empty:
        none). Whatever walks or writes the whole store asks this first where damage
        could crash the process rather than raise."""

    def meta(self) -> dict[str, str]:
        """Named facts about the database ("tokenizer": the version that built it)."""

    def meta_value(self, name: str) -> str | None:
        """One of them, read alone (meta() reads the byte model's megabyte too)."""

    def expire(self, max_tokens: int) -> int: ...

    def expire_seen(self, before_day: int) -> tuple[int, int]:
        """Forget that messages learned before `before_day` were learned (their seen marks
        and older audit events); returns (marks, events) dropped."""

    def records(self) -> Iterator[TokenRecord]: ...

    def history(self, message_key: bytes) -> list[dict[str, object]]: ...

    def history_records(self) -> Iterator[tuple[bytes, bytes]]:
        """Every audit event: (message key + time, JSON record), for reports and dumps."""

    def set_meta(self, name: str, value: str) -> None: ...

    def dump(self, out: IO[str], salvage: bool = False) -> None:
        """The whole store as text (docs/dump-format.md). `salvage` skips `verify`, to
        save what can still be read of a damaged store (reading it may crash)."""

    def restore(self, source: IO[str]) -> None: ...

    def reset(self) -> None: ...

    def persistence(self) -> str | None:
        """How a Redis keeps the database on disk: "rdb", "aof", "rdb+aof", or "none" (a
        restart of Redis empties it); None where Redis will not say, and for LMDB, whose
        database is a file."""

    def replaced(self) -> bool:
        """Whether the database at the store's location is no longer the one it has open
        (an LMDB file moved over data.mdb): a service then opens it again (DatabaseWatch)."""

    def close(self) -> None: ...

    def __enter__(self) -> TokenStore: ...

    def __exit__(self, *exc: object) -> None: ...
