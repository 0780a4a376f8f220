"""`python -m benchmarks.weights`: how much the built-in rules should weigh, by cross-validation.

On the training folds (1-4) only: every message's rule hits, and its Bayes probability
from a store trained on the other three folds. Each rule's evidence is
log2((S + 0.005) / (H + 0.005)) over the training folds (spamkit.rules.stats); a weight w
turns it into a score capped at 6w. The table gives false positives and spam caught at
the SME guide's TagLevel 4 with Bayes (the bands of 20_bayes.cf) and at the default
level 5 without Bayes. docs/decisions/0005-rule-scores.md cites it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from corpora import CorpusMessage
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of
from spamkit.analysis import Analysis, Analyzer
from spamkit.bayes import BayesClassifier
from spamkit.learn import Learner, train_selector
from spamkit.rules import MessageContext, RuleSet, load_rules
from spamkit.rules.stats import rule_stats
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore

WEIGHTS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.50)
BAND_EDGES = (0.0, 0.01, 0.05, 0.20, 0.40, 0.60, 0.80, 0.95, 0.99)


BAND_NAMES = ("BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40", "BAYES_50", "BAYES_60",
              "BAYES_80", "BAYES_95", "BAYES_99")


def training_messages() -> list[CorpusMessage]:
    return [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) != TEST_FOLD]


def rule_evidence(rules: RuleSet, messages: list[CorpusMessage], parsed: list[Analysis]
                  ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Which built-in rules each message hits, and each rule's evidence over all of them."""
    names = [n for n, r in rules.rules.items() if not r.is_subrule and not r.eval_name.startswith("check_")]
    hits = np.zeros((len(messages), len(names)), dtype=bool)
    column = {name: i for i, name in enumerate(names)}
    for row, (message, analysis) in enumerate(zip(messages, parsed)):
        counts, _ = rules.match_counts(MessageContext(message.data, analysis.message))
        for name in counts:
            if name in column:
                hits[row, column[name]] = True
    evidence = {s.name: s.evidence for s in rule_stats(rules, [(m.label == "spam", m.data) for m in messages])}
    return hits, np.array([evidence.get(name, 0.0) for name in names])


def out_of_fold_bayes(messages: list[CorpusMessage], parsed: list[Analysis], fill: str
                      ) -> npt.NDArray[np.float64]:
    """Each message's Bayes probability from a store filled from the other three folds:
    by `learn` of every message (fill "learn", Bayes alone: a database filled in two bulk
    runs has no byte model vote, 0024) or by `spamkit train` (fill "train", the main job:
    Bayes and the byte model together)."""
    folds = np.array([fold_of(m.path) for m in messages])
    probability = np.zeros(len(messages))
    for fold in (1, 2, 3, 4):
        rows, scores = _scored_by(messages, parsed, fill, learned=folds != fold, scored=folds == fold)
        probability[rows] = scores
    return probability


def small_database_bayes(messages: list[CorpusMessage], parsed: list[Analysis], fill: str
                         ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """(rows, probabilities): each training fold alone fills a store (`train` learns
    242-303 spam and 517-565 ham of a fold, `learn` all its 341-429 and 808-836: a
    database just past Bayes's 200 and 200) that scores the other three folds, so each
    message is scored three times. What a new installation meets in its first weeks."""
    folds = np.array([fold_of(m.path) for m in messages])
    rows, probability = [], []
    for fold in (1, 2, 3, 4):
        scored_rows, scores = _scored_by(messages, parsed, fill, learned=folds == fold, scored=folds != fold)
        rows.append(scored_rows)
        probability.append(scores)
    return np.concatenate(rows), np.concatenate(probability)


def _scored_by(messages: list[CorpusMessage], parsed: list[Analysis], fill: str,
               learned: npt.NDArray[np.bool_], scored: npt.NDArray[np.bool_]
               ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The rows of `scored` and their probabilities (0.5 where Bayes abstains) from a store
    filled, as `fill` says, with the messages of `learned`."""
    rows = np.flatnonzero(scored)
    probability = np.zeros(len(rows))
    with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db", sync=False) as store:
        learner = Learner(store)
        items = {label: [SourceItem(m.path, m.data) for m, taken in zip(messages, learned)
                         if taken and m.label == label.value] for label in (Label.SPAM, Label.HAM)}
        if fill == "train":
            learner.train(items[Label.SPAM], items[Label.HAM], train_selector(store))
        else:
            for label in (Label.SPAM, Label.HAM):
                learner.learn(items[label], label)
        classifier = BayesClassifier(store)
        for index, row in enumerate(rows):
            result = classifier.score(parsed[row].hashes, message=messages[row].data)
            probability[index] = 0.5 if result.probability is None else result.probability
    return rows, probability


def band_points(probability: npt.NDArray[np.float64], scores: Sequence[float], top: float
                ) -> npt.NDArray[np.float64]:
    """What the bands add to each message: `scores` in BAND_NAMES order, `top` for BAYES_999."""
    points = np.array(scores)[np.searchsorted(BAND_EDGES, probability, side="right") - 1]
    return points + np.where(probability >= 0.999, top, 0.0)


def main() -> None:
    messages = training_messages()
    labels = np.array([m.label == "spam" for m in messages])
    rules = load_rules()
    analyzer = Analyzer()
    parsed = [analyzer.analyze(m.data) for m in messages]
    hits, strength = rule_evidence(rules, messages, parsed)
    probability = out_of_fold_bayes(messages, parsed, "learn")
    bands = band_points(probability, [rules.rules[n].score(2) for n in BAND_NAMES], rules.rules["BAYES_999"].score(2))
    bayes_alone = probability >= 0.9
    print(f"{len(messages)} training messages ({labels.sum()} spam), Bayes scored out of fold")
    print(f"Bayes verdict alone: {int((bayes_alone & ~labels).sum())} false positives, "
          f"{int((bayes_alone & labels).sum())} spam caught")
    print("weight  with Bayes at 4: FP caught   without Bayes at 5: FP caught")
    for weight in WEIGHTS:
        scores = np.clip(strength * weight, 0.0, 6 * weight)
        rule_points = hits.astype(float) @ scores
        with_bayes = rule_points + bands >= 4.0
        without = rule_points >= 5.0
        print(f"{weight:6.2f}  {int((with_bayes & ~labels).sum()):20d} {int((with_bayes & labels).sum()):6d}"
              f"   {int((without & ~labels).sum()):20d} {int((without & labels).sum()):6d}")


if __name__ == "__main__":
    main()
