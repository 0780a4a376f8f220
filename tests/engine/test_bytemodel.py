"""The byte model (decision 0024): its features from any bytes, its online steps, its
place in the database (written with the batch, dumped, restored, refused when damaged),
and how its vote joins Bayes's."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit import bytemodel
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.bytemodel import BIAS, READING, READINGS, ByteModel, Reading, byte_sample, grams, message_buckets
from spamkit.errors import StoreCorrupt, StoreError
from spamkit.learn import Learner, LearningStopped
from spamkit.message import message_key
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from spamkit.store.base import today
from spamkit.store.batch import SEEN_LAYOUT
from tests.conftest import as_items


def reference_grams(sample: bytes) -> np.ndarray:
    """The buckets worked out the slow, obvious way: every 4-byte window, hashed, distinct."""
    padded = sample.ljust(4, b"\0")
    buckets = set()
    for start in range(len(padded) - 3):
        window = int.from_bytes(padded[start:start + 4], "big")
        buckets.add(((window * 2654435761) & 0xFFFFFFFF) >> (32 - bytemodel.BITS))
    return np.array(sorted(buckets), dtype=np.int64)


# messages built to reach every branch of byte_sample: CRLF and lone CRs, filter headers
# in any case with and without continuation lines, a header part cut by the scan's end,
# messages longer than the scan whose end is read apart (line ends across its cut)
_LINES = st.sampled_from([b"X-Spam-Status: Yes", b"x-SPAM-flag: yes", b"X-Bogosity: Ham", b"X-DSPAM-Result: x",
                          b"x-rspamd-score: 3", b"X-Spamkit: 1", b"X-Mailer: m", b"From: a@b", b"Subject: s",
                          b"\tcontinued", b" more", b"", b"body line", b"X-Spam"])
_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r", b""])
_MESSAGES = st.one_of(st.binary(max_size=5000),
                      st.lists(st.tuples(_LINES, _ENDS), max_size=60).map(
                          lambda parts: b"".join(line + end for line, end in parts)),
                      st.builds(lambda head, n: head * n, st.sampled_from(
                          [b"X-Spam-Report: long\r\n", b"X-Spam: a\n\tb\n", b"a\r\n"]), st.integers(0, 4000)),
                      st.builds(lambda head, fill, end: head + b"B" * fill + end, st.binary(max_size=300),
                                st.integers(0, 18_000), st.binary(max_size=2500).map(
                                    lambda end: end.replace(b"\n", b"\r\n"))))
_READINGS = st.sampled_from([*READINGS.values(), Reading(10, 7, True), Reading(0, 0, False)])


_FAST_ONLY = pytest.mark.skipif(bytemodel._fast is None, reason="built without the C core")


@settings(max_examples=400, deadline=None)
@given(_MESSAGES, _READINGS)
# a lone CR ending the head and an LF starting the tail: joined, they are a line end (the
# C core once kept the CR), in a message within the scan and in one beyond it
@example(b":\n\nabcdef\r" + b"x" * 7 + b"\nyyyyyy", Reading(10, 7, True))
@example(b"a: b\n\n" + b"c" * 1993 + b"\r" + b"d" * 20_000 + b"\n" + b"e" * 999, READINGS["bm2"])
def test_any_bytes_give_the_distinct_buckets_of_their_windows(raw: bytes, reading: Reading) -> None:
    sample = byte_sample(raw, reading)
    assert len(sample) <= reading.head + reading.tail
    assert byte_sample(sample, reading) == sample  # a sample stands for its message
    assert sample == bytemodel.python_byte_sample(raw, reading)  # the C core's, when built
    assert not reading.fold or sample == sample.lower()
    assert np.array_equal(message_buckets(raw, reading), grams(sample))  # from its sample
    assert np.array_equal(message_buckets(sample, reading), grams(sample))
    assert np.array_equal(grams(sample).astype(np.int64), reference_grams(sample))


@_FAST_ONLY
def test_the_c_core_and_numpy_give_the_same_buckets(all_messages: list[CorpusMessage],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On every message of the corpus and on edge cases, in every model format's reading:
    the C core's sample is Python's, and so are the buckets made from it (the C core sums
    and steps them: the tests below)."""
    raws = [m.data for m in all_messages] + [b"", b"a", b"abc", b"abcd", b"\xff" * 9]
    from_c = {reading: [(byte_sample(raw, reading), message_buckets(raw, reading)) for raw in raws]
              for reading in READINGS.values()}
    monkeypatch.setattr(bytemodel, "_fast", None)
    for reading, samples in from_c.items():
        for raw, (sample, fast) in zip(raws, samples):
            assert byte_sample(raw, reading) == sample, raw[:40]
            assert np.array_equal(grams(sample), fast), raw[:40]


