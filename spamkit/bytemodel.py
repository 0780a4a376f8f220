"""A second opinion from the message's raw bytes: online logistic regression on byte 4-grams.

Bayes counts words, each as if it were independent evidence. This model reads what the
tokenizer throws away, how the message is written byte by byte (header layout, mailer
quirks, HTML habits, encodings), and, being discriminative, weighs correlated evidence
once. It is the method that did best at the TREC spam tracks (Goodman and Yih 2006;
Sculley and Wachman 2007): every 4-byte window of the message's first 2,000 and last
1,000 bytes, in lower case, hashed into 2^18 buckets, one weight a bucket, learned online
and only when the model is not already confidently right ("thick threshold").
docs/decisions/0024 has the figures.

Its log-odds are added to Bayes's (`bayes.BayesClassifier`), less BIAS: the model must
out-vote a margin before it moves a message toward spam, which keeps the false positives
at the 0.9 cutoff below what Bayes alone had, in cross-validation.

The weights live in the token database as one meta value ("bytemodel"), written in the
same transaction as the tokens a batch learned, so a crash leaves both or neither. Each
step is kept with its message's seen mark, so forgetting or relearning the message takes
its step back out (`ByteModel.unlearn_message`).
"""

from __future__ import annotations

import base64
import math
import re
import secrets
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from spamkit.errors import StoreCorrupt

try:
    from spamkit.tokenizer import _fast
except ImportError:  # built without a C compiler: numpy gives the same buckets, slower
    _fast = None  # type: ignore[assignment]

if TYPE_CHECKING:  # (the store's dump reader imports this module)
    from spamkit.store.base import TokenStore

BITS = 18  # 2^18 buckets: 1 MB of float32 weights (2^20 and 2^22 ranked within the noise, 0024)
GRAM = 4
RATE = 0.01  # each step moves the message's weights by RATE * (label - p)
THICK = 0.1  # learn a message unless p is within this of its label
BIAS = -math.log(49 / 9)  # added to the model's log-odds (chosen by cross-validation, 0024)
RUN_LESSONS = 50  # a `learn` run teaches it at most this many messages: a long run of one
# label (`learn --spam` of a whole folder, then `--ham`) leaves an online model leaning
# toward whichever came last, by up to 18 false positives in cross-validation (0024)
COPIES = 4  # `train` teaches the mean of this many copies, each learning in its own order:
# the order an online model learns in moves its ranking, and the mean ranks better (1-AUC
# 0.0049% against 0.0057% in cross-validation over 16 orders; 2 copies 0.0051, 8 0.0048; 0024)
META_NAME = "bytemodel"  # the weights, in the database's meta table
META_SERIAL = "bytemodel_serial"  # changes with every write, so readers know to reload
_HEAD_SCAN = 16_384  # bytes searched for other filters' headers to drop


class Reading(NamedTuple):
    """What a model reads of a message: its first `head` bytes (headers and the start of
    the body), its last `tail` bytes (signatures, footers, the end of an attachment), and
    whether in lower case. A model keeps the reading it was built with (its format)."""

    head: int
    tail: int
    fold: bool


