"""Accuracy figures from labels and scores, the same for every tool (the benchmarks
rank spamkit, bogofilter and spamprobe with them; `spamkit evaluate` ranks the user's mail)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Accuracy:
    false_positives: int  # ham called spam at the tool's own threshold
    false_negatives: int  # spam not called spam (unsure counts here, as for bogofilter)
    unsure_spam: int
    unsure_ham: int
    one_minus_auc_percent: float
    caught_at_zero_fp_percent: float  # spam scored above every ham


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: the chance a random spam outscores a random ham (ties half)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    spam, ham = s[y], s[~y]
    if not len(spam) or not len(ham):
        return float("nan")
    ham_sorted = np.sort(ham)
    below = np.searchsorted(ham_sorted, spam, side="left")
    equal = np.searchsorted(ham_sorted, spam, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(spam) * len(ham)))


def caught_at_zero_fp(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if not y.any():
        return float("nan")
    worst_ham = s[~y].max() if (~y).any() else -np.inf
    return float((s[y] > worst_ham).mean())


def accuracy(labels: npt.ArrayLike, scores: npt.ArrayLike, verdicts: Sequence[str]) -> Accuracy:
    y = np.asarray(labels, dtype=bool)
    v = np.asarray(verdicts)
    return Accuracy(
        false_positives=int(((v == "spam") & ~y).sum()),
        false_negatives=int(((v != "spam") & y).sum()),
        unsure_spam=int(((v == "unsure") & y).sum()),
        unsure_ham=int(((v == "unsure") & ~y).sum()),
        one_minus_auc_percent=100.0 * (1.0 - auc(y, scores)),
        caught_at_zero_fp_percent=100.0 * caught_at_zero_fp(y, scores),
    )
