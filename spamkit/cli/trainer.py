"""The trainer's commands: the `spamkit learn` sweep, `spamkit stats`, `spamkit expire-junk`,
`spamkit make-folders`."""

from __future__ import annotations

import json
import smtplib
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import cast

import click
from imapclient.exceptions import IMAPClientError

from spamkit.cli import (
    config_option,
    configured_learner,
    db_option,
    json_option,
    resolve_db_path,
)
from spamkit.config import Config, load_config
from spamkit.errors import ConfigError, NoDatabase, StoreError
from spamkit.learn import Learner
from spamkit.store import TokenStore, open_store, sweep_lock_path
from trainer.lock import AlreadyRunning, SweepLock
from trainer.retention import expire_junk as expire_junk_folders
from trainer.accounts import ImapAccount, load_accounts
from trainer.folders import make_maildir_folders
from trainer.imap import Servers, imap_expire_junk, imap_folder_counts, imap_make_folders, imap_sweep
from trainer.stats import UserStats, add_corrections, folder_stats
from trainer.sweep import SweepOptions, SweepReport, mail_report, sweep
from trainer.users import Account, UnknownUser, UnsafeUser, accounts, split_pattern


def _accounts(config: Config, pattern: str | None, only_user: str | None) -> list[Account]:
    """The users' Maildirs. None at all is said: a MaildirPattern that matches nothing (SME's
    default on another system) had the cron job learn nothing, every half hour, in silence.
    With no base directory it is a usage error (exit 2); a base with no Maildir in it yet,
    a warning."""
    used = pattern or config["MaildirPattern"]
    try:
        found = [replace(account, layout=config.for_user(account.user)["MaildirLayout"])
                 for account in accounts(used, only_user, config["ExtraAccounts"])]
    except (UnsafeUser, UnknownUser) as error:
        raise click.UsageError(str(error)) from None
    if not found:
        base, after = split_pattern(used)
        where = f"{'--maildirs' if pattern else config.where('MaildirPattern')}: {used}"
        if not base.is_dir():
            raise ConfigError(f"no user Maildirs: {base} does not exist ({where}); set MaildirPattern "
                              "to where they are, e.g. /home/{user}/Maildir, or read them over IMAP "
                              "with --imap-accounts")
        click.echo(f"spamkit: warning: no user has a Maildir ({where}): no {base}/NAME{after} "
                   "has a cur directory", err=True)
    return found


def _imap_accounts(path: str, only_user: str | None, pattern: str | None) -> list[ImapAccount]:
    """The accounts of the credentials file at `path`; with --user, only that user's (by
    login, or by the name reports give it). --user was ignored here, so `expire-junk
    --imap-accounts FILE --user bob` emptied every account's junk folder."""
    if pattern:
        raise click.UsageError("give one of --maildirs and --imap-accounts: mail is read either "
                               "in local Maildirs or over IMAP")
    found = load_accounts(Path(path))
    if only_user is None:
        return found
    chosen = [account for account in found if only_user in (account.user, account.label)]
    if not chosen:
        raise click.UsageError(f"no account for user {only_user!r} in {path}")
    return chosen


def run_sweep(db_path: str | None, config_path: str | None, as_json: bool, quiet: bool,
              pattern: str | None, only_user: str | None, dry_run: bool, limit: int | None,
              ham_to_inbox: bool | None, batch_size: int, max_tokens: int | None,
              imap_accounts: str | None = None, mail_to: str | None = None) -> None:
    config = load_config(config_path)
    imap = _imap_accounts(imap_accounts, only_user, pattern) if imap_accounts else None
    users = [] if imap else _accounts(config, pattern, only_user)
    options = SweepOptions(config["SpamFolder"], config["HamFolder"], config["TrainerMaxFileSize"],
                           config["LearnHamToInbox"] if ham_to_inbox is None else ham_to_inbox,
                           limit, dry_run)
    resolved = resolve_db_path(db_path, config_path)
    if dry_run:
        report = _dry_run(users, resolved, options, imap)
        click.echo(json.dumps(report.as_json()) if as_json else report.table())
        if mail_to:  # (what the real run's mail would say: its subject says it is a dry run)
            _mail_report(report, config, mail_to)
        return
    lock_path = sweep_lock_path(resolved)
    try:
        with open_store(resolved, readonly=False) as store, SweepLock(lock_path):
            learner = configured_learner(store, config, batch_size, max_tokens)
            report = imap_sweep(imap, learner, options) if imap else sweep(users, learner, options)
    except AlreadyRunning:  # (cron's next run while a long one goes on: not a failure)
        if as_json:
            click.echo(json.dumps({**SweepReport().as_json(), "already_running": True}))
        elif not quiet:
            click.echo("spamkit learn: another sweep is running; nothing to do")
        return
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        for user in report.users:
            for name, reason in user.failures:
                click.echo(f"spamkit: {user.user}: left {name}: {reason}", err=True)
            for name, reason in user.skipped if not quiet else ():
                click.echo(f"spamkit: warning: {user.user}: skipped {name}: {reason}", err=True)
        if not quiet or any(u.failed for u in report.users) or report.error is not None:
            click.echo(report.table())
    if mail_to:
        _mail_report(report, config, mail_to)
    if report.stopped_by is not None:
        raise report.stopped_by  # its exit code (74, 65), after the report of what was done
    if report.totals()["failed"]:
        sys.exit(1)


