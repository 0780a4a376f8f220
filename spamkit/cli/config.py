"""`spamkit config show|get|set|path`: the settings, as `config setprop spamassassin` did."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spamkit.cli import config_option, json_option
from spamkit.config import OPTIONS, default_config_path, format_value, load_config, set_option


@click.group()
def config() -> None:
    """Show and change settings (TagLevel, Sensitivity, SortSpam, ...)."""


@config.command()
@config_option
def path(config_path: str | None) -> None:
    """Print where the configuration file is (or would be created)."""
    click.echo(config_path or str(default_config_path()))


@config.command()
@config_option
@json_option
def show(config_path: str | None, as_json: bool) -> None:
    """Every option with its value and where the value came from."""
    settings = load_config(config_path)
    if as_json:
        click.echo(json.dumps(dict(settings)))
        return
    click.echo(f"# {settings.path}  (tag level in force: {settings.tag_level:g}, "
               f"reject level: {'none' if settings.reject_level is None else f'{settings.reject_level:g}'})")
    for option in OPTIONS:
        origin = settings.origins[option.name]
        note = "" if origin == "default" else f"   # from {origin}"
        click.echo(f"{option.name} = {format_value(settings[option.name])}{note}")


@config.command()
@click.argument("key")
@config_option
def get(key: str, config_path: str | None) -> None:
    """Print one option's value."""
    value = load_config(config_path)[key]
    click.echo(",".join(value) if isinstance(value, list) else
               ("true" if value is True else "false" if value is False else value))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@config_option
def set_(key: str, value: str, config_path: str | None) -> None:
    """Set KEY to VALUE in the configuration file (created if missing), atomically."""
    target = Path(config_path) if config_path else default_config_path()
    load_config(target)  # refuse to edit a file that is already broken: say where instead
    stored = set_option(target, key, value)
    click.echo(f"{key} = {format_value(stored)}  ({target})", err=True)
