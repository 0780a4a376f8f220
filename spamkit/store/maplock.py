"""A lock that lets a process change its LMDB map size safely while its threads read.

LMDB allows `mdb_env_set_mapsize` only "if no transactions are active in this process",
and does not check. Both ways spamkit changes it can happen while other threads of the
process are inside transactions:

- it grows the map when a commit finds it full;
- it adopts a size another process set, when a transaction begins with MDB_MAP_RESIZED.

`spamkit serve` scans in a pool of worker threads while the nightly sweep, or its own
autolearn, grows the map. Before this lock, a worker re-mapped under the others' feet:
an hour's soak met "mdb_txn_begin: Invalid argument" and "Attempt to operate on
closed/deleted/dropped object" (decision 0015).

Transactions hold the lock shared, for as long as they are open. A size change holds it
alone: it waits for every open transaction of the process to end, and new ones wait
behind it, so a steady stream of reads cannot starve it. A thread that already holds the
lock shared may take it shared again (nested transactions), but may not take it alone.

It also lets one write transaction at a time begin in the process. LMDB's writer mutex
orders processes, but py-lmdb refuses a second write transaction on an environment that
has one open ("A write transaction is already active", EBUSY) instead of waiting. Before
this, the SMTP filter's worker threads lost 900 of 1,200 karma updates made four at a
time, and autolearns that met raised lmdb.Error out of the DATA stage. A writer waits
here, before it takes the lock shared, so a size change is never kept waiting by it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lmdb


class MapLock:
    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._open = 0  # transactions open in this process
        self._resizing = False
        self._resizers_waiting = 0
        self._depth = threading.local()  # this thread's open transactions
        self._writer = threading.Lock()  # held by the thread whose write transaction is open

    def acquire_shared(self) -> None:
        depth = getattr(self._depth, "value", 0)
        with self._condition:
            if depth == 0:  # a nested transaction must not wait behind a resizer
                while self._resizing or self._resizers_waiting:
                    self._condition.wait()
            self._open += 1
        self._depth.value = depth + 1

    def release_shared(self) -> None:
        writing_ends = getattr(self._depth, "writer_at", 0) == self._depth.value
        self._leave()
        if writing_ends:
            self._depth.writer_at = 0
            self._writer.release()

    def begin(self, env: Any, write: bool = False) -> Any:
        """`env.begin(write=write)`, holding the lock shared until `release_shared`; a map
        another process grew is adopted on the way (under the lock held alone). A write
        transaction first waits for the one another thread of the process has open."""
        if write:
            self._writer.acquire()
        while True:
            self.acquire_shared()
            try:
                txn = env.begin(write=write)
            except lmdb.MapResizedError:
                self._leave()  # (the writer lock stays: this thread tries again)
                with self.exclusive():
                    env.set_mapsize(0)
                continue
            except BaseException:
                self._leave()
                if write:
                    self._writer.release()
                raise
            if write:
                self._depth.writer_at = self._depth.value
            return txn

    def _leave(self) -> None:
        """One open transaction of this thread fewer (the shared hold it took)."""
        self._depth.value -= 1
        with self._condition:
            self._open -= 1
            if self._open == 0:
                self._condition.notify_all()

    def grow(self, env: Any, full_size: int, refuse: Callable[[int], None]) -> None:
        """Double `env`'s map, which a write found full at `full_size`, under the lock held
        alone; `refuse(current size)` raises where it may not grow. Not again if another
        thread grew it meanwhile: writers take turns, and two that met the same full map
        (the karma store's change and its background prune) grew it four times over."""
        with self.exclusive():
            current = int(env.info()["map_size"])
            if current > full_size:
                return
            refuse(current)
            env.set_mapsize(current * 2)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held alone: no transaction of this process is open while the block runs."""
        if getattr(self._depth, "value", 0):
            raise RuntimeError("the map size cannot change inside a transaction")
        with self._condition:
            self._resizers_waiting += 1
            try:
                while self._resizing or self._open:
                    self._condition.wait()
            finally:
                self._resizers_waiting -= 1
            self._resizing = True
        try:
            yield
        finally:
            with self._condition:
                self._resizing = False
                self._condition.notify_all()
