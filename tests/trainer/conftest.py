"""A real Dovecot for the trainer's tests: one for each test module that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.dovecot import Dovecot, start_dovecot


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    yield from start_dovecot()


@pytest.fixture
def server(dovecot: Dovecot) -> Iterator[Dovecot]:
    """The module's Dovecot with every user's mail removed, before and after the test."""
    dovecot.clear()
    yield dovecot
    dovecot.clear()
