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

An LMDB file replaced while the service has it open (a backup moved over data.mdb, the
directory removed and made again by a new learn) is noticed too: the service would
otherwise score with the old file until restarted, and what it autolearned would go
with it. It closes the old file and opens the one in place, if the user it became may;
else it says once that a restart is needed.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spamkit.errors import DatabaseInUse, StoreError
from spamkit.store.base import TokenStore

if TYPE_CHECKING:
    from spamkit.verdict import Scanner


class DatabaseWatch:
    """Opens a service's token database, and again every `retry` seconds while it cannot."""

    def __init__(self, location: str | os.PathLike[str] | None, retry: float, log: logging.Logger) -> None:
        from spamkit.store import default_db_path

        # the default found now: it depends on the user, and a retry runs as the one the
        # service became (whose own default, in its home, is not the database it serves)
        self.location = str(location) if location else str(default_db_path())
        self.retry = retry
        self.log = log
        self.store: TokenStore | None = None
        self.down: str | None = None  # why the database cannot be used now; None: it can
        self._next_try = 0.0
        self._told: str | None = None  # why a replaced file could not be opened, once said
        self._looked_at_persistence = False

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
            # (others still have a file that was replaced open: they let it go within seconds)
            self._failed(_why(error), soon=isinstance(error, DatabaseInUse))
            return None
        if self.down is not None:
            self.log.warning("the token database %s can be used again: scoring with Bayes",
                             describe_location(self.location))
        self.down, self.store = None, store
        if not self._looked_at_persistence:
            self._looked_at_persistence = True
            self._say_if_kept_in_memory_only(store)
        return store

    def _say_if_kept_in_memory_only(self, store: TokenStore) -> None:
        """A Redis with no save points and no append-only file loses the database when it
        restarts; a running service then finds it empty, and says so (RedisStore.note_
        emptied), after the loss. This says it once as the service starts, before
        anything is lost. (Not at every learn: the cron job mails what a learn says, and a
        Redis kept as a cache on purpose would fill that mail.)"""
        from spamkit.store import describe_location

        try:
            persistence = store.persistence()  # (not magic(): on Redis it scans every token)
        except Exception:  # (only a warning: never what stops the service)
            return
        if persistence == "none":
            self.log.warning("the token database %s is in a Redis that keeps nothing on disk (no "
                             "save points, no append-only file): a restart of Redis empties it, "
                             "and what was learned goes with it. Set `appendonly yes` or a `save` "
                             "point in redis.conf, unless that is meant",
                             describe_location(self.location))

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
            if self.store is not None and self.store.replaced():
                return self._reopened(current)
            # (made while the database was down, or over a store closed since: a reload
            # that read `store` just before a replaced file's store took its place)
            stale = self.store is not None and (current.database_down is not None
                                                or current.store is not self.store)
            return current.with_store(self.store) if stale else None
        if not self.due():
            return None
        store = self.open()
        if store is None:
            current.database_down = self.down
            return None
        return current.with_store(store)

    def _reopened(self, current: Scanner) -> Scanner | None:
        """The store's file is no longer the one at its path: a scanner over the file in
        place, or over none while it cannot be opened yet (others still have the old one:
        tried again within a second). None, keeping the old file, while this process may
        not open the new one, or there is none yet."""
        from spamkit.store import describe_location

        where = describe_location(self.location)
        blocked = _cannot_open(self.location)
        if blocked is not None:
            if blocked != self._told:  # (said once: this is asked every second)
                self._told = blocked
                self.log.error("the token database %s is no longer the file this service opened "
                               "(replaced or removed), and %s. Until then it scores with the file "
                               "it opened, and what it autolearns is lost with that file", where, blocked)
            return None
        self._told = None
        self.log.warning("the token database %s was replaced since it was opened (a file moved over "
                         "it, or the directory made again): scoring goes over to the file in place", where)
        assert self.store is not None
        self.store.close()  # (after the scans reading it: LMDB's lock file must be let go first)
        self.store = None
        store = self.open()
        return current.with_store(store, database_down=self.down)

    def _failed(self, reason: str, soon: bool = False) -> None:
        retry = min(self.retry, 1.0) if soon else self.retry
        if reason != self.down:  # (said once, and again only when the reason changes)
            self.log.error("the token database cannot be used: %s. Until it can, every message "
                           "gets WhenDatabaseDown; it is tried again every %g s", reason, retry)
        self.down = reason
        self._next_try = time.monotonic() + retry

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def _cannot_open(location: str) -> str | None:
    """Why this process cannot open the LMDB database now at `location` (to be said after
    "and"), or None. A service that gave up root keeps the file it opened as root, rather
    than close it for one it may not open."""
    directory = Path(location)
    data, lock = directory / "data.mdb", directory / "lock.mdb"
    try:
        data.stat()
    except FileNotFoundError:
        return "no file is in its place yet: it is opened once one is"
    except OSError:
        return (f"as user {_user()} it may not look inside {directory}: restart the service to "
                "use the database there now (started as root, it opens it before giving root up)")
    if not (os.access(directory, os.W_OK | os.X_OK) and os.access(data, os.R_OK | os.W_OK)
            and (not lock.exists() or os.access(lock, os.R_OK | os.W_OK))):
        return (f"as user {_user()} it may not open {data}: restart the service to use it "
                "(started as root, it opens it before giving root up)")
    return None


def _user() -> str:
    """This process's user, by name where it has one."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # (a uid with no passwd entry, as in some containers)
        return str(os.geteuid())


def _why(error: Exception) -> str:
    """The reason to log. A service started as root opens its database before it gives
    root up (contrib/systemd); a retry runs as the user it became, which may not open a
    database only root may: then only a restart can open it again."""
    if isinstance(error, PermissionError) and os.geteuid() != 0:
        user = _user()
        return (f"{error.strerror}: {error.filename} (as user {user}; a database it opened as "
                "root at start needs a restart of the service to be opened again)")
    if isinstance(error, (StoreError, OSError)):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"  # (the client library's own, unforeseen)
