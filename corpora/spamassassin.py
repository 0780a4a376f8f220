"""The SpamAssassin public corpus in ../shared/corpora, with the project's standard split.

    fold = int(sha1(path).hexdigest(), 16) % 5

with `path` as written in LABELS.tsv; fold 0 is the test set, folds 1-4 training.
Messages are read straight from the tarball (no unpacking needed) and checked against
the SHA-256 in LABELS.tsv.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from corpora.readers import CorpusMessage

TEST_FOLD = 0
FOLDS = 5
_TARBALL = "spamassassin-public-corpus.tar.gz"


def fold_of(path: str) -> int:
    return int(hashlib.sha1(path.encode()).hexdigest(), 16) % FOLDS


def find_corpus() -> Path:
    """$SPAMKIT_CORPUS, else ../shared/corpora/spamassassin beside the checkout."""
    candidates = []
    if os.environ.get("SPAMKIT_CORPUS"):
        candidates.append(Path(os.environ["SPAMKIT_CORPUS"]))
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "corpora" / "spamassassin",
                   Path.cwd().parent / "shared" / "corpora" / "spamassassin"]
    for candidate in candidates:
        if (candidate / "LABELS.tsv").is_file() and (candidate / _TARBALL).is_file():
            return candidate
    raise FileNotFoundError("SpamAssassin corpus not found: set SPAMKIT_CORPUS to the folder "
                            "holding LABELS.tsv and " + _TARBALL)


@dataclass(frozen=True)
class LabelEntry:
    label: str
    path: str
    sha256: str

    @property
    def fold(self) -> int:
        return fold_of(self.path)


class SpamAssassinCorpus:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or find_corpus()
        self.entries = self._read_labels()

    def _read_labels(self) -> list[LabelEntry]:
        entries = []
        with open(self.root / "LABELS.tsv", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("#") or not line.strip():
                    continue
                label, path, digest = line.rstrip("\n").split("\t")
                entries.append(LabelEntry(label, path, digest))
        return entries

    def messages(self, folds: set[int] | None = None, verify: bool = True) -> Iterator[CorpusMessage]:
        """Messages in LABELS.tsv order, optionally only those of some folds."""
        wanted = {e.path: e for e in self.entries if folds is None or e.fold in folds}
        found: dict[str, bytes] = {}
        with tarfile.open(self.root / _TARBALL, "r:gz") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                path = member.name.split("/", 1)[1] if member.name.startswith("spamassassin/") else member.name
                if path in wanted:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        found[path] = handle.read()
        for path, entry in wanted.items():
            data = found.get(path)
            if data is None:
                raise FileNotFoundError(f"{path} is in LABELS.tsv but not in the tarball")
            if verify and hashlib.sha256(data).hexdigest() != entry.sha256:
                raise ValueError(f"{path}: SHA-256 differs from LABELS.tsv")
            yield CorpusMessage(entry.label, path, data)

    def split(self) -> tuple[list[CorpusMessage], list[CorpusMessage]]:
        """(training set: folds 1-4, test set: fold 0)."""
        train: list[CorpusMessage] = []
        test: list[CorpusMessage] = []
        for message in self.messages():
            (test if fold_of(message.path) == TEST_FOLD else train).append(message)
        return train, test

    def write_split(self, destination: Path, test_fold: int = TEST_FOLD,
                    leave_out: Collection[int] = ()) -> dict[str, int]:
        """Lay the split out as files: DEST/{train,test}/{spam,ham}/<folder>.<file>.

        The standard split by default; `test_fold` and `leave_out` lay out a
        cross-validation round instead (fold 2 tested, folds 1, 3 and 4 trained on, the
        standard test fold left out), so choices are made without looking at fold 0.
        """
        counts: dict[str, int] = {}
        for message in self.messages():
            fold = fold_of(message.path)
            if fold in leave_out:
                continue
            part = "test" if fold == test_fold else "train"
            folder = destination / part / message.label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / message.path.replace("/", ".")).write_bytes(message.data)
            counts[f"{part}/{message.label}"] = counts.get(f"{part}/{message.label}", 0) + 1
        return counts
