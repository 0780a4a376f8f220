"""Corpus readers: labelled messages for benchmarks and tests, read at run time.

Every reader yields `CorpusMessage(label, path, data)`. Nothing here copies a corpus
into the project; the SpamAssassin corpus is read from ../shared/corpora.
"""

from __future__ import annotations

from corpora.readers import CorpusMessage, read_labelled_path
from corpora.spamassassin import SpamAssassinCorpus, find_corpus, fold_of

__all__ = ["CorpusMessage", "SpamAssassinCorpus", "find_corpus", "fold_of", "read_labelled_path"]
