"""`spamkit serve` started as its users start it: a process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers.net import free_port, wait_for_port


def start_serve(next_hop_port: int, db: Path | str, config: Path, *options: str, wait: bool = True,
                stderr: int = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], int]:
    """(process, port) of `spamkit serve [options]`; with `wait`, once the port answers
    (a server that never answers is killed, not left behind)."""
    port = free_port()
    if os.geteuid() == 0 and "--user" not in options:
        options = (*options, "--user", "nobody")  # it refuses to run as root
    process = subprocess.Popen([sys.executable, "-m", "spamkit", "serve", *options,
                                "--listen", f"127.0.0.1:{port}", "--next-hop", f"127.0.0.1:{next_hop_port}",
                                "--db", str(db), "--config", str(config)], stderr=stderr)
    if wait:
        try:
            wait_for_port(port)
        except RuntimeError:
            process.kill()
            process.wait(10)
            raise
    return process, port


def stop_serve(process: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    """Stop it as an init system does (SIGTERM): (its exit status, what it wrote to stderr)."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr or b""
