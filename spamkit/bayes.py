"""Robinson's per-token probabilities, combined with Fisher's chi-square method.

The method SpamAssassin, bogofilter and SpamBayes share. For each token w,

    p(w) = (spam(w)/nspam) / (spam(w)/nspam + ham(w)/nham)
    f(w) = (s*x + n*p(w)) / (s + n)          n = spam(w) + ham(w)

pulls thin evidence toward x (Robinson). The tokens with |f - 0.5| of at least
`minimum_prob_strength`, at most `max_discriminators` of the strongest, are combined:

    S = 1 - Q(-2 sum ln(1 - f), 2k)     H = 1 - Q(-2 sum ln f, 2k)
    probability = (1 + S - H) / 2

where Q is the chi-square survival function. 0 is surely ham, 1 surely spam, and 0.5
either no evidence or strong evidence both ways: that is what the unsure band catches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from spamkit.store.base import TokenCounts, TokenStore, Totals

_MAX_DOF_HALF = 4096
_LOG_FACTORIAL = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, 2 * _MAX_DOF_HALF + 1)))))
_INDEX = np.arange(len(_LOG_FACTORIAL))
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class BayesParams:
    """Constants of the method; docs/decisions/0003-bayes-constants.md has the figures."""

    unknown_word_strength: float = 0.45  # s
    unknown_word_prob: float = 0.5  # x
    minimum_prob_strength: float = 0.1
    max_discriminators: int = 150
    min_spam_learned: int = 200  # abstain below these (the SME guide's 200/200)
    min_ham_learned: int = 200
    ham_cutoff: float = 0.20  # below: ham
    spam_cutoff: float = 0.90  # at or above: spam; between: unsure


@dataclass(frozen=True)
class Clue:
    token: str
    probability: float
    spam: int
    ham: int


@dataclass
class BayesResult:
    probability: float | None  # None: Bayes abstains (too little learned)
    verdict: str  # "ham", "unsure" or "spam"
    log_odds: float = 0.0  # ln(p / (1 - p)), finite where p rounds to 0 or 1: for ranking
    tokens: int = 0  # distinct tokens in the message
    known: int = 0  # of which the database knows
    used: int = 0  # of which strong enough to count
    clues: list[Clue] = field(default_factory=list)
    reason: str = ""


def _log_sum_exp(values: npt.NDArray[np.float64]) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def chi2_log_tails(x2: float, dof: int) -> tuple[float, float]:
    """(ln P(X <= x2), ln P(X > x2)) for X chi-square with even `dof`.

    Both tails come from their own Poisson series in log space, so each stays accurate
    where the other is within rounding of 1: a message far on the ham side gets a
    probability like 1e-40 rather than exactly 0, and messages keep their order.
    """
    if dof <= 0 or dof % 2:
        raise ValueError("dof must be a positive even number")
    m = x2 / 2.0
    if m <= 0.0:
        return -math.inf, 0.0
    half = min(dof // 2, _MAX_DOF_HALF)
    log_m = math.log(m)
    log_upper = min(0.0, _log_sum_exp(-m + _INDEX[:half] * log_m - _LOG_FACTORIAL[:half]))
    if log_upper < -_LN2:  # upper tail below 1/2: the lower one is 1 - upper, no cancellation
        return math.log1p(-math.exp(log_upper)), log_upper
    # lower tail = e^-m * sum over i >= half of m^i / i!; here m is below about half,
    # so the terms shrink at least geometrically and a few dozen suffice
    j = slice(half, min(half + 60 + int(10 * math.sqrt(half)), len(_LOG_FACTORIAL)))
    log_lower = min(0.0, _log_sum_exp(-m + _INDEX[j] * log_m - _LOG_FACTORIAL[j]))
    return log_lower, log_upper


def chi2_survival(x2: float, dof: int) -> float:
    """Q(x2, dof) for even dof: the probability a chi-square variable exceeds x2."""
    return math.exp(chi2_log_tails(x2, dof)[1])


def chi2_combine_log(probabilities: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Fisher/Robinson combining: (probability, its log-odds), both precise at the extremes.

    probability = (1 + S - H) / 2 with S = P(chi2 <= -2 sum ln(1-f)) and
    H = P(chi2 <= -2 sum ln f), that is (Q_H + P_S) / 2, and 1 - probability is
    (Q_S + P_H) / 2; working with those sums in log space keeps the log-odds finite.
    """
    k = len(probabilities)
    if k == 0:
        return 0.5, 0.0
    p = np.clip(probabilities, 1e-12, 1.0 - 1e-12)
    spam_lower, spam_upper = chi2_log_tails(-2.0 * float(np.log1p(-p).sum()), 2 * k)
    ham_lower, ham_upper = chi2_log_tails(-2.0 * float(np.log(p).sum()), 2 * k)
    log_spam = np.logaddexp(ham_upper, spam_lower) - _LN2
    log_ham = np.logaddexp(spam_upper, ham_lower) - _LN2
    probability = math.exp(log_spam) if log_spam < -_LN2 else 1.0 - math.exp(log_ham)
    return min(1.0, max(0.0, probability)), float(log_spam - log_ham)


