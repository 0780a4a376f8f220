"""How well spamkit would sort an administrator's own mail: k-fold cross-validation of
`spamkit train` and the Bayes verdict on labelled folders (`spamkit evaluate`).

Each message goes to one fold by its message key, so the split depends only on content
and the same mail always splits the same way; a message given twice lands in one fold
and is learned once. For each fold, a throw-away database learns the other folds as
`spamkit train` would (only what it is not yet sure of, in the same content-keyed
order), then scores the fold with the configuration's Bayes constants and cutoffs. The
figures are those the benchmarks give for the SpamAssassin corpus (spamkit.metrics),
pooled over the folds, plus what other spam cutoffs would have done.

`replay` (`spamkit evaluate --replay`) measures the other thing an administrator asks:
starting from an empty database, with every mistake corrected, how many mistakes would
users have seen, and how soon does it settle? The mail is taken in the order it arrived
(the topmost Received header's date, else the Date header), each message scored with
what the messages before it taught, then learned unless the database was already sure
of it (`train`'s rule, one message at a time): the method of TREC's spam track. With
`corrections` it learns instead what SME's users would move (the misfiled, as the whole
verdict filed them) and what autolearn picks.

With a `judge` (`spamkit evaluate --verdict`), each fold is also scored the way
`spamkit check` decides: the rules, the Bayes bands and the lists at the configured
TagLevel and RejectLevel, the figures an administrator's users would see.

Nothing is written to the user's database. Only each message's token keys are kept
between reading and scoring (8 bytes a key), and its bytes only for a judge, whose
rules read them.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.bytemodel import byte_sample
from spamkit.errors import TooLittleMail
from spamkit.learn import DEFAULT_TRAIN_BATCH, DEFAULT_TRAIN_MARGIN, Learner, train_selector
from spamkit.message import ParsedMessage, message_key
from spamkit.message.dates import date_timestamp, received_timestamp
from spamkit.metrics import Accuracy, accuracy
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore, TokenStore
from spamkit.store.base import PackedKeys, pack_keys

if TYPE_CHECKING:
    from spamkit.verdict import Scanner

DEFAULT_FOLDS = 4
# the spam cutoffs the report compares with the configured one
CUTOFFS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
SCORE_BATCH = 256


@dataclass
class FoldResult:
    fold: int
    spam: int
    ham: int
    accuracy: Accuracy
    learned: int  # messages the fold's database learned (train leaves the sure ones out)


@dataclass
class VerdictFigures:
    """The whole verdict's errors (`spamkit check`'s decision), pooled over the folds."""

    false_positives: int  # ham decided spam or reject
    false_negatives: int  # spam decided ham
    rejected_ham: int  # of the false positives, refused outright at RejectLevel
    rejected_spam: int

    def as_json(self) -> dict[str, int]:
        return {"false_positives": self.false_positives, "false_negatives": self.false_negatives,
                "rejected_ham": self.rejected_ham, "rejected_spam": self.rejected_spam}


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
    verdict: VerdictFigures | None = None  # with a judge: the whole verdict's errors

    def as_json(self) -> dict[str, object]:
        return {"mode": "cross-validation", "spam": self.spam, "ham": self.ham,
                "duplicates": self.duplicates,
                "failed": len(self.failures), "spam_cutoff": self.spam_cutoff,
                **_figures(self.pooled), "abstained": self.abstained,
                "folds": [{"fold": f.fold, "spam": f.spam, "ham": f.ham, "learned": f.learned,
                           **_figures(f.accuracy)} for f in self.folds],
                "cutoffs": [{"cutoff": c, "false_positives": fp, "false_negatives": fn}
                            for c, fp, fn in self.cutoffs],
                "failures": [{"message": name, "reason": why} for name, why in self.failures],
                "verdict": None if self.verdict is None else self.verdict.as_json(),
                "seconds": round(self.seconds, 3)}


def _figures(a: Accuracy) -> dict[str, object]:
    """An Accuracy's fields as `--json` names them."""
    return {"false_positives": a.false_positives, "false_negatives": a.false_negatives,
            "unsure_spam": a.unsure_spam, "unsure_ham": a.unsure_ham,
            "one_minus_auc_percent": _rounded(a.one_minus_auc_percent, 4),
            "caught_at_zero_fp_percent": _rounded(a.caught_at_zero_fp_percent, 2)}


