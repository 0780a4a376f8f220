"""`spamkit wbl add|remove|list`: the white/blacklists (SME's `wbl.global`)."""

from __future__ import annotations

import json

import click

from spamkit.cli import config_option, json_option
from spamkit.config import load_config
from spamkit.lists import Lists, check_entry, entry_warning


@click.group()
def wbl() -> None:
    """Whitelist or blacklist senders, for everyone or for one recipient."""


def _lists(config_path: str | None) -> Lists:
    return Lists.load(load_config(config_path).lists_path)


@wbl.command()
@click.argument("kind", type=click.Choice(["white", "black"]))
@click.argument("pattern")
@click.option("--user", default="", help="Only for mail to this recipient: an address, or an "
              "account name (for mail to NAME@ any domain, `deliver NAME` and `spamc -u NAME`).")
@config_option
def add(kind: str, pattern: str, user: str, config_path: str | None) -> None:
    """Add PATTERN (e.g. *@example.com, user@example.com, *@*.xyz) to a list."""
    entry = check_entry(kind, pattern, user)
    added = _lists(config_path).add(entry)
    click.echo(f"{'added' if added else 'already listed'}: {entry.line()}", err=True)
    if (warning := entry_warning(entry)) is not None:
        click.echo(f"spamkit: warning: {warning}", err=True)


@wbl.command()
@click.argument("kind", type=click.Choice(["white", "black"]))
@click.argument("pattern")
@click.option("--user", default="", help="The recipient the entry is for.")
@config_option
def remove(kind: str, pattern: str, user: str, config_path: str | None) -> None:
    """Remove PATTERN from a list."""
    lists = _lists(config_path)
    entry = check_entry(kind, pattern, user)
    if not lists.remove(entry):
        raise click.ClickException(f"not listed: {entry.line()}")
    click.echo(f"removed: {entry.line()}", err=True)


@wbl.command(name="list")
@config_option
@json_option
def list_(config_path: str | None, as_json: bool) -> None:
    """Print the lists."""
    lists = _lists(config_path)
    if as_json:
        click.echo(json.dumps([{"kind": e.kind, "pattern": e.pattern, "user": e.user or None}
                               for e in lists.entries]))
        return
    for entry in lists.entries:
        click.echo(entry.line())
