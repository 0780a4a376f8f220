"""Postfix's smtp-sink on loopback as the next hop, keeping each message in a directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.net import free_port, listening

__all__ = ["Sink", "free_port", "start_sink"]


@dataclass
class Sink:
    port: int
    directory: Path

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.iterdir())]

    def messages_as_sent(self) -> list[bytes]:
        """What the client sent, as smtp-sink keeps it (LF line endings, dots unstuffed),
        without the trace lines smtp-sink puts first (X-Client-Addr ... and its Received)."""
        return [_without_sink_trace(m) for m in self.messages()]


_SINK_TRACE = (b"X-Client-Addr:", b"X-Client-Proto:", b"X-Helo-Args:", b"X-Mail-Args:",
               b"X-Rcpt-Args:")


def _without_sink_trace(stored: bytes) -> bytes:
    lines = stored.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(_SINK_TRACE):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received: from") and b"by smtp-sink" in b"".join(lines[i:i + 3]):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\n".join(lines[i:])


def start_sink(*options: str) -> Iterator[Sink]:
    """smtp-sink with `options` (-N: no DSN, -8: no 8BITMIME, ...)."""
    if shutil.which("smtp-sink") is None:
        raise RuntimeError("smtp-sink is missing: install the Debian package `postfix` "
                           "(scripts/install-test-deps.sh does)")
    directory = Path(tempfile.mkdtemp(prefix="spamkit-sink-"))
    os.chmod(directory, 0o777)  # smtp-sink writes as nobody
    port = free_port()
    # -d takes a strftime template; a random suffix is appended to it for each file
    try:
        with listening(["smtp-sink", *options, "-u", "nobody", "-d", f"{directory}/msg.",
                        f"127.0.0.1:{port}", "100"], port):
            yield Sink(port, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
