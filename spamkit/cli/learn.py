"""`spamkit learn --spam|--ham|--forget PATH...`: teach the database from messages."""

from __future__ import annotations

import json
import sys

import click

from spamkit.cli import db_option, json_option
from spamkit.cli.progress import Progress
from spamkit.learn import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TOKENS, EXPIRE_TO, Learner
from spamkit.sources import iter_messages
from spamkit.store import Label, open_store


@click.command()
@click.option("--spam", "mode", flag_value="spam", help="Learn PATHs as spam.")
@click.option("--ham", "mode", flag_value="ham", help="Learn PATHs as ham (good mail).")
@click.option("--forget", "mode", flag_value="forget", help="Undo what PATHs taught.")
@click.argument("paths", nargs=-1, metavar="PATH...")
@db_option
@json_option
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_SIZE,
              show_default=True, help="Messages per committed transaction.")
@click.option("--max-tokens", type=click.IntRange(1000), default=DEFAULT_MAX_TOKENS,
              envvar="SPAMKIT_MAX_TOKENS", show_default=True,
              help=f"Above this many tokens, expire the oldest and rarest down to "
                   f"{EXPIRE_TO:.0%} of it.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless something failed.")
def learn(mode: str | None, paths: tuple[str, ...], db_path: str | None, as_json: bool,
          batch_size: int, max_tokens: int, quiet: bool) -> None:
    """Learn messages as spam or ham, or forget them.

    PATH is a message file, a directory of them, a Maildir (cur/ and new/) or an mbox;
    `-` reads one message from standard input. Each message is learned once: learning
    it again changes nothing, learning it with the other label moves its counts.

    Exit status: 0 when every message was read, 1 when some could not be.
    """
    if mode is None:
        raise click.UsageError("say what the messages are: --spam, --ham or --forget "
                               "(the folder sweep without them arrives with the trainer)")
    if not paths:
        raise click.UsageError("give at least one PATH (or - for standard input)")
    label = None if mode == "forget" else Label(mode)
    progress = Progress("learning", enabled=None if not (as_json or quiet) else False)
    with open_store(db_path) as store:
        summary = Learner(store, batch_size=batch_size, max_tokens=max_tokens).learn(
            iter_messages(paths), label, progress=progress)
    progress.done()
    if as_json:
        click.echo(json.dumps(summary.as_json()))
    else:
        for name, reason in summary.failures:
            click.echo(f"spamkit: cannot learn {name}: {reason}", err=True)
        if not quiet:
            verb = "forgotten" if label is None else "learned"
            done = summary.forgotten if label is None else summary.learned
            expired = f", expired tokens: {summary.expired}" if summary.expired else ""
            click.echo(f"{verb}: {done}, relearned: {summary.relearned}, "
                       f"already known: {summary.skipped}, failed: {summary.failed}{expired} "
                       f"({summary.seconds:.2f} s)")
    if summary.failed:
        sys.exit(1)
