"""A database is learned and scored with the tokenizer that built it, whatever the default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.analysis import Analyzer, analyzer_for
from spamkit.config import load_config
from spamkit.errors import StoreError
from spamkit.learn import Learner
from spamkit.lists import Lists
from spamkit.rules import load_rules
from spamkit.store import Label, LmdbStore
from spamkit.tokenizer import EmailTokenizer, TokenizerOptions
from spamkit.verdict import Scanner
from tests.conftest import as_items

OLD = EmailTokenizer(TokenizerOptions(words="split"))  # the default before 0012


def test_a_new_database_gets_the_default_tokenizer(store: LmdbStore) -> None:
    assert analyzer_for(store).tokenizer.version == EmailTokenizer().version
    assert analyzer_for(None).tokenizer.version == EmailTokenizer().version


def test_an_older_database_keeps_its_own_tokenizer(tmp_path: Path,
                                                   all_messages: list[CorpusMessage]) -> None:
    sample = all_messages[:20]
    with LmdbStore(tmp_path / "db") as store:
        Learner(store, Analyzer(OLD)).learn(as_items(sample[:10]), Label.HAM)
        learner = Learner(store)  # no tokenizer named: the database's
        assert learner.analyzer.tokenizer.version == OLD.version
        learner.learn(as_items(sample[10:]), Label.HAM)
        assert store.meta()["tokenizer"] == OLD.version
        config = load_config(None)
        scanner = Scanner(config, load_rules([], builtin=False), Lists.load(tmp_path / "lists"), store)
        assert scanner.analyzer.tokenizer.version == OLD.version
        # scoring meets the tokens learning wrote: every one of a learned message's
        keys = scanner.analyzer.analyze(sample[0].data).hashes
        assert len(store.counts(keys).spam) == len(set(keys))


def test_a_tokenizer_this_spamkit_does_not_know_is_refused(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "db") as store:
        store.set_meta("tokenizer", "email-9:words")
        with pytest.raises(StoreError, match="email-9:words"):
            analyzer_for(store)
    message = tmp_path / "message.eml"
    message.write_bytes(b"Subject: hello\n\nhello there\n")
    run = subprocess.run([sys.executable, "-m", "spamkit", "check", str(message), "--db",
                          str(tmp_path / "db")], capture_output=True, text=True, timeout=120)
    assert run.returncode == StoreError.exit_code
    assert "email-9:words" in run.stderr and "Traceback" not in run.stderr
