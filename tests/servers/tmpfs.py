"""A small real file system that fills up: a tmpfs mounted for one test.

A full disk is a fault LMDB reports only at commit, and only as a short write, so the
tests that need one get a real one rather than a patched `write`. Mounting needs root
(CAP_SYS_ADMIN), which this project's test machines have; elsewhere the test is skipped
and says why.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """`path` as the mount point of a tmpfs of `size` ("2m"), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    """Give the tmpfs at `path` more room, as an administrator freeing space would."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def fill(path: Path) -> int:
    """Write a filler file on the file system of `path` until it is full; its size."""
    written = 0
    chunk = b"\0" * 65536
    with open(path / "filler", "wb", buffering=0) as filler:
        while True:
            try:
                written += filler.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    os.sync()
    return written


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def stopped_by_a_full_disk(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Check that a `--json` run of learning stopped as a full disk should make it stop
    (exit 74, the reason on stderr, no traceback); the report it printed of what it did."""
    assert result.returncode == 74, result.stderr
    assert "is full" in result.stderr and "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert "is full" in report["error"]
    return report
