"""Private key files (TlsKey, the DKIM signing keys): whether every user may read one.

openssl writes keys 0600 and `spamkit dkim keygen` 0400, but a key copied with cp under a
umask of 022, or opened up with chmod 644 so that the filter's user could read it, can be
read by anyone with a login on the machine: who can then pose as this server to TLS
clients, or sign mail as our domains. lint warns of it and serve logs it as it starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def readable_by_everyone(path: str | os.PathLike[str]) -> str | None:
    """The file's mode in octal when any user may read it (the file readable by others,
    and every directory above it open to them), else None; None too when it cannot be
    looked at (loading it says why)."""
    try:
        where = Path(path).resolve()
        mode = where.stat().st_mode
        if not mode & stat.S_IROTH:
            return None
        for directory in where.parents:
            if not directory.stat().st_mode & stat.S_IXOTH:  # (no one else gets this far)
                return None
    except OSError:
        return None
    return f"{stat.S_IMODE(mode):o}"
