"""`spamkit geoip [ADDRESS...]`: the country database the geoip filter and the rules'
X-Relay-Countries read, and where it places addresses (to try BlockedCountries on a
client from the log before refusing its country)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import sys

import click

from spamkit.cli import config_option, json_option
from spamkit.config import load_config


@click.command()
@click.argument("addresses", nargs=-1)
@config_option
@json_option
def geoip(addresses: tuple[str, ...], config_path: str | None, as_json: bool) -> None:
    """Which database is read (GeoIPDatabase, else the first one found) and how old it
    is; with ADDRESSes (`-` reads them from stdin, one a line), each one's country, "-"
    for an address the database does not place. Exits 1 if an ADDRESS is not an IP
    address, 66 when there is no database to read."""
    from spamkit.geoip import Countries

    config = load_config(config_path)
    countries = Countries(config["GeoIPDatabase"])
    databases = countries.open()
    wanted = [line.strip() for line in sys.stdin if line.strip()] if addresses == ("-",) else list(addresses)
    rows = []
    for address in wanted:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            rows.append({"address": address, "country": None, "error": "not an IP address"})
            continue
        rows.append({"address": address, "country": countries.country(ip)})
    if as_json:
        click.echo(json.dumps({
            "databases": [{"path": str(d.path), "description": d.describe(),
                           "built": _day(d.built)} for d in databases],
            "addresses": rows}))
    elif not wanted:
        for database in databases:
            click.echo(database.describe())
    else:
        for row in rows:
            shown = row["country"] or "-"
            click.echo(f"{row['address']}\t{shown}" + (f"\t({row['error']})" if "error" in row else ""))
    if any("error" in row for row in rows):
        sys.exit(1)


def _day(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%d")