# the reading of each model format; a new model is made in FORMAT. bm1 read the first
# 3,000 bytes as they are; bm2's reading ranks spam better at every number of false
# positives in cross-validation (1-AUC 0.0057% against 0.0086%, 16 training orders, 0024)
READINGS = {"bm1": Reading(3_000, 0, False), "bm2": Reading(2_000, 1_000, True)}
FORMAT = "bm2"
READING = READINGS[FORMAT]
# steps toward each label before a model votes (`train` takes 150-210 each). A bm2 model
# is sure of what it reads sooner, so it steps less often: a `learn --spam` run then a
# `--ham` run leave it 2-5 steps of each (a bm1 model up to RUN_LESSONS), and in the
# arrival-order replay it has 40 of each when Bayes starts to judge (0024)
MIN_STEPS = {"bm1": 100, "bm2": 40}
# headers a filter writes (the tokenizer ignores the same): learning them would teach the
# model a filter's old verdict, and a folder of corrections is full of them
_FILTER_HEADER = re.compile(
    rb"^x-(?:spam|bogosity|dspam|rspamd|spamkit)[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)
_LINE_END = re.compile(rb"\r+\n")  # CRLF (and CRCRLF, as a sample must read the same again)
_MULTIPLIER = np.uint32(2654435761)  # Knuth's multiplicative hash
_SHIFT = np.uint32(32 - BITS)


def byte_sample(raw: bytes, reading: Reading = READING) -> bytes:
    """What a model with this reading reads of a message: its first `head` and last `tail`
    bytes (the whole message when it is no longer than both), line ends as LF, with spam
    filters' headers taken out, in lower case if the reading folds. Any bytes give a
    sample (perhaps empty), and a sample is its own sample, so it can stand in for the
    message it came from. From the C core when it is built (a few us), else
    `python_byte_sample`."""
    if _fast is not None:
        return _fast.message_sample(raw, *reading)
    return python_byte_sample(raw, reading)


def _cleaned(raw: bytes, limit: int = _HEAD_SCAN) -> bytes:
    """The first _HEAD_SCAN bytes of a message, line ends as LF, without the headers spam
    filters write (learning them would teach the model a filter's old verdict), cut to
    `limit` bytes."""
    head = raw[:_HEAD_SCAN]
    if b"\r" in head:
        head = _LINE_END.sub(b"\n", head)
    if head.startswith(b"\n"):
        header_part = b""  # a blank first line: no headers
    else:
        end = head.find(b"\n\n")
        header_part = head if end < 0 else head[: end + 1]
    if _FILTER_HEADER.search(header_part):
        head = _FILTER_HEADER.sub(b"", header_part) + head[len(header_part):]
    return head[:limit]


def python_byte_sample(raw: bytes, reading: Reading = READING) -> bytes:
    """byte_sample in Python: the reference the C core is tested against. The head and
    the tail are joined and cleaned again, so that a sample is its own sample."""
    head, tail, fold = reading
    if not tail:
        sample = _cleaned(raw, head)
    else:
        cleaned = _cleaned(raw)
        if len(raw) > _HEAD_SCAN:  # the tail from the last 2 * tail bytes, as LF
            end = _LINE_END.sub(b"\n", raw[-2 * tail:])
            sample = _cleaned(cleaned[:head] + end[-tail:], head + tail)
        elif len(cleaned) > head + tail:
            sample = _cleaned(cleaned[:head] + cleaned[-tail:], head + tail)
        else:
            sample = cleaned
    return sample.lower() if fold else sample


def grams(sample: bytes) -> npt.NDArray[np.uint32]:
    """The distinct buckets of a sample's 4-byte windows, in ascending order, in numpy
    (about 40 us a message): the reference for the buckets the C core sums and steps."""
    data = np.frombuffer(sample.ljust(GRAM, b"\0"), dtype=np.uint8).astype(np.uint32)
    count = len(data) - GRAM + 1
    windows = data[:count].copy()
    for offset in range(1, GRAM):
        windows = (windows << np.uint32(8)) | data[offset: offset + count]
    buckets: npt.NDArray[np.uint32] = (windows * _MULTIPLIER) >> _SHIFT  # multiply mod 2^32
    # distinct without np.unique (195 us): each bucket's last window number, written then
    # read back, keeps one window a bucket; sorting those few is cheap
    last = _scratch()
    numbers = np.arange(count, dtype=np.int32)
    last[buckets] = numbers
    distinct: npt.NDArray[np.uint32] = np.sort(buckets[last[buckets] == numbers])
    return distinct


def message_buckets(raw: bytes, reading: Reading = READING) -> npt.NDArray[np.uint32]:
    """grams(byte_sample(raw, reading)). A sample gives its own buckets again, so callers
    may keep samples instead of messages. The C core does not make this array:
    `ByteModel.score` and `learn_message` sum and step the buckets as it finds them."""
    return grams(byte_sample(raw, reading))


_local = threading.local()


def _scratch() -> npt.NDArray[np.int32]:
    """A bucket-sized array for `grams`, one a thread; only what a call writes is read."""
    array: npt.NDArray[np.int32] | None = getattr(_local, "last", None)
    if array is None:
        array = _local.last = np.zeros(1 << BITS, dtype=np.int32)
    return array


class ByteModel:
    """The weights, the reading they were learned on, and what scoring and learning do
    with them."""

    def __init__(self, weights: npt.NDArray[np.float32] | None = None,
                 spam_steps: int = 0, ham_steps: int = 0, model_format: str = FORMAT) -> None:
        self.weights = np.zeros(1 << BITS, dtype=np.float32) if weights is None else weights
        self.spam_steps = spam_steps  # how many times it has learned, toward each label
        self.ham_steps = ham_steps
        self.format = model_format
        self.reading = READINGS[model_format]
        self.changed = False

    @property
    def steps(self) -> int:
        return self.spam_steps + self.ham_steps

    @property
    def votes(self) -> bool:
        """Whether it has learned enough of both labels to be heard (its format's
        MIN_STEPS each): a model that saw one label, or a few of each, only adds noise (0024)."""
        return min(self.spam_steps, self.ham_steps) >= MIN_STEPS[self.format]

    def copy(self) -> ByteModel:
        return ByteModel(self.weights.copy(), self.spam_steps, self.ham_steps, self.format)

    def buckets(self, raw: bytes) -> npt.NDArray[np.uint32]:
        return message_buckets(raw, self.reading)

    def score(self, raw: bytes) -> float:
        """The model's own log-odds that a message (or its sample) is spam, 0 for no
        opinion. The C core sums the weights as it finds the buckets (11-17 us a message
        over the corpus, against 30-37 for the buckets and then numpy)."""
        if _fast is not None:
            return _fast.byte_log_odds(raw, self.weights, *self.reading)
        return self.log_odds(self.buckets(raw))

    def learn_message(self, raw: bytes, is_spam: bool) -> float:
        """`learn` on a message (or its sample), in one pass of the C core when it is built."""
        if _fast is None:
            return self.learn(self.buckets(raw), is_spam)
        step: float = _fast.byte_step(raw, self.weights, *self.reading, 1.0 if is_spam else 0.0,
                                      RATE, THICK)
        if step:
            self._stepped(is_spam)
        return step

    def unlearn_message(self, raw: bytes, step: float) -> None:
        """Take back a step `learn_message` took on this message (or its sample): the
        weights lose what it gave their buckets, and the count of steps toward its label
        goes down. What later steps learned while it was there stays: the model is a sum,
        so this is the message's whole own share (what `forget` and a relearn do, 0024)."""
        if not step:
            return
        self._give([byte_sample(raw, self.reading)], np.array([-step], dtype=np.float32))
        if step > 0:
            self.spam_steps = max(0, self.spam_steps - 1)
        else:
            self.ham_steps = max(0, self.ham_steps - 1)

    def add_steps(self, samples: Sequence[bytes], steps: Sequence[float]) -> None:
        """Give samples (in this model's reading) steps worked out elsewhere
        (`bagged_steps`), each counted as a step toward the label its sign says, as if
        learned here; a step of 0 gives nothing."""
        values = np.asarray(steps, dtype=np.float32)
        if not values.any():
            return
        self._give(samples, values)
        self.spam_steps += int((values > 0).sum())
        self.ham_steps += int((values < 0).sum())

    def _give(self, samples: Sequence[bytes], values: npt.NDArray[np.float32]) -> None:
        """Every distinct bucket of each sample gains its float32 value (0: nothing)."""
        if _fast is not None:
            _fast.sample_adds(samples, values.tobytes(), self.weights)
        else:
            for sample, step in zip(samples, values):
                if step:
                    self.weights[grams(sample)] += step
        self.changed = True

    def log_odds(self, buckets: npt.NDArray[np.uint32]) -> float:
        """`score` given the message's buckets, in numpy: the C core's reference."""
        return float(self.weights[buckets].sum(dtype=np.float64))

    def learn(self, buckets: npt.NDArray[np.uint32], is_spam: bool) -> float:
        """One online step toward the label, unless the model already has it right by THICK.
        Returns the step each bucket's weight gained (a float32 value; 0.0: none). In
        numpy: the reference for `learn_message`'s C step."""
        z = self.log_odds(buckets)
        p = 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, z))))
        error = (1.0 if is_spam else 0.0) - p
        if abs(error) <= THICK:
            return 0.0
        step = np.float32(RATE * error)
        self.weights[buckets] += step
        self._stepped(is_spam)
        return float(step)

    def _stepped(self, is_spam: bool) -> None:
        if is_spam:
            self.spam_steps += 1
        else:
            self.ham_steps += 1
        self.changed = True

    def encode(self) -> str:
        """The meta value: format (which says the reading), bucket bits, steps toward spam
        and toward ham, then the little-endian float32 weights in base64 (no spaces, so a
        dump's `meta` line carries it)."""
        packed = base64.b64encode(self.weights.astype("<f4").tobytes()).decode("ascii")
        return f"{self.format}:{BITS}:{self.spam_steps}:{self.ham_steps}:{packed}"

    @classmethod
    def decode(cls, text: str) -> ByteModel:
        """The model a meta value holds; ValueError naming what is wrong with a bad one."""
        parts = text.split(":", 4)
        if len(parts) != 5 or parts[0] not in READINGS:
            raise ValueError(f"not a byte model (expected '{FORMAT}:...')")
        if parts[1] != str(BITS):
            raise ValueError(f"byte model has 2^{parts[1]} buckets, this spamkit uses 2^{BITS}")
        steps = model_steps(text)
        if steps is None:
            raise ValueError("byte model step counts are not numbers")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except ValueError:
            raise ValueError("byte model weights are not base64") from None
        if len(raw) != 4 << BITS:
            raise ValueError(f"byte model holds {len(raw)} bytes of weights, not {4 << BITS}")
        weights = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if not np.isfinite(weights).all():
            raise ValueError("byte model weights are not all finite")
        return cls(weights, *steps, model_format=parts[0])


