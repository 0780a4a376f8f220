"""RecordStore: a filter's own small database of JSON records by key (karma, greylist).

Each store is an LMDB environment of its own, opened once a process (py-lmdb refuses to
open one path twice), its map guarded by spamkit.store.maplock: the filter's worker
threads read while one of them may grow it. It stays bounded: once a day, and at once
when the map is full, the records its owner calls idle are dropped, and the map grows
(up to 1 GiB) only when that frees nothing. A server meets new addresses every day; with
nothing removed, karma's 64 MiB map filled after ~675,000 of them and learned nothing more.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from spamkit.store.lmdb import move_aside
from spamkit.store.maplock import MapLock

log = logging.getLogger("spamkit.smtpfilter")

Record = dict[str, Any]

MAP_SIZE = 64 << 20
MAX_MAP_SIZE = 1 << 30  # grown to when pruning frees nothing (every record recent)
PRUNE_EVERY = 86400.0
_PRUNED_KEY = b"\x00pruned"  # when idle records were last dropped; no record's key sorts there
_OPEN: dict[tuple[int, str], tuple[lmdb.Environment, MapLock]] = {}  # one per path and process


def _open_environment(path: Path) -> lmdb.Environment:
    """Commits flush the data but not the meta page (MDB_NOMETASYNC): one synced write a
    commit instead of two (0.14-0.15 ms against 0.24-0.26 here). A system crash may then
    undo the last commit but never leaves the database inconsistent (lmdb.h), and a
    karma count or a greylist triplet is cheap to lose; a process crash loses nothing."""
    return lmdb.open(str(path), map_size=MAP_SIZE, max_readers=256, metasync=False)


class RecordStore:
    """Records by key. Subclasses say which records are idle (`idle`) and may rewrite
    old ones while pruning (`restamp`)."""

    what = "records"  # named in the error when the map cannot grow further

    def __init__(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = (os.getpid(), str(path.resolve()))
        if key not in _OPEN:
            _OPEN[key] = (self._open(path), MapLock())
        self._env, self._map_lock = _OPEN[key]

    def _open(self, path: Path) -> lmdb.Environment:
        """The environment; a damaged one is set aside and started afresh. What these
        stores hold (karma counts, greylist triplets) is soon learned again, and a mail
        filter that will not start over it would be worse."""
        try:
            env = _open_environment(path)
        except (lmdb.InvalidError, lmdb.CorruptedError, lmdb.VersionMismatchError) as error:
            kept = move_aside(path)
            log.warning("%s database at %s was damaged (%s); moved to %s, starting afresh",
                        self.what, path, error, kept.name)
            env = _open_environment(path)
        env.reader_check()  # slots a killed process left behind
        return env

    def idle(self, record: Record, now: float) -> bool:
        """Whether pruning at `now` drops this record."""
        raise NotImplementedError

    def restamp(self, record: Record, now: float) -> Record | None:
        """A kept record to write back changed while pruning (None: leave it as it is)."""
        return None

    @contextmanager
    def _begin(self, write: bool = False) -> Iterator[lmdb.Transaction]:
        """A transaction holding the map lock shared for as long as it is open."""
        txn = self._map_lock.begin(self._env, write)
        try:
            with txn:
                yield txn
        finally:
            self._map_lock.release_shared()

    def get(self, key: str) -> Record | None:
        with self._begin() as txn:
            raw = txn.get(key.encode())
        return json.loads(bytes(raw)) if raw else None

    def change(self, key: str, change: Callable[[Record | None], Record],
               now: float | None = None) -> Record:
        """Read one record, change it and write it back in one write transaction.

        Prunes first when a day has passed since the last time; when the map is full,
        prunes at once, or grows the map when that frees nothing, and tries once more.
        """
        now = time.time() if now is None else now
        if now - self._last_pruned() >= PRUNE_EVERY:
            self.prune(now)
        try:
            return self._change(key, change)
        except lmdb.MapFullError:
            if not self.prune(now):
                self._grow()
            return self._change(key, change)

    def _change(self, key: str, change: Callable[[Record | None], Record]) -> Record:
        with self._begin(write=True) as txn:
            raw = txn.get(key.encode())
            record = change(json.loads(bytes(raw)) if raw else None)
            txn.put(key.encode(), json.dumps(record).encode())
        return record

    def _last_pruned(self) -> float:
        with self._begin() as txn:
            raw = txn.get(_PRUNED_KEY)
        return float(raw) if raw else 0.0

    def prune(self, now: float | None = None) -> int:
        """Drop the idle records (and write back the restamped ones); returns how many
        were dropped."""
        now = time.time() if now is None else now
        idle: list[bytes] = []
        rewritten: list[tuple[bytes, Record]] = []
        with self._begin() as txn:
            for key, raw in txn.cursor():
                if key == _PRUNED_KEY:
                    continue
                record = json.loads(bytes(raw))
                if self.idle(record, now):
                    idle.append(bytes(key))
                elif (changed := self.restamp(record, now)) is not None:
                    rewritten.append((bytes(key), changed))
        for attempt in range(2):
            try:
                with self._begin(write=True) as txn:
                    for key in idle:
                        txn.delete(key)
                    for key, record in rewritten:
                        txn.put(key, json.dumps(record).encode())
                    txn.put(_PRUNED_KEY, str(round(now)).encode())
                return len(idle)
            except lmdb.MapFullError:  # rewriting records takes room too
                if attempt:
                    raise
                self._grow()
        return len(idle)

    def _grow(self) -> None:
        with self._map_lock.exclusive():
            size = self._env.info()["map_size"]
            if size >= MAX_MAP_SIZE:
                raise lmdb.MapFullError(f"{self.what} database at its 1 GiB limit with every "
                                        "record recent")
            self._env.set_mapsize(size * 2)

    def close(self) -> None:
        """The environment stays open for other users in this process; exit closes it."""
