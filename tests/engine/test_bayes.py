"""Chi-square combining: the maths, its symmetry, and abstaining until trained."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.analysis import Analyzer
from spamkit.bayes import (
    BayesClassifier,
    BayesParams,
    chi2_combine,
    chi2_log_tails,
    chi2_log_tails_many,
    chi2_survival,
    three_way,
)
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


def test_scoring_together_gives_what_scoring_alone_gives(
        trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """`spamkit check` scores batches; a message's result must not depend on its company."""
    _, test = split
    analyzer = Analyzer()
    analyses = [analyzer.analyze(m.data, with_tokens=True) for m in test[::3]]
    with LmdbStore(trained_db, readonly=True) as store:
        classifier = BayesClassifier(store)
        alone = [classifier.score(a.hashes, a.tokens, explain=5) for a in analyses]
        together = classifier.score_many([a.hashes for a in analyses], [a.tokens for a in analyses],
                                         explain=5)
        assert classifier.score_many([]) == []
        empty = classifier.score([])
    assert any(r.used == BayesParams().max_discriminators for r in alone)  # the capped path ran
    assert empty.probability == 0.5 and empty.used == 0
    for one, many in zip(alone, together):
        assert (one.verdict, one.tokens, one.known, one.used) == (many.verdict, many.tokens, many.known, many.used)
        assert math.isclose(one.probability or 0, many.probability or 0, rel_tol=1e-9, abs_tol=1e-300)
        assert math.isclose(one.log_odds, many.log_odds, rel_tol=1e-9, abs_tol=1e-9)
        assert [c.token for c in one.clues] == [c.token for c in many.clues]


@given(st.floats(0.0, 5000.0), st.integers(1, 600))
def test_the_two_tails_add_up_to_one(x2: float, half: int) -> None:
    lower, upper = chi2_log_tails(x2, 2 * half)
    assert lower <= 0.0 and upper <= 0.0
    assert math.isclose(math.exp(lower) + math.exp(upper), 1.0, rel_tol=1e-9)


@given(st.lists(st.tuples(st.floats(0.0, 5000.0), st.integers(1, 600)), min_size=2, max_size=20))
def test_the_batched_series_gives_the_single_ones(pairs: list[tuple[float, int]]) -> None:
    # a batch (spamkit check) and one message (the SMTP filter) take two forms of one series
    lower, upper = chi2_log_tails_many([x2 for x2, _ in pairs], [2 * half for _, half in pairs])
    for (x2, half), many_lower, many_upper in zip(pairs, lower, upper):
        one_lower, one_upper = chi2_log_tails(x2, 2 * half)
        assert math.isclose(many_upper, one_upper, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(many_lower, one_lower, rel_tol=1e-12, abs_tol=1e-12)