def copy_order(keys: Sequence[bytes], copy: int) -> list[int]:
    """The order in which `bagged_steps`' copy number `copy` visits lessons with these
    keys (message keys: digests): copy 0 as given, every other copy sorted by its own
    mix of the keys' first 8 bytes (splitmix64's finaliser), so that its order depends
    only on the messages and is unrelated to the other copies'."""
    if copy == 0:
        return list(range(len(keys)))
    with np.errstate(over="ignore"):
        mixed = np.frombuffer(b"".join(key[:8].ljust(8, b"\0") for key in keys), dtype=">u8").astype(np.uint64)
        mixed ^= np.uint64(copy) * np.uint64(0x9E3779B97F4A7C15)
        mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed ^= mixed >> np.uint64(31)
    order: list[int] = np.argsort(mixed, kind="stable").tolist()
    return order


def bagged_steps(model: ByteModel, keys: Sequence[bytes], samples: Sequence[bytes],
                 spam: Sequence[bool], copies: int = COPIES) -> list[float]:
    """What `train` teaches the model about each lesson (key, sample in the model's
    reading, label): the mean of the steps `copies` copies of `model` take on it, each
    copy learning every lesson once, in `copy_order`.

    Each copy's weights are the model's plus the sum of its steps on each lesson's
    buckets, so the mean of the copies is the model plus each lesson's mean step on its
    buckets: adding those (`ByteModel.add_steps`) batch by batch, with the marks that
    keep them for `forget`, gives the averaged model one committed batch at a time.
    """
    total = np.zeros(len(samples), dtype=np.float64)
    targets = np.array(spam, dtype=np.uint8)
    for copy in range(copies):
        weights = model.weights.copy()
        # (an empty sample has nothing to read: it teaches nothing, as `learn` skips it)
        order = np.array([i for i in copy_order(keys, copy) if samples[i]], dtype=np.intp)
        ordered = [samples[i] for i in order]
        if _fast is not None:
            steps = np.frombuffer(_fast.sample_steps(ordered, targets[order].tobytes(), weights, RATE, THICK),
                                  dtype=np.float32)
        else:
            learner = ByteModel(weights, model_format=model.format)
            steps = np.array([learner.learn(grams(sample), bool(target))
                              for sample, target in zip(ordered, targets[order])], dtype=np.float32)
        total[order] += steps
    return [float(step) for step in (total / copies).astype(np.float32)]


