"""`kill -9` during `spamkit learn`: the database opens and holds exactly whole batches."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corpora import CorpusMessage
from spamkit import bytemodel
from spamkit.bytemodel import ByteModel, byte_sample
from spamkit.errors import StoreError
from spamkit.learn import Learner
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from tests.engine.dbstate import database_state

BATCH = 25
KILLS = 10




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
        totals, _, seen = database_state(db)
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
        assert database_state(db) == database_state(reference)
        # a rerun learns the rest, each message once
        subprocess.run(_learn_command(db, spam_dir), check=True)
        assert database_state(db)[2] == sorted(set(keys_in_order))
    assert killed_mid_run >= KILLS // 2, "the kills should mostly land while learning"


@pytest.fixture(scope="module")
def ham_dir(tmp_path_factory: pytest.TempPathFactory,
            split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Path:
    folder = tmp_path_factory.mktemp("ham")
    train, _ = split
    for message in [m for m in train if m.label == "ham"][:1500]:
        (folder / message.path.replace("/", "_")).write_bytes(message.data)
    return folder


def _train_command(db: Path, spam: Path, ham: Path) -> list[str]:
    return [sys.executable, "-m", "spamkit", "train", "--spam", str(spam), "--ham", str(ham),
            "--db", str(db), "--batch-size", str(BATCH), "--quiet"]


def _learned_exactly_what_it_marked(db: Path, by_key: dict[bytes, Path], tmp_path: Path) -> int:
    """The database's counts are those of learning exactly the messages it marks as seen,
    each with its label: nothing half-learned, nothing counted without its mark."""
    with LmdbStore(db) as store:
        marks = list(store.seen_records())
    reference = tmp_path / "reference"
    with LmdbStore(reference) as store:
        for label in (Label.SPAM, Label.HAM):
            Learner(store).learn([SourceItem(str(by_key[m.key]), by_key[m.key].read_bytes())
                                  for m in marks if m.label is label], label)
    assert database_state(db) == database_state(reference)
    return len(marks)


@pytest.mark.slow
def test_kill_9_during_train_leaves_a_consistent_database(tmp_path: Path, spam_dir: Path,
                                                          ham_dir: Path) -> None:
    """`spamkit train`, the main job, learns only some messages, in an order of its own;
    killed at any moment, what it committed is whole (the byte model too), and a rerun
    finishes the work."""
    files = sorted(spam_dir.iterdir()) + sorted(ham_dir.iterdir())
    by_key = {message_key(f.read_bytes()): f for f in files}
    batches = _models_after_each_batch(files, spam_dir)
    rng = random.Random(20261130)
    killed_while_committing = 0
    for attempt in range(KILLS // 2):
        db = tmp_path / f"db{attempt}"
        process = subprocess.Popen(_train_command(db, spam_dir, ham_dir),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # train reads and tokenizes everything before its first commit, which takes a
        # machine-dependent while: wait for that commit, then kill at a random moment
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline and _marks(db) == 0:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed_while_committing += 1
        process.wait()
        marked = _learned_exactly_what_it_marked(db, by_key, tmp_path / f"check{attempt}")
        _holds_whole_batches_of_the_model(db, batches)
        subprocess.run(_train_command(db, spam_dir, ham_dir), check=True)
        assert _learned_exactly_what_it_marked(db, by_key, tmp_path / f"after{attempt}") >= marked
    assert killed_while_committing >= 2, "the kills should mostly land while training"


def _models_after_each_batch(files: list[Path], spam_dir: Path) -> list[tuple[set[bytes], ByteModel]]:
    """What `train` has committed after each of its batches, from an empty database: the
    keys of the messages visited so far and the byte model they leave (the copies' steps
    on every message, `bagged_steps` in `train`'s order of message keys, added a batch at
    a time)."""
    ordered = sorted(files, key=lambda f: message_key(f.read_bytes()))  # (stable, as train's sort)
    keys = [message_key(f.read_bytes()) for f in ordered]
    samples = [byte_sample(f.read_bytes()) for f in ordered]
    steps = bytemodel.bagged_steps(ByteModel(), keys, samples, [f.parent == spam_dir for f in ordered])
    batches = [(set[bytes](), ByteModel())]
    for start in range(0, len(ordered), BATCH):
        model = batches[-1][1].copy()
        model.add_steps(samples[start:start + BATCH], steps[start:start + BATCH])
        batches.append((set(keys[:start + BATCH]), model))
    return batches


def _holds_whole_batches_of_the_model(db: Path, batches: list[tuple[set[bytes], ByteModel]]) -> None:
    """The database's byte model is the model after some number of whole batches (none:
    killed before the first commit), and every message marked as learned is in those
    batches: the model moved with the marks, never behind them."""
    with LmdbStore(db) as store:
        stored = bytemodel.read_model(store.meta_value(bytemodel.META_NAME))
        marked = {mark.key for mark in store.seen_records()}
    if stored is None:
        assert not marked, "messages were marked as learned without the model's steps"
        return
    matching = [visited for visited, model in batches
                if (model.spam_steps, model.ham_steps) == (stored.spam_steps, stored.ham_steps)
                and np.allclose(stored.weights, model.weights, rtol=0, atol=1e-6)]
    assert matching, "the byte model is not the model after any number of whole batches"
    assert any(marked <= visited for visited in matching), "marks committed without their batch's model"


def _marks(db: Path) -> int:
    """Messages learned so far, read while the writer runs (0 before its first commit)."""
    try:
        with LmdbStore(db, readonly=True) as store:
            totals = store.totals()
    except StoreError:  # no database yet, or not yet a spamkit one
        return 0
    return totals.nspam + totals.nham
