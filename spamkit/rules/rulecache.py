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

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import regex

CACHE_FORMAT = 1
# The modules whose code decides a verdict: a change to any of them starts a new cache.
_JUDGES = ("compile.py", "perl_regex.py", "prefilter.py", "rulecache.py")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/spamkit, else ~/.cache/spamkit."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spamkit"


@lru_cache(maxsize=1)
def _code_digest() -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT} regex {regex.__version__}".encode())
    here = Path(__file__).resolve().parent
    for name in _JUDGES:
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
        digest = hashlib.sha256(_code_digest().encode())
        for key in keys:
            digest.update(key.encode("utf-8", "surrogatepass") + b"\0")
        self._path = directory / f"rules-{digest.hexdigest()[:40]}.json"
        try:
            loaded = json.loads(self._path.read_text("utf-8"))
            if isinstance(loaded, dict):
                self._entries = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: judge again

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
        """Write atomically; a cache that cannot be written is not an error."""
        if self._path is None or not self._dirty:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=self._path.parent,
                                             delete=False) as handle:
                json.dump(self._entries, handle)
            os.replace(handle.name, self._path)
        except OSError:
            pass
