"""spamkit's exceptions: one tree, so the command line can map each to an exit code.

SpamkitError
├── ConfigError          a setting or option is wrong; says which
├── MessageSourceError   a message file, directory or mbox cannot be read (parsing never raises)
├── TooLittleMail        too little labelled mail of a kind for a measurement to mean anything
├── GeoIPError           no country database, or one that cannot be read
└── StoreError           the token database cannot be opened or written
    ├── NoDatabase       there is no database there yet (nothing learned)
    ├── StoreCorrupt     the database is not a spamkit database, or fails its checks
    │   └── SchemaMismatch  made by a spamkit version whose schema this one does not read
    ├── StoreUnavailable a database server (Redis) cannot be reached: try again later
    ├── StoreFull        the database takes no more (a full disk, Redis past maxmemory)
    └── DatabaseInUse    another process has the database open, and the work needs it alone

Parsing and tokenizing never raise: damage in a message becomes a fact about it.
"""

from __future__ import annotations

from typing import ClassVar


class SpamkitError(Exception):
    """Base of every error spamkit reports to a user instead of a traceback."""

    exit_code: ClassVar[int] = 1


class ConfigError(SpamkitError):
    exit_code = 2


class MessageSourceError(SpamkitError):
    exit_code = 66  # EX_NOINPUT


class TooLittleMail(SpamkitError):
    """Too little labelled mail of one label for the figures asked for (`evaluate`, `rules
    stats`): they compare spam with ham, or need Bayes to judge at all."""

    exit_code = 65  # EX_DATAERR


class GeoIPError(SpamkitError):
    """A country database (spamkit.geoip) that is missing or cannot be read: the message
    names the file and why."""

    exit_code = 66  # EX_NOINPUT


class StoreError(SpamkitError):
    exit_code = 74  # EX_IOERR


class NoDatabase(StoreError):
    """Nothing has been learned into this database yet: readers treat it as empty."""


class StoreCorrupt(StoreError):
    exit_code = 65  # EX_DATAERR


class SchemaMismatch(StoreCorrupt):
    """The database's schema mark is one this spamkit does not read: another version made
    it (a newer one, before a downgrade). Refused by readers as by writers, since its
    records read as this schema's would score and dump wrong; `db reset` sets it aside."""


def schema_mismatch(where: str, found: bytes | str, ours: bytes | str) -> SchemaMismatch:
    def text(mark: bytes | str) -> str:
        return mark.decode("ascii", "replace") if isinstance(mark, bytes) else mark

    return SchemaMismatch(f"the database at {where} has schema {text(found)!r}, which this spamkit "
                          f"(schema {text(ours)!r}) does not read: another version of spamkit made it. "
                          "Use that version, or set it aside with `spamkit db reset` and learn afresh")


class NotATokenDatabase(StoreError):
    """The directory holds an LMDB database of another kind: the SMTP filter's karma,
    greylist or sendlimit records, say, given as --db by mistake. Refused and left as it
    is: never moved aside, reset or written to as if it were damaged."""

    exit_code = 65  # EX_DATAERR, as when it was taken for a damaged token database


class DumpError(StoreError):
    """A dump that cannot be restored (not a dump, damaged, cut short, not UTF-8 text):
    the database was not changed. Bad input, not a disk fault."""

    exit_code = 65  # EX_DATAERR


class StoreUnavailable(StoreError):
    """The database's server did not answer: nothing was read or written, a later run may
    succeed (the cron job's next sweep, the SMTP client's next try after 451)."""

    exit_code = 75  # EX_TEMPFAIL


class StoreFull(StoreError):
    """The database took nothing more: its disk is full, or its Redis is past maxmemory.
    Nothing of the work was written and what was committed before stays; reading goes on
    (scans score as before). Room made, a rerun succeeds."""

    exit_code = 74  # EX_IOERR, as any failed write


class DatabaseInUse(StoreError):
    """Work that needs the database to itself (`db compact`) found another process using
    it: nothing was changed, a later run (with the services stopped) may succeed."""

    exit_code = 75  # EX_TEMPFAIL
