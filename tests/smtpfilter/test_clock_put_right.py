"""A clock that was set ahead and has been put right (a VM host's wrong time, a mistyped
`date -s`, one server of several sharing a Redis) leaves records stamped in the future.

Before, each was taken at its word: a triplet first greylisted while the clock was a year
ahead was deferred at every retry until its sender bounced the message; a karma penalty
refused its address with 550 for a year and a day; a login's sendlimit count held it at
its limit for a year, so its user could send nothing; the LMDB records' daily prune was
put off for a year. A time ahead by more than recordstore.CLOCK_SLACK (an hour, how far
the clocks of servers sharing a database may differ) is now taken as a clock's mistake.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from smtpfilter.plugins.greylist import GreylistStore
from smtpfilter.plugins.karma import PENALTY_SECONDS, KarmaStore, refused_until
from smtpfilter.plugins.sendlimit import SendCounts
from smtpfilter.recordstore import CLOCK_SLACK, LmdbRecords
from tests.servers.redis import RedisServer
from tests.smtpfilter.conftest import STRANGER

YEAR = 365 * 86400.0
T0 = 1_800_000_000.0
DAY = 86400.0
DELAY, RETRY_WINDOW, PASS_LIFETIME = 300.0, 4 * 3600.0, 36 * DAY


@pytest.fixture(params=["lmdb", "redis"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "lmdb":
        return str(tmp_path / "records")
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url(prefix=f"test:{uuid.uuid4().hex}:")


def test_a_triplet_first_seen_a_year_ahead_passes_after_the_delay(location: str) -> None:
    store = GreylistStore(location, DELAY, RETRY_WINDOW, PASS_LIFETIME, 5)
    assert store.wait("192.0.2", "a@example.com", "b@example.org", now=T0 + YEAR) == DELAY
    # the clock put right: the retry is taken as a first attempt, and the next one passes
    assert store.wait("192.0.2", "a@example.com", "b@example.org", now=T0) == DELAY
    assert store.wait("192.0.2", "a@example.com", "b@example.org", now=T0 + DELAY + 60) == 0
    assert store.wait("192.0.2", "a@example.com", "b@example.org", now=T0 + DAY) == 0
    # within the slack, another server's clock is believed: the triplet still waits
    assert store.wait("192.0.2", "c@example.com", "b@example.org", now=T0 + CLOCK_SLACK / 2) == DELAY
    assert store.wait("192.0.2", "c@example.com", "b@example.org", now=T0 + 60) == DELAY


def test_a_waiting_triplet_from_a_clock_ahead_is_pruned_a_passed_one_kept(tmp_path: Path) -> None:
    store = GreylistStore(tmp_path / "greylist", DELAY, RETRY_WINDOW, PASS_LIFETIME, 5)
    store.wait("192.0.2", "a@example.com", "b@example.org", now=T0 + YEAR)
    store.wait("192.0.2", "c@example.com", "b@example.org", now=T0 + YEAR)
    store.wait("192.0.2", "c@example.com", "b@example.org", now=T0 + YEAR + DELAY)  # passed
    assert len(list(store.triplets(now=T0))) == 1  # the waiting one is not listed as waiting
    assert store.prune(now=T0) == 1
    assert store.wait("192.0.2", "c@example.com", "b@example.org", now=T0) == 0  # still passes


def test_a_penalty_set_a_year_ahead_refuses_no_one(location: str) -> None:
    store = KarmaStore(location)
    for _ in range(4):
        store.update("192.0.2.1", 0, 1, -3, 3, now=T0 + YEAR)
    # (on LMDB, a prune the clock ahead started would drop what was written at T0: idle
    # for a year by that clock)
    assert not isinstance(store.records, LmdbRecords) or store.records.wait_for_prune(10)
    for _ in range(4):
        store.update("192.0.2.2", 0, 1, -3, 3, now=T0)
    assert refused_until(store.get("192.0.2.1"), T0) is None
    assert refused_until(store.get("192.0.2.2"), T0) == T0 + PENALTY_SECONDS  # a real one stands
    # another server's clock, ahead within the slack: its penalty is believed
    for _ in range(4):
        store.update("192.0.2.3", 0, 1, -3, 3, now=T0 + CLOCK_SLACK / 2)
    assert refused_until(store.get("192.0.2.3"), T0) == T0 + CLOCK_SLACK / 2 + PENALTY_SECONDS
    # a bad message after the clock is right sets a penalty from now
    store.update("192.0.2.1", 0, 1, -3, 3, now=T0)
    assert refused_until(store.get("192.0.2.1"), T0) == T0 + PENALTY_SECONDS


def test_a_record_stamped_ahead_is_restamped_then_forgotten(tmp_path: Path) -> None:
    store = KarmaStore(tmp_path / "karma", forget_days=30)
    for _ in range(4):
        store.update("192.0.2.1", 0, 1, -3, 3, now=T0 + YEAR)
    records = store.records
    assert isinstance(records, LmdbRecords) and records.wait_for_prune(10)
    assert store.forget_idle(now=T0) == 0
    assert store.get("192.0.2.1") == {"good": 0, "bad": 4, "until": 0, "seen": round(T0)}
    assert store.forget_idle(now=T0 + 31 * DAY) == 1  # forgotten 30 days on, not a year


def test_karmas_redis_record_from_a_clock_ahead_lives_forget_days(redis_server: RedisServer) -> None:
    import redis

    prefix = f"test:{uuid.uuid4().hex}:"
    store = KarmaStore(redis_server.url(prefix=prefix), forget_days=1)
    now = time.time()
    # written by this server while its clock is right, over a record another server
    # wrote with its clock a year ahead
    redis.Redis(port=redis_server.port).set(
        prefix + "192.0.2.1", json.dumps({"good": 0, "bad": 4, "until": now + YEAR, "seen": now + YEAR}))
    store.update("192.0.2.1", 2, 0, -3, 3, now=now)  # (not naughty now: no penalty set)
    assert redis.Redis(port=redis_server.port).pttl(prefix + "192.0.2.1") / 1000 <= 86400


def test_the_filter_takes_mail_from_an_address_a_clock_ahead_punished(filter_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Through the SMTP filter, and `spamkit karma list`: MAIL FROM answered 550 before."""
    import subprocess
    import sys

    database = tmp_path / "karma"
    store = KarmaStore(database)
    for _ in range(3):  # (naughty at its third strike; its good message below then mends it)
        store.update("127.0.0.1", 0, 1, -3, 3, now=time.time() + YEAR)
    assert isinstance(store.records, LmdbRecords) and store.records.wait_for_prune(10)
    for _ in range(4):
        store.update("127.0.0.2", 0, 1, -3, 3)
    send = filter_server(STRANGER + f'SmtpFilters = ["karma"]\nKarmaDatabase = "{database}"\n')
    assert send(client="127.0.0.1").startswith("250")
    assert send(client="127.0.0.2").startswith("550")  # punished with the clock right
    config = tmp_path / "list.toml"
    config.write_text(f'KarmaDatabase = "{database}"\n')
    listed = subprocess.run([sys.executable, "-m", "spamkit", "karma", "list", "--json", "--config", str(config)],
                            capture_output=True, text=True, check=True)
    refused = {row["address"]: row["refused"] for row in json.loads(listed.stdout)["addresses"]}
    assert refused == {"127.0.0.1": False, "127.0.0.2": True}


