"""The `spamkit` command: a click group and the one place errors become exit codes.

Every command takes `--db DIR` (default: $SPAMKIT_DB, else the path `spamkit db path`
prints) and `--json` where a script may read the output. Errors print one line to
stderr and exit non-zero; no traceback reaches a user.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spamkit import __version__
from spamkit.errors import SpamkitError

if TYPE_CHECKING:
    from spamkit.config import Config
    from spamkit.learn import Learner
    from spamkit.store.base import TokenStore

F = TypeVar("F", bound=Callable[..., Any])


def db_option(function: F) -> F:
    return click.option(
        # (readable=False: a database this user may not read is the store's to report,
        # and `deliver` deals with it by WhenDatabaseDown rather than a usage error)
        "--db", "db_path", type=click.Path(file_okay=False, readable=False), envvar="SPAMKIT_DB",
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


def batch_garbage_collection(function: F) -> F:
    """Run a command that works through many messages with the cyclic collector tuned for it.

    Learning and checking make no reference cycles (a learn of 3,297 messages left 352
    cyclic objects, all from start-up), so their garbage goes by reference counting and
    the collector only walked the same live objects again and again: 9% of a learn's
    time, 5% of a check's (docs/decisions/0009). For the command's run, what start-up
    made is frozen out of its walks, and it runs after 100,000 new objects instead of
    700, so cycles that something unforeseen makes are still collected. Restored after
    (tests run commands in-process). Not for `serve`, whose asyncio makes cycles.
    """
    @functools.wraps(function)
    def tuned(*args: Any, **kwargs: Any) -> Any:
        with batch_gc():
            return function(*args, **kwargs)

    return tuned  # type: ignore[return-value]


@contextlib.contextmanager
def batch_gc() -> Iterator[None]:
    """The collector as `batch_garbage_collection` tunes it, for a block (the benchmarks'
    in-process profile times the stages under it, as the commands run them)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def resolve_db_path(db_path: str | None, config_path: str | None = None) -> str | None:
    """--db (or $SPAMKIT_DB), else the configuration's Database, else None (the default)."""
    if db_path:
        return db_path
    from spamkit.config import load_config

    return load_config(config_path)["Database"] or None


def require_database(location: str | None) -> None:
    """NoDatabase (exit 74) unless there is a database at `location`: for a command that
    opens it for writing and would otherwise make an empty one at a mistyped --db, then
    report that there was nothing to do (`learn --forget`, `db expire`)."""
    from spamkit.store import open_store

    open_store(location, readonly=True).close()


def configured_learner(store: TokenStore, config: Config, batch_size: int | None,
                       max_tokens: int | None = None) -> Learner:
    """The Learner `learn`, `train` and the sweep use: the database's own tokenizer, the
    configuration's MaxMessageSize, its BayesSeenDays, and its BayesMaxTokens unless
    --max-tokens says."""
    from spamkit.analysis import analyzer_for
    from spamkit.learn import Learner
    from spamkit.message import ParseLimits

    limits = ParseLimits(max_message_bytes=config["MaxMessageSize"])
    return Learner(store, analyzer_for(store, limits), batch_size=batch_size,
                   max_tokens=max_tokens or config["BayesMaxTokens"], seen_days=config["BayesSeenDays"])


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
        except OSError as error:  # I/O no command made its own error of (a full disk, a port in use)
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"spamkit: error: {where}{error.strerror or error}", err=True)
            _drop_unwritten_output()
            sys.exit(74)  # EX_IOERR
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits
        except Exception as error:  # a bug: one line (the traceback with SPAMKIT_DEBUG=1)
            if os.environ.get("SPAMKIT_DEBUG"):
                raise
            click.echo(f"spamkit: internal error: {type(error).__name__}: {error} (what was "
                       "committed stays committed; set SPAMKIT_DEBUG=1 for the traceback)", err=True)
            sys.exit(70)  # EX_SOFTWARE


def _drop_unwritten_output() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what could not be
    written does not fail again (a second message, and exit 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # (no real stdout: nothing to flush at exit)
        pass


# name -> "module:attribute"; a command's module (and what it imports: numpy, the rule
# engine, aiosmtpd, imapclient) loads only when that command runs or help lists it.
# Loading them all cost 0.19 s at every start, a fifth of a 1,247-message check.
_COMMANDS = {
    "learn": "spamkit.cli.learn:learn",
    "train": "spamkit.cli.train:train",
    "check": "spamkit.cli.check:check",
    "db": "spamkit.cli.db:db",
    "config": "spamkit.cli.config:config",
    "lint": "spamkit.cli.rules:lint",
    "rules": "spamkit.cli.rules:rules",
    "wbl": "spamkit.cli.wbl:wbl",
    "stats": "spamkit.cli.trainer:stats",
    "expire-junk": "spamkit.cli.trainer:expire_junk",
    "make-folders": "spamkit.cli.trainer:make_folders",
    "serve": "spamkit.cli.serve:serve",
    "deliver": "spamkit.cli.deliver:deliver",
    "mark": "spamkit.cli.mark:mark",
    "dkim": "spamkit.cli.dkim:dkim",
    "dmarc-reports": "spamkit.cli.dmarc:dmarc_reports",
    "karma": "spamkit.cli.karma:karma",
    "mailstats": "spamkit.cli.mailstats:mailstats",
    "geoip": "spamkit.cli.geoip:geoip",
    "greylist": "spamkit.cli.greylist:greylist",
    "sendlimit": "spamkit.cli.sendlimit:sendlimit",
    "evaluate": "spamkit.cli.evaluate:evaluate_command",
    "spamd": "spamkit.cli.spamd:spamd",
    "milter": "spamkit.cli.milter:milter",
}


class _LazyGroup(_Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's main, with numpy's OpenBLAS kept to one thread unless the environment
        says otherwise (before any command imports numpy). spamkit does no linear algebra,
        and OpenBLAS starting a thread a core at import cost ~0.1 s of CPU a process on
        two cores, a third of a one-message `check` or `deliver` (decision 0009)."""
        if "numpy" not in sys.modules:
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, target
        return command


def run() -> None:
    """The installed `spamkit` command (and `python -m spamkit`): `main`, leaving quickly
    after the one-shot commands that ask to (spamkit.cli.quickexit)."""
    from spamkit.cli import hangup, quickexit

    hangup.hold_for(sys.argv)  # (before the daemon's own modules load: spamkit.cli.hangup)
    quickexit.run(main)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spamkit")
def main() -> None:
    """spamkit: a Bayesian spam classifier and training toolkit for a mail server."""
