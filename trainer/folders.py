"""Making the folders the trainer and deliver use, the way the IMAP server makes them.

`spamkit make-folders` makes SpamFolder, HamFolder and JunkFolder for every user who
lacks one (SME's learn contrib makes LearnAsSpam and LearnAsHam for each user: without
them a user has nowhere to put corrections, and the sweep finds no folder for the
account). `spamkit deliver` makes JunkFolder on a user's first spam.

Thunderbird, Horde and Roundcube show only the folders a user is subscribed to. A
junkmail folder that `spamkit deliver` made on the first spam, unsubscribed, was one the
user never saw: spam, and any false positive, sat there unread until `expire-junk`
deleted it. So a folder spamkit makes is subscribed, as Dovecot's own delivery agent does
with lda_mailbox_autosubscribe, and gets the empty `maildirfolder` file Maildir++ folders
carry. A folder that was already there is left as it is: a user who unsubscribed it meant
to.

The subscription files, in the Maildir:
- Dovecot's `subscriptions`: since Dovecot 2.3 "V<TAB>2", an empty line, then one
  folder a line in IMAP's modified UTF-7, its levels separated by TAB, without the
  namespace prefix (a user whose folders IMAP shows as INBOX.junkmail has "junkmail");
  before that, one folder a line with the levels separated by ".". It is rewritten whole:
  the new text is written into `subscriptions.lock`, made with O_EXCL, which is then
  renamed over it. That lock file is Dovecot's own for this file, so neither writer
  loses the other's change.
- Courier's `courierimapsubscribed`: one folder a line, "INBOX.junkmail", under the same
  kind of lock. It is written only when it is there (the Maildir is Courier's).
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from trainer.maildir import MAILDIR_PLUS, folder_path, misplaced_folder, modified_utf7
from trainer.users import Account

DOVECOT_FILE = "subscriptions"
COURIER_FILE = "courierimapsubscribed"
DOVECOT_V2_HEADER = "V\t2\n\n"
LOCK_WAIT_SECONDS = 2.0  # Dovecot holds the lock for a write of a few lines
STALE_LOCK_SECONDS = 120.0  # a lock this old was left by a writer that died (Dovecot's own limit)


@dataclass
class FolderReport:
    """What `make-folders` did: each folder made and each already there, as
    (user, folder), and each user it could not make them for, as (user, why)."""

    made: list[tuple[str, str]] = field(default_factory=list)
    present: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self, dry_run: bool) -> dict[str, object]:
        return {"made": [{"user": user, "folder": folder} for user, folder in self.made],
                "present": len(self.present),
                "failed": [{"user": user, "reason": why} for user, why in self.failed],
                "dry_run": dry_run}


def make_maildir_folders(accounts: list[Account], names: list[str], dry_run: bool = False) -> FolderReport:
    """Make each of `names` that a user's Maildir lacks, as that user (run as root, the
    folders are the Maildir owner's, and root writes nothing in a directory a user controls)."""
    report = FolderReport()
    for account in accounts:
        try:
            with maildir_owner(account.maildir):
                # a folder of another layout there: this Maildir's server lays folders out
                # otherwise, and would not show what MaildirLayout would make
                misplaced = [found for name in names if (found := misplaced_folder(
                    account.maildir, name, account.layout, "no folder made for this user"))]
                if misplaced:
                    report.failed.append((account.user, ": ".join(misplaced[0])))
                    continue
                for name in names:
                    if account.folder(name).is_dir():
                        report.present.append((account.user, name))
                        continue
                    if not dry_run:
                        make_folder(account.maildir, name, account.layout)
                    report.made.append((account.user, name))
        except (OSError, TimeoutError) as error:
            report.failed.append((account.user, str(error)))
    return report


@contextmanager
def maildir_owner(maildir: Path) -> Iterator[None]:
    """Run as root, act as the Maildir's owner in the block (effective ids), root again after."""
    owner = os.stat(maildir)
    if os.geteuid() != 0 or owner.st_uid == 0:
        yield
        return
    groups, gid = os.getgroups(), os.getegid()
    try:  # (root's own ids come back whatever step of the switch failed)
        try:
            os.setgroups(os.getgrouplist(pwd.getpwuid(owner.st_uid).pw_name, owner.st_gid))
        except KeyError:  # an owner with no account: no supplementary groups
            os.setgroups([owner.st_gid])
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)
        yield
    finally:
        os.seteuid(0)
        os.setegid(gid)
        os.setgroups(groups)


def make_folder(maildir: Path, name: str, layout: str = MAILDIR_PLUS) -> Path:
    """The folder `name`, made (0700, with cur, new and tmp) and subscribed; one that is
    there is only completed. A Maildir++ folder also gets `maildirfolder`; under Dovecot's
    LAYOUT=fs, each level above it is a directory of its own (Junk/ for Junk/LearnAsSpam),
    as Dovecot makes them."""
    folder = folder_path(maildir, name, layout)
    for level in reversed(folder.relative_to(maildir).parents[:-1]):  # (Junk, for Junk/LearnAsSpam)
        (maildir / level).mkdir(mode=0o700, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
    if layout == MAILDIR_PLUS:
        mark_as_folder(folder)
    subscribe(maildir, name)
    return folder


def mark_as_folder(folder: Path) -> None:
    """The empty `maildirfolder` file that tells a Maildir++ folder from the Maildir."""
    os.close(os.open(folder / "maildirfolder", os.O_WRONLY | os.O_CREAT, 0o600))


def subscribe(maildir: Path, name: str) -> None:
    """Subscribe the folder `name` ("junkmail", "Junk/LearnAsSpam" or "Junk.LearnAsSpam")
    in the Maildir's subscription files (Dovecot's, made if there is none; Courier's, if
    it is there). Raises OSError, or TimeoutError when another writer holds a lock."""
    levels = [modified_utf7(level) for level in name.replace("/", ".").split(".")]
    courier = maildir / COURIER_FILE
    if courier.exists():
        _rewrite(courier, lambda old: _added(old, "INBOX." + ".".join(levels)))
    if not courier.exists() or (maildir / DOVECOT_FILE).exists():
        _rewrite(maildir / DOVECOT_FILE, lambda old: _dovecot_text(old, levels))


def _dovecot_text(old: str | None, levels: list[str]) -> str | None:
    if not old:
        return DOVECOT_V2_HEADER + "\t".join(levels) + "\n"
    separator = "\t" if old.startswith("V\t2\n") else "."
    return _added(old, separator.join(levels))


def _added(old: str | None, line: str) -> str | None:
    """The file's text with `line` added at the end; None when it is there already."""
    old = old or ""
    if line in old.splitlines():
        return None
    return old + ("\n" if old and not old.endswith("\n") else "") + line + "\n"


def _rewrite(path: Path, change: Callable[[str | None], str | None]) -> None:
    """Replace `path` with change(its text) (None: leave it) under its dot-lock."""
    lock = path.with_name(path.name + ".lock")
    fd = _take_lock(lock)
    try:
        try:
            old: str | None = path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            old = None
        new = change(old)
        if new is not None:
            data = new.encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        lock.unlink(missing_ok=True)
        raise
    os.close(fd)
    if new is None:
        lock.unlink(missing_ok=True)
    else:
        os.rename(lock, path)


def _take_lock(lock: Path) -> int:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
                    lock.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue  # (let go of meanwhile)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{lock} is held by another writer") from None
            time.sleep(0.05)
