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
    """Send one message; the reply that settled it: the server's answer to the final dot,
    or the refusal that ended the session before DATA. A session that ended with no
    such reply (swaks's timeout ran out, or the connection was dropped) gives a text that
    starts "no reply", not a code, so a test expecting 250 says what happened."""
    assert shutil.which("swaks"), "swaks is missing: install the Debian package `swaks`"
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--from", sender, "--to", recipient,
               "--data", str(message), "--timeout", "30", *extra]
    if helo is not None:
        command += ["--helo", helo]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return settling_reply(_REPLY.findall(result.stdout), result.stdout)


def settling_reply(replies: list[str], transcript: str) -> str:
    """The last line of the reply that follows 354 (the answer to the final dot); before
    any 354, the last line of the first refusal (4xx or 5xx)."""
    codes = [reply[:3] for reply in replies]
    if "354" in codes:
        answer = replies[codes.index("354") + 1:]
        if not answer:
            return f"no reply to the final dot; swaks said:\n{transcript}"
        return _last_line(answer)
    for index, reply in enumerate(replies):
        if reply[0] in "45":
            return _last_line(replies[index:])
    return f"no reply settled the message; swaks said:\n{transcript}"


def _last_line(replies: list[str]) -> str:
    """The last line of the (possibly multiline) reply that starts replies."""
    for reply in replies:
        if reply[3] == " ":
            return reply
    return replies[-1]
