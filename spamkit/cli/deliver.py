"""`spamkit deliver USER`: score a message from stdin and write it into the user's Maildir.

For `.qmail`, procmail or Postfix's mailbox_command: Inbox, or junkmail when SortSpam is
on and the message is spam. Written to tmp/, synced, then renamed into new/, so a crash
leaves no half message. Exit status 0 delivered, 75 (EX_TEMPFAIL) try again later, 69
(EX_UNAVAILABLE) no such user: the MTA keeps, retries or bounces accordingly.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import click

from spamkit.cli import config_option, db_option, resolve_db_path
from spamkit.config import load_config
from spamkit.errors import ConfigError, NoDatabase, SpamkitError
from spamkit.store import open_store
from spamkit.verdict import Scanner
from trainer.maildir import folder_path
from trainer.users import UnsafeUser, resolve

EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
_counter = 0


@click.command()
@click.argument("user")
@click.option("--maildirs", "pattern", help="Users' Maildirs, a path with {user} "
              "(default: MaildirPattern).")
@db_option
@config_option
def deliver(user: str, pattern: str | None, db_path: str | None, config_path: str | None) -> None:
    """Deliver one message from standard input to USER's Maildir, scored and sorted."""
    try:
        config = load_config(config_path)
        maildir = resolve(pattern or config["MaildirPattern"], user)
        config = config.for_user(user)  # its own SortSpam, if it has one
    except (UnsafeUser, ConfigError) as error:
        _fail(EX_UNAVAILABLE, str(error))
    if not (maildir / "cur").is_dir():
        _fail(EX_UNAVAILABLE, f"no Maildir for {user} at {maildir}")
    data = sys.stdin.buffer.read()
    try:
        store = _store(db_path, config_path, config["UseBayes"])
        try:
            scanner = Scanner.from_config(config, store)
            verdict = scanner.scan(data, os.environ.get("SENDER"), (user,))
        finally:
            if store is not None:
                store.close()
        folder_name = config["JunkFolder"] if config["SortSpam"] and verdict.is_spam else "INBOX"
        write_maildir(folder_path(maildir, folder_name), verdict.rewrite(data))
    except (OSError, SpamkitError) as error:
        _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: {error}")
    except Exception as error:  # a bug must defer the mail (75), never bounce it
        _fail(EX_TEMPFAIL, f"cannot deliver to {user} now: internal error "
                           f"{type(error).__name__}: {error}")


def _store(db_path: str | None, config_path: str | None, use_bayes: bool):  # type: ignore[no-untyped-def]
    if not use_bayes:
        return None
    try:
        return open_store(resolve_db_path(db_path, config_path), readonly=True)
    except NoDatabase:
        return None  # nothing learned yet: score with the rules alone


def write_maildir(folder: Path, data: bytes) -> Path:
    """Maildir delivery: a unique name in tmp/, fsync, rename into new/, then fsync new/
    itself, so that the name is on disk before the MTA, told 0, drops its own copy."""
    global _counter
    _counter += 1
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
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


def _fail(code: int, message: str) -> None:
    click.echo(f"spamkit deliver: {message}", err=True)
    sys.exit(code)
