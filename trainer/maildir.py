"""Maildir folders as the trainer sees them: list, read safely, delete exactly what was read.

Never reads tmp/ (messages still being delivered), never follows a symlink, skips FIFOs
and anything not a regular file, and leaves messages over the size cap in place. A file
renamed by a mail client between listing and reading (new/ to cur/, or a flag change) is
simply not found this time: the next sweep sees it under its new name.

The sweep runs as root over directories their users control, so no directory on the way
to a message is reached through a symbolic link its user could have made: each is opened
one component at a time, following only links owned by root or by us (`open_directory`),
and every read, removal and rename is made relative to that directory. Otherwise a user's
`.LearnAsSpam/cur` linked to /etc had the sweep learn and delete what it found there, and
a `.junkmail/cur` so linked had expire-junk delete every file older than the retention.
"""

from __future__ import annotations

import base64
import codecs
import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spamkit.sources import SourceItem
from spamkit.stored import UnreadableStored, stored_message
from trainer.maildirquota import QUOTA_FILE, record_change


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
        return float(head) if head.isascii() and head.isdigit() else self.mtime  # ("²" is a digit to isdigit)


MAILDIR_PLUS = "maildir++"
FS = "fs"


def folder_path(maildir: Path, name: str, layout: str = MAILDIR_PLUS) -> Path:
    """The folder `name` in the Maildir; INBOX is the Maildir itself. Its levels are
    separated by '.' or '/' (Junk.LearnAsSpam, Junk/LearnAsSpam), as IMAP names them on
    servers of either separator. On disk, Maildir++ (SME, Courier, Dovecot's default) makes
    one directory of them, .Junk.LearnAsSpam; Dovecot's LAYOUT=fs nests them,
    Junk/LearnAsSpam. Each level is written in IMAP's modified UTF-7, as Dovecot and
    Courier name folders on disk: the folder mail programs show as "Indésirables" is
    .Ind&AOk-sirables there ("&" itself is "&-"), unless only the name as written is there."""
    if name.upper() == "INBOX":
        return maildir
    levels = name.replace("/", ".").split(".")
    encoded = _on_disk(maildir, [modified_utf7(level) for level in levels], layout)
    as_written = _on_disk(maildir, levels, layout)
    if encoded != as_written and not encoded.is_dir() and as_written.is_dir():
        return as_written  # a server that keeps names in UTF-8 (Dovecot's ":UTF-8" option)
    return encoded


def _on_disk(maildir: Path, levels: list[str], layout: str) -> Path:
    if layout == FS:
        return maildir.joinpath(*levels)
    return maildir / ("." + ".".join(levels))


def misplaced_folder(maildir: Path, name: str, layout: str,
                     consequence: str = "nothing under it is read or removed") -> tuple[str, str] | None:
    """(where, what to say) of the folder `name` as the other layout would have it, when
    that is a directory and this layout's is not: a sign that MaildirLayout does not match
    the server's (a Dovecot with LAYOUT=fs has LearnAsSpam/, and the sweep looked for
    .LearnAsSpam and found none). The sweep, stats, expire-junk and make-folders say it,
    each with its own `consequence`."""
    if name.upper() == "INBOX" or folder_path(maildir, name, layout).is_dir():
        return None
    other_layout = FS if layout == MAILDIR_PLUS else MAILDIR_PLUS
    other = folder_path(maildir, name, other_layout)
    if not ((other / "cur").is_dir() or (other / "new").is_dir()):
        return None
    server = "Dovecot's LAYOUT=fs" if layout == MAILDIR_PLUS else "Maildir++"
    return (str(other), f"a folder as {server} lays them out, but MaildirLayout is {layout}: "
                        f"{consequence} (set MaildirLayout to {other_layout} if the IMAP server "
                        "keeps folders so)")


# looked up as this module loads: `deliver` names folders after it has become the
# Maildir's owner, who may not read the Python installation's codec modules
_UTF16 = codecs.lookup("utf-16-be")


def modified_utf7(name: str) -> str:
    """IMAP's modified UTF-7 (RFC 3501 5.1.3): printable ASCII as itself but "&" as "&-",
    runs of anything else as their UTF-16 in base64 (',' for '/', no padding) between
    "&" and "-". (imapclient has one; importing it would cost `deliver` ~50 ms a message.)"""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode(_UTF16.encode("".join(pending))[0]).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


class UnsafeLink(OSError):
    """A directory on the way is a symbolic link that someone other than root or us made."""


_MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


