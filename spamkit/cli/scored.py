"""One message scored where the MTA hands it over (`deliver`, `mark`): the token database
opened read-only as whoever runs the command, and one that cannot be read dealt with as
WhenDatabaseDown says.

Both run as the recipient under .qmail, procmail and mailbox_command, and a database only
its owner may open (0700, as it is made) is the usual reason one cannot be read.
"""

from __future__ import annotations

import os
import pwd

from spamkit.cli import resolve_db_path
from spamkit.config import Config
from spamkit.errors import NoDatabase, StoreError
from spamkit.store import TokenStore, open_store
from spamkit.verdict import Scanner, unscanned


class DatabaseDown(Exception):
    """The token database cannot be read, and WhenDatabaseDown says tempfail."""


def scored_message(data: bytes, sender: str | None, recipients: tuple[str, ...], config: Config,
                   db_path: str | None, config_path: str | None, command: str) -> tuple[bytes, bool]:
    """(the message with spamkit's headers, whether it is spam); DatabaseDown when the
    database cannot be read and WhenDatabaseDown is tempfail. `command` names the caller in
    what its header and errors say."""
    down: str | None = None
    store = None
    try:
        store = _store(db_path, config_path, config["UseBayes"])
    except (PermissionError, StoreError) as error:  # (unreachable, unreadable or damaged)
        down = _why_unreadable(error, command)
    try:
        scanner = Scanner.from_config(config, store)
        if down is None:
            try:
                verdict = scanner.scan(data, sender, recipients)
                verdict.not_learned_here(f"{command} does not learn")
                return verdict.rewrite(data), verdict.is_spam
            except StoreError as error:  # (gone since, or damage LMDB met as it read)
                down = str(error)
        policy = config["WhenDatabaseDown"]
        if policy == "tempfail":
            raise DatabaseDown(down)
        if policy == "unscanned":
            return unscanned(data, "spam database unavailable"), False
        verdict = scanner.scan(data, sender, recipients, with_bayes=False)
        verdict.autolearn = "unavailable"
        return verdict.rewrite(data), verdict.is_spam
    finally:
        if store is not None:
            store.close()


def _why_unreadable(error: Exception, command: str) -> str:
    if isinstance(error, PermissionError):
        me = pwd.getpwuid(os.geteuid()).pw_name
        return (f"the token database cannot be read as user {me} ({error.strerror}: "
                f"{error.filename}); {command} runs as the recipient, so give it a database it "
                "may open, or set WhenDatabaseDown")
    return str(error)


def _store(db_path: str | None, config_path: str | None, use_bayes: bool) -> TokenStore | None:
    if not use_bayes:
        return None
    try:
        return open_store(resolve_db_path(db_path, config_path), readonly=True)
    except NoDatabase:
        return None  # nothing learned yet: score with the rules alone
