"""ClamAV's daemon on loopback, for the clamav filter's tests.

No signatures can be downloaded here (freshclam needs database.clamav.net), so clamd
starts with a database of one signature written for the test: the MD5 of the EICAR test
file, the string every antivirus product detects by agreement. clamd reads a `.hdb`
file of `md5:size:name` lines like its official databases, and takes MIME messages and
archives apart before it compares files, so the signature finds EICAR attached in any
encoding or zipped.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.net import free_port, wait_for_port

# the EICAR test file (eicar.org): harmless, and detected by every scanner as if it were a
# virus; joined at run time, so that a scanner on a developer's machine leaves this file alone
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Spamkit.Test.EICAR"


@dataclass(frozen=True)
class Clamd:
    port: int
    socket: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_clamd(directory: Path, stream_max: str = "25M") -> Iterator[Clamd]:
    """clamd listening on a free loopback port and on a Unix socket in `directory`."""
    if shutil.which("clamd") is None:
        raise RuntimeError("clamd is missing: install the Debian package `clamav-daemon` "
                           "(scripts/install-test-deps.sh does)")
    database = directory / "db"
    database.mkdir()
    (database / "spamkit-test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{SIGNATURE}\n")
    port, unix = free_port(), directory / "clamd.sock"
    config = directory / "clamd.conf"
    config.write_text(f"Foreground yes\nDatabaseDirectory {database}\nLocalSocket {unix}\n"
                      f"TCPSocket {port}\nTCPAddr 127.0.0.1\nLogFile {directory / 'clamd.log'}\n"
                      f"StreamMaxLength {stream_max}\nPidFile {directory / 'clamd.pid'}\n")
    process = subprocess.Popen(["clamd", f"--config-file={config}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, seconds=60)
        yield Clamd(port, unix, process)
    finally:
        process.terminate()
        process.wait(30)


class SilentClamd:
    """A clamd that takes connections and never answers: a DATA check that asks it waits
    until ClamdTimeout or the checks' deadline. `as_config` names it for the clamav filter."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(60)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    @property
    def as_config(self) -> str:
        return f'ClamdAddress = "{self.address}"\n'

    def __enter__(self) -> SilentClamd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
