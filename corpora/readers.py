"""Generic readers: a directory of files, a Maildir or an mbox, all given one label."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from spamkit.sources import iter_messages


@dataclass(frozen=True)
class CorpusMessage:
    label: str  # "spam" or "ham"
    path: str  # where it came from (a file, or mbox#N)
    data: bytes


def read_labelled_path(path: str, label: str) -> Iterator[CorpusMessage]:
    """Every readable message under `path` (file, directory, Maildir or mbox) as `label`."""
    for item in iter_messages([path]):
        if item.data is not None:
            yield CorpusMessage(label, item.name, item.data)