def chi2_combine(probabilities: npt.NDArray[np.float64]) -> float:
    """Fisher/Robinson combining of token probabilities; 0.5 when there are none."""
    return chi2_combine_log(probabilities)[0]


def token_probabilities(spam: npt.NDArray[np.float64], ham: npt.NDArray[np.float64],
                        totals: Totals, params: BayesParams) -> npt.NDArray[np.float64]:
    """Robinson's f(w) for arrays of per-token spam and ham counts."""
    nspam, nham = max(totals.nspam, 1), max(totals.nham, 1)
    spam = np.minimum(spam, nspam)
    ham = np.minimum(ham, nham)
    spam_ratio = spam / nspam
    ham_ratio = ham / nham
    denominator = spam_ratio + ham_ratio
    raw = np.full_like(denominator, params.unknown_word_prob)
    np.divide(spam_ratio, denominator, out=raw, where=denominator > 0)  # (no errstate: 4 us)
    n = spam + ham
    s, x = params.unknown_word_strength, params.unknown_word_prob
    return (s * x + n * raw) / (s + n)


def three_way(probability: float | None, params: BayesParams) -> str:
    if probability is None:
        return "unsure"
    if probability >= params.spam_cutoff:
        return "spam"
    if probability < params.ham_cutoff:
        return "ham"
    return "unsure"


class BayesClassifier:
    """Scores a message's token hashes against a store."""

    def __init__(self, store: TokenStore, params: BayesParams | None = None) -> None:
        self.store = store
        self.params = params or BayesParams()

    def score(self, keys: Sequence[bytes], tokens: Sequence[str] | None = None,
              explain: int = 0) -> BayesResult:
        """Score token hashes; with `tokens` (same order) and `explain`, name the clues."""
        return self._judge(self.store.counts(keys), keys, tokens, explain)

    def score_many(self, key_lists: Sequence[Sequence[bytes]],
                   token_lists: Sequence[Sequence[str] | None] | None = None,
                   explain: int = 0) -> list[BayesResult]:
        """`score` for several messages, their tokens read from the store together."""
        counts = self.store.counts_many(key_lists)
        token_lists = token_lists or [None] * len(key_lists)
        return [self._judge(c, keys, tokens, explain)
                for c, keys, tokens in zip(counts, key_lists, token_lists)]

    def _judge(self, counts: TokenCounts, keys: Sequence[bytes], tokens: Sequence[str] | None,
               explain: int) -> BayesResult:
        params = self.params
        totals = counts.totals
        if totals.nspam < params.min_spam_learned or totals.nham < params.min_ham_learned:
            return BayesResult(None, "unsure", tokens=len(keys), reason=(
                f"not enough learned: {totals.nspam} spam and {totals.nham} ham, "
                f"needs {params.min_spam_learned} and {params.min_ham_learned}"))
        probabilities = token_probabilities(counts.spam, counts.ham, totals, params)
        strength = np.abs(probabilities - 0.5)
        strong = np.flatnonzero(strength >= params.minimum_prob_strength)
        if len(strong) > params.max_discriminators:
            top = np.argpartition(-strength[strong], params.max_discriminators - 1)
            strong = strong[top[: params.max_discriminators]]
        probability, log_odds = chi2_combine_log(probabilities[strong])
        result = BayesResult(probability, three_way(probability, params), tokens=len(keys),
                             known=len(counts.spam), used=len(strong), log_odds=log_odds)
        if explain and tokens is not None:
            names = dict(zip(keys, tokens))
            known_keys = counts.keys
            ranked = sorted(strong, key=lambda i: -strength[i])[:explain]
            result.clues = [Clue(names.get(known_keys[i], known_keys[i].hex()),
                                 float(probabilities[i]), int(counts.spam[i]), int(counts.ham[i]))
                            for i in ranked]
        return result
