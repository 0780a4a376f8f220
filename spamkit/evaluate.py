"""How well spamkit would sort an administrator's own mail: k-fold cross-validation of
`spamkit train` and the Bayes verdict on labelled folders (`spamkit evaluate`).

Each message goes to one fold by its message key, so the split depends only on content
and the same mail always splits the same way; a message given twice lands in one fold
and is learned once. For each fold, a throw-away database learns the other folds as
`spamkit train` would (only what it is not yet sure of, in the same content-keyed
order), then scores the fold with the configuration's Bayes constants and cutoffs. The
figures are those the benchmarks give for the SpamAssassin corpus (spamkit.metrics),
pooled over the folds, plus what other spam cutoffs would have done.

Nothing is written to the user's database. Only each message's token keys are kept
between reading and scoring (8 bytes a token), never its bytes.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.errors import SpamkitError
from spamkit.learn import DEFAULT_TRAIN_BATCH, DEFAULT_TRAIN_MARGIN, Learner, train_selector
from spamkit.message import message_key
from spamkit.metrics import Accuracy, accuracy
from spamkit.sources import SourceItem
from spamkit.store import LmdbStore

DEFAULT_FOLDS = 4
# the spam cutoffs the report compares with the configured one
CUTOFFS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
SCORE_BATCH = 256


class TooLittleMail(SpamkitError):
    """Fewer messages of a label than the training folds need for Bayes to judge at all."""

    exit_code = 65  # EX_DATAERR


@dataclass
class FoldResult:
    fold: int
    spam: int
    ham: int
    accuracy: Accuracy
    learned: int  # messages the fold's database learned (train leaves the sure ones out)


@dataclass
class Evaluation:
    folds: list[FoldResult]
    pooled: Accuracy
    spam: int
    ham: int
    duplicates: int  # messages given more than once (counted and scored once)
    failures: list[tuple[str, str]]  # (message, why it could not be read)
    cutoffs: list[tuple[float, int, int]]  # (spam cutoff, false positives, spam missed)
    spam_cutoff: float
    seconds: float = 0.0
    abstained: int = 0  # messages scored while Bayes abstained (none unless min counts are high)
    log_odds: list[float] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, object]:
        def figures(a: Accuracy) -> dict[str, object]:
            return {"false_positives": a.false_positives, "false_negatives": a.false_negatives,
                    "unsure_spam": a.unsure_spam, "unsure_ham": a.unsure_ham,
                    "one_minus_auc_percent": _rounded(a.one_minus_auc_percent, 4),
                    "caught_at_zero_fp_percent": _rounded(a.caught_at_zero_fp_percent, 2)}

        return {"spam": self.spam, "ham": self.ham, "duplicates": self.duplicates,
                "failed": len(self.failures), "spam_cutoff": self.spam_cutoff,
                **figures(self.pooled), "abstained": self.abstained,
                "folds": [{"fold": f.fold, "spam": f.spam, "ham": f.ham, "learned": f.learned,
                           **figures(f.accuracy)} for f in self.folds],
                "cutoffs": [{"cutoff": c, "false_positives": fp, "false_negatives": fn}
                            for c, fp, fn in self.cutoffs],
                "failures": [{"message": name, "reason": why} for name, why in self.failures],
                "seconds": round(self.seconds, 3)}


def _rounded(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


@dataclass
class _Message:
    key: bytes
    hashes: list[bytes]
    spam: bool
    name: str


def evaluate(spam: Iterable[SourceItem], ham: Iterable[SourceItem], params: BayesParams,
             analyzer: Analyzer | None = None, folds: int = DEFAULT_FOLDS,
             margin: float = DEFAULT_TRAIN_MARGIN,
             progress: Callable[[int], None] | None = None) -> Evaluation:
    """Cross-validate `train` and Bayes on these messages (see the module's docstring)."""
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    started = time.perf_counter()
    analyzer = analyzer or Analyzer()
    messages, failures, duplicates = _read(spam, ham, analyzer, progress)
    fold_of = np.array([int.from_bytes(m.key[-8:], "big") % folds for m in messages], dtype=np.int64)
    labels = np.array([m.spam for m in messages], dtype=bool)
    _check_enough(labels, fold_of, folds, params)
    scores = np.zeros(len(messages))
    verdicts = [""] * len(messages)
    results: list[FoldResult] = []
    abstained = 0
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        with tempfile.TemporaryDirectory(prefix="spamkit-evaluate-") as folder, \
                LmdbStore(Path(folder) / "db", sync=False) as store:
            learning = np.flatnonzero(fold_of != fold)
            items = {label: [_item(messages[i]) for i in learning if labels[i] == label]
                     for label in (True, False)}
            summary = Learner(store, analyzer, batch_size=DEFAULT_TRAIN_BATCH).train(
                items[True], items[False],
                train_selector(store, params.min_spam_learned, params.min_ham_learned), margin)
            classifier = BayesClassifier(store, params)
            for start in range(0, len(held_out), SCORE_BATCH):
                chunk = held_out[start:start + SCORE_BATCH]
                for index, result in zip(chunk, classifier.score_many(
                        [messages[i].hashes for i in chunk])):
                    scores[index] = result.log_odds
                    verdicts[index] = result.verdict
                    abstained += result.probability is None
                if progress is not None:
                    progress(len(chunk))
        results.append(FoldResult(fold + 1, int(labels[held_out].sum()),
                                  int((~labels[held_out]).sum()),
                                  accuracy(labels[held_out], scores[held_out],
                                           [verdicts[i] for i in held_out]),
                                  summary.learned + summary.relearned))
    return Evaluation(results, accuracy(labels, scores, verdicts), int(labels.sum()),
                      int((~labels).sum()), duplicates, failures,
                      _at_cutoffs(labels, scores, params.spam_cutoff), params.spam_cutoff,
                      time.perf_counter() - started, abstained, scores.tolist())


def _read(spam: Iterable[SourceItem], ham: Iterable[SourceItem], analyzer: Analyzer,
          progress: Callable[[int], None] | None
          ) -> tuple[list[_Message], list[tuple[str, str]], int]:
    """Every readable message, tokenized, once: a message given again (with either label)
    is a duplicate, and the first label it was given stands."""
    messages: list[_Message] = []
    failures: list[tuple[str, str]] = []
    seen: set[bytes] = set()
    duplicates = 0
    for is_spam, items in ((True, spam), (False, ham)):
        for item in items:
            if progress is not None:
                progress(1)
            if item.data is None:
                failures.append((item.name, item.error or "unreadable"))
                continue
            key = message_key(item.data)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            messages.append(_Message(key, analyzer.analyze(item.data).hashes, is_spam, item.name))
    return messages, failures, duplicates


def _item(message: _Message) -> SourceItem:
    """What Learner.train takes, its key and tokens worked out already (no bytes)."""
    return SourceItem(message.name, b"", token_keys=message.hashes, key=message.key)


def _check_enough(labels: np.ndarray, fold_of: np.ndarray, folds: int, params: BayesParams) -> None:
    """Each fold's database must learn enough of each label for Bayes to judge (it
    abstains below BayesMinSpam and BayesMinHam); say how much mail that takes."""
    for fold in range(folds):
        learning = fold_of != fold
        for name, have, need in (
                ("spam", int((labels & learning).sum()), params.min_spam_learned),
                ("ham", int((~labels & learning).sum()), params.min_ham_learned)):
            if have < need:
                total = int(labels.sum()) if name == "spam" else int((~labels).sum())
                wanted = math.ceil(need * folds / (folds - 1))
                raise TooLittleMail(
                    f"{total} {name} messages are too few to evaluate with {folds} folds: each "
                    f"fold's database learns the others' ({have} {name} for fold {fold + 1}), and "
                    f"Bayes judges only once it has learned {need} (BayesMin"
                    f"{'Spam' if name == 'spam' else 'Ham'}); give about {wanted} or more")


def _at_cutoffs(labels: np.ndarray, scores: np.ndarray, configured: float
                ) -> list[tuple[float, int, int]]:
    """(cutoff, false positives, spam missed) at each spam cutoff of CUTOFFS and the
    configured one; unsure counts as missed, as in the pooled figures."""
    rows = []
    for cutoff in sorted({*CUTOFFS, configured}):
        threshold = math.log(cutoff / (1.0 - cutoff))
        rows.append((cutoff, int((scores[~labels] >= threshold).sum()),
                     int((scores[labels] < threshold).sum())))
    return rows
