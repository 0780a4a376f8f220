"""swaks, the SMTP test client, as the tests drive it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_REPLY = re.compile(r"^<[-~*]*\s+(\d{3}[ -].*)$", re.MULTILINE)


def swaks(port: int, message: Path, sender: str = "someone@example.org",
          recipient: str = "user@example.org", helo: str | None = None,
          extra: tuple[str, ...] = ()) -> str:
    """Send one message; the server's reply to the final dot (or swaks's output if the
    session ended before it)."""
    assert shutil.which("swaks"), "swaks is missing: install the Debian package `swaks`"
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--from", sender, "--to", recipient,
               "--data", str(message), "--timeout", "30", *extra]
    if helo is not None:
        command += ["--helo", helo]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    replies = _REPLY.findall(result.stdout)
    return replies[-2] if len(replies) >= 2 else result.stdout
