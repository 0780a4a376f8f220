"""redis-server on loopback, for the shared token store's tests.

No snapshots and no append-only file unless asked: each test empties its own database.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.net import free_port, listening


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, number: int = 0, prefix: str | None = None) -> str:
        return f"redis://127.0.0.1:{self.port}/{number}" + (f"?prefix={prefix}" if prefix else "")


def start_redis(directory: Path, tls: tuple[Path, Path] | None = None,
                port: int | None = None, options: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port (or `port`: a server that comes up where a
    client already looks for it); with `tls` (certificate, key), that port speaks only TLS
    (rediss://), clients not asked for certificates; `options` are more of its command
    line ("--replicaof", "127.0.0.1", "6379")."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is missing: install the Debian package `redis-server` "
                           "(scripts/install-test-deps.sh does)")
    port = port or free_port()
    listen = ["--port", str(port)]
    if tls is not None:
        certificate, key = tls
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certificate),
                  "--tls-key-file", str(key), "--tls-ca-cert-file", str(certificate),
                  "--tls-auth-clients", "no"]
    with listening(["redis-server", *listen, "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(directory), "--daemonize", "no", *options],
                   port) as process:
        yield RedisServer(port, process)