def test_a_logins_count_from_a_clock_ahead_does_not_hold_it_at_its_limit(location: str) -> None:
    counts = SendCounts(location)
    counts.add("alice", 500, now=T0 + YEAR)
    counts.add("bob", 20, now=T0 + CLOCK_SLACK / 2)  # another server's clock, within the slack
    assert counts.sent("alice", now=T0) == 0
    assert counts.sent("bob", now=T0) == 20
    counts.add("alice", 3, now=T0)
    assert counts.sent("alice", now=T0) == 3
    assert dict(counts.logins(now=T0)) == {"alice": 3, "bob": 20}


def test_a_prune_stamped_a_year_ahead_does_not_put_off_the_next(tmp_path: Path) -> None:
    store = KarmaStore(tmp_path / "karma", forget_days=30)
    records = store.records
    assert isinstance(records, LmdbRecords)
    store.update("192.0.2.1", 1, 0, -3, 3, now=T0 + YEAR)  # (starts a prune, its mark a year ahead)
    assert records.wait_for_prune(10)
    store.update("192.0.2.2", 1, 0, -3, 3, now=T0)  # the clock put right: a prune is due
    assert records.wait_for_prune(10)
    store.update("192.0.2.3", 1, 0, -3, 3, now=T0 + 40 * DAY)  # and a day later, another
    assert records.wait_for_prune(10)
    assert store.get("192.0.2.2") == {"good": 0, "bad": 0, "until": 0}  # idle 40 days: gone
    assert store.get("192.0.2.3")["good"] == 1
