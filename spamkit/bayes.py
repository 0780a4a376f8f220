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
from typing import Any

import numpy as np
import numpy.typing as npt

from spamkit.bytemodel import BIAS, ModelCache
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
    minimum_prob_strength: float = 0.25  # 0.1 until 0012 (chosen for train's databases)
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
    # with the byte model (docs/decisions/0024), `probability` and `log_odds` are the two
    # models together; these are the parts: Bayes's chi-square alone, the byte model's vote
    chi2_probability: float | None = None
    byte_log_odds: float | None = None


def _row_log_sum_exp(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """ln(sum(exp(row))) of each row, without overflow; -inf entries count as zero."""
    top = values.max(axis=1)
    sums: npt.NDArray[np.float64] = top + np.log(np.exp(values - top[:, None]).sum(axis=1))
    return sums


def chi2_log_tails_many(x2: npt.ArrayLike, dof: npt.ArrayLike
                        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(ln P(X <= x2), ln P(X > x2)) for each x2, X chi-square with the matching even dof.

    Both tails come from their own Poisson series in log space, so each stays accurate
    where the other is within rounding of 1: a message far on the ham side gets a
    probability like 1e-40 rather than exactly 0, and messages keep their order. The
    series of all the values are summed together, row by row of one array: a batch of
    messages costs about what one did (docs/decisions/0009).
    """
    x2 = np.asarray(x2, dtype=np.float64).reshape(-1)
    dof = np.asarray(dof, dtype=np.int64).reshape(-1)
    if (dof <= 0).any() or (dof & 1).any():
        raise ValueError("dof must be a positive even number")
    lower = np.full(len(x2), -math.inf)
    upper = np.zeros(len(x2))
    half_x2 = x2 / 2.0
    live = half_x2 > 0.0
    if not live.any():
        return lower, upper
    m = half_x2[live]
    log_m = np.log(m)
    half = np.minimum(dof[live] // 2, _MAX_DOF_HALF)
    # upper tail = e^-m * sum over i < half of m^i / i!
    index = _INDEX[: int(half.max())]
    terms = -m[:, None] + index[None, :] * log_m[:, None] - _LOG_FACTORIAL[None, : len(index)]
    terms[index[None, :] >= half[:, None]] = -math.inf
    live_upper = np.minimum(0.0, _row_log_sum_exp(terms))
    live_lower = np.empty_like(live_upper)
    small = live_upper < -_LN2  # upper tail below 1/2: the lower is 1 - upper, no cancellation
    live_lower[small] = np.log1p(-np.exp(live_upper[small]))
    if not small.all():
        # lower tail = e^-m * sum over i >= half of m^i / i!; here m is below about half,
        # so the terms shrink at least geometrically and a few dozen suffice
        rest = ~small
        start = half[rest]
        stop = np.minimum(start + 60 + (10 * np.sqrt(start)).astype(np.int64), len(_LOG_FACTORIAL))
        steps = start[:, None] + np.arange(int((stop - start).max()))[None, :]
        inside = steps < stop[:, None]
        steps = np.minimum(steps, len(_LOG_FACTORIAL) - 1)
        terms = -m[rest][:, None] + _INDEX[steps] * log_m[rest][:, None] - _LOG_FACTORIAL[steps]
        terms[~inside] = -math.inf
        live_lower[rest] = np.minimum(0.0, _row_log_sum_exp(terms))
    lower[live] = live_lower
    upper[live] = live_upper
    return lower, upper


def _log_sum_exp(values: npt.NDArray[np.floating[Any]]) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def chi2_log_tails(x2: float, dof: int) -> tuple[float, float]:
    """chi2_log_tails_many for one value, as plain floats: the same series, without the
    batch's masks, which cost one message three times as much (27 against 86 us)."""
    if dof <= 0 or dof % 2:
        raise ValueError("dof must be a positive even number")
    m = x2 / 2.0
    if m <= 0.0:
        return -math.inf, 0.0
    half = min(dof // 2, _MAX_DOF_HALF)
    log_m = math.log(m)
    log_upper = min(0.0, _log_sum_exp(-m + _INDEX[:half] * log_m - _LOG_FACTORIAL[:half]))
    if log_upper < -_LN2:
        return math.log1p(-math.exp(log_upper)), log_upper
    j = slice(half, min(half + 60 + int(10 * math.sqrt(half)), len(_LOG_FACTORIAL)))
    log_lower = min(0.0, _log_sum_exp(-m + _INDEX[j] * log_m - _LOG_FACTORIAL[j]))
    return log_lower, log_upper


def chi2_survival(x2: float, dof: int) -> float:
    """Q(x2, dof) for even dof: the probability a chi-square variable exceeds x2."""
    return math.exp(chi2_log_tails(x2, dof)[1])


def chi2_combine_many(spam_x2: npt.ArrayLike, ham_x2: npt.ArrayLike, counts: npt.ArrayLike
                      ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Fisher/Robinson combining for many messages: (probabilities, log-odds).

    For each message, spam_x2 = -2 sum ln(1-f) and ham_x2 = -2 sum ln f over its `counts`
    token probabilities f. probability = (1 + S - H) / 2 with S = P(chi2 <= spam_x2) and
    H = P(chi2 <= ham_x2), that is (Q_H + P_S) / 2, and 1 - probability is
    (Q_S + P_H) / 2; working with those in log space keeps the log-odds finite.
    A message with no tokens gets 0.5 and log-odds 0.
    """
    spam_x2 = np.asarray(spam_x2, dtype=np.float64)
    ham_x2 = np.asarray(ham_x2, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 1:  # one message (the SMTP filter's case): the scalar series
        one = _chi2_combine_one(float(spam_x2[0]), float(ham_x2[0]), int(counts[0]))
        return np.array([one[0]]), np.array([one[1]])
    probability = np.full(len(counts), 0.5)
    log_odds = np.zeros(len(counts))
    some = counts > 0
    if some.any():
        dof = 2 * counts[some]
        # both sums' tails in one call: half the numpy calls, which are what a batch costs
        lower, upper = chi2_log_tails_many(np.concatenate((spam_x2[some], ham_x2[some])),
                                           np.concatenate((dof, dof)))
        spam_lower, ham_lower = np.split(lower, 2)
        spam_upper, ham_upper = np.split(upper, 2)
        log_spam = np.logaddexp(ham_upper, spam_lower) - _LN2
        log_ham = np.logaddexp(spam_upper, ham_lower) - _LN2
        probability[some] = np.clip(np.where(log_spam < -_LN2, np.exp(log_spam),
                                             1.0 - np.exp(log_ham)), 0.0, 1.0)
        log_odds[some] = log_spam - log_ham
    return probability, log_odds


def _chi2_combine_one(spam_x2: float, ham_x2: float, count: int) -> tuple[float, float]:
    if count == 0:
        return 0.5, 0.0
    spam_lower, spam_upper = chi2_log_tails(spam_x2, 2 * count)
    ham_lower, ham_upper = chi2_log_tails(ham_x2, 2 * count)
    log_spam = float(np.logaddexp(ham_upper, spam_lower)) - _LN2
    log_ham = float(np.logaddexp(spam_upper, ham_lower)) - _LN2
    probability = math.exp(log_spam) if log_spam < -_LN2 else 1.0 - math.exp(log_ham)
    return min(1.0, max(0.0, probability)), log_spam - log_ham


def chi2_combine_log(probabilities: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Fisher/Robinson combining of one message's token probabilities: (probability, log-odds)."""
    p = np.clip(probabilities, 1e-12, 1.0 - 1e-12)
    probability, log_odds = chi2_combine_many(np.array([-2.0 * np.log1p(-p).sum()]),
                                              np.array([-2.0 * np.log(p).sum()]),
                                              np.array([len(p)]))
    return float(probability[0]), float(log_odds[0])


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
    """Scores a message's token hashes against a store, and, given the message itself (or
    its `bytemodel.byte_sample`), adds the byte model's vote when the database has one."""

    def __init__(self, store: TokenStore, params: BayesParams | None = None) -> None:
        self.store = store
        self.params = params or BayesParams()
        self.byte_models = ModelCache()  # (shared with autolearn's learner: Scanner.autolearn)

    def score(self, keys: Sequence[bytes], tokens: Sequence[str] | None = None,
              explain: int = 0, message: bytes | None = None) -> BayesResult:
        """Score token hashes; with `tokens` (same order) and `explain`, name the clues;
        with the `message`'s bytes, the byte model votes too."""
        result = self._judge([self.store.counts(keys)], [keys], [tokens], explain)[0]
        if message is not None:
            self._add_byte_model([result], [message])
        return result

    def score_many(self, key_lists: Sequence[Sequence[bytes]],
                   token_lists: Sequence[Sequence[str] | None] | None = None,
                   explain: int = 0, messages: Sequence[bytes] | None = None) -> list[BayesResult]:
        """`score` for several messages, their tokens read from the store together and
        their probabilities worked out together."""
        if not key_lists:
            return []
        totals = self.store.totals()
        if self._abstains(totals):  # (the first batches of `train`): no lookups to make
            return [self._abstention(totals, keys) for keys in key_lists]
        results = self._judge(self.store.counts_many(key_lists), key_lists,
                              token_lists or [None] * len(key_lists), explain)
        if messages is not None:
            self._add_byte_model(results, messages)
        return results

    def _add_byte_model(self, results: Sequence[BayesResult], messages: Sequence[bytes]) -> None:
        """Add the byte model's log-odds (plus BIAS) to each judged result's, when the
        database has a model that has learned enough of both labels to vote; abstentions
        stay abstentions. The model reads the message only then."""
        if all(result.probability is None for result in results):
            return
        model = self.byte_models.get(self.store)
        if model is None or not model.votes:
            return
        for result, message in zip(results, messages):
            if result.probability is None:
                continue
            vote = model.score(message)
            result.chi2_probability = result.probability
            result.byte_log_odds = vote
            result.log_odds += vote + BIAS
            result.probability = _logistic(result.log_odds)
            result.verdict = three_way(result.probability, self.params)

    def _abstains(self, totals: Totals) -> bool:
        params = self.params
        return totals.nspam < params.min_spam_learned or totals.nham < params.min_ham_learned

    def _abstention(self, totals: Totals, keys: Sequence[bytes]) -> BayesResult:
        params = self.params
        reason = (f"not enough learned: {totals.nspam} spam and {totals.nham} ham, "
                  f"needs {params.min_spam_learned} and {params.min_ham_learned}")
        return BayesResult(None, "unsure", tokens=len(keys), reason=reason)

    def _judge(self, batch: Sequence[TokenCounts], key_lists: Sequence[Sequence[bytes]],
               token_lists: Sequence[Sequence[str] | None], explain: int) -> list[BayesResult]:
        """One result per message; each message's arithmetic as if it were alone, done on
        the whole batch at once (numpy's cost is per call, not per token)."""
        params = self.params
        totals = batch[0].totals  # read in one transaction: the same for all
        if self._abstains(totals):
            return [self._abstention(totals, keys) for keys in key_lists]
        sizes = np.array([len(counts.spam) for counts in batch])
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        probabilities = token_probabilities(np.concatenate([c.spam for c in batch]),
                                            np.concatenate([c.ham for c in batch]), totals, params)
        strength = np.abs(probabilities - 0.5)
        chosen = strength >= params.minimum_prob_strength
        owner = np.repeat(np.arange(len(batch)), sizes)
        for crowded in np.flatnonzero(np.bincount(owner[chosen], minlength=len(batch))
                                      > params.max_discriminators):
            start, end = bounds[crowded], bounds[crowded + 1]  # only the strongest count
            strong = np.flatnonzero(chosen[start:end])
            top = np.argpartition(-strength[start:end][strong], params.max_discriminators - 1)
            chosen[start:end] = False
            chosen[start + strong[top[: params.max_discriminators]]] = True
        p = np.clip(probabilities[chosen], 1e-12, 1.0 - 1e-12)
        used = np.bincount(owner[chosen], minlength=len(batch))
        spam_x2 = -2.0 * np.bincount(owner[chosen], weights=np.log1p(-p), minlength=len(batch))
        ham_x2 = -2.0 * np.bincount(owner[chosen], weights=np.log(p), minlength=len(batch))
        combined, log_odds = chi2_combine_many(spam_x2, ham_x2, used)
        results = []
        for message, (counts, keys, tokens) in enumerate(zip(batch, key_lists, token_lists)):
            probability = float(combined[message])
            result = BayesResult(probability, three_way(probability, params), tokens=len(keys),
                                 known=int(sizes[message]), used=int(used[message]),
                                 log_odds=float(log_odds[message]))
            if explain and tokens is not None:
                mine = slice(bounds[message], bounds[message + 1])
                result.clues = _clues(counts, keys, tokens, probabilities[mine], strength[mine],
                                      chosen[mine], explain)
            results.append(result)
        return results


def _logistic(log_odds: float) -> float:
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(max(log_odds, -745.0))
    return odds / (1.0 + odds)


def _clues(counts: TokenCounts, keys: Sequence[bytes], tokens: Sequence[str],
           probabilities: npt.NDArray[np.float64], strength: npt.NDArray[np.float64],
           chosen: npt.NDArray[np.bool_], explain: int) -> list[Clue]:
    """The `explain` strongest tokens that counted, named."""
    names = dict(zip(keys, tokens))
    known_keys = counts.keys
    ranked = sorted(np.flatnonzero(chosen), key=lambda i: -strength[i])[:explain]
    return [Clue(names.get(known_keys[i], known_keys[i].hex()), float(probabilities[i]),
                 int(counts.spam[i]), int(counts.ham[i])) for i in ranked]
