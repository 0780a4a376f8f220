"""Debian's Pyzor server (pyzord, package `pyzor`) on loopback, for the pyzor filter's
tests, with a gdbm database of its own. Messages are reported to it, and welcomelisted,
with Debian's own `pyzor` command: another client than the one spamkit uses (Debian's
1.0.0, spamkit's the PyPI package), so the tests also show that both make the same
digest. Anonymous users may welcomelist here (the access file), which public servers do
not allow."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Debian's, by path: the PyPI package spamkit depends on installs commands of the same
# names in the environment, and its pyzord cannot open a gdbm database there
PYZORD, PYZOR = Path("/usr/bin/pyzord"), Path("/usr/bin/pyzor")


@dataclass(frozen=True)
class Pyzord:
    port: int
    home: Path  # the `pyzor` command's --homedir, whose servers file names this server
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tell(self, what: str, message: bytes, times: int = 1) -> None:
        """`pyzor report` (or whitelist) of `message`, `times` times."""
        for _ in range(times):
            done = subprocess.run([str(PYZOR), "--homedir", str(self.home), what], input=message,
                                  capture_output=True, timeout=60)
            assert done.returncode == 0 and b"(200, 'OK')" in done.stdout, (done.stdout, done.stderr)


class SilentPyzorServer:
    """A Pyzor server that takes requests and never answers (over UDP nothing tells the
    client it is gone): the pyzor filter waits PyzorTimeout for it, a wait the DATA checks'
    deadline does not cut, so with PyzorTimeout past ScanBudget a check that asks it
    outlives its budget. `as_config` names it for the filter."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(60)

    @property
    def as_config(self) -> str:
        return f'PyzorServers = ["127.0.0.1:{self.socket.getsockname()[1]}"]\n'

    def asked(self) -> None:
        """Once a request has come (the message is being checked)."""
        self.socket.recvfrom(65536)

    def __enter__(self) -> SilentPyzorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_pyzord(directory: Path) -> Iterator[Pyzord]:
    """pyzord on a free loopback UDP port, once it answers a ping."""
    if not PYZORD.exists() or not PYZOR.exists():
        raise RuntimeError("pyzord is missing: install the Debian packages `pyzor` and "
                           "`python3-gdbm` (scripts/install-test-deps.sh does)")
    home = directory / "pyzor"
    home.mkdir()
    port = free_udp_port()
    (home / "servers").write_text(f"127.0.0.1:{port}\n")
    (home / "access").write_text("check report ping pong info whitelist : anonymous : allow\n")
    process = subprocess.Popen(
        [str(PYZORD), "--homedir", str(home), "-a", "127.0.0.1", "-p", str(port), "-e", "gdbm",
         "--dsn", str(home / "digests.db"), "--access-file", str(home / "access"),
         "--log-file", str(home / "pyzord.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_ping(port, process)
        yield Pyzord(port, home, process)
    finally:
        process.terminate()
        process.wait(30)


def _wait_for_ping(port: int, process: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    from pyzor.client import Client

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pyzord exited with {process.returncode}")
        try:
            if Client(timeout=0.5).ping(("127.0.0.1", port)).get_code() == 200:
                return
        except Exception:  # (not up yet: pyzor's timeouts and socket errors alike)
            time.sleep(0.1)
    raise RuntimeError(f"pyzord did not answer on 127.0.0.1:{port}")
