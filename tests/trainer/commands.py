"""The `spamkit` command as the trainer's tests run it against a configuration of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SPAMMER = "pills@spam.example"  # the envelope sender `deliver` is given (SENDER), as an MTA gives it


def spamkit_with(*args: str, config: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`spamkit ARGS --config CONFIG`, with `input` on standard input."""
    return subprocess.run([sys.executable, "-m", "spamkit", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=300, input=input,
                          env=dict(os.environ, SENDER=SPAMMER))
