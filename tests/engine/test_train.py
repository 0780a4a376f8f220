"""`Learner.train` / `spamkit train`: learn only what the database is not yet sure of."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpora import CorpusMessage
from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier
from spamkit.learn import Learner, train_selector
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from tests.conftest import as_items


@pytest.fixture(scope="module")
def corpus_sample(split: tuple[list[CorpusMessage], list[CorpusMessage]]
                  ) -> tuple[list[CorpusMessage], list[CorpusMessage], list[CorpusMessage]]:
    """(600 training spam, 1,200 training ham, 100 test spam and 200 test ham)."""
    train, test = split
    return ([m for m in train if m.label == "spam"][:600],
            [m for m in train if m.label == "ham"][:1200],
            [m for m in test if m.label == "spam"][:100] + [m for m in test if m.label == "ham"][:200])


def _train(path: Path, spam: list[SourceItem], ham: list[SourceItem], margin: float = 0.999):
    store = LmdbStore(path)
    summary = Learner(store, batch_size=128).train(spam, ham, BayesClassifier(store), margin)
    return store, summary


def test_train_learns_a_part_and_accounts_for_every_message(tmp_path: Path, corpus_sample) -> None:
    spam, ham, test = corpus_sample
    store, summary = _train(tmp_path / "db", as_items(spam), as_items(ham))
    with store:
        totals = store.totals()
        assert summary.failed == 0 and summary.relearned == 0
        assert summary.learned + summary.confident + summary.skipped == len(spam) + len(ham)
        assert summary.confident > 0 and summary.learned < len(spam) + len(ham)
        # what was learned is what the totals and the learned-once table say, label by label
        assert totals.nspam + totals.nham == summary.learned
        assert totals.nspam >= 200 and totals.nham >= 200  # learned everything until Bayes judged
        learned_spam = sum(store.learned_as(message_key(m.data)) is Label.SPAM for m in spam)
        learned_ham = sum(store.learned_as(message_key(m.data)) is Label.HAM for m in ham)
        assert (learned_spam, learned_ham) == (totals.nspam, totals.nham)
        # every learned message is in the audit log; a confident one is not marked learned
        some_learned = next(m for m in spam if store.learned_as(message_key(m.data)))
        assert store.history(message_key(some_learned.data))[0]["action"] == "spam"
        # and the database it leaves separates unseen mail
        classifier = BayesClassifier(store)
        scores = [r.log_odds for r in classifier.score_many(
            [Analyzer().analyze(m.data).hashes for m in test])]
    labels = np.array([m.label == "spam" for m in test])
    scores_array = np.array(scores)
    above = (scores_array[labels][:, None] > scores_array[~labels][None, :]).mean()
    assert above > 0.99  # the area under the ROC curve
    assert (scores_array[labels] > 0).mean() > 0.9 and (scores_array[~labels] < 0).mean() > 0.97


def test_train_does_not_depend_on_the_order_it_is_given(tmp_path: Path, corpus_sample) -> None:
    spam, ham, _ = corpus_sample
    first, _ = _train(tmp_path / "a", as_items(spam), as_items(ham))
    second, _ = _train(tmp_path / "b", as_items(spam[::-1]), as_items(ham[::-1]))
    with first, second:
        assert list(first.records()) == list(second.records())
        assert first.totals() == second.totals()


def test_a_second_run_skips_what_the_first_learned(tmp_path: Path, corpus_sample) -> None:
    """A second pass (as bogominitrain repeats) learns only what is still uncertain."""
    spam, ham, _ = corpus_sample
    store, first = _train(tmp_path / "db", as_items(spam), as_items(ham))
    store.close()
    store, again = _train(tmp_path / "db", as_items(spam), as_items(ham))
    with store:
        assert again.skipped == first.learned  # those are known now
        assert again.relearned == 0 and again.learned < first.learned / 10
        assert again.learned + again.confident + again.skipped == len(spam) + len(ham)
        assert store.totals().nspam + store.totals().nham == first.learned + again.learned


def test_a_message_taught_the_other_way_is_always_relearned(tmp_path: Path, corpus_sample) -> None:
    spam, ham, _ = corpus_sample
    mislabelled = ham[0]
    with LmdbStore(tmp_path / "db") as store:
        Learner(store).learn(as_items([mislabelled]), Label.SPAM)
    store, summary = _train(tmp_path / "db", as_items(spam), as_items(ham))
    with store:
        assert summary.relearned == 1
        assert store.learned_as(message_key(mislabelled.data)) is Label.HAM


def test_unreadable_messages_are_reported_and_the_rest_trained(tmp_path: Path, corpus_sample) -> None:
    spam, ham, _ = corpus_sample
    broken = SourceItem("gone", None, "No such file or directory")
    store, summary = _train(tmp_path / "db", [broken, *as_items(spam)], as_items(ham))
    with store:
        assert summary.failed == 1 and summary.failures == [("gone", "No such file or directory")]
        assert store.totals().nspam > 0


def test_a_margin_outside_the_open_interval_is_refused(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "db") as store:
        with pytest.raises(ValueError):
            Learner(store).train([], [], BayesClassifier(store), 1.0)


def test_spamkit_train_command(tmp_path: Path, corpus_sample) -> None:
    spam, ham, _ = corpus_sample
    for name, messages in (("spam", spam), ("ham", ham)):
        folder = tmp_path / name
        folder.mkdir()
        for message in messages:
            (folder / message.path.replace("/", "_")).write_bytes(message.data)
    db = str(tmp_path / "db")
    run = subprocess.run([sys.executable, "-m", "spamkit", "train", "--spam", str(tmp_path / "spam"),
                          "--ham", str(tmp_path / "ham"), "--db", db, "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {"learned", "relearned", "skipped", "confident", "failed", "seconds"} <= result.keys()
    assert result["learned"] + result["confident"] == len(spam) + len(ham)
    magic = json.loads(subprocess.run([sys.executable, "-m", "spamkit", "db", "magic", "--db", db,
                                       "--json"], capture_output=True, text=True).stdout)
    assert magic["nspam"] + magic["nham"] == result["learned"]
    missing = subprocess.run([sys.executable, "-m", "spamkit", "train", "--spam", str(tmp_path / "spam"),
                              "--db", db], capture_output=True, text=True)
    assert missing.returncode == 2 and "--ham" in missing.stderr


def test_a_message_given_as_both_ends_up_ham(tmp_path: Path,
                                              split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """What `spamkit train --help` says about one message under both --spam and --ham."""
    train, _ = split
    both = next(m for m in train if m.label == "spam")
    with LmdbStore(tmp_path / "db") as store:
        Learner(store).train([SourceItem("s", both.data)], [SourceItem("h", both.data)],
                             train_selector(store))
        assert store.learned_as(message_key(both.data)) is Label.HAM
        totals = store.totals()
        assert (totals.nspam, totals.nham) == (0, 1)
