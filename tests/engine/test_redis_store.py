"""The shared Redis store against a real redis-server: the same learning as LMDB, record
for record; whole batches or nothing under kills, dropped connections and a lost lock;
a clear, quick error when Redis is down."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_client

from corpora import CorpusMessage
from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.errors import NoDatabase, SchemaMismatch, StoreError, StoreUnavailable
from spamkit.learn import Learner, LearningStopped
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore, TokenStore, open_store, set_aside_damaged
from spamkit.store import redis as redis_store
from spamkit.store.base import Totals, today
from spamkit.store.redis import RedisStore
from tests.conftest import as_items
from tests.servers.net import free_port, self_signed_certificate
from tests.servers.redis import RedisServer, start_redis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from start_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def location(server: RedisServer) -> str:
    """A database of the test's own: its own key prefix in the shared server."""
    return server.url(prefix=f"t{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def rstore(location: str) -> Iterator[RedisStore]:
    with RedisStore(location) as opened:
        yield opened


@pytest.fixture(scope="module")
def sample(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> list[SourceItem]:
    train, _ = split
    return as_items([m for m in train if m.label == "spam"][:40] + [m for m in train if m.label == "ham"][:40])


def state(store: TokenStore) -> tuple[object, ...]:
    """Totals, every token's counts and day, the learned-once marks with the byte model's
    step on each, and the byte model."""
    return (store.totals(), sorted((r.key, r.spam, r.ham, r.day) for r in store.records()),
            sorted((s.key, s.label, s.byte_step) for s in store.seen_records()),  # type: ignore[attr-defined]
            store.meta_value("bytemodel"))


def test_learning_gives_lmdbs_records_step_by_step(rstore: RedisStore, tmp_path: Path,
                                                   sample: list[SourceItem]) -> None:
    """Learn, learn again, relearn with the other label, forget: after each step both
    stores hold the same totals, counts and marks, and give the same counts to a lookup."""
    spam, ham = sample[:40], sample[40:]
    with LmdbStore(tmp_path / "db") as lmdb:
        steps = [(spam, Label.SPAM), (ham, Label.HAM), (spam, Label.SPAM), (ham[:10], Label.SPAM),
                 (spam[:5], None), (spam[:5], None)]
        for number, (items, label) in enumerate(steps):
            outcomes = [Learner(store, batch_size=7).learn(items, label).as_json()
                        for store in (lmdb, rstore)]
            for outcome in outcomes:
                outcome.pop("seconds")
            assert outcomes[0] == outcomes[1], f"step {number}"
            assert state(rstore) == state(lmdb), f"step {number}"
        keys = [Learner(lmdb).analyzer.analyze(item.data or b"").hashes for item in sample[:20]]
        for mine, theirs in zip(rstore.counts_many(keys), lmdb.counts_many(keys)):
            assert mine.key_numbers.tolist() == theirs.key_numbers.tolist()
            assert mine.spam.tolist() == theirs.spam.tolist()
            assert mine.ham.tolist() == theirs.ham.tolist()
            assert mine.totals == theirs.totals
        single = rstore.counts(keys[0])
        assert single.key_numbers.tolist() == lmdb.counts(keys[0]).key_numbers.tolist()


def test_train_gives_lmdbs_state(rstore: RedisStore, tmp_path: Path, sample: list[SourceItem]) -> None:
    """`train` hands its packed keys to Redis's lookups and gives each batch the byte
    model's copies' steps: both stores end with the same counts, marks, steps and model,
    and with the same messages left out as already sure (so lookups were made)."""
    params = BayesParams(min_spam_learned=10, min_ham_learned=10)  # (judging after a batch)
    spam, ham = sample[:40], sample[40:]
    with LmdbStore(tmp_path / "db") as lmdb:
        summaries = [Learner(store, batch_size=16).train(spam, ham, BayesClassifier(store, params), 0.9).as_json()
                     for store in (lmdb, rstore)]
        for summary in summaries:
            summary.pop("seconds")
        assert summaries[0] == summaries[1] and summaries[0]["confident"] > 0
        assert state(rstore) == state(lmdb)
        assert any(mark.byte_step for mark in rstore.seen_records())


def test_a_dump_is_one_state_while_another_thread_learns(rstore: RedisStore, sample: list[SourceItem]) -> None:
    """Redis hands the tables over in pieces, so a message learned while a dump ran could
    be in it by its seen mark but not its counts. The dump now holds the writers' lock: a
    learner that starts as the first token line is written waits for the dump, which is
    the database as it was, and then learns."""
    import threading

    Learner(rstore).learn(sample[:40], Label.SPAM)
    before = io.StringIO()
    rstore.dump(before)
    learner = threading.Thread(target=Learner(rstore).learn, args=(sample[40:50], Label.HAM))

    class LearnMidway(io.StringIO):
        def write(self, text: str) -> int:
            if text.startswith("token ") and not learner.is_alive() and learner.ident is None:
                learner.start()
                learner.join(3)  # (without the lock, the learner is done by now)
            return super().write(text)

    during = LearnMidway()
    rstore.dump(during)
    learner.join(60)
    assert during.getvalue() == before.getvalue()
    assert rstore.totals().nham == 10


def test_a_failed_batch_commits_nothing(rstore: RedisStore, sample: list[SourceItem]) -> None:
    Learner(rstore).learn(sample[:10], Label.SPAM)
    before = state(rstore)
    with pytest.raises(RuntimeError):
        with rstore.writer() as writer:
            writer.add_tokens([b"12345678"], Label.SPAM)
            writer.add_messages(Label.SPAM, 1)
            writer.remember(b"k" * 16, Label.SPAM)
            raise RuntimeError("the caller failed mid-batch")
    assert state(rstore) == before


def test_dumps_move_between_backends(rstore: RedisStore, tmp_path: Path,
                                     sample: list[SourceItem]) -> None:
    """`db dump` of LMDB restores into Redis and dumps back the same text, audit log and
    all: the way from one machine's database to a shared one."""
    with LmdbStore(tmp_path / "db") as lmdb:
        Learner(lmdb).learn(sample[:40], Label.SPAM)
        Learner(lmdb).learn(sample[40:], Label.HAM)
        lmdb.expire_seen(today() - 365)
        original = io.StringIO()
        lmdb.dump(original)
    rstore.restore(io.StringIO(original.getvalue()))
    again = io.StringIO()
    rstore.dump(again)
    assert again.getvalue() == original.getvalue()
    key = message_key(sample[0].data or b"")
    assert [e["action"] for e in rstore.history(key)] == ["spam"]
    assert rstore.learned_as(key) is Label.SPAM
    with LmdbStore(tmp_path / "back") as lmdb:
        lmdb.restore(io.StringIO(again.getvalue()))
        assert state(lmdb) == state(rstore)


def test_a_damaged_dump_changes_nothing(rstore: RedisStore, sample: list[SourceItem]) -> None:
    Learner(rstore).learn(sample[:10], Label.HAM)
    before = state(rstore)
    dump = io.StringIO()
    rstore.dump(dump)
    cut = dump.getvalue().rsplit("end", 1)[0]  # truncated: no end line
    with pytest.raises(StoreError):
        rstore.restore(io.StringIO(cut))
    assert state(rstore) == before


def test_expiry_removes_what_lmdbs_removes(rstore: RedisStore, tmp_path: Path,
                                          sample: list[SourceItem]) -> None:
    with LmdbStore(tmp_path / "db") as lmdb:
        for store in (lmdb, rstore):
            Learner(store).learn(sample[:40], Label.SPAM)
            Learner(store).learn(sample[40:], Label.HAM)
        cap = lmdb.totals().ntokens // 3
        assert rstore.expire(cap) == lmdb.expire(cap) > 0
        assert state(rstore) == state(lmdb)
        assert rstore.magic()["last_expire_removed"] == lmdb.magic()["last_expire_removed"]
        # every mark and event is from today: a cut at tomorrow forgets them all
        assert rstore.expire_seen(today() + 1) == lmdb.expire_seen(today() + 1) == (80, 80)
        assert state(rstore) == state(lmdb)


def test_magic_and_reset(rstore: RedisStore, location: str, sample: list[SourceItem]) -> None:
    Learner(rstore).learn(sample[:40], Label.SPAM)
    facts = rstore.magic()
    assert (facts["nspam"], facts["nham"], facts["nseen"], facts["backend"]) == (40, 0, 40, "redis")
    assert facts["ntokens"] == rstore.totals().ntokens > 0
    assert isinstance(facts["bytes_used"], int) and facts["bytes_used"] > 0
    assert facts["byte_model_spam_steps"] == sum(m.byte_step > 0 for m in rstore.seen_records()) > 0
    rstore.reset()
    assert rstore.totals().ntokens == 0 and rstore.learned_as(message_key(sample[0].data or b"")) is None
    assert rstore.meta_value("bytemodel") is None and rstore.magic()["byte_model_spam_steps"] is None
    with RedisStore(location, readonly=True) as reader:  # the schema mark stays
        assert reader.totals().nspam == 0


def _spamkit(*args: str, location: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args, "--db", location],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for settings that are the whole server's."""
    (tmp_path / "redis").mkdir()
    yield from start_redis(tmp_path / "redis")


def test_a_full_redis_goes_on_scoring_says_why_it_learns_nothing_and_expires_its_way_out(
        own_server: RedisServer, tmp_path: Path, sample: list[SourceItem]) -> None:
    """A Redis past its maxmemory (noeviction, the policy maxmemory alone gives) refuses
    writes, and it refused every MULTI/EXEC, reads too: every scan failed, so the SMTP
    filter deferred all mail (WhenDatabaseDown), and `db expire`, the way to make room,
    failed as well (rspamd's expiry has the same fault). Now scans and `db magic` read as
    before; learning stops with StoreFull, which names maxmemory and `db expire` in
    printable text (redis-py's message held the refused command's raw token keys) and
    changes nothing; and `db expire` makes room."""
    location = own_server.url()
    client = redis_client.Redis(port=own_server.port)
    files = []
    for number, item in enumerate(sample[::20]):
        files.append(tmp_path / f"m{number}.eml")
        files[-1].write_bytes(item.data or b"")
    newcomer = tmp_path / "new.eml"
    newcomer.write_bytes(b"Subject: never learned\n\nnothing like the corpus at all, zyxwv\n")
    with RedisStore(location) as store:
        Learner(store).learn(sample[:40], Label.SPAM)
        Learner(store).learn(sample[40:], Label.HAM)
        before = state(store)
        checked = _spamkit("check", "--json", *map(str, files), location=location)
        assert checked.returncode == 0, checked.stderr
        limit = int(client.info("memory")["used_memory"]) - 100_000  # (the tokens take over 400 kB)
        client.config_set("maxmemory", limit)
        with pytest.raises(redis_client.exceptions.OutOfMemoryError):
            client.set("probe", "x")  # (full indeed)

        assert store.totals() == before[0]
        again = _spamkit("check", "--json", *map(str, files), location=location)
        assert (again.returncode, again.stdout) == (0, checked.stdout), again.stderr
        magic = _spamkit("db", "magic", "--json", location=location)
        assert magic.returncode == 0, magic.stderr
        facts = json.loads(magic.stdout)
        assert (facts["ntokens"], facts["redis_maxmemory"], facts["redis_maxmemory_policy"]) == \
            (before[0].ntokens, limit, "noeviction")

        refused = _spamkit("learn", "--spam", str(newcomer), location=location)
        assert refused.returncode == 74
        assert "is full" in refused.stderr and "maxmemory" in refused.stderr
        assert "spamkit db expire" in refused.stderr and "Traceback" not in refused.stderr
        assert all(line.isprintable() for line in refused.stderr.splitlines())
        assert state(store) == before

        expired = _spamkit("db", "expire", "--max-tokens", "100", location=location)
        assert expired.returncode == 0, expired.stderr
        assert store.totals().ntokens == 100 and store.totals().nspam == before[0].nspam
        assert store.magic()["last_expire_removed"] == before[0].ntokens - 100
        client.set("probe", "x")  # room again
        client.config_set("maxmemory", 1)  # and none: what expiry drops is dropped, and said
        still_full = _spamkit("db", "expire", "--max-tokens", "40", location=location)
        assert still_full.returncode == 74
        assert "60 tokens expired" in still_full.stderr and "still past maxmemory" in still_full.stderr
        assert store.totals().ntokens == 40
    client.close()


def test_a_policy_that_may_evict_our_keys_is_warned_of(own_server: RedisServer,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Under allkeys-lru Redis may drop any key at its maxmemory, and a spamkit table is
    one key: every token, or every learned-once mark (then mail is learned twice), could
    go at once, silently. A writer is warned; a reader (a scan) is not; `magic` shows the
    policy. noeviction and volatile-* (which drop only keys with a time to live: the lock)
    are not warned of."""
    client = redis_client.Redis(port=own_server.port)
    for policy, warned in (("noeviction", False), ("volatile-lru", False), ("allkeys-lru", True)):
        client.config_set("maxmemory-policy", policy)
        caplog.clear()
        with RedisStore(own_server.url()) as store:
            assert store.magic()["redis_maxmemory_policy"] == policy
            assert store.magic()["redis_maxmemory"] == 0
        said = [r.getMessage() for r in caplog.records if r.name == "spamkit.store"]
        assert bool(said) is warned, (policy, said)
        if warned:
            assert policy in said[0] and "noeviction" in said[0]
        caplog.clear()
        with RedisStore(own_server.url(), readonly=True):
            assert not [r for r in caplog.records if r.name == "spamkit.store"]
    client.close()


def test_magic_says_whether_redis_keeps_the_database_on_disk(own_server: RedisServer, tmp_path: Path) -> None:
    """`db magic`'s redis_persistence: "none" for a Redis with no save points and no
    append-only file (as these tests run theirs), whose restart empties the database;
    "rdb", "aof" or both as CONFIG SET gives them; null for a user CONFIG is refused to
    (a managed Redis) and for LMDB."""
    client = redis_client.Redis(port=own_server.port)
    with RedisStore(own_server.url()) as store:
        seen = [store.magic()["redis_persistence"]]
        for setting, value in (("appendonly", "yes"), ("save", "3600 1"), ("appendonly", "no")):
            client.config_set(setting, value)
            seen.append(store.magic()["redis_persistence"])
    assert seen == ["none", "aof", "rdb+aof", "rdb"]
    client.acl_setuser("magic", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"])
    with RedisStore(own_server.url().replace("redis://", "redis://magic:pw@"), readonly=True) as limited:
        assert limited.magic()["redis_persistence"] is None
    client.close()
    with LmdbStore(tmp_path / "db") as lmdb_store:
        assert lmdb_store.magic()["redis_persistence"] is None


def test_a_database_emptied_under_an_open_store_is_said_and_starts_again_whole(
        server: RedisServer, location: str, sample: list[SourceItem], caplog: pytest.LogCaptureFixture) -> None:
    """A Redis restarted without persistence, or a FLUSHDB, empties the database under a
    service that has it open. Its scans then abstain as on a new database, and it is said
    (once); the next learn starts it again with its schema mark. Before, it was not said,
    and that learn wrote tokens with no schema mark, which every later open refused as
    damaged."""
    client = redis_client.Redis(port=server.port)
    prefix = location.split("prefix=")[1]
    with RedisStore(location) as store:
        Learner(store).learn(sample, Label.SPAM)
        keys = Analyzer().analyze(sample[0].data or b"").hashes
        assert store.totals().nspam == len(sample) and len(store.counts(keys).keys) > 0
        client.delete(*client.keys(prefix + "*"))
        caplog.clear()
        emptied = store.counts(keys)
        assert emptied.totals == Totals(0, 0, 0) and len(emptied.keys) == 0
        assert store.totals() == Totals(0, 0, 0)
        said = [r.getMessage() for r in caplog.records if r.name == "spamkit.store"]
        assert len(said) == 1 and "emptied" in said[0] and "persistence" in said[0], said
        summary = Learner(store).learn(sample[:3], Label.HAM)
        assert summary.learned == 3
    with RedisStore(location) as reopened:
        assert reopened.meta_value("schema") == redis_store.SCHEMA
        assert reopened.totals().nham == 3 and reopened.totals().nspam == 0
        caplog.clear()
        reopened.totals()
        assert not [r for r in caplog.records if r.name == "spamkit.store"]
    client.close()


def test_a_reader_refused_scripts_reads_by_multi_exec(server: RedisServer, rstore: RedisStore,
                                                      location: str, sample: list[SourceItem]) -> None:
    """The reads are a Lua script (so that a full Redis answers them). A scanner's Redis
    user may be given reads only, an ACL without @scripting, or EVALSHA renamed away:
    the script then meets NOPERM, and every scan failed where MULTI/EXEC had worked. Such
    a store reads by MULTI/EXEC: the same counts and totals."""
    Learner(rstore).learn(sample[:40], Label.SPAM)
    Learner(rstore).learn(sample[40:], Label.HAM)
    asked = [Analyzer().analyze(item.data or b"").hashes for item in sample[::10]]
    client = redis_client.Redis(port=server.port)
    user = f"scanner{uuid.uuid4().hex[:8]}"
    client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"],
                       commands=["+@read", "+multi", "+exec", "+info", "+ping", "+client", "+hello",
                                 "-@scripting"])
    try:
        with RedisStore(location.replace("redis://", f"redis://{user}:pw@"), readonly=True) as reader:
            for ours, theirs in zip(reader.counts_many(asked), rstore.counts_many(asked)):
                assert ours.totals == theirs.totals and ours.totals.nspam == 40
                for field in ("key_numbers", "spam", "ham"):
                    assert getattr(ours, field).tolist() == getattr(theirs, field).tolist()
            assert reader.totals() == rstore.totals()
            assert not reader._scripting  # (it tried the script once)
    finally:
        client.acl_deluser(user)
        client.close()


def test_a_read_only_replica_is_read_by_the_script_and_refuses_learning(
        server: RedisServer, rstore: RedisStore, location: str, tmp_path: Path,
        sample: list[SourceItem]) -> None:
    """Several MX hosts may each scan from a replica of the one Redis the trainer writes
    to. The reads are a Lua script; Redis runs one that only reads on a read-only
    replica. It gives the same counts and totals as the primary. Learning there is
    refused with Redis's own words, and nothing is written."""
    Learner(rstore).learn(sample[:40], Label.SPAM)
    Learner(rstore).learn(sample[40:], Label.HAM)
    asked = [Analyzer().analyze(item.data or b"").hashes for item in sample[::10]]
    (tmp_path / "replica").mkdir()
    replicas = start_redis(tmp_path / "replica", options=("--replicaof", "127.0.0.1", str(server.port)))
    replica = next(replicas)
    try:
        at_replica = location.replace(f":{server.port}/", f":{replica.port}/")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # (until the first sync has copied the database)
            try:
                with RedisStore(at_replica, readonly=True) as reader:
                    if reader.totals() == rstore.totals():
                        break
            except NoDatabase:
                pass
            time.sleep(0.1)
        with RedisStore(at_replica, readonly=True) as reader:
            assert reader.totals() == rstore.totals() and reader.totals().nham == 40
            for ours, theirs in zip(reader.counts_many(asked), rstore.counts_many(asked)):
                assert ours.totals == theirs.totals
                assert ours.key_numbers.tolist() == theirs.key_numbers.tolist()
                assert ours.spam.tolist() == theirs.spam.tolist()
            assert reader._scripting  # (the script ran; no fallback)
        with RedisStore(at_replica) as writer, pytest.raises(StoreError, match="read only replica"):
            Learner(writer).learn(sample[:1], Label.HAM)
        assert rstore.totals().nham == 40
    finally:
        replicas.close()


def test_reading_an_empty_location_creates_nothing(server: RedisServer) -> None:
    location = server.url(prefix="nothing-here:")
    with pytest.raises(NoDatabase):
        open_store(location, readonly=True)
    assert redis_client.Redis(port=server.port).keys("nothing-here:*") == []


def test_a_password_never_shows() -> None:
    location = f"redis://:sekrit@127.0.0.1:{free_port()}/0?prefix=pw:"
    assert redis_store.public_location(location).startswith("redis://:***@127.0.0.1:")
    with pytest.raises(StoreUnavailable) as raised:  # nothing listens there
        RedisStore(location)
    assert "sekrit" not in str(raised.value) and ":***@" in str(raised.value)


@pytest.mark.parametrize("path", ["/1x", "/3/4", "/db0", "/-1"])
def test_a_database_number_that_is_not_one_is_refused(server: RedisServer, path: str) -> None:
    """redis-py reads "/1x" as database 0 and "/3/4" as 34: a typo would share another
    database. Refused, naming the location; the good forms open the number they say."""
    with pytest.raises(StoreError, match="not a Redis location"):
        RedisStore(f"redis://127.0.0.1:{server.port}{path}?prefix=typo:")
    for good, number in (("", 0), ("/", 0), ("/3", 3)):
        with RedisStore(f"redis://127.0.0.1:{server.port}{good}?prefix=numbered:") as store:
            assert (store._client.connection_pool.connection_kwargs.get("db") or 0) == number


def _learn_in_child(location: str, items: list[tuple[str, bytes]], label: str) -> None:
    with RedisStore(location) as store:
        Learner(store, batch_size=3).learn([SourceItem(n, d) for n, d in items], Label(label))


def test_two_writers_are_serialised(location: str, sample: list[SourceItem]) -> None:
    """Two processes learning at once (batches of 3, so their commits interleave): the
    writer lock makes the totals and counts add up to learning both."""
    RedisStore(location).close()
    halves = [[(i.name, i.data) for i in sample[:40]], [(i.name, i.data) for i in sample[40:]]]
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_learn_in_child, args=(location, halves[0], "spam")),
                context.Process(target=_learn_in_child, args=(location, halves[1], "ham"))]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    with RedisStore(location) as store, RedisStore(location.replace("?prefix=", "?prefix=ref")) as ref:
        Learner(ref).learn(sample[:40], Label.SPAM)
        Learner(ref).learn(sample[40:], Label.HAM)
        assert state(store)[0] == state(ref)[0]
        assert [r[:3] for r in state(store)[1]] == [r[:3] for r in state(ref)[1]]  # type: ignore[attr-defined]


def test_a_writer_that_lost_its_lock_writes_nothing(rstore: RedisStore, location: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    sample: list[SourceItem]) -> None:
    """A writer paused past the lock's time to live (a stopped process, say): another
    writer takes the lock and commits; the first one's commit is refused whole."""
    monkeypatch.setattr(redis_store, "LOCK_SECONDS", 0.3)
    other = RedisStore(location)
    with pytest.raises(StoreError, match="lock"):
        with rstore.writer() as writer:
            writer.add_tokens([b"AAAAAAAA"], Label.SPAM)
            writer.add_messages(Label.SPAM, 1)
            writer.remember(b"a" * 16, Label.SPAM)
            time.sleep(0.5)  # the lock expires
            Learner(other).learn(sample[:3], Label.HAM)  # and another writer uses it
    other.close()
    assert rstore.learned_as(b"a" * 16) is None
    assert (rstore.totals().nspam, rstore.totals().nham) == (0, 3)
    assert rstore.counts([b"AAAAAAAA"]).key_numbers.size == 0


def test_an_unreachable_redis_is_a_quick_clear_error(tmp_path: Path) -> None:
    """Nothing listening: StoreUnavailable within about a second, exit 75 (EX_TEMPFAIL)
    from the commands, one line naming the location, never a verdict."""
    location = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        open_store(location)
    assert time.monotonic() - started < 1.5
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: hi\n\nhello\n")
    for command in (["check", str(message)], ["learn", "--spam", str(message)], ["db", "magic"]):
        run = subprocess.run([sys.executable, "-m", "spamkit", *command, "--db", location],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 75, (command, run.stderr)
        assert f"cannot reach the database at {location}" in run.stderr
        assert "Traceback" not in run.stderr and run.stdout == ""


def test_a_database_of_another_schema_is_refused_by_readers_as_by_writers(location: str,
                                                                          server: RedisServer) -> None:
    client = redis_client.Redis(port=server.port)
    prefix = location.split("prefix=")[1]
    client.hset(prefix + "meta", mapping={"schema": "2", "nspam": "3"})
    for readonly in (True, False):
        with pytest.raises(SchemaMismatch, match=re.escape(f"the database at {location} has schema '2', which "
                                                           "this spamkit (schema '1') does not read")):
            RedisStore(location, readonly=readonly)
    assert client.hgetall(prefix + "meta") == {b"schema": b"2", b"nspam": b"3"}


def test_a_damaged_database_is_set_aside_by_reset(server: RedisServer, location: str) -> None:
    client = redis_client.Redis(port=server.port)
    prefix = location.split("prefix=")[1]
    client.hset(prefix + "meta", "schema", "99")
    client.hset(prefix + "tokens", "x", "y")
    run = subprocess.run([sys.executable, "-m", "spamkit", "db", "reset", "--yes", "--db", location],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "schema" in run.stderr and "damaged" in run.stderr
    kept = [k.decode() for k in client.keys(prefix + "damaged-*")]
    assert sorted(k.rsplit(":", 1)[1] for k in kept) == ["meta", "tokens"]
    with RedisStore(location) as store:
        assert store.totals().ntokens == 0
    assert set_aside_damaged(location).startswith("keys ")


def _learn_command(location: str, folder: Path, batch: int) -> list[str]:
    return [sys.executable, "-m", "spamkit", "learn", "--spam", str(folder), "--db", location,
            "--batch-size", str(batch), "--quiet"]


def _holds_whole_messages(location: str, by_key: dict[bytes, Path], tmp_path: Path) -> int:
    """The counts are exactly those of learning the messages marked as learned: nothing
    half-learned, nothing counted without its mark (compared with LMDB learning them)."""
    with RedisStore(location) as store:
        marks = list(store.seen_records())
        with LmdbStore(tmp_path / f"ref{uuid.uuid4().hex[:6]}") as reference:
            Learner(reference).learn([SourceItem(str(by_key[m.key]), by_key[m.key].read_bytes())
                                      for m in marks], Label.SPAM)
            assert state(store)[0] == state(reference)[0]
            assert [r[:3] for r in state(store)[1]] == [r[:3] for r in state(reference)[1]]  # type: ignore[attr-defined]
    return len(marks)


@pytest.mark.slow
def test_kills_and_dropped_connections_leave_whole_batches(server: RedisServer, spam_dir: Path,
                                                           tmp_path: Path) -> None:
    """Reliability checklist items 24 and 31 on Redis: `kill -9` of the learner, or every
    client connection dropped by the server (CLIENT KILL), at random moments. Each time
    the database holds whole messages only, and a rerun learns the rest once each."""
    files = sorted(spam_dir.iterdir())[:300]
    folder = tmp_path / "spam"
    folder.mkdir()
    for file in files:
        (folder / file.name).write_bytes(file.read_bytes())
    by_key = {message_key(f.read_bytes()): f for f in files}
    admin = redis_client.Redis(port=server.port)
    rng = random.Random(20261130)
    interrupted = 0
    for attempt in range(6):
        location = server.url(prefix=f"kill{attempt}:")
        process = subprocess.Popen(_learn_command(location, folder, 10), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline \
                and not admin.exists(f"kill{attempt}:seen"):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:
            interrupted += 1
            if attempt % 2:
                admin.client_kill_filter(_type="normal", skipme=True)
            else:
                os.kill(process.pid, signal.SIGKILL)
        process.wait(60)
        if attempt % 2 and process.returncode not in (0, None):
            assert process.returncode == 75, process.stderr.read() if process.stderr else ""
        # a learner killed while it held the writer lock leaves it to expire (LOCK_SECONDS);
        # the test does not wait that long
        admin.delete(f"kill{attempt}:lock")
        learned = _holds_whole_messages(location, by_key, tmp_path)
        assert learned <= len(files)
        subprocess.run(_learn_command(location, folder, 10), check=True, capture_output=True)
        assert _holds_whole_messages(location, by_key, tmp_path) == len(files)
    assert interrupted >= 3, "the interruptions should mostly land while learning"


def test_the_trainer_sweeps_into_redis(location: str, tmp_path: Path, sample: list[SourceItem]) -> None:
    """`spamkit learn` (the cron job) with a shared database: its one-sweep lock lives on
    this machine, and the messages are deleted once Redis has what was learned."""
    maildir = tmp_path / "mail" / "alice" / "Maildir" / ".LearnAsSpam"
    for part in ("cur", "new", "tmp"):
        (maildir / part).mkdir(parents=True)
        (maildir.parent / part).mkdir(exist_ok=True)
    for number, item in enumerate(sample[:5]):
        (maildir / "new" / f"{number}.host").write_bytes(item.data or b"")
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "local"))
    run = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--db", location, "--json",
                          "--maildirs", str(tmp_path / "mail" / "{user}" / "Maildir")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert list((maildir / "new").iterdir()) == []
    with RedisStore(location) as store:
        assert store.totals().nspam == 5
    # and the per-user report reads the shared database's audit log
    stats = subprocess.run([sys.executable, "-m", "spamkit", "stats", "--json", "--db", location,
                            "--maildirs", str(tmp_path / "mail" / "{user}" / "Maildir")],
                           capture_output=True, text=True, timeout=120, env=env)
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert (report["db"]["nspam"], report["db"]["backend"]) == (5, "redis")
    (alice,) = report["users"]
    assert (alice["user"], alice["missed_spam_30d"], alice["LearnAsSpam"]) == ("alice", 5, 0)


def test_karma_stays_local_when_the_tokens_are_in_redis(tmp_path: Path, location: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SMTP filter's karma database is per machine: with Database a Redis URL it goes
    beside this machine's default database, not to a path made from the URL."""
    from smtpfilter.plugins import _beside_db
    from spamkit.config import config_from_text
    from spamkit.store import default_db_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "local"))
    config = config_from_text(f'Database = "{location}"\n', tmp_path / "spamkit.toml", {})
    assert Path(_beside_db(config)) == default_db_path().parent / "karma"


def test_a_database_over_tls(tmp_path: Path, sample: list[SourceItem]) -> None:
    """rediss:// with the server's CA: learning and lookups work; a CA that did not sign
    the server's certificate is refused as unreachable, never read in the clear."""
    certificate, key = self_signed_certificate(tmp_path)
    servers = start_redis(tmp_path, tls=(certificate, key))
    server = next(servers)
    try:
        location = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={certificate}"
        with RedisStore(location) as store:
            Learner(store).learn(sample[:5], Label.SPAM)
            assert store.totals().nspam == 5
        other = tmp_path / "other"
        other.mkdir()
        stranger, _ = self_signed_certificate(other)
        with pytest.raises(StoreUnavailable, match="certificate"):
            RedisStore(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={stranger}")
        with pytest.raises(StoreUnavailable):  # plain redis:// to a TLS port
            RedisStore(f"redis://127.0.0.1:{server.port}/0")
    finally:
        servers.close()


def test_a_database_over_a_unix_socket(tmp_path: Path, sample: list[SourceItem]) -> None:
    """unix:///path/redis.sock?db=N: a Redis on the same machine, no TCP at all."""
    socket_path = tmp_path / "redis.sock"
    process = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(socket_path),
                                "--unixsocketperm", "700", "--save", "", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with RedisStore(f"unix://{socket_path}?db=2&prefix=local:") as store:
            Learner(store).learn(sample[:4], Label.HAM)
            assert (store.totals().nham, store.magic()["backend"]) == (4, "redis")
        assert redis_client.Redis(unix_socket_path=str(socket_path), db=2).exists("local:seen")
    finally:
        process.terminate()
        process.wait(10)


def counts_and_model(store: TokenStore) -> tuple[object, ...]:
    """`state` without the seen marks (which a damaged one stops listing)."""
    return (store.totals(), sorted((r.key, r.spam, r.ham, r.day) for r in store.records()),
            store.meta_value("bytemodel"))


def test_a_damaged_seen_mark_stops_a_forget_on_both_stores_alike(rstore: RedisStore, tmp_path: Path,
                                                                   sample: list[SourceItem]) -> None:
    """Forgetting or relearning a message takes its byte model step out of its seen mark. A
    mark of damaged length (4 bytes, not 5 or 9) holds no step to take: both stores say the
    database is damaged and change nothing. (Redis used to read it as "no step" and forget
    the counts alone, leaving the message's step in the model.)"""
    spam = sample[:3]
    key = message_key(spam[0].data or b"")
    damaged = b"\x01\x00\x00\x00"
    with LmdbStore(tmp_path / "db", sync=False) as lmdb_store:
        for store in (lmdb_store, rstore):
            Learner(store).learn(spam, Label.SPAM)
            if isinstance(store, RedisStore):
                store._client.hset(store.key("seen"), key, damaged)
            else:
                with store.writer() as writer:
                    writer.run_in_transaction(lambda txn: txn.put(key, damaged, db=lmdb_store._seen_db))
            before = counts_and_model(store)
            for label in (None, Label.HAM):
                with pytest.raises(LearningStopped, match="not 5 or 9.*damaged"):
                    Learner(store).learn(spam[:1], label)
                assert counts_and_model(store) == before


def test_a_lock_whose_reply_was_lost_is_still_ours(rstore: RedisStore, sample: list[SourceItem],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection dropped after Redis set the lock but before its answer arrived: the
    client library sends SET NX again, which now finds the key set. That is our own lock:
    the writer goes on at once, instead of waiting out its own lock's minute (a CLIENT KILL
    run of the test above found this)."""
    real_set = rstore._client.set

    def set_then_lose_the_reply(*args: object, **kwargs: object) -> object:
        real_set(*args, **kwargs)  # done on the server...
        return None  # ...and what the retried SET NX answers: the key exists

    monkeypatch.setattr(rstore._client, "set", set_then_lose_the_reply)
    started = time.monotonic()
    Learner(rstore).learn(sample[:3], Label.SPAM)
    assert time.monotonic() - started < 5
    monkeypatch.undo()
    assert rstore.totals().nspam == 3
    assert not rstore._client.exists(rstore.key("lock")), "released"


def test_a_connection_dropped_inside_a_batch_is_a_clean_error(rstore: RedisStore, server: RedisServer,
                                                              sample: list[SourceItem]) -> None:
    """The server drops every client while a batch is open (it reads its seen marks through
    the WATCHing connection): StoreUnavailable (exit 75), nothing written, and the store
    works again on the next batch. (A clean-clone CI run of the kill test found this
    surfacing as redis-py's WatchError, an internal error, exit 70.)"""
    admin = redis_client.Redis(port=server.port)
    with pytest.raises(StoreUnavailable, match="dropped"):
        with rstore.writer() as writer:
            admin.client_kill_filter(_type="normal", skipme=True)
            writer.learned_as(b"k" * 16)
    assert rstore.totals().nspam == 0 and not admin.exists(rstore.key("lock"))
    Learner(rstore).learn(sample[:2], Label.SPAM)
    assert rstore.totals().nspam == 2


def test_a_service_says_at_start_that_its_redis_keeps_nothing_on_disk(
        own_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`serve`, `milter` and `spamd` open their database through DatabaseWatch: over a Redis
    whose restart would empty it, they say so once as they start, naming the database,
    before anything is lost; not over one that keeps an append-only file, nor over LMDB.
    (The database emptied afterwards is said as well: the test above.)"""
    import logging

    from spamkit.store.watch import DatabaseWatch

    log = logging.getLogger("spamkit.test-watch")
    client = redis_client.Redis(port=own_server.port)
    url = own_server.url(prefix="watched:")
    said: list[list[str]] = []
    try:
        for setting in ("none", "appendonly yes"):
            if setting != "none":
                client.config_set(*setting.split())
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger=log.name):
                watch = DatabaseWatch(url, 30.0, log)
                assert watch.open() is not None and watch.open() is not None  # (a retry says nothing more)
                watch.close()
            said.append([r.getMessage() for r in caplog.records if r.name == log.name])
    finally:
        client.config_set("appendonly", "no")  # (as the server was started: it then stops at once)
    assert said[0] == [f"the token database {url} is in a Redis that keeps nothing on disk (no save "
                       "points, no append-only file): a restart of Redis empties it, and what was "
                       "learned goes with it. Set `appendonly yes` or a `save` point in redis.conf, "
                       "unless that is meant"]
    assert said[1] == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=log.name):
        watch = DatabaseWatch(tmp_path / "db", 30.0, log)
        assert watch.open() is not None
        watch.close()
    assert not [r for r in caplog.records if r.name == log.name]
    client.close()


def test_a_redis_that_stops_answering_is_unavailable_within_seconds(
        own_server: RedisServer, sample: list[SourceItem], tmp_path: Path) -> None:
    """A Redis that holds the connection and says nothing (stopped here with SIGSTOP; a
    server swapping, or a network cut after the handshake, look the same). redis-py before
    7 waits for an answer for ever: `spamkit learn` hung holding the sweep's lock, and every
    later cron run found it "already running". redis-py 8's own read timeout, 5 s, was
    tried twice, and each try twice over on a new connection (20 s for a learn). Now a
    command gives up after one READ_TIMEOUT (a new connection's handshake after two), a
    learn with exit 75 (so the sweep deletes nothing), and the database answers once
    Redis does."""
    url = own_server.url(prefix="stopped:")
    ham = tmp_path / "ham.eml"
    ham.write_bytes(sample[-1].data)
    with RedisStore(url) as store:
        Learner(store).learn(sample[:10], Label.SPAM)
        own_server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Timeout reading"):
                store.totals()
            waited = [time.monotonic() - started]
            started = time.monotonic()
            learn = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--db", url, "--ham", str(ham)],
                                   capture_output=True, text=True, timeout=120,
                                   env={**os.environ, "SPAMKIT_CONFIG": str(tmp_path / "none.toml")})
            waited.append(time.monotonic() - started)
        finally:
            own_server.process.send_signal(signal.SIGCONT)
        assert learn.returncode == 75 and "Timeout reading" in learn.stderr, learn.stderr
        assert redis_store.READ_TIMEOUT <= waited[0] < redis_store.READ_TIMEOUT + 2
        # (a new connection's handshake, which redis-py 8 tries twice; + the command's start)
        assert waited[1] < 2 * redis_store.READ_TIMEOUT + 5, waited
        assert store.totals().nspam == 10
