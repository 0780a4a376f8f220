"""`spamkit deliver USER`: score a message from stdin and write it into the user's Maildir.

For `.qmail`, procmail or Postfix's mailbox_command: Inbox, or junkmail when SortSpam is
on and the message is spam (a junkmail folder made for it is subscribed, as the IMAP
server makes one: trainer.folders). Written to tmp/, synced, then renamed into new/, so a crash
leaves no half message. Run as root, it writes as the Maildir's owner. Exit status 0
delivered, 75 (EX_TEMPFAIL) try again later, 69 (EX_UNAVAILABLE) no such user: the MTA
keeps, retries or bounces accordingly; under qmail, qmail's own 111 and 100 (qmail-command(8)),
and the Return-Path and Delivered-To lines qmail's own Maildir delivery writes. A token
database that is down, that this user may not read, or that is found damaged is dealt
with as WhenDatabaseDown says (75 by default; or the rules alone; or unscanned, with a
header saying so).
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from spamkit.cli import config_option, db_option, quickexit
from spamkit.cli.scored import DatabaseDown, scored_message
from spamkit.config import Config, load_config
from spamkit.errors import ConfigError, SpamkitError
from spamkit.verdict import header_block, split_mbox_line
from trainer.maildir import folder_path
from trainer.folders import make_folder
from trainer.maildirquota import QUOTA_FILE, read_quota, record_change
from trainer.users import UnsafeUser, resolve

EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
QMAIL_HARD_ERROR = 100
QMAIL_SOFT_ERROR = 111
_counter = 0


def under_qmail() -> bool:
    """Whether qmail-local runs us from a .qmail line: it gives every command it runs
    RPLINE and DTLINE (qmail-command(8)); Postfix's local(8) and pipe(8), procmail and
    maildrop give neither."""
    return b"RPLINE" in os.environb and b"DTLINE" in os.environb


def exit_status(code: int) -> int:
    """`code` as the MTA reads it. qmail-local reads 100 as a hard error and 111 as a soft
    one, and of the sysexits codes only 64, 65, 70 and 76-78 as hard: our 69 (no such
    user) would hold the mail in qmail's queue for its whole lifetime (a week) before it
    bounced."""
    if not under_qmail():
        return code
    return {EX_UNAVAILABLE: QMAIL_HARD_ERROR, EX_TEMPFAIL: QMAIL_SOFT_ERROR}.get(code, code)


def qmail_trace_lines(data: bytes) -> bytes:
    """`data` with the Return-Path and Delivered-To lines that qmail-local writes first in a
    Maildir it delivers to itself, and leaves out of the message it gives a command (its
    RPLINE and DTLINE; preline(1) puts them back, so a line the header block already holds
    is not written twice). Postfix's local(8) writes both into the message it gives a
    command, so under Postfix nothing is added."""
    if not under_qmail():
        return data
    block = header_block(data).replace(b"\r\n", b"\n")
    added = b""
    for name, field in ((b"RPLINE", b"return-path:"), (b"DTLINE", b"delivered-to:")):
        # (the sender's and recipient's text is the remote client's: a line break, a CR or
        # a NUL in it, which qmail-local already turns into "_", could make a field here)
        line = re.sub(rb"[\r\n\0]", b"_", os.environb[name].rstrip(b"\n"))
        if line.lower().startswith(field) and b"\n" + line + b"\n" not in b"\n" + block:
            added += line + b"\n"
    return added + data


class _DeferOnUsageError(click.Command):
    """A usage error in the MTA's command line (an option misspelt in .qmail or
    main.cf) defers the mail (75): exit 2, click's, would make Postfix bounce it."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as error:
            error.show()
            sys.exit(exit_status(EX_TEMPFAIL))


@click.command(cls=_DeferOnUsageError)
@click.argument("user")
@click.option("--maildirs", "pattern", help="Users' Maildirs, a path with {user} "
              "(default: MaildirPattern).")
@click.option("--pyzor", "ask_pyzor", is_flag=True,
              help="Ask PyzorServers about the message first (PYZOR_CHECK; X-Spamkit-Pyzor).")
