"""`spamkit db ...`: look after the token database."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO

import click

from spamkit.cli import config_option, db_option, json_option, require_database, resolve_db_path
from spamkit.atomicfile import replacing
from spamkit.config import Config, load_config
from spamkit.errors import NotATokenDatabase, SchemaMismatch, StoreCorrupt, StoreError
from spamkit.learn import DEFAULT_MAX_TOKENS, DEFAULT_SEEN_DAYS
from spamkit.store import backend_of, default_db_path, describe_location, open_store, set_aside_damaged
from spamkit.store.base import today
from spamkit.store.lmdb import RECOVERY


@click.group()
def db() -> None:
    """Inspect, back up, restore, expire, compact or reset the token database."""


@db.command()
@db_option
@config_option
def path(db_path: str | None, config_path: str | None) -> None:
    """Print where the database is (or would be created)."""
    click.echo(resolve_db_path(db_path, config_path) or str(default_db_path()))


@db.command()
@db_option
@config_option
@json_option
def magic(db_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Summary counts, as `sa-learn --dump magic` shows them."""
    with open_store(resolve_db_path(db_path, config_path), readonly=True) as store:
        facts = store.magic()
    if as_json:
        click.echo(json.dumps(facts))
        return
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        click.echo(f"{key:<{width}}  {'-' if value is None else value}")


@db.command()
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default="-")
@click.option("--salvage", is_flag=True,
              help="Dump a database `db verify` finds damaged, as far as it can be read (the "
                   "damage may still stop it; the database is only read).")
@db_option
@config_option
def dump(output: Path, salvage: bool, db_path: str | None, config_path: str | None) -> None:
    """Write the whole database as text (format: docs/dump-format.md) to OUTPUT or stdout.
    OUTPUT is replaced only by a whole dump (mode 600 if new): a dump that fails part way
    leaves the last one as it was."""
    with open_store(resolve_db_path(db_path, config_path), readonly=True) as store:
        if str(output) == "-":
            store.dump(sys.stdout, salvage=salvage)
            return
        try:
            with replacing(output, mode_if_new=0o600) as out:
                store.dump(out, salvage=salvage)
        except OSError as error:
            raise StoreError(f"cannot write the dump to {output}: {error.strerror or error}") from None


