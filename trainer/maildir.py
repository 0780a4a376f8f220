"""Maildir++ folders as the trainer sees them: list, read safely, delete exactly what was read.

Never reads tmp/ (messages still being delivered), never follows a symlink, skips FIFOs
and anything not a regular file, and leaves messages over the size cap in place. A file
renamed by a mail client between listing and reading (new/ to cur/, or a flag change) is
simply not found this time: the next sweep sees it under its new name.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spamkit.sources import SourceItem


@dataclass(frozen=True)
class MaildirMessage:
    path: Path
    size: int
    mtime: float
    seen: bool  # the S flag (read), only possible in cur/
    trashed: bool = False  # the T flag: IMAP's \Deleted, set by a client that has not expunged yet

    @property
    def delivered(self) -> float:
        """Delivery time: the seconds that start a Maildir file name, else the mtime."""
        head = self.path.name.split(".", 1)[0]
        return float(head) if head.isdigit() else self.mtime


def folder_path(maildir: Path, name: str) -> Path:
    """The Maildir++ folder `name` (".LearnAsSpam"); INBOX is the Maildir itself. Levels
    given as IMAP names them on servers that separate them with '/' (Junk/LearnAsSpam)
    are Maildir++'s '.' on disk (.Junk.LearnAsSpam)."""
    return maildir if name.upper() == "INBOX" else maildir / f".{name.replace('/', '.')}"


def list_messages(folder: Path, skipped: list[tuple[str, str]] | None = None) -> Iterator[MaildirMessage]:
    """The folder's messages in new/ and cur/ (never tmp/). An entry that is not a regular
    file (a symbolic link, a FIFO, a directory) is never read; with `skipped`, it is
    added there with why, for the report's warnings."""
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(folder / sub))
        except FileNotFoundError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed since the listing
            if not stat.S_ISREG(info.st_mode):  # never ours to read
                if skipped is not None:
                    skipped.append((entry.path, _not_a_message(info.st_mode)))
                continue
            flags = entry.name.rsplit(":2,", 1)[1] if ":2," in entry.name else ""
            yield MaildirMessage(Path(entry.path), info.st_size, info.st_mtime,
                                 sub == "cur" and "S" in flags, sub == "cur" and "T" in flags)


def _not_a_message(mode: int) -> str:
    kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file")
    return f"{kind}: not read, left in the folder"


def read_message(message: MaildirMessage, max_size: int) -> SourceItem:
    name = str(message.path)
    if message.size > max_size:
        return SourceItem(name, None, f"larger than {max_size} bytes; left in the folder", message.path)
    try:
        fd = os.open(message.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        reason = "vanished (renamed by a mail client?)" if error.errno == errno.ENOENT else error.strerror
        return SourceItem(name, None, reason or str(error), message.path)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return SourceItem(name, None, "not a regular file", message.path)
        data = handle.read(max_size + 1)
    if len(data) > max_size:
        return SourceItem(name, None, f"larger than {max_size} bytes; left in the folder", message.path)
    return SourceItem(name, data, None, message.path)


def delete(path: Path) -> bool:
    """Remove a message file; False if it was already gone (renamed or deleted meanwhile)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def move_to_inbox(path: Path, maildir: Path) -> bool:
    """Put a learned ham back in the Inbox (cur/, name kept, so its flags stay)."""
    target = maildir / "cur" / path.name
    try:
        os.rename(path, target)
        return True
    except FileNotFoundError:
        return False
