"""The LMDB file check (spamkit.store.lmdbcheck): sound files pass whatever was done to
them, and damaged page headers, which LMDB would follow into a crash, are found."""

from __future__ import annotations

import io
import multiprocessing
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.errors import StoreCorrupt
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.store.base import today
from spamkit.store import lmdbcheck
from spamkit.store.lmdbcheck import TreeFacts, check_file, check_length
from tests.conftest import as_items
from tests.engine.lmdbdamage import DAMAGES, damage

OPERATIONS = ["learn spam", "learn ham", "relearn", "forget", "expire", "expire seen",
              "large meta value", "drop meta value", "restore", "reset", "reopen"]


class Messages(list[SourceItem]):
    """Corpus messages, shown by their number alone in hypothesis's reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} corpus messages>"


@pytest.fixture(scope="module")
def sample(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Messages:
    train, _ = split
    return Messages(as_items([m for m in train if m.label == "spam"][:60]
                             + [m for m in train if m.label == "ham"][:60]))


def _apply(store: LmdbStore, operation: str, chosen: list[SourceItem], size: int) -> LmdbStore:
    learner = Learner(store, batch_size=9)
    if operation == "learn spam":
        learner.learn(chosen, Label.SPAM)
    elif operation == "learn ham":
        learner.learn(chosen, Label.HAM)
    elif operation == "relearn":
        learner.learn(chosen, Label.HAM)
        learner.learn(chosen, Label.SPAM)
    elif operation == "forget":
        learner.learn(chosen, None)  # (no label: forget)
    elif operation == "expire":
        store.expire(max(1, size * 40))
    elif operation == "expire seen":
        store.expire_seen(10**6)  # (a day far ahead: every mark goes)
    elif operation == "large meta value":  # overflow pages, as the byte model's megabyte
        store.set_meta("test_value", "x" * (size * 9_000 + 1))
    elif operation == "drop meta value":
        store.set_meta("test_value", "")
    elif operation == "restore":
        text = io.StringIO()
        store.dump(text)
        text.seek(0)
        store.restore(text)
    elif operation == "reset":
        store.reset()
    else:  # "reopen": a new process's view, the map at the file's size
        path = store.path
        store.close()
        return LmdbStore(path, map_size=64 * 1024)
    return store


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 119), st.integers(1, 40)),
                min_size=1, max_size=8))
def test_a_sound_file_is_sound_after_any_run_of_operations(
        sample: list[SourceItem], steps: list[tuple[str, int, int]]) -> None:
    """Learning, moving, forgetting, expiring, values over a page, restores, resets and
    the map growing from 64 KiB: after each, the walk finds every page used once."""
    with tempfile.TemporaryDirectory() as folder:
        store = LmdbStore(Path(folder) / "db", map_size=64 * 1024)
        try:
            for operation, start, size in steps:
                store = _apply(store, operation, sample[start:start + size], size)
                assert store.verify() == [], operation
            report = check_file(Path(folder) / "db" / "data.mdb")
            assert report.sound and report.pages > 2 and report.unused_pages == 0
            assert set(report.trees) >= {"free list", "main", "tokens", "seen", "meta"}
        finally:
            store.close()


def _learn_for_a_while(path: str, items: list[tuple[str, bytes]], seconds: float) -> None:
    store = LmdbStore(path)
    learner = Learner(store, batch_size=3)
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline or rounds < 2:
        for label in (Label.SPAM, Label.HAM):
            learner.learn([SourceItem(name, data) for name, data in items], label)
        store.set_meta("test_value", "y" * (5_000 * (rounds % 3)))
        rounds += 1
    store.close()


def test_the_check_holds_its_snapshot_while_another_process_writes(
        tmp_path: Path, sample: list[SourceItem]) -> None:
    """A writer reuses free pages and rewrites the meta pages as it commits; the check
    walks the snapshot its read transaction pins, so it never reports a page it was
    overtaken on."""
    path = str(tmp_path / "db")
    with LmdbStore(path) as store:
        Learner(store).learn(sample[:30], Label.SPAM)
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_learn_for_a_while,
                             args=(path, [(i.name, i.data) for i in sample[30:90]], 6.0))
    writer.start()
    checks = 0
    with LmdbStore(path, readonly=True) as store:
        while writer.is_alive() or checks < 5:
            assert store.verify() == []
            checks += 1
    writer.join(120)
    assert writer.exitcode == 0 and checks >= 5


def test_the_check_reads_its_snapshot_s_meta_page_once(
        tmp_path: Path, sample: list[SourceItem], monkeypatch: pytest.MonkeyPatch) -> None:
    """A read transaction pins its snapshot's pages, not its meta page: the commit after
    next rewrites that. The check chose the meta page, then read the trees' roots from it
    again; two commits in between gave it a newer snapshot's roots beside this one's last
    page, and it reported damage that was not there (a CI run: "free list: page 603 is
    outside pages 2-600"). Here the two commits are made in that gap, every time."""
    path = tmp_path / "db"
    with LmdbStore(path) as store:
        Learner(store).learn(sample[:20], Label.SPAM)
    batches = []
    for number, chunk in enumerate((sample[20:60], sample[60:100])):
        folder = tmp_path / f"batch{number}"
        folder.mkdir()
        for index, item in enumerate(chunk):
            (folder / f"{index}.eml").write_bytes(item.data)
        batches.append(folder)
    original = lmdbcheck._tree
    committed: list[int] = []

    def roots_read_after_two_commits(name: str, record: bytes, offset: int = 0) -> TreeFacts:
        if not committed:
            for folder in batches:  # each `learn` commits at least once
                done = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--spam", str(folder),
                                       "--db", str(path)], capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stderr
                committed.append(1)
        return original(name, record, offset)

    monkeypatch.setattr(lmdbcheck, "_tree", roots_read_after_two_commits)
    with LmdbStore(path, readonly=True) as store:
        with store._transaction() as txn:
            report = check_file(path / "data.mdb", txn.id())
            assert committed and report.txnid == txn.id()
    assert report.problems == [] and not report.snapshot_gone


