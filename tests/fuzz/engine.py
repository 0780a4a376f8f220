"""The scanner the fuzzing tools drive: built-in rules and a Bayes database trained on folds
1-4 of the SpamAssassin corpus (read from ../shared at run time), kept in a work directory."""

from __future__ import annotations

from pathlib import Path

from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of
from spamkit.config import load_config
from spamkit.learn import Learner, train_selector
from spamkit.sources import SourceItem
from spamkit.store import LmdbStore
from spamkit.verdict import Scanner


def trained_scanner(workdir: Path) -> Scanner:
    """The default configuration (no file, no environment) on workdir/db, trained once."""
    store = LmdbStore(workdir / "db", sync=False)
    if store.totals().nspam == 0:
        corpus = [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) != TEST_FOLD]
        Learner(store).train([SourceItem(m.path, m.data) for m in corpus if m.label == "spam"],
                             [SourceItem(m.path, m.data) for m in corpus if m.label == "ham"],
                             train_selector(store))
    return Scanner.from_config(load_config("/nonexistent/spamkit.toml", environ={}), store)
