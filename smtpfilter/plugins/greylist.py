"""greylist: a sender new to a recipient is told to come back later (qpsmtpd's greylisting).

A real MTA queues a 4xx and tries again; most spam engines send once and move on. The
first time a (client network, sender, recipient) triplet is seen, RCPT gets 450; a retry
after GreylistDelay and within GreylistRetryHours passes, and the triplet then passes at
once for GreylistPassDays after it last sent. A client network whose triplets have passed
GreylistAutoWhitelist times has shown it retries, and is not greylisted again while it
keeps sending. Off unless "greylist" is in SmtpFilters, as on SME, where it is "under the
covers" for those who want it. Decision 0021 has the constants and why.

LocalNetworks, RelayClients and WhitelistSenders are never greylisted, nor is mail to
postmaster@ and abuse@ (as postgrey's whitelist_recipients) or to GreylistExceptRecipients.
A greylist database that cannot be written lets mail through: greylisting is a delay, and
a broken one must not turn into refusing everything.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, tempfail
from smtpfilter.headers import without_fields
from smtpfilter.metrics import UNCHECKED
from smtpfilter.networks import LocalClients
from smtpfilter.plugins.dns import always_receives
from smtpfilter.plugins.envelope import address_matches
from smtpfilter.recordstore import CLOCK_SLACK, Record, open_records
from spamkit.errors import StoreError

log = logging.getLogger("spamkit.smtpfilter")

# A passed triplet's (or whitelisted network's) last-heard time is written at most this
# often, so that mail from a sender that passed is checked with a read alone; the pass
# then lasts GreylistPassDays from a time at most this much older than its last message.
SEEN_REFRESH = 3600.0

_BATV = re.compile(r"^(?:prvs|msprvs\d*|btv1)=+[^=@]*=+")  # a signed return path's tag
_DIGITS = re.compile(r"\d+")


def client_network(peer: str, by_subnet: bool = True) -> str:
    """The part of a client's address a triplet is about: its /24 (IPv6: /64) when
    by_subnet, since big senders retry from another address of the same pool."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not by_subnet:
        return str(address)
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def sender_pattern(sender: str) -> str:
    """The sender as a triplet holds it: lower-case, without a BATV tag, every run of
    digits as "#", so a list's per-message bounce address (VERP) is one sender."""
    address = sender.strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return _DIGITS.sub("#", address)
    return _DIGITS.sub("#", _BATV.sub("", local)) + "@" + domain


class GreylistStore:
    """Triplet records ({"first", "passed", "seen", "tries", "client", "sender",
    "recipient"}) keyed by a digest of the triplet, so that any address fits a key, and
    per-network ones ({"passes", "seen"}) keyed by the network; and the policy that says
    when one is idle. A triplet record holds its addresses in clear for `spamkit greylist
    list` (records written before they did have none, and are pruned within
    GreylistPassDays)."""

    what = "greylist"

    def __init__(self, location: str | Path, delay: float, retry_window: float,
                 pass_lifetime: float, auto_whitelist: int) -> None:
        self.records = open_records(str(location), self)
        self.delay = delay
        self.retry_window = retry_window
        self.pass_lifetime = pass_lifetime
        self.auto_whitelist = auto_whitelist

    def idle(self, record: Record, now: float) -> bool:
        """A triplet never retried in time, or first seen by a clock set ahead, or anything
        not heard from for pass_lifetime."""
        return self.lifetime(record, now) < 0 or _first_seen_ahead(record, now)

    def restamp(self, record: Record, now: float) -> Record | None:
        return None

    def lifetime(self, record: Record, now: float) -> float:
        if record.get("passed") or "passes" in record:
            return float(record["seen"]) + self.pass_lifetime - now
        return float(record["first"]) + self.delay + self.retry_window - now

    def get(self, key: str, now: float | None = None) -> Record | None:
        return self.records.get(key, now)

    def prune(self, now: float | None = None) -> int:
        return self.records.prune(now)

    def wait(self, network: str, sender: str, recipient: str, now: float | None = None) -> float:
        """Seconds this triplet must still wait (0: it passes), recording the attempt."""
        return self.check(network, sender, recipient, now).wait

    def check(self, network: str, sender: str, recipient: str,
              now: float | None = None) -> Attempt:
        """This attempt of a triplet, recorded: how long it must still wait, or, when it is
        the retry that passes, how long the triplet was made to wait."""
        now = time.time() if now is None else now
        records = self.records
        client_key = "c:" + network
        if self.auto_whitelist:
            client = records.get(client_key, now)
            if client is not None and client["passes"] >= self.auto_whitelist:
                if not 0 <= now - client["seen"] < SEEN_REFRESH:
                    records.change(client_key, lambda record: (record or client) | {"seen": now}, now)
                return PASSES
        triplet_key = _triplet_key(network, sender, recipient)
        names = {"client": network, "sender": sender, "recipient": recipient}
        known = records.get(triplet_key, now)
        if known is not None and known["passed"] and 0 <= now - known["seen"] < SEEN_REFRESH:
            return PASSES  # passed, and heard from within the hour: nothing to write

        def attempt(record: Record | None) -> Record:
            if record is None:
                # new; or idle: retried too late, or passed long ago, or first seen by a
                # clock that was ahead (it would wait as long as that): afresh
                return {"first": now, "passed": 0, "seen": now, "tries": 1} | names
            if record["passed"]:
                return record | {"seen": now} | names
            # (max: another thread's attempt, its clock read a moment after ours, may have
            # made the record: ours is then the same instant, not a retry from the past)
            if max(0.0, now - record["first"]) >= self.delay:
                return record | {"passed": now, "seen": now, "tries": record["tries"] + 1} | names
            return record | {"seen": now, "tries": record["tries"] + 1} | names  # too early

        def one_more_pass(record: Record | None) -> Record:
            """The network's count of passed triplets, one more (a count gone idle is
            None here, and starts again)."""
            return {"passes": (record or {}).get("passes", 0) + 1, "seen": now}

        triplet = records.change(triplet_key, attempt, now)
        if triplet["passed"] == now and triplet["tries"] > 1:  # this attempt passed it
            records.change(client_key, one_more_pass, now)
            return Attempt(0.0, max(0.0, now - float(triplet["first"])))
        if triplet["passed"]:
            return PASSES
        return Attempt(max(0.0, self.delay - max(0.0, now - float(triplet["first"]))))

    def triplets(self, now: float | None = None) -> Iterator[tuple[str, Record]]:
        """Every triplet record that is not idle (an idle one would be taken as new), with
        its key; in no promised order."""
        for key, record in self.records.items(now):
            if key.startswith("t:"):
                yield key, record

    def networks(self, now: float | None = None) -> Iterator[tuple[str, Record]]:
        """Every client network's count of passed triplets that is not idle."""
        for key, record in self.records.items(now):
            if key.startswith("c:"):
                yield key[2:], record

    def let_pass(self, key: str, now: float | None = None) -> bool:
        """An administrator's pass for a triplet still waiting: its next attempt is taken,
        and the ones after it for GreylistPassDays. Whether it was waiting (one that
        passed meanwhile, or went idle, is left as it is). The network's count of passed
        triplets is not raised: the network has not shown it retries."""
        now = time.time() if now is None else now
        passed = False

        def let(record: Record | None) -> Record:
            nonlocal passed
            if record is None:  # gone idle since it was looked at: an idle record, which
                return dict(_IDLE_TRIPLET)  # an attempt takes as new and the prune drops
            if record["passed"]:
                return record
            passed = True
            return record | {"passed": now, "seen": now}

        if self.records.get(key, now) is None:
            return False
        self.records.change(key, let, now)
        return passed

    def forget(self, key: str, now: float | None = None) -> bool:
        """Drop one triplet (its next attempt is greylisted as new), or with a "c:" key a
        client network's count of passed triplets (GreylistAutoWhitelist's exemption
        ends); whether it was there (and not idle)."""
        return self.records.delete(key, now)

    def close(self) -> None:
        self.records.close()


