"""The shared store: one Redis database that several machines' filters and trainers use.

`--db redis://[:password@]host[:port][/number][?prefix=spamkit:]` (also `rediss://` and
`unix:///path/redis.sock`). Keys, all under the prefix (default "spamkit:"):

    tokens   hash   8-byte token hash -> <spam u32><ham u32><last-learned day u32>
    seen     hash   16-byte message key -> <label u8><day u32>[<byte model step f32>]
    meta     hash   name -> ASCII value (nspam, nham, created, schema, tokenizer, ...)
    history  sorted set, every score 0, so ordered by member:
             16-byte message key + 8-byte time (ns, big-endian) + JSON record
    lock     string the writer lock's token, with a time to live

The records are LMDB's, byte for byte, so `db dump` of one restores into the other.

What LMDB gives by itself, this module builds from Redis's parts:

- **One writer at a time.** A writer takes `lock` (SET NX with a time to live, waiting
  while another holds it), reads what it needs, and commits everything in one MULTI/EXEC
  that WATCHes the lock: if the lock expired or passed to another writer meanwhile, the
  EXEC does nothing and the batch fails whole. Counts are written as values computed
  under the lock, not as increments, so a commit sent twice sets the same state.
- **All or nothing.** Redis runs an EXEC's commands together; a connection lost before
  EXEC applies none of them. Counts, totals, seen marks and audit events of a batch are
  in one EXEC.
- **Consistent reads.** A message's lookups, the totals and the token count are read by
  one Lua script, which Redis runs alone. Not by MULTI/EXEC: a Redis past its maxmemory
  refuses every command queued in a MULTI, reads too, so a full Redis would have stopped
  every scan (the SMTP filter's WhenDatabaseDown, 451 by default); a script that only
  reads it runs. Where scripts are refused to us (an ACL giving a scanner reads only),
  the reads are MULTI/EXEC, as before.
- **Full is said so.** A Redis past maxmemory (policy noeviction) refuses writes: learning
  stops with an error that names the limit and the way out, and `db expire` still makes
  room. A policy that evicts any key (allkeys-*) could drop a whole table; opening the
  database to write warns of it.
- **Down means down.** Redis unreachable is `StoreUnavailable` (exit 75, EX_TEMPFAIL:
  the cron job tries again next time; the SMTP filter answers 451), after a connect
  timeout of one second, never a verdict of ham.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, OutOfMemoryError, WatchError
from redis.retry import Retry

from spamkit.errors import NoDatabase, StoreCorrupt, StoreError, StoreFull, StoreUnavailable, schema_mismatch
from spamkit.store.base import BatchLookup, Label, TokenCounts, TokenRecord, Totals, keys_of, today
from spamkit.store.batch import (CODE_LABEL, LEARNED_META, VALUE_DTYPE, PendingChanges, expiry_order,
                                 magic_facts, new_token_values, pack_seen, unpack_seen)
from spamkit.store.dumpfile import DumpReader, SeenRecord, write_dump

SCHEMA = "1"
DEFAULT_PREFIX = "spamkit:"
# a writer holds the lock for one batch (milliseconds to a second); a writer that died
# holding it keeps others waiting this long at most
LOCK_SECONDS = 60.0
CHUNK = 10_000  # fields a command: HMGET, HSET, HDEL and HSCAN work in pieces this size
CONNECT_TIMEOUT = 1.0  # reliability checklist item 12: a backend down is known within 1 s
# a Redis that took the connection and then says nothing (stopped, swapping, a network cut
# after the handshake): redis-py before 7 waited for ever, so a sweep hung holding its lock
# and every later cron run found it "already running"; a command's work is milliseconds
READ_TIMEOUT = 5.0
RECOVERY = ("`spamkit db reset --yes` empties it, and `spamkit db restore` then loads a dump "
            "into it")
_EVENT_KEY = 24  # message key (16) + time (8) at the head of a history member
# delete the lock only if it is still ours (a writer whose lock expired must not free another's)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# The tokens asked for (ARGV) from KEYS[1], then nspam, nham and the schema mark from KEYS[2],
# then the token count: one state of the database. HMGET in pieces, as Lua's unpack stops near 8,000.
_SNAPSHOT = """
local out = {}
for first = 1, #ARGV, 4000 do
  out[#out + 1] = redis.call('HMGET', KEYS[1], unpack(ARGV, first, math.min(first + 3999, #ARGV)))
end
out[#out + 1] = redis.call('HMGET', KEYS[2], 'nspam', 'nham', 'schema')
out[#out + 1] = redis.call('HLEN', KEYS[1])
return out
"""
_EVICTING = "allkeys-"  # the maxmemory policies under which Redis may drop any key of ours
_NUMERIC_META = ("nspam", "nham")
# said when a database open in this process has lost its keys (its schema mark with them)
_EMPTIED = ("the database at %s has been emptied since it was opened: its keys are gone, the "
            "schema mark with them (a Redis restarted without persistence, a FLUSHDB or "
            "FLUSHALL, or keys evicted). Bayes abstains, as on a new database, until enough is "
            "learned again; the next learn starts it again, or `spamkit db restore` loads a "
            "dump. Give Redis persistence (save or appendonly) to keep it")
_log = logging.getLogger("spamkit.store")
_Deletion = tuple[str, bytes, list[bytes]]  # a command (HDEL, ZREM), its key, the members it drops


_DATABASE_PATH = re.compile(r"(?:/\d*)?")  # nothing, "/", or "/N"


def _split_location(location: str, default_prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """(URL for redis-py, key prefix): our `prefix` parameter taken out of the query. The
    rest of the URL is left as written (rebuilding unix:///path would lose its //)."""
    base, _, query_text = location.partition("?")
    query = urllib.parse.parse_qsl(query_text, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), default_prefix)
    rest = urllib.parse.urlencode([(name, value) for name, value in query if name != "prefix"])
    return base + (f"?{rest}" if rest else ""), prefix


def public_location(location: str) -> str:
    """The location without its password, for messages and `db magic`."""
    parts = urllib.parse.urlsplit(location)
    if parts.password is None:
        return location
    host = parts.hostname or ""
    netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host + \
        (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def connect(location: str, default_prefix: str = DEFAULT_PREFIX) -> tuple[Any, str, str]:
    """(client, key prefix, the location without its password) for a Redis URL. The
    client connects lazily; its first command says whether the server is there."""
    public = public_location(location)
    url, prefix = _split_location(location, default_prefix)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("redis", "rediss") and not _DATABASE_PATH.fullmatch(parts.path):
        # (redis-py reads "/1x" as database 0 and "/3/4" as 34: another database, silently)
        raise StoreError(f"not a Redis location: {public} (after the host, only the database "
                         "number, as /0)")
    try:
        # Any: redis-py types every answer bytes | str, decode_responses being a run-time
        # choice; spamkit never decodes, so answers are bytes
        client: Any = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=READ_TIMEOUT,
            # once more at once: a pooled connection gone stale. Not after a timeout: the
            # server had the command, and may yet carry it out
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
    except ValueError as error:
        raise StoreError(f"not a Redis location: {public} ({error})") from None
    return client, prefix, public


@contextmanager
def reaching(where: str) -> Iterator[None]:
    """Redis's connection and server errors as spamkit's."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise StoreUnavailable(f"cannot reach the database at {where}: {error}") from None
    except WatchError:  # redis-py's word for a connection lost while a writer WATCHed
        raise StoreUnavailable(f"the connection to the database at {where} dropped while "
                               "writing: this batch was not written") from None
    except OutOfMemoryError:
        raise StoreFull(f"the database at {where} is full: Redis takes nothing more past its "
                        "maxmemory, so nothing of this was written. Raise maxmemory (redis.conf, "
                        "or CONFIG SET maxmemory), or make room with `spamkit db expire "
                        "--max-tokens N`") from None
    except redis.ResponseError as error:
        raise StoreError(f"the database at {where} refused a command: {_reply_text(error)}") from None
    except redis.RedisError as error:  # anything else the client library reports
        raise StoreError(f"the database at {where}: {type(error).__name__}: {error}") from None


def _reply_text(error: redis.ResponseError) -> str:
    """Redis's own words. redis-py puts a refused pipeline command in front of them, with
    its arguments: token keys, raw bytes a terminal would take for control codes."""
    return str(error).rpartition(" of pipeline caused error: ")[2]


def _mark(raw: bytes | None) -> tuple[Label, float | None] | None:
    """A stored seen mark's label and byte model step (None: no mark). The step is None
    for a mark of damaged length, reported when the step is needed (as LmdbStore does):
    a batch that only asks what was learned is not stopped by it."""
    if not raw or raw[0] not in CODE_LABEL:
        return None
    mark = unpack_seen(raw)
    return CODE_LABEL[raw[0]], None if mark is None else mark[2]


def _values(raw: Sequence[bytes], where: str) -> np.ndarray:
    joined = b"".join(raw)
    if len(joined) != len(raw) * VALUE_DTYPE.itemsize:
        raise StoreCorrupt(f"a token record at {where} is not 12 bytes: the database is damaged; "
                           f"{RECOVERY}")
    return np.frombuffer(joined, dtype=VALUE_DTYPE)


def _found(keys: list[bytes], raw: list[bytes | None], where: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """(positions in `keys` that are known, their values) from HMGET's answers."""
    positions = np.fromiter((i for i, value in enumerate(raw) if value is not None), dtype=np.int64)
    values = _values([value for value in raw if value is not None], where)
    return positions, values


class RedisWriter(PendingChanges):
    """One batch, written in one MULTI/EXEC fenced by the writer lock."""

    def __init__(self, store: RedisStore, pipe: Any) -> None:
        super().__init__()
        self._store = store
        self._pipe = pipe  # WATCHing the lock: commands run at once until `multi()`
        self._replace: list[tuple[str, list[Any]]] = []  # restore's and reset's whole-key work
        self._stored: dict[bytes, tuple[Label, float | None] | None] = {}  # marks read under the lock

    def learned_as(self, message_key: bytes) -> Label | None:
        if message_key in self._seen:
            return self._seen[message_key]
        mark = self._stored_mark(message_key)
        return None if mark is None else mark[0]

    def _stored_byte_step(self, message_key: bytes) -> float:
        mark = self._stored_mark(message_key)
        if mark is None:
            return 0.0
        if mark[1] is None:
            raise StoreCorrupt(f"a seen record at {self._store.location} is not 5 or 9 bytes: "
                               f"the database is damaged; {RECOVERY}")
        return mark[1]

    def _stored_mark(self, message_key: bytes) -> tuple[Label, float | None] | None:
        if message_key not in self._stored:
            self.prefetch_seen([message_key])
        return self._stored[message_key]

    def prefetch_seen(self, message_keys: Sequence[bytes]) -> None:
        """The marks of these keys, in one HMGET a CHUNK (a round trip a message cost
        `spamkit train` a quarter of its time)."""
        wanted = [key for key in dict.fromkeys(message_keys) if key not in self._stored]
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start:start + CHUNK]
            raws = self._pipe.hmget(self._store.key("seen"), chunk)
            self._stored.update((key, _mark(raw)) for key, raw in zip(chunk, raws))

    def meta_value(self, name: str) -> str | None:
        if name in self._meta:
            return self._meta[name]
        raw = self._pipe.hget(self._store.key("meta"), name)  # under the lock: this batch's view
        return None if raw is None else bytes(raw).decode(errors="replace")

    def replace(self, command: str, *args: Any) -> None:
        """A command queued ahead of the batch's own writes (restore, reset, expiry)."""
        self._replace.append((command, list(args)))

    def _flush(self) -> None:
        store, pipe, day = self._store, self._pipe, today()
        tokens = store.key("tokens")
        writes: list[tuple[str, list[Any]]] = list(self._replace)
        if self._deltas:
            keys, spam_delta, ham_delta = self.token_deltas()
            key_list = keys_of(keys)
            raw: list[bytes | None] = []
            for start in range(0, len(key_list), CHUNK):
                raw.extend(pipe.hmget(tokens, key_list[start:start + CHUNK]))
            positions, old = _found(key_list, raw, store.location)
            values, keep = new_token_values(spam_delta, ham_delta, old, positions, day)
            kept = np.flatnonzero(keep).tolist()
            value_list = values.view(f"V{VALUE_DTYPE.itemsize}").tolist()
            pairs = [item for index, value in zip(kept, value_list) for item in (key_list[index], value)]
            for start in range(0, len(pairs), 2 * CHUNK):
                writes.append(("HSET", [tokens, *pairs[start:start + 2 * CHUNK]]))
            existed = np.zeros(len(key_list), dtype=bool)
            existed[positions] = True
            gone = [key_list[i] for i in np.flatnonzero(~keep & existed)]
            for start in range(0, len(gone), CHUNK):
                writes.append(("HDEL", [tokens, *gone[start:start + CHUNK]]))
        marks, forgotten = self.seen_values(day)
        if marks:
            writes.append(("HSET", [store.key("seen"), *(x for mark in marks for x in mark)]))
        if forgotten:
            writes.append(("HDEL", [store.key("seen"), *forgotten]))
        meta: dict[str, str] = dict(self._meta)
        *current, schema = pipe.hmget(store.key("meta"), [*_NUMERIC_META, "schema"])
        if schema is None:  # (emptied since it was opened)
            store.note_emptied(True)
            meta.setdefault("schema", SCHEMA)
            meta.setdefault("created", str(day))
        if any(self._messages.values()):
            for name, label, value in zip(_NUMERIC_META, (Label.SPAM, Label.HAM), current):
                meta[name] = str(max(0, store.meta_int(name, value) + self._messages[label]))
        if meta:
            writes.append(("HSET", [store.key("meta"), *(x for pair in meta.items() for x in pair)]))
        if self._events:
            members = [key + record for key, record in self._events]
            writes.append(("ZADD", [store.key("history"), *(x for m in members for x in (0, m))]))
        pipe.multi()
        for command, args in writes:
            pipe.execute_command(command, *args)
        pipe.execute()


class RedisStore:
    """TokenStore on Redis, for several machines sharing one database."""

    def __init__(self, location: str, *, readonly: bool = False) -> None:
        self.readonly = readonly
        self._client, self.prefix, self.location = connect(location)
        self._snapshot = self._client.register_script(_SNAPSHOT)  # (EVALSHA; loaded when first run)
        self._scripting = True  # until this Redis refuses scripts to us (`_scripted`)
        self._emptied = False  # its keys found gone since it was opened (`note_emptied`)
        with reaching(self.location):
            self._open()
            policy = None if readonly else self.memory_limits()[1]  # (a scan needs no warning)
        if policy is not None and policy.startswith(_EVICTING):
            _log.warning("the Redis at %s may drop any key when it reaches its maxmemory "
                         "(maxmemory-policy %s), and a spamkit table is one key: all its tokens, "
                         "or every learned-once mark, could go at once. Set maxmemory-policy "
                         "to noeviction (or a volatile-* policy), or give spamkit a Redis of its own",
                         self.location, policy)

    def memory_limits(self) -> tuple[int | None, str | None]:
        """Redis's maxmemory (0: none) and maxmemory-policy, from INFO; (None, None) where
        INFO is not allowed (a managed Redis may rename it)."""
        try:
            info = self._client.info("memory")
        except redis.ResponseError:
            return None, None
        policy = info.get("maxmemory_policy")
        maxmemory = info.get("maxmemory")
        return (int(maxmemory) if maxmemory is not None else None,
                str(policy) if policy is not None else None)

    def key(self, name: str) -> bytes:
        return (self.prefix + name).encode()

    @staticmethod
    def meta_int(name: str, raw: bytes | None) -> int:
        try:
            return int(raw) if raw else 0
        except ValueError:
            raise StoreCorrupt(f"meta {name} is not a number: {raw!r}") from None

    def _open(self) -> None:
        meta = self.key("meta")
        schema = self._client.hget(meta, "schema")
        if schema is None:
            if self.readonly:
                raise NoDatabase(f"no spamkit database at {self.location} (learn some mail first)")
            if self._client.exists(self.key("tokens")):
                raise StoreCorrupt(f"{self.location}: database has tokens but no schema mark")
            with self._client.pipeline() as pipe:  # MULTI/EXEC: both marks or neither
                pipe.hsetnx(meta, "schema", SCHEMA)
                pipe.hsetnx(meta, "created", str(today()))
                pipe.execute()
        elif schema.decode(errors="replace") != SCHEMA:
            raise schema_mismatch(self.location, schema, SCHEMA)

    # -- writing ---------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[tuple[Any, bytes]]:
        """The writer lock, and a pipeline WATCHing it, for one batch: (pipeline, token)."""
        if self.readonly:
            raise StoreError("the database was opened read-only")
        with reaching(self.location), self._holding_lock() as token:
            with self._client.pipeline() as pipe:
                pipe.watch(self.key("lock"))
                if pipe.get(self.key("lock")) != token:
                    raise StoreUnavailable(f"lost the write lock of {self.location} before writing")
                yield pipe, token

    @contextmanager
    def _holding_lock(self) -> Iterator[bytes]:
        """The writer lock for the block (its token), released after it if still ours."""
        with reaching(self.location):
            token = self._acquire_lock()
        try:
            yield token
        finally:
            try:
                self._client.eval(_RELEASE, 1, self.key("lock"), token)
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # Redis gone: the lock expires by itself, nothing was written

    def _acquire_lock(self) -> bytes:
        """Take the writer lock: SET NX with a time to live, waiting while another writer
        holds it (and out a dead writer's lock, no longer).

        The token is ours before we ask, so an acquisition whose reply was lost and was
        retried (the SET done, its answer not received) finds its own token and goes on,
        instead of waiting out its own lock as if another writer held it.
        """
        token = uuid.uuid4().hex.encode()
        key = self.key("lock")
        give_up = time.monotonic() + LOCK_SECONDS + 5
        while True:
            if self._client.set(key, token, nx=True, px=int(LOCK_SECONDS * 1000)) \
                    or self._client.get(key) == token:
                return token
            if time.monotonic() > give_up:
                raise StoreUnavailable(f"another writer has held the write lock of {self.location} "
                                       f"for over {LOCK_SECONDS + 5:g} s")
            time.sleep(0.02)

    @contextmanager
    def writer(self) -> Iterator[RedisWriter]:
        """A batch of changes, committed together when the block ends without error."""
        with self._locked() as (pipe, token):  # (its reaching turns the rest into ours)
            writer = RedisWriter(self, pipe)
            try:
                yield writer  # the batch reads its seen marks through the WATCHing pipeline
                writer._flush()
            except WatchError:  # the lock lost, or the connection: which, is worth saying
                raise StoreUnavailable(self._why_refused(token)) from None

    def _why_refused(self, token: bytes) -> str:
        """Why an EXEC fenced by the lock was refused: the lock expired or passed on, or
        the connection dropped (redis-py reports both as a WatchError)."""
        try:
            still_ours = self._client.get(self.key("lock")) == token
        except (redis.ConnectionError, redis.TimeoutError):
            still_ours = True
        if still_ours:
            return (f"the connection to the database at {self.location} dropped while "
                    "committing: this batch was not written")
        return (f"the write lock of {self.location} expired (held over {LOCK_SECONDS:g} s) or "
                "passed to another writer: this batch was not written")

    def set_meta(self, name: str, value: str) -> None:
        with self.writer() as writer:
            writer.set_meta(name, value)

    # -- reading ---------------------------------------------------------------------

    def totals(self) -> Totals:
        return self._read([])[1]

    def _read(self, keys: list[bytes]) -> tuple[list[bytes | None], Totals]:
        """HMGET of `keys` and the totals, by one script (a consistent snapshot, and one
        that a Redis past its maxmemory still answers); by MULTI/EXEC, as before the script,
        where scripts are not allowed (`_scripted`)."""
        with reaching(self.location):
            replies = self._scripted(keys) if self._scripting else None
            if replies is None:
                with self._client.pipeline() as pipe:
                    for start in range(0, len(keys), CHUNK):
                        pipe.hmget(self.key("tokens"), keys[start:start + CHUNK])
                    pipe.hmget(self.key("meta"), [*_NUMERIC_META, "schema"])
                    pipe.hlen(self.key("tokens"))
                    replies = pipe.execute()
        *found, (nspam, nham, schema), ntokens = replies
        self.note_emptied(schema is None)
        raw = [value for chunk in found for value in chunk]
        return raw, Totals(self.meta_int("nspam", nspam), self.meta_int("nham", nham), ntokens)

    def note_emptied(self, emptied: bool) -> None:
        """Say once that the database open here has lost its keys (it had a schema mark
        when opened; only a wipe from outside takes it away), and again only after it
        came back and went again."""
        if emptied and not self._emptied:
            _log.warning(_EMPTIED, self.location)
        self._emptied = emptied

    def _scripted(self, keys: list[bytes]) -> list[Any] | None:
        """The snapshot script's replies; None where this Redis refuses scripts to us: an
        ACL that gives a scanner's user reads only (-@scripting), or EVALSHA renamed away
        (rename-command). Such a store reads by MULTI/EXEC from then on, as it did before
        the script; learning there was never possible (the writer lock's release is a
        script)."""
        try:
            replies: list[Any] = self._snapshot(keys=[self.key("tokens"), self.key("meta")], args=keys)
            return replies
        except NoPermissionError:
            pass
        except redis.ResponseError as error:
            if "unknown command" not in str(error).lower():
                raise
        self._scripting = False
        return None

    def counts(self, keys: Sequence[bytes]) -> TokenCounts:
        return self.counts_many([keys])[0]

    def counts_many(self, key_lists: Sequence[Sequence[bytes]]) -> list[TokenCounts]:
        """`counts` for several messages: each distinct key asked for once, in one snapshot."""
        batch = BatchLookup.of(key_lists)
        wanted_keys = keys_of(batch.wanted)
        raw, totals = self._read(wanted_keys) if wanted_keys else ([], self.totals())
        positions, values = _found(wanted_keys, raw, self.location)
        return batch.split(batch.wanted[positions], values["spam"].astype(np.float64),
                           values["ham"].astype(np.float64), totals)

    def learned_as(self, message_key: bytes) -> Label | None:
        return self.learned_as_many([message_key])[0]

    def learned_as_many(self, message_keys: Sequence[bytes]) -> list[Label | None]:
        raws: list[bytes | None] = []
        with reaching(self.location):
            for start in range(0, len(message_keys), CHUNK):
                raws.extend(self._client.hmget(self.key("seen"), list(message_keys[start:start + CHUNK])))
        return [CODE_LABEL.get(raw[0]) if raw else None for raw in raws]

    def _scan(self, name: str) -> Iterator[tuple[bytes, bytes]]:
        """Every field of a hash, in pieces (HSCAN never blocks Redis for long)."""
        with reaching(self.location):
            yield from self._client.hscan_iter(self.key(name), count=CHUNK)

    def records(self) -> Iterator[TokenRecord]:
        pairs = sorted(self._scan("tokens"))  # key order, as LMDB's
        values = _values([value for _, value in pairs], self.location)
        for (key, _), value in zip(pairs, values.tolist()):
            yield TokenRecord(key, *value)

    def seen_records(self) -> Iterator[SeenRecord]:
        for key, value in sorted(self._scan("seen")):
            mark = unpack_seen(value)
            if mark is None:
                raise StoreCorrupt(f"a seen record at {self.location} is {len(value)} bytes, not 5 "
                                   f"or 9: the database is damaged; {RECOVERY}")
            code, day, step = mark
            if code in CODE_LABEL:
                yield SeenRecord(key, CODE_LABEL[code], day, step)

    def history(self, message_key: bytes) -> list[dict[str, object]]:
        """Every learn decision recorded for a message, oldest first."""
        with reaching(self.location):
            members = self._client.zrangebylex(self.key("history"), b"[" + message_key,
                                               b"[" + message_key + b"\xff" * 9)
        return [json.loads(member[_EVENT_KEY:]) for member in members
                if member[:16] == message_key]

    def history_records(self) -> Iterator[tuple[bytes, bytes]]:
        """Every audit event in key order (message, then time), as LMDB gives them: pages of
        ZRANGEBYLEX, each starting after the last member of the one before."""
        start = b"-"
        while True:
            with reaching(self.location):
                page = self._client.zrangebylex(self.key("history"), start, b"+", start=0, num=CHUNK)
            for member in page:
                yield member[:_EVENT_KEY], member[_EVENT_KEY:]
            if len(page) < CHUNK:
                return
            start = b"(" + page[-1]

    def meta(self) -> dict[str, str]:
        """Named facts about the database, by name (as LMDB lists them)."""
        with reaching(self.location):
            found = self._client.hgetall(self.key("meta"))
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in sorted(found.items())}

    def meta_value(self, name: str) -> str | None:
        with reaching(self.location):
            raw = self._client.hget(self.key("meta"), name)
        return None if raw is None else bytes(raw).decode(errors="replace")

    def verify(self) -> list[str]:
        """Nothing to walk: the Redis server keeps its own structure, and each record is
        checked as it is read (StoreCorrupt)."""
        return []

    def magic(self) -> dict[str, object]:
        """What `sa-learn --dump magic` shows, plus the memory Redis gives the database."""
        meta = self.meta()
        # (not MULTI/EXEC, which a Redis past its maxmemory refuses: three counts to show,
        # each true when read)
        with reaching(self.location), self._client.pipeline(transaction=False) as pipe:
            pipe.hlen(self.key("tokens"))
            pipe.hlen(self.key("seen"))
            pipe.zcard(self.key("history"))
            ntokens, nseen, nevents = pipe.execute()
            used = sum(self._client.memory_usage(self.key(name), samples=0) or 0
                       for name in ("tokens", "seen", "meta", "history"))
        days = _values([value for _, value in self._scan("tokens")], self.location)["day"]
        with reaching(self.location):
            maxmemory, policy = self.memory_limits()
            persistence = self.persistence()
        return magic_facts(meta, ntokens, nseen, nevents, days, bytes_used=used, map_size=None,
                           path=self.location, backend="redis", redis_maxmemory=maxmemory,
                           redis_maxmemory_policy=policy, redis_persistence=persistence)

    def persistence(self) -> str | None:
        """How this Redis keeps its data on disk: "rdb" (snapshots at its save points),
        "aof" (its append-only file), "rdb+aof", or "none" (a restart empties it: the
        database with it). None where it will not say: a managed Redis may refuse CONFIG,
        which alone tells whether there are save points (then "aof" if INFO shows one)."""
        try:
            aof = bool(int(self._client.info("persistence").get("aof_enabled", 0)))
        except redis.ResponseError:
            return None
        try:
            save = self._client.config_get("save").get("save") or ""  # ("" or "3600 1 300 100 ...")
        except redis.ResponseError:
            return "aof" if aof else None
        rdb = bool((save.decode() if isinstance(save, bytes) else str(save)).strip())
        return {(True, True): "rdb+aof", (True, False): "rdb", (False, True): "aof"}.get((rdb, aof), "none")

    # -- maintenance -----------------------------------------------------------------

    def expire(self, max_tokens: int) -> int:
        """Drop the oldest, rarest tokens until at most `max_tokens` remain (the order of
        LmdbStore.expire); see `_remove`."""

        def choose() -> tuple[list[_Deletion], dict[str, str]]:
            pairs = sorted(self._scan("tokens"))  # ties go as LMDB's do: in key order
            excess = len(pairs) - max_tokens
            values = _values([value for _, value in pairs], self.location)
            removed = [pairs[i][0] for i in expiry_order(values, excess)] if excess > 0 else []
            return ([("HDEL", self.key("tokens"), removed)],
                    {"last_expire": str(today()), "last_expire_removed": str(len(removed))})

        [(_, _, removed)] = self._remove(choose, "tokens expired")
        return len(removed)

    def expire_seen(self, before_day: int) -> tuple[int, int]:
        """Forget which messages were learned before `before_day` (their seen marks and
        older audit events); returns (marks, events) dropped. See `_remove`."""
        cutoff_ns = before_day * 86400 * 10**9

        def choose() -> tuple[list[_Deletion], dict[str, str]]:
            old_marks = [key for key, value in self._scan("seen")
                         if (mark := unpack_seen(value)) is not None and mark[1] < before_day]
            with reaching(self.location):
                old_events = [member for member, _ in
                              self._client.zscan_iter(self.key("history"), count=CHUNK)
                              if struct.unpack_from(">Q", member, 16)[0] < cutoff_ns]
            return ([("HDEL", self.key("seen"), old_marks), ("ZREM", self.key("history"), old_events)],
                    {"last_seen_expire": str(today()), "last_seen_expire_removed": str(len(old_marks))})

        [(_, _, marks), (_, _, events)] = self._remove(choose, "learned-once marks forgotten")
        return len(marks), len(events)

    def _remove(self, choose: Callable[[], tuple[list[_Deletion], dict[str, str]]],
                what: str) -> list[_Deletion]:
        """Expiry's deletions, as `choose` picks them (command, key, members), and its
        record in meta: in one EXEC, chosen under the writer lock. Returns the deletions
        made; `what` names the first one's members in an error.

        A Redis past its maxmemory refuses the lock (SET) and any MULTI, but deletions it
        takes, and expiry is how spamkit makes room (rspamd's expiry stops there). So
        then the members go by plain commands, without the lock: no writer can commit
        meanwhile (its EXEC is refused as well), and one that commits once there is room
        may give a token just dropped its counts back, which harms nothing. The record is
        written last, once there is room for it."""
        try:
            with self.writer() as writer:
                deletions, meta = choose()
                for command, key, members in deletions:
                    for start in range(0, len(members), CHUNK):
                        writer.replace(command, key, *members[start:start + CHUNK])
                for name, value in meta.items():
                    writer.set_meta(name, value)
            return deletions
        except StoreFull:
            pass
        deletions, meta = choose()
        with reaching(self.location):
            for command, key, members in deletions:
                for start in range(0, len(members), CHUNK):
                    self._client.execute_command(command, key, *members[start:start + CHUNK])
        try:
            with reaching(self.location):
                self._client.hset(self.key("meta"), mapping=meta)
        except StoreFull:
            raise StoreFull(f"{len(deletions[0][2]):,} {what} at {self.location}, and its Redis is "
                            "still past maxmemory: expire to fewer tokens, or raise maxmemory") from None
        return deletions

    def dump(self, out: IO[str], salvage: bool = False) -> None:  # (no walk to skip: see verify)
        """Under the writers' lock: the tables are read in pieces (HSCAN, ZRANGEBYLEX), so
        a learner committing meanwhile could leave the dump with a message's seen mark but
        not its counts. Holding the lock makes it one state of the database, as LMDB's one
        read transaction does; writers wait for it (a second or two a million tokens). The
        lock is coordination, not data, so a read-only store takes it too."""
        with self._holding_lock() as token:
            write_dump(out, self.meta(), self.records(), self.seen_records(), self.history_records())
            with reaching(self.location):
                held = self._client.get(self.key("lock")) == token
            if not held:  # (the lock lived out its time: writers may have come in meanwhile)
                raise StoreUnavailable(f"the dump of {self.location} took over {LOCK_SECONDS:g} s, the "
                                       "write lock's life, so learning may have changed it part way; "
                                       "run it again")

    def restore(self, source: IO[str]) -> None:
        """Replace the whole database with a dump; a bad dump changes nothing."""
        dump = DumpReader(source).read()
        with self.writer() as writer:
            writer.replace("DEL", self.key("tokens"), self.key("seen"), self.key("history"))
            tokens = sorted(dump.tokens, key=lambda r: r.key)
            fields = [x for r in tokens for x in (r.key, struct.pack("<III", r.spam, r.ham, r.day))]
            for start in range(0, len(fields), 2 * CHUNK):
                writer.replace("HSET", self.key("tokens"), *fields[start:start + 2 * CHUNK])
            marks = [x for m in dump.seen for x in (m.key, pack_seen(m.label, m.day, m.byte_step))]
            for start in range(0, len(marks), 2 * CHUNK):
                writer.replace("HSET", self.key("seen"), *marks[start:start + 2 * CHUNK])
            events = [x for key, record in dump.events for x in (0, key + record)]
            for start in range(0, len(events), 2 * CHUNK):
                writer.replace("ZADD", self.key("history"), *events[start:start + 2 * CHUNK])
            stale = [name for name in self.meta() if name != "schema"]
            if stale:  # (a value the dump lacks must not linger)
                writer.replace("HDEL", self.key("meta"), *stale)
            for name, value in dump.meta.items():
                if name != "schema":
                    writer.set_meta(name, value)

    def reset(self) -> None:
        with self.writer() as writer:
            writer.replace("DEL", self.key("tokens"), self.key("seen"), self.key("history"))
            writer.replace("HDEL", self.key("meta"), *LEARNED_META)

    def replaced(self) -> bool:
        """Never: the keys are read afresh on every request. (A database emptied under the
        store is `note_emptied`'s to say.)"""
        return False

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def move_aside(location: str) -> str:
    """Rename a damaged database's keys to <prefix>damaged-<time>:<name>, kept for a look
    afterwards, out of the way of a new one (as LMDB's files are); returns the new prefix."""
    client, prefix, public = connect(location)
    kept = f"{prefix}damaged-{time.strftime('%Y%m%dT%H%M%S')}:"
    with reaching(public):
        try:
            for name in ("tokens", "seen", "meta", "history"):
                if client.exists(prefix + name):
                    client.rename(prefix + name, kept + name)
        finally:
            client.close()
    return f"keys {kept}*"