@_FAST_ONLY
@settings(max_examples=200, deadline=None)
@given(_MESSAGES, st.integers(0, 2**32 - 1), st.booleans(), st.sampled_from(sorted(READINGS)))
def test_the_c_score_and_step_are_numpys(raw: bytes, seed: int, is_spam: bool, model_format: str) -> None:
    """score and learn_message (one C pass, no bucket array) against log_odds and learn on
    the buckets in numpy; weights spread so that some steps are taken and some are not."""
    weights = np.random.default_rng(seed).normal(0.0, 0.05, 1 << bytemodel.BITS).astype(np.float32)
    fast, slow = ByteModel(weights.copy(), model_format=model_format), ByteModel(weights.copy())
    buckets = grams(byte_sample(raw, READINGS[model_format]))
    assert fast.score(raw) == pytest.approx(slow.log_odds(buckets), rel=1e-12, abs=1e-9)
    assert fast.learn_message(raw, is_spam) == slow.learn(buckets, is_spam)
    assert (fast.spam_steps, fast.ham_steps, fast.changed) == (slow.spam_steps, slow.ham_steps, slow.changed)
    assert np.array_equal(fast.weights, slow.weights)


@_FAST_ONLY
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_MESSAGES, st.booleans()), max_size=12), st.integers(0, 2**32 - 1),
       st.sampled_from(sorted(READINGS)), st.floats(-0.5, 0.5, width=32))
def test_the_c_steps_on_samples_and_a_given_step_are_numpys(lessons: list[tuple[bytes, bool]], seed: int,
                                                             model_format: str, given_step: float) -> None:
    """sample_steps (`train`'s copies: samples stepped in turn, no sampling again),
    sample_adds (steps given, and a step taken back from the message) against
    learn and the buckets in numpy."""
    fast = bytemodel._fast
    reading = READINGS[model_format]
    weights = np.random.default_rng(seed).normal(0.0, 0.05, 1 << bytemodel.BITS).astype(np.float32)
    slow = ByteModel(weights.copy(), model_format=model_format)
    samples = [byte_sample(raw, reading) for raw, _ in lessons]
    stepped = weights.copy()
    steps = np.frombuffer(fast.sample_steps(samples, bytes(spam for _, spam in lessons), stepped,
                                            bytemodel.RATE, bytemodel.THICK), dtype=np.float32)
    expected = [slow.learn(grams(sample), spam) for sample, (_, spam) in zip(samples, lessons)]
    assert steps.tolist() == expected
    np.testing.assert_allclose(stepped, slow.weights, rtol=0, atol=1e-6)
    if lessons:
        added = ByteModel(weights.copy(), model_format=model_format)
        added.add_steps(samples[:1], [given_step])
        reference = weights.copy()
        reference[grams(samples[0])] += np.float32(given_step)
        assert np.array_equal(added.weights, reference)
        assert (added.spam_steps, added.ham_steps) == ((given_step > 0) * 1, (given_step < 0) * 1)
        added.unlearn_message(lessons[0][0], given_step)  # (the message itself: sampled again)
        reference[grams(samples[0])] -= np.float32(given_step)
        assert np.array_equal(added.weights, reference) and added.steps == 0


