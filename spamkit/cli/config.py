"""`spamkit config show|get|set|unset|path`: the settings, as `config setprop spamassassin`
did, and with --user NAME the per-user ones, as `db accounts setprop NAME` did."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from spamkit.cli import config_option, json_option
from spamkit.config import (
    OPTIONS,
    Config,
    check_user_name,
    default_config_path,
    format_value,
    load_config,
    set_option,
    unset_option,
)

F = Callable[..., Any]


def user_option(function: F) -> F:
    return click.option("--user", "user", metavar="NAME",
                        help="This user's own setting ([user.NAME] in the file; per-user "
                             "options only).")(function)


def _settings(config_path: str | None, user: str | None) -> Config:
    settings = load_config(config_path)
    return settings.for_user(check_user_name(user)) if user is not None else settings


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
@user_option
@json_option
def show(config_path: str | None, user: str | None, as_json: bool) -> None:
    """Every option with its value and where the value came from (with --user, the
    values in force for that user)."""
    settings = _settings(config_path, user)
    if as_json:
        click.echo(json.dumps(dict(settings)))
        return
    click.echo(f"# {settings.path}{f' for user {user}' if user else ''}  (tag level in force: "
               f"{settings.tag_level:g}, reject level: "
               f"{'none' if settings.reject_level is None else f'{settings.reject_level:g}'})")
    ignored = {"TagLevel", "RejectLevel"} if settings.levels_not_in_force() else set()
    for option in OPTIONS:
        origin = settings.origins[option.name]
        note = "" if origin == "default" else f"   # from {origin}"
        if note and option.name in ignored:
            note += f"; not in force (Sensitivity is {settings['Sensitivity']}, not custom)"
        click.echo(f"{option.name} = {format_value(settings[option.name])}{note}")
    if not user:
        for name in sorted(settings.users):
            for key, (value, where) in settings.users[name].items():
                click.echo(f"# user {name}: {key} = {format_value(value)}   # from {where}")


@config.command()
@click.argument("key")
@config_option
@user_option
def get(key: str, config_path: str | None, user: str | None) -> None:
    """Print one option's value (with --user, the value in force for that user)."""
    value = _settings(config_path, user)[key]
    click.echo(",".join(value) if isinstance(value, list) else
               ("true" if value is True else "false" if value is False else value))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@config_option
@user_option
def set_(key: str, value: str, config_path: str | None, user: str | None) -> None:
    """Set KEY to VALUE in the configuration file (created if missing), atomically; with
    --user, for that user only."""
    target = Path(config_path) if config_path else default_config_path()
    load_config(target)  # refuse to edit a file that is already broken: say where instead
    stored = set_option(target, key, value, user)
    click.echo(f"{key} = {format_value(stored)}{f' for user {user}' if user else ''}  ({target})",
               err=True)
    for line in load_config(target).levels_not_in_force():
        click.echo(f"note: {line}", err=True)


@config.command()
@click.argument("key")
@config_option
@user_option
def unset(key: str, config_path: str | None, user: str | None) -> None:
    """Remove KEY from the configuration file, so its default applies again; with --user,
    remove that user's own value, so the value for everyone applies."""
    target = Path(config_path) if config_path else default_config_path()
    load_config(target)
    removed = unset_option(target, key, user)
    whose = f" for user {user}" if user else ""
    click.echo(f"{key}{whose}: {'removed' if removed else 'was not set'}  ({target})", err=True)
