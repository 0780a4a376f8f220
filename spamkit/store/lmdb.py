"""The embedded default store: one LMDB environment in a directory.

Named databases:
    tokens  8-byte token hash -> <spam u32><ham u32><last-learned day u32>
    seen    16-byte message key -> <label u8><day u32>[<byte model step f32>]
    meta    name -> ASCII value (nspam, nham, created, last_expire, last_seen_expire,
            tokenizer, schema)
    history 16-byte message key + 8-byte time (ns) -> JSON: who taught what, when

LMDB gives the guarantees the design needs: one writer at a time across processes (a
second `begin(write=True)` waits), readers that never block, and copy-on-write commits,
so a `kill -9` leaves the last committed state. This module adds what LMDB leaves to
its users: growing the map when it fills, adopting a size another process set, clearing
stale reader slots on open, reopening after fork, and a 0700 directory.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import lmdb
import numpy as np

from spamkit.errors import (DatabaseInUse, NoDatabase, NotATokenDatabase, StoreCorrupt, StoreError,
                            StoreFull, StoreUnavailable, schema_mismatch)
from spamkit.store.lmdbcheck import check_file, check_length
from spamkit.store.lockholders import lock_holders
from spamkit.store.base import (BatchLookup, Label, TokenCounts, TokenRecord, Totals, keys_of,
                                today)
from spamkit.store.batch import (CODE_LABEL, LEARNED_META, VALUE_DTYPE, PendingChanges, expiry_order,
                                 magic_facts, new_token_values, pack_seen, unpack_seen)
from spamkit.store.dumpfile import DumpReader, SeenRecord, write_dump
from spamkit.store.maplock import MapLock

SCHEMA = b"1"
INITIAL_MAP_SIZE = 64 << 20
EXPIRE_CHUNK = 10_000  # deletions a write transaction when forgetting old seen marks
MAX_MAP_SIZE = 1 << 40
# after a failed commit, less free space than this means the disk filled up (a batch of
# 1,000 messages writes a few MiB)
DISK_FULL_BELOW = 16 << 20
# LMDB's lock file for 256 readers is 16.5 KiB; less room than this to make it is refused
LOCK_FILE_ROOM = 1 << 20
# what LMDB raises when a page is not what the tree says: damage, not a fault of the disk
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError)
RECOVERY = ("`spamkit db reset --yes` moves it aside and starts an empty one, into which "
            "`spamkit db restore` loads a dump (`spamkit db dump --salvage FILE` first tries "
            "to save what can still be read)")
_VALUE = struct.Struct("<III")


REMOTE_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p",
                                "ceph", "glusterfs", "afs"})


def damage_found(where: str | os.PathLike[str], problems: list[str]) -> StoreCorrupt:
    """The error for damage `verify` found: the first problem, and what to do."""
    return StoreCorrupt(f"the database at {where} is damaged ({problems[0]}); {RECOVERY}")


def holds_records(env: lmdb.Environment, txn: lmdb.Transaction) -> bool:
    """Whether the file's main tree holds records, as the SMTP filter's stores keep them
    (smtpfilter/recordstore.py), rather than the names of databases, as a token database
    does. LMDB refuses to open a record as a database, so its first key tells."""
    for key in txn.cursor().iternext(keys=True, values=False):
        try:
            env.open_db(bytes(key), txn=txn, create=False)
        except lmdb.Error:  # (MDB_INCOMPATIBLE, or MDB_BAD_VALSIZE: not a database's entry)
            return True
        return False
    return False


def free_bytes(where: Path | int) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of `where`, a path or
    an open descriptor (None if it cannot be asked)."""
    try:
        stats = os.statvfs(where)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def move_aside(path: Path) -> Path:
    """Rename a damaged database's files to data.mdb.damaged-<time> (and the lock file
    with them), kept for a look afterwards; returns the new data file name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept = path / f"data.mdb.damaged-{stamp}"
    os.rename(path / "data.mdb", kept)
    try:
        os.rename(path / "lock.mdb", path / f"lock.mdb.damaged-{stamp}")
    except FileNotFoundError:
        pass
    return kept


def filesystem_type(path: Path) -> str:
    """The type of the file system holding `path`, from /proc/self/mountinfo ("" if unknown)."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in mounts:
        fields = line.split(" - ", 1)
        mount_point = fields[0].split()[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best) and len(fields) == 2:
            best, kind = mount_point, fields[1].split()[0]
    return kind


def refuse_remote_filesystem(path: Path) -> None:
    """LMDB's locks and mmap do not work over network file systems (lmdb.h): refuse them."""
    kind = filesystem_type(path)
    if kind in REMOTE_FILESYSTEMS and not os.environ.get("SPAMKIT_ALLOW_REMOTE_DB"):
        raise StoreError(f"{path} is on a {kind} file system, where LMDB's locking does not "
                         "work; put the database on a local disk (or set SPAMKIT_ALLOW_REMOTE_DB=1 "
                         "if you are sure only one machine uses it)")