@_FAST_ONLY
def test_bagged_steps_are_the_same_with_and_without_the_c_core(all_messages: list[CorpusMessage],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lessons = sorted(all_messages, key=lambda m: message_key(m.data))[:400]
    args = (ByteModel(), [message_key(m.data) for m in lessons], [byte_sample(m.data) for m in lessons],
            [m.label == "spam" for m in lessons])
    fast = bytemodel.bagged_steps(*args)
    keys, samples, spam = args[1:]
    with_empty = bytemodel.bagged_steps(ByteModel(), [b"\0" * 16, *keys], [b"", *samples], [True, *spam])
    assert with_empty == [0.0, *fast]  # (an empty sample has nothing to read: no step, no effect)
    monkeypatch.setattr(bytemodel, "_fast", None)
    assert sum(map(bool, fast)) > 20
    np.testing.assert_allclose(bytemodel.bagged_steps(*args), fast, rtol=0, atol=1e-7)


@_FAST_ONLY
def test_learning_the_corpus_in_c_gives_numpys_model(all_messages: list[CorpusMessage]) -> None:
    """Thousands of steps in a row (the corpus in key order, as `train` takes it): the two
    ways end with the same model."""
    fast, slow = ByteModel(), ByteModel()
    for message in sorted(all_messages, key=lambda m: message_key(m.data)):
        spam = message.label == "spam"
        assert fast.learn_message(message.data, spam) == slow.learn(message_buckets(message.data), spam)
    assert fast.steps == slow.steps > 300
    np.testing.assert_allclose(fast.weights, slow.weights, rtol=0, atol=1e-6)


@_FAST_ONLY
def test_the_c_core_refuses_weights_it_cannot_use() -> None:
    fast = bytemodel._fast
    for bad in (np.zeros(1000, np.float32), np.zeros(1 << 10, np.float64), np.zeros(1 << 26, np.float32)[::2][:1 << 10]):
        with pytest.raises((ValueError, BufferError)):
            fast.byte_log_odds(b"Subject: x\n\nbody", bad, *READING)
    frozen = np.zeros(1 << 10, np.float32)
    frozen.flags.writeable = False
    assert fast.byte_log_odds(b"Subject: x\n\nbody", frozen, *READING) == 0.0
    with pytest.raises((ValueError, BufferError)):  # a step needs weights it may write
        fast.byte_step(b"Subject: x\n\nbody", frozen, *READING, 1.0, 0.01, 0.1)
    for head, tail in ((-1, 0), (0, -1), (16_000, 1_000), (sys.maxsize, sys.maxsize)):  # within the scan
        with pytest.raises(ValueError):
            fast.message_sample(b"Subject: x\n\nbody", head, tail, False)


def test_line_ends_and_filters_headers_do_not_change_what_is_read() -> None:
    plain = b"From: a@example.com\nSubject: hello\n\nbody text\n"
    crlf = plain.replace(b"\n", b"\r\n")
    filtered = (b"X-Spam-Status: Yes, score=12.0\n\trequired=5.0 tests=BAYES_99\n"
                b"From: a@example.com\nX-Spam-Flag: YES\nSubject: hello\n"
                b"x-bogosity: Spam, tests=bogofilter\n\nbody text\n")
    for reading in READINGS.values():
        read = plain.lower() if reading.fold else plain
        assert byte_sample(crlf, reading) == byte_sample(plain, reading) == byte_sample(filtered, reading) == read
    # the same words in the body are read: only header lines are filters' headers
    body = b"Subject: x\n\nX-Spam-Status: quoted in a reply\n"
    assert byte_sample(body) == body.lower()


def test_it_reads_the_start_and_the_end_in_lower_case() -> None:
    """bm2's reading: the first 2,000 and the last 1,000 bytes (signatures, list footers,
    the end of an attachment), letters folded; bm1's: the first 3,000 as they are."""
    head = b"From: A@Example.COM\r\nSubject: Offer\r\n\r\n" + b"Start " * 600
    end = b"-- \r\nUnsubscribe: HTTP://Example.COM/Stop\r\n"
    for message in (head + b"middle " * 500 + end, head + b"middle " * 5000 + end):  # scan and beyond
        lf = message.replace(b"\r\n", b"\n")
        assert byte_sample(message) == (lf[:2000] + lf[-1000:]).lower()
        assert byte_sample(message, READINGS["bm1"]) == lf[:3000]
    short = head[:500] + end  # no longer than both: read whole
    assert byte_sample(short) == short.replace(b"\r\n", b"\n").lower()
    # the same header block at the end of a long message is body text there, and is read
    tail = b"\n\nX-Spam-Flag: YES\n"
    assert byte_sample(head + b"x" * 3000 + tail).endswith(tail.lower())


def test_a_step_moves_toward_the_label_unless_already_sure() -> None:
    model = ByteModel()
    spam = grams(b"Subject: cheap pills\n\nbuy now")
    assert model.learn(spam, True) and model.log_odds(spam) > 0
    for _ in range(2000):  # until the model is sure of it, by the thick threshold
        if not model.learn(spam, True):
            break
    sure = 1 / (1 + math.exp(-model.log_odds(spam)))
    assert sure >= 1 - bytemodel.THICK
    steps = model.steps
    assert not model.learn(spam, True) and model.steps == steps
    assert model.learn(spam, False)  # the other label always moves it back


def test_encoding_round_trips_and_damage_is_named() -> None:
    model = ByteModel()
    model.learn(grams(b"some message"), True)
    model.learn(grams(b"another message"), False)
    again = ByteModel.decode(model.encode())
    assert (again.spam_steps, again.ham_steps) == (1, 1)
    assert np.array_equal(again.weights, model.weights)
    text = model.encode()
    head, bits, spam, ham, packed = text.split(":", 4)
    for damaged, why in [("xx" + text, "not a byte model"),
                         (f"{head}:{bits}:{spam}:{packed}", "not a byte model"),
                         (f"{head}:20:{spam}:{ham}:{packed}", r"2\^20 buckets"),
                         (f"{head}:{bits}:many:{ham}:{packed}", "step counts"),
                         (f"{head}:{bits}:{spam}:{ham}:{packed[:-8]}", "bytes of weights"),
                         (f"{head}:{bits}:{spam}:{ham}:{packed[:-4]}!!!!", "base64")]:
        with pytest.raises(ValueError, match=why):
            ByteModel.decode(damaged)
    nan = model.weights.copy()
    nan[5] = np.nan
    with pytest.raises(ValueError, match="finite"):
        ByteModel.decode(ByteModel(nan, 1, 0).encode())


@pytest.fixture(scope="module")
def sample(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> tuple[list[SourceItem], list[SourceItem]]:
    train, _ = split
    spam = as_items([m for m in train if m.label == "spam"][:260])
    ham = as_items([m for m in train if m.label == "ham"][:260])
    return spam, ham


def model_of(store: LmdbStore) -> ByteModel | None:
    return bytemodel.read_model(store.meta_value(bytemodel.META_NAME))


def test_learning_writes_the_model_with_the_batch(store: LmdbStore,
                                                  sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    spam, ham = sample
    Learner(store, batch_size=50).learn(spam[:100], Label.SPAM)
    first = model_of(store)
    assert first is not None and first.steps > 0
    assert first.steps <= bytemodel.RUN_LESSONS  # one run teaches it at most that many
    assert store.magic()["byte_model_spam_steps"] == first.spam_steps
    assert store.magic()["byte_model_format"] == bytemodel.FORMAT == "bm2"
    serial = store.meta_value(bytemodel.META_SERIAL)
    Learner(store).learn(spam[:100], Label.SPAM)  # known already: nothing learned, no step
    assert store.meta_value(bytemodel.META_SERIAL) == serial
    stepped_on = [m for m in store.seen_records() if m.byte_step]
    assert len(stepped_on) == first.steps  # each step kept with its message's seen mark
    assert sum(m.byte_step > 0 for m in stepped_on) == first.spam_steps
    first_ten = {message_key(item.data or b"") for item in spam[:10]}
    taken_back = sum(m.key in first_ten for m in stepped_on)
    assert taken_back > 0
    Learner(store).learn(spam[:10], Label.HAM)  # relearned: spam's steps taken back, then ham's
    relearned = model_of(store)
    assert relearned is not None and relearned.ham_steps > 0
    assert relearned.spam_steps == first.spam_steps - taken_back
    assert store.meta_value(bytemodel.META_SERIAL) != serial
    some = grams(byte_sample(spam[0].data or b""))
    assert relearned.log_odds(some) < first.log_odds(some)
    ham_steps = {m.key: m.byte_step for m in store.seen_records() if m.key in first_ten}
    assert all(step <= 0 for step in ham_steps.values())
    Learner(store).learn(spam[:10], None)  # forgetting takes back what they taught it
    forgotten = model_of(store)
    assert forgotten is not None and forgotten.ham_steps == 0
    assert forgotten.spam_steps == relearned.spam_steps
    expected = relearned.weights.copy()
    for item in spam[:10]:
        expected[message_buckets(item.data or b"")] -= np.float32(ham_steps[message_key(item.data or b"")])
    np.testing.assert_allclose(forgotten.weights, expected, atol=1e-6)
    assert not any(m.key in first_ten for m in store.seen_records())
    with pytest.raises(RuntimeError):  # a batch that fails writes no step either
        with store.writer() as writer:
            writer.set_meta(bytemodel.META_NAME, ByteModel().encode())
            raise RuntimeError("mid-batch")
    after = model_of(store)
    assert after is not None and np.array_equal(after.weights, forgotten.weights)


def test_its_vote_joins_bayes_once_bayes_judges(store: LmdbStore, monkeypatch: pytest.MonkeyPatch,
                                                sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    monkeypatch.setitem(bytemodel.MIN_STEPS, bytemodel.FORMAT, 3)  # (a sample this small teaches it little)
    spam, ham = sample
    learner = Learner(store)
    classifier = BayesClassifier(store, BayesParams())
    message = spam[250].data or b""
    keys = learner.analyzer.analyze(message).hashes
    buckets = grams(byte_sample(message))
    learner.learn(spam[:150], Label.SPAM)
    waiting = classifier.score(keys, message=message)  # Bayes abstains: so does the sum
    assert waiting.probability is None and waiting.byte_log_odds is None
    learner.learn(spam[150:240], Label.SPAM)
    learner.learn(ham[:240], Label.HAM)
    alone = classifier.score(keys)
    both = classifier.score(keys, message=message)
    model = model_of(store)
    assert model is not None and alone.probability is not None and both.probability is not None
    assert both.chi2_probability == alone.probability
    assert both.byte_log_odds == pytest.approx(model.log_odds(buckets))
    assert np.array_equal(buckets, message_buckets(message))
    assert both.log_odds == pytest.approx(alone.log_odds + model.log_odds(buckets) + BIAS)
    assert both.probability == pytest.approx(1 / (1 + math.exp(-both.log_odds)))
    [many] = classifier.score_many([keys], messages=[message])
    assert many.log_odds == pytest.approx(both.log_odds)


def test_a_database_without_a_model_scores_as_before(store: LmdbStore,
                                                     sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """A database learned before the byte model (or with it dropped) is Bayes alone."""
    spam, ham = sample
    learner = Learner(store)
    learner.learn(spam[:220], Label.SPAM)
    learner.learn(ham[:220], Label.HAM)
    with store.writer() as writer:  # as a database from before the model
        writer.set_meta(bytemodel.META_NAME, "")
        writer.set_meta(bytemodel.META_SERIAL, "")
    classifier = BayesClassifier(store)
    message = spam[230].data or b""
    keys = learner.analyzer.analyze(message).hashes
    result = classifier.score(keys, message=message)
    assert result.byte_log_odds is None
    assert result.log_odds == classifier.score(keys).log_odds


def test_dump_restore_keeps_it_and_a_damaged_one_changes_nothing(
        store: LmdbStore, tmp_path: Path, sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    spam, _ = sample
    Learner(store).learn(spam[:30], Label.SPAM)
    text = io.StringIO()
    store.dump(text)
    assert "\nmeta bytemodel bm2:" in text.getvalue()
    with LmdbStore(tmp_path / "copy") as copy:
        copy.restore(io.StringIO(text.getvalue()))
        restored = model_of(copy)
        original = model_of(store)
        assert restored is not None and original is not None
        assert np.array_equal(restored.weights, original.weights)
        lines = text.getvalue().splitlines(keepends=True)
        number = next(i for i, line in enumerate(lines) if line.startswith("meta bytemodel "))
        lines[number] = lines[number].rstrip("\n")[:-24] + "\n"  # cut short, still base64
        with pytest.raises(StoreError, match=f"dump line {number + 1}.*bytes of weights"):
            copy.restore(io.StringIO("".join(lines)))
        again = model_of(copy)
        assert again is not None and np.array_equal(again.weights, original.weights)


def test_forgetting_takes_back_exactly_the_step_a_message_taught(
        store: LmdbStore, sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """The model is a sum of steps: forgetting a message subtracts its own, kept with its
    seen mark, so the weights are what the other messages' steps made them; relearning
    takes the old step back before taking one toward the new label."""
    spam, _ = sample
    first = spam[0].data or b""
    after_first = ByteModel()
    after_first.learn_message(first, True)  # a second spam the model is not yet sure of
    other = next(item for item in spam[1:] if after_first.learn_message(item.data or b"", True))
    second = other.data or b""
    Learner(store).learn([spam[0]], Label.SPAM)
    Learner(store).learn([other], Label.SPAM)
    steps = {m.key: m.byte_step for m in store.seen_records()}
    assert all(step > 0 for step in steps.values()) and len(steps) == 2
    Learner(store).learn([spam[0]], None)
    expected = np.zeros(1 << bytemodel.BITS, dtype=np.float32)
    expected[message_buckets(second)] += np.float32(steps[message_key(second)])
    model = model_of(store)
    assert model is not None and (model.spam_steps, model.ham_steps) == (1, 0)
    np.testing.assert_allclose(model.weights, expected, atol=1e-7)
    assert store.learned_as(message_key(first)) is None
    Learner(store).learn([other], Label.HAM)  # from nothing again, then one step toward ham
    alone = ByteModel()
    alone.learn(message_buckets(second), False)
    model = model_of(store)
    assert model is not None and (model.spam_steps, model.ham_steps) == (0, 1)
    np.testing.assert_allclose(model.weights, alone.weights, atol=1e-7)
    assert [m.byte_step < 0 for m in store.seen_records()] == [True]


def test_marks_from_before_steps_were_kept_still_forget(
        store: LmdbStore, sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """A seen mark in the short layout (label and day, as databases before this kept them)
    forgets the message's counts and leaves the model; a mark of any other size is damage."""
    spam, _ = sample
    Learner(store).learn(spam[:3], Label.SPAM)
    key = message_key(spam[0].data or b"")
    with store.writer() as writer:  # the mark as an older spamkit wrote it
        writer.run_in_transaction(lambda txn: txn.put(key, SEEN_LAYOUT.pack(1, today()),
                                                      db=store._seen_db))
    before = model_of(store)
    summary = Learner(store).learn(spam[:1], None)
    assert summary.forgotten == 1 and store.totals().nspam == 2
    after = model_of(store)
    assert before is not None and after is not None
    assert np.array_equal(after.weights, before.weights) and after.steps == before.steps
    other = message_key(spam[1].data or b"")
    with store.writer() as writer:
        writer.run_in_transaction(lambda txn: txn.put(other, b"\x01\x00\x00\x00", db=store._seen_db))
    with pytest.raises(StoreCorrupt, match="seen record is 4 bytes"):
        list(store.seen_records())


def test_a_step_with_no_model_left_to_take_it_from_is_dropped(
        store: LmdbStore, sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """A mark whose step outlived its model (the model's values removed by hand) forgets
    the counts and makes no model out of the step alone."""
    spam, _ = sample
    Learner(store).learn(spam[:3], Label.SPAM)
    assert any(m.byte_step for m in store.seen_records())
    with store.writer() as writer:
        writer.run_in_transaction(lambda txn: [txn.delete(name, db=store._meta_db)
                                               for name in (b"bytemodel", b"bytemodel_serial")])
    summary = Learner(store).learn(spam[:3], None)
    assert summary.forgotten == 3 and store.totals().nspam == 0
    assert store.meta_value(bytemodel.META_NAME) is None


def test_the_steps_go_through_a_dump(store: LmdbStore, tmp_path: Path,
                                     sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """A dump carries each mark's step; restored without its model, the marks lose them
    (there is nothing to take a step back out of); a step no step can be is refused."""
    spam, _ = sample
    Learner(store).learn(spam[:20], Label.SPAM)
    text = io.StringIO()
    store.dump(text)
    seen_lines = [line for line in text.getvalue().splitlines() if line.startswith("seen ")]
    assert sum(len(line.split()) == 5 for line in seen_lines) == model_of(store).steps  # type: ignore[union-attr]
    with LmdbStore(tmp_path / "copy") as copy:
        copy.restore(io.StringIO(text.getvalue()))
        again = io.StringIO()
        copy.dump(again)
        assert again.getvalue() == text.getvalue()
        without_model = "".join(line for line in text.getvalue().splitlines(keepends=True)
                                if not line.startswith("meta bytemodel"))
        copy.restore(io.StringIO(without_model))
        assert model_of(copy) is None
        assert not any(m.byte_step for m in copy.seen_records())
        lines = text.getvalue().splitlines(keepends=True)
        number = next(i for i, line in enumerate(lines) if len(line.split()) == 5 and line.startswith("seen"))
        for bad in ("nan", "0.5", "-inf", "x"):
            lines_bad = list(lines)
            lines_bad[number] = " ".join(lines[number].split()[:4] + [bad]) + "\n"
            with pytest.raises(StoreError, match=f"dump line {number + 1}"):
                copy.restore(io.StringIO("".join(lines_bad)))
        assert model_of(copy) is None  # (the refused restores changed nothing)


def test_a_damaged_model_in_the_database_is_a_clear_error(store: LmdbStore,
                                                          sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    spam, ham = sample
    Learner(store).learn(spam[:210], Label.SPAM)
    Learner(store).learn(ham[:210], Label.HAM)
    with store.writer() as writer:
        writer.set_meta(bytemodel.META_NAME, "bm1:18:3:AAAA")
        writer.set_meta(bytemodel.META_SERIAL, "changed")
    message = spam[220].data or b""
    keys = Learner(store).analyzer.analyze(message).hashes
    with pytest.raises(StoreCorrupt, match="byte model is damaged: .*; `spamkit db dump`, remove"):
        BayesClassifier(store).score(keys, message=message)
    text = io.StringIO()  # what the error advises: dump, drop the model's line, restore
    store.dump(text)
    kept = "".join(line for line in text.getvalue().splitlines(keepends=True)
                   if not line.startswith("meta bytemodel "))
    store.restore(io.StringIO(kept))
    assert store.meta_value(bytemodel.META_NAME) is None
    assert store.meta_value(bytemodel.META_SERIAL) is None
    result = BayesClassifier(store).score(keys, message=message)
    assert result.probability is not None and result.byte_log_odds is None
    assert store.totals().nspam == 210 and store.learned_as(message_key(spam[0].data or b"")) is Label.SPAM


def test_a_reset_takes_the_model_with_the_tokens(store: LmdbStore,
                                                 sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    spam, _ = sample
    Learner(store).learn(spam[:20], Label.SPAM)
    assert model_of(store) is not None
    store.reset()
    assert model_of(store) is None and store.meta_value(bytemodel.META_SERIAL) is None
    facts = store.magic()
    assert (facts["nspam"], facts["ntokens"], facts["byte_model_spam_steps"]) == (0, 0, None)


def test_long_runs_of_one_label_do_not_make_it_vote(store: LmdbStore,
                                                    sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """`learn --spam` of a folder, then `--ham` of another: each run teaches the model at
    most RUN_LESSONS messages, so it stays below its MIN_STEPS of each label and Bayes scores
    alone, as before the model (it would otherwise lean toward the label learned last)."""
    spam, ham = sample
    learner = Learner(store, batch_size=40)
    learner.learn(spam, Label.SPAM)
    learner.learn(ham, Label.HAM)
    model = model_of(store)
    assert model is not None
    assert model.spam_steps <= bytemodel.RUN_LESSONS and model.ham_steps <= bytemodel.RUN_LESSONS
    assert not model.votes
    message = spam[0].data or b""
    keys = learner.analyzer.analyze(message).hashes
    result = BayesClassifier(store).score(keys, message=message)
    assert result.probability is not None and result.byte_log_odds is None


def bagged_reference(start: ByteModel, lessons: list[tuple[bytes, bool]],
                     reading: Reading = READING) -> tuple[np.ndarray, int, int]:
    """What `train` should leave, worked out the long way in numpy: COPIES copies of
    `start`, each learning every lesson (message, is spam) in its copy_order of the lessons
    sorted by message key; the mean of their weights, and the step counts plus how many
    lessons' mean step is toward each label."""
    lessons = sorted(lessons, key=lambda lesson: message_key(lesson[0]))
    keys = [message_key(data) for data, _ in lessons]
    copies, steps = [], np.zeros(len(lessons))
    for copy in range(bytemodel.COPIES):
        model = start.copy()
        for i in bytemodel.copy_order(keys, copy):
            data, spam = lessons[i]
            steps[i] += model.learn(grams(byte_sample(data, reading)), spam)
        copies.append(model.weights)
    return (np.mean(copies, axis=0), start.spam_steps + int((steps > 0).sum()),
            start.ham_steps + int((steps < 0).sum()))


def test_train_teaches_it_the_mean_of_copies_learning_in_their_own_orders(
        tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """`train` offers the model every message of the corpus, not only those Bayes learns,
    and keeps the mean of COPIES copies, the first learning in message-key order and each
    other in its own content-keyed order: weight for weight what copies learned one by
    one in numpy give. Its counts are the messages holding a step toward each label, as
    their seen marks record; on the training folds it votes."""
    train, _ = split
    with LmdbStore(tmp_path / "db", sync=False) as store:
        Learner(store).train(as_items([m for m in train if m.label == "spam"]),
                             as_items([m for m in train if m.label == "ham"]),
                             BayesClassifier(store), 0.999)
        model = model_of(store)
        marks = [m for m in store.seen_records() if m.byte_step]
    weights, spam_steps, ham_steps = bagged_reference(ByteModel(), [(m.data, m.label == "spam") for m in train])
    assert model is not None and model.votes
    assert (model.spam_steps, model.ham_steps) == (spam_steps, ham_steps)
    np.testing.assert_allclose(model.weights, weights, rtol=0, atol=1e-6)
    assert 0 < sum(m.byte_step > 0 for m in marks) <= spam_steps  # (marks: what train learned)
    keys = sorted(message_key(m.data) for m in train)
    orders = [bytemodel.copy_order(keys, copy) for copy in range(bytemodel.COPIES)]
    assert orders[0] == list(range(len(keys)))
    assert all(sorted(order) == orders[0] for order in orders)  # each a permutation,
    assert len({tuple(order) for order in orders}) == bytemodel.COPIES  # each its own


def test_a_train_stopped_midway_leaves_the_committed_batches_share(
        store: LmdbStore, sample: tuple[list[SourceItem], list[SourceItem]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies' steps are worked out before the first batch, and each batch commits its
    own messages' share with their counts: a run whose third commit fails (a full disk)
    leaves the model holding the first two batches' steps exactly, with their marks."""
    spam, ham = sample
    items = [*spam[:150], *ham[:150]]
    writer, commits = store.writer, []

    def failing_writer() -> object:
        commits.append(1)
        if len(commits) == 3:
            raise StoreError("No space left on device")
        return writer()

    monkeypatch.setattr(store, "writer", failing_writer)
    with pytest.raises(LearningStopped):
        Learner(store, batch_size=100).train(spam[:150], ham[:150], BayesClassifier(store), 0.999)
    monkeypatch.undo()
    ordered = sorted(items, key=lambda item: message_key(item.data or b""))
    samples = [byte_sample(item.data or b"") for item in ordered]
    steps = bytemodel.bagged_steps(ByteModel(), [message_key(item.data or b"") for item in ordered], samples,
                                   [item in spam[:150] for item in ordered])
    expected = ByteModel()
    expected.add_steps(samples[:200], steps[:200])
    model = model_of(store)
    assert model is not None and (model.spam_steps, model.ham_steps) == (expected.spam_steps, expected.ham_steps)
    np.testing.assert_allclose(model.weights, expected.weights, rtol=0, atol=1e-6)
    committed = {message_key(item.data or b""): step for item, step in zip(ordered[:200], steps[:200])}
    marks = {m.key: m.byte_step for m in store.seen_records()}
    assert marks and set(marks) <= set(committed)  # nothing of the third batch was marked
    assert all(marks[key] == pytest.approx(committed[key], abs=1e-9) for key in marks)
    totals = store.totals()
    assert totals.nspam + totals.nham == len(marks)


def test_a_model_keeps_the_reading_it_was_built_with(store: LmdbStore,
                                                     sample: tuple[list[SourceItem], list[SourceItem]]) -> None:
    """A database whose model an older spamkit built (bm1: the first 3,000 bytes as they
    are) goes on scoring and learning it in that reading, `train`'s kept samples included,
    and keeps its format; a new model reads as READING does."""
    spam, ham = sample
    old = ByteModel(np.random.default_rng(7).normal(0.0, 0.01, 1 << bytemodel.BITS).astype(np.float32),
                    120, 130, model_format="bm1")
    with store.writer() as writer:
        writer.set_meta(bytemodel.META_NAME, old.encode())
        writer.set_meta(bytemodel.META_SERIAL, "old")
    assert bytemodel.stored_reading(store.meta_value(bytemodel.META_NAME)) == READINGS["bm1"]
    Learner(store).train(spam[:40], ham[:40], BayesClassifier(store), 0.999)
    weights, spam_steps, ham_steps = bagged_reference(
        old, [(item.data or b"", item in spam[:40]) for item in [*spam[:40], *ham[:40]]], READINGS["bm1"])
    model = model_of(store)
    assert model is not None and model.format == "bm1" and model.reading == READINGS["bm1"]
    assert store.magic()["byte_model_format"] == "bm1"  # (what `db magic` shows the admin)
    assert (model.spam_steps, model.ham_steps) == (spam_steps, ham_steps) != (120, 130)
    np.testing.assert_allclose(model.weights, weights, atol=1e-6)
    message = spam[100].data or b""
    assert model.score(message) == pytest.approx(model.log_odds(grams(byte_sample(message, READINGS["bm1"]))))
    assert ByteModel().format == bytemodel.FORMAT and ByteModel().reading == READING
    assert bytemodel.stored_reading(None) == bytemodel.stored_reading("junk") == READING


def test_autolearn_starts_from_the_model_its_scanner_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           sample: tuple[list[SourceItem], list[SourceItem]]
                                                           ) -> None:
    """An autolearn learns from the byte model its scanner's scans already decoded, not
    from the stored megabyte decoded again (~4 ms of each autolearn's ~8). A change
    another writer made meanwhile (the trainer) is still read. The database ends as
    fresh learners, learning the same messages in the same order, leave it."""
    from spamkit.config import config_from_text
    from spamkit.verdict import Scanner

    spam, ham = sample
    paths = (tmp_path / "scanned", tmp_path / "reference")
    for path in paths:
        with LmdbStore(path) as start:
            Learner(start).learn(spam[:220], Label.SPAM)
            Learner(start).learn(ham[:220], Label.HAM)
    decodes = []
    decode = ByteModel.decode.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(ByteModel, "decode", classmethod(lambda cls, text: decodes.append(1) or decode(cls, text)))
    lessons = [(item, Label.SPAM) for item in spam[220:250]] + [(item, Label.HAM) for item in ham[220:250]]
    with LmdbStore(paths[0]) as scanned, LmdbStore(paths[1]) as reference:
        scanner = Scanner.from_config(config_from_text("", None, {}), scanned)
        scanning = 0
        for number, (item, label) in enumerate(lessons):
            if number == 20:  # the trainer, teaching both databases alike
                for store in (scanned, reference):
                    Learner(store).learn(ham[250:256], Label.SPAM)
            before = len(decodes)
            verdict = scanner.scan(item.data or b"")
            verdict.autolearn = label.value  # (as if the rules had chosen it)
            assert scanner.autolearn(item.data or b"", verdict, item.name) == "learned"
            scanning += len(decodes) - before
            Learner(reference).learn([item], label, by="autolearn")
        assert scanning == 2  # the first scan's read, and the read after the trainer's change
        assert [(r.key, r.spam, r.ham, r.day) for r in scanned.records()] == \
            [(r.key, r.spam, r.ham, r.day) for r in reference.records()]
        assert sorted((m.key, m.label, m.byte_step) for m in scanned.seen_records()) == \
            sorted((m.key, m.label, m.byte_step) for m in reference.seen_records())
        taught = {message_key(item.data or b"") for item, _ in lessons}
        assert any(m.byte_step for m in scanned.seen_records() if m.key in taught)  # (it moved)
        ours, theirs = model_of(scanned), model_of(reference)
        assert ours is not None and theirs is not None
        assert (ours.spam_steps, ours.ham_steps) == (theirs.spam_steps, theirs.ham_steps)
        assert np.array_equal(ours.weights, theirs.weights)
