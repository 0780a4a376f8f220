"""One writer's batch, as every backend collects it before writing it all at once.

A batch keeps its changes in memory: the token keys of each message learned or taken
back (one joined bytes object a message), message-count deltas, seen marks, meta values
and audit events. At commit a backend asks for the token deltas summed per distinct key
(`token_deltas`, numpy: a batch of 1,000 messages touches each common token once, and no
Python loop runs per token occurrence) and writes them with its own primitives.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import time
from collections.abc import Sequence

import numpy as np

from spamkit.bytemodel import META_NAME, META_SERIAL, model_steps, stored_format
from spamkit.store.base import Label, numbers_of, pack_keys, sorted_distinct, today

# a token's value, as both backends store it: spam count, ham count, last-learned day
VALUE_DTYPE = np.dtype([("spam", "<u4"), ("ham", "<u4"), ("day", "<u4")])
SEEN_LAYOUT = struct.Struct("<BI")  # a seen mark: label code, day learned
# a seen mark of a message the byte model stepped on: the step, float32, follows; marks of
# messages it did not step on keep the short layout (as every mark before steps were kept)
SEEN_STEP_LAYOUT = struct.Struct("<BIf")
LABEL_CODE = {Label.SPAM: 1, Label.HAM: 2}
CODE_LABEL = {1: Label.SPAM, 2: Label.HAM}
# the meta values a reset removes with the tokens and marks: what was learned, and when
# (the byte model with them); `created` and `schema` stay. A restore replaces every meta
# value but `schema` with the dump's.
LEARNED_META = ("nspam", "nham", "last_expire", "last_expire_removed", "last_seen_expire",
                "last_seen_expire_removed", "tokenizer", META_NAME, META_SERIAL)


def pack_seen(label: Label, day: int, byte_step: float = 0.0) -> bytes:
    """A seen mark's value: the label, the day it was learned, and the byte model's step
    on the message when it took one (what `forget` takes back out, decision 0024)."""
    if byte_step:
        return SEEN_STEP_LAYOUT.pack(LABEL_CODE[label], day, byte_step)
    return SEEN_LAYOUT.pack(LABEL_CODE[label], day)


def unpack_seen(value: bytes | memoryview) -> tuple[int, int, float] | None:
    """(label code, day, byte step) of a seen mark's value; None if it is neither layout."""
    if len(value) == SEEN_LAYOUT.size:
        code, day = SEEN_LAYOUT.unpack(value)
        return code, day, 0.0
    if len(value) == SEEN_STEP_LAYOUT.size:
        code, day, step = SEEN_STEP_LAYOUT.unpack(value)
        return code, day, step if math.isfinite(step) else 0.0
    return None


@functools.lru_cache(maxsize=64)
def _event_head(by: str, action: str, outcome: str) -> str:
    """An audit record's JSON up to its time: the same for a whole batch, so made once
    (json.dumps a message cost 3 us); json.dumps writes a float as repr does."""
    head = json.dumps({"by": by, "action": action, "outcome": outcome, "time": 0},
                      separators=(",", ":"))
    return head[: -len("0}")]


