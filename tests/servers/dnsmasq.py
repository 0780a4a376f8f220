"""dnsmasq on loopback as an authoritative DNS server for the filter's DNS checks.

Each `--local=/zone/` makes it answer NXDOMAIN for every name in the zone it was not
given, as a real DNSBL does for an address it does not list; any name outside those
zones is REFUSED, which a resolver reports as a failure.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Generator
from dataclasses import dataclass

from tests.servers.net import free_port


@dataclass(frozen=True)
class DnsServer:
    port: int
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def start_dnsmasq(zones: list[str], records: list[str], host: str = "127.0.0.1",
                  port: int | None = None) -> Generator[DnsServer, None, None]:
    """`records` are dnsmasq options: "--address=/name/127.0.0.2", "--txt-record=...",
    "--mx-host=...", "--host-record=...". `host` and `port` 53: a server resolv.conf can
    name (its lines take an address, no port)."""
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq is missing: install the Debian package `dnsmasq-base` "
                           "(scripts/install-test-deps.sh does)")
    port = port or free_port()
    process = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
         f"--port={port}", f"--listen-address={host}", "--bind-interfaces", "--no-resolv",
         "--no-hosts", "--user=root", *(f"--local=/{zone}/" for zone in zones), *records],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_answers(host, port, process)
        yield DnsServer(port, host)
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_answers(host: str, port: int, process: subprocess.Popen[bytes], seconds: float = 15.0) -> None:
    """Until a query over UDP gets any answer (dnsmasq binds UDP and TCP when ready)."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x04wait\x04test\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {process.stderr.read().decode() if process.stderr else ''}")
            probe.sendto(query, (host, port))
            try:
                probe.recv(512)
                return
            except OSError:
                time.sleep(0.05)
    raise RuntimeError(f"dnsmasq did not answer on {host}:{port}")
