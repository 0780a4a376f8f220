"""Give an LMDB database's unused pages back to the disk (`spamkit db compact`).

LMDB reuses the pages a commit frees, but never shortens its file: after a large import,
`db expire`, or a year of seen marks forgotten, data.mdb stays at its largest. A
compacted copy (MDB_CP_COMPACT) holds only the pages in use, renumbered from the start;
it is checked, then put in place of data.mdb by rename.

A process with the database open keeps the old file mapped, and would go on reading it
and writing into it after the rename: what it wrote would be lost. So compaction runs
only when no other process has the database open, and keeps it so until the new file is
in place. LMDB holds an fcntl lock on the first byte of lock.mdb for as long as a
process has the environment open (shared, exclusive while it sets the lock file up).
Holding that byte exclusively proves that nobody has it open, and a process that opens
it meanwhile waits inside LMDB until the lock is let go, then opens the new file. The
old file is read with LMDB's own locking off (no process can write it), so that nothing
here takes a lock on lock.mdb but that byte.

A crash at any instant leaves either the old file or the new one whole: the copy is
written to data.mdb.compacting and flushed to disk before the rename, and a copy left
behind by a crash is removed by the next compaction.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

import lmdb

from spamkit.errors import DatabaseInUse, NoDatabase, StoreError
from spamkit.store.lmdb import (damage_found, free_bytes, holds_records, refuse_remote_filesystem,
                                refuse_writable_by_others)
from spamkit.store.lmdbcheck import check_file
from spamkit.store.lockholders import lock_holders

TEMPORARY_NAME = "data.mdb.compacting"
MAX_DBS = 16  # named databases an environment may hold (LmdbStore makes four)


@dataclass(frozen=True)
class Compaction:
    """What `compact` did: the data file's size before and after, in bytes."""

    before: int
    after: int
    seconds: float


def compact(path: str | os.PathLike[str]) -> Compaction:
    """Replace the database's data file at `path` by a compacted copy of it. Raises
    DatabaseInUse when another process has it open (nothing is changed), StoreCorrupt when
    its structure is damaged, StoreError when the copy cannot be written (a full disk);
    the old file then stays as it was."""
    started = time.perf_counter()
    directory = Path(path)
    data = directory / "data.mdb"
    if not data.exists():
        raise NoDatabase(f"no spamkit database at {directory} (learn some mail first)")
    refuse_remote_filesystem(directory)
    refuse_writable_by_others(directory)
    lock_fd = _hold_exclusively(directory)
    try:
        before = data.stat().st_size
        _remove_leftover(directory / TEMPORARY_NAME)
        _write_compacted_copy(directory, data, directory / TEMPORARY_NAME)
        os.replace(directory / TEMPORARY_NAME, data)
        _sync_directory(directory)
        _reset_lock_file(directory)
        after = data.stat().st_size
    finally:
        os.close(lock_fd)  # (LMDB's waiting openers go on, and open the new file)
    return Compaction(before, after, time.perf_counter() - started)


def _hold_exclusively(directory: Path) -> int:
    """A descriptor of lock.mdb holding LMDB's environment lock (its first byte) alone;
    DatabaseInUse, naming who has the database open, when another process holds it."""
    lock_path = directory / "lock.mdb"
    owner = (directory / "data.mdb").stat()
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:  # (no process has opened it since it went: made here)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        if os.geteuid() == 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)  # (the service's, as the data file is)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise StoreError(f"cannot lock {lock_path}: {error.strerror}") from None
        holders = lock_holders(lock_path)
        who = f" ({'; '.join(holders)})" if holders else ""
        raise DatabaseInUse(f"the database at {directory} is open in another process{who}; "
                            "compaction needs it to itself: stop `spamkit serve` and `spamkit "
                            "spamd` (and wait for a running learn), then run it again") from None
    return fd


def _reset_lock_file(directory: Path) -> None:
    """Have LMDB set lock.mdb up for the new file before anyone else opens it.

    The lock file records the last transaction's number, and a process that finds the
    environment lock shared trusts that record. The compacted copy numbers its
    transactions afresh, so an opener that waited for the lock and then trusted the old
    record read the wrong snapshot (nspam 0 where there were 1,502), and its write was
    stopped by the file check as damage. Opened here, where this process holds the lock alone,
    LMDB finds itself the only user and writes the record from the new file, before it
    lets the lock be shared."""
    env = lmdb.open(str(directory), map_size=(directory / "data.mdb").stat().st_size,
                    max_dbs=MAX_DBS, lock=True, mode=0o600)
    env.close()


