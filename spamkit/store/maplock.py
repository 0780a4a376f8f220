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
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
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

    def acquire_shared(self) -> None:
        depth = getattr(self._depth, "value", 0)
        with self._condition:
            if depth == 0:  # a nested transaction must not wait behind a resizer
                while self._resizing or self._resizers_waiting:
                    self._condition.wait()
            self._open += 1
        self._depth.value = depth + 1

    def release_shared(self) -> None:
        self._depth.value -= 1
        with self._condition:
            self._open -= 1
            if self._open == 0:
                self._condition.notify_all()

    def begin(self, env: Any, write: bool = False) -> Any:
        """`env.begin(write=write)`, holding the lock shared until `release_shared`; a map
        another process grew is adopted on the way (under the lock held alone)."""
        while True:
            self.acquire_shared()
            try:
                return env.begin(write=write)
            except lmdb.MapResizedError:
                self.release_shared()
                with self.exclusive():
                    env.set_mapsize(0)
            except BaseException:
                self.release_shared()
                raise

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