_IDLE_TRIPLET = {"first": 0.0, "passed": 0, "seen": 0.0, "tries": 0}


def _first_seen_ahead(record: Record, now: float) -> bool:
    """A waiting triplet whose first attempt lies further ahead than the clocks of servers
    sharing the database may differ (recordstore.CLOCK_SLACK)."""
    return not record.get("passed") and "first" in record and record["first"] - now > CLOCK_SLACK


def _triplet_key(network: str, sender: str, recipient: str) -> str:
    digest = hashlib.blake2b(f"{network}\0{sender}\0{recipient}".encode("utf-8", "replace"),
                             digest_size=16).hexdigest()
    return "t:" + digest


@dataclass(frozen=True)
class Attempt:
    wait: float  # seconds still to wait; 0: it passes
    delayed: float = 0.0  # for the retry that passes: seconds since the first attempt


PASSES = Attempt(0.0)


class Greylist(Filter):
    name = "greylist"
    blocking = True  # its database: a write may wait for another process's

    def __init__(self, store: GreylistStore, local: LocalClients, whitelist_senders: list[str],
                 by_subnet: bool, action: str, our_name: str = "localhost",
                 except_recipients: list[str] | None = None) -> None:
        self.store = store
        self.local = local
        self.whitelist_senders = [p.lower() for p in whitelist_senders]
        self.except_recipients = [p.lower() for p in except_recipients or []]
        self.by_subnet = by_subnet
        self.action = action
        self.our_name = our_name

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        sender = tx.mail_from.strip().strip("<>").lower()
        recipient = recipient.strip().strip("<>").lower()
        if any(address_matches(p, sender) for p in self.whitelist_senders) \
                or always_receives(recipient) \
                or any(address_matches(p, recipient) for p in self.except_recipients):
            return CONTINUE
        try:
            attempt = self.store.check(client_network(tx.peer, self.by_subnet),
                                       sender_pattern(sender), recipient)
        except StoreError as error:
            log.warning("greylist database unusable, mail passes ungreylisted: %s", error)
            UNCHECKED.count(self.name, "database")
            return CONTINUE
        wait = attempt.wait
        if wait <= 0:
            if attempt.delayed:  # for the X-Greylist header at DATA
                earlier = tx.notes.get(_DELAYED)
                tx.notes[_DELAYED] = max(earlier if isinstance(earlier, float) else 0.0,
                                         attempt.delayed)
            return CONTINUE
        if self.action == "log":
            log.info("greylist: would defer client=%s from=<%s> rcpt=%s", tx.peer, sender,
                     recipient)
            return CONTINUE
        return tempfail(self.name, f"450 4.7.1 Greylisted: please try again in "
                                   f"{max(1, math.ceil(wait))} seconds")

    def data(self, tx: Transaction) -> Decision:
        """Say in the header how long a retry that passed was made to wait (as postgrey's
        X-Greylist does), replacing any X-Greylist that claims to be ours."""
        delayed = tx.notes.get(_DELAYED)
        ours = f" at {self.our_name};".encode()
        tx.data = without_fields(tx.data, "x-greylist", lambda value: ours in value)
        if isinstance(delayed, float):
            tx.data = (f"X-Greylist: delayed {round(delayed)} seconds by spamkit at "
                       f"{self.our_name}; {formatdate(localtime=True)}\r\n").encode() + tx.data
        return CONTINUE


_DELAYED = "greylist_delayed"