def _rounded(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


@dataclass
class _Message:
    key: bytes
    packed: bytes  # its token keys, packed (8 bytes a key, against ~41 in a list)
    spam: bool
    name: str
    raw: bytes | None = None  # kept only for a judge
    arrived: float | None = None  # Unix time it reached the mailbox, when a header says
    sample: bytes = b""  # what the byte model reads of it (at most 3,000 bytes)

    @property
    def hashes(self) -> PackedKeys:
        return PackedKeys(self.packed)


def evaluate(spam: Iterable[SourceItem], ham: Iterable[SourceItem], params: BayesParams,
             analyzer: Analyzer | None = None, folds: int = DEFAULT_FOLDS,
             margin: float = DEFAULT_TRAIN_MARGIN,
             progress: Callable[[int], None] | None = None,
             judge: Callable[[TokenStore], Scanner] | None = None) -> Evaluation:
    """Cross-validate `train` and Bayes on these messages (see the module's docstring);
    `judge` makes the scanner whose decisions are counted too, for a fold's database."""
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    started = time.perf_counter()
    analyzer = analyzer or Analyzer()
    messages, failures, duplicates = _read(spam, ham, analyzer, progress, keep_bytes=judge is not None)
    fold_of = np.array([int.from_bytes(m.key[-8:], "big") % folds for m in messages], dtype=np.int64)
    labels = np.array([m.spam for m in messages], dtype=bool)
    _check_enough(labels, fold_of, folds, params, failures)
    scores = np.zeros(len(messages))
    verdicts = [""] * len(messages)
    decisions = [""] * len(messages)
    results: list[FoldResult] = []
    abstained = 0
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        with tempfile.TemporaryDirectory(prefix="spamkit-evaluate-") as folder, \
                LmdbStore(Path(folder) / "db", sync=False) as store:
            learning = np.flatnonzero(fold_of != fold)
            # (generators: train packs each message's keys as it reads it)
            summary = Learner(store, analyzer, batch_size=DEFAULT_TRAIN_BATCH).train(
                (_item(messages[i]) for i in learning if labels[i]),
                (_item(messages[i]) for i in learning if not labels[i]),
                train_selector(store, params.min_spam_learned, params.min_ham_learned), margin)
            classifier = BayesClassifier(store, params)
            scanner = judge(store) if judge is not None else None
            for start in range(0, len(held_out), SCORE_BATCH):
                chunk = held_out[start:start + SCORE_BATCH]
                if scanner is None:
                    bayes = classifier.score_many([messages[i].hashes for i in chunk],
                                                  messages=[messages[i].sample for i in chunk])
                else:  # the same Bayes results, with the rules and lists around them
                    judged = scanner.scan_many([messages[i].raw or b"" for i in chunk])
                    bayes = [v.bayes or classifier.score(messages[i].hashes, message=messages[i].sample)
                             for i, v in zip(chunk, judged)]
                    for index, verdict in zip(chunk, judged):
                        decisions[index] = verdict.decision
                for index, result in zip(chunk, bayes):
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
                      time.perf_counter() - started, abstained, scores.tolist(),
                      _verdict_figures(labels, decisions) if judge is not None else None)


def _verdict_figures(labels: np.ndarray, decisions: list[str]) -> VerdictFigures:
    decided = np.asarray(decisions)
    return VerdictFigures(
        false_positives=int((~labels & (decided != "ham")).sum()),
        false_negatives=int((labels & (decided == "ham")).sum()),
        rejected_ham=int((~labels & (decided == "reject")).sum()),
        rejected_spam=int((labels & (decided == "reject")).sum()))


def _read(spam: Iterable[SourceItem], ham: Iterable[SourceItem], analyzer: Analyzer,
          progress: Callable[[int], None] | None, keep_bytes: bool = False
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
            analysis = analyzer.analyze(item.data)
            messages.append(_Message(key, pack_keys(analysis.hashes), is_spam, item.name,
                                     item.data if keep_bytes else None, arrival_time(analysis.message),
                                     byte_sample(item.data)))
    return messages, failures, duplicates


def arrival_time(message: ParsedMessage) -> float | None:
    """When the message reached its mailbox: the date of the topmost Received header that
    carries one (the last hop, ours), else its Date header; None when neither reads."""
    for value in message.header_values("received"):
        if (stamp := received_timestamp(value)) is not None:
            return stamp
    date = message.header("date")
    return date_timestamp(date) if date else None


def _item(message: _Message) -> SourceItem:
    """What Learner.train takes, its key and tokens worked out already (no bytes)."""
    return SourceItem(message.name, b"", token_keys=message.hashes, key=message.key,
                      byte_sample=message.sample)


def _check_enough(labels: np.ndarray, fold_of: np.ndarray, folds: int, params: BayesParams,
                  failures: list[tuple[str, str]]) -> None:
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
                    f"{'Spam' if name == 'spam' else 'Ham'}); give about {wanted} or more"
                    + _unreadable(failures))


