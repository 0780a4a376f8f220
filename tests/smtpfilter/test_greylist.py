"""greylist: a new (client network, sender, recipient) gets 450 at RCPT; its retry after
GreylistDelay passes, and then it passes at once. The store's windows are checked with a
clock passed in; the filter through a real server, swaks and smtp-sink, with clients on
other loopback addresses for other networks."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpfilter.metrics import UNCHECKED, Metrics
from smtpfilter.networks import LocalClients
from smtpfilter.plugins import machine_name
from smtpfilter.plugins.greylist import Greylist, GreylistStore, client_network, sender_pattern
from smtpfilter.recordstore import LmdbRecords
from tests.servers.redis import RedisServer
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks
from tests.smtpfilter.conftest import PLAIN, STRANGER

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 86400.0


def _lmdb_env(store: GreylistStore) -> lmdb.Environment:
    assert isinstance(store.records, LmdbRecords)
    return store.records._env


def _store(location: Path | str, auto_whitelist: int = 0, delay: float = 300) -> GreylistStore:
    return GreylistStore(location, delay=delay, retry_window=48 * HOUR, pass_lifetime=36 * DAY,
                         auto_whitelist=auto_whitelist)


@pytest.fixture(params=["lmdb", "redis"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store test keeps its records: a directory (LMDB), or a Redis prefix of its
    own on the session's redis-server, for filters on several machines."""
    if request.param == "lmdb":
        return str(tmp_path / "greylist")
    redis: RedisServer = request.getfixturevalue("redis_server")
    return redis.url(prefix=f"test:{uuid.uuid4().hex}:")


def test_a_triplet_waits_the_delay_then_passes_until_idle_for_pass_days(location: str) -> None:
    store = _store(location)
    triplet = ("192.0.2.0/24", "a@example.net", "b@example.org")
    assert store.wait(*triplet, now=T0) == 300
    assert store.wait(*triplet, now=T0 + 100) == 200  # too early: the wait is not restarted
    assert store.wait(*triplet, now=T0 + 300) == 0
    assert store.wait(*triplet, now=T0 + 30 * DAY) == 0  # passed: at once, and seen again
    assert store.wait(*triplet, now=T0 + 65 * DAY) == 0  # 35 days after it last sent
    assert store.wait(*triplet, now=T0 + 102 * DAY) == 300  # 37 days idle: a stranger again

    # each part of the triplet counts: another recipient, sender or network waits
    assert store.wait("192.0.2.0/24", "a@example.net", "c@example.org", now=T0 + 300) == 300
    assert store.wait("192.0.2.0/24", "z@example.net", "b@example.org", now=T0 + 300) == 300
    assert store.wait("198.51.100.0/24", "a@example.net", "b@example.org", now=T0 + 300) == 300


def test_mail_that_passed_is_checked_with_a_read_alone_within_the_hour(tmp_path: Path) -> None:
    """A passed triplet's, or a whitelisted network's, last-heard time is written at most
    once an hour (SEEN_REFRESH): a regular correspondent's mail costs no write
    transaction, and so no synced commit."""
    triplet = ("192.0.2.0/24", "a@example.net", "b@example.org")
    for auto_whitelist, then in ((0, triplet), (1, ("192.0.2.0/24", "new@example.net", "x@example.org"))):
        store = _store(tmp_path / f"greylist-{auto_whitelist}", auto_whitelist)
        store.wait(*triplet, now=T0)
        store.wait(*triplet, now=T0 + 300)  # passes (and, with 1, whitelists its network)
        commits = _lmdb_env(store).info()["last_txnid"]
        for minute in range(1, 60):
            assert store.wait(*then, now=T0 + 300 + 60 * minute) == 0
        assert _lmdb_env(store).info()["last_txnid"] == commits
        assert store.wait(*then, now=T0 + 300 + 2 * HOUR) == 0  # an hour on: written
        assert _lmdb_env(store).info()["last_txnid"] > commits
        assert store.wait(*then, now=T0 + 300 + 2 * HOUR + 36 * DAY) == 0  # from the refresh