@db.command()
@db_option
@config_option
@json_option
def verify(db_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Look for damage: the file's structure (LMDB), then every record, read as `dump`
    reads it. Exit 0 if sound, 65 if damaged. The database is not changed."""
    location = resolve_db_path(db_path, config_path)
    not_tokens = False  # another kind of LMDB database (the filter's): not damaged, not ours
    other_version = False  # a schema another spamkit version reads: not damaged either
    try:
        with open_store(location, readonly=True) as store:
            problems = store.verify()
            if not problems:
                with open(os.devnull, "w", encoding="utf-8") as nowhere:
                    store.dump(nowhere)
    except SchemaMismatch as error:
        problems, other_version = [str(error)], True
    except StoreCorrupt as error:
        problems = [str(error)]
    except NotATokenDatabase as error:
        problems, not_tokens = [str(error)], True
    where = describe_location(location or default_db_path())
    if as_json:
        click.echo(json.dumps({"path": where, "sound": not problems, "problems": problems}))
    elif problems:
        state = ("not a token database" if not_tokens else "made by another spamkit version"
                 if other_version else "damaged")
        click.echo(f"{where}: {state}", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        if not (not_tokens or other_version):  # (a reset would move the filter's database aside)
            click.echo(f"  {RECOVERY}", err=True)
    else:
        click.echo(f"{where}: sound")
    if problems:
        sys.exit(StoreCorrupt.exit_code)


@db.command()
@click.argument("source", type=click.File("r", encoding="utf-8", errors="surrogateescape"), default="-")
@db_option
@config_option
def restore(source: IO[str], db_path: str | None, config_path: str | None) -> None:
    """Replace the database with a dump. A damaged dump changes nothing."""
    location = resolve_db_path(db_path, config_path)
    made_here = _new_lmdb_directory(location)
    try:
        with open_store(location) as store:
            store.restore(source)
            totals = store.totals()
    except BaseException:
        if made_here is not None:  # (nothing of a database made for this restore stays)
            _remove_new_database(made_here)
        raise
    click.echo(f"restored: {totals.ntokens} tokens, {totals.nspam} spam, {totals.nham} ham",
               err=True)


def _new_lmdb_directory(location: str | None) -> Path | None:
    """The LMDB directory a command is about to make, or None when it exists (or is Redis)."""
    path = Path(location or default_db_path())
    return path if backend_of(str(path)) == "lmdb" and not path.exists() else None


def _remove_new_database(path: Path) -> None:
    """Undo the making of an empty LMDB database: its two files, then the directory if
    nothing else was put there meanwhile."""
    for name in ("data.mdb", "lock.mdb"):
        (path / name).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        pass


@db.command()
@click.option("--max-tokens", type=click.IntRange(1), default=None,
              help=f"Keep at most this many tokens (default: BayesMaxTokens, "
                   f"{DEFAULT_MAX_TOKENS:,}).")
@click.option("--seen-days", type=click.IntRange(0), default=None,
              help="Forget which messages were learned more than this many days ago (their seen "
                   f"marks and audit events); 0 keeps them all (default: BayesSeenDays, "
                   f"{DEFAULT_SEEN_DAYS}).")
@db_option
@config_option
@json_option
def expire(max_tokens: int | None, seen_days: int | None, db_path: str | None,
           config_path: str | None, as_json: bool) -> None:
    """Drop the oldest, rarest tokens until at most --max-tokens remain, and the
    memory of messages learned more than --seen-days ago. Their defaults are the
    configuration's, the limits learning keeps to."""
    if max_tokens is None or seen_days is None:
        config = load_config(config_path)
        max_tokens = config["BayesMaxTokens"] if max_tokens is None else max_tokens
        seen_days = config["BayesSeenDays"] if seen_days is None else seen_days
    location = resolve_db_path(db_path, config_path)
    require_database(location)
    with open_store(location) as store:
        removed = store.expire(max_tokens)
        marks, events = store.expire_seen(today() - seen_days) if seen_days else (0, 0)
        remaining = store.totals().ntokens
    if as_json:
        click.echo(json.dumps({"removed": removed, "ntokens": remaining,
                               "seen_removed": marks, "events_removed": events}))
    else:
        click.echo(f"expired {removed} tokens; {remaining} remain")
        if seen_days:
            click.echo(f"forgot {marks} messages learned over {seen_days} days ago "
                       f"({events} audit events)")


@db.command()
@db_option
@config_option
@json_option
@click.option("--filter-databases", "filter_databases", is_flag=True,
              help="Also compact the SMTP filter's own databases (karma, greylist, sendlimit) "
                   "where they are LMDB directories.")
def compact(db_path: str | None, config_path: str | None, as_json: bool, filter_databases: bool) -> None:
    """Give the file's unused pages back to the disk: LMDB reuses them but never shortens
    its file, so after a big import or `db expire` it stays at its largest. Needs the
    database to itself: stop `serve` and `spamd` first (exit 75 while others have it open).

    With --filter-databases, the filter's karma, greylist and sendlimit directories, and
    the dmarc filter's report records, are compacted after it, in turn (one in Redis, or
    not made yet, is passed over and said so); the first that cannot be stops the run with
    its error, and those before it stay compacted."""
    from spamkit.store.compact import compact as compact_file

    location = resolve_db_path(db_path, config_path) or str(default_db_path())
    if backend_of(location) != "lmdb":
        raise click.UsageError("db compact shrinks an LMDB file; Redis keeps its data in memory "
                               "and frees what `db expire` removes by itself")
    done = compact_file(location)
    if not as_json:
        click.echo(f"compacted {location}: {_size(done.before)} -> {_size(done.after)} "
                   f"({done.seconds:.1f} s)")
    report: dict[str, object] = {"before": done.before, "after": done.after, "seconds": round(done.seconds, 3)}
    if filter_databases:
        config = load_config(config_path)
        filters: list[dict[str, object]] = []
        for name, path in _filter_databases(config):
            skipped = ("in Redis" if backend_of(path) != "lmdb" else
                       "not made yet" if not (Path(path) / "data.mdb").exists() else None)
            if skipped is not None:
                filters.append({"filter": name, "path": path, "skipped": skipped})
                if not as_json:
                    click.echo(f"{name} at {path}: {skipped}, passed over")
                continue
            compacted = compact_file(path)
            filters.append({"filter": name, "path": path, "before": compacted.before,
                            "after": compacted.after, "seconds": round(compacted.seconds, 3)})
            if not as_json:
                click.echo(f"compacted {name} at {path}: {_size(compacted.before)} -> "
                           f"{_size(compacted.after)} ({compacted.seconds:.1f} s)")
        filters.append(_compact_dmarc_reports(config, as_json))
        report["filters"] = filters
    if as_json:
        click.echo(json.dumps(report))


def _filter_databases(config: Config) -> list[tuple[str, str]]:
    """(filter, location) of the SMTP filter's own record stores, where `serve` opens them."""
    from smtpfilter.plugins import greylist_database, karma_database, sendlimit_database

    return [("karma", karma_database(config)), ("greylist", greylist_database(config)),
            ("sendlimit", sendlimit_database(config))]


def _compact_dmarc_reports(config: Config, as_json: bool) -> dict[str, object]:
    """The dmarc filter's report rows (SQLite, not LMDB), as `compact` reports a filter's."""
    from smtpfilter.dmarcreports import compact_reports
    from smtpfilter.plugins import report_database

    path = report_database(config)
    if not path.exists():
        if not as_json:
            click.echo(f"dmarc at {path}: not made yet, passed over")
        return {"filter": "dmarc", "path": str(path), "skipped": "not made yet"}
    started = time.monotonic()
    before, after = compact_reports(path)
    seconds = time.monotonic() - started
    if not as_json:
        click.echo(f"compacted dmarc at {path}: {_size(before)} -> {_size(after)} ({seconds:.1f} s)")
    return {"filter": "dmarc", "path": str(path), "before": before, "after": after,
            "seconds": round(seconds, 3)}


def _size(count: int) -> str:
    return f"{count / (1 << 20):,.1f} MiB"


@db.command()
@click.argument("message", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@db_option
@config_option
@json_option
def history(message: str, db_path: str | None, config_path: str | None, as_json: bool) -> None:
    """Who taught MESSAGE (a file, or - for stdin) what, and when: the audit log."""
    from spamkit.message import message_key

    with click.open_file(message, "rb") as handle:
        raw = handle.read()
    key = message_key(raw)
    with open_store(resolve_db_path(db_path, config_path), readonly=True) as store:
        events = store.history(key)
        label = store.learned_as(key)
    if as_json:
        click.echo(json.dumps({"message_key": key.hex(), "learned_as": label.value if label else None,
                               "events": events}))
        return
    click.echo(f"{message}: learned as {label.value if label else 'nothing'} (key {key.hex()})")
    for event in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event["time"])))  # type: ignore[arg-type]
        click.echo(f"  {when}  {event['action']:<6}  by {event['by']}  ({event['outcome']})")


@db.command()
@click.option("--yes", is_flag=True, help="Do not ask.")
@db_option
@config_option
def reset(yes: bool, db_path: str | None, config_path: str | None) -> None:
    """Forget everything learned."""
    location = resolve_db_path(db_path, config_path)
    where = describe_location(location)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to reset without --yes when not on a terminal")
        click.confirm(f"Forget everything learned in {where}?", abort=True)
    try:
        with open_store(location) as store:
            store.reset()
    except StoreCorrupt as error:  # damaged (found on opening, or by emptying it): set aside
        kept = set_aside_damaged(location)
        click.echo(f"spamkit: {error}", err=True)
        click.echo(f"moved the damaged database aside to {kept}", err=True)
        with open_store(location) as store:
            store.reset()
    click.echo(f"reset {where}", err=True)
