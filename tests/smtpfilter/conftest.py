"""The SMTP filter tests' peers: Postfix's smtp-sink as the next hop, and a filter built
in-process from a configuration text, driven by swaks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpfilter.chain import FilterChain
from smtpfilter.limits import LimitedController, SessionLimits
from smtpfilter.plugins import build_filters
from smtpfilter.server import FilterHandler
from spamkit.config import config_from_text
from spamkit.verdict import Scanner
from tests.servers.smtp_sink import Sink, free_port, start_sink
from tests.servers.swaks import swaks

PLAIN = b"From: a@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\nSubject: hi\r\n\r\nhello\r\n"

Run = Callable[..., str]


@pytest.fixture
def sink() -> Iterator[Sink]:
    yield from start_sink()


@pytest.fixture
def filter_server(sink: Sink, tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    """start(config text) -> send(data, sender, to, helo): the reply to the message."""
    controllers = []

    def start(config_text: str) -> Run:
        config = config_from_text("UseBayes = false\n" + config_text, tmp_path / "spamkit.toml", {})
        scanner = Scanner.from_config(config, None)
        port = free_port()
        handler = FilterHandler(FilterChain(build_filters(config, scanner, False)), ("127.0.0.1", sink.port))
        controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)

        def send(data: bytes = PLAIN, sender: str = "a@example.org", to: str = "b@example.org",
                 helo: str = "client.example.org") -> str:
            message = tmp_path / "m.eml"
            message.write_bytes(data)
            return swaks(port, message, sender, to, helo)

        send.port = port  # type: ignore[attr-defined]
        return send

    yield start
    for controller in controllers:
        controller.stop()
