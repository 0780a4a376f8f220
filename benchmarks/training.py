"""A store filled as the main job fills one: `spamkit train`'s method on folds 1-4."""

from __future__ import annotations

from corpora.spamassassin import SpamAssassinCorpus
from spamkit.learn import Learner, LearnSummary, train_selector
from spamkit.sources import SourceItem
from spamkit.store import LmdbStore


def train_on_training_folds(store: LmdbStore, corpus: SpamAssassinCorpus | None = None) -> LearnSummary:
    train, _ = (corpus or SpamAssassinCorpus()).split()
    return Learner(store).train([SourceItem(m.path, m.data) for m in train if m.label == "spam"],
                                [SourceItem(m.path, m.data) for m in train if m.label == "ham"],
                                train_selector(store))
