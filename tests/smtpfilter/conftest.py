"""Postfix's smtp-sink as every SMTP test's next hop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.smtp_sink import Sink, start_sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    yield from start_sink()
