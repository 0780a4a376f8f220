"""RecordStore: a filter's own small database of JSON records by key (karma, greylist, sendlimit).

Two implementations, chosen by the location as the token store's are:

- `LmdbRecords`, a directory (the default, beside the token database): an LMDB
  environment of its own, opened once a process (py-lmdb refuses to open one path twice),
  its map guarded by spamkit.store.maplock, since the filter's worker threads read while
  one of them may grow it. It stays bounded: once a day, and at once when the map is
  full, the records the owner calls idle are dropped, and the map grows (up to 1 GiB)
  only when that frees nothing. (With nothing removed, karma's 64 MiB map once filled
  after ~675,000 addresses and learned nothing more.)
- `RedisRecords`, a redis:// URL: one key a record, under a prefix, for filters on several
  machines that must share what they know (a greylisted sender's retry may reach another
  MX). Each record carries the time to live its owner gives it, so Redis drops the idle
  ones itself.

The owner (KarmaStore, GreylistStore, SendCounts) is the `RecordPolicy`: which records are
idle, how long one is worth keeping. An idle record is absent to every reader on both
databases, whether or not it has been dropped yet: LMDB holds one until its daily prune,
and the filters once counted on it there (decision 0021). Every failure of either
database is a StoreError.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import lmdb
from redis.exceptions import WatchError

from spamkit.errors import ConfigError, StoreError
from spamkit.store import backend_of
from spamkit.store.lmdb import move_aside
from spamkit.store.maplock import MapLock
from spamkit.store.redis import connect, reaching

log = logging.getLogger("spamkit.smtpfilter")

Record = dict[str, Any]
Change = Callable[[Record | None], Record]

MAP_SIZE = 64 << 20
MAX_MAP_SIZE = 1 << 30  # grown to when pruning frees nothing (every record recent)
PRUNE_EVERY = 86400.0
# How far ahead of this machine's clock a time in a record may lie and still be taken at
# its word: as far as the clocks of servers sharing one Redis may disagree. A time further
# ahead was written while a clock was set ahead and has been put right since (a VM host's
# wrong clock, a mistyped `date -s`). Taken at its word, it held a greylisted triplet, a
# karma penalty or a sendlimit count for as long again as that clock had been ahead: a
# triplet first seen a year ahead was deferred at every retry until its sender bounced it.
CLOCK_SLACK = 3600.0
_PRUNED_KEY = b"\x00pruned"  # when idle records were last dropped; no record's key sorts there
_OPEN: dict[tuple[int, str], tuple[lmdb.Environment, MapLock]] = {}  # one per path and process
# a Redis record changed by another writer meanwhile is read again, for up to this long,
# with a pause of up to a millisecond between tries (20 tries without one: four threads
# on one address once lost 45 of 200 karma updates in a CI run)
_WATCH_SECONDS = 2.0


class RecordPolicy(Protocol):
    what: str  # "karma", "greylist": in messages and the default Redis prefix

    def idle(self, record: Record, now: float) -> bool:
        """Whether pruning at `now` drops this record."""

    def restamp(self, record: Record, now: float) -> Record | None:
        """A kept record to write back changed while pruning (None: leave it as it is)."""

    def lifetime(self, record: Record, now: float) -> float:
        """Seconds from `now` until this record, just written, would be idle."""


class RecordStore:
    """The seam: records by key, none of them idle. An implementation stores and reads;
    this class judges idleness, once, for both."""

    policy: RecordPolicy

    def get(self, key: str, now: float | None = None) -> Record | None:
        """The record, unless there is none or it is idle at `now`."""
        return self._live(self._read(key), now)

    def change(self, key: str, change: Change, now: float | None = None) -> Record:
        """Read one record, change it and write it back, atomically; `change` is given
        None for an idle record, as for a missing one. It may be called more than once (a
        concurrent writer made us read again)."""
        now = time.time() if now is None else now
        return self._write(key, lambda record: change(self._live(record, now)), now)

    def items(self, now: float | None = None) -> Iterator[tuple[str, Record]]:
        """Every record not idle at `now`, with its key, in no promised order (for an
        administrator's listing)."""
        now = time.time() if now is None else now
        for key, record in self._records():
            if not self.policy.idle(record, now):
                yield key, record

    def delete(self, key: str, now: float | None = None) -> bool:
        """Drop one record; whether there was one that was not idle (an idle one is
        dropped too, but was not there to a reader)."""
        return self._live(self._take(key), now) is not None

    def prune(self, now: float | None = None) -> int:
        """Drop the idle records now; how many."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _live(self, record: Record | None, now: float | None) -> Record | None:
        """`record` as a reader sees it at `now`: None once it is idle."""
        if record is None or not self.policy.idle(record, time.time() if now is None else now):
            return record
        return None

    # what an implementation provides: records as stored, idle or not

    def _read(self, key: str) -> Record | None:
        raise NotImplementedError

    def _write(self, key: str, change: Change, now: float) -> Record:
        """Read, change and write back one record, atomically."""
        raise NotImplementedError

    def _records(self) -> Iterator[tuple[str, Record]]:
        raise NotImplementedError

    def _take(self, key: str) -> Record | None:
        """Drop one record and return it, atomically."""
        raise NotImplementedError


def open_records(location: str, policy: RecordPolicy) -> RecordStore:
    """A directory: LMDB; a redis://, rediss:// or unix:// URL: Redis."""
    if backend_of(location) == "redis":
        return RedisRecords(location, policy)
    return LmdbRecords(Path(location), policy)


def _open_environment(path: Path) -> lmdb.Environment:
    """Commits flush the data but not the meta page (MDB_NOMETASYNC): one synced write a
    commit instead of two (0.14-0.15 ms against 0.24-0.26 here). A system crash may then
    undo the last commit but never leaves the database inconsistent (lmdb.h), and a
    karma count or a greylist triplet is cheap to lose; a process crash loses nothing."""
    return lmdb.open(str(path), map_size=MAP_SIZE, max_readers=256, metasync=False)


class LmdbRecords(RecordStore):
    def __init__(self, path: Path, policy: RecordPolicy) -> None:
        self.path = path
        self.policy = policy
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = (os.getpid(), str(path.resolve()))
        if key not in _OPEN:
            _OPEN[key] = (self._open(path), MapLock())
        self._env, self._map_lock = _OPEN[key]
        self._pruned_at = 0.0  # the last prune seen here; the database has the last of all
        self._pruning = threading.Lock()  # held while a background prune runs

    def _open(self, path: Path) -> lmdb.Environment:
        """The environment; a damaged one is set aside and started afresh. What these
        stores hold (karma counts, greylist triplets) is soon learned again, and a mail
        filter that will not start over it would be worse."""
        try:
            env = _open_environment(path)
        except (lmdb.InvalidError, lmdb.CorruptedError, lmdb.VersionMismatchError) as error:
            kept = move_aside(path)
            log.warning("%s database at %s was damaged (%s); moved to %s, starting afresh",
                        self.policy.what, path, error, kept.name)
            env = _open_environment(path)
        env.reader_check()  # slots a killed process left behind
        self._refuse_other_databases(env, path)
        return env

    def _refuse_other_databases(self, env: lmdb.Environment, path: Path) -> None:
        """A ConfigError for a directory that holds another kind of LMDB database (the
        token database, given as KarmaDatabase, say): every record here is a JSON object,
        and writing ours into its main tree beside its tables made `karma list` and the
        pruning fail on them. Left as it is, never moved aside."""
        foreign = False
        with env.begin() as txn:
            for key, value in txn.cursor():
                if bytes(key) != _PRUNED_KEY:
                    foreign = not bytes(value).startswith(b"{")
                    break
        if foreign:
            env.close()
            raise ConfigError(f"{path} holds another kind of LMDB database (spamkit's token "
                              f"database?), not {self.policy.what} records: give the "
                              f"{self.policy.what} filter a directory of its own")

    @contextmanager
    def _begin(self, write: bool = False) -> Iterator[lmdb.Transaction]:
        """A transaction holding the map lock shared for as long as it is open."""
        txn = self._map_lock.begin(self._env, write)
        try:
            with txn:
                yield txn
        finally:
            self._map_lock.release_shared()

    @contextmanager
    def _failing_as_store_errors(self) -> Iterator[None]:
        try:
            yield
        except lmdb.Error as error:
            raise StoreError(f"{self.policy.what} database at {self.path}: {error}") from None

    def _read(self, key: str) -> Record | None:
        with self._failing_as_store_errors(), self._begin() as txn:
            raw = txn.get(key.encode())
        return json.loads(bytes(raw)) if raw else None

    def _write(self, key: str, change: Change, now: float) -> Record:
        """Starts the daily prune on a thread of its own when a day has passed since the
        last; when the map is full, prunes at once, or grows the map when that frees
        nothing, and tries once more."""
        with self._failing_as_store_errors():
            if self._prune_due(now):
                self._prune_in_background(now)
            while True:  # (ends: each round frees records or grows the map, up to its limit)
                size = self._mapped_size()
                try:
                    return self._change(key, change)
                except lmdb.MapFullError:
                    if not self._prune(now):
                        self._grow(size)

    def _change(self, key: str, change: Change) -> Record:
        with self._begin(write=True) as txn:
            raw = txn.get(key.encode())
            record = change(json.loads(bytes(raw)) if raw else None)
            txn.put(key.encode(), json.dumps(record).encode())
        return record

    def _prune_due(self, now: float) -> bool:
        """Whether a day has passed since the last prune, by this process or another. The
        database is asked only once the prune this store last saw is a day old, so a
        change costs one write transaction, not a read transaction as well."""
        if _within_a_day(now, self._pruned_at):
            return False
        self._pruned_at = self._last_pruned()
        return not _within_a_day(now, self._pruned_at)

    def _prune_in_background(self, now: float) -> None:
        """The daily prune off the caller's path: its read of every record took 0.63 s
        at 200,000 records, which a client's RCPT used to wait for (LMDB's readers never
        block its writer, so the filter's own changes go on meanwhile; only the prune's
        short write of the deletions is waited for). One prune at a time."""
        if not self._pruning.acquire(blocking=False):
            return

        def prune() -> None:
            try:
                self._prune(now)
            except (lmdb.Error, StoreError) as error:  # the next change tries again
                log.warning("%s database at %s: the daily prune failed: %s",
                            self.policy.what, self.path, error)
            finally:
                self._pruning.release()

        threading.Thread(target=prune, name=f"spamkit-{self.policy.what}-prune", daemon=True).start()

    def wait_for_prune(self, timeout: float | None = None) -> bool:
        """Whether no prune is running (after waiting up to `timeout` for one to end)."""
        if self._pruning.acquire(timeout=-1 if timeout is None else timeout):
            self._pruning.release()
            return True
        return False

    def _last_pruned(self) -> float:
        with self._begin() as txn:
            raw = txn.get(_PRUNED_KEY)
        return float(raw) if raw else 0.0

    def prune(self, now: float | None = None) -> int:
        with self._failing_as_store_errors():
            return self._prune(time.time() if now is None else now)

    def _prune(self, now: float) -> int:
        """The candidates are found in a read transaction (which no writer waits for),
        then each is read again in the write transaction and dropped or restamped only
        if it still calls for it: a record another thread changed meanwhile (a greylist
        retry that just passed) is kept as it now is."""
        idle: list[bytes] = []
        rewritten: list[bytes] = []
        with self._begin() as txn:
            for key, raw in txn.cursor():
                if key == _PRUNED_KEY:
                    continue
                record = json.loads(bytes(raw))
                if self.policy.idle(record, now):
                    idle.append(bytes(key))
                elif self.policy.restamp(record, now) is not None:
                    rewritten.append(bytes(key))
        for attempt in range(2):
            size = self._mapped_size()
            try:
                dropped = 0
                with self._begin(write=True) as txn:
                    for key in idle:
                        raw = txn.get(key)
                        if raw is not None and self.policy.idle(json.loads(bytes(raw)), now):
                            dropped += txn.delete(key)
                    for key in rewritten:
                        raw = txn.get(key)
                        changed = None if raw is None else self.policy.restamp(json.loads(bytes(raw)), now)
                        if changed is not None:
                            txn.put(key, json.dumps(changed).encode())
                    txn.put(_PRUNED_KEY, str(round(now)).encode())
                self._pruned_at = round(now)
                return dropped
            except lmdb.MapFullError:  # rewriting records takes room too
                if attempt:
                    raise
                self._grow(size)
        return 0

    def _records(self) -> Iterator[tuple[str, Record]]:
        """Read in one transaction: a consistent snapshot, however long the listing."""
        with self._failing_as_store_errors(), self._begin() as txn:
            found = [(bytes(key), bytes(raw)) for key, raw in txn.cursor() if key != _PRUNED_KEY]
        for key, raw in found:
            yield key.decode("utf-8", "replace"), json.loads(raw)

    def _take(self, key: str) -> Record | None:
        with self._failing_as_store_errors(), self._begin(write=True) as txn:
            raw = txn.pop(key.encode())
        return json.loads(bytes(raw)) if raw else None

    def _mapped_size(self) -> int:
        return int(self._env.info()["map_size"])

    def _grow(self, full_size: int) -> None:
        """Double the map that was `full_size` when a write found it full (MapLock.grow)."""
        self._map_lock.grow(self._env, full_size, self._refuse_growing)

    def _refuse_growing(self, size: int) -> None:
        if size >= MAX_MAP_SIZE:
            raise lmdb.MapFullError(f"{self.policy.what} database at its 1 GiB limit with "
                                    "every record recent")

    def close(self) -> None:
        """The environment stays open for other users in this process; exit closes it."""


def _within_a_day(now: float, pruned_at: float) -> bool:
    """Whether a prune at `pruned_at` is recent at `now` (one stamped by a clock set ahead
    is not: it would have put off the next prune for as long as the clock was ahead)."""
    return -CLOCK_SLACK <= now - pruned_at < PRUNE_EVERY


class RedisRecords(RecordStore):
    """One string key a record (prefix + key), its time to live the policy's lifetime."""

    def __init__(self, location: str, policy: RecordPolicy) -> None:
        self.policy = policy
        self._client, self.prefix, self.location = connect(location, f"spamkit:{policy.what}:")

    def _read(self, key: str) -> Record | None:
        with reaching(self.location):
            raw = self._client.get(self.prefix + key)
        return json.loads(raw) if raw else None

    def _write(self, key: str, change: Change, now: float) -> Record:
        """WATCH, read, MULTI, write with its time to live, EXEC: read again if another
        writer changed the record meanwhile."""
        name = self.prefix + key
        deadline = time.monotonic() + _WATCH_SECONDS
        with reaching(self.location), self._client.pipeline() as pipe:
            while time.monotonic() < deadline:
                try:
                    pipe.watch(name)
                    raw = pipe.get(name)
                    record = change(json.loads(raw) if raw else None)
                    milliseconds = max(1, round(self.policy.lifetime(record, now) * 1000))
                    pipe.multi()
                    pipe.set(name, json.dumps(record), px=milliseconds)
                    pipe.execute()
                    return record
                except WatchError:
                    if not self._client.ping():  # (raises when the connection is gone)
                        raise
                    time.sleep(random.random() / 1000)  # let the other writer finish
        raise StoreError(f"{self.policy.what} record {key!r} at {self.location} kept changing "
                         f"for {_WATCH_SECONDS:g} s")

    def prune(self, now: float | None = None) -> int:
        """Nothing to do: every record expires by itself."""
        return 0

    def _records(self) -> Iterator[tuple[str, Record]]:
        """SCAN under the prefix (which never blocks the server as KEYS would), values
        fetched 500 at a time; a record that expires meanwhile is left out."""
        pattern = _glob_escaped(self.prefix) + "*"
        with reaching(self.location):
            names = list(self._client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                for name, raw in zip(chunk, self._client.mget(chunk)):
                    if raw is not None:
                        yield _text(name)[len(self.prefix):], json.loads(raw)

    def _take(self, key: str) -> Record | None:
        """GET and DEL in one MULTI (GETDEL would need Redis 6.2; Debian 11 has 6.0)."""
        with reaching(self.location), self._client.pipeline() as pipe:
            raw, _ = pipe.get(self.prefix + key).delete(self.prefix + key).execute()
        return json.loads(raw) if raw else None

    def close(self) -> None:
        self._client.close()


def _glob_escaped(text: str) -> str:
    """`text` matched literally by a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(name: bytes | str) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name
