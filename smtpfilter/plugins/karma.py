"""karma: remember how each client address behaved, and refuse the naughty for a day.

Per address, in a small database of its own (smtpfilter.recordstore: LMDB beside the
token database, or a shared Redis): good (messages relayed as ham) and bad (refused or
spam) counts, when it last sent, and, once it has earned it, the time until which it is
refused. An address whose bad messages outnumber its good ones by KarmaNegative or more
(qpsmtpd's and SME's meaning: 2 makes 8 good and 10 bad naughty), after at least
KarmaStrikes bad messages, is naughty: MAIL FROM gets 550 until the penalty has passed.
An address not heard from for KarmaForgetDays is forgotten. A database that cannot be read
or written refuses no one: the mail goes on as if karma were not in the chain.

LocalNetworks and RelayClients are immune: never counted, never refused. Our own users'
mail (a webmail, a scanner on the LAN) and the MTA in front of us when it does not name
the client (no XFORWARD) must not lose the right to send because some of what they sent
scored as spam; karma refusing legitimate senders is a known complaint about it
(landscape.md, 15). `spamkit karma list|forget` shows and lifts penalties.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from collections.abc import Iterator

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from smtpfilter.metrics import UNCHECKED
from smtpfilter.networks import LocalClients
from smtpfilter.recordstore import CLOCK_SLACK, Change, Record, open_records
from spamkit.errors import StoreError

log = logging.getLogger("spamkit.smtpfilter")

PENALTY_SECONDS = 86400
DEFAULT_FORGET_DAYS = 30


def _new_record() -> Record:
    return {"good": 0, "bad": 0, "until": 0}


def refused_until(record: Record, now: float) -> float | None:
    """When this address's penalty ends, if it is refused at `now`. A penalty ending more
    than PENALTY_SECONDS ahead was set by a clock that was ahead (recordstore.CLOCK_SLACK)
    and refuses no one: taken at its word, a day's penalty set a year ahead lasted a year."""
    until = float(record["until"])
    return until if now < until <= now + PENALTY_SECONDS + CLOCK_SLACK else None


class KarmaStore:
    """Karma's records, and the policy that says when one is idle."""

    what = "karma"

    def __init__(self, location: str | Path, forget_days: int = DEFAULT_FORGET_DAYS) -> None:
        self.forget_seconds = forget_days * 86400
        self.records = open_records(str(location), self)

    def get(self, address: str, now: float | None = None) -> Record:
        """What karma knows of an address now (nothing once it is idle)."""
        return self.records.get(address, now) or _new_record()

    def update(self, address: str, good: int, bad: int, negative: int, strikes: int,
               now: float | None = None) -> Record:
        """Count one message (an idle record's counts start again from nothing)."""
        now = time.time() if now is None else now
        return self.records.change(address, counting(good, bad, negative, strikes, now), now)

    def idle(self, record: Record, now: float) -> bool:
        """Not heard from for forget_days and not refused now."""
        return "seen" in record and now - record["seen"] > self.forget_seconds \
            and refused_until(record, now) is None

    def restamp(self, record: Record, now: float) -> Record | None:
        """A record from before last-heard times were kept is given one now (so it is
        forgotten forget_days later, not at once), as is one last heard by a clock that
        was ahead; a penalty such a clock set is dropped."""
        changes: Record = {}
        if "seen" not in record or record["seen"] - now > CLOCK_SLACK:
            changes["seen"] = round(now)
        if float(record["until"]) > now and refused_until(record, now) is None:
            changes["until"] = 0
        return record | changes if changes else None

    def lifetime(self, record: Record, now: float) -> float:
        until = refused_until(record, now)
        return float(self.forget_seconds) if until is None else max(float(self.forget_seconds), until - now)

    def addresses(self, now: float | None = None) -> Iterator[tuple[str, Record]]:
        """Every address karma knows (none that is idle), with its record."""
        for address, record in self.records.items(now):
            yield address, _new_record() | record

    def forget(self, address: str, now: float | None = None) -> bool:
        """Drop what karma knows of one address (lifting any penalty); whether it knew it."""
        return self.records.delete(address, now)

    def forget_idle(self, now: float | None = None) -> int:
        """Forget the idle addresses now; returns how many."""
        return self.records.prune(now)

    def close(self) -> None:
        self.records.close()


def counting(good: int, bad: int, negative: int, strikes: int, now: float) -> Change:
    """The change one message's outcome makes to its sender's record; naughty once
    good - bad is at or below `negative` (Karma's threshold, -KarmaNegative)."""
    def count(record: Record | None) -> Record:
        record = dict(record or _new_record())
        record["good"] += good
        record["bad"] += bad
        record["seen"] = round(now)
        if record["bad"] >= strikes and record["good"] - record["bad"] <= negative:
            record["until"] = now + PENALTY_SECONDS
        return record
    return count


class Karma(Filter):
    name = "karma"
    blocking = True  # its database: a write may wait for another process's

    def __init__(self, store: KarmaStore, negative: int, strikes: int,
                 immune: LocalClients | None = None) -> None:
        """`negative` is KarmaNegative: how many more bad messages than good make an
        address naughty. SME and qpsmtpd give it as a positive number; spamkit read it
        before as the threshold of good - bad (-3), so either sign means its size."""
        self.store = store
        self.negative = -abs(negative)  # the threshold of good - bad
        self.strikes = strikes
        self.immune = immune if immune is not None else LocalClients([], [])

    def mail(self, tx: Transaction) -> Decision:
        if self.immune.holds(tx):
            return CONTINUE
        try:
            record = self.store.get(tx.peer)
        except StoreError as error:  # a reputation we cannot read refuses no one
            log.warning("karma database unusable, mail passes unchecked: %s", error)
            UNCHECKED.count(self.name, "database")
            return CONTINUE
        if refused_until(record, time.time()) is not None:
            return reject(self.name, "550 5.7.1 Your address has sent too much unwanted mail; "
                                     "try again tomorrow")
        return CONTINUE

    def finished(self, tx: Transaction, reply: str) -> None:
        if self.immune.holds(tx):
            return
        verdict = str(tx.notes.get("spam", ""))
        spam = verdict == "yes"
        # mail passed unscanned (over MaxMessageSize) says nothing good about its sender
        good = 1 if reply.startswith("2") and not spam and verdict != "unscanned" else 0
        bad = 1 if reply.startswith("5") or spam else 0
        if good or bad:
            try:
                self.store.update(tx.peer, good, bad, self.negative, self.strikes)
            except StoreError as error:
                log.warning("karma database unusable, %s not counted: %s", tx.peer, error)
                UNCHECKED.count(self.name, "database")