def _unreadable(failures: list[tuple[str, str]]) -> str:
    """What could not be read, for an error that may be its consequence."""
    if not failures:
        return ""
    name, why = failures[0]
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    return f" ({name} could not be read: {why}{more})"


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


REPLAY_SEGMENTS = 10


@dataclass
class Segment:
    """One tenth of the replayed stream, in arrival order."""

    first: float | None  # arrival times of its first and last dated message
    last: float | None
    spam: int
    ham: int
    false_positives: int
    false_negatives: int  # unsure counted, as everywhere
    abstained: int  # scored while Bayes still abstained (too little learned)
    # with a judge: what the users saw, the whole verdict's ham marked spam and spam let through
    verdict_false_positives: int | None = None
    verdict_false_negatives: int | None = None

    def as_json(self) -> dict[str, object]:
        return {"first": _iso(self.first), "last": _iso(self.last), "spam": self.spam,
                "ham": self.ham, "false_positives": self.false_positives,
                "false_negatives": self.false_negatives, "abstained": self.abstained,
                "verdict_false_positives": self.verdict_false_positives,
                "verdict_false_negatives": self.verdict_false_negatives}


@dataclass
class Replay:
    pooled: Accuracy
    spam: int
    ham: int
    duplicates: int
    failures: list[tuple[str, str]]
    undated: int  # messages with no readable date: replayed last, in content order
    abstained: int
    learned: int
    segments: list[Segment]
    spam_cutoff: float
    seconds: float = 0.0
    verdict: VerdictFigures | None = None
    judged: Accuracy | None = None  # the same figures over the messages Bayes judged
    judged_spam: int = 0
    judged_ham: int = 0
    learning: str = "train"  # or "corrections": only what users would move, plus autolearn
    autolearned: int = 0

    def as_json(self) -> dict[str, object]:
        judged = None if self.judged is None else {
            "spam": self.judged_spam, "ham": self.judged_ham, **_figures(self.judged)}
        return {"mode": "replay", "spam": self.spam, "ham": self.ham,
                "duplicates": self.duplicates, "failed": len(self.failures),
                "undated": self.undated, "spam_cutoff": self.spam_cutoff,
                **_figures(self.pooled), "abstained": self.abstained,
                "learned": self.learned, "judged": judged, "learning": self.learning,
                "autolearned": self.autolearned,
                "segments": [segment.as_json() for segment in self.segments],
                "failures": [{"message": name, "reason": why} for name, why in self.failures],
                "verdict": None if self.verdict is None else self.verdict.as_json(),
                "seconds": round(self.seconds, 3)}


