"""The `spamkit learn` cron job on local Maildirs: learn each user's LearnAsSpam and
LearnAsHam, and only after a batch is committed remove exactly the files it learned.

A message already known (learned before, by anyone) is removed too: its tokens are in
the database. A message that fails to read stays where it is, with the reason in the
report. A crash at any moment leaves every message either learned or still in place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from spamkit.config.endpoints import split_host_port
from spamkit.errors import ConfigError, StoreError
from spamkit.learn import Learner, LearningStopped, Outcome
from spamkit.sources import SourceItem
from spamkit.store import Label
from trainer.maildir import delete, list_messages, misplaced_folder, move_to_inbox, read_message, release_quota
from trainer.maildirquota import stored_size
from trainer.users import Account


@dataclass
class UserReport:
    user: str
    spam_learned: int = 0
    ham_learned: int = 0
    known: int = 0
    failed: int = 0
    removed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    # entries of the folders that are not messages (links, FIFOs): warned of, not failures
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"user": self.user, "spam_learned": self.spam_learned,
                "ham_learned": self.ham_learned, "known": self.known, "failed": self.failed,
                "removed": self.removed,
                "failures": [{"message": m, "reason": r} for m, r in self.failures],
                "skipped": [{"message": m, "reason": r} for m, r in self.skipped]}


@dataclass
class SweepReport:
    users: list[UserReport] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    error: str | None = None  # why the sweep stopped early (a commit failed), if it did
    stopped_by: StoreError | None = None  # that error itself, for the command's exit code

    def totals(self) -> dict[str, int]:
        keys = ("spam_learned", "ham_learned", "known", "failed", "removed")
        return {key: sum(getattr(u, key) for u in self.users) for key in keys}

    def as_json(self) -> dict[str, object]:
        record: dict[str, object] = {"users": [u.as_json() for u in self.users],
                                     "totals": self.totals(), "seconds": round(self.seconds, 3),
                                     "dry_run": self.dry_run}
        if self.error is not None:
            record["error"] = self.error
        return record

    def table(self) -> str:
        header = f"{'user':<20} {'spam':>6} {'ham':>6} {'known':>6} {'failed':>6}"
        lines = [header, "-" * len(header)]
        for u in self.users:
            lines.append(f"{u.user:<20} {u.spam_learned:>6} {u.ham_learned:>6} {u.known:>6} {u.failed:>6}")
        t = self.totals()
        lines.append(f"{'total':<20} {t['spam_learned']:>6} {t['ham_learned']:>6} {t['known']:>6} "
                     f"{t['failed']:>6}")
        verb = "would learn" if self.dry_run else "took"
        lines.append(f"({verb} {self.seconds:.2f} s)" if not self.dry_run else "(dry run: nothing learned or removed)")
        if self.error is not None:
            lines.append(f"stopped early, the rest left in place: {self.error}")
        return "\n".join(lines)


def mail_report(report: SweepReport, server: str, sender: str, recipient: str,
                timeout: float = 30.0) -> None:
    """Send the report as a plain-text mail through `server` (host:port); raises OSError."""
    totals = report.totals()
    subject = (("spamkit learn (dry run): would learn " if report.dry_run else "spamkit learn: ")
               + f"{totals['spam_learned']} spam, {totals['ham_learned']} ham"
               + (f", {totals['failed']} failed" if totals["failed"] else "")
               + (", stopped early" if report.error is not None else ""))
    lines = [report.table()]
    for user in report.users:
        lines += [f"{user.user}: left {name}: {reason}" for name, reason in user.failures]
        lines += [f"{user.user}: skipped {name}: {reason}" for name, reason in user.skipped]
    send_text_mail(server, sender, recipient, subject, "\n".join(lines) + "\n", timeout)


def send_text_mail(server: str, sender: str, recipient: str, subject: str, text: str,
                   timeout: float = 30.0) -> None:
    """A plain-text report mailed through ReportSmtpServer (`server`, host[:port]); raises
    OSError or smtplib.SMTPException when it cannot be sent (the sweep's and mailstats's)."""
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = recipient
    message.set_content(text)
    with smtplib.SMTP(*smtp_server(server), timeout=timeout) as smtp:
        smtp.send_message(message)


def smtp_server(server: str) -> tuple[str, int]:
    """(host, port) of ReportSmtpServer: "host:port", "host" (port 25) or "[v6]:port";
    a port that is not a number is a ConfigError naming it."""
    try:
        return split_host_port(server, default_port=25)
    except ValueError as error:
        raise ConfigError(f"ReportSmtpServer {error}") from None


@dataclass(frozen=True)
class SweepOptions:
    spam_folder: str = "LearnAsSpam"
    ham_folder: str = "LearnAsHam"
    max_file_size: int = 10_000_000
    ham_to_inbox: bool = False
    limit: int | None = None  # messages per folder per run
    dry_run: bool = False


def sweep(accounts: list[Account], learner: Learner, options: SweepOptions) -> SweepReport:
    started = time.perf_counter()
    report = SweepReport(dry_run=options.dry_run)
    try:
        for account in accounts:
            user = UserReport(account.user)
            report.users.append(user)
            for folder_name, label in ((options.spam_folder, Label.SPAM), (options.ham_folder, Label.HAM)):
                _sweep_folder(account, folder_name, label, learner, options, user)
    except LearningStopped as stopped:  # e.g. a full disk: what is uncommitted stays in its folder
        report.error, report.stopped_by = str(stopped), stopped.cause
    report.seconds = time.perf_counter() - started
    return report


def _sweep_folder(account: Account, folder_name: str, label: Label, learner: Learner,
                  options: SweepOptions, user: UserReport) -> None:
    folder = account.folder(folder_name)
    misplaced = misplaced_folder(account.maildir, folder_name, account.layout)
    if misplaced:  # (said even by --quiet: nothing the user puts there is ever learned)
        user.failures.append(misplaced)
    # A message flagged deleted (T) was withdrawn: a mail program that moves a message
    # out by copying leaves such a copy until it expunges. It is not the user's verdict.
    listed = [m for m in list_messages(folder, user.skipped) if not m.trashed]
    if options.limit is not None:
        listed = listed[: options.limit]

    def readable() -> Iterator[SourceItem]:
        """The folder's messages read one at a time as learning takes them, so that a
        folder of large messages is never held in memory at once."""
        for message in listed:
            item = read_message(message, options.max_file_size)
            if item.data is None:
                user.failed += 1
                user.failures.append((item.name, item.error or "unreadable"))
            else:
                yield item

    if options.dry_run:
        for item in readable():
            if learner.store.learned_as(_key(item)) is label:
                user.known += 1
            elif label is Label.SPAM:
                user.spam_learned += 1
            else:
                user.ham_learned += 1
        return

    sizes = {message.path: stored_size(message.path.name, message.size) for message in listed}

    def committed(outcomes: list[tuple[SourceItem, Outcome]]) -> None:
        """Called only after the batch these outcomes belong to is committed."""
        freed_bytes = freed = 0
        for item, outcome in outcomes:
            if outcome in (Outcome.LEARNED, Outcome.RELEARNED):
                if label is Label.SPAM:
                    user.spam_learned += 1
                else:
                    user.ham_learned += 1
            elif outcome is Outcome.SKIPPED:
                user.known += 1
            else:
                continue
            if item.path is None:
                continue
            try:
                if label is Label.HAM and options.ham_to_inbox:
                    gone = move_to_inbox(item.path, account.maildir)  # (still in the Maildir's quota)
                else:
                    gone = delete(item.path)
                    if gone:
                        freed_bytes, freed = freed_bytes + sizes.get(item.path, 0), freed + 1
            except OSError as error:  # (a link planted since the listing, a read-only folder)
                user.failures.append((item.name, f"learned, but left in the folder: "
                                                 f"{error.strerror or error}"))
                continue
            user.removed += gone
        if freed:
            release_quota(account.maildir, freed_bytes, freed, user.skipped)

    learner.learn(readable(), label, on_commit=committed, by=f"trainer:{account.user}")


def _key(item: SourceItem) -> bytes:
    from spamkit.message import message_key

    assert item.data is not None
    return message_key(item.data)
