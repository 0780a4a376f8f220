"""Shared fixtures: the real corpus (read from ../shared at run time) and fresh databases."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from corpora import CorpusMessage, SpamAssassinCorpus
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore

# Temporary files in memory when the machine has room there. The suite makes and removes
# some 200,000 files (one test fills an IMAP folder with 160,000 messages) and commits to
# LMDB thousands of times; on this project's machines (ext4 mounted with discard) a file
# costs 241 us to create and an fsync milliseconds, on /dev/shm 39 us and nothing: the
# three IMAP tests with the largest folders took 121 s there, 35 s here. A TMPDIR the
# caller set is left as it is.
_MIN_FREE_FOR_TEMP = 4 << 30  # the suite's peak is under 1 GiB with passed tests' files removed


def _memory_backed_temp() -> str | None:
    """/dev/shm if it is a writable tmpfs with room for the suite's temporary files."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as mounts:
            on_shm = [line.split()[2] for line in mounts if line.split()[1:2] == ["/dev/shm"]]
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= _MIN_FREE_FOR_TEMP
    return "/dev/shm" if on_shm[-1:] == ["tmpfs"] and roomy and os.access("/dev/shm", os.W_OK) else None


if "TMPDIR" not in os.environ and (_temp := _memory_backed_temp()):
    os.environ["TMPDIR"] = _temp  # (the servers and commands the tests start inherit it)
    tempfile.tempdir = None  # (gettempdir() reads TMPDIR again)

settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled rules go to a cache of the test session's own, not the user's (it is
    shared by the whole session: Debian's rule set compiles once)."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the user's real database or configuration."""
    for name in ("SPAMKIT_DB", "SPAMKIT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory other users may enter (pytest's tmp_path is root's alone):
    for what a daemon reads after it gave up root, or where a test looks at who may read
    a file."""
    made = Path(tempfile.mkdtemp(prefix="spamkit-open-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made)


@pytest.fixture(scope="session")
def corpus() -> SpamAssassinCorpus:
    return SpamAssassinCorpus()


@pytest.fixture(scope="session")
def all_messages(corpus: SpamAssassinCorpus) -> list[CorpusMessage]:
    return list(corpus.messages())


@pytest.fixture(scope="session")
def split(corpus: SpamAssassinCorpus) -> tuple[list[CorpusMessage], list[CorpusMessage]]:
    return corpus.split()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    with LmdbStore(tmp_path / "db") as opened:
        yield opened


def as_items(messages: list[CorpusMessage]) -> list[SourceItem]:
    return [SourceItem(m.path, m.data) for m in messages]


@pytest.fixture(scope="session")
def trained_db(tmp_path_factory: pytest.TempPathFactory,
               split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Path:
    """A database trained on folds 1-4 of the standard split (read-only for tests)."""
    path = tmp_path_factory.mktemp("trained") / "db"
    train, _ = split
    with LmdbStore(path) as store:
        learner = Learner(store)
        for label in (Label.SPAM, Label.HAM):
            learner.learn(as_items([m for m in train if m.label == label.value]), label)
    return path
