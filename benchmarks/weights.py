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
from pathlib import Path

import numpy as np

from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of
from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier
from spamkit.learn import Learner
from spamkit.rules import MessageContext, load_rules
from spamkit.rules.stats import rule_stats
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore

WEIGHTS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.50)
BAND_EDGES = (0.0, 0.01, 0.05, 0.20, 0.40, 0.60, 0.80, 0.95, 0.99)


def main() -> None:
    messages = [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) != TEST_FOLD]
    labels = np.array([m.label == "spam" for m in messages])
    folds = np.array([fold_of(m.path) for m in messages])
    rules = load_rules()
    analyzer = Analyzer()
    parsed = [analyzer.analyze(m.data) for m in messages]
    names = [n for n, r in rules.rules.items() if not r.is_subrule and not r.eval_name.startswith("check_")]
    hits = np.zeros((len(messages), len(names)), dtype=bool)
    column = {name: i for i, name in enumerate(names)}
    for row, (message, analysis) in enumerate(zip(messages, parsed)):
        counts, _ = rules.match_counts(MessageContext(message.data, analysis.message))
        for name in counts:
            if name in column:
                hits[row, column[name]] = True
    evidence = {s.name: s.evidence for s in rule_stats(rules, [(bool(y), m.data) for y, m in zip(labels, messages)])}
    strength = np.array([evidence.get(name, 0.0) for name in names])
    probability = np.zeros(len(messages))
    for fold in (1, 2, 3, 4):
        with tempfile.TemporaryDirectory() as folder, LmdbStore(Path(folder) / "db", sync=False) as store:
            learner = Learner(store)
            for label in (Label.SPAM, Label.HAM):
                learner.learn([SourceItem(m.path, m.data) for m, f in zip(messages, folds)
                               if f != fold and m.label == label.value], label)
            classifier = BayesClassifier(store)
            for row in np.flatnonzero(folds == fold):
                probability[row] = classifier.score(parsed[row].hashes).probability or 0.5
    band_scores = [rules.rules[n].score(2) for n in
                   ("BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40", "BAYES_50", "BAYES_60",
                    "BAYES_80", "BAYES_95", "BAYES_99")]
    bands = np.array(band_scores)[np.searchsorted(BAND_EDGES, probability, side="right") - 1]
    bands += np.where(probability >= 0.999, rules.rules["BAYES_999"].score(2), 0.0)
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
