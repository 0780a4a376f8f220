"""karma: remember how each client address behaved, and refuse the naughty for a day.

Per address, in a small LMDB database: good (messages relayed as ham) and bad (refused or
spam) counts and, once it has earned it, the time until which it is refused. An address
whose good - bad is at or below KarmaNegative after at least KarmaStrikes bad messages is
naughty: MAIL FROM gets 550 until the penalty has passed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lmdb

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject

PENALTY_SECONDS = 86400
_OPEN: dict[tuple[int, str], lmdb.Environment] = {}  # one environment per path and process


class KarmaStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = (os.getpid(), str(path.resolve()))
        if key not in _OPEN:  # py-lmdb refuses to open one path twice in a process
            _OPEN[key] = lmdb.open(str(path), map_size=64 << 20, max_readers=256)
            _OPEN[key].reader_check()
        self._env = _OPEN[key]

    def get(self, address: str) -> dict[str, float]:
        with self._env.begin() as txn:
            raw = txn.get(address.encode())
        return json.loads(raw) if raw else {"good": 0, "bad": 0, "until": 0}

    def update(self, address: str, good: int, bad: int, negative: int, strikes: int,
               now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        with self._env.begin(write=True) as txn:
            raw = txn.get(address.encode())
            record = json.loads(raw) if raw else {"good": 0, "bad": 0, "until": 0}
            record["good"] += good
            record["bad"] += bad
            if record["bad"] >= strikes and record["good"] - record["bad"] <= negative:
                record["until"] = now + PENALTY_SECONDS
            txn.put(address.encode(), json.dumps(record).encode())
        return record

    def close(self) -> None:
        """The environment stays open for other users in this process; exit closes it."""


class Karma(Filter):
    name = "karma"

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
