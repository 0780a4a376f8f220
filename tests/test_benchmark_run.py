"""benchmarks.run refuses to write figures measured while the code changed under it: a
session once edited spamkit during a run, and the later rounds measured other code (and,
under PYTHONDONTWRITEBYTECODE, compiled the changed modules in every process)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.run import CODE, code_state, commit_described


def test_the_code_digest_moves_with_any_source_or_extension(tmp_path: Path) -> None:
    for package in CODE:
        (tmp_path / package).mkdir()
    (tmp_path / "spamkit" / "bayes.py").write_text("A = 1\n")
    (tmp_path / "trainer" / "notes.txt").write_text("not code\n")
    before = code_state(tmp_path)
    (tmp_path / "trainer" / "notes.txt").write_text("still not code\n")
    assert code_state(tmp_path) == before
    (tmp_path / "spamkit" / "bayes.py").write_text("A = 2\n")
    edited = code_state(tmp_path)
    assert edited != before
    (tmp_path / "smtpfilter" / "_fast.so").write_bytes(b"\x7fELF")
    assert code_state(tmp_path) != edited
    assert commit_described(tmp_path) == "an unknown commit"  # not a git checkout
