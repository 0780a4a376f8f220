"""sendlimit: how many recipients one user who logged in may send to in an hour.

A stolen password is how spam most often leaves a small office's server: a script logs
in and sends to thousands until the server's address is on every blocklist and the
office's own mail bounces. So each login's recipients over the last hour are counted, in
every session (and, in a shared Redis, on every server), and once SendLimitPerHour is
reached its next RCPT is answered 450 4.7.1: deferred, not refused, so a real user's
mail program tries again later and nothing is lost. The first deferral of a login in an
hour is logged as a warning, `sendlimit=reached user=NAME`, for the administrator (and
fail2ban) to act on. A user who needs more (a newsletter) gets their own limit in the
configuration's [user.NAME] table.

Counted are the recipients of the messages the next hop took (finished with 2xx), in
one-minute buckets. Sessions at once may each add up to MaxRecipients before the first of
them ends. A database that cannot be read or written limits no one, as karma's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, tempfail
from smtpfilter.logtext import printable, reply_text
from smtpfilter.metrics import UNCHECKED
from smtpfilter.recordstore import CLOCK_SLACK, Record, open_records
from spamkit.errors import StoreError

log = logging.getLogger("spamkit.smtpfilter")

WINDOW = 3600  # seconds over which a login's recipients are counted
BUCKET = 60  # seconds a count is kept to: a record holds at most WINDOW / BUCKET of them


class SendCounts:
    """Recipients sent by each login, in per-minute buckets over the last WINDOW (a
    RecordStore's records, {"sent": [[minute, recipients], ...]})."""

    what = "sendlimit"

    def __init__(self, location: str | Path) -> None:
        self.records = open_records(str(location), self)

    def sent(self, login: str, now: float | None = None) -> int:
        """Recipients sent in the last WINDOW seconds."""
        now = time.time() if now is None else now
        return _within(self.records.get(login.lower(), now), now)

    def add(self, login: str, recipients: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        minute = int(now // BUCKET)

        def count(record: Record | None) -> Record:
            buckets = _recent(record, now)
            if buckets and buckets[-1][0] == minute:
                buckets[-1] = [minute, buckets[-1][1] + recipients]
            else:
                buckets.append([minute, recipients])
            return {"sent": buckets}

        self.records.change(login.lower(), count, now)

    def logins(self, now: float | None = None) -> Iterator[tuple[str, int]]:
        """Every login with recipients in the last WINDOW, and how many."""
        now = time.time() if now is None else now
        for login, record in self.records.items(now):
            if sent := _within(record, now):
                yield login, sent

    def forget(self, login: str, now: float | None = None) -> bool:
        """Drop a login's count (lifting a deferral at once); whether it had recipients in
        the last WINDOW."""
        return self.records.delete(login.lower(), now)

    def idle(self, record: Record, now: float) -> bool:
        return not _recent(record, now)

    def restamp(self, record: Record, now: float) -> Record | None:
        return None

    def lifetime(self, record: Record, now: float) -> float:
        return float(WINDOW + BUCKET)

    def close(self) -> None:
        self.records.close()


def _recent(record: Record | None, now: float) -> list[list[int]]:
    """A record's [minute, recipients] buckets within the last WINDOW at `now`. A bucket
    further ahead than recordstore.CLOCK_SLACK was counted by a clock that was ahead, and
    is left out: kept, it held the login at its limit for as long as that clock was ahead."""
    oldest = int(now // BUCKET) - WINDOW // BUCKET
    newest = int((now + CLOCK_SLACK) // BUCKET)
    return [bucket for bucket in (record or {}).get("sent", []) if oldest < bucket[0] <= newest]


def _within(record: Record | None, now: float) -> int:
    return sum(count for _, count in _recent(record, now))


class SendLimit(Filter):
    name = "sendlimit"
    blocking = True  # its database: a write may wait for another process's

    def __init__(self, counts: SendCounts, limit_of: Callable[[str], int]) -> None:
        self.counts = counts
        self.limit_of = limit_of  # a login's SendLimitPerHour (its own, else everyone's)
        self._warned: dict[str, float] = {}  # login -> when its deferral was last logged

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        login = tx.authenticated
        if not login:
            return CONTINUE
        limit = self.limit_of(login)
        if limit <= 0:
            return CONTINUE
        try:
            sent = self.counts.sent(login)
        except StoreError as error:  # a count we cannot read limits no one
            log.warning("sendlimit database unusable, mail passes unchecked: %s", error)
            UNCHECKED.count(self.name, "database")
            return CONTINUE
        if sent + len(tx.rcpt_tos) < limit:
            return CONTINUE
        now = time.monotonic()
        if now - self._warned.get(login, -WINDOW) >= WINDOW:
            self._warned[login] = now
            log.warning("client=%s user=%s sendlimit=reached recipients=%d limit=%d: deferring its "
                        "mail for up to an hour; a stolen password?", tx.peer, printable(login, 100),
                        sent + len(tx.rcpt_tos), limit)
        return tempfail(self.name, f"450 4.7.1 User {reply_text(login)} has sent to {limit} recipients "
                                   "in the last hour; try again later")

    def finished(self, tx: Transaction, reply: str) -> None:
        if not tx.authenticated or not reply.startswith("2") or not tx.rcpt_tos:
            return
        try:
            self.counts.add(tx.authenticated, len(tx.rcpt_tos))
        except StoreError as error:
            log.warning("sendlimit database unusable, %s's recipients not counted: %s",
                        printable(tx.authenticated, 100), error)
            UNCHECKED.count(self.name, "database")