def _mail_report(report: SweepReport, config: Config, mail_to: str) -> None:
    """--mail-report: a mail that cannot be sent is a warning; the sweep's work stands."""
    try:
        mail_report(report, config["ReportSmtpServer"], config["ReportFrom"], mail_to)
    except (OSError, smtplib.SMTPException) as error:
        click.echo(f"spamkit: warning: could not mail the report to {mail_to}: {error}", err=True)


def _dry_run(users: list[Account], db: str | None, options: SweepOptions,
             imap: list[ImapAccount] | None) -> SweepReport:
    """Report what a sweep would do, reading the database if there is one, creating none."""
    def run(store: TokenStore) -> SweepReport:
        learner = Learner(store)
        return imap_sweep(imap, learner, options) if imap else sweep(users, learner, options)

    try:
        store = open_store(db, readonly=True)
    except NoDatabase:
        with tempfile.TemporaryDirectory() as empty:  # no database yet: nothing is known
            with open_store(Path(empty) / "db") as store:
                return run(store)
    with store:
        return run(store)


@click.command()
@db_option
@config_option
@json_option
@click.option("--maildirs", "pattern", help="Users' Maildirs, a path with {user}.")
@click.option("--user", "only_user", help="Only this user.")
@click.option("--imap-accounts", type=click.Path(dir_okay=False, exists=True),
              help="Count over IMAP for these accounts instead of local Maildirs.")
def stats(db_path: str | None, config_path: str | None, as_json: bool, pattern: str | None,
          only_user: str | None, imap_accounts: str | None) -> None:
    """Per user: messages waiting in LearnAsSpam and LearnAsHam, junkmail read and unread,
    and the corrections they made in the last 30 days; then the database summary.

    Never creates or changes a database.
    """
    config = load_config(config_path)
    failures: list[tuple[str, str]] = []
    if imap_accounts:
        rows, failures = imap_stats(_imap_accounts(imap_accounts, only_user, pattern), config)
    else:
        users = _accounts(config, pattern, only_user)
        rows = folder_stats(users, config["SpamFolder"], config["HamFolder"], config["JunkFolder"])
    try:
        magic, db_error = add_corrections(rows, resolve_db_path(db_path, config_path)), None
    except StoreError as error:  # there, but unreadable: the folders are still worth showing
        magic, db_error = None, error
    records = [r.as_json() for r in rows]
    keys = ("LearnAsSpam", "LearnAsHam", "JunkMail", "NotSeen", "missed_spam_30d", "false_positives_30d")
    totals = {key: sum(int(r[key]) for r in records) for key in keys}  # type: ignore[call-overload]
    waiting = _bayes_waits(magic, config)
    if as_json:
        record: dict[str, object] = {"users": records, "totals": totals, "db": magic}
        if db_error is None:
            record["bayes_judging"] = config["UseBayes"] and waiting is None
            record["bayes_to_go"] = dict(zip(("spam", "ham"), waiting or (0, 0)))
        if db_error is not None:
            record["db_error"] = str(db_error)
        if imap_accounts:
            record["failures"] = [{"user": user, "reason": why} for user, why in failures]
        click.echo(json.dumps(record))
        if db_error is not None:
            raise db_error
        if failures:
            sys.exit(1)
        return
    click.echo(f"{'User':<20} {'LearnAsSpam':>11} {'LearnAsHam':>10} {'JunkMail':>8} {'NotSeen':>7}"
               f" {'missed spam 30d':>15} {'false pos. 30d':>14}")
    for r in records + [dict(totals, user="total")]:
        click.echo(f"{r['user']:<20} {r['LearnAsSpam']:>11} {r['LearnAsHam']:>10} {r['JunkMail']:>8} "
                   f"{r['NotSeen']:>7} {r['missed_spam_30d']:>15} {r['false_positives_30d']:>14}")
    for user, why in failures:
        click.echo(f"{user}: not counted: {why}", err=True)
    for row in rows:
        for path, why in row.skipped:
            click.echo(f"{row.user}: not counted: {path}: {why}", err=True)
    if db_error is not None:
        click.echo("database: cannot be read (see below)")
        raise db_error
    if magic is None:
        click.echo("database: none yet")
    else:
        click.echo(f"database: {magic['nspam']} spam, {magic['nham']} ham, {magic['ntokens']} tokens "
                   f"({magic['path']})")
    if not config["UseBayes"]:
        click.echo(f"Bayes is off ({config.where('UseBayes')})")
    elif waiting is not None:
        click.echo(f"Bayes is not judging yet: it waits until it has learned {config['BayesMinSpam']} "
                   f"spam and {config['BayesMinHam']} ham (BayesMinSpam, BayesMinHam); "
                   f"{waiting[0]} spam and {waiting[1]} ham to go")
    if failures:
        sys.exit(1)


