"""Comparing databases in the crash and fault tests."""

from __future__ import annotations

from pathlib import Path

from spamkit.store import LmdbStore


def database_state(path: Path) -> tuple[object, ...]:
    """What two databases must share to hold the same learning: totals, every token's
    counts, and the learned-once marks."""
    with LmdbStore(path) as store:
        return (store.totals(), sorted((r.key, r.spam, r.ham) for r in store.records()),
                sorted(s.key for s in store.seen_records()))