def test_an_attempt_that_read_the_clock_before_a_concurrent_one_is_not_a_retry(location: str) -> None:
    """Two sessions at once, the second to write having read the clock first: its attempt
    finds a triplet "first seen" a moment in its future. That is the same instant, not a
    retry made too early: with GreylistDelay 0 it passes, with 300 it waits 300, never
    300 and a bit ("try again in 1 seconds" at delay 0, as the load test once heard)."""
    triplet = ("192.0.2.0/24", "a@example.net", "b@example.org")
    at_once = _store(location, delay=0)
    assert at_once.wait(*triplet, now=T0 + 0.4) == 0
    assert at_once.wait(*triplet, now=T0) == 0
    other = ("198.51.100.0/24", "a@example.net", "b@example.org")
    delayed = _store(location)
    assert delayed.wait(*other, now=T0 + 0.4) == 300
    assert delayed.wait(*other, now=T0) == 300


def test_a_retry_after_the_window_starts_the_wait_again(location: str) -> None:
    store = _store(location)
    triplet = ("192.0.2.0/24", "a@example.net", "b@example.org")
    assert store.wait(*triplet, now=T0) == 300
    assert store.wait(*triplet, now=T0 + 300 + 49 * HOUR) == 300  # 49 h late: afresh
    assert store.wait(*triplet, now=T0 + 600 + 49 * HOUR) == 0


def test_pruning_drops_what_was_never_retried_and_what_went_idle(tmp_path: Path) -> None:
    store = _store(tmp_path / "greylist")
    store.wait("198.51.100.0/24", "old@example.net", "b@example.org", now=T0 - 60 * DAY)
    store.wait("198.51.100.0/24", "old@example.net", "b@example.org", now=T0 - 59 * DAY)
    store.wait("192.0.2.0/24", "once@example.net", "b@example.org", now=T0)  # a spam run
    store.wait("192.0.2.0/24", "real@example.net", "b@example.org", now=T0)
    store.wait("192.0.2.0/24", "real@example.net", "b@example.org", now=T0 + 600)  # passed
    # (the first write at T0 started the daily prune, on a thread of its own: the records
    # idle for 59 days may go there, the rest here)
    assert isinstance(store.records, LmdbRecords) and store.records.wait_for_prune(10)
    store.prune(now=T0 + 3 * DAY)
    # gone: the spam run's triplet, and the triplet and network record idle for 62 days
    left = [key for key, _ in store.records.items(T0 + 3 * DAY)]
    assert len(left) == 2 and "c:192.0.2.0/24" in left, left
    assert store.prune(now=T0 + 3 * DAY) == 0
    assert store.wait("192.0.2.0/24", "real@example.net", "b@example.org", now=T0 + 3 * DAY) == 0


def test_a_network_that_passed_often_enough_is_not_greylisted_again(location: str) -> None:
    store = _store(location, auto_whitelist=2)
    network = "192.0.2.0/24"
    for n, recipient in enumerate(("b@example.org", "c@example.org")):
        assert store.wait(network, "a@example.net", recipient, now=T0 + n) > 0
        assert store.wait(network, "a@example.net", recipient, now=T0 + 400 + n) == 0
    assert store.wait(network, "new@example.net", "d@example.org", now=T0 + 500) == 0
    assert store.wait("198.51.100.0/24", "new@example.net", "d@example.org", now=T0 + 500) == 300
    # a whitelisted network idle for longer than GreylistPassDays has to show itself again
    assert store.wait(network, "new@example.net", "e@example.org", now=T0 + 40 * DAY) == 300


def test_triplet_parts_are_normalized() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("192.0.2.77", by_subnet=False) == "192.0.2.77"
    assert client_network("2001:db8::1:2:3:4") == "2001:db8::/64"
    assert client_network("not an address") == "not an address"
    # a list's per-message bounce address and a signed return path are one sender each
    assert sender_pattern("<Bounce-1234-5678@Lists.Example.Net>") == "bounce-#-#@lists.example.net"
    assert sender_pattern("prvs=0123abcd=User@example.net") == "user@example.net"
    assert sender_pattern("btv1==f00==user@example.net") == "user@example.net"
    assert sender_pattern("") == ""


