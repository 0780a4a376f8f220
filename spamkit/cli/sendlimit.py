"""`spamkit sendlimit list|forget`: how many recipients each user who logged in has sent
to in the last hour, against their limit, and a way to lift a deferral at once (the
user is known to be sending a real mailing, say, and their password safe)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from spamkit.cli import config_option, json_option
from spamkit.cli.filterstore import forget_each, opened_store
from spamkit.config import load_config

if TYPE_CHECKING:
    from smtpfilter.plugins.sendlimit import SendCounts


@click.group()
def sendlimit() -> None:
    """The sendlimit filter's count of each login's recipients: list it, forget a login."""


@contextmanager
def _counts(config_path: str | None) -> Iterator[tuple[SendCounts | None, str]]:
    from smtpfilter.plugins import sendlimit_database
    from smtpfilter.plugins.sendlimit import SendCounts

    with opened_store(sendlimit_database(load_config(config_path)), SendCounts) as opened:
        yield opened


@sendlimit.command(name="list")
@click.option("--deferred", is_flag=True, help="Only the logins whose mail is deferred now.")
@config_option
@json_option
def list_(deferred: bool, config_path: str | None, as_json: bool) -> None:
    """Every login that sent in the last hour: its recipients, its limit, and whether its
    mail is deferred now. The deferred come first, then the most recipients."""
    from smtpfilter.plugins import send_limits

    limit_of = send_limits(load_config(config_path))
    with _counts(config_path) as (counts, where):
        rows: list[dict[str, Any]] = [] if counts is None else [
            {"login": login, "recipients": sent, "limit": limit_of(login),
             "deferred": 0 < limit_of(login) <= sent} for login, sent in counts.logins()]
    if deferred:
        rows = [row for row in rows if row["deferred"]]
    rows.sort(key=lambda row: (not row["deferred"], -row["recipients"], row["login"]))
    if as_json:
        click.echo(json.dumps({"database": where, "logins": rows}))
        return
    if not rows:
        click.echo(f"no login has {'been deferred' if deferred else 'sent'} in the last hour ({where})", err=True)
        return
    click.echo(f"{'login':<32} {'recipients':>10} {'limit':>7}  deferred")
    for row in rows:
        limit = row["limit"] or "none"
        click.echo(f"{row['login']:<32} {row['recipients']:>10} {limit:>7}  {'yes' if row['deferred'] else 'no'}")


@sendlimit.command()
@click.argument("logins", nargs=-1, required=True, metavar="LOGIN...")
@config_option
@json_option
def forget(logins: tuple[str, ...], config_path: str | None, as_json: bool) -> None:
    """Forget these logins' counts: their mail is taken again at once, and counted afresh."""
    forget_each(_counts(config_path), logins, lambda counts, login: counts.forget(login), as_json,
                "no count for")
