"""Token stores. BACKENDS is the registration table; LMDB is the embedded default.

The database location: `--db DIR`, else $SPAMKIT_DB, else /var/lib/spamkit/db for
root and $XDG_DATA_HOME/spamkit/db (~/.local/share/spamkit/db) for anyone else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from spamkit.errors import ConfigError
from spamkit.store.base import Label, StoreWriter, TokenCounts, TokenRecord, TokenStore, Totals
from spamkit.store.lmdb import LmdbStore, move_aside

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Label", "LmdbStore", "StoreWriter", "TokenCounts",
           "TokenRecord", "TokenStore", "Totals", "default_db_path", "open_store",
           "set_aside_damaged"]

DEFAULT_BACKEND = "lmdb"
BACKENDS: dict[str, Callable[..., LmdbStore]] = {"lmdb": LmdbStore}
# how each backend keeps a damaged database's files for a look, out of the way of a new one
_SET_ASIDE: dict[str, Callable[[Path], Path]] = {"lmdb": move_aside}


def default_db_path() -> Path:
    if os.environ.get("SPAMKIT_DB"):
        return Path(os.environ["SPAMKIT_DB"])
    if os.geteuid() == 0:
        return Path("/var/lib/spamkit/db")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "spamkit" / "db"


def open_store(path: str | os.PathLike[str] | None = None, *, readonly: bool = False,
               backend: str = DEFAULT_BACKEND) -> LmdbStore:
    try:
        opener = BACKENDS[backend]
    except KeyError:
        raise ConfigError(f"unknown store {backend!r} (known: {', '.join(sorted(BACKENDS))})") from None
    return opener(Path(path) if path else default_db_path(), readonly=readonly)


def set_aside_damaged(path: str | os.PathLike[str] | None = None,
                      backend: str = DEFAULT_BACKEND) -> Path:
    """Move a damaged database's files aside (what `db reset` does before starting an
    empty one); returns where its data went."""
    return _SET_ASIDE[backend](Path(path) if path else default_db_path())
