"""Learning: each message at most once per label, in all-or-nothing batches.

A message learned again with the same label changes nothing. Learned with the other
label, its tokens move across in the same transaction (subtracted from the old label,
added to the new). Forgetting subtracts them and clears its mark. The caller hears of
each batch only after it is committed (`on_commit`), which is when the trainer may
delete the files: never before.

`Learner.train` is the other way to fill a database from a corpus: it learns only the
messages the database does not already put on their side with confidence (train on or
near error, docs/decisions/0012), in a content-derived shuffle of both labels.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from spamkit.analysis import Analyzer, analyzer_for
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.bytemodel import (META_NAME, META_SERIAL, READING, RUN_LESSONS, ByteModel, Reading,
                               bagged_steps, byte_sample, new_serial, read_model, stored_reading)
from spamkit.errors import StoreError, StoreUnavailable
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store.base import Label, PackedKeys, StoreWriter, TokenStore, pack_keys, today

DEFAULT_BATCH_SIZE = 1000
LOOKAHEAD = 64  # messages read ahead to ask the store about together (see _prepare_all)
LOOKAHEAD_BYTES = 16 << 20  # and no more bytes than this, whatever the messages' size
# `train`: learn a message unless Bayes is this sure of its label; score this many
# against one committed state (both chosen by cross-validation, docs/decisions/0012)
DEFAULT_TRAIN_MARGIN = 0.999
DEFAULT_TRAIN_BATCH = 256
# the minimum clue strength of the scoring that decides what `train` learns; scoring for
# verdicts uses BayesParams's (0.25): measured apart, 0.2 here chose best (0012)
TRAIN_SELECTION_STRENGTH = 0.2
DEFAULT_MAX_TOKENS = 1_000_000
EXPIRE_TO = 0.75  # an expiry cuts to 75% of the cap (as SpamAssassin does), so it runs rarely
DEFAULT_SEEN_DAYS = 365  # how long a learned message is remembered as learned (BayesSeenDays)


def train_selector(store: TokenStore, min_spam_learned: int | None = None,
                   min_ham_learned: int | None = None) -> BayesClassifier:
    """The Bayes scoring that decides what `train` learns (what `Learner.train` is given
    unless a caller measures another): TRAIN_SELECTION_STRENGTH, and the abstention
    thresholds of the verdicts (the config's BayesMinSpam and BayesMinHam)."""
    defaults = BayesParams()
    return BayesClassifier(store, BayesParams(
        min_spam_learned=defaults.min_spam_learned if min_spam_learned is None else min_spam_learned,
        min_ham_learned=defaults.min_ham_learned if min_ham_learned is None else min_ham_learned,
        minimum_prob_strength=TRAIN_SELECTION_STRENGTH))


class Outcome(enum.Enum):
    LEARNED = "learned"
    RELEARNED = "relearned"
    SKIPPED = "skipped"  # already learned with this label (or, forgetting, never learned)
    FORGOTTEN = "forgotten"
    FAILED = "failed"
    CONFIDENT = "confident"  # train: already on its side with confidence, not learned


@dataclass
class LearnSummary:
    learned: int = 0
    relearned: int = 0
    skipped: int = 0
    forgotten: int = 0
    failed: int = 0
    confident: int = 0  # train: left out, the database already gets them right with margin
    expired: int = 0  # tokens dropped because the database went over its cap
    seen_expired: int = 0  # seen marks dropped: messages learned more than BayesSeenDays ago
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def fail(self, item: SourceItem) -> None:
        """A message that could not be read, with why."""
        self.count(Outcome.FAILED)
        self.failures.append((item.name, item.error or "unreadable"))

    def as_json(self) -> dict[str, object]:
        return {"learned": self.learned, "relearned": self.relearned, "skipped": self.skipped,
                "forgotten": self.forgotten, "failed": self.failed, "confident": self.confident,
                "expired": self.expired, "seen_expired": self.seen_expired,
                "seconds": round(self.seconds, 3),
                "failures": [{"message": name, "reason": why} for name, why in self.failures]}


@dataclass
class _Pending:
    item: SourceItem
    key: bytes
    hashes: Sequence[bytes]
    previous: Label | None = None  # what the message was learned as before, if anything
    packed: bytes = b""  # `hashes` packed while `train` holds the message (pack_keys)
    sample: bytes | None = None  # what the byte model reads of it, once the bytes are dropped

    @property
    def byte_source(self) -> bytes:
        """What the byte model learns from: the message's sample (empty: nothing to learn
        from), kept when its bytes were dropped (Learner._drop_bytes)."""
        assert self.sample is not None, "the bytes were not dropped yet"
        return self.sample


CommitCallback = Callable[[list[tuple[SourceItem, Outcome]]], None]


class LearningStopped(StoreError):
    """A batch could not be committed (a full disk, say), so learning stopped there.

    `summary` counts what the batches before it committed: a caller reports that, and
    what it had not heard of through `on_commit` was not learned.
    """

    def __init__(self, cause: StoreError, summary: LearnSummary) -> None:
        super().__init__(str(cause))
        self.cause = cause  # what a command ends with: its exit code (74 a full disk, 65 damage)
        self.summary = summary


class Learner:
    def __init__(self, store: TokenStore, analyzer: Analyzer | None = None,
                 batch_size: int | None = None, max_tokens: int | None = None,
                 seen_days: int | None = None, byte_model: tuple[str, ByteModel] | None = None) -> None:
        """`batch_size`: messages a commit holds (learn; DEFAULT_BATCH_SIZE), or scored
        against one committed state (train; DEFAULT_TRAIN_BATCH, which its figures need).
        `max_tokens` and `seen_days`: the caps learning keeps (None or 0: no cap).
        `byte_model`: (serial, model) a scanner already holds, used if it is still the
        stored one (it is copied, never changed)."""
        self.store = store
        self.analyzer = analyzer or analyzer_for(store)  # the database's own tokenizer
        self.batch_size = batch_size
        self.max_tokens = max_tokens  # None: never expire automatically
        self.seen_days = seen_days
        self._started = time.perf_counter()  # of the current learn or train, for its summary
        # the byte model as this learner last committed it, with its serial: the next batch
        # reuses it if no other writer has changed it since (decoding it costs ~2 ms)
        self._byte_model = byte_model
        self._run_lessons_left = RUN_LESSONS  # what this `learn` run may still teach it
        self._reading: Reading | None = None  # the stored model's, once asked this run

    @property
    def byte_model(self) -> tuple[str, ByteModel] | None:
        """(serial, model) as this learner's last batch committed it, or as it was given
        before any; None while a batch is under way or when unknown."""
        return self._byte_model

    def learn(self, items: Iterable[SourceItem], label: Label | None,
              on_commit: CommitCallback | None = None,
              progress: Callable[[int], None] | None = None, by: str = "manual") -> LearnSummary:
        """Learn `items` as `label`, or forget them when `label` is None.

        `by` says who taught them ("manual", "autolearn", "trainer:alice") for the audit
        log; autolearn never overrides a message someone taught. The byte model learns
        from the first RUN_LESSONS messages learned or relearned only (decision 0024).
        """
        self._started = time.perf_counter()
        self._run_lessons_left = RUN_LESSONS
        self._reading = None
        summary = LearnSummary()
        batch: list[_Pending] = []
        for item, pending in self._prepare_all(items, label, summary, by):
            if pending is not None:
                self._drop_bytes(pending)
                batch.append(pending)
            elif on_commit is not None and item.error is None:
                on_commit([(item, Outcome.SKIPPED)])
            if len(batch) >= (self.batch_size or DEFAULT_BATCH_SIZE):
                self._commit([(pending, label) for pending in batch], summary, on_commit, by)
                batch = []
            if progress is not None:
                progress(1)
        if batch:
            self._commit([(pending, label) for pending in batch], summary, on_commit, by)
        return self._finish(summary)

    def _prepare_all(self, items: Iterable[SourceItem], label: Label | None, summary: LearnSummary,
                     by: str) -> Iterator[tuple[SourceItem, _Pending | None]]:
        """Each item with what learning it takes (None: nothing, it is counted already).

        Items are read LOOKAHEAD at a time so that whether each was learned before is
        asked of the store in one read (one round trip to a shared store, not one a
        message); the store is asked before tokenizing, which a known message skips.
        """
        iterator = iter(items)
        while chunk := _read_ahead(iterator):
            keys = [item.key if item.key is not None else
                    None if item.data is None else message_key(item.data) for item in chunk]
            learned = iter(self.store.learned_as_many([key for key in keys if key is not None]))
            for item, key in zip(chunk, keys):
                if key is None:
                    summary.fail(item)
                    yield item, None
                else:
                    yield item, self._prepare(item, key, next(learned), label, summary, by)

    def _prepare(self, item: SourceItem, key: bytes, known: Label | None, label: Label | None,
                 summary: LearnSummary, by: str) -> _Pending | None:
        if known is label:  # same label again, or forgetting what was never learned
            summary.count(Outcome.SKIPPED)
            return None
        if by == "autolearn" and known is not None:
            summary.count(Outcome.SKIPPED)  # a taught label always wins over autolearn
            return None
        assert item.data is not None
        hashes = item.token_keys if item.token_keys is not None else self.analyzer.analyze(item.data).hashes
        sample = item.byte_sample if item.byte_sample is not None and self._model_reading() == READING \
            else None  # (a sample in another reading than the stored model's is no use)
        return _Pending(item, key, hashes, known, sample=sample)

    def _drop_bytes(self, pending: _Pending) -> None:
        """Keep what the byte model reads of the message (a sample is its own sample, so
        it stands in for the message) and let the message's bytes go: a batch of a
        thousand large messages would otherwise be held whole until it commits."""
        if pending.sample is None:
            pending.sample = byte_sample(pending.item.data or b"", self._model_reading())
        pending.item = SourceItem(pending.item.name, None, path=pending.item.path)

    def _model_reading(self) -> Reading:
        """How the database's byte model reads a message (a new model: READING), asked
        once a run: what `train` keeps of each message must be in that reading."""
        if self._reading is None:
            kept = self._byte_model
            if kept is not None and self.store.meta_value(META_SERIAL) == kept[0]:
                self._reading = kept[1].reading  # (the model this learner last wrote: no read)
            else:  # (the whole model's text, for its first field: ~0.5 ms)
                self._reading = stored_reading(self.store.meta_value(META_NAME))
        return self._reading

    def train(self, spam: Iterable[SourceItem], ham: Iterable[SourceItem],
              classifier: BayesClassifier, margin: float = DEFAULT_TRAIN_MARGIN,
              progress: Callable[[int], None] | None = None, by: str = "manual") -> LearnSummary:
        """Learn from a labelled corpus only what the database needs (train on or near error).

        Every message is read and tokenized first (its keys are kept, not its bytes), then
        all of them are visited in the order of their message keys, a shuffle that depends
        only on content: the method is sensitive to order, and files sorted by name put
        whole eras or sources of mail together (0012 has the figures). Batch by batch, each
        message is scored against what is committed so far and learned unless Bayes puts it
        on its own side with probability `margin` or more. Until Bayes has enough of both
        labels to judge, everything is learned. A message learned before with the other
        label is always relearned: the caller says what it is.
        """
        if not 0.5 < margin < 1.0:
            raise ValueError("margin is a probability between 0.5 and 1")
        self._started = time.perf_counter()
        self._reading = None
        summary = LearnSummary()
        queue: list[tuple[Label, _Pending]] = []
        for label, items in ((Label.SPAM, spam), (Label.HAM, ham)):
            for _, pending in self._prepare_all(items, label, summary, by):
                if pending is not None:  # keep the keys (packed) and the sample, drop the bytes
                    self._drop_bytes(pending)
                    pending.packed, pending.hashes = pack_keys(pending.hashes), []
                    queue.append((label, pending))
                if progress is not None:
                    progress(1)
        queue.sort(key=lambda entry: entry[1].key)
        try:
            model_steps = self._model_steps(queue)
        except StoreError as error:  # (a damaged model: nothing learned yet)
            raise self._stopped(error, summary) from None
        sure = math.log(margin / (1.0 - margin))
        step = self.batch_size or DEFAULT_TRAIN_BATCH
        for start in range(0, len(queue), step):
            batch = queue[start:start + step]
            for _, pending in batch:
                pending.hashes, pending.packed = PackedKeys(pending.packed), b""
            results = classifier.score_many([pending.hashes for _, pending in batch])
            needed: dict[Label, list[_Pending]] = {Label.SPAM: [], Label.HAM: []}
            for (label, pending), result in zip(batch, results):
                on_its_side = result.log_odds if label is Label.SPAM else -result.log_odds
                if pending.previous is None and result.probability is not None \
                        and on_its_side >= sure:
                    summary.count(Outcome.CONFIDENT)
                else:
                    needed[label].append(pending)
            # one transaction a batch, both labels (a commit is an fsync: ~5 ms), with the
            # byte model's steps on the batch's messages, learned or not (_model_steps)
            labelled: list[tuple[_Pending, Label | None]] = [
                (pending, label) for label, pendings in needed.items() for pending in pendings]
            self._commit(labelled, summary, None, by,
                         model_steps=list(zip((pending for _, pending in batch), model_steps[start:start + step])))
            for _, pending in batch:  # done with: let the keys and the sample go
                pending.hashes, pending.sample = [], None
        return self._finish(summary)

    def _model_steps(self, queue: list[tuple[Label, _Pending]]) -> list[float]:
        """The byte model's step on each queued message: the mean of COPIES copies of the
        model as it stands, each learning every message in its own order (`bagged_steps`;
        the first copy in `train`'s order). Worked out before the first batch, so that each
        batch commits its own messages' steps with their counts and marks: a run stopped
        midway leaves the model holding exactly the committed batches' share."""
        stored = read_model(self.store.meta_value(META_NAME))
        model = stored if stored is not None else ByteModel()
        return bagged_steps(model, [pending.key for _, pending in queue],
                            [pending.byte_source for _, pending in queue],
                            [label is Label.SPAM for label, _ in queue])

    def _finish(self, summary: LearnSummary) -> LearnSummary:
        """Expire down from the token cap if learning went over it, and, once a day, the
        seen marks older than `seen_days`; time the whole run."""
        try:
            if self.max_tokens and self.store.totals().ntokens > self.max_tokens:
                summary.expired = self.store.expire(int(self.max_tokens * EXPIRE_TO))
            if self.seen_days and self.store.meta_value("last_seen_expire") != str(today()):
                summary.seen_expired, _ = self.store.expire_seen(today() - self.seen_days)
        except StoreError as error:  # what was learned is committed; say so
            raise self._stopped(error, summary) from None
        summary.seconds = time.perf_counter() - self._started
        return summary

    def _stopped(self, error: StoreError, summary: LearnSummary) -> LearningStopped:
        """The error that ends a run whose commit failed, timed and with what it had done."""
        summary.seconds = time.perf_counter() - self._started
        return LearningStopped(error, summary)

    def _commit(self, labelled: list[tuple[_Pending, Label | None]], summary: LearnSummary,
                on_commit: CommitCallback | None, by: str,
                model_steps: list[tuple[_Pending, float]] | None = None) -> None:
        """Learn (or, with label None, forget) each message as labelled, in order, all in
        one write transaction, the byte model's weights with them. The byte model learns
        from the messages learned or relearned here (while the run's RUN_LESSONS last),
        or, given `model_steps` (`train`), takes those steps; a message forgotten or
        relearned first loses the step it had taught it."""
        if not labelled and not model_steps:
            return
        outcomes: list[tuple[SourceItem, Outcome]] = []
        try:
            with self.store.writer() as writer:
                writer.prefetch_seen([pending.key for pending, _ in labelled])
                model = _BatchModel(writer, self._byte_model)
                self._byte_model = None  # until this batch commits
                for pending, label in labelled:
                    outcome, old_step = _apply(writer, pending, label, by == "autolearn")
                    outcomes.append((pending.item, outcome))
                    if outcome is not Outcome.SKIPPED:
                        writer.log_event(pending.key, by, label.value if label is not None else "forget",
                                         outcome.value)
                    model.take_back(pending.byte_source, old_step)  # (forgotten or relearned)
                    if model_steps is None and label is not None and self._run_lessons_left > 0 \
                            and outcome in (Outcome.LEARNED, Outcome.RELEARNED):
                        writer.record_byte_step(pending.key, model.learn(pending.byte_source, label))
                        self._run_lessons_left -= 1
                stepped = [(pending, step) for pending, step in model_steps or () if step]
                model.add([pending.byte_source for pending, _ in stepped], [step for _, step in stepped])
                for pending, byte_step in stepped:  # (kept for those marked here)
                    writer.record_byte_step(pending.key, byte_step)
                taught = model.save()
                writer.set_meta("tokenizer", self.analyzer.tokenizer.version)
            self._byte_model = taught  # committed: what the next batch may start from
        except StoreError as error:
            raise self._stopped(error, summary) from None
        if self.store.replaced():  # (LMDB: a file moved over data.mdb while this run wrote)
            raise self._stopped(StoreUnavailable(
                f"the database was replaced while this run learned into it (a file moved over "
                f"it, or its directory made again): the last {len(outcomes)} messages went into "
                "the file that was there, so they are not counted, and a sweep leaves their "
                "mail in its folders; run again"), summary)
        for _, outcome in outcomes:  # counted only once committed
            summary.count(outcome)
        if on_commit is not None:
            on_commit(outcomes)


class _BatchModel:
    """The byte model as one batch changes it: read when first needed (from what the
    learner last committed, if no other writer has changed it since: decoding costs
    ~2 ms), changed on a copy (a batch that fails must leave no steps behind), and saved
    in the batch's transaction if it moved."""

    def __init__(self, writer: StoreWriter, kept: tuple[str, ByteModel] | None) -> None:
        self._writer = writer
        self._kept = kept
        self._model: ByteModel | None = None

    def _loaded(self, create: bool = True) -> ByteModel | None:
        """The model, read on first use; a new one if the database has none and `create`."""
        if self._model is None:
            serial, kept = self._writer.meta_value(META_SERIAL), self._kept
            if kept is not None and serial is not None and kept[0] == serial:
                self._model = kept[1].copy()
            elif (stored := read_model(self._writer.meta_value(META_NAME))) is not None:
                self._model = stored  # (decoded afresh: no one else holds it)
            elif create:
                self._model = ByteModel()
        return self._model

    def learn(self, message: bytes, label: Label) -> float:
        """One online step on the message (its bytes or sample; empty: nothing to learn
        from); returns the step taken, 0.0 for none."""
        model = self._loaded() if message else None
        return model.learn_message(message, label is Label.SPAM) if model is not None else 0.0

    def add(self, samples: list[bytes], steps: list[float]) -> None:
        """Give samples steps worked out before (`train`'s `bagged_steps`)."""
        model = self._loaded() if samples else None
        if model is not None:
            model.add_steps(samples, steps)

    def take_back(self, message: bytes, step: float) -> None:
        """Undo the step the model once took on this message (decision 0024); with no
        model there is nothing to take it out of."""
        model = self._loaded(create=False) if step and message else None
        if model is not None:
            model.unlearn_message(message, step)

    def save(self) -> tuple[str, ByteModel] | None:
        """Write the model if it moved; the model and its serial as this batch leaves them."""
        model, serial = self._model, self._writer.meta_value(META_SERIAL)
        if model is None:
            return self._kept
        if not model.changed:
            return None if serial is None else (serial, model)
        model.changed = False
        serial = new_serial()
        self._writer.set_meta(META_NAME, model.encode())
        self._writer.set_meta(META_SERIAL, serial)
        return serial, model


def _apply(writer: StoreWriter, pending: _Pending, label: Label | None,
           only_if_new: bool = False) -> tuple[Outcome, float]:
    """The message's counts and mark changed as labelled; the outcome, and the byte model
    step its old mark held (read only when there was one to undo: a forget or relearn)."""
    previous = writer.learned_as(pending.key)
    if previous is label or (only_if_new and previous is not None):  # e.g. a duplicate in this batch
        return Outcome.SKIPPED, 0.0
    old_step = 0.0
    if previous is not None:
        old_step = writer.byte_step(pending.key)  # (before the new mark replaces it)
        writer.add_tokens(pending.hashes, previous, -1)
        writer.add_messages(previous, -1)
    if label is None:
        writer.remember(pending.key, None)
        return Outcome.FORGOTTEN, old_step
    writer.add_tokens(pending.hashes, label, 1)
    writer.add_messages(label, 1)
    writer.remember(pending.key, label)
    return (Outcome.LEARNED if previous is None else Outcome.RELEARNED), old_step


def _read_ahead(iterator: Iterator[SourceItem]) -> list[SourceItem]:
    """The next LOOKAHEAD items, fewer once they hold LOOKAHEAD_BYTES: what a batch keeps
    of each message is its keys and sample, so these are the only whole messages held."""
    chunk: list[SourceItem] = []
    held = 0
    for item in iterator:
        chunk.append(item)
        held += len(item.data or b"")
        if len(chunk) >= LOOKAHEAD or held >= LOOKAHEAD_BYTES:
            break
    return chunk
