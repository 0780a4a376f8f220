"""The `spamkit` command: a click group and the one place errors become exit codes.

Every command takes `--db DIR` (default: $SPAMKIT_DB, else the path `spamkit db path`
prints) and `--json` where a script may read the output. Errors print one line to
stderr and exit non-zero; no traceback reaches a user.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from spamkit import __version__
from spamkit.errors import SpamkitError

F = TypeVar("F", bound=Callable[..., Any])


def db_option(function: F) -> F:
    return click.option(
        "--db", "db_path", type=click.Path(file_okay=False), envvar="SPAMKIT_DB",
        help="Token database directory (default: $SPAMKIT_DB, else `spamkit db path`).",
    )(function)


def config_option(function: F) -> F:
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False), envvar="SPAMKIT_CONFIG",
        help="Configuration file (default: $SPAMKIT_CONFIG, else `spamkit config path`).",
    )(function)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON for scripts instead of text.")(function)


def resolve_db_path(db_path: str | None, config_path: str | None = None) -> str | None:
    """--db (or $SPAMKIT_DB), else the configuration's Database, else None (the default)."""
    if db_path:
        return db_path
    from spamkit.config import load_config

    return load_config(config_path)["Database"] or None


class _Group(click.Group):
    """Turns spamkit's errors into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpamkitError as error:
            click.echo(f"spamkit: error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("spamkit: interrupted; nothing uncommitted was kept", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(141)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spamkit")
def main() -> None:
    """spamkit: a Bayesian spam classifier and training toolkit for a mail server."""


def _register() -> None:
    from spamkit.cli import check, config, db, deliver, learn, rules, serve, trainer, wbl

    main.add_command(learn.learn)
    main.add_command(check.check)
    main.add_command(db.db)
    main.add_command(config.config)
    main.add_command(rules.lint)
    main.add_command(rules.rules)
    main.add_command(wbl.wbl)
    main.add_command(trainer.stats)
    main.add_command(trainer.expire_junk)
    main.add_command(serve.serve)
    main.add_command(deliver.deliver)


_register()