def model_steps(value: str) -> tuple[int, int] | None:
    """The steps toward spam and toward ham a meta value records (its third and fourth
    fields), read without decoding its megabyte; None if it has no such fields."""
    fields = value.split(":", 4)
    if len(fields) == 5 and all(f.isascii() and f.isdigit() for f in fields[2:4]):
        return int(fields[2]), int(fields[3])
    return None


def stored_format(value: str | None) -> str | None:
    """The format of the model a meta value holds (its first field), read without
    decoding it; None when there is none or it is not a format this spamkit reads."""
    if not value:
        return None
    end = value.find(":")
    model_format = value if end < 0 else value[:end]  # (not split: no copy of the weights)
    return model_format if model_format in READINGS else None


def stored_reading(value: str | None) -> Reading:
    """The reading of the model a meta value holds; READING (a new model's) when there is
    none or it is not one we know (reading it then reports the damage)."""
    model_format = stored_format(value)
    return READING if model_format is None else READINGS[model_format]


def new_serial() -> str:
    return secrets.token_hex(8)


class ModelCache:
    """A store's byte model for a scanner: read again only when its serial changes (one
    small read a message, not a megabyte). Scans on several threads share it: the serial
    and the model are one value, replaced whole, and the model is never changed in place
    (a learner changes a copy)."""

    def __init__(self) -> None:
        self._held: tuple[str, ByteModel | None] | None = None  # (serial, its model)

    def get(self, store: TokenStore) -> ByteModel | None:
        serial = store.meta_value(META_SERIAL)
        if serial is None:
            return None
        held = self._held
        if held is None or held[0] != serial:
            held = self._held = (serial, read_model(store.meta_value(META_NAME)))
        return held[1]

    def held(self) -> tuple[str, ByteModel] | None:
        """(serial, model) as last read or kept here, for a learner to start from instead of
        decoding the megabyte again; None before there is one."""
        held = self._held
        return None if held is None or held[1] is None else (held[0], held[1])

    def keep(self, serial: str, model: ByteModel) -> None:
        """The model a learner committed with `serial`: the next scan need not read it."""
        self._held = (serial, model)


def read_model(text: str | None) -> ByteModel | None:
    """The model a meta value holds (None: there is none); StoreCorrupt if it is damaged."""
    if not text:
        return None
    try:
        return ByteModel.decode(text)
    except ValueError as error:
        raise StoreCorrupt(f"the database's byte model is damaged: {error}; `spamkit db dump`, "
                           "remove the 'meta bytemodel' line, and `spamkit db restore` to go on "
                           "without it") from None
