"""Hit rates of rules on labelled mail, and the score they suggest.

A rule's evidence is the base-2 log of how much more often it hits spam than ham, with
half a percent added to each rate so that a rule seen a few times is not trusted too far:

    evidence = log2((S + 0.005) / (H + 0.005))

Its suggested scores are that evidence times a weight, cut to [0, cap] ([-cap, 0] for
rules flagged `nice`): one for use without Bayes (score sets 0 and 1) and a smaller one
with Bayes (sets 2 and 3), where the Bayes bands carry most of the weight. The weights
were chosen by cross-validation on the training folds (docs/decisions/0005-rule-scores.md).
A rule that does not hit spam more often than ham gets 0, which turns it off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from spamkit.analysis import Analyzer
from spamkit.rules import MessageContext, RuleSet

SMOOTHING = 0.005
WEIGHT_WITHOUT_BAYES, CAP_WITHOUT_BAYES = 0.25, 1.5
WEIGHT_WITH_BAYES, CAP_WITH_BAYES = 0.15, 0.9


@dataclass
class RuleStats:
    name: str
    spam_hits: int
    ham_hits: int
    spam_total: int
    ham_total: int
    score: float  # its score now (score set 0)
    nice: bool

    @property
    def spam_rate(self) -> float:
        return self.spam_hits / max(1, self.spam_total)

    @property
    def ham_rate(self) -> float:
        return self.ham_hits / max(1, self.ham_total)

    @property
    def s_over_o(self) -> float:
        """SpamAssassin's S/O: the share of a rule's hits (rates, not counts) that are spam."""
        total = self.spam_rate + self.ham_rate
        return self.spam_rate / total if total else 0.0

    @property
    def evidence(self) -> float:
        return math.log2((self.spam_rate + SMOOTHING) / (self.ham_rate + SMOOTHING))

    def _scaled(self, weight: float, cap: float) -> float:
        value = self.evidence * weight
        if self.nice:
            return round(max(-cap, min(0.0, value)), 2)
        return round(max(0.0, min(cap, value)), 2)

    @property
    def suggested(self) -> float:
        """Suggested score without Bayes (score sets 0 and 1)."""
        return self._scaled(WEIGHT_WITHOUT_BAYES, CAP_WITHOUT_BAYES)

    @property
    def suggested_with_bayes(self) -> float:
        """Suggested score next to Bayes (score sets 2 and 3)."""
        return self._scaled(WEIGHT_WITH_BAYES, CAP_WITH_BAYES)


def rule_stats(rules: RuleSet, messages: Iterable[tuple[bool, bytes]],
               analyzer: Analyzer | None = None) -> list[RuleStats]:
    """Hit counts of every scoring rule over (is_spam, raw) pairs."""
    analyzer = analyzer or Analyzer()
    spam_hits: dict[str, int] = {}
    ham_hits: dict[str, int] = {}
    totals = [0, 0]  # ham, spam
    for is_spam, raw in messages:
        totals[is_spam] += 1
        context = MessageContext(raw, analyzer.analyze(raw).message)
        counts, _ = rules.match_counts(context)
        target = spam_hits if is_spam else ham_hits
        for name in counts:
            target[name] = target.get(name, 0) + 1
    out = []
    for name, rule in rules.rules.items():
        if rule.is_subrule or rule.eval_name == "check_bayes":
            continue
        out.append(RuleStats(name, spam_hits.get(name, 0), ham_hits.get(name, 0), totals[1],
                             totals[0], rule.score(0), "nice" in rule.tflags))
    return out