def _greylisting(filter_server, tmp_path: Path, *lines: str):  # type: ignore[no-untyped-def]
    return filter_server(STRANGER + 'SmtpFilters = ["greylist"]\nGreylistDelay = 2\n'
                         f'GreylistDatabase = "{tmp_path / "greylist"}"\n' + "".join(lines))


def _send_from(port: int, tmp_path: Path, client: str, sender: str = "a@example.net",
               to: str = "b@example.org") -> str:
    message = tmp_path / "m.eml"
    message.write_bytes(PLAIN)
    return swaks(port, message, sender, to, "client.example.net",
                 extra=("--local-interface", client))


def test_through_the_filter_the_retry_after_the_delay_is_relayed(
        filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    send = _greylisting(filter_server, tmp_path)
    first = _send_from(send.port, tmp_path, "127.0.0.5")
    assert first.startswith("450 4.7.1 Greylisted: please try again in 2 seconds"), first
    assert _send_from(send.port, tmp_path, "127.0.0.5").startswith("450")  # too soon
    assert sink.messages() == []
    time.sleep(2.2)
    assert _send_from(send.port, tmp_path, "127.0.0.5").startswith("250")
    assert _send_from(send.port, tmp_path, "127.0.0.9").startswith("250")  # same /24
    assert _send_from(send.port, tmp_path, "127.0.1.9").startswith("450")  # another network
    assert _send_from(send.port, tmp_path, "127.0.0.5", to="c@example.org").startswith("450")
    # the retry that passed says how long it waited (as postgrey's header does); the next
    # message of the same triplet was not made to wait (smtp-sink's file names do not
    # keep the order of arrival)
    delivered = sink.messages()
    [retried] = [m for m in delivered if b"X-Greylist" in m]
    assert len(delivered) == 2
    assert re.search(rb"X-Greylist: delayed [23] seconds by spamkit at " + re.escape(
        machine_name().encode()) + rb"; ", retried), retried[:600]

    # by address: the triplets above were their network's; each address starts afresh
    sink_count = 2
    by_address = _greylisting(filter_server, tmp_path, "GreylistBySubnet = false\n")
    assert _send_from(by_address.port, tmp_path, "127.0.0.5").startswith("450")
    time.sleep(2.2)
    assert _send_from(by_address.port, tmp_path, "127.0.0.5").startswith("250")
    assert _send_from(by_address.port, tmp_path, "127.0.0.6").startswith("450")  # same /24
    assert len(sink.messages()) == sink_count + 1


def test_an_x_greylist_header_claiming_to_be_ours_is_removed(
        filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A sender cannot make a message look greylisted here; another host's is kept."""
    ours = machine_name()
    send = filter_server('SmtpFilters = ["greylist"]\nLocalDomains = ["example.org"]\n'
                         f'GreylistDatabase = "{tmp_path / "greylist"}"\n')
    forged = (f"X-Greylist: delayed 9 seconds by spamkit at {ours}; today\r\n"
              "X-Greylist: delayed 300 seconds by postgrey at mx.example.net; today\r\n").encode()
    assert send(forged + PLAIN).startswith("250")
    [delivered] = sink.messages()
    assert f"at {ours};".encode() not in delivered
    assert b"by postgrey at mx.example.net" in delivered


def test_only_the_recipients_that_passed_get_the_message(
        filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    send = _greylisting(filter_server, tmp_path)
    assert _send_from(send.port, tmp_path, "127.0.0.5").startswith("450")
    time.sleep(2.2)
    reply = _send_from(send.port, tmp_path, "127.0.0.5", to="b@example.org,new@example.org")
    assert reply.startswith("250"), reply
    [delivered] = sink.messages()
    recipients = [line for line in delivered.split(b"\n") if line.startswith(b"X-Rcpt-Args:")]
    assert recipients == [b"X-Rcpt-Args: <b@example.org>"]


def test_local_clients_whitelisted_senders_and_log_mode_are_not_deferred(
        filter_server, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    ours = filter_server('SmtpFilters = ["greylist"]\nLocalDomains = ["example.org"]\n'
                         f'GreylistDatabase = "{tmp_path / "greylist"}"\n')  # 127.0.0.1 relays
    assert ours(sender="a@example.net").startswith("250")
    trusted = _greylisting(filter_server, tmp_path,
                           'WhitelistSenders = ["*@partner.example", "@friend.example", "ally.example"]\n')
    assert _send_from(trusted.port, tmp_path, "127.0.0.5", "x@partner.example").startswith("250")
    # the envelope checks' forms for a whole host (they whitelisted no one here)
    assert _send_from(trusted.port, tmp_path, "127.0.0.5", "y@friend.example").startswith("250")
    assert _send_from(trusted.port, tmp_path, "127.0.0.5", "z@ally.example").startswith("250")
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        watching = _greylisting(filter_server, tmp_path, 'GreylistAction = "log"\n')
        assert _send_from(watching.port, tmp_path, "127.0.2.5").startswith("250")
    assert "greylist: would defer client=127.0.2.5" in caplog.text
    assert len(sink.messages()) == 5


def test_a_greylist_database_on_a_full_disk_lets_mail_through(
        filter_server, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from tests.servers.tmpfs import fill, small_disk

    with small_disk(tmp_path / "disk", "1m") as disk:
        send = filter_server(STRANGER + 'SmtpFilters = ["greylist"]\n'
                             f'GreylistDatabase = "{disk / "greylist"}"\n')
        fill(disk)
        before = UNCHECKED.counts().get(("greylist", "database"), 0)
        with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
            assert _send_from(send.port, tmp_path, "127.0.0.5").startswith("250")
        assert "greylist database unusable" in caplog.text
        assert len(sink.messages()) == 1
        # and the metrics count it: nothing in the mail shows greylisting has stopped
        assert UNCHECKED.counts()[("greylist", "database")] == before + 1
        assert f'spamkit_filter_unchecked_total{{filter="greylist",reason="database"}} {before + 1}' \
            in Metrics().exposition()


def test_the_filter_defers_with_450_and_counts_nothing_for_local_peers(tmp_path: Path) -> None:
    """The plugin on its own, as build_filters makes it."""
    from smtpfilter.filter import Action, Transaction

    store = _store(tmp_path / "greylist")
    greylist = Greylist(store, LocalClients(["10.0.0.0/8"], []), [], True, "denysoft")
    decision = greylist.rcpt(Transaction(peer="192.0.2.1", mail_from="a@example.net"), "b@example.org")
    assert decision.action is Action.TEMPFAIL and decision.reply.startswith("450 4.7.1")
    local = greylist.rcpt(Transaction(peer="10.1.2.3", mail_from="a@example.net"), "b@example.org")
    assert local.action is Action.CONTINUE
    assert store.get("c:10.1.2.0/24") is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sender=st.text(max_size=600), recipient=st.text(max_size=600))
def test_any_envelope_gets_a_wait_and_the_same_one_again(tmp_path: Path, sender: str,
                                                          recipient: str) -> None:
    """What a client sends as MAIL FROM and RCPT TO (any length, any characters, lone
    surrogates from undecodable bytes) makes a triplet; none is refused by LMDB's key size."""
    store = _store(tmp_path / "greylist")
    pattern = sender_pattern(sender)
    first = store.wait("192.0.2.0/24", pattern, recipient, now=T0)
    assert first in (0, 300)  # 0: an earlier example left the same triplet passed
    assert store.wait("192.0.2.0/24", pattern, recipient, now=T0 + 10) == max(0, first - 10)


def test_a_damaged_database_is_set_aside_and_started_afresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not an LMDB file (a disk error, a stray copy): `serve` starts anyway, with the old
    file kept beside the new one; karma and greylist state is soon learned again."""
    (tmp_path / "greylist").mkdir()
    garbage = bytes(range(256)) * 80
    (tmp_path / "greylist" / "data.mdb").write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        store = _store(tmp_path / "greylist")
    assert "greylist database at" in caplog.text and "was damaged" in caplog.text
    [kept] = (tmp_path / "greylist").glob("data.mdb.damaged-*")
    assert kept.read_bytes() == garbage
    assert store.wait("192.0.2.0/24", "a@example.net", "b@example.org", now=T0) == 300


def test_on_redis_each_record_expires_when_it_would_be_idle(redis_server: RedisServer) -> None:
    """Redis drops idle records itself: a waiting triplet lives for the delay and the
    retry window, one that passed (and its network's record) for GreylistPassDays."""
    import redis

    prefix = f"test:{uuid.uuid4().hex}:"
    store = _store(redis_server.url(prefix=prefix))
    now = time.time()
    store.wait("192.0.2.0/24", "a@example.net", "b@example.org", now=now)
    client = redis.Redis(port=redis_server.port)
    [triplet] = client.keys(prefix + "t:*")
    assert abs(client.pttl(triplet) / 1000 - (300 + 48 * HOUR)) < 5
    store.wait("192.0.2.0/24", "a@example.net", "b@example.org", now=now + 300)
    assert abs(client.pttl(triplet) / 1000 - 36 * DAY) < 5  # (from when it was written)
    [network] = client.keys(prefix + "c:*")
    assert network == (prefix + "c:192.0.2.0/24").encode()
    assert abs(client.pttl(network) / 1000 - 36 * DAY) < 5
    assert store.prune() == 0  # nothing for spamkit to do


def test_two_filters_sharing_redis_take_the_retry_at_either(
        filter_server, sink: Sink, tmp_path: Path, redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Two MX hosts, one greylist: the retry of a sender deferred by the first passes at
    the second. And a Redis that is gone lets mail through, as a broken LMDB does."""
    shared = redis_server.url(prefix=f"test:{uuid.uuid4().hex}:")
    settings_text = (STRANGER + 'SmtpFilters = ["greylist"]\nGreylistDelay = 2\n'
                     f'GreylistDatabase = "{shared}"\n')
    first_mx, second_mx = filter_server(settings_text), filter_server(settings_text)
    assert _send_from(first_mx.port, tmp_path, "127.0.0.5").startswith("450")
    assert _send_from(second_mx.port, tmp_path, "127.0.0.5").startswith("450")  # too soon there too
    time.sleep(2.2)
    assert _send_from(second_mx.port, tmp_path, "127.0.0.5").startswith("250")
    assert _send_from(first_mx.port, tmp_path, "127.0.0.5").startswith("250")
    assert len(sink.messages()) == 2

    from tests.servers.redis import start_redis

    (tmp_path / "gone").mkdir()
    servers = start_redis(tmp_path / "gone")
    gone = next(servers)
    down = filter_server(STRANGER + 'SmtpFilters = ["greylist"]\n'
                         f'GreylistDatabase = "{gone.url()}"\n')
    gone.process.terminate()
    gone.process.wait(10)
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        started = time.monotonic()
        assert _send_from(down.port, tmp_path, "127.0.0.5").startswith("250")
        assert time.monotonic() - started < 5
    assert "greylist database unusable" in caplog.text and "cannot reach" in caplog.text
    assert len(sink.messages()) == 3
    servers.close()


def test_an_administrator_lists_the_triplets_and_lets_a_waiting_one_pass(location: str) -> None:
    """What `spamkit greylist list|pass` stand on, on both databases: each triplet named
    in clear, networks apart, and a pass that makes the next attempt go through at once
    without counting towards the network's exemption."""
    store = _store(location, auto_whitelist=5)
    now = time.time()
    waiting = ("192.0.2.0/24", "bounce-#@lists.example.net", "b@example.org")
    # in time order: a write stamped 50 hours before the last is the clock set back, and the
    # prune it may start takes the records stamped after it for a clock's mistake
    store.wait("203.0.113.0/24", "gone@example.net", "b@example.org", now=now - 50 * HOUR)  # idle
    store.wait("198.51.100.0/24", "a@example.net", "b@example.org", now=now - 900)
    store.wait("198.51.100.0/24", "a@example.net", "b@example.org", now=now - 500)  # passed
    store.wait(*waiting, now=now - 10)
    triplets = {(r["client"], r["sender"], r["recipient"]): (key, r) for key, r in store.triplets(now)}
    assert set(triplets) == {waiting, ("198.51.100.0/24", "a@example.net", "b@example.org")}
    key, record = triplets[waiting]
    assert record["passed"] == 0 and record["tries"] == 1
    assert dict(store.networks(now)) == {"198.51.100.0/24": {"passes": 1, "seen": now - 500}}

    assert store.let_pass(key, now)
    assert not store.let_pass(key, now)  # passed already
    assert store.wait(*waiting, now=now + 1) == 0  # within the delay, yet taken
    assert store.wait(*waiting, now=now + 20 * DAY) == 0
    assert dict(store.networks(now))["198.51.100.0/24"]["passes"] == 1
    assert "c:192.0.2.0/24" not in dict(store.records.items())
    [passed_key] = [k for k, r in store.triplets(now) if r["sender"] == "a@example.net"]
    store.records.delete(passed_key)
    assert not store.let_pass(passed_key, now)  # gone meanwhile: nothing is made
    assert store.get(passed_key) is None
    store.close()


def test_forgetting_a_network_ends_its_exemption_on_both_databases(location: str) -> None:
    """What `spamkit greylist forget --client` stands on: a network's count of passed
    triplets forgotten, its next new triplet waits again; a triplet forgotten is new."""
    store = _store(location, auto_whitelist=1)
    now = time.time()
    triplet = ("198.51.100.0/24", "a@example.net", "b@example.org")
    store.wait(*triplet, now=now - 900)
    assert store.wait(*triplet, now=now - 500) == 0  # the retry passes, and exempts the network
    assert store.wait("198.51.100.0/24", "new@example.net", "b@example.org", now=now) == 0
    assert store.forget("c:198.51.100.0/24") and not store.forget("c:198.51.100.0/24")
    assert store.wait("198.51.100.0/24", "other@example.net", "b@example.org", now=now) > 0
    [key] = [k for k, r in store.triplets(now) if r["sender"] == "a@example.net"]
    assert store.forget(key)
    assert store.wait(*triplet, now=now) > 0  # new again: it waits the delay
    store.close()


def test_postmaster_abuse_and_excepted_recipients_are_not_greylisted(tmp_path: Path) -> None:
    from smtpfilter.filter import Action, Transaction

    store = _store(tmp_path / "greylist")
    greylist = Greylist(store, LocalClients([], []), [], True, "denysoft",
                        except_recipients=["sales@example.org", "@help.example.org"])
    stranger = Transaction(peer="192.0.2.1", mail_from="a@example.net")
    for recipient in ("<Postmaster@example.org>", "abuse@example.org", "SALES@example.org",
                      "anyone@help.example.org"):
        assert greylist.rcpt(stranger, recipient).action is Action.CONTINUE, recipient
    assert greylist.rcpt(stranger, "b@example.org").action is Action.TEMPFAIL
    assert [record["recipient"] for _, record in store.triplets()] == ["b@example.org"]


def _greylist_command(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", "greylist", *arguments, "--config",
                           str(config)], capture_output=True, text=True, timeout=120)


def test_the_administrator_sees_a_deferred_sender_and_lets_it_through(
        filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A customer phones: their mail is delayed. `spamkit greylist list` shows the
    triplet waiting, `spamkit greylist pass` lets it in at its next retry, while the filter
    runs; another sender, recipient or network stays where it was."""
    database = f'GreylistDatabase = "{tmp_path / "greylist"}"\n'
    send = filter_server(STRANGER + 'SmtpFilters = ["greylist"]\nGreylistDelay = 3600\n' + database)
    config = tmp_path / "admin.toml"
    config.write_text("GreylistDelay = 3600\n" + database)
    assert _send_from(send.port, tmp_path, "127.0.0.5", "Bounce-42@Lists.Example.Net").startswith("450")
    assert _send_from(send.port, tmp_path, "127.0.0.5", "other@example.net").startswith("450")
    assert _send_from(send.port, tmp_path, "127.0.1.5", "bounce-7@lists.example.net").startswith("450")
    before = time.time()

    listed = _greylist_command(config, "list", "--waiting", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["database"] == str(tmp_path / "greylist") and report["unnamed"] == 0
    rows = {(row["client"], row["sender"]): row for row in report["triplets"]}
    assert set(rows) == {("127.0.0.0/24", "bounce-#@lists.example.net"),
                         ("127.0.0.0/24", "other@example.net"),
                         ("127.0.1.0/24", "bounce-#@lists.example.net")}
    row = rows[("127.0.0.0/24", "bounce-#@lists.example.net")]
    assert row["recipient"] == "b@example.org" and row["waiting"] and row["tries"] == 1
    assert row["passes_at"] == row["first"] + 3600 and row["passed"] is None
    assert row["expires"] == row["first"] + 3600 + 48 * 3600 and row["first"] <= before + 1

    text = _greylist_command(config, "list")
    assert text.returncode == 0 and "bounce-#@lists.example.net" in text.stdout
    assert "waits; passes from" in text.stdout

    passed = _greylist_command(config, "pass", "bounce-99@lists.example.net", "nobody@example.net",
                               "--client", "127.0.0.9", "--json")
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout) == {
        "database": str(tmp_path / "greylist"),
        "passed": [{"client": "127.0.0.0/24", "sender": "bounce-#@lists.example.net",
                    "recipient": "b@example.org"}],
        "unknown": ["nobody@example.net"]}
    assert _send_from(send.port, tmp_path, "127.0.0.5", "bounce-43@lists.example.net").startswith("250")
    assert _send_from(send.port, tmp_path, "127.0.0.5", "other@example.net").startswith("450")
    assert _send_from(send.port, tmp_path, "127.0.1.5", "bounce-7@lists.example.net").startswith("450")
    assert len(sink.messages()) == 1

    # a whole domain, and the state the listing then shows
    assert json.loads(_greylist_command(config, "pass", "@example.net", "--json").stdout)["passed"] \
        == [{"client": "127.0.0.0/24", "sender": "other@example.net", "recipient": "b@example.org"}]
    after = json.loads(_greylist_command(config, "list", "--json").stdout)["triplets"]
    assert (after[0]["client"], after[0]["waiting"]) == ("127.0.1.0/24", True)  # the waiting first
    assert sorted((row["sender"], row["client"], row["waiting"]) for row in after[1:]) == [
        ("bounce-#@lists.example.net", "127.0.0.0/24", False),
        ("other@example.net", "127.0.0.0/24", False)]
    assert all(row["passed"] is not None and row["passes_at"] is None for row in after[1:])


def test_the_administrator_forgets_a_network_that_earned_its_exemption(
        filter_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A network whose retries passed often enough is exempt (GreylistAutoWhitelist), and
    then sends spam: `spamkit greylist forget --client` greylists it again, while the
    filter runs. Forgetting a sender forgets its triplets alone."""
    database = f'GreylistDatabase = "{tmp_path / "greylist"}"\n'
    send = filter_server(STRANGER + 'SmtpFilters = ["greylist"]\nGreylistDelay = 1\n'
                         'GreylistAutoWhitelist = 1\n' + database)
    config = tmp_path / "admin.toml"
    config.write_text("GreylistDelay = 1\nGreylistAutoWhitelist = 1\n" + database)
    for client in ("127.0.0.5", "127.0.1.5"):
        assert _send_from(send.port, tmp_path, client).startswith("450")
    time.sleep(1.2)
    for client in ("127.0.0.5", "127.0.1.5"):
        assert _send_from(send.port, tmp_path, client).startswith("250")  # the retry passes...
    assert _send_from(send.port, tmp_path, "127.0.0.5", "new@example.net").startswith("250")  # ...and exempts

    forgot = _greylist_command(config, "forget", "--client", "127.0.0.0/24", "--json")
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout) == {
        "database": str(tmp_path / "greylist"),
        "forgotten": [{"client": "127.0.0.0/24", "sender": "a@example.net", "recipient": "b@example.org"}],
        "networks": ["127.0.0.0/24"], "unknown": []}
    assert _send_from(send.port, tmp_path, "127.0.0.5", "new@example.net").startswith("450")
    assert _send_from(send.port, tmp_path, "127.0.0.5").startswith("450")
    assert _send_from(send.port, tmp_path, "127.0.1.5", "other@example.net").startswith("250")  # still exempt

    by_sender = json.loads(_greylist_command(config, "forget", "A@Example.NET", "nobody@example.net",
                                             "--json").stdout)
    assert sorted(row["client"] for row in by_sender["forgotten"]) == ["127.0.0.0/24", "127.0.1.0/24"]
    assert by_sender["networks"] == [] and by_sender["unknown"] == ["nobody@example.net"]
    networks = json.loads(_greylist_command(config, "list", "--json").stdout)["networks"]
    assert [row["network"] for row in networks] == ["127.0.1.0/24"]  # its exemption stays
    refused = _greylist_command(config, "forget")
    assert refused.returncode == 2 and "name a SENDER or a --client" in refused.stderr


def test_greylist_commands_make_no_database_and_refuse_a_bad_client(tmp_path: Path) -> None:
    config = tmp_path / "spamkit.toml"
    config.write_text(f'GreylistDatabase = "{tmp_path / "greylist"}"\n')
    listed = _greylist_command(config, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"database": str(tmp_path / "greylist"), "triplets": [],
                                         "networks": [], "unnamed": 0}
    passed = _greylist_command(config, "pass", "a@example.net", "--json")
    assert json.loads(passed.stdout)["unknown"] == ["a@example.net"]
    bad = _greylist_command(config, "pass", "a@example.net", "--client", "mx.example.net")
    assert bad.returncode == 2 and "'mx.example.net' is not an IP address or network" in bad.stderr
    assert not (tmp_path / "greylist").exists()


def test_triplets_recorded_without_their_addresses_are_counted_not_listed(tmp_path: Path) -> None:
    """Records an earlier spamkit wrote held only the triplet's digest: they cannot be
    named or passed, and the listing says how many there are."""
    store = _store(tmp_path / "greylist")
    store.records.change("t:" + "0" * 32, lambda _: {"first": time.time(), "passed": 0,
                                                      "seen": time.time(), "tries": 1})
    store.wait("192.0.2.0/24", "a@example.net", "b@example.org")
    config = tmp_path / "spamkit.toml"
    config.write_text(f'GreylistDatabase = "{tmp_path / "greylist"}"\n')
    report = json.loads(_greylist_command(config, "list", "--json").stdout)
    assert report["unnamed"] == 1 and [row["sender"] for row in report["triplets"]] == ["a@example.net"]
    assert "1 triplet recorded without addresses" in _greylist_command(config, "list").stderr
    # an address with bytes that were not UTF-8 (kept as lone surrogates) is listed, escaped
    store.wait("192.0.2.0/24", "b\udcff@example.net", "b@example.org")
    listed = _greylist_command(config, "list")
    assert listed.returncode == 0 and "b\\udcff@example.net" in listed.stdout, listed.stderr
    senders = {row["sender"] for row in json.loads(_greylist_command(config, "list", "--json").stdout)["triplets"]}
    assert senders == {"a@example.net", "b\udcff@example.net"}


@pytest.mark.parametrize(("given", "kept", "covers"), [
    ("bounce-99@lists.example.net", "bounce-#@lists.example.net", True),
    ("<Bounce-1@Lists.Example.Net>", "bounce-#@lists.example.net", True),
    ("prvs=1234abcd=user@example.net", "user@example.net", True),
    ("@example.net", "user@example.net", True),
    ("example.net", "user@example.net", True),
    ("*@*.example.net", "user@mx.example.net", True),
    ("user@example.net", "user@example.com", False),
    ("<>", "", True),
    ("user@example.net", "", False),
    ("@example.net", "", False),
])
def test_a_pass_names_senders_as_the_filter_keeps_them(given: str, kept: str, covers: bool) -> None:
    from spamkit.cli.greylist import _sender_matches

    assert _sender_matches(given, kept) is covers
