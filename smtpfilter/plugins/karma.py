"""karma: remember how each client address behaved, and refuse the naughty for a day.

Per address, in a small LMDB database: good (messages relayed as ham) and bad (refused or
spam) counts, when it last sent, and, once it has earned it, the time until which it is
refused. An address whose good - bad is at or below KarmaNegative after at least
KarmaStrikes bad messages is naughty: MAIL FROM gets 550 until the penalty has passed.

An address not heard from for KarmaForgetDays is forgotten (once a day, and at once when
the database is full): a server meets new addresses every day, and with nothing removed
the 64 MiB map filled after ~675,000 of them, after which karma learned nothing more.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from spamkit.store.maplock import MapLock

PENALTY_SECONDS = 86400
DEFAULT_FORGET_DAYS = 30
MAP_SIZE = 64 << 20
MAX_MAP_SIZE = 1 << 30  # grown to when forgetting frees nothing (every address recent)
_PRUNED_KEY = b"\x00pruned"  # when idle addresses were last forgotten; no address sorts there
_OPEN: dict[tuple[int, str], tuple[lmdb.Environment, MapLock]] = {}  # one per path and process


class KarmaStore:
    def __init__(self, path: Path, forget_days: int = DEFAULT_FORGET_DAYS) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = (os.getpid(), str(path.resolve()))
        if key not in _OPEN:  # py-lmdb refuses to open one path twice in a process
            env = lmdb.open(str(path), map_size=MAP_SIZE, max_readers=256)
            env.reader_check()
            _OPEN[key] = (env, MapLock())
        self._env, self._map_lock = _OPEN[key]
        self.forget_seconds = forget_days * 86400

    @contextmanager
    def _begin(self, write: bool = False) -> Iterator[lmdb.Transaction]:
        """A transaction holding the map lock shared (spamkit.store.maplock: the filter's
        worker threads read this database while one of them may grow the map)."""
        txn = self._map_lock.begin(self._env, write)
        try:
            with txn:
                yield txn
        finally:
            self._map_lock.release_shared()

    def get(self, address: str) -> dict[str, float]:
        with self._begin() as txn:
            raw = txn.get(address.encode())
        return json.loads(bytes(raw)) if raw else {"good": 0, "bad": 0, "until": 0}

    def update(self, address: str, good: int, bad: int, negative: int, strikes: int,
               now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        if now - self._last_pruned() >= 86400:
            self.forget_idle(now)
        try:
            return self._update(address, good, bad, negative, strikes, now)
        except lmdb.MapFullError:
            if not self.forget_idle(now):
                self._grow()
            return self._update(address, good, bad, negative, strikes, now)

    def _update(self, address: str, good: int, bad: int, negative: int, strikes: int,
                now: float) -> dict[str, float]:
        with self._begin(write=True) as txn:
            raw = txn.get(address.encode())
            record = json.loads(bytes(raw)) if raw else {"good": 0, "bad": 0, "until": 0}
            record["good"] += good
            record["bad"] += bad
            record["seen"] = round(now)
            if record["bad"] >= strikes and record["good"] - record["bad"] <= negative:
                record["until"] = now + PENALTY_SECONDS
            txn.put(address.encode(), json.dumps(record).encode())
        return record

    def _last_pruned(self) -> float:
        with self._begin() as txn:
            raw = txn.get(_PRUNED_KEY)
        return float(raw) if raw else 0.0

    def forget_idle(self, now: float | None = None) -> int:
        """Forget the addresses not heard from for forget_days and not refused now;
        returns how many. A record from before last-heard times were kept is given one
        now (so it is forgotten forget_days later, not at once)."""
        now = time.time() if now is None else now
        idle: list[bytes] = []
        unstamped: list[tuple[bytes, dict[str, float]]] = []
        with self._begin() as txn:
            for key, raw in txn.cursor():
                if key == _PRUNED_KEY:
                    continue
                record = json.loads(bytes(raw))
                if "seen" not in record:
                    unstamped.append((bytes(key), record | {"seen": round(now)}))
                elif now - record["seen"] > self.forget_seconds and record["until"] <= now:
                    idle.append(bytes(key))
        for attempt in range(2):
            try:
                with self._begin(write=True) as txn:
                    for key in idle:
                        txn.delete(key)
                    for key, record in unstamped:
                        txn.put(key, json.dumps(record).encode())
                    txn.put(_PRUNED_KEY, str(round(now)).encode())
                return len(idle)
            except lmdb.MapFullError:  # stamping old records takes room too
                if attempt:
                    raise
                self._grow()
        return len(idle)

    def _grow(self) -> None:
        with self._map_lock.exclusive():
            size = self._env.info()["map_size"]
            if size >= MAX_MAP_SIZE:
                raise lmdb.MapFullError("karma database at its 1 GiB limit with every address recent")
            self._env.set_mapsize(size * 2)

    def close(self) -> None:
        """The environment stays open for other users in this process; exit closes it."""


class Karma(Filter):
    name = "karma"
    blocking = True  # its database: a write may wait for another process's

    def __init__(self, store: KarmaStore, negative: int, strikes: int) -> None:
        self.store = store
        self.negative = negative
        self.strikes = strikes

    def mail(self, tx: Transaction) -> Decision:
        record = self.store.get(tx.peer)
        if record["until"] > time.time():
            return reject(self.name, "550 5.7.1 Your address has sent too much unwanted mail; "
                                     "try again tomorrow")
        return CONTINUE

    def finished(self, tx: Transaction, reply: str) -> None:
        verdict = str(tx.notes.get("spam", ""))
        spam = verdict == "yes"
        # mail passed unscanned (over MaxMessageSize) says nothing good about its sender
        good = 1 if reply.startswith("2") and not spam and verdict != "unscanned" else 0
        bad = 1 if reply.startswith("5") or spam else 0
        if good or bad:
            self.store.update(tx.peer, good, bad, self.negative, self.strikes)