def _bayes_waits(magic: dict[str, object] | None, config: Config) -> tuple[int, int] | None:
    """(spam, ham) still to learn before Bayes judges (the SME guide's 200 and 200), or None
    when it has learned enough: until then it abstains, and no BAYES_ rule hits."""
    spam, ham = (0, 0) if magic is None else (cast(int, magic["nspam"]), cast(int, magic["nham"]))
    to_go = (max(0, config["BayesMinSpam"] - spam), max(0, config["BayesMinHam"] - ham))
    return None if to_go == (0, 0) else to_go


def imap_stats(accounts_list: list[ImapAccount], config: Config) -> tuple[list[UserStats], list[tuple[str, str]]]:
    """A row for each account that could be asked, and (account, why) for each that could
    not: one server down does not hide the others."""
    rows, failures = [], []
    servers = Servers()
    for account in accounts_list:
        try:
            counts = imap_folder_counts(account, {"spam": config["SpamFolder"], "ham": config["HamFolder"],
                                                  "junk": config["JunkFolder"]}, servers)
        except (IMAPClientError, OSError) as error:  # (ssl.SSLError is an OSError)
            failures.append((account.label, f"{account.user}@{account.host}:{account.port}: {error}"))
            continue
        rows.append(UserStats(account.label, counts["spam"][0], counts["ham"][0],
                              counts["junk"][0] - counts["junk"][1], counts["junk"][1]))
    return rows, failures


@click.command(name="expire-junk")
@click.option("--days", type=click.IntRange(1), help="Delete junkmail older than this "
              "(default: MessageRetentionTime).")
@config_option
@json_option
@click.option("--maildirs", "pattern", help="Users' Maildirs, a path with {user}.")
@click.option("--user", "only_user", help="Only this user.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--imap-accounts", type=click.Path(dir_okay=False, exists=True),
              help="Delete over IMAP for these accounts instead of in local Maildirs (by "
                   "arrival day, UID EXPUNGE or MOVE to Trash, never a plain EXPUNGE).")
def expire_junk(days: int | None, config_path: str | None, as_json: bool, pattern: str | None,
                only_user: str | None, dry_run: bool, imap_accounts: str | None) -> None:
    """Delete junkmail delivered more than --days days ago."""
    config = load_config(config_path)
    keep = days or config["MessageRetentionTime"]
    if imap_accounts:
        report = imap_expire_junk(_imap_accounts(imap_accounts, only_user, pattern), config["JunkFolder"],
                                  keep, dry_run)
    else:
        report = expire_junk_folders(_accounts(config, pattern, only_user), config["JunkFolder"], keep,
                                     dry_run)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        verb = "would delete" if dry_run else "deleted"
        for user, count in report.users.items():
            click.echo(f"{user}: {verb} {count}")
        for user, why in report.failures:
            click.echo(f"{user}: {why}", err=True)
    if report.failures:
        sys.exit(1)


@click.command(name="make-folders")
@config_option
@json_option
@click.option("--maildirs", "pattern", help="Users' Maildirs, a path with {user}.")
@click.option("--user", "only_user", help="Only this user.")
@click.option("--dry-run", is_flag=True, help="Say what would be made; make nothing.")
@click.option("--imap-accounts", type=click.Path(dir_okay=False, exists=True),
              help="Make them over IMAP for these accounts instead of in local Maildirs.")
@click.option("--quiet", is_flag=True, help="No summary line: only what was made, or could not be "
              "(for cron, which mails what a job prints).")
def make_folders(config_path: str | None, as_json: bool, pattern: str | None, only_user: str | None,
                 dry_run: bool, imap_accounts: str | None, quiet: bool) -> None:
    """Make SpamFolder, HamFolder and JunkFolder (LearnAsSpam, LearnAsHam, junkmail) for
    each user who lacks one, subscribed, as the IMAP server makes them.

    A folder that is there is left as it is. Run as root on Maildirs, each user's folders
    are made as that user. Exit 1 if a user's could not be made.
    """
    config = load_config(config_path)
    names = [config["SpamFolder"], config["HamFolder"], config["JunkFolder"]]
    if imap_accounts:
        report = imap_make_folders(_imap_accounts(imap_accounts, only_user, pattern), names, dry_run)
    else:
        report = make_maildir_folders(_accounts(config, pattern, only_user), names, dry_run)
    if as_json:
        click.echo(json.dumps(report.as_json(dry_run)))
    else:
        for user, folder in report.made:
            click.echo(f"{user}: {'would make' if dry_run else 'made'} {folder}")
        for user, why in report.failed:
            click.echo(f"{user}: {why}", err=True)
        if not quiet:
            click.echo(f"{len(report.made)} folders {'would be made' if dry_run else 'made'}, "
                       f"{len(report.present)} there already"
                       + (f"; failed for {len(report.failed)} users" if report.failed else ""))
    if report.failed:
        sys.exit(1)
