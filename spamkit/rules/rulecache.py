"""What loading found out about each regex rule, kept so that the next start need not redo it.

Loading SpamAssassin's rule set compiles ~2,400 regexes, tries each on adversarial input
(0.9 s) and reads each for its literal prefilter: 2.5 s of every `spamkit check`. The
verdicts (compiles or not, too slow or not, the literals, the paragraph shortcut) depend
only on the regex text and on the code that judged it, so they are kept in the cache
directory under a digest of both. On a warm start a rule's regex is compiled on its
first use, and a rule that is never needed (its prefilter never lets it through) is
never compiled. A rule that failed keeps its error, reported again with its file and
line as on the first load.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import regex

CACHE_FORMAT = 1
STALE_DAYS = 30  # cache files unused this long are removed (rule updates leave old ones)
_CACHE_FILES = ("rules-*.json", "multiscan-*.hsdb")
# The modules whose code decides a verdict: a change to any of them starts a new cache
# (multiscan.py compiles RE2's patterns, and so decides which forms RE2 takes).
_JUDGES = ("compile.py", "perl_regex.py", "prefilter.py", "rulecache.py", "linear.py", "multiscan.py")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/spamkit, else ~/.cache/spamkit."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spamkit"


@lru_cache(maxsize=None)
def code_digest(modules: tuple[str, ...]) -> str:
    """A digest of these modules' source (in spamkit/rules/), part of a cache key: when
    the code that made a cached result changes, the result is made afresh."""
    # (whether RE2 is installed decides whether a rule too slow for `regex` runs at all:
    # spamkit.rules.linear)
    re2 = importlib.util.find_spec("re2") is not None
    digest = hashlib.sha256(f"{CACHE_FORMAT} regex {regex.__version__} re2 {re2}".encode())
    here = Path(__file__).resolve().parent
    for name in modules:
        try:
            digest.update((here / name).read_bytes())
        except OSError:
            digest.update(name.encode())
    return digest.hexdigest()


class RuleCache:
    """Verdicts by (kind, probed, regex text); `save` writes them if anything was new."""

    def __init__(self, directory: Path | None, keys: list[str]) -> None:
        self._path: Path | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if directory is None:
            return
        digest = hashlib.sha256(code_digest(_JUDGES).encode())
        for key in keys:
            digest.update(key.encode("utf-8", "surrogatepass") + b"\0")
        self._path = directory / f"rules-{digest.hexdigest()[:40]}.json"
        data = read_cached(self._path)
        try:
            loaded = json.loads(data) if data is not None else None
            if isinstance(loaded, dict):
                self._entries = loaded
        except ValueError:
            pass  # a damaged cache: judge again

    @staticmethod
    def key(kind: str, probed: bool, text: str) -> str:
        return f"{kind}:{int(probed)}:{text}"

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self._entries[key] = entry
        self._dirty = True

    def save(self) -> None:
        if self._path is not None and self._dirty:
            write_cached(self._path, json.dumps(self._entries).encode("utf-8"))


def read_cached(path: Path) -> bytes | None:
    """A cache file's bytes, or None; reading it marks it used (its time), so that
    pruning keeps it."""
    try:
        data = path.read_bytes()
        os.utime(path)
    except OSError:
        return None
    return data


def write_cached(path: Path, data: bytes) -> None:
    """Write a cache file atomically (directory 0700), then remove stale ones; a cache
    that cannot be written is not an error, only a slower next start."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
            temporary = handle.name
            handle.write(data)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:  # a full disk: leave no half-written file behind
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return
    _prune(path.parent)


def _prune(directory: Path) -> None:
    """Remove cache files no start has used for STALE_DAYS (those of rule sets replaced
    by an update): each rule set leaves ~20 MB of compiled databases."""
    limit = time.time() - STALE_DAYS * 86400
    for pattern in _CACHE_FILES:
        for path in directory.glob(pattern):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except OSError:
                continue