def open_directory(path: Path) -> int:
    """A file descriptor for the directory `path`, reached one component at a time from
    "/" without following a symbolic link unless root or this process's user owns it (a
    link an administrator made, such as /home -> /srv/home, is followed; one a mail user
    made is not). UnsafeLink for such a link, FileNotFoundError or NotADirectoryError
    for a path that is not a directory. The caller closes it."""
    me = os.geteuid()
    pending = list(Path(os.path.abspath(path)).parts[1:])
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    followed = 0
    try:
        walked = Path("/")
        while pending:
            name = pending.pop(0)
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(walked / name)) from None
                if info.st_uid not in (0, me):
                    raise UnsafeLink(errno.ELOOP, f"a symbolic link made by uid {info.st_uid}, not "
                                                  "followed", str(walked / name)) from None
                followed += 1
                if followed > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many symbolic links", str(path)) from None
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):  # from the top again
                    os.close(fd)
                    fd, walked = os.open("/", os.O_RDONLY | os.O_DIRECTORY), Path("/")
                pending[:0] = [part for part in Path(target).parts if part != "/"]
                continue
            os.close(fd)
            fd, walked = child, walked / name
        return fd
    except BaseException:
        os.close(fd)
        raise


_KEPT: OrderedDict[Path, int] = OrderedDict()  # the directories of the last few folders, open
_KEEP = 8


def _directory(path: Path) -> int:
    """`open_directory(path)`, kept open for the next message in the same directory (a
    walk a message cost the sweep 12% of its speed). Borrowed: the caller does not close
    it. A kept descriptor is used only while `path` still leads to the same directory, so
    a folder replaced since (or swapped for a link) is walked, and judged, again."""
    fd = _KEPT.get(path)
    if fd is not None:
        try:
            here, kept = os.stat(path), os.fstat(fd)
            if (here.st_dev, here.st_ino) == (kept.st_dev, kept.st_ino):
                _KEPT.move_to_end(path)
                return fd
        except OSError:
            pass
        os.close(_KEPT.pop(path))
    fd = open_directory(path)
    _KEPT[path] = fd
    if len(_KEPT) > _KEEP:
        os.close(_KEPT.popitem(last=False)[1])
    return fd


def list_messages(folder: Path, skipped: list[tuple[str, str]] | None = None) -> Iterator[MaildirMessage]:
    """The folder's messages in new/ and cur/ (never tmp/). An entry that is not a regular
    file (a symbolic link, a FIFO, a directory) is never read, nor a folder reached
    through a user's symbolic link; with `skipped`, each is added there with why, for the
    report's warnings."""
    for sub in ("new", "cur"):
        try:
            fd = _directory(folder / sub)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except UnsafeLink as error:
            if skipped is not None:
                skipped.append((str(error.filename), f"{error.strerror}: nothing under it read or removed"))
            continue
        entries = [(entry.name, _entry_stat(entry)) for entry in os.scandir(fd)]
        for name, info in sorted(entries, key=lambda pair: pair[0]):
            if name.startswith(".") or info is None:  # (None: renamed since the listing)
                continue
            path = folder / sub / name
            if not stat.S_ISREG(info.st_mode):  # never ours to read
                if skipped is not None:
                    skipped.append((str(path), _not_a_message(info.st_mode)))
                continue
            flags = name.rsplit(":2,", 1)[1] if ":2," in name else ""
            yield MaildirMessage(path, info.st_size, info.st_mtime,
                                 sub == "cur" and "S" in flags, sub == "cur" and "T" in flags)


def _entry_stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None


def _not_a_message(mode: int) -> str:
    kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file")
    return f"{kind}: not read, left in the folder"


def read_message(message: MaildirMessage, max_size: int) -> SourceItem:
    name = str(message.path)
    if message.size > max_size:
        return SourceItem(name, None, f"larger than {max_size} bytes; left in the folder", message.path)
    try:
        fd = os.open(message.path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                     dir_fd=_directory(message.path.parent))
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
    try:
        data = stored_message(data, max_size)  # (Dovecot's compression: its bytes are not the message)
    except UnreadableStored as error:
        return SourceItem(name, None, f"{error}; left in the folder", message.path)
    return SourceItem(name, data, None, message.path)


def delete(path: Path) -> bool:
    """Remove a message file; False if it was already gone (renamed or deleted meanwhile).
    UnsafeLink if its directory is now reached through a user's symbolic link."""
    try:
        os.unlink(path.name, dir_fd=_directory(path.parent))
        return True
    except (FileNotFoundError, NotADirectoryError):  # (or the folder itself is gone)
        return False


def move_to_inbox(path: Path, maildir: Path) -> bool:
    """Put a learned ham back in the Inbox (cur/, name kept, so its flags stay)."""
    try:
        source = _directory(path.parent)
        os.rename(path.name, path.name, src_dir_fd=source, dst_dir_fd=_directory(maildir / "cur"))
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def release_quota(maildir: Path, freed_bytes: int, freed: int, skipped: list[tuple[str, str]]) -> None:
    """Take messages deleted from the Maildir off its Maildir++ quota (`maildirsize`), if it
    keeps one; a line that cannot be written is said in `skipped`, with what mends it."""
    try:
        fd = open_directory(maildir)
        try:
            record_change(fd, -freed_bytes, -freed)
        finally:
            os.close(fd)
    except OSError as error:
        skipped.append((str(maildir / QUOTA_FILE), f"could not take the {freed} messages removed off "
                        f"the quota ({error.strerror or error}): the IMAP server counts them until it "
                        "recalculates (Dovecot: doveadm quota recalc)"))
