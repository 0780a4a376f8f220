"""The scanner the fuzzing tools drive: built-in rules (and any rule files asked for, such
as Debian's SpamAssassin rules) and a Bayes database trained on folds 1-4 of the
SpamAssassin corpus (read from ../shared at run time), kept in a work directory."""

from __future__ import annotations

from pathlib import Path

from benchmarks.training import train_on_training_folds
from spamkit.config import load_config
from spamkit.store import LmdbStore
from spamkit.verdict import Scanner


def trained_scanner(workdir: Path, rule_paths: tuple[str, ...] = ()) -> Scanner:
    """The default configuration (no file, no environment) on workdir/db, trained once,
    with `rule_paths` read after the built-in rules."""
    store = LmdbStore(workdir / "db", sync=False)
    if store.totals().nspam == 0:
        train_on_training_folds(store)
    return Scanner.from_config(load_config("/nonexistent/spamkit.toml", environ={}), store,
                               extra_rules=rule_paths)
