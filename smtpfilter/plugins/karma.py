"""karma: remember how each client address behaved, and refuse the naughty for a day.

Per address, in a small database of its own (smtpfilter.recordstore): good (messages
relayed as ham) and bad (refused or spam) counts, when it last sent, and, once it has
earned it, the time until which it is refused. An address whose good - bad is at or
below KarmaNegative after at least KarmaStrikes bad messages is naughty: MAIL FROM gets
550 until the penalty has passed. An address not heard from for KarmaForgetDays is
forgotten (once a day, and at once when the database is full).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from smtpfilter.recordstore import Record, RecordStore

PENALTY_SECONDS = 86400
DEFAULT_FORGET_DAYS = 30


def _new_record() -> Record:
    return {"good": 0, "bad": 0, "until": 0}


class KarmaStore(RecordStore):
    what = "karma"

    def __init__(self, path: Path, forget_days: int = DEFAULT_FORGET_DAYS) -> None:
        super().__init__(path)
        self.forget_seconds = forget_days * 86400

    def get(self, address: str) -> Record:
        return super().get(address) or _new_record()

    def update(self, address: str, good: int, bad: int, negative: int, strikes: int,
               now: float | None = None) -> Record:
        now = time.time() if now is None else now
        return self.change(address, self._counting(good, bad, negative, strikes, now), now)

    def _update(self, address: str, good: int, bad: int, negative: int, strikes: int,
                now: float) -> Record:
        """`update` without pruning or growing (the tests fill the map with it)."""
        return self._change(address, self._counting(good, bad, negative, strikes, now))

    @staticmethod
    def _counting(good: int, bad: int, negative: int, strikes: int,
                  now: float) -> Callable[[Record | None], Record]:
        def count(record: Record | None) -> Record:
            record = record or _new_record()
            record["good"] += good
            record["bad"] += bad
            record["seen"] = round(now)
            if record["bad"] >= strikes and record["good"] - record["bad"] <= negative:
                record["until"] = now + PENALTY_SECONDS
            return record
        return count

    def idle(self, record: Record, now: float) -> bool:
        """Not heard from for forget_days and not refused now."""
        return "seen" in record and now - record["seen"] > self.forget_seconds \
            and record["until"] <= now

    def restamp(self, record: Record, now: float) -> Record | None:
        """A record from before last-heard times were kept is given one now (so it is
        forgotten forget_days later, not at once)."""
        return record | {"seen": round(now)} if "seen" not in record else None

    def forget_idle(self, now: float | None = None) -> int:
        """Forget the idle addresses now; returns how many."""
        return self.prune(now)


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
