"""Replace a file whole or not at all: write beside it, fsync, rename over it.

A file that is replaced in place (a configuration, a list, a backup dump) is lost if the
writer stops half way: a full disk, damage met in the database being dumped, kill -9.
Written beside it and renamed only once complete, the old file stays until the new one
is whole.

A change made by reading the file, changing it and replacing it (`config set`, `wbl add`)
holds `editing`'s lock from the read to the rename: two at once each replaced the file
with its own change alone, and one was lost (20 `wbl add` at once kept 8 entries).
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def replacing(path: Path, mode_if_new: int = 0o644, errors: str = "strict") -> Iterator[IO[str]]:
    """A text stream whose content replaces `path` when the block ends without an error
    (the old file's mode is kept; a new one gets `mode_if_new`). On an error the old file
    is left as it was and the partial one removed. A symbolic link's target is replaced,
    not the link; what is not a regular file (/dev/full, a pipe) is written as it is.
    `errors="surrogateescape"` writes back bytes a file held that are not UTF-8."""
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        with open(path, "w", encoding="utf-8", errors=errors) as device:
            yield device
        return
    mode = path.stat().st_mode & 0o777 if path.exists() else mode_if_new
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors=errors) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


@contextmanager
def editing(path: Path) -> Iterator[None]:
    """Hold the lock on changes to `path` while the block reads, changes and replaces it;
    a second editor waits its turn. The lock is flock on the file's directory, which
    leaves nothing behind (a lock file cannot be removed safely while another process may
    wait on it). Readers take no lock: they see the old file or the new one, whole."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:  # a filesystem without locks (some network ones): edit as before
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(handle)  # (the lock goes with it)


def write_atomically(path: Path, text: str, errors: str = "strict") -> None:
    """Replace `path` with `text`, whole or not at all."""
    with replacing(path, errors=errors) as out:
        out.write(text)


FileSignature = tuple[int, ...]


def file_signature(path: str | os.PathLike[str]) -> FileSignature | None:
    """What changes when a file is replaced (by rename, as `write_atomically` and certbot
    do; stat follows a symbolic link), written in place, or has its mode or owner changed;
    None when it cannot be looked at. Long-running services compare it to read a file
    again only once it changed (the list file, the TLS certificate and key)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