class LmdbWriter(PendingChanges):
    """Collects one batch in memory (PendingChanges) and writes it in the enclosing write
    transaction: each distinct token once, in key order."""

    def __init__(self, store: LmdbStore, txn: lmdb.Transaction) -> None:
        super().__init__()
        self._store = store
        self._txn = txn
        self._raw_operations: list[Callable[[lmdb.Transaction], None]] = []

    def run_in_transaction(self, operation: Callable[[lmdb.Transaction], None]) -> None:
        """Queue a direct operation on the transaction (restore uses it), run at commit."""
        self._raw_operations.append(operation)

    def learned_as(self, message_key: bytes) -> Label | None:
        if message_key in self._seen:
            return self._seen[message_key]
        raw = self._txn.get(message_key, db=self._store._seen_db)
        return CODE_LABEL.get(raw[0]) if raw else None

    def prefetch_seen(self, message_keys: Sequence[bytes]) -> None:
        """Nothing to do: a read in the write transaction costs a microsecond."""

    def _stored_byte_step(self, message_key: bytes) -> float:
        raw = self._txn.get(message_key, db=self._store._seen_db)
        return 0.0 if raw is None else _seen_mark(raw)[2]

    def meta_value(self, name: str) -> str | None:
        if name in self._meta:
            return self._meta[name]
        raw = self._txn.get(name.encode(), db=self._store._meta_db)
        return None if raw is None else bytes(raw).decode()

    def _write_tokens(self, txn: lmdb.Transaction, day: int) -> None:
        if not self._deltas:
            return
        keys, spam_delta, ham_delta = self.token_deltas()
        key_list = keys_of(keys)
        tokens_db = self._store._tokens_db
        found = txn.cursor(db=tokens_db).getmulti(key_list)
        old = positions = None
        if found:
            found_numbers, old = _found_records(found)
            positions = np.searchsorted(keys, found_numbers)
        values, keep = new_token_values(spam_delta, ham_delta, old, positions, day)
        all_kept = bool(keep.all())  # nothing went to zero: the usual batch of learning
        kept_keys = key_list if all_kept else [key_list[i] for i in np.flatnonzero(keep)]
        # each value its own 12 bytes: numpy splits them 4x faster than slicing
        value_list = values.view(f"V{VALUE_DTYPE.itemsize}").tolist()
        txn.cursor(db=tokens_db).putmulti(zip(kept_keys, value_list))
        if not all_kept and positions is not None:
            existed = np.zeros(len(keys), dtype=bool)
            existed[positions] = True
            for index in np.flatnonzero(~keep & existed):
                txn.delete(key_list[index], db=tokens_db)

    def _flush(self) -> None:
        txn, store, day = self._txn, self._store, today()
        for operation in self._raw_operations:
            operation(txn)
        self._write_tokens(txn, day)
        marks, forgotten = self.seen_values(day)
        for message_key in forgotten:
            txn.delete(message_key, db=store._seen_db)
        for message_key, mark in marks:
            txn.put(message_key, mark, db=store._seen_db)
        nspam = store._meta_int(txn, b"nspam") + self._messages[Label.SPAM]
        nham = store._meta_int(txn, b"nham") + self._messages[Label.HAM]
        txn.put(b"nspam", str(max(0, nspam)).encode(), db=store._meta_db)
        txn.put(b"nham", str(max(0, nham)).encode(), db=store._meta_db)
        for name, value in self._meta.items():
            txn.put(name.encode(), value.encode(), db=store._meta_db)
        for key, record in self._events:
            txn.put(key, record, db=store._history_db)


def _delete_all(db: lmdb._Database, keys: list[bytes], txn: lmdb.Transaction) -> None:
    for key in keys:
        txn.delete(key, db=db)


# a token's key followed by its value, as getmulti's pairs lie end to end once joined
_RECORD_DTYPE = np.dtype([("key", ">u8"), ("spam", "<u4"), ("ham", "<u4"), ("day", "<u4")])


