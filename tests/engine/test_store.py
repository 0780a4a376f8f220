"""The LMDB token store and the learner on it: learn once, move, forget, all or nothing."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import stat
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.analysis import Analyzer
from spamkit.errors import DumpError, SchemaMismatch, StoreCorrupt, StoreError
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.message import message_key
from spamkit.store import lmdb as lmdb_store
from spamkit.store.base import PackedKeys, pack_keys, today, unpack_keys
from tests.conftest import as_items
from tests.threads import from_threads


def snapshot(store: LmdbStore) -> tuple[object, ...]:
    return (store.totals(), sorted((r.key, r.spam, r.ham) for r in store.records()),
            sorted((s.key, s.label) for s in store.seen_records()))


@pytest.fixture(scope="module")
def sample(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> list[SourceItem]:
    train, _ = split
    return as_items([m for m in train if m.label == "spam"][:40] + [m for m in train if m.label == "ham"][:40])


def test_directory_is_private(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "db"):
        pass
    assert stat.S_IMODE((tmp_path / "db").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "db" / "data.mdb").stat().st_mode) == 0o600


def test_learning_twice_changes_nothing(store: LmdbStore, sample: list[SourceItem]) -> None:
    learner = Learner(store, batch_size=7)
    first = learner.learn(sample, Label.SPAM)
    before = snapshot(store)
    again = learner.learn(sample, Label.SPAM)
    assert first.learned == len(sample) and again.skipped == len(sample)
    assert snapshot(store) == before


def test_relearning_moves_exactly_the_counts(store: LmdbStore, sample: list[SourceItem]) -> None:
    learner = Learner(store)
    spam, ham = sample[:40], sample[40:]
    learner.learn(spam, Label.SPAM)
    learner.learn(ham[1:], Label.HAM)
    expected = snapshot(store)
    learner.learn(ham[:1], Label.SPAM)  # a user's mistake...
    summary = learner.learn(ham[:1], Label.HAM)  # ...corrected
    assert summary.relearned == 1
    learner.learn(ham[:1], Label.HAM)
    # now equal to having learned the message as ham from the start
    fresh_dir = store.path.parent / "fresh"
    with LmdbStore(fresh_dir) as fresh:
        other = Learner(fresh)
        other.learn(spam, Label.SPAM)
        other.learn(ham, Label.HAM)
        assert snapshot(store)[:2] == snapshot(fresh)[:2]
    assert snapshot(store) != expected


def test_forget_removes_what_was_learned(store: LmdbStore, sample: list[SourceItem]) -> None:
    learner = Learner(store)
    learner.learn(sample[:40], Label.SPAM)
    before = snapshot(store)
    learner.learn(sample[40:], Label.HAM)
    summary = learner.learn(sample[40:], None)
    assert summary.forgotten == 40
    assert snapshot(store) == before
    assert learner.learn(sample[40:], None).skipped == 40  # forgetting twice is harmless


def test_a_failed_batch_commits_nothing(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample[:10], Label.SPAM)
    before = snapshot(store)
    analyzer = Analyzer()
    with pytest.raises(RuntimeError):
        with store.writer() as writer:
            for item in sample[10:]:
                assert item.data is not None
                writer.add_tokens(analyzer.analyze(item.data).hashes, Label.SPAM)
                writer.add_messages(Label.SPAM, 1)
            raise RuntimeError("crash before commit")
    assert snapshot(store) == before


def test_the_map_grows_by_itself(tmp_path: Path, sample: list[SourceItem]) -> None:
    with LmdbStore(tmp_path / "db", map_size=64 * 1024) as store:
        summary = Learner(store).learn(sample, Label.SPAM)
        assert summary.learned == len(sample)
        assert store.magic()["map_size"] > 64 * 1024  # type: ignore[operator]


def test_writers_that_met_the_same_full_map_grow_it_once(tmp_path: Path) -> None:
    """Writers take turns; two that each found the map full (the second began before the
    first had grown it) grew it twice, four times its size for one filling."""
    with LmdbStore(tmp_path / "db", map_size=64 * 1024) as store:
        full = store._mapped_size()
        from_threads(lambda: store._grow(full), 4)
        assert store._mapped_size() == 2 * full
        store._grow(2 * full)  # full again at its new size: it grows again
        assert store._mapped_size() == 4 * full


def test_a_reset_grows_the_map_when_dropping_needs_pages(tmp_path: Path, sample: list[SourceItem]) -> None:
    """Dropping the tables takes free pages too: a database opened at its file's size, as
    the next process opens it, failed to reset with MDB_MAP_FULL (found by
    tests/engine/test_lmdb_check.py's operations)."""
    with LmdbStore(tmp_path / "db", map_size=64 * 1024) as store:
        Learner(store).learn(sample[:1], Label.SPAM)
    with LmdbStore(tmp_path / "db", map_size=64 * 1024) as store:
        store.reset()
        assert astuple(store.totals()) == (0, 0, 0) and store.verify() == []
        text = io.StringIO()
        store.dump(text)
    with LmdbStore(tmp_path / "fresh") as fresh:
        empty = io.StringIO()
        fresh.dump(empty)

    def contents(dump: str) -> list[str]:  # (the day each was created may differ at midnight)
        return [line for line in dump.splitlines() if not line.startswith("meta created ")]

    assert contents(text.getvalue()) == contents(empty.getvalue())


def test_dump_and_restore_round_trip(tmp_path: Path, store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample[:40], Label.SPAM)
    Learner(store).learn(sample[40:], Label.HAM)
    text = io.StringIO()
    store.dump(text)
    with LmdbStore(tmp_path / "copy") as copy:
        copy.restore(io.StringIO(text.getvalue()))
        assert snapshot(copy) == snapshot(store)


def test_a_dump_is_one_snapshot_while_another_thread_learns(
        tmp_path: Path, store: LmdbStore, sample: list[SourceItem]) -> None:
    """The dump read its meta, tokens, seen marks and events in four transactions, so a
    message learned while it ran could appear by its seen mark but not its counts: a
    backup that, once restored, would never learn that message again. Learning now
    happens (in another thread) just as the first token line is written, and the dump
    is still the database as it was before."""
    import threading

    Learner(store).learn(sample[:40], Label.SPAM)
    before = io.StringIO()
    store.dump(before)

    class LearnMidway(io.StringIO):
        learned = False

        def write(self, text: str) -> int:
            if text.startswith("token ") and not self.learned:
                self.learned = True
                learner = threading.Thread(target=Learner(store).learn, args=(sample[40:50], Label.HAM))
                learner.start()
                learner.join(60)
            return super().write(text)

    during = LearnMidway()
    store.dump(during)
    assert during.learned and store.totals().nham == 10
    assert during.getvalue() == before.getvalue()


def test_a_damaged_dump_changes_nothing(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample, Label.SPAM)
    text = io.StringIO()
    store.dump(text)
    before = snapshot(store)
    lines = text.getvalue().splitlines(keepends=True)
    binary = "".join(lines[:3]).encode() + bytes(range(256)) + "".join(lines[3:]).encode()
    for damaged in (io.StringIO("".join(lines[: len(lines) // 2])),  # truncated: no end line
                    io.StringIO("".join(lines).replace("token ", "token zz", 1)),
                    io.StringIO("not a dump\n"),
                    # bytes that are not UTF-8: as `db restore` reads a file (the line named),
                    # and from a strict stream, which decodes ahead of the lines
                    io.TextIOWrapper(io.BytesIO(binary), encoding="utf-8", errors="surrogateescape"),
                    io.TextIOWrapper(io.BytesIO(binary), encoding="utf-8")):
        with pytest.raises(DumpError) as error:
            store.restore(damaged)
        assert "dump" in str(error.value) and error.value.exit_code == 65
        assert snapshot(store) == before


# dump records with fields that may be bad: numbers past 32 bits, signs, non-ASCII
# digits, odd hex, unknown labels, broken JSON, unknown or non-numeric meta
_NUMBER = st.sampled_from(["0", "1", "4294967295", "4294967296", "99999999999", "-1", "\u0663", "x"])
_HEX = st.sampled_from(["00", "0011223344556677", "00112233445566778899aabbccddeeff",
                        "00112233445566778899aabbccddeeff0011223344556677", "zz"])
_RECORD = st.one_of(
    st.tuples(st.just("token"), _HEX, _NUMBER, _NUMBER, _NUMBER),
    st.tuples(st.just("seen"), _HEX, st.sampled_from(["spam", "ham", "egg"]), _NUMBER),
    st.tuples(st.just("event"), _HEX, st.sampled_from(['{"by":"x","time":1}', "{", "[]"])),
    st.tuples(st.just("meta"), st.sampled_from(["nspam", "nham", "created", "last_seen_expire",
                                                 "tokenizer", "other"]), _NUMBER),
    st.tuples(st.sampled_from(["#", "", "end", "bogus"]), _NUMBER),
).map(" ".join)


def _with_end(records: list[str], exact: bool) -> str:
    """A dump of `records`, its end line counting them (or counting nothing)."""
    kinds = [record.split(" ", 1)[0] for record in records]
    counts = [kinds.count("token"), kinds.count("seen"), kinds.count("event")] if exact else [0, 0, 0]
    return "spamkit-dump 1\n" + "".join(r + "\n" for r in records) + "end %d %d %d\n" % tuple(counts)


@settings(max_examples=300, deadline=None)
@given(st.lists(_RECORD, max_size=6), st.booleans())
def test_any_dump_restores_whole_or_changes_nothing(tmp_path_factory: pytest.TempPathFactory,
                                                    records: list[str], exact_end: bool) -> None:
    """A dump is restored entirely, or refused with a StoreError that names the line and
    the database is left as it was; never another exception, never a database that a
    later command then finds damaged."""
    with LmdbStore(tmp_path_factory.mktemp("dump") / "db") as store:
        with store.writer() as writer:
            writer.add_tokens([b"\x01" * 8], Label.SPAM)
            writer.add_messages(Label.SPAM, 1)
        before = snapshot(store)
        try:
            store.restore(io.StringIO(_with_end(records, exact_end)))
        except StoreError as error:
            assert not isinstance(error, StoreCorrupt) and "dump" in str(error)
            assert snapshot(store) == before
            return
        store.magic()  # what was restored reads back
        list(store.records())
        list(store.seen_records())


def test_expire_drops_the_oldest_rarest_tokens(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample, Label.SPAM)
    total = store.totals().ntokens
    removed = store.expire(total // 2)
    assert removed == total - total // 2
    assert store.totals().ntokens == total // 2
    remaining = [r.spam + r.ham for r in store.records()]
    assert min(remaining) >= 1
    assert store.magic()["last_expire_removed"] == removed


def test_tokens_stamped_by_a_clock_ahead_expire_as_if_learned_today() -> None:
    """A token learned while the clock was a year ahead, and the clock put right since,
    outlived every token learned after it, however rare, for that year; now it is taken as
    learned today and goes in its turn."""
    import numpy as np

    from spamkit.store.batch import VALUE_DTYPE, expiry_order

    day = 20_000
    values = np.zeros(4, dtype=VALUE_DTYPE)
    values["day"] = [day + 365, day, day, day - 1]
    values["spam"] = [1, 5, 2, 9]
    assert expiry_order(values, 2, day).tolist() == [3, 0]  # yesterday's, then today's rarest
    assert expiry_order(values, 4, day + 400).tolist() == [3, 2, 1, 0]  # once its day has come


def _aged(store: LmdbStore, keys: set[bytes], days_ago: int) -> str:
    """`store`'s dump with the messages of `keys` learned `days_ago` days ago (their seen
    marks and their audit events)."""
    text = io.StringIO()
    store.dump(text)
    day = today() - days_ago
    when = day * 86400 * 10**9
    wanted = {key.hex() for key in keys}
    lines = []
    for line in text.getvalue().splitlines(keepends=True):
        fields = line.split(" ", 2)
        if fields[0] == "seen" and fields[1] in wanted:
            line = f"seen {fields[1]} {fields[2].split()[0]} {day}\n"
        elif fields[0] == "event" and fields[1][:32] in wanted:
            record = json.loads(fields[2]) | {"time": when / 1e9}
            line = f"event {fields[1][:32]}{when:016x} {json.dumps(record)}\n"
        lines.append(line)
    return "".join(lines)


@pytest.mark.parametrize("chunk", [10_000, 7])
def test_expire_seen_forgets_old_messages_only(store: LmdbStore, sample: list[SourceItem],
                                               monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Seen marks and audit events grew by every message ever learned (~200 bytes each);
    those older than the cutoff go, in chunks of EXPIRE_CHUNK, and nothing else changes."""
    monkeypatch.setattr(lmdb_store, "EXPIRE_CHUNK", chunk)
    Learner(store).learn(sample, Label.SPAM)
    old = [message_key(item.data) for item in sample[:30]]
    store.restore(io.StringIO(_aged(store, set(old), 400)))
    before = store.totals(), list(store.records())
    young = [message_key(item.data) for item in sample[30:]]

    assert store.expire_seen(today() - 365) == (30, 30)
    assert [store.learned_as(key) for key in old] == [None] * 30
    assert all(store.learned_as(key) is Label.SPAM for key in young)
    assert all(store.history(key) == [] for key in old)
    assert all(len(store.history(key)) == 1 for key in young)
    assert (store.totals(), list(store.records())) == before  # the counts stay
    magic = store.magic()
    assert (magic["nseen"], magic["nevents"]) == (len(young), len(young))
    assert (magic["last_seen_expire_day"], magic["last_seen_expire_removed"]) == (today(), 30)
    assert store.expire_seen(today() - 365) == (0, 0)


def test_learning_forgets_old_messages_once_a_day(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample[:40], Label.SPAM)  # no seen_days: nothing is forgotten
    aged = _aged(store, {message_key(item.data) for item in sample[:40]}, 400)
    store.restore(io.StringIO(aged))
    learner = Learner(store, seen_days=365)

    summary = learner.learn(sample[40:41], Label.HAM)
    assert (summary.learned, summary.seen_expired) == (1, 40)
    assert summary.as_json()["seen_expired"] == 40
    assert store.magic()["nseen"] == 1
    assert learner.learn(sample[:1], Label.SPAM).learned == 1  # forgotten: it counts again

    header, rest = aged.split("\n", 1)
    store.restore(io.StringIO(f"{header}\nmeta last_seen_expire {today()}\n{rest}"))
    assert learner.learn(sample[41:42], Label.HAM).seen_expired == 0  # done today already
    assert store.magic()["nseen"] == 41


def test_readonly_open_never_creates_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        LmdbStore(tmp_path / "missing", readonly=True)
    assert not (tmp_path / "missing").exists()


def test_a_database_still_being_created_is_not_called_corrupt(tmp_path: Path) -> None:
    """A reader that opens the directory between a writer's creating the LMDB file and its
    first commit finds no database yet, not a damaged one; another program's LMDB is."""
    lmdb.open(str(tmp_path / "new"), max_dbs=8).close()  # the file exists, nothing in it
    with pytest.raises(StoreError) as raised:
        LmdbStore(tmp_path / "new", readonly=True)
    assert not isinstance(raised.value, StoreCorrupt)
    assert "yet" in str(raised.value)
    with LmdbStore(tmp_path / "new") as store:  # a writer makes it a spamkit database
        assert store.totals().nspam == 0
    foreign = lmdb.open(str(tmp_path / "foreign"), max_dbs=8)
    foreign.open_db(b"something-else")
    foreign.close()
    with pytest.raises(StoreCorrupt):
        LmdbStore(tmp_path / "foreign", readonly=True)


def test_a_database_of_another_schema_is_refused_by_readers_as_by_writers(
        tmp_path: Path, sample: list[SourceItem]) -> None:
    """A database a newer spamkit made (schema "2"), opened after a downgrade: before, only
    `learn` refused it; `check` scored, `db magic` counted, `db dump` wrote "spamkit-dump 1"
    and `db verify` called it sound, each reading records as this schema's. Now each says
    which schema it is and which this spamkit reads, exits 65, and leaves it as it is."""
    with LmdbStore(tmp_path / "db") as store:
        Learner(store, Analyzer()).learn(sample[:3], Label.SPAM)
    env = lmdb.open(str(tmp_path / "db"), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"2", db=env.open_db(b"meta", txn=txn))
    env.close()
    before = (tmp_path / "db" / "data.mdb").read_bytes()
    for readonly in (True, False):
        with pytest.raises(SchemaMismatch, match="has schema '2', which this spamkit \\(schema '1'\\) does not read"):
            LmdbStore(tmp_path / "db", readonly=readonly)
    message = tmp_path / "m.eml"
    message.write_bytes(sample[0].data or b"")
    said = ("has schema '2', which this spamkit (schema '1') does not read: another version of "
            "spamkit made it. Use that version, or set it aside with `spamkit db reset` and learn afresh")
    env_vars = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    for command in (["check", str(message)], ["db", "magic"], ["db", "dump"], ["db", "verify"],
                    ["learn", "--ham", str(message)]):
        run = subprocess.run([sys.executable, "-m", "spamkit", *command, "--db", str(tmp_path / "db")],
                             capture_output=True, text=True, timeout=120, env=env_vars)
        assert run.returncode == 65, (command, run.stderr)
        assert said in run.stderr and "Traceback" not in run.stderr and run.stdout == "", command
    verify = subprocess.run([sys.executable, "-m", "spamkit", "db", "verify", "--db", str(tmp_path / "db")],
                            capture_output=True, text=True, timeout=120, env=env_vars)
    assert verify.stderr.splitlines()[0] == f"{tmp_path / 'db'}: made by another spamkit version"
    assert "damaged" not in verify.stderr  # (nor the advice for a damaged one)
    assert (tmp_path / "db" / "data.mdb").read_bytes() == before


def _learn_in_child(path: str, items: list[tuple[str, bytes]], label: str) -> None:
    with LmdbStore(path) as store:
        Learner(store, batch_size=5).learn([SourceItem(n, d) for n, d in items], Label(label))


def test_two_writers_are_serialised(tmp_path: Path, sample: list[SourceItem]) -> None:
    """Two processes learning at once: the single-writer lock makes the totals add up."""
    path = str(tmp_path / "db")
    LmdbStore(path).close()
    halves = [[(i.name, i.data) for i in sample[:40]], [(i.name, i.data) for i in sample[40:]]]
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_learn_in_child, args=(path, halves[0], "spam")),
                context.Process(target=_learn_in_child, args=(path, halves[1], "ham"))]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    with LmdbStore(path) as store:
        totals = store.totals()
        assert (totals.nspam, totals.nham) == (40, 40)
        assert len(list(store.seen_records())) == 80


def test_a_forked_child_reopens_the_environment(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample[:5], Label.SPAM)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: uses the inherited object, which must reopen, not reuse the handle
        try:
            ok = store.totals().nspam == 5 and store._pid == os.getpid()
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert store.totals().nspam == 5


def test_remote_file_systems_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spamkit.store import lmdb as lmdb_store

    assert lmdb_store.filesystem_type(tmp_path) not in ("", "nfs")  # a real local type
    monkeypatch.setattr(lmdb_store, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(StoreError, match="nfs4"):
        LmdbStore(tmp_path / "db")
    monkeypatch.setenv("SPAMKIT_ALLOW_REMOTE_DB", "1")
    LmdbStore(tmp_path / "db").close()


def test_counts_read_back_what_was_learned(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample[:40], Label.SPAM)
    Learner(store).learn(sample[40:], Label.HAM)
    stored = {r.key: (r.spam, r.ham) for r in store.records()}
    analyzer = Analyzer()
    keys = analyzer.analyze(sample[0].data or b"").hashes + [b"\x00" * 8, b"\xff" * 8]  # + unknown
    counts = store.counts(keys)
    assert counts.keys == sorted(k for k in set(keys) if k in stored)
    assert [(int(s), int(h)) for s, h in zip(counts.spam, counts.ham)] == [stored[k] for k in counts.keys]
    assert counts.totals.nspam == 40 and counts.totals.nham == 40


def test_counts_many_gives_what_counts_gives(store: LmdbStore, sample: list[SourceItem]) -> None:
    Learner(store).learn(sample[:30], Label.SPAM)
    Learner(store).learn(sample[40:70], Label.HAM)
    analyzer = Analyzer()
    key_lists = [analyzer.analyze(item.data or b"").hashes for item in sample]  # some never learned
    key_lists += [[], [b"\x01" * 8], key_lists[0][:5] * 2]  # nothing, unknown, repeated keys
    together = store.counts_many(key_lists)
    for keys, batched in zip(key_lists, together):
        alone = store.counts(keys)
        assert batched.keys == alone.keys
        assert list(batched.spam) == list(alone.spam) and list(batched.ham) == list(alone.ham)
        assert batched.totals == alone.totals
    with pytest.raises(ValueError):  # keys are 8 bytes: anything else is a caller's bug
        store.counts_many([[b"short"], []])


def test_packed_keys_come_back_exactly() -> None:
    """`train` holds every message's keys packed; a key may hold NUL bytes anywhere."""
    keys = [bytes(8), b"\x00\x00\x00\x00\x00\x00\x00\x01", b"\x01" + bytes(7),
            b"abcdefgh", bytes(range(248, 256))]
    assert unpack_keys(pack_keys(keys)) == keys
    assert unpack_keys(pack_keys([])) == []
    packed = PackedKeys(pack_keys(keys))  # (what `train` hands on: a sequence of the keys)
    assert len(packed) == 5 and list(packed) == keys and packed[1] == keys[1] and packed[-1] == keys[-1]
    assert list(packed[1:3]) == keys[1:3] and pack_keys(packed) == pack_keys(keys)
    assert pack_keys(packed) is packed.packed and len(PackedKeys(b"")) == 0
    with pytest.raises(IndexError):
        packed[5]
    with pytest.raises(ValueError):
        PackedKeys(b"odd")


def test_packed_keys_are_looked_up_and_learned_as_their_keys(store: LmdbStore, tmp_path: Path) -> None:
    """A message's keys given packed (`train`) count and look up exactly as the list."""
    keys = [bytes([i]) * 8 for i in range(1, 30)]
    with LmdbStore(tmp_path / "other") as other:
        for target, given in ((store, keys), (other, PackedKeys(pack_keys(keys)))):
            with target.writer() as writer:
                writer.add_tokens(given, Label.SPAM)
                writer.add_tokens(given[:10], Label.HAM)
        assert sorted(map(astuple, store.records())) == sorted(map(astuple, other.records()))
        lists = [keys[:20], keys[5:]]
        for mine, theirs in zip(store.counts_many(lists),
                                other.counts_many([PackedKeys(pack_keys(k)) for k in lists])):
            assert mine.key_numbers.tolist() == theirs.key_numbers.tolist()
            assert mine.spam.tolist() == theirs.spam.tolist() and mine.ham.tolist() == theirs.ham.tolist()


def _grow_by_learning(store: LmdbStore, times: int) -> None:
    """Commit batches of new tokens until the map has doubled `times` times."""
    start = store._env.info()["map_size"]
    while store._env.info()["map_size"] < start << times:
        with store.writer() as writer:
            for _ in range(200):
                writer.add_tokens([os.urandom(8) for _ in range(50)], Label.SPAM)
                writer.add_messages(Label.SPAM, 1)


def _grow_in_a_process(path: Path, times: int) -> None:
    with LmdbStore(path, map_size=1 << 20) as store:
        _grow_by_learning(store, times)


@pytest.mark.parametrize("grower", ["another process", "a thread of this one"])
def test_readers_in_threads_survive_the_map_growing(tmp_path: Path, grower: str) -> None:
    """LMDB lets a process change its map size only while none of its transactions is
    open, and does not check. `serve` reads in worker threads while the nightly sweep (or
    its own autolearn) grows the map; before, a worker that met the new size re-mapped
    under the others' feet: "mdb_txn_begin: Invalid argument" and "Attempt to operate on
    closed/deleted/dropped object" in an hour's soak."""
    import threading

    path = tmp_path / "db"
    keys = [os.urandom(8) for _ in range(300)]
    with LmdbStore(path, map_size=1 << 20) as store:
        with store.writer() as writer:
            writer.add_tokens(keys, Label.SPAM)
            writer.add_messages(Label.SPAM, 1)
        errors: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                try:
                    counts = store.counts(keys)
                    assert len(counts.keys) == len(keys)
                except BaseException as error:  # noqa: BLE001 - every failure is the finding
                    errors.append(error)
                    return

        readers = [threading.Thread(target=read) for _ in range(6)]
        for reader in readers:
            reader.start()
        if grower == "another process":
            child = multiprocessing.get_context("spawn").Process(target=_grow_in_a_process, args=(path, 4))
            child.start()
            child.join(300)
            assert child.exitcode == 0
        else:  # this process's own writer (autolearn in `serve`)
            _grow_by_learning(store, 4)
        done.set()
        for reader in readers:
            reader.join()
        assert errors == []
        assert store._env.info()["map_size"] > 1 << 20  # grown, or a larger size adopted
        assert len(store.counts(keys).keys) == len(keys)


def test_a_database_others_may_write_is_refused(tmp_path: Path, sample: list[SourceItem]) -> None:
    """Reliability checklist 39: whoever can write the database decides what is spam."""
    path = tmp_path / "db"
    with LmdbStore(path) as store:
        Learner(store).learn(sample[:3], Label.SPAM)
    os.chmod(path / "data.mdb", 0o664)
    for readonly in (True, False):
        with pytest.raises(StoreError, match="writable by other users.*chmod go-w"):
            LmdbStore(path, readonly=readonly)
    os.chmod(path / "data.mdb", 0o600)
    os.chmod(path, 0o777)
    with pytest.raises(StoreError, match="writable by other users"):
        LmdbStore(path, readonly=True)
    os.chmod(path, 0o700)
    with LmdbStore(path, readonly=True) as store:
        assert store.totals().nspam == 3


def test_threads_of_one_process_take_turns_to_write(tmp_path: Path) -> None:
    """The SMTP filter autolearns on its worker threads. py-lmdb refuses a second write
    transaction on an environment that has one open (EBUSY) instead of waiting, so the
    store's map lock lets one write transaction a process at a time begin: four threads
    learning 100 messages each all commit (before, three in four raised lmdb.Error)."""
    import threading

    from spamkit.learn import Learner
    from spamkit.sources import SourceItem
    from spamkit.store import Label, LmdbStore

    failures: list[BaseException] = []
    with LmdbStore(tmp_path / "db") as store:
        def learn(thread: int) -> None:
            learner = Learner(store)
            try:
                for i in range(100):
                    learner.learn([SourceItem(f"{thread}-{i}", f"Subject: {thread} {i}\r\n\r\nbody "
                                              f"{thread} {i}\r\n".encode())], Label.SPAM)
            except BaseException as error:  # noqa: BLE001  (any failure fails the test)
                failures.append(error)

        threads = [threading.Thread(target=learn, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert failures == [] and store.totals().nspam == 400
