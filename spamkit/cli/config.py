"""`spamkit config show|get|set|unset|path`: the settings, as `config setprop spamassassin`
did, and with --user NAME the per-user ones, as `db accounts setprop NAME` did."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    write_atomically,
)
from spamkit.errors import ConfigError

if TYPE_CHECKING:
    from spamkit.config.sme import ImportPlan

F = Callable[..., Any]


def user_option(function: F) -> F:
    return click.option("--user", "user", metavar="NAME",
                        help="This user's own setting ([user.NAME] in the file; per-user "
                             "options only).")(function)


def _settings(config_path: str | None, user: str | None) -> Config:
    settings = load_config(config_path)
    return settings.for_user(check_user_name(user)) if user is not None else settings


# `serve` and `spamd` read the configuration at start and at SIGHUP only (the list file,
# which `wbl` edits, they read again by themselves), so `config set` and `unset` say so
RELOAD_NOTE = ("note: a running `spamkit serve` or `spamkit spamd` takes this at its next reload "
               "(systemctl reload spamkit-filter spamkit-spamd); other commands at their next run")


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
    click.echo(RELOAD_NOTE, err=True)


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
    if removed:
        click.echo(RELOAD_NOTE, err=True)


def _copy_disclaimers(plan: ImportPlan, qpsmtpd_config: Path, current: Config,
                      dry_run: bool) -> list[tuple[Path, Path]]:
    """SME's disclaimer texts copied to where the disclaimer filter reads them
    (DisclaimerFile, else beside the configuration file): (from, to) for each. A text
    already there is kept, and reported left out when it differs."""
    from smtpfilter.plugins import disclaimer_path

    base = disclaimer_path(current)
    copies = []
    for name, text in plan.disclaimers:
        copy = base.with_name(base.name + name[len("disclaimer"):])
        try:
            existing = copy.read_text(encoding="utf-8", errors="replace") if copy.exists() else None
        except OSError as error:
            raise click.ClickException(f"cannot read {copy}: {error.strerror}") from None
        if existing is not None:
            if existing != text:
                plan.left_out.append(f"{qpsmtpd_config / name}: {copy} exists with another text; "
                                     "it is kept (compare them, and copy by hand if you want SME's)")
            continue
        if not dry_run:
            copy.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(copy, text)
        copies.append((qpsmtpd_config / name, copy))
    return copies


@config.command(name="import-sme")
@click.option("--from", "sme_db", default="/home/e-smith/db", show_default=True,
              type=click.Path(file_okay=False),
              help="SME's database directory: configuration, and if there, domains, networks, "
                   "accounts and spamassassin (each may also be `config show` output).")
@click.option("--qmail-control", default="/var/qmail/control", show_default=True,
              type=click.Path(file_okay=False), help="qmail's control directory: each list "
              "file (badmailfrom, badmailfromto, badrcptto, ...) is read from here when "
              "qpsmtpd's directory has none, as qpsmtpd reads it.")
@click.option("--qpsmtpd-config", default="/var/service/qpsmtpd/config", show_default=True,
              type=click.Path(file_okay=False), help="qpsmtpd's config directory, where its list "
              "files (badhelo, badrcptto, relayclients, whitelisthosts, whitelisthelo, "
              "whitelistsenders, ...) are looked for first.")
@config_option
@json_option
@click.option("--dry-run", is_flag=True, help="Print what would be set; change nothing.")
def import_sme(sme_db: str, qmail_control: str, qpsmtpd_config: str, config_path: str | None,
               as_json: bool, dry_run: bool) -> None:
    """Carry an SME Server's spam settings over: what `config setprop spamassassin|qpsmtpd`,
    `db accounts setprop USER SortSpam` and `db spamassassin setprop wbl.global` set, and
    the entries of qmail's and qpsmtpd's list files (badmailfrom, whitelisthosts, ...).

    The settings are written into the configuration file in one replacement (all of
    them, or none when one is refused); lists already set (LocalDomains, LocalNetworks,
    RelayClients) are added to, not emptied. What has no spamkit setting is listed as
    left out, with why. Exit 66 when there is no SME configuration database.
    """
    import shutil
    import tempfile
    from contextlib import nullcontext

    from spamkit.atomicfile import editing
    from spamkit.config.sme import LIST_FILES, UNREAD_FILES, SmeFormatError, plan_import, read_db
    from spamkit.lists import Lists, check_entry

    directory = Path(sme_db)
    if not (directory / "configuration").is_file():
        click.echo(f"spamkit: error: no SME configuration database at {directory / 'configuration'}",
                   err=True)
        raise SystemExit(66)
    target = Path(config_path) if config_path else default_config_path()
    current = load_config(target)  # refuse to edit a file that is already broken
    # where qpsmtpd looks for a file: its own config directory, else qmail's control
    places = {name: next((path for path in (Path(qpsmtpd_config) / name, Path(qmail_control) / name)
                          if path.is_file()), None)
              for name in (*LIST_FILES, *UNREAD_FILES)}
    try:
        databases = {name: read_db((directory / name).read_text(encoding="utf-8", errors="replace"),
                                   str(directory / name)) if (directory / name).is_file() else {}
                     for name in ("configuration", "domains", "networks", "accounts", "spamassassin")}
        list_files = {name: path.read_text(encoding="utf-8", errors="replace")
                      for name, path in places.items() if path is not None}
        disclaimers = {path.name: path.read_text(encoding="utf-8", errors="replace")
                       for path in sorted(Path(qpsmtpd_config).glob("disclaimer*"))
                       if path.is_file() and (path.name == "disclaimer" or path.name.startswith("disclaimer_"))}
    except (SmeFormatError, OSError) as error:
        raise click.ClickException(str(error)) from None
    plan = plan_import(databases, list_files, current, disclaimers)
    lists = Lists.load(current.lists_path)
    entries = []
    for kind, pattern, origin in plan.lists:
        try:
            entry = check_entry(kind, pattern)
        except ConfigError as error:
            plan.left_out.append(f"{origin} {pattern}: {error}")
            continue
        if entry not in lists.entries:
            entries.append(entry)
    if plan.settings:
        # every setting into a copy, checked as one file (a dry run too), then the copy
        # replaces the file
        if not dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
        # (under the file's lock, from the copy to the replacement: a `config set` meanwhile stays)
        with nullcontext() if dry_run else editing(target), \
                tempfile.TemporaryDirectory(dir=target.parent if target.parent.is_dir() else None) as scratch:
            copy = Path(scratch) / "spamkit.toml"
            if target.exists():
                shutil.copyfile(target, copy)
            for option, value, user, origin in plan.settings:
                try:
                    set_option(copy, option, value, user)
                except ConfigError as error:
                    raise click.ClickException(f"{origin}: {error}; nothing was changed") from None
            if not dry_run:
                write_atomically(target, copy.read_text(encoding="utf-8"))
    if not dry_run:
        for entry in entries:
            lists.add(entry)
    copies = _copy_disclaimers(plan, Path(qpsmtpd_config), current, dry_run)
    if as_json:
        click.echo(json.dumps({
            "settings": [{"option": o, "value": v, "user": u, "from": f} for o, v, u, f in plan.settings],
            "lists": [{"kind": e.kind, "pattern": e.pattern} for e in entries],
            "disclaimers": [{"from": str(source), "to": str(copy)} for source, copy in copies],
            "left_out": plan.left_out, "dry_run": dry_run, "config": str(target)}))
        return
    verb = "would set" if dry_run else "set"
    for option, value, user, origin in plan.settings:
        whose = f" for user {user}" if user else ""
        click.echo(f"{verb} {option} = {value!r}{whose}  (from {origin})")
    for entry in entries:
        click.echo(f"{'would add' if dry_run else 'added'} to the lists: {entry.line()}")
    for source, copy in copies:
        click.echo(f"{'would copy' if dry_run else 'copied'} {source} to {copy}")
    for line in plan.left_out:
        click.echo(f"left out: {line}")
    if not dry_run:
        for line in load_config(target).levels_not_in_force():
            click.echo(f"note: {line}", err=True)