@pytest.fixture(scope="module")
def learned_database(tmp_path_factory: pytest.TempPathFactory, sample: list[SourceItem]) -> Path:
    path = tmp_path_factory.mktemp("learned") / "db"
    with LmdbStore(path) as store:
        learner = Learner(store)
        learner.learn(sample[:60], Label.SPAM)
        learner.learn(sample[60:], Label.HAM)
        store.set_meta("test_value", "z" * 20_000)
    return path


@pytest.mark.parametrize("kind", DAMAGES)
def test_each_damaged_field_is_found(learned_database: Path, tmp_path: Path, kind: str) -> None:
    copy = tmp_path / "db"
    shutil.copytree(learned_database, copy)
    damage(copy, kind)
    with LmdbStore(copy, readonly=True) as store:
        problems = store.verify()
        assert problems, kind
        with pytest.raises(StoreCorrupt, match="is damaged"):
            store.magic()
    assert not check_file(learned_database / "data.mdb").problems


def test_a_file_of_another_kind_is_reported_not_guessed_at(tmp_path: Path) -> None:
    path = tmp_path / "data.mdb"
    path.write_bytes(bytes(range(256)) * 64)
    assert check_file(path).problems == ["neither meta page is an LMDB 0.9 meta page"]
    path.write_bytes(b"\0" * 100)
    assert "too short" in check_file(path).problems[0]


def test_a_file_ending_on_pages_lmdb_freed_unwritten_is_sound_and_one_cut_short_is_not(
        tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """LMDB counts the pages a transaction took from the end of the file and freed again
    before committing, yet never writes them: they go on the free list. This run of
    restores and expiries (what `db restore` and `db expire` do) ends with the file two
    pages short of its last page. Every open used to call that damage ("cut short"):
    learning was refused, and the filter gave every message WhenDatabaseDown (by default
    a 4xx), until the database was reset."""
    spam = as_items([m for m in split[0] if m.label == "spam"][:250])
    path = tmp_path / "db"
    with LmdbStore(tmp_path / "source") as source:
        Learner(source).learn(spam, Label.SPAM)
        dump = io.StringIO()
        source.dump(dump)
    for step in ("restore", "expire 100", "expire seen", "restore", "expire 1000"):
        with LmdbStore(path) as store:
            if step == "restore":
                dump.seek(0)
                store.restore(dump)
            elif step == "expire seen":
                store.expire_seen(today() - 365)
            else:
                store.expire(int(step.split()[1]))
            last_page = store._env.info()["last_pgno"]
    file_pages = (path / "data.mdb").stat().st_size // 4096
    assert file_pages <= last_page  # (the run still leaves pages unwritten at the end)
    report = check_file(path / "data.mdb")
    assert report.sound and report.pages == last_page + 1
    with LmdbStore(path, readonly=True) as store:
        assert store.verify() == [] and store.totals().ntokens == 1000
    with LmdbStore(path) as store:
        Learner(store).learn(spam[:5], Label.HAM)  # (relearned: written into the file)
        assert store.totals().nham == 5

    data = (path / "data.mdb").read_bytes()
    (path / "data.mdb").write_bytes(data[:len(data) // 2])  # a copy that stopped half way
    assert re.search(r"past its end is not listed free|past the end of the file",
                     check_length(path / "data.mdb").problems[0])
    with pytest.raises(StoreCorrupt, match=r"is cut short: .*(past its end is not listed free|"
                                           r"past the end of the file)"):
        LmdbStore(path, readonly=True)
