"""An LMDB file put in place while other processes have the database open: a backup moved
over data.mdb, or the directory removed and made again by a new learn.

LMDB's lock file records the last transaction's number, and trusts that record whenever
another process has the environment open. A new file numbers its transactions its own
way, so an opener read a snapshot chosen by the old file's count: spamkit called the file
"cut short" and offered `db reset`, or opened it and called it damaged at the first
write. Now the opener is told what happened and who holds the old file, and a service
(DatabaseWatch) notices the swap and goes over to the new file."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.errors import DatabaseInUse, StoreUnavailable
from spamkit.learn import Learner, LearningStopped, Outcome
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.store.watch import DatabaseWatch
from tests.conftest import as_items

HOLD = ("import sys; from spamkit.store import LmdbStore; store = LmdbStore(sys.argv[1]); "
        "print(store.totals().nspam, flush=True); sys.stdin.read(); store.close()")


@pytest.fixture(scope="module")
def items(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> list[SourceItem]:
    train, _ = split
    return as_items([m for m in train if m.label == "spam"][:30])


def _learned(path: Path, items: list[SourceItem], batch_size: int) -> Path:
    """A database of `items` learned as spam, one transaction every `batch_size` messages:
    so two such files number their last transactions differently."""
    with LmdbStore(path) as store:
        Learner(store, batch_size=batch_size).learn(items, Label.SPAM)
    return path


Holder = Callable[[Path], "subprocess.Popen[str]"]


@pytest.fixture
def holder() -> Iterator[Holder]:
    """Start a process that has a database open (as a running service does) until it ends."""
    started: list[subprocess.Popen[str]] = []

    def hold(path: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip()  # open now
        return process

    yield hold
    for process in started:
        end(process)


def end(process: subprocess.Popen[str]) -> None:
    """Let the holder go: it closes its store and exits."""
    if process.poll() is None:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)


def _move_over(source: Path, database: Path) -> None:
    """What an administrator does to put a backup back: copy it beside, rename it over."""
    shutil.copyfile(source / "data.mdb", database / "data.mdb.new")
    os.replace(database / "data.mdb.new", database / "data.mdb")


@pytest.mark.parametrize("held_batches, new_batches", [(2, 10), (10, 2)],
                         ids=["new-file-counts-fewer", "new-file-counts-more"])
def test_a_file_moved_over_a_database_others_have_open_is_refused_saying_so(
        tmp_path: Path, items: list[SourceItem], holder: Holder, held_batches: int,
        new_batches: int) -> None:
    """Both ways round: the new file's last transaction numbered below the lock file's
    record (it was called "cut short", exit 65) and above it (it opened, and a learn into
    it was stopped as damage). Now the refusal is DatabaseInUse (exit 75, a later run may
    succeed), names the process that has the old file, and changes nothing; once that
    process lets go, the new file opens whole."""
    database = _learned(tmp_path / "db", items[:20], batch_size=held_batches)
    backup = _learned(tmp_path / "backup", items, batch_size=new_batches)
    service = holder(database)
    _move_over(backup, database)
    with pytest.raises(DatabaseInUse) as refused:
        LmdbStore(database)
    said = str(refused.value)
    assert f"{database / 'data.mdb'} was replaced while other processes had the database open" in said
    assert f"pid {service.pid}: python" in said and "spamkit db restore" in said
    assert "cut short" not in said and "db reset" not in said
    learn = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--db", str(database), "--spam",
                            str(tmp_path)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "SPAMKIT_CONFIG": str(tmp_path / "none.toml")})
    assert learn.returncode == 75 and "was replaced while other processes" in learn.stderr
    end(service)
    with LmdbStore(database) as store:
        assert store.totals().nspam == 30 and store.verify() == []


def test_an_open_store_tells_when_its_file_is_no_longer_at_its_path(
        tmp_path: Path, items: list[SourceItem]) -> None:
    """`replaced`, which a service asks about once a second: a file moved over, the
    directory made again, the file renamed away. A store closed meanwhile refuses a scan
    as the database being unavailable (the service's WhenDatabaseDown), not with LMDB's
    "closed/deleted/dropped object"."""
    database = _learned(tmp_path / "db", items[:5], batch_size=5)
    backup = _learned(tmp_path / "backup", items[:10], batch_size=5)
    store = LmdbStore(database)
    assert not store.replaced()
    store.totals()
    assert not store.replaced()
    _move_over(backup, database)
    assert store.replaced()
    store.close()
    with pytest.raises(StoreUnavailable, match="was closed while in use"):
        store.totals()
    with LmdbStore(database) as reopened:
        assert reopened.totals().nspam == 10 and not reopened.replaced()
        os.rename(database / "data.mdb", database / "renamed.mdb")
        assert reopened.replaced()
        os.rename(database / "renamed.mdb", database / "data.mdb")
        assert not reopened.replaced()
        shutil.rmtree(database)
        assert reopened.replaced()  # (gone, no file in its place)
        _learned(database, items[:1], batch_size=5)
        assert reopened.replaced()  # (made again)


def test_a_service_s_watch_goes_over_to_the_file_moved_in(
        tmp_path: Path, items: list[SourceItem], holder: Holder) -> None:
    """DatabaseWatch.refreshed: the scanner it gives reads the new file, and the old store
    is closed, which is what lets others open the new file too."""
    from spamkit.config import load_config
    from spamkit.verdict import Scanner

    database = _learned(tmp_path / "db", items[:5], batch_size=5)
    backup = _learned(tmp_path / "backup", items, batch_size=5)
    watch = DatabaseWatch(database, 30.0, logging.getLogger("test"))
    old_store = watch.open()
    assert old_store is not None
    (tmp_path / "none.toml").write_text("")
    scanner = Scanner.from_config(load_config(str(tmp_path / "none.toml")), old_store)
    assert watch.refreshed(scanner) is None  # (nothing changed)
    reloaded = Scanner.from_config(load_config(str(tmp_path / "none.toml")), old_store)
    _move_over(backup, database)
    fresh = watch.refreshed(scanner)
    assert fresh is not None and fresh.store is watch.store and fresh.database_down is None
    assert fresh.store is not None and fresh.store.totals().nspam == 30
    with pytest.raises(StoreUnavailable):
        old_store.totals()
    # a SIGHUP's reload, built over the old store as the swap happened and put in force
    # after it: brought over to the new store at the next look
    again = watch.refreshed(reloaded)
    assert again is not None and again.store is watch.store
    assert watch.refreshed(again) is None
    other = holder(database)  # (another process opens the new file: the old one was let go)
    end(other)
    assert other.returncode == 0
    watch.close()


def test_a_service_s_watch_keeps_the_default_location_it_started_with(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without --db the default location depends on the user; a service that opened root's
    (/var/lib/spamkit/db) and then became its own user must open that one again, not the
    new user's default in its home."""
    from spamkit.store import default_db_path

    monkeypatch.delenv("SPAMKIT_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "first"))
    started_with = str(default_db_path())
    watch = DatabaseWatch(None, 30.0, logging.getLogger("test"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "later"))
    monkeypatch.setattr(os, "geteuid", lambda: 65534)  # (given up root)
    assert str(default_db_path()) != started_with
    assert watch.location == started_with


def test_a_learn_whose_file_is_replaced_meanwhile_stops_before_its_mail_is_let_go(
        tmp_path: Path, items: list[SourceItem]) -> None:
    """A sweep that runs while a backup is moved over data.mdb committed its later batches
    into the old file, which no longer is the database, and then deleted their mail: what
    it learned was lost with the file. Now a batch committed into a replaced file stops
    the run before `on_commit` (where the sweep deletes), uncounted; what came before is
    reported as it was."""
    database = _learned(tmp_path / "db", items[:1], batch_size=5)
    backup = _learned(tmp_path / "backup", items[:3], batch_size=5)
    heard: list[int] = []

    def committed(outcomes: list[tuple[SourceItem, Outcome]]) -> None:
        heard.append(len(outcomes))
        if len(heard) == 1:
            _move_over(backup, database)

    with LmdbStore(database) as store:
        with pytest.raises(LearningStopped, match="was replaced while this run learned") as stopped:
            Learner(store, batch_size=5).learn(items[5:20], Label.HAM, on_commit=committed)
    assert heard == [5] and stopped.value.summary.learned == 5
    with LmdbStore(database) as now_there:
        assert (now_there.totals().nspam, now_there.totals().nham) == (3, 0)
