"""`spamkit karma list|forget`: what the karma filter knows of each client, and a way to
lift a penalty that hit someone it should not have."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from spamkit.cli import config_option, json_option
from spamkit.cli.filterstore import forget_each, opened_store
from spamkit.config import load_config

if TYPE_CHECKING:
    from smtpfilter.plugins.karma import KarmaStore


@click.group()
def karma() -> None:
    """The karma filter's record of each client address: list it, forget an address."""


@contextmanager
def _karma_store(config_path: str | None) -> Iterator[tuple[KarmaStore | None, str]]:
    """The store the filter uses (KarmaDatabase, else `karma` beside the token database),
    and where it is; None when there is no database there yet."""
    from smtpfilter.plugins import karma_database
    from smtpfilter.plugins.karma import KarmaStore

    config = load_config(config_path)
    with opened_store(karma_database(config), lambda location: KarmaStore(location, config["KarmaForgetDays"])) \
            as opened:
        yield opened


def _row(address: str, record: dict[str, Any], now: float) -> dict[str, Any]:
    from smtpfilter.plugins.karma import refused_until

    until = refused_until(record, now)
    return {"address": address, "good": int(record["good"]), "bad": int(record["bad"]),
            "seen": record.get("seen"), "refused": until is not None,
            "refused_until": None if until is None else round(until)}


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


@karma.command(name="list")
@click.option("--naughty", is_flag=True, help="Only the addresses refused now.")
@config_option
@json_option
def list_(naughty: bool, config_path: str | None, as_json: bool) -> None:
    """Every client address karma knows: good and bad counts, when it last sent, and
    until when it is refused. The refused come first, then the most bad messages."""
    now = time.time()
    with _karma_store(config_path) as (store, where):
        rows = [] if store is None else [_row(address, record, now)
                                         for address, record in store.addresses()]
    if naughty:
        rows = [row for row in rows if row["refused"]]
    rows.sort(key=lambda row: (not row["refused"], -row["bad"], row["address"]))
    if as_json:
        click.echo(json.dumps({"database": where, "addresses": rows}))
        return
    if not rows:
        click.echo(f"karma knows no {'refused ' if naughty else ''}address ({where})", err=True)
        return
    click.echo(f"{'address':<39} {'good':>6} {'bad':>6}  {'last sent':<16}  refused until")
    for row in rows:
        click.echo(f"{row['address']:<39} {row['good']:>6} {row['bad']:>6}  "
                   f"{_when(row['seen']):<16}  {_when(row['refused_until'])}")


@karma.command()
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@config_option
@json_option
def forget(addresses: tuple[str, ...], config_path: str | None, as_json: bool) -> None:
    """Forget what karma knows of these client addresses: a penalty is lifted at once,
    and the address starts again with no good or bad mail counted."""
    forget_each(_karma_store(config_path), [_address(text) for text in addresses],
                lambda store, address: store.forget(address), as_json, "not known to karma")


def _address(text: str) -> str:
    """An IP address written as the filter writes a client's (IPv4 plain, IPv6 compressed)."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an IP address", param_hint="ADDRESS") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
