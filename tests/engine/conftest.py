"""Fixtures of the engine's crash and fault tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpora import CorpusMessage


@pytest.fixture(scope="session")
def spam_dir(tmp_path_factory: pytest.TempPathFactory,
             split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Path:
    """The training folds' spam, one file a message, as `spamkit learn` reads a folder."""
    folder = tmp_path_factory.mktemp("spam")
    for message in [m for m in split[0] if m.label == "spam"]:
        (folder / message.path.replace("/", "_")).write_bytes(message.data)
    return folder
