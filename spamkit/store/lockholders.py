"""Which processes have an LMDB database open, for messages that ask the user to stop them.

LMDB holds an fcntl lock on the first byte of lock.mdb for as long as a process has the
environment open (shared; exclusive while it sets the lock file up). Linux lists every
such lock in /proc/locks with the holder's pid and the file's device and inode, so a
refusal can say "pid 812: spamkit serve --user spamkit" rather than "another process".
Elsewhere (or where /proc is not ours to read) the list is empty and the message is
only less specific.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def lock_holders(lock_path: Path) -> list[str]:
    """The other processes holding an fcntl lock on `lock_path`, as "pid 123: python3 -m
    spamkit serve ...", read from /proc/locks (empty where there is none). This process
    is left out: it is never the one to stop."""
    try:
        stat = lock_path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    holders: list[str] = []
    for line in lines:
        match = re.search(r"\s(\d+) ([0-9a-f]+:[0-9a-f]+:\d+) ", line)
        if match and match.group(2) == device and match.group(1) not in holders \
                and int(match.group(1)) != os.getpid():
            holders.append(match.group(1))
    return [f"pid {pid}{_command_of(pid)}" for pid in holders]


def _command_of(pid: str) -> str:
    """": python3 -m spamkit serve ...", on one line (a `-c` program's newlines too)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    words = [word for word in words if word]
    if not words:
        return ""
    text = " ".join([os.path.basename(words[0].decode("utf-8", "replace")),
                     *(word.decode("utf-8", "replace") for word in words[1:])])
    return ": " + " ".join(text.split())[:100]