class PendingChanges:
    """The StoreWriter calls that only collect; a backend's writer adds `learned_as` and
    the commit."""

    def __init__(self) -> None:
        self._deltas: list[tuple[Label, int, bytes]] = []  # (label, +1/-1, joined hashes)
        self._messages = {Label.SPAM: 0, Label.HAM: 0}
        self._seen: dict[bytes, Label | None] = {}
        self._byte_steps: dict[bytes, float] = {}  # steps of the marks this batch writes
        self._meta: dict[str, str] = {}
        self._events: list[tuple[bytes, bytes]] = []  # (message key + time, JSON record)

    def log_event(self, message_key: bytes, by: str, action: str, outcome: str) -> None:
        """Keep who taught this message what (the audit log), in the same commit."""
        when = time.time_ns() + len(self._events)  # distinct keys within one batch
        record = _event_head(by, action, outcome) + repr(round(when / 1e9, 3)) + "}"
        self._events.append((message_key + struct.pack(">Q", when), record.encode()))

    def set_meta(self, name: str, value: str) -> None:
        self._meta[name] = value

    def add_tokens(self, keys: Sequence[bytes], label: Label, delta: int = 1) -> None:
        if keys:
            self._deltas.append((label, delta, pack_keys(keys)))

    def add_messages(self, label: Label, delta: int) -> None:
        self._messages[label] += delta

    def remember(self, message_key: bytes, label: Label | None) -> None:
        self._seen[message_key] = label
        self._byte_steps.pop(message_key, None)  # a new mark: no step until one is recorded

    def record_byte_step(self, message_key: bytes, step: float) -> None:
        """Keep the byte model's step on a message this batch marks as learned, with its mark."""
        if self._seen.get(message_key) is not None:
            self._byte_steps[message_key] = step

    def byte_step(self, message_key: bytes) -> float:
        """The byte model's step recorded with the message's mark (0.0: none, or no mark)."""
        if message_key in self._seen:
            return self._byte_steps.get(message_key, 0.0)
        return self._stored_byte_step(message_key)

    def _stored_byte_step(self, message_key: bytes) -> float:
        raise NotImplementedError  # a backend's writer reads its stored mark

    def seen_values(self, day: int) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        """The batch's seen marks to write ((key, value) pairs) and to delete (keys)."""
        marks = [(key, pack_seen(label, day, self._byte_steps.get(key, 0.0)))
                 for key, label in self._seen.items() if label is not None]
        return marks, [key for key, label in self._seen.items() if label is None]

    def token_deltas(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted distinct token keys as uint64, spam deltas, ham deltas).

        A key's uint64 value is its big-endian reading, so numeric order is the keys'
        byte order (LMDB's lookups below then walk its tree in order).
        """
        parts: dict[tuple[Label, int], list[bytes]] = {
            (Label.SPAM, 1): [], (Label.SPAM, -1): [], (Label.HAM, 1): [], (Label.HAM, -1): []}
        for label, delta, joined in self._deltas:
            parts[(label, 1 if delta > 0 else -1)].append(joined)
        arrays = {part: numbers_of(b"".join(chunks)) for part, chunks in parts.items() if chunks}
        if not arrays:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=np.uint64), empty, empty
        if len(arrays) == 1:  # the usual batch: one label, learned (one sort, not two)
            ((label, sign), hashes), = arrays.items()
            keys, counts = sorted_distinct(hashes)
            zeros = np.zeros(len(keys), dtype=np.int64)
            deltas = sign * counts.astype(np.int64)
            return (keys, deltas, zeros) if label is Label.SPAM else (keys, zeros, deltas)
        keys, _ = sorted_distinct(np.concatenate(list(arrays.values())))
        spam = np.zeros(len(keys), dtype=np.int64)
        ham = np.zeros(len(keys), dtype=np.int64)
        for (label, sign), hashes in arrays.items():
            distinct, counts = sorted_distinct(hashes)
            target = spam if label is Label.SPAM else ham
            target[np.searchsorted(keys, distinct)] += sign * counts
        return keys, spam, ham


def new_token_values(spam_delta: np.ndarray, ham_delta: np.ndarray, old: np.ndarray | None,
                     positions: np.ndarray | None, day: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's tokens after it: (values to write, as VALUE_DTYPE records, for the
    tokens whose counts stay above zero; mask of those tokens).

    `old` holds the stored values of the tokens already known, at `positions` in the
    batch's key order. Counts never go below zero (taking back a message that an expiry
    already thinned); a token whose counts both reach zero is to be deleted.
    """
    spam = spam_delta.copy()
    ham = ham_delta.copy()
    if old is not None and positions is not None:
        spam[positions] += old["spam"]
        ham[positions] += old["ham"]
    np.maximum(spam, 0, out=spam)
    np.maximum(ham, 0, out=ham)
    keep = (spam > 0) | (ham > 0)
    values = np.zeros(int(keep.sum()), dtype=VALUE_DTYPE)
    values["spam"], values["ham"], values["day"] = spam[keep], ham[keep], day
    return values, keep


def expiry_order(values: np.ndarray, excess: int, day: int | None = None) -> np.ndarray:
    """Positions of the `excess` tokens an expiry drops (VALUE_DTYPE records, in key order):
    last learned longest ago first; within a day, those in fewest messages first; ties in
    key order, so every backend drops the same tokens. A token learned on a day after
    `day` (today) was stamped by a clock that was ahead, and is taken as learned today:
    else it outlived every token learned since, however rare, until that day came."""
    total = values["spam"].astype(np.int64) + values["ham"]
    learned = np.minimum(values["day"], today() if day is None else day)
    return np.lexsort((total, learned))[:max(0, excess)]


def magic_facts(meta: dict[str, str], ntokens: int, nseen: int, nevents: int, days: np.ndarray,
                *, bytes_used: int, map_size: int | None, path: str, backend: str,
                redis_maxmemory: int | None = None, redis_maxmemory_policy: str | None = None,
                redis_persistence: str | None = None) -> dict[str, object]:
    """`db magic`'s record (what `sa-learn --dump magic` shows, and more), the same fields
    from every backend: scripts read them (`--json`). A Redis's maxmemory (0: no limit) and
    its policy say how near it is to refusing writes, or to dropping keys; its persistence
    ("none": a restart of Redis empties the database) whether it keeps what was learned."""
    return {
        "nspam": int(meta.get("nspam", 0)),
        "nham": int(meta.get("nham", 0)),
        "ntokens": ntokens,
        "nseen": nseen,
        "nevents": nevents,
        "oldest_token_day": int(days.min()) if len(days) else None,
        "newest_token_day": int(days.max()) if len(days) else None,
        "last_expire_day": int(meta["last_expire"]) if "last_expire" in meta else None,
        "last_expire_removed": int(meta.get("last_expire_removed", 0)),
        "last_seen_expire_day": int(meta["last_seen_expire"]) if "last_seen_expire" in meta else None,
        "last_seen_expire_removed": int(meta.get("last_seen_expire_removed", 0)),
        "created_day": int(meta["created"]) if "created" in meta else None,
        "tokenizer": meta.get("tokenizer"),
        **_byte_model_facts(meta.get("bytemodel")),
        "bytes_used": bytes_used,
        "map_size": map_size,
        "path": path,
        "backend": backend,
        "redis_maxmemory": redis_maxmemory,
        "redis_maxmemory_policy": redis_maxmemory_policy,
        "redis_persistence": redis_persistence,
    }


def _byte_model_facts(value: str | None) -> dict[str, int | str | None]:
    """How many steps the byte model has taken toward each label, and its format (which
    says how it reads a message: bm1 from an older spamkit, bm2); None without one (0024)."""
    steps = model_steps(value) if value else None
    spam, ham = steps if steps is not None else (None, None)
    return {"byte_model_spam_steps": spam, "byte_model_ham_steps": ham,
            "byte_model_format": stored_format(value) if steps is not None else None}
