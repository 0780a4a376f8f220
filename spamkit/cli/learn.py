"""`spamkit learn --spam|--ham|--forget PATH...`: teach the database from messages."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from spamkit.cli import (
    batch_garbage_collection,
    config_option,
    configured_learner,
    db_option,
    json_option,
    quickexit,
    require_database,
    resolve_db_path,
)
from spamkit.cli.progress import Progress
from spamkit.config import load_config
from spamkit.learn import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TOKENS, EXPIRE_TO, LearningStopped, LearnSummary
from spamkit.errors import NoDatabase, SpamkitError
from spamkit.sources import SourceItem, iter_messages, leading_failures
from spamkit.store import Label, open_store


@click.command()
@click.option("--spam", "modes", flag_value="spam", multiple=True, help="Learn PATHs as spam.")
@click.option("--ham", "modes", flag_value="ham", multiple=True, help="Learn PATHs as ham (good mail).")
@click.option("--forget", "modes", flag_value="forget", multiple=True, help="Undo what PATHs taught.")
@click.argument("paths", nargs=-1, metavar="PATH...")
@db_option
@json_option
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_SIZE,
              show_default=True, help="Messages per committed transaction.")
@config_option
@click.option("--max-tokens", type=click.IntRange(1000), default=None,
              help=f"Above this many tokens, expire the oldest and rarest down to "
                   f"{EXPIRE_TO:.0%} of it (default: BayesMaxTokens, {DEFAULT_MAX_TOKENS:,}).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless something failed.")
@click.option("--maildirs", "pattern", help="Sweep: users' Maildirs, a path with {user} "
              "(default: the MaildirPattern setting).")
@click.option("--user", "only_user", help="Sweep: only this user.")
@click.option("--imap-accounts", type=click.Path(dir_okay=False, exists=True),
              help="Sweep these IMAP accounts instead of local Maildirs (TOML, mode 0600).")
@click.option("--dry-run", is_flag=True, help="Sweep: report what would be learned; change nothing.")
@click.option("--mail-report", metavar="ADDRESS",
              help="Sweep: also mail the report to ADDRESS (through ReportSmtpServer).")
@click.option("--limit", type=click.IntRange(1), help="Sweep: at most this many messages per folder.")
@click.option("--ham-to-inbox/--no-ham-to-inbox", default=None,
              help="Sweep: put learned ham back in the Inbox instead of deleting it.")
@batch_garbage_collection
def learn(modes: tuple[str, ...], paths: tuple[str, ...], db_path: str | None, as_json: bool,
          batch_size: int, config_path: str | None, max_tokens: int | None, quiet: bool,
          pattern: str | None, only_user: str | None, imap_accounts: str | None, dry_run: bool,
          mail_report: str | None, limit: int | None, ham_to_inbox: bool | None) -> None:
    """Learn messages as spam or ham, or forget them.

    PATH is a message file, a directory of them, a Maildir (cur/ and new/) or an mbox;
    `-` reads one message from standard input. Each message is learned once: learning
    it again changes nothing, learning it with the other label moves its counts.

    Without --spam, --ham or --forget it is the cron job: it sweeps every user's
    LearnAsSpam and LearnAsHam folders (see --maildirs), learns each message, and removes
    it only once what was learned is committed. A second sweep started while one runs
    says so and exits 0.

    Exit status: 0 when every message was read, 1 when some could not be.
    """
    mode = _one_mode(modes)
    if mode is None:
        if paths:
            raise click.UsageError("say what the messages are: --spam, --ham or --forget")
        from spamkit.cli.trainer import run_sweep

        run_sweep(db_path, config_path, as_json, quiet, pattern, only_user, dry_run, limit,
                  ham_to_inbox, batch_size, max_tokens, imap_accounts, mail_report)
        return
    if not paths:
        raise click.UsageError("give at least one PATH (or - for standard input)")
    _refuse_sweep_options(mode, {"--maildirs": pattern, "--user": only_user, "--imap-accounts": imap_accounts,
                                 "--dry-run": dry_run, "--mail-report": mail_report, "--limit": limit,
                                 "--ham-to-inbox/--no-ham-to-inbox": ham_to_inbox})
    label = None if mode == "forget" else Label(mode)
    config = load_config(config_path)
    progress = Progress("learning", enabled=None if not (as_json or quiet) else False)
    verb = "forgotten" if label is None else "learned"

    def counts(summary: LearnSummary) -> str:
        if label is None:  # ("skipped" here: messages this database never learned)
            return f"{verb}: {summary.forgotten}, not learned: {summary.skipped}"
        return f"{verb}: {summary.learned}, relearned: {summary.relearned}, already known: {summary.skipped}"

    location = resolve_db_path(db_path, config_path)
    messages = iter_messages(paths)
    if label is None:  # nothing to forget in a database that is not there
        require_database(location)
    else:
        [messages], unread = unless_nothing_readable(location, [messages])
        if unread is not None:
            report_unread(unread, as_json, quiet, counts(unread))
            return
    with reporting_a_stop(progress, as_json, quiet, counts):
        with open_store(location) as store:
            learner = configured_learner(store, config, batch_size, max_tokens)
            summary = learner.learn(messages, label, progress=progress)
    progress.done()
    quickexit.request()  # every batch is committed and the database closed (not the sweep's)
    report_summary(summary, as_json, quiet, counts(summary))


def unless_nothing_readable(location: str | None, sources: list[Iterator[SourceItem]]
                            ) -> tuple[list[Iterator[SourceItem]], LearnSummary | None]:
    """The sources, as they were (None for the second); or, when there is no database at
    `location` yet and not one message of theirs could be read (none there, or none
    readable), the summary of their failures. Learning from a mistyped PATH made an
    empty database at --db, which `check` then took for one that had learned nothing."""
    if not _no_database_yet(location):
        return sources, None
    peeked = [leading_failures(source) for source in sources]
    if any(rest is not None for _, rest in peeked):
        return [itertools.chain(failed, rest or ()) for failed, rest in peeked], None
    unread = LearnSummary()
    for failed, _ in peeked:
        for item in failed:
            unread.fail(item)
    return [iter(()) for _ in sources], unread


def report_unread(unread: LearnSummary, as_json: bool, quiet: bool, counts: str) -> None:
    """report_summary of a run that read nothing and so made no database."""
    if not (as_json or quiet):
        click.echo(f"spamkit: {'not one message could be read' if unread.failed else 'no message found'}, "
                   "so no database was made", err=True)
    report_summary(unread, as_json, quiet, counts)


def _no_database_yet(location: str | None) -> bool:
    try:
        require_database(location)
    except NoDatabase:
        return True
    except SpamkitError:
        return False  # (something is there: opening it for learning says what is wrong)
    return False


def _one_mode(modes: tuple[str, ...]) -> str | None:
    """The one of --spam, --ham and --forget given (None: the sweep). The PATHs are not
    tied to a flag, so `--spam spam/ --ham ham/` cannot say which is which; taken as the
    last flag, it taught every message as ham. Refused instead."""
    given = sorted(set(modes))
    if len(given) > 1:
        raise click.UsageError(f"--{' and --'.join(given)} given together: the PATHs would all "
                               "be taken as one kind. Learn each kind in a run of its own: "
                               "`spamkit learn --spam DIR`, then `spamkit learn --ham DIR`")
    return given[0] if given else None


def _refuse_sweep_options(mode: str, given: dict[str, object]) -> None:
    """The sweep's options mean nothing to --spam, --ham or --forget, and ignoring them
    misleads: `learn --spam --dry-run DIR` learned DIR."""
    named = [name for name, value in given.items() if value not in (None, False)]
    if named:
        raise click.UsageError(f"{', '.join(named)} {'is' if len(named) == 1 else 'are'} for the sweep "
                               f"(learn without --spam, --ham or --forget), not for --{mode}")


@contextmanager
def reporting_a_stop(progress: Progress, as_json: bool, quiet: bool,
                     counts: Callable[[LearnSummary], str]) -> Iterator[None]:
    """When a commit fails part way (a full disk), report what the batches before it
    committed, as a finished run would, then let the error end the command with its own
    exit code (74 for a full disk, 65 for a damaged database)."""
    try:
        yield
    except LearningStopped as stopped:
        progress.done()
        report_summary(stopped.summary, as_json, quiet, "committed before the error: "
                       + counts(stopped.summary), error=str(stopped))
        raise stopped.cause from None


def report_summary(summary: LearnSummary, as_json: bool, quiet: bool, counts: str,
                   error: str | None = None) -> None:
    """What `learn` and `train` print: the JSON object, or each failure on stderr and one
    line of `counts`; then exit 1 if any message could not be read. With `error` (the run
    stopped), the JSON carries it and the caller exits."""
    if as_json:
        record = summary.as_json()
        if error is not None:
            record["error"] = error
        click.echo(json.dumps(record))
    else:
        for name, reason in summary.failures:
            click.echo(f"spamkit: cannot learn {name}: {reason}", err=True)
        if not quiet or error is not None:
            expired = f", expired tokens: {summary.expired}" if summary.expired else ""
            if summary.seen_expired:
                expired += f", forgot {summary.seen_expired} messages learned long ago"
            click.echo(f"{counts}, failed: {summary.failed}{expired} ({summary.seconds:.2f} s)")
    if summary.failed and error is None:
        sys.exit(1)