@db_option
@config_option
def deliver(user: str, pattern: str | None, ask_pyzor: bool, db_path: str | None,
            config_path: str | None) -> None:
    """Deliver one message from standard input to USER's Maildir, scored and sorted."""
    try:
        config = load_config(config_path)
        maildir = resolve(pattern or config["MaildirPattern"], user)
        config = config.for_user(user)  # its own SortSpam, if it has one
    except UnsafeUser as error:  # no account can have this name
        _fail(EX_UNAVAILABLE, str(error))
    except ConfigError as error:  # the administrator's to mend: the mail waits, never bounces
        _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: {error}")
    if not (maildir / "cur").is_dir():
        _fail(EX_UNAVAILABLE, f"no Maildir for {user} at {maildir}")
    # (Postfix's local(8) and procmail put the mbox "From " line first; a Maildir message has
    # none, as Dovecot's and procmail's own delivery leave it out: kept, it was a line of the
    # header block that is not a field, after which some readers see no more headers)
    _, data = split_mbox_line(sys.stdin.buffer.read())
    data = qmail_trace_lines(data)
    try:
        if ask_pyzor:  # (no answer in PyzorTimeout: scored without one, as the filter does)
            from spamkit.pyzor import PyzorCheck

            data = PyzorCheck.from_config(config, "deliver --pyzor").recorded(data).data
        message, spam = _scored(data, user, config, db_path, config_path)
        folder_name = config["JunkFolder"] if config["SortSpam"] and spam else "INBOX"
        layout = config["MaildirLayout"]
        folder = folder_path(maildir, folder_name, layout)
        made = folder != maildir and not folder.is_dir()
        as_maildir_owner(maildir)
        quota_fd = os.open(maildir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            quota = read_quota(quota_fd)
            refusal = quota.refusal(len(message)) if quota else None
            if refusal:  # (Dovecot's own delivery refuses it too; deferred, it goes once there is room)
                _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: {refusal}")
            if made:
                _make_folder(maildir, folder_name, layout)
            write_maildir(folder, message)
            quickexit.request()  # the message is on disk (fsync'd, renamed into new/, the folder fsync'd)
            _count_in_quota(quota_fd, len(message))
        finally:
            os.close(quota_fd)
    except DatabaseDown as error:
        _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: {error} (WhenDatabaseDown=tempfail)")
    except (OSError, SpamkitError) as error:
        _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: {error}")
    except Exception as error:  # a bug must defer the mail (75), never bounce it
        _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: internal error "
                           f"{type(error).__name__}: {error}")


def _scored(data: bytes, user: str, config: Config, db_path: str | None,
            config_path: str | None) -> tuple[bytes, bool]:
    """(the message as delivered, whether it is spam), for the account and the address
    the MTA delivers for (RECIPIENT: Postfix's local and pipe, qmail's .qmail), either of
    which a per-recipient list entry may name."""
    recipients = (user, *filter(None, [os.environ.get("RECIPIENT", "").strip()]))
    return scored_message(data, os.environ.get("SENDER"), recipients, config, db_path, config_path, "deliver")


def as_maildir_owner(maildir: Path) -> None:
    """Run as root (by hand, or by an MTA that delivers as root), go on as the Maildir's
    owner once the message is scored: the message and any folder made for it are then the
    user's to read and to move (as root they were root's, 0600: lost to the user), and
    root never writes in a directory its user controls, where a symbolic link (say
    .junkmail/new to /etc/cron.d) would aim root's write anywhere."""
    if os.geteuid() != 0:
        return
    owner = os.stat(maildir)
    if owner.st_uid == 0:
        return  # root's own Maildir
    try:
        os.initgroups(pwd.getpwuid(owner.st_uid).pw_name, owner.st_gid)
    except KeyError:  # an owner with no account: no supplementary groups
        os.setgroups([])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)


def write_maildir(folder: Path, data: bytes) -> Path:
    """Maildir delivery: a unique name in tmp/, fsync, rename into new/, then fsync new/
    itself, so that the name is on disk before the MTA, told 0, drops its own copy."""
    global _counter
    _counter += 1
    folder.mkdir(mode=0o700, exist_ok=True)  # a Maildir is its owner's alone
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{_counter}.{socket.gethostname()}"
    temporary = folder / "tmp" / name
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        final = folder / "new" / name
        os.rename(temporary, final)
        directory = os.open(folder / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:
        temporary.unlink(missing_ok=True)  # nothing half-written is left in tmp/
        raise
    return final


def _make_folder(maildir: Path, name: str, layout: str) -> None:
    """A folder made for this message is made and subscribed as the IMAP server makes
    its own (trainer.folders): unsubscribed, most mail programs would not show it. Not
    being able to subscribe it is reported, and the message delivered all the same."""
    try:
        make_folder(maildir, name, layout)
    except (OSError, TimeoutError) as error:
        if folder_path(maildir, name, layout).is_dir():  # (else the delivery meets the same trouble, and defers)
            click.echo(f"spamkit deliver: made the folder {name}, but could not subscribe it "
                       f"({error}): mail programs that show subscribed folders only will not "
                       "show it until the user subscribes it", err=True)


def _count_in_quota(maildir_fd: int, size: int) -> None:
    """The delivered message's line in the Maildir's `maildirsize`, if it keeps one. Not
    written, the message stays delivered (a retry would deliver it twice), and is said."""
    try:
        record_change(maildir_fd, size, 1)
    except OSError as error:
        click.echo(f"spamkit deliver: delivered, but could not count the message in {QUOTA_FILE} "
                   f"({error.strerror or error}): the IMAP server does not count it until it "
                   "recalculates the quota", err=True)


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"spamkit deliver: {message}", err=True)
    sys.exit(exit_status(code))
