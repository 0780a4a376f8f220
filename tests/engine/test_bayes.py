"""Chi-square combining: the maths, its symmetry, and abstaining until trained."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier, BayesParams, chi2_combine, chi2_survival, three_way
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore


def test_chi2_survival_known_values() -> None:
    assert math.isclose(chi2_survival(2.0, 2), math.exp(-1.0))
    assert math.isclose(chi2_survival(4.0, 4), 3 * math.exp(-2.0))  # e^-m (1 + m), m = 2
    assert chi2_survival(0.0, 10) == 1.0
    assert chi2_survival(10_000.0, 300) < 1e-300


probabilities = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=300)


@given(probabilities)
def test_combined_probability_is_a_probability(values: list[float]) -> None:
    assert 0.0 <= chi2_combine(np.array(values)) <= 1.0


@given(probabilities)
def test_swapping_ham_and_spam_mirrors_the_score(values: list[float]) -> None:
    p = np.clip(np.array(values), 1e-9, 1 - 1e-9)
    assert math.isclose(chi2_combine(1.0 - p), 1.0 - chi2_combine(p), abs_tol=1e-9)


def test_no_evidence_is_exactly_unsure() -> None:
    assert chi2_combine(np.array([])) == 0.5
    assert three_way(0.5, BayesParams()) == "unsure"
    assert three_way(None, BayesParams()) == "unsure"


def test_abstains_until_200_spam_and_200_ham(tmp_path: Path,
                                              split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    train, test = split
    spam = [SourceItem(m.path, m.data) for m in train if m.label == "spam"][:200]
    ham = [SourceItem(m.path, m.data) for m in train if m.label == "ham"][:200]
    analyzer = Analyzer()
    probe = analyzer.analyze(test[0].data).hashes
    with LmdbStore(tmp_path / "db") as store:
        classifier = BayesClassifier(store)
        learner = Learner(store)
        learner.learn(spam, Label.SPAM)
        learner.learn(ham[:199], Label.HAM)
        result = classifier.score(probe)
        assert result.probability is None and "199 ham" in result.reason
        learner.learn(ham[199:], Label.HAM)
        assert classifier.score(probe).probability is not None


def test_trained_database_separates_the_test_fold(
        trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """The accuracy promise of the standard split: no false positive at the defaults."""
    _, test = split
    analyzer = Analyzer()
    with LmdbStore(trained_db, readonly=True) as store:
        classifier = BayesClassifier(store)
        verdicts = [(m.label, classifier.score(analyzer.analyze(m.data).hashes).verdict) for m in test]
    false_positives = sum(1 for label, verdict in verdicts if label == "ham" and verdict == "spam")
    caught = sum(1 for label, verdict in verdicts if label == "spam" and verdict == "spam")
    spam_total = sum(1 for label, _ in verdicts if label == "spam")
    assert false_positives == 0
    assert caught / spam_total > 0.9  # the benchmark reports the exact figure
