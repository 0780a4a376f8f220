"""A disk that fills up while learning: the run stops with a clear error (exit 74), says
what it had committed, and the database holds exactly that; with room again, a rerun
finishes. The disk is a real 2 MiB tmpfs (tests/servers/tmpfs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from corpora import CorpusMessage
from spamkit.learn import Learner
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from tests.engine.dbstate import database_state
from tests.servers.tmpfs import grow, small_disk, stopped_by_a_full_disk

BATCH = 50




def _learn(db: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", "learn", "--spam", str(folder), "--db",
                           str(db), "--batch-size", str(BATCH), "--json"],
                          capture_output=True, text=True, timeout=300)


def test_learning_onto_a_full_disk_stops_cleanly_and_a_rerun_finishes(tmp_path: Path,
                                                                       spam_dir: Path) -> None:
    files = sorted(spam_dir.iterdir())
    keys_in_order = [message_key(f.read_bytes()) for f in files]
    with small_disk(tmp_path / "disk", "2m") as disk:
        db = disk / "db"
        stopped = _learn(db, spam_dir)
        report = stopped_by_a_full_disk(stopped)  # with what was committed before the error
        assert "disk holding the database" in stopped.stderr
        assert 0 < report["learned"] < len(files) and report["learned"] % BATCH == 0

        # the database opens and holds exactly the batches it reported, nothing half-written
        totals, _, seen = database_state(db)
        assert totals.nspam == report["learned"]  # type: ignore[attr-defined]
        assert seen == sorted(set(keys_in_order[: report["learned"]]))
        reference = tmp_path / "reference"
        with LmdbStore(reference) as store:
            Learner(store).learn([SourceItem(str(f), f.read_bytes()) for f in files[: report["learned"]]],
                                 Label.SPAM)
        assert database_state(db) == database_state(reference)

        grow(disk, "64m")  # the administrator makes room
        rerun = _learn(db, spam_dir)
        assert rerun.returncode == 0, rerun.stderr
        again = json.loads(rerun.stdout)
        assert "error" not in again
        assert again["skipped"] == report["learned"]
        assert again["learned"] == len(set(keys_in_order)) - report["learned"]
        assert database_state(db)[2] == sorted(set(keys_in_order))  # every message once


def test_train_onto_a_full_disk_reports_what_it_committed(tmp_path: Path, spam_dir: Path,
                                                          split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    ham_dir = tmp_path / "ham"
    ham_dir.mkdir()
    for message in [m for m in split[0] if m.label == "ham"][:800]:
        (ham_dir / message.path.replace("/", "_")).write_bytes(message.data)
    with small_disk(tmp_path / "disk", "2m") as disk:
        db = disk / "db"
        result = subprocess.run([sys.executable, "-m", "spamkit", "train", "--spam", str(spam_dir),
                                 "--ham", str(ham_dir), "--db", str(db), "--batch-size", str(BATCH)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 74, result.stderr
        assert "is full" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout.startswith("committed before the error: learned: ")
        learned = int(result.stdout.split("learned: ")[1].split(",")[0])
        with LmdbStore(db) as store:
            totals = store.totals()
            marks = list(store.seen_records())
        assert 0 < learned == totals.nspam + totals.nham == len(marks)


def test_a_database_without_its_lock_file_on_a_full_disk_is_an_error_not_a_crash(
        tmp_path: Path, spam_dir: Path) -> None:
    """LMDB writes its lock file through a memory map: on a full disk, making it would be
    a SIGBUS. A database copied (or restored) without one onto a full disk is refused
    with an error that says why."""
    import lmdb

    from tests.servers.tmpfs import fill, small_disk

    source = tmp_path / "source"
    with LmdbStore(source) as store:
        Learner(store).learn([SourceItem(f.name, f.read_bytes()) for f in sorted(spam_dir.iterdir())[:20]],
                             Label.SPAM)
    with small_disk(tmp_path / "disk", "4m") as disk:
        db = disk / "db"
        db.mkdir(mode=0o700)
        with lmdb.open(str(source), readonly=True, max_dbs=8) as env:
            env.copy(str(db))  # data.mdb only, as a backup holds it
        fill(disk)
        for command in (["db", "magic"], ["check", str(sorted(spam_dir.iterdir())[0])]):
            result = subprocess.run([sys.executable, "-m", "spamkit", *command, "--db", str(db)],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 74, (command, result.returncode, result.stderr)
            assert "too full for its lock file" in result.stderr
        (disk / "filler").unlink()
        result = subprocess.run([sys.executable, "-m", "spamkit", "db", "magic", "--json", "--db", str(db)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and json.loads(result.stdout)["nspam"] == 20


def test_check_autolearn_on_a_full_disk_checks_every_message(
        tmp_path: Path, trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """`spamkit check --autolearn` with the database's disk full: every message still gets
    its verdict, the ones autolearn picked say it failed, one warning, exit 74."""
    import lmdb

    from tests.servers.tmpfs import fill, small_disk

    messages = tmp_path / "messages"
    messages.mkdir()
    for index, message in enumerate([m for m in split[1] if m.label == "ham"][:20]):
        (messages / f"{index:02d}.eml").write_bytes(message.data)
    with small_disk(tmp_path / "disk", "48m") as disk:
        db = disk / "db"
        db.mkdir(mode=0o700)
        with lmdb.open(str(trained_db), readonly=True, max_dbs=8) as env:
            env.copy(str(db), compact=True)  # no free pages: a commit must grow the file
        with LmdbStore(db) as store:  # (makes the lock file, as any use has)
            before = store.totals()
        fill(disk)
        result = subprocess.run([sys.executable, "-m", "spamkit", "check", "--autolearn", "--json",
                                 str(messages), "--db", str(db)],
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "SPAMKIT_CONFIG": "/nonexistent/spamkit.toml"})
        assert result.returncode == 74, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(records) == 20 and all(r["verdict"] for r in records)
        picked = [r for r in records if r["autolearned"] == "failed"]
        assert picked and all(r["autolearn"] == "failed" for r in picked)
        assert result.stderr.count("autolearn stopped") == 1 and "is full" in result.stderr
        with LmdbStore(db) as store:
            assert store.totals() == before
