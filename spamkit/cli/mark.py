"""`spamkit mark`: one message in, the same message out with spamkit's headers.

The filter mode of SpamAssassin's `spamassassin` and of `bogofilter -p`, for where a mail
setup runs a filter as a pipe: procmail's `:0fw`, maildrop's xfilter, Exim's
transport_filter, a mail program's "pipe message". The message comes out as `deliver`
would write it (X-Spam-Flag, X-Spam-Status, X-Spam-Level, the subject tagged when it is
spam and SubjectTag says so), and the recipe after it sorts on X-Spam-Flag.

A pipe must not lose mail: whatever goes wrong, the message comes out as it went in, and
the exit status is 75 (EX_TEMPFAIL). procmail then keeps its own copy and goes on;
maildrop and Exim defer the delivery and try again later. A database that cannot be read
is dealt with as WhenDatabaseDown says, as `deliver` does.
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO, NoReturn

import click

from spamkit.cli import config_option, db_option, quickexit
from spamkit.config import load_config
from spamkit.errors import SpamkitError


class _PassOnUsageError(click.Command):
    """An option misspelt in a procmailrc or an Exim transport: the message still comes out,
    unchanged, with exit 75 (click's exit 2 and no output would leave a pipeline that does
    not look at the status with an empty message)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as error:  # (not --help's exit, which is no ClickException)
            error.show()
            _pass_through(_read(sys.stdin.buffer), None)


@click.command(cls=_PassOnUsageError)
@click.argument("path", required=False, default="-", metavar="[PATH]")
@click.option("--user", "user", metavar="NAME",
              help="The account the message is for: its own settings (a [user.NAME] table) and "
                   "list entries apply.")
@click.option("--from", "envelope_from", metavar="ADDRESS",
              help="Envelope sender, for the lists (default: $SENDER, as qmail and Postfix set it).")
@click.option("--rcpt", "recipients", multiple=True, metavar="ADDRESS",
              help="Envelope recipient, for the lists (repeatable; default: $RECIPIENT).")
@db_option
@config_option
def mark(path: str, user: str | None, envelope_from: str | None, recipients: tuple[str, ...],
         db_path: str | None, config_path: str | None) -> None:
    """Print one message (standard input, or PATH) with spamkit's headers added.

    For procmail (`:0fw` then `| spamkit mark`), maildrop's xfilter or Exim's
    transport_filter: sort on `X-Spam-Flag: YES` afterwards. Whatever goes wrong, the
    message is printed unchanged and the exit status is 75, which maildrop and Exim take
    as "try again later"; 0 when it was scored, spam or not. A PATH that Dovecot
    compressed is read, and printed, as the message it holds.
    """
    if path == "-":
        data = _read(sys.stdin.buffer)
    else:
        data = _stored(path)
    try:
        from spamkit.cli.scored import DatabaseDown, scored_message

        config = load_config(config_path)
        if user:
            config = config.for_user(user)
        if not recipients:
            recipients = tuple(filter(None, [user, os.environ.get("RECIPIENT", "").strip()]))
        marked, _ = scored_message(data, envelope_from or os.environ.get("SENDER"), recipients,
                                   config, db_path, config_path, "mark")
    except DatabaseDown as error:
        _pass_through(data, f"{error} (WhenDatabaseDown=tempfail)")
    except Exception as error:  # a broken configuration, a bug: the message still comes out
        _pass_through(data, str(error) if isinstance(error, SpamkitError)
                      else f"internal error {type(error).__name__}: {error}")
    _write(marked)
    quickexit.request()


def _stored(path: str) -> bytes:
    """The message a file holds: a Maildir file Dovecot compressed is the message inside,
    as `check` and `learn` read it (printed with the headers, uncompressed). One that cannot
    be read so (encrypted, damaged) comes out as it is, with exit 75."""
    from spamkit.sources import MAX_FILE_BYTES
    from spamkit.stored import UnreadableStored, stored_message

    try:
        with open(path, "rb") as given:
            data = given.read()
    except OSError as error:
        click.echo(f"spamkit mark: cannot read {path}: {error.strerror}", err=True)
        sys.exit(os.EX_NOINPUT)
    try:
        return stored_message(data, MAX_FILE_BYTES)
    except UnreadableStored as error:
        _pass_through(data, f"{path}: {error}")


def _read(stream: BinaryIO) -> bytes:
    try:
        return stream.read()
    except OSError as error:
        click.echo(f"spamkit mark: cannot read the message: {error.strerror}", err=True)
        sys.exit(os.EX_NOINPUT)


def _pass_through(data: bytes, why: str | None) -> NoReturn:
    """The message as it came, exit 75."""
    if why is not None:
        click.echo(f"spamkit mark: not scored, passed on unchanged: {why}", err=True)
    _write(data)
    sys.exit(os.EX_TEMPFAIL)


def _write(data: bytes) -> None:
    """(A reader gone away is exit 141, any other write error 74, as for every command:
    whoever reads the status keeps the mail.)"""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
