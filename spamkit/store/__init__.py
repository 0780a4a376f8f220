"""Token stores. BACKENDS is the registration table; LMDB is the embedded default.

The database location: `--db DIR`, else $SPAMKIT_DB, else /var/lib/spamkit/db for
root and $XDG_DATA_HOME/spamkit/db (~/.local/share/spamkit/db) for anyone else. A
location that is a Redis URL (redis://, rediss://, unix://) is a shared Redis database
(spamkit.store.redis) instead of a directory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from spamkit.errors import ConfigError
from spamkit.store.base import Label, StoreWriter, TokenCounts, TokenRecord, TokenStore, Totals
from spamkit.store.lmdb import LmdbStore, damage_found, move_aside

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Label", "LmdbStore", "StoreWriter", "TokenCounts",
           "TokenRecord", "TokenStore", "Totals", "backend_of", "default_db_path",
           "describe_location", "open_store", "refuse_damaged", "set_aside_damaged",
           "sweep_lock_path"]

DEFAULT_BACKEND = "lmdb"


def _open_redis(location: str, *, readonly: bool = False) -> TokenStore:
    from spamkit.store.redis import RedisStore  # only a Redis user pays for importing redis

    return RedisStore(location, readonly=readonly)


def _open_lmdb(location: str, *, readonly: bool = False) -> TokenStore:
    return LmdbStore(Path(location), readonly=readonly)


def _set_aside_redis(location: str) -> str:
    from spamkit.store.redis import move_aside as move_keys_aside

    return move_keys_aside(location)


BACKENDS: dict[str, Callable[..., TokenStore]] = {"lmdb": _open_lmdb, "redis": _open_redis}
# how each backend keeps a damaged database for a look, out of the way of a new one
_SET_ASIDE: dict[str, Callable[[str], object]] = {
    "lmdb": lambda location: move_aside(Path(location)), "redis": _set_aside_redis}
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_db_path() -> Path:
    if os.environ.get("SPAMKIT_DB"):
        return Path(os.environ["SPAMKIT_DB"])
    if os.geteuid() == 0:
        return Path("/var/lib/spamkit/db")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "spamkit" / "db"


def backend_of(location: str | os.PathLike[str]) -> str:
    """"redis" for a Redis URL, else "lmdb" (a directory)."""
    return "redis" if str(location).startswith(_REDIS_SCHEMES) else DEFAULT_BACKEND


def open_store(location: str | os.PathLike[str] | None = None, *, readonly: bool = False,
               backend: str | None = None) -> TokenStore:
    where = str(location) if location else str(default_db_path())
    name = backend or backend_of(where)
    try:
        opener = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown store {name!r} (known: {', '.join(sorted(BACKENDS))})") from None
    return opener(where, readonly=readonly)


def refuse_damaged(store: TokenStore, location: str | os.PathLike[str] | None) -> None:
    """StoreCorrupt if the store finds damage in its own structure (`TokenStore.verify`;
    only LMDB's can be damaged so). A long-running service asks this at start, so that
    damage stops it there with a message rather than crashing it in a message's scan."""
    problems = store.verify()
    if problems:
        raise damage_found(describe_location(location), problems)


def describe_location(location: str | os.PathLike[str] | None) -> str:
    """A location as messages show it: a Redis URL with its password masked."""
    where = str(location) if location else str(default_db_path())
    if backend_of(where) == DEFAULT_BACKEND:
        return where
    from spamkit.store.redis import public_location

    return public_location(where)


def set_aside_damaged(location: str | os.PathLike[str] | None = None) -> str:
    """Move a damaged database aside (what `db reset` does before starting an empty one);
    returns where its data went."""
    where = str(location) if location else str(default_db_path())
    return str(_SET_ASIDE[backend_of(where)](where))


def sweep_lock_path(location: str | os.PathLike[str] | None) -> Path:
    """Where the trainer's one-sweep-at-a-time lock lives: in the database's directory, or
    for a shared Redis database, beside this machine's default one (each machine sweeps
    its own mail folders)."""
    where = str(location) if location else str(default_db_path())
    if backend_of(where) == DEFAULT_BACKEND:
        return Path(where) / "sweep.lock"
    local = default_db_path().parent
    local.mkdir(mode=0o700, parents=True, exist_ok=True)
    return local / f"sweep-{hashlib.blake2b(where.encode(), digest_size=6).hexdigest()}.lock"