def _found_records(found: Sequence[tuple[bytes | memoryview, bytes | memoryview]]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(keys as numbers, values) of getmulti's (key, value) pairs. One join of the pairs
    flattened: unzipping them into two joins cost 2.6 times as much (7.4 against 2.8 us a
    message in batches of 256)."""
    joined = b"".join(itertools.chain.from_iterable(found))
    if len(joined) != len(found) * _RECORD_DTYPE.itemsize:
        raise StoreCorrupt(f"a token record is not 8 + 12 bytes: the database is damaged; {RECOVERY}")
    records = np.frombuffer(joined, dtype=_RECORD_DTYPE)
    return records["key"].astype(np.uint64), records


def _token_values(values: Sequence[bytes | memoryview]) -> np.ndarray:
    """Token values, checked: a record of the wrong length would shift every one after it."""
    joined = b"".join(values)
    if len(joined) != len(values) * VALUE_DTYPE.itemsize:
        raise StoreCorrupt(f"a token record is not 12 bytes: the database is damaged; {RECOVERY}")
    return np.frombuffer(joined, dtype=VALUE_DTYPE)


def _seen_mark(value: bytes | memoryview) -> tuple[int, int, float]:
    mark = unpack_seen(value)
    if mark is None:
        raise StoreCorrupt(f"a seen record is {len(value)} bytes, not 5 or 9: the database is "
                           f"damaged; {RECOVERY}")
    return mark


def _unpack(layout: struct.Struct, value: bytes | memoryview, table: str) -> tuple[int, ...]:
    try:
        return layout.unpack(value)
    except struct.error:
        raise StoreCorrupt(f"a {table} record is not {layout.size} bytes: the database is damaged; "
                           f"{RECOVERY}") from None


def _descriptor(path: Path, flags: int) -> int | None:
    try:
        return os.open(path, flags)
    except OSError:
        return None


def refuse_writable_by_others(path: Path) -> None:
    """A database other users may write is one they may teach: whoever can write it
    decides what is spam (reliability checklist 39). Refused, with the fix."""
    for checked in (path, path / "data.mdb"):
        try:
            mode = checked.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o022:
            raise StoreError(f"{checked} is writable by other users (mode {mode:o}), who could "
                             f"teach the filter what is spam: chmod go-w {checked}")


class LmdbStore:
    """TokenStore on LMDB. Open one per process; it reopens itself after a fork."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 map_size: int = INITIAL_MAP_SIZE, sync: bool = True) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._map_size = map_size
        self._sync = sync
        self._open()

    # -- opening --------------------------------------------------------------------

    def _open(self) -> None:
        if self.readonly:
            if not (self.path / "data.mdb").exists():
                raise NoDatabase(f"no spamkit database at {self.path} (learn some mail first)")
        else:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.path, 0o700)
        refuse_remote_filesystem(self.path)
        refuse_writable_by_others(self.path)
        self._refuse_lock_file_on_full_disk()
        existing = (self.path / "data.mdb").exists()
        if existing:
            self._map_size = max(self._map_size, (self.path / "data.mdb").stat().st_size)
        try:
            self._env = lmdb.open(str(self.path), map_size=self._map_size, max_dbs=8,
                                  subdir=True, readonly=self.readonly, sync=self._sync,
                                  metasync=self._sync, lock=True, max_readers=256, mode=0o600)
        except (lmdb.InvalidError, lmdb.CorruptedError) as error:
            raise StoreCorrupt(f"the database at {self.path} is damaged ({error}); "
                               f"{RECOVERY}") from None
        except lmdb.Error as error:
            raise StoreError(f"cannot open the database at {self.path}: {error}") from None
        self._pid = os.getpid()
        self._closed = False
        self._sound = False  # the file's structure was checked by this process (`verify`)
        self._map_lock = MapLock()  # (a forked child's own: the parent's threads are not its)
        try:
            self._refuse_truncated_file()
            self._env.reader_check()  # clears slots left by processes that died mid-read
            if existing:
                self._refuse_records()
            if self.readonly:
                self._open_databases(None)
                self._check_schema()
            else:  # made (or checked) in one transaction: a reader sees all of it or none
                with self._env.begin(write=True) as txn:
                    self._open_databases(txn)
                    self._initialise(txn, existing)
        except lmdb.NotFoundError:
            empty = self._env.stat()["entries"] == 0  # no named databases in it at all
            self._env.close()
            if empty:  # made by a writer that has not committed its first transaction yet
                raise NoDatabase(f"no spamkit database at {self.path} yet (learn some mail "
                                 "first)") from None
            raise StoreCorrupt(f"{self.path} is an LMDB database but not a spamkit one") from None
        except lmdb.Error as error:
            self._env.close()
            raise StoreError(f"cannot open the database at {self.path}: {error}") from None
        except StoreError:
            self._env.close()
            raise
        # asked for free space after a failed commit, and whether the file was replaced
        # (`replaced`): by descriptor, since a process that gave up root after opening
        # (`serve --user`) may not look the path up any more. (Not lock.mdb: closing any
        # descriptor of it would let go of LMDB's fcntl locks.)
        self._directory_fd = _descriptor(self.path, os.O_RDONLY | os.O_DIRECTORY)
        self._data_fd = _descriptor(self.path / "data.mdb", os.O_RDONLY)

    def _space_left(self) -> int | None:
        return free_bytes(self.path if self._directory_fd is None else self._directory_fd)

    def _close_descriptors(self) -> None:
        for fd in (self._directory_fd, self._data_fd):
            if fd is not None:
                os.close(fd)
        self._directory_fd = self._data_fd = None

    def persistence(self) -> None:
        """None: the database is a file (db magic's redis_persistence is null)."""
        return None

    def replaced(self) -> bool:
        """Whether the file this store has open is no longer the database at its path: a
        file moved over data.mdb (a backup put back), the directory removed and made again
        by a new learn, or the file removed or renamed. A service that gave up root may not
        look inside the directory: the descriptor kept since opening still tells a file
        that has no name left (a link count of 0)."""
        if self._data_fd is None:
            return False
        try:
            held = os.fstat(self._data_fd)
            if held.st_nlink == 0:
                return True
            now = (self.path / "data.mdb").stat()
        except FileNotFoundError:
            return True
        except OSError:  # (not ours to look at: only the link count can tell)
            return False
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)

    def _refuse_records(self) -> None:
        """NotATokenDatabase for one of the SMTP filter's databases, given as --db by
        mistake: a writer would have added spamkit's tables beside its records, and `db
        reset` would have set it aside as damaged."""
        with self._env.begin() as txn:  # (a token database with a stray record still opens)
            if txn.get(b"tokens") is None and holds_records(self._env, txn):
                raise NotATokenDatabase(
                    f"{self.path} holds an LMDB database of records, not spamkit's tokens (the "
                    "SMTP filter's karma, greylist and sendlimit databases are such): is it the "
                    "right directory? Nothing was changed")

    def _refuse_truncated_file(self) -> None:
        """A data file shorter than its own last page (a copy cut short, a damaged disk)
        would be read through the memory map past its end: a SIGBUS, a crash with no
        message. The meta pages at its start say how long it must be, less the pages
        listed free that LMDB never wrote (lmdbcheck.check_length). (Read under a read
        transaction, which pins its snapshot: a writer writes its pages before the meta
        page that counts them, so the file is at least that snapshot's length.) A file
        that does not hold the snapshot at all was swapped under others: see
        `_replaced_under_others`."""
        data = self.path / "data.mdb"
        for _attempt in range(3):
            with self._env.begin() as txn:
                txnid = txn.id()
                try:
                    report = check_length(data, txnid)
                except OSError:
                    return
            if not report.snapshot_gone:  # (else two commits overtook us: look again)
                break
        if report.snapshot_missing:  # (overtaken three times over in microseconds: no)
            raise self._replaced_under_others(txnid)
        if report.problems:
            raise StoreCorrupt(f"{data} is cut short: {report.problems[0]}; {RECOVERY}")

    def _replaced_under_others(self, txnid: int) -> DatabaseInUse:
        """data.mdb lacks the last transaction lock.mdb records. LMDB trusts that record
        whenever another process has the environment open (only the first opener sets it
        from the file), and picks the meta page by its number: so the file was moved or
        copied over data.mdb while others had the old one open, and reading it here would
        read a snapshot chosen by a stranger's count. Others go on with the old file
        (a rename) until they let it go. Before, this said "cut short" and offered `db
        reset`, or, where the new file's numbers were higher, opened it and called it
        damaged at the first write (docs/decisions/0028)."""
        holders = lock_holders(self.path / "lock.mdb")
        who = f" ({'; '.join(holders)})" if holders else ""
        return DatabaseInUse(
            f"{self.path / 'data.mdb'} was replaced while other processes had the database open"
            f"{who}: it lacks transaction {txnid}, the last one their lock file records. Nothing "
            "was read or changed. It opens once they let the old file go: a running service "
            "opens the new file by itself within seconds where its user may (else restart it), "
            "and a learn lets go when it ends. To put a backup in place while services run, "
            "use `spamkit db restore`")

    def _refuse_lock_file_on_full_disk(self) -> None:
        """LMDB makes its lock file by extending it and writing through a memory map; on a
        full disk that write is a SIGBUS, a crash with no message. So when the lock file
        has yet to be made, there must be room for it."""
        if (self.path / "lock.mdb").exists():
            return
        free = free_bytes(self.path)
        if free is not None and free < LOCK_FILE_ROOM:
            raise StoreFull(f"the disk holding the database at {self.path} is full ({free >> 10} KiB "
                            "free), too full for its lock file; free some space and run again")

    def _open_databases(self, txn: lmdb.Transaction | None) -> None:
        """The named databases; created when `txn` (a write transaction) is given."""
        create = txn is not None
        self._tokens_db = self._env.open_db(b"tokens", txn=txn, create=create)
        self._seen_db = self._env.open_db(b"seen", txn=txn, create=create)
        self._meta_db = self._env.open_db(b"meta", txn=txn, create=create)
        # the audit log came after the first databases were made: read those without it
        self._history_db: lmdb._Database | None
        try:
            self._history_db = self._env.open_db(b"history", txn=txn, create=create)
        except lmdb.NotFoundError:
            self._history_db = None

    def _initialise(self, txn: lmdb.Transaction, existing: bool) -> None:
        schema = txn.get(b"schema", db=self._meta_db)
        if schema is None:
            if existing and txn.stat(self._tokens_db)["entries"]:
                raise StoreCorrupt(f"{self.path}: database has tokens but no schema mark")
            txn.put(b"schema", SCHEMA, db=self._meta_db)
            txn.put(b"created", str(today()).encode(), db=self._meta_db)
        elif schema != SCHEMA:
            raise schema_mismatch(str(self.path), schema, SCHEMA)

    def _check_schema(self) -> None:
        """A reader's check of the schema mark (a writer's is `_initialise`)."""
        with self._env.begin() as txn:
            schema = txn.get(b"schema", db=self._meta_db)
        if schema is not None and schema != SCHEMA:
            raise schema_mismatch(str(self.path), schema, SCHEMA)

    def _check_pid(self) -> None:
        """LMDB handles must not cross a fork: a child reopens its own environment.

        The inherited handle is closed first (py-lmdb refuses a second open of the same
        path in one process); LMDB checks the pid, so the parent's reader slots and
        locks are left alone.
        """
        if os.getpid() != self._pid:
            self._env.close()
            self._close_descriptors()
            self._open()

    # -- transactions ----------------------------------------------------------------

    def _begin(self, write: bool = False) -> lmdb.Transaction:
        """A transaction, holding the map lock shared until `_end` (spamkit.store.maplock)."""
        self._check_pid()
        try:
            return self._map_lock.begin(self._env, write)
        except lmdb.Error:
            if self._closed:  # (a scan that began on a service's store as it was replaced)
                raise StoreUnavailable(f"the database at {self.path} was closed while in use (a "
                                       "service lets its file go when it is replaced, and as it "
                                       "stops)") from None
            raise

    def _end(self, txn: lmdb.Transaction, commit: bool) -> None:
        try:
            if commit:
                txn.commit()
            else:
                txn.abort()
        finally:
            self._map_lock.release_shared()

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[lmdb.Transaction]:
        """A transaction for a `with` block: committed at its end, aborted on an error."""
        txn = self._begin(write)
        try:
            yield txn
        except (*_DAMAGE, UnicodeDecodeError) as error:
            self._end(txn, commit=False)
            raise self._damaged(error) from None
        except BaseException:
            self._end(txn, commit=False)
            raise
        self._end(txn, commit=True)

    def _mapped_size(self) -> int:
        """This process's map size (fixed while one of its transactions is open)."""
        return int(self._env.info()["map_size"])

    def _grow(self, full_size: int) -> None:
        """Double the map that was `full_size` when a write found it full (called with no
        transaction of this thread open); if another thread grew it meanwhile, the write
        is tried again in that room (MapLock.grow)."""
        self._map_lock.grow(self._env, full_size, self._refuse_growing)

    def _refuse_growing(self, current: int) -> None:
        if current >= MAX_MAP_SIZE:
            raise StoreError(f"database at {self.path} reached {current >> 30} GiB; expire it")
        free = self._space_left()
        if free is not None and free < current:
            raise StoreError(f"not enough free disk at {self.path} to grow the database")

    def _damaged(self, error: Exception) -> StoreCorrupt:
        """Damage met in a transaction: a page that is not what its parent says, or a value
        that was text and is not. (LMDB keeps no checksums: damage to a page's header can
        crash the process outright, which is why `verify` walks the file first.)"""
        return StoreCorrupt(f"the database at {self.path} is damaged ({type(error).__name__}: "
                            f"{str(error)[:120]}); {RECOVERY}")

    def _write_failure(self, error: lmdb.Error) -> StoreError:
        """What a failed commit tells the user. LMDB reports a full disk as a bare
        "Input/output error" (a short write), so the free space is looked at to say so."""
        if isinstance(error, _DAMAGE):
            return self._damaged(error)
        free = self._space_left()
        if free is not None and free < DISK_FULL_BELOW:
            return StoreFull(f"the disk holding the database at {self.path} is full ({free >> 10} KiB "
                             "free): this batch was not written; what was committed before it "
                             "stays. Free some space and run again")
        return StoreError(f"cannot write to the database at {self.path}: {error}")

    def verify(self) -> list[str]:
        """Damage in the file's structure (spamkit.store.lmdbcheck), at the snapshot a read
        transaction pins; empty if it is sound. LMDB follows a damaged page header into a
        crash (SIGSEGV, SIGBUS, an assertion), with no error to report, so what walks a
        whole tree or writes asks this first."""
        for _attempt in range(3):
            with self._transaction() as txn:
                report = check_file(self.path / "data.mdb", txn.id())
            if not report.snapshot_gone:  # (else two commits overtook us: look again)
                break
        self._sound = report.sound
        return report.problems

    def _require_sound(self) -> None:
        """StoreCorrupt unless this process has found the structure sound (checked once: a
        process's own writes keep it so)."""
        if not self._sound and (problems := self.verify()):
            raise damage_found(self.path, problems)

    @contextmanager
    def writer(self) -> Iterator[LmdbWriter]:
        """A batch of changes, committed together when the block ends without error.

        The body of the block runs once; its changes are kept in memory and written at
        the end, so if the map is full the write is retried after growing it.
        """
        if self.readonly:
            raise StoreError("the database was opened read-only")
        self._require_sound()
        txn = self._begin(write=True)
        size = self._mapped_size()
        writer = LmdbWriter(self, txn)
        try:
            yield writer
        except (*_DAMAGE, UnicodeDecodeError) as error:
            self._end(txn, commit=False)
            raise self._damaged(error) from None
        except BaseException:
            self._end(txn, commit=False)
            raise
        while True:
            try:
                writer._flush()
                txn.commit()
            except lmdb.MapFullError:
                self._end(txn, commit=False)  # (a commit that failed is aborted already)
                self._grow(size)
                txn = self._begin(write=True)
                size = self._mapped_size()
                writer._txn = txn
            except lmdb.Error as error:
                self._end(txn, commit=False)
                raise self._write_failure(error) from None
            except BaseException:
                self._end(txn, commit=False)
                raise
            else:
                self._map_lock.release_shared()
                return

    # -- reading ---------------------------------------------------------------------

    def _meta_int(self, txn: lmdb.Transaction, name: bytes) -> int:
        raw = txn.get(name, db=self._meta_db)
        try:
            return int(raw) if raw else 0
        except ValueError:
            raise StoreCorrupt(f"{self.path}: meta {name.decode()} is not a number") from None

    def totals(self) -> Totals:
        with self._transaction() as txn:
            return self._totals(txn)

    def _totals(self, txn: lmdb.Transaction) -> Totals:
        return Totals(self._meta_int(txn, b"nspam"), self._meta_int(txn, b"nham"),
                      txn.stat(self._tokens_db)["entries"])

    def counts(self, keys: Sequence[bytes]) -> TokenCounts:
        """Counts for the known tokens among `keys`, and the totals, in one read transaction."""
        with self._transaction() as txn:
            found = txn.cursor(db=self._tokens_db).getmulti(sorted(keys))
            totals = self._totals(txn)
        if not found:
            return TokenCounts(np.zeros(0, dtype=np.uint64), np.zeros(0), np.zeros(0), totals)
        known, values = _found_records(found)
        return TokenCounts(known, values["spam"].astype(np.float64),
                           values["ham"].astype(np.float64), totals)

    def counts_many(self, key_lists: Sequence[Sequence[bytes]]) -> list[TokenCounts]:
        """`counts` for several messages, all read in one transaction.

        Each distinct key is looked up once, in key order: the messages of a batch share
        most of their tokens (on the test fold, batches of 256 ask for 36% as many
        distinct keys as keys), a lookup costs ~0.5 us, and walking the tree in order
        keeps its pages in cache. Matching the found counts back to each message is
        numpy's work. (A per-process memory of values between commits was tried and
        measured: no gain, the Python work around it cost what it saved.)
        """
        if len(key_lists) == 1:  # one message: the direct way has less numpy to set up
            return [self.counts(key_lists[0])]
        batch = BatchLookup.of(key_lists)
        with self._transaction() as txn:
            found = txn.cursor(db=self._tokens_db).getmulti(keys_of(batch.wanted))
            totals = self._totals(txn)
        if not found:
            return batch.split(np.zeros(0, dtype=np.uint64), np.zeros(0), np.zeros(0), totals)
        known, values = _found_records(found)
        return batch.split(known, values["spam"].astype(np.float64),
                           values["ham"].astype(np.float64), totals)

    def learned_as(self, message_key: bytes) -> Label | None:
        with self._transaction() as txn:
            raw = txn.get(message_key, db=self._seen_db)
        return CODE_LABEL.get(raw[0]) if raw else None

    def learned_as_many(self, message_keys: Sequence[bytes]) -> list[Label | None]:
        with self._transaction() as txn:
            raws = [txn.get(key, db=self._seen_db) for key in message_keys]
        return [CODE_LABEL.get(raw[0]) if raw else None for raw in raws]

    def records(self) -> Iterator[TokenRecord]:
        with self._transaction() as txn:
            yield from self._records_in(txn)

    def _records_in(self, txn: lmdb.Transaction) -> Iterator[TokenRecord]:
        for key, value in txn.cursor(db=self._tokens_db):
            spam, ham, day = _unpack(_VALUE, value, "token")
            yield TokenRecord(bytes(key), spam, ham, day)

    def seen_records(self) -> Iterator[SeenRecord]:
        with self._transaction() as txn:
            yield from self._seen_in(txn)

    def _seen_in(self, txn: lmdb.Transaction) -> Iterator[SeenRecord]:
        for key, value in txn.cursor(db=self._seen_db):
            code, day, step = _seen_mark(value)
            if code in CODE_LABEL:
                yield SeenRecord(bytes(key), CODE_LABEL[code], day, step)

    def history(self, message_key: bytes) -> list[dict[str, object]]:
        """Every learn decision recorded for a message, oldest first."""
        events: list[dict[str, object]] = []
        if self._history_db is None:
            return events
        with self._transaction() as txn:
            cursor = txn.cursor(db=self._history_db)
            if cursor.set_range(message_key):
                for key, value in cursor:
                    if bytes(key[:16]) != message_key:
                        break
                    events.append(json.loads(bytes(value)))
        return events

    def history_records(self) -> Iterator[tuple[bytes, bytes]]:
        with self._transaction() as txn:
            yield from self._events_in(txn)

    def _events_in(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, bytes]]:
        if self._history_db is None:
            return
        for key, value in txn.cursor(db=self._history_db):
            bytes(value).decode()  # (an event is JSON text: damage surfaces here, as such)
            yield bytes(key), bytes(value)

    def meta(self) -> dict[str, str]:
        with self._transaction() as txn:
            return self._meta_in(txn)

    def _meta_in(self, txn: lmdb.Transaction) -> dict[str, str]:
        return {bytes(k).decode(): bytes(v).decode() for k, v in txn.cursor(db=self._meta_db)}

    def meta_value(self, name: str) -> str | None:
        with self._transaction() as txn:
            raw = txn.get(name.encode(), db=self._meta_db)
            return None if raw is None else bytes(raw).decode()

    def magic(self) -> dict[str, object]:
        """What `sa-learn --dump magic` shows, plus the database's size on disk."""
        self._require_sound()
        meta = self.meta()
        with self._transaction() as txn:
            ntokens = txn.stat(self._tokens_db)["entries"]
            nseen = txn.stat(self._seen_db)["entries"]
            nevents = txn.stat(self._history_db)["entries"] if self._history_db is not None else 0
            days = _token_values([v for _, v in txn.cursor(db=self._tokens_db)])["day"]
        info = self._env.info()
        return magic_facts(meta, ntokens, nseen, nevents, days,
                           bytes_used=(info["last_pgno"] + 1) * self._env.stat()["psize"],
                           map_size=info["map_size"], path=str(self.path), backend="lmdb")

    # -- maintenance -----------------------------------------------------------------

    def set_meta(self, name: str, value: str) -> None:
        with self.writer() as writer:  # (which grows the map if the value does not fit)
            writer.set_meta(name, value)

    def expire(self, max_tokens: int) -> int:
        """Drop the oldest, rarest tokens until at most `max_tokens` remain.

        Order of removal: last-learned day, oldest first; within a day, fewest
        messages first. One write transaction, so a crash removes nothing.
        """
        self._require_sound()
        with self._transaction() as txn:
            pairs = list(txn.cursor(db=self._tokens_db))
        excess = len(pairs) - max_tokens
        doomed = [pairs[index][0] for index in
                  expiry_order(_token_values([v for _, v in pairs]), excess)] if excess > 0 else []
        removed = 0

        def remove(txn: lmdb.Transaction) -> None:  # (run again if the map had to grow)
            nonlocal removed
            removed = sum(1 for key in doomed if txn.delete(key, db=self._tokens_db))
            txn.put(b"last_expire", str(today()).encode(), db=self._meta_db)
            txn.put(b"last_expire_removed", str(removed).encode(), db=self._meta_db)

        with self.writer() as writer:
            writer.run_in_transaction(remove)
        return removed

    def expire_seen(self, before_day: int) -> tuple[int, int]:
        """Forget which messages were learned before `before_day`: drop their seen marks,
        and the audit events older than that day. Returns (marks, events) dropped.

        Every message learned leaves a seen mark and an audit event, 200-550 bytes on
        disk together; the token table has its cap, and without this these two would grow
        by every message ever learned (decision 0015). Deleted EXPIRE_CHUNK keys to a
        transaction, so a first run over years of marks does not hold the writer lock for
        long, and a crash keeps each finished chunk (each is whole); a mark relearned
        while this runs stays. The counts a mark stood for stay: only the memory that the
        message was learned goes.
        """
        self._require_sound()
        cutoff_ns = before_day * 86400 * 10**9
        history = self._writable_history()
        with self._transaction() as txn:
            old_marks = [bytes(key) for key, value in txn.cursor(db=self._seen_db)
                         if _seen_mark(value)[1] < before_day]
            old_events = [bytes(key) for key in txn.cursor(db=history).iternext(values=False)
                          if struct.unpack_from(">Q", key, 16)[0] < cutoff_ns]
        for start in range(0, len(old_marks), EXPIRE_CHUNK):
            with self.writer() as writer:
                writer.run_in_transaction(functools.partial(
                    self._delete_old_marks, old_marks[start:start + EXPIRE_CHUNK], before_day))
        for start in range(0, len(old_events), EXPIRE_CHUNK):
            with self.writer() as writer:
                writer.run_in_transaction(functools.partial(
                    _delete_all, history, old_events[start:start + EXPIRE_CHUNK]))
        with self.writer() as writer:
            writer.set_meta("last_seen_expire", str(today()))
            writer.set_meta("last_seen_expire_removed", str(len(old_marks)))
        return len(old_marks), len(old_events)

    def dump(self, out: IO[str], salvage: bool = False) -> None:
        """One read transaction for all of it: a learner committing meanwhile cannot leave
        the dump with a message's seen mark but not its tokens."""
        if not salvage:
            self._require_sound()
        with self._transaction() as txn:
            write_dump(out, self._meta_in(txn), self._records_in(txn), self._seen_in(txn),
                       self._events_in(txn))

    def restore(self, source: IO[str]) -> None:
        """Replace the whole database with a dump; a bad dump changes nothing."""
        dump = DumpReader(source).read()

        def replace_contents(txn: lmdb.Transaction) -> None:
            txn.drop(self._tokens_db, delete=False)
            txn.drop(self._seen_db, delete=False)
            cursor = txn.cursor(db=self._tokens_db)
            cursor.putmulti([(r.key, _VALUE.pack(r.spam, r.ham, r.day))
                             for r in sorted(dump.tokens, key=lambda r: r.key)])
            for mark in dump.seen:
                txn.put(mark.key, pack_seen(mark.label, mark.day, mark.byte_step), db=self._seen_db)
            stale = [bytes(name) for name in txn.cursor(db=self._meta_db).iternext(values=False)
                     if bytes(name) != b"schema"]
            _delete_all(self._meta_db, stale, txn)  # (a value the dump lacks must not linger)
            for name, value in dump.meta.items():
                if name != "schema":
                    txn.put(name.encode(), value.encode(), db=self._meta_db)
            history = self._writable_history()
            txn.drop(history, delete=False)
            for key, record in dump.events:
                txn.put(key, record, db=history)

        with self.writer() as writer:
            writer.run_in_transaction(replace_contents)

    def _delete_old_marks(self, keys: list[bytes], before_day: int, txn: lmdb.Transaction) -> None:
        """Delete these seen marks unless relearned since they were read (a new day)."""
        for key in keys:
            value = txn.get(key, db=self._seen_db)
            if value is not None and _seen_mark(value)[1] < before_day:
                txn.delete(key, db=self._seen_db)

    def _writable_history(self) -> lmdb._Database:
        """The audit log's table, which opening for writing always creates (only a reader
        of a database older than the audit log goes without it)."""
        if self._history_db is None:
            raise StoreError("the database was opened read-only")
        return self._history_db

    def reset(self) -> None:
        self._require_sound()  # (LMDB walks a tree to drop it: `db reset` sets a damaged one aside)
        history = self._writable_history()

        def empty(txn: lmdb.Transaction) -> None:
            txn.drop(self._tokens_db, delete=False)
            txn.drop(self._seen_db, delete=False)
            txn.drop(history, delete=False)
            for name in LEARNED_META:
                txn.delete(name.encode(), db=self._meta_db)

        self._write_growing(empty)

    def _write_growing(self, operation: Callable[[lmdb.Transaction], None]) -> None:
        """Run `operation` in a write transaction and commit it; when the map is full, grow
        it and run the operation again. Dropping trees takes free pages too: a reset of a
        database opened at its file's size failed with MDB_MAP_FULL. (`writer` does the
        same for batches, whose changes it keeps to write again.)"""
        while True:
            try:
                with self._transaction(write=True) as txn:
                    size = self._mapped_size()
                    operation(txn)
                return
            except lmdb.MapFullError:
                self._grow(size)

    def close(self) -> None:
        if os.getpid() == self._pid:
            with self._map_lock.exclusive():  # after every open transaction of the process
                self._closed = True
                self._env.close()
                self._close_descriptors()

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

