"""The standard split, and the cross-validation rounds that keep fold 0 unread."""

from __future__ import annotations

from pathlib import Path

from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of


def _laid_out(root: Path) -> dict[str, set[str]]:
    return {f"{part}/{label}": {p.name for p in (root / part / label).iterdir()}
            for part in ("train", "test") for label in ("spam", "ham")}


def _fold(file_name: str) -> int:  # files are named <folder>.<file>, from <folder>/<file>
    return fold_of(file_name.replace(".", "/", 1))


def test_the_standard_split_has_the_documented_sizes(corpus: SpamAssassinCorpus, tmp_path: Path) -> None:
    counts = corpus.write_split(tmp_path)
    assert counts == {"train/spam": 1502, "train/ham": 3297, "test/spam": 394, "test/ham": 853}
    files = _laid_out(tmp_path)
    assert {_fold(name) for name in files["test/spam"] | files["test/ham"]} == {TEST_FOLD}
    assert TEST_FOLD not in {_fold(name) for name in files["train/spam"] | files["train/ham"]}


def test_a_cross_validation_round_never_holds_the_test_fold(corpus: SpamAssassinCorpus,
                                                           tmp_path: Path) -> None:
    counts = corpus.write_split(tmp_path, test_fold=2, leave_out=(TEST_FOLD,))
    files = _laid_out(tmp_path)
    assert {_fold(name) for name in files["test/spam"] | files["test/ham"]} == {2}
    assert {_fold(name) for name in files["train/spam"] | files["train/ham"]} == {1, 3, 4}
    assert sum(counts.values()) == 1502 + 3297  # folds 1-4, each message once


def test_the_split_command_takes_help_as_help_not_as_its_destination(tmp_path: Path) -> None:
    """`python -m corpora split --help` once wrote the split into a directory named --help."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "corpora", "split", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "DEST" in result.stdout
    assert list(tmp_path.iterdir()) == []
