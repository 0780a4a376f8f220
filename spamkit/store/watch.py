"""The token database of a long-running service (`serve`, `spamd`), which must not stop for it.

A database the service could not use as it started, unreachable (a Redis not up yet after
a power cut, or across a network that is down) or damaged (the LMDB file check), stopped
the service. The mail then waited in the MTA's queue with no word from us, even where
WhenDatabaseDown said to go on with the rules alone or unscanned (reliability checklist
12: a classifier backend that fails gets the configured policy). Now the service starts
without it: every message gets WhenDatabaseDown, and the database is tried again every
DatabaseRetry seconds and used from the first time it opens, sound and answering. A
damaged file is closed as soon as the check finds the damage: scoring never reads it,
since LMDB follows a damaged page into a crash.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from typing import TYPE_CHECKING

from spamkit.errors import StoreError
from spamkit.store.base import TokenStore

if TYPE_CHECKING:
    from spamkit.verdict import Scanner


class DatabaseWatch:
    """Opens a service's token database, and again every `retry` seconds while it cannot."""

    def __init__(self, location: str | os.PathLike[str] | None, retry: float, log: logging.Logger) -> None:
        self.location = location
        self.retry = retry
        self.log = log
        self.store: TokenStore | None = None
        self.down: str | None = None  # why the database cannot be used now; None: it can
        self._next_try = 0.0

    def open(self) -> TokenStore | None:
        """The store, open, sound and answering; or None, with the reason in `down`."""
        from spamkit.store import describe_location, open_store, refuse_damaged

        store: TokenStore | None = None
        try:
            store = open_store(self.location)
            refuse_damaged(store, self.location)
            store.meta_value("tokenizer")  # (Redis is asked something: it answers or raises)
        except Exception as error:  # (a retry must never take the service down)
            if store is not None:
                store.close()
            self._failed(_why(error))
            return None
        if self.down is not None:
            self.log.warning("the token database %s can be used again: scoring with Bayes",
                             describe_location(self.location))
        self.down, self.store = None, store
        return store

    def due(self) -> bool:
        """Whether the database is down and the time to try it again has come."""
        return self.down is not None and time.monotonic() >= self._next_try

    def refreshed(self, current: Scanner) -> Scanner | None:
        """The scanner a service should use from now on, or None to keep `current`: over the
        database once a retry finds it usable; brought up to date if it was made while the
        database was down and a retry has since brought it back (a SIGHUP's scanner, built
        meanwhile). While the database stays down, `current` gets the newest reason, so
        that each message's log line says why as it is now."""
        if self.down is None:
            stale = current.database_down is not None and self.store is not None
            return current.with_store(self.store) if stale else None
        if not self.due():
            return None
        store = self.open()
        if store is None:
            current.database_down = self.down
            return None
        return current.with_store(store)

    def _failed(self, reason: str) -> None:
        if reason != self.down:  # (said once, and again only when the reason changes)
            self.log.error("the token database cannot be used: %s. Until it can, every message "
                           "gets WhenDatabaseDown; it is tried again every %g s", reason, self.retry)
        self.down = reason
        self._next_try = time.monotonic() + self.retry

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def _why(error: Exception) -> str:
    """The reason to log. A service started as root opens its database before it gives
    root up (contrib/systemd); a retry runs as the user it became, which may not open a
    database only root may: then only a restart can open it again."""
    if isinstance(error, PermissionError) and os.geteuid() != 0:
        user = pwd.getpwuid(os.geteuid()).pw_name
        return (f"{error.strerror}: {error.filename} (as user {user}; a database it opened as "
                "root at start needs a restart of the service to be opened again)")
    if isinstance(error, (StoreError, OSError)):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"  # (the client library's own, unforeseen)
