"""The filters' own small databases (greylist, karma, sendlimit) held, over histories
hypothesis makes up, to what a shared Redis gives them: a record is gone at the instant
the time to live written with it runs out. LMDB drops idle records only at its daily
prune (or when its map is full), so for up to a day it still holds records that went
idle. Every answer it gives meanwhile must be the one the Redis store gives, and so must
every listing an administrator reads. Each filter's store is run three times over: on
LMDB with its daily prune, on LMDB pruned only when the history says so, and as Redis.

The histories: greylist attempts and an MTA's retries, an administrator letting a
waiting triplet pass or forgetting a triplet or a network; karma's strikes and good
messages from three addresses, its check at MAIL, forgetting; sendlimit's counts of two
logins, its check at RCPT, forgetting. Between them the clock moves on by a second to
weeks, or to just before, at or just after a moment when an answer may change: a
record's expiry, a retry's delay ending, a penalty ending, a minute's count leaving the
hour.

This compares the stores, not the filters' rules: a change to a rule (passing a retry a
second late, say) changes both alike and is not seen here; test_greylist.py and
test_karma_store.py hold the rules to their figures.

Redis is modelled, not run: the clock is the model's, and a real redis-server keeps its
own. `ExpiringRecords` keeps each record with the deadline RedisRecords writes (its
policy's lifetime, in whole milliseconds) and drops it as Redis does, once the clock is
past it; test_greylist's test_on_redis_each_record_expires_when_it_would_be_idle checks
those times to live on a real Redis."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from smtpfilter import recordstore
from smtpfilter.plugins.greylist import GreylistStore, _triplet_key
from smtpfilter.plugins.karma import KarmaStore, refused_until
from smtpfilter.plugins.sendlimit import BUCKET, WINDOW, SendCounts
from smtpfilter.recordstore import Change, LmdbRecords, Record, RecordPolicy, RecordStore

DAY = 86400
T0 = 1_800_000_000
DELAY, RETRY_WINDOW, PASS_DAYS, AUTO_WHITELIST = 300, 4 * 3600, 7, 2
FORGET_DAYS, NEGATIVE, STRIKES = 3, -2, 3

NETWORKS = ["192.0.2.0/24", "198.51.100.0/24"]
SENDERS = ["a@example.net", "b@example.net"]
RECIPIENTS = ["alice@example.org"]
ADDRESSES = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
LOGINS = ["alice", "bob"]

SPANS = [DELAY, DELAY + RETRY_WINDOW, PASS_DAYS * DAY, FORGET_DAYS * DAY, 3600, 3660, DAY]
STEPS = st.sampled_from(sorted({span + d for span in SPANS for d in (-1, 0, 1)})) | st.integers(1, 12 * DAY)


class ExpiringRecords(RecordStore):
    """Records as RedisRecords keeps them: each with a deadline its policy's lifetime
    gives when it is written, in whole milliseconds and at least one, and gone once the
    clock is past it (Redis keeps a key through its last millisecond)."""

    def __init__(self, policy: RecordPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self.kept: dict[str, tuple[str, float]] = {}

    def _read(self, key: str) -> Record | None:
        kept = self.kept.get(key)
        if kept is None or self.clock() > kept[1]:
            self.kept.pop(key, None)
            return None
        return json.loads(kept[0])  # (a copy, as a database read gives)

    def _write(self, key: str, change: Change, now: float) -> Record:
        record = change(self._read(key))
        milliseconds = max(1, round(self.policy.lifetime(record, now) * 1000))
        self.kept[key] = (json.dumps(record), now + milliseconds / 1000)
        return record

    def prune(self, now: float | None = None) -> int:
        return 0

    def _records(self) -> Iterator[tuple[str, Record]]:
        for key in list(self.kept):
            record = self._read(key)
            if record is not None:
                yield key, record

    def _take(self, key: str) -> Record | None:
        record = self._read(key)
        self.kept.pop(key, None)
        return record

    def close(self) -> None:
        pass


class History(RuleBasedStateMachine):
    """One filter's store three times over: on LMDB with its daily prune, on LMDB pruned
    only when the history says so (its idle records kept meanwhile, however long), and
    expiring as on Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.now = float(T0)
        self.directory = Path(tempfile.mkdtemp(prefix="spamkit-record-model-"))
        self.lmdb, self.unpruned, self.redis = (self.store(self.directory / name)
                                                for name in ("lmdb", "unpruned", "redis"))
        self.unpruned.records._prune_due = lambda now: False
        self.redis.records = ExpiringRecords(self.redis, lambda: self.now)  # (its LMDB left unused)

    def store(self, location: Path) -> Any:
        raise NotImplementedError

    def teardown(self) -> None:
        for key in [key for key in recordstore._OPEN if key[1].startswith(str(self.directory.resolve()))]:
            recordstore._OPEN.pop(key)[0].close()
        shutil.rmtree(self.directory)

    def each(self, step: str, act: Callable[[Any], object]) -> None:
        """`act` on each store at the model's time: the same answer from all three. The
        daily prune an LMDB change may start (on a thread of its own) is waited for."""
        answers = [act(self.lmdb), act(self.unpruned), act(self.redis)]
        assert isinstance(self.lmdb.records, LmdbRecords) and self.lmdb.records.wait_for_prune(10)
        where = f"{step} at T0+{self.now - T0:g} s"
        assert answers[0] == answers[2], where
        assert answers[1] == answers[2], f"{where}, on an LMDB database not pruned"

    @rule(seconds=STEPS)
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @rule(nth=st.integers(0, 3), offset=st.sampled_from([-1, 0, 0.001, 1]))
    def time_passes_to_a_moment(self, nth: int, offset: float) -> None:
        """To just before, at or just after one of the next moments at which an answer
        may change."""
        ahead = sorted({moment + offset for moment in self.moments() if moment + offset > self.now})
        if ahead:
            self.now = ahead[min(nth, len(ahead) - 1)]

    def moments(self) -> list[float]:
        """When each record expires; a subclass adds its filter's own."""
        return [deadline for _, deadline in self.redis.records.kept.values()]

    @rule()
    def lmdb_pruned(self) -> None:
        """The prune of the LMDB database that otherwise keeps every idle record."""
        self.unpruned.records.prune(self.now)


