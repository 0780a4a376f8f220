"""`kill -9` during `spamkit learn`: the database opens and holds exactly whole batches."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.learn import Learner
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore

BATCH = 25
KILLS = 10


@pytest.fixture(scope="module")
def spam_dir(tmp_path_factory: pytest.TempPathFactory,
             split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Path:
    folder = tmp_path_factory.mktemp("spam")
    train, _ = split
    for message in [m for m in train if m.label == "spam"]:
        (folder / message.path.replace("/", "_")).write_bytes(message.data)
    return folder


def _state(path: Path) -> tuple[object, ...]:
    with LmdbStore(path) as store:
        return (store.totals(), sorted((r.key, r.spam, r.ham) for r in store.records()),
                sorted(s.key for s in store.seen_records()))


def _learn_command(db: Path, folder: Path) -> list[str]:
    return [sys.executable, "-m", "spamkit", "learn", "--spam", str(folder), "--db", str(db),
            "--batch-size", str(BATCH), "--quiet"]


@pytest.mark.slow
def test_kill_9_during_learn_leaves_whole_batches(tmp_path: Path, spam_dir: Path) -> None:
    files = sorted(spam_dir.iterdir())
    keys_in_order = [message_key(f.read_bytes()) for f in files]
    rng = random.Random(20261125)
    killed_mid_run = 0
    for attempt in range(KILLS):
        db = tmp_path / f"db{attempt}"
        process = subprocess.Popen(_learn_command(db, spam_dir), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.2))
        if process.poll() is None:
            killed_mid_run += 1
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if not (db / "data.mdb").exists():
            continue  # killed before the database was created: nothing to check
        totals, _, seen = _state(db)
        # the seen marks are exactly the messages of some number of whole batches
        batches = next((n for n in range(0, len(files) // BATCH + 2)
                        if sorted(set(keys_in_order[: n * BATCH])) == seen), None)
        assert batches is not None, f"attempt {attempt}: seen marks are not whole batches"
        assert totals.nspam == len(seen)  # type: ignore[attr-defined]
        # and the counts are exactly what learning those batches gives
        reference = tmp_path / f"reference{attempt}"
        with LmdbStore(reference) as store:
            Learner(store).learn([SourceItem(str(f), f.read_bytes()) for f in files[: batches * BATCH]],
                                 Label.SPAM)
        assert _state(db) == _state(reference)
        # a rerun learns the rest, each message once
        subprocess.run(_learn_command(db, spam_dir), check=True)
        assert _state(db)[2] == sorted(set(keys_in_order))
    assert killed_mid_run >= KILLS // 2, "the kills should mostly land while learning"