def _remove_leftover(temporary: Path) -> None:
    """A copy a crashed compaction left (never in use: only a rename makes it data.mdb)."""
    try:
        temporary.unlink()
    except FileNotFoundError:
        pass


def _write_compacted_copy(directory: Path, data: Path, temporary: Path) -> None:
    """Write and check the compacted copy of `data` at `temporary`, with the old file's
    owner and mode, flushed to disk. Anything wrong removes it and raises."""
    env = _open_unlocked(directory, subdir=True)
    try:
        with env.begin() as txn:
            report = check_file(data, txn.id())
            if not report.sound:
                raise damage_found(directory, report.problems)
            entries = _entries(env, txn)
            needed = _pages_in_use(env, txn) * env.stat()["psize"]
        free = free_bytes(directory)
        if free is not None and free < needed:
            raise StoreError(f"compacting {data} needs {needed >> 20} MiB free beside it, and the "
                             f"disk has {free >> 20} MiB; nothing was changed")
        owner = data.stat()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            env.copyfd(fd, compact=True)
            if os.geteuid() == 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fchmod(fd, owner.st_mode & 0o777)
            os.fsync(fd)
        finally:
            os.close(fd)
        _check_copy(temporary, entries)
    except lmdb.Error as error:
        _remove_leftover(temporary)
        if "No space left" in str(error) or getattr(error, "errno", None) == errno.ENOSPC:
            raise StoreError(f"the disk holding {data} filled up while compacting it; nothing "
                             "was changed") from None
        raise StoreError(f"cannot compact {data}: {error}") from None
    except BaseException:
        _remove_leftover(temporary)
        raise
    finally:
        env.close()


def _open_unlocked(path: Path, subdir: bool) -> lmdb.Environment:
    """Read-only, without LMDB's locks: only for a file no process can be writing."""
    size = (path / "data.mdb" if subdir else path).stat().st_size
    return lmdb.open(str(path), subdir=subdir, readonly=True, lock=False, max_dbs=MAX_DBS,
                     map_size=max(size, 1 << 20))


def _named_databases(env: lmdb.Environment, txn: lmdb.Transaction) -> dict[bytes, lmdb._Database]:
    """Every named database the file holds, as its main tree lists them (so none is
    named here twice over, and a table added later is counted too).

    The SMTP filter's stores (karma, greylist, sendlimit: smtpfilter/recordstore.py) keep
    their records in the main tree itself, with no named database. LMDB refuses to open
    a record as a database, so the first key it refuses says which kind of file this is
    (`holds_records`; opening a record as a database failed the whole compaction before)."""
    if holds_records(env, txn):
        return {}
    names = [bytes(key) for key in txn.cursor().iternext(keys=True, values=False)]
    return {name: env.open_db(name, txn=txn, create=False) for name in names}


def _entries(env: lmdb.Environment, txn: lmdb.Transaction) -> dict[bytes, int]:
    """Entries of the main tree (under b"": the databases' names, or a filter store's
    records) and of each named database."""
    return {b"": txn.stat()["entries"],
            **{name: txn.stat(db)["entries"] for name, db in _named_databases(env, txn).items()}}


def _pages_in_use(env: lmdb.Environment, txn: lmdb.Transaction) -> int:
    """Pages a compacted copy holds: the two meta pages, and every tree's pages."""
    stats = [env.stat(), *(txn.stat(db) for db in _named_databases(env, txn).values())]
    return 2 + sum(int(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) for s in stats)


def _check_copy(temporary: Path, entries: dict[bytes, int]) -> None:
    """The copy's structure is sound and each named database holds as many entries as the
    original's: else StoreError, and it is never put in place."""
    copy = _open_unlocked(temporary, subdir=False)
    try:
        with copy.begin() as txn:
            report = check_file(temporary, txn.id())
            copied = _entries(copy, txn)
    finally:
        copy.close()
    if not report.sound or copied != entries:
        problem = report.problems[0] if report.problems else f"entries {copied} where the original has {entries}"
        raise StoreError(f"the compacted copy did not check out ({problem}); nothing was changed")


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