class GreylistHistory(History):
    def store(self, location: Path) -> GreylistStore:
        return GreylistStore(location, DELAY, RETRY_WINDOW, PASS_DAYS * DAY, AUTO_WHITELIST)

    @rule(network=st.sampled_from(NETWORKS), sender=st.sampled_from(SENDERS),
          recipient=st.sampled_from(RECIPIENTS))
    def attempt(self, network: str, sender: str, recipient: str) -> None:
        self.each("attempt", lambda store: store.check(network, sender, recipient, self.now))

    @rule(network=st.sampled_from(NETWORKS), sender=st.sampled_from(SENDERS),
          recipient=st.sampled_from(RECIPIENTS),
          after=st.sampled_from([DELAY - 1, DELAY, 900, DELAY + RETRY_WINDOW, DELAY + RETRY_WINDOW + 1]))
    def attempt_and_retry(self, network: str, sender: str, recipient: str, after: int) -> None:
        """An MTA's attempt and its retry from the queue."""
        self.attempt(network, sender, recipient)
        self.now += after
        self.attempt(network, sender, recipient)

    @rule(network=st.sampled_from(NETWORKS), sender=st.sampled_from(SENDERS),
          recipient=st.sampled_from(RECIPIENTS))
    def let_pass(self, network: str, sender: str, recipient: str) -> None:
        key = _triplet_key(network, sender, recipient)
        self.each("let pass", lambda store: store.let_pass(key, self.now))

    @rule(network=st.sampled_from(NETWORKS), sender=st.sampled_from(SENDERS),
          recipient=st.sampled_from(RECIPIENTS), whole_network=st.booleans())
    def forget(self, network: str, sender: str, recipient: str, whole_network: bool) -> None:
        key = "c:" + network if whole_network else _triplet_key(network, sender, recipient)
        self.each("forget", lambda store: store.forget(key, self.now))

    def moments(self) -> list[float]:
        """And when each waiting triplet's retry would pass."""
        return super().moments() + [record["first"] + DELAY for _, record in self.redis.records.items(self.now)
                                    if "first" in record]

    @invariant()
    def the_same_listings(self) -> None:
        self.each("listings", lambda store: (sorted(store.triplets(self.now)),
                                             sorted(store.networks(self.now))))


class KarmaHistory(History):
    def store(self, location: Path) -> KarmaStore:
        return KarmaStore(location, FORGET_DAYS)

    @rule(address=st.sampled_from(ADDRESSES))
    def at_mail(self, address: str) -> None:
        self.each("check at MAIL", lambda store: refused_until(store.get(address, self.now), self.now))

    @rule(address=st.sampled_from(ADDRESSES), bad=st.booleans())
    def counts_a_message(self, address: str, bad: bool) -> None:
        self.each("count", lambda store: store.update(address, int(not bad), int(bad), NEGATIVE,
                                                      STRIKES, self.now))

    @rule(address=st.sampled_from(ADDRESSES))
    def forget(self, address: str) -> None:
        self.each("forget", lambda store: store.forget(address, self.now))

    def moments(self) -> list[float]:
        """And when each penalty ends."""
        return super().moments() + [float(record["until"]) for _, record in self.redis.records.items(self.now)]

    @invariant()
    def the_same_listing(self) -> None:
        self.each("listing", lambda store: sorted(store.addresses(self.now)))


class SendlimitHistory(History):
    def store(self, location: Path) -> SendCounts:
        return SendCounts(location)

    @rule(login=st.sampled_from(LOGINS), recipients=st.integers(1, 5))
    def counts(self, login: str, recipients: int) -> None:
        self.each("count", lambda store: store.add(login, recipients, self.now))

    @rule(login=st.sampled_from(LOGINS))
    def at_rcpt(self, login: str) -> None:
        self.each("check at RCPT", lambda store: store.sent(login, self.now))

    @rule(login=st.sampled_from(LOGINS))
    def forget(self, login: str) -> None:
        self.each("forget", lambda store: store.forget(login, self.now))

    def moments(self) -> list[float]:
        """And when each minute's count leaves the hour."""
        return super().moments() + [float((minute + WINDOW // BUCKET) * BUCKET)
                                    for _, record in self.redis.records.items(self.now)
                                    for minute, _ in record["sent"]]

    @invariant()
    def the_same_listing(self) -> None:
        self.each("listing", lambda store: sorted(store.logins(self.now)))


@pytest.mark.parametrize("history", [GreylistHistory, KarmaHistory, SendlimitHistory])
def test_lmdb_answers_as_redis_after_any_history(history: type[History]) -> None:
    run_state_machine_as_test(history, settings=settings(
        max_examples=300, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
