"""A filter's own database (karma's, sendlimit's) opened for an administrator's command,
never created by one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import click

from spamkit.store import backend_of


class Closable(Protocol):
    def close(self) -> None: ...


Store = TypeVar("Store", bound=Closable)


@contextmanager
def opened_store(location: str, open_store: Callable[[str], Store]) -> Iterator[tuple[Store | None, str]]:
    """(the store at `location`, where it is as a command may print it); None when there
    is no LMDB database there yet: listing or forgetting must not make one."""
    if backend_of(location) == "lmdb":
        if not (Path(location) / "data.mdb").exists():
            yield None, location
            return
        where = location
    else:
        from spamkit.store.redis import public_location

        where = public_location(location)
    store = open_store(location)
    try:
        yield store, where
    finally:
        store.close()


def forget_each(opened: AbstractContextManager[tuple[Store | None, str]], keys: Iterable[str],
                forget: Callable[[Store, str], bool], as_json: bool, not_known: str) -> None:
    """A `forget` command: each key forgotten in the store, then what was and what was not
    known said (`--json`: {"database", "forgotten", "unknown"})."""
    forgotten: list[str] = []
    unknown: list[str] = []
    with opened as (store, where):
        for key in keys:
            (forgotten if store is not None and forget(store, key) else unknown).append(key)
    if as_json:
        click.echo(json.dumps({"database": where, "forgotten": forgotten, "unknown": unknown}))
        return
    for key in forgotten:
        click.echo(f"forgotten: {key}", err=True)
    for key in unknown:
        click.echo(f"{not_known}: {key} ({where})", err=True)
