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

from spamkit.store.base import TokenStore, Totals

_MAX_DOF_HALF = 4096
_LOG_FACTORIAL = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, _MAX_DOF_HALF + 1)))))


@dataclass(frozen=True)
class BayesParams:
    """Constants of the method; docs/decisions/0003-bayes-constants.md has the figures."""

    unknown_word_strength: float = 0.45  # s
    unknown_word_prob: float = 0.5  # x
    minimum_prob_strength: float = 0.1
    max_discriminators: int = 150
    # Tokens are not independent (a mailing list's dozen headers say one thing), which
    # pushes chi-square to its extremes; like bogofilter's ESF, each token counts as
    # this fraction of an independent one.
    effective_size_factor: float = 1.0
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
    tokens: int = 0  # distinct tokens in the message
    known: int = 0  # of which the database knows
    used: int = 0  # of which strong enough to count
    clues: list[Clue] = field(default_factory=list)
    reason: str = ""


def chi2_survival(x2: float, dof: int) -> float:
    """Q(x2, dof) for even dof: the probability a chi-square variable exceeds x2."""
    if dof <= 0 or dof % 2:
        raise ValueError("dof must be a positive even number")
    m = x2 / 2.0
    if m <= 0.0:
        return 1.0
    half = min(dof // 2, _MAX_DOF_HALF)
    i = np.arange(half)
    log_terms = -m + i * math.log(m) - _LOG_FACTORIAL[:half]
    top = float(log_terms.max())
    return min(1.0, math.exp(top) * float(np.exp(log_terms - top).sum()))


def chi2_combine(probabilities: npt.NDArray[np.float64], effective_size_factor: float = 1.0) -> float:
    """Fisher/Robinson combining of token probabilities; 0.5 when there are none."""
    k = len(probabilities)
    if k == 0:
        return 0.5
    p = np.clip(probabilities, 1e-12, 1.0 - 1e-12)
    esf = effective_size_factor
    dof = 2 * max(1, round(k * esf))
    spamminess = 1.0 - chi2_survival(-2.0 * esf * float(np.log1p(-p).sum()), dof)
    hamminess = 1.0 - chi2_survival(-2.0 * esf * float(np.log(p).sum()), dof)
    return (1.0 + spamminess - hamminess) / 2.0


def token_probabilities(spam: npt.NDArray[np.float64], ham: npt.NDArray[np.float64],
                        totals: Totals, params: BayesParams) -> npt.NDArray[np.float64]:
    """Robinson's f(w) for arrays of per-token spam and ham counts."""
    nspam, nham = max(totals.nspam, 1), max(totals.nham, 1)
    spam = np.minimum(spam, nspam)
    ham = np.minimum(ham, nham)
    spam_ratio = spam / nspam
    ham_ratio = ham / nham
    denominator = spam_ratio + ham_ratio
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.where(denominator > 0, spam_ratio / denominator, params.unknown_word_prob)
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
        params = self.params
        totals = self.store.totals()
        if totals.nspam < params.min_spam_learned or totals.nham < params.min_ham_learned:
            return BayesResult(None, "unsure", tokens=len(keys), reason=(
                f"not enough learned: {totals.nspam} spam and {totals.nham} ham, "
                f"needs {params.min_spam_learned} and {params.min_ham_learned}"))
        counts = self.store.counts(keys)
        probabilities = token_probabilities(counts.spam, counts.ham, totals, params)
        strength = np.abs(probabilities - 0.5)
        strong = np.flatnonzero(strength >= params.minimum_prob_strength)
        if len(strong) > params.max_discriminators:
            top = np.argpartition(-strength[strong], params.max_discriminators - 1)
            strong = strong[top[: params.max_discriminators]]
        probability = chi2_combine(probabilities[strong], params.effective_size_factor)
        result = BayesResult(probability, three_way(probability, params), tokens=len(keys),
                             known=len(counts.keys), used=len(strong))
        if explain and tokens is not None:
            names = dict(zip(keys, tokens))
            ranked = sorted(strong, key=lambda i: -strength[i])[:explain]
            result.clues = [Clue(names.get(counts.keys[i], counts.keys[i].hex()),
                                 float(probabilities[i]), int(counts.spam[i]), int(counts.ham[i]))
                            for i in ranked]
        return result