def replay(spam: Iterable[SourceItem], ham: Iterable[SourceItem], params: BayesParams,
           analyzer: Analyzer | None = None, margin: float = DEFAULT_TRAIN_MARGIN,
           progress: Callable[[int], None] | None = None,
           judge: Callable[[TokenStore], Scanner] | None = None,
           corrections: bool = False) -> Replay:
    """Replay the mail in arrival order into an empty database (see the module's docstring).

    With `corrections` (and a judge: users see the whole verdict) a message is learned
    only when its users would move it, as on SME: spam the verdict let through to the
    Inbox goes to LearnAsSpam, ham it put in junkmail to LearnAsHam (ham refused at
    RejectLevel never reaches anyone to move). Everything else is left to autolearn, as
    the configuration has it: it is what teaches the ham users never move.
    """
    if corrections and judge is None:
        raise ValueError("corrections are what users do with the whole verdict: give a judge")
    started = time.perf_counter()
    analyzer = analyzer or Analyzer()
    messages, failures, duplicates = _read(spam, ham, analyzer, progress, keep_bytes=judge is not None)
    _refuse_one_label(messages, failures)
    messages.sort(key=lambda m: (m.arrived is None, m.arrived or 0.0, m.key))
    labels = np.array([m.spam for m in messages], dtype=bool)
    scores = np.zeros(len(messages))
    verdicts = [""] * len(messages)
    decisions = [""] * len(messages)
    waiting = np.zeros(len(messages), dtype=bool)  # Bayes abstained
    sure = math.log(margin / (1.0 - margin))
    learned = autolearned = 0
    with tempfile.TemporaryDirectory(prefix="spamkit-replay-") as folder, \
            LmdbStore(Path(folder) / "db", sync=False) as store:
        classifier = BayesClassifier(store, params)
        scanner = judge(store) if judge is not None else None
        learner = Learner(store, analyzer, batch_size=1)
        for index, message in enumerate(messages):
            hashes = message.hashes
            if scanner is None:
                result = classifier.score(hashes, message=message.sample)
            else:
                verdict = scanner.scan(message.raw or b"")
                decisions[index] = verdict.decision
                result = verdict.bayes or classifier.score(hashes, message=message.sample)
            scores[index], verdicts[index] = result.log_odds, result.verdict
            waiting[index] = result.probability is None
            if corrections:
                moved = (message.spam and decisions[index] == "ham") or \
                    (not message.spam and decisions[index] == "spam")
            else:
                on_its_side = result.log_odds if message.spam else -result.log_odds
                moved = result.probability is None or on_its_side < sure
            if moved:
                learner.learn([_item(message)], Label.SPAM if message.spam else Label.HAM)
                learned += 1
            elif corrections and scanner is not None:
                learned_now = scanner.autolearn(message.raw or b"", verdict, message.name)
                autolearned += learned_now == "learned"
            if progress is not None:
                progress(1)
    return Replay(accuracy(labels, scores, verdicts), int(labels.sum()), int((~labels).sum()),
                  duplicates, failures, sum(m.arrived is None for m in messages),
                  int(waiting.sum()), learned,
                  _segments(messages, labels, verdicts, waiting,
                            decisions if judge is not None else None),
                  params.spam_cutoff, time.perf_counter() - started,
                  _verdict_figures(labels, decisions) if judge is not None else None,
                  *_judged(labels, scores, verdicts, waiting),
                  "corrections" if corrections else "train", autolearned)


def _refuse_one_label(messages: list[_Message], failures: list[tuple[str, str]]) -> None:
    """A replay of one label alone has no errors of the other kind and no ranking to
    measure (1-AUC and the spam caught at no false positive compare spam with ham)."""
    spam = sum(m.spam for m in messages)
    for name, count in (("spam", spam), ("ham", len(messages) - spam)):
        if not count:
            raise TooLittleMail(f"no {name} could be read: a replay measures how spam and ham "
                                f"are told apart, so it needs some of each" + _unreadable(failures))


def _judged(labels: np.ndarray, scores: np.ndarray, verdicts: list[str], waiting: np.ndarray
            ) -> tuple[Accuracy | None, int, int]:
    """The figures over the messages scored once Bayes judged (None if it never did)."""
    judging = ~waiting
    if not judging.any():
        return None, 0, 0
    return (accuracy(labels[judging], scores[judging], [v for v, j in zip(verdicts, judging) if j]),
            int(labels[judging].sum()), int((~labels[judging]).sum()))


def _segments(messages: list[_Message], labels: np.ndarray, verdicts: list[str],
              waiting: np.ndarray, decisions: list[str] | None) -> list[Segment]:
    segments = []
    for part in np.array_split(np.arange(len(messages)), min(REPLAY_SEGMENTS, len(messages))):
        dated = [messages[i].arrived for i in part if messages[i].arrived is not None]
        called = np.asarray([verdicts[i] for i in part])
        segment = Segment(
            min(dated) if dated else None, max(dated) if dated else None,
            int(labels[part].sum()), int((~labels[part]).sum()),
            int(((called == "spam") & ~labels[part]).sum()),
            int(((called != "spam") & labels[part]).sum()), int(waiting[part].sum()))
        if decisions is not None:
            figures = _verdict_figures(labels[part], [decisions[i] for i in part])
            segment.verdict_false_positives = figures.false_positives
            segment.verdict_false_negatives = figures.false_negatives
        segments.append(segment)
    return segments


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
