"""What the two sweep models (test_sweep_model.py on Maildirs, test_imap_sweep_model.py
over IMAP) share: the cut that stands for `kill -9`, and the checks on the database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import strategies as st

import spamkit.store.batch as batch_module
from spamkit.analysis import Analyzer
from spamkit.store import Label, LmdbStore

# where a sweep is cut off, and at which of those points (None: it runs to its end)
CUT = st.one_of(st.none(), st.tuples(st.sampled_from(["read", "commit", "remove"]), st.integers(0, 12)))


class PowerCut(BaseException):
    """The sweep's process killed here: nothing after this point runs, and what its open
    write transaction held is never committed (LMDB aborts it as it unwinds)."""


@contextmanager
def wrapped(owner: Any, name: str, wrapper: Callable[..., Any]) -> Iterator[None]:
    """owner.name calls wrapper(original, *args) while the block runs."""
    original = getattr(owner, name)
    setattr(owner, name, lambda *args: wrapper(original, *args))
    try:
        yield
    finally:
        setattr(owner, name, original)


def between_reads(meanwhile: list[tuple[int, tuple[str, int, str]]], cut: tuple[str, int] | None,
                  act: Callable[..., None]) -> Callable[..., Any]:
    """A wrapper for the sweep's read of each message (or fetch of a group), or the
    retention's deletion of each: before the N-th, the user's actions `meanwhile` at N,
    then PowerCut if `cut` is ("read", N)."""
    reads = [0]

    def read(original: Callable[..., Any], *args: Any) -> Any:
        for at, action in meanwhile:
            if at == reads[0]:
                act(*action)
        if cut == ("read", reads[0]):
            raise PowerCut
        reads[0] += 1
        return original(*args)

    return read


@contextmanager
def cut_inside_commits(cut: tuple[str, int] | None) -> Iterator[None]:
    """With cut ("commit", N): PowerCut as the N-th message learned is written, inside its
    batch's write transaction (log_event is called once for each)."""
    written = [0]

    def log_event(original: Callable[..., None], writer: Any, *args: Any) -> None:
        if cut == ("commit", written[0]):
            raise PowerCut
        written[0] += 1
        original(writer, *args)

    with wrapped(batch_module.PendingChanges, "log_event", log_event):
        yield


def check_counts(store: LmdbStore, analyzer: Analyzer, bodies: dict[bytes, bytes],
                 given: dict[bytes, set[Label]]) -> None:
    """Each learned message was given its label by the user, and the token counts and
    totals are those of each learned message counted once (`bodies`: message key to the
    bytes the sweep read)."""
    marks = {mark.key: mark.label for mark in store.seen_records()}
    for key, label in marks.items():
        assert label in given.get(key, set()), "learned with a label the user never gave it"
    expected: Counter[tuple[bytes, Label]] = Counter()
    for key, label in marks.items():
        for token in analyzer.analyze(bodies[key]).hashes:
            expected[token, label] += 1
    stored: Counter[tuple[bytes, Label]] = Counter()
    for record in store.records():
        stored[record.key, Label.SPAM] += record.spam
        stored[record.key, Label.HAM] += record.ham
    assert +stored == +expected
    totals = store.totals()
    labels = list(marks.values())
    assert (totals.nspam, totals.nham) == (labels.count(Label.SPAM), labels.count(Label.HAM))


def check_labels_after_a_whole_sweep(store: LmdbStore, placed: Iterable[tuple[bytes, Label]]) -> None:
    """A sweep that ran to its end alone: each message it found (key, folder's label) is
    learned as ham if it was in LearnAsHam (swept second), else as spam."""
    expected: dict[bytes, Label] = {}
    for key, label in placed:
        expected[key] = Label.HAM if Label.HAM in (label, expected.get(key)) else label
    for key, label in expected.items():
        assert store.learned_as(key) is label
