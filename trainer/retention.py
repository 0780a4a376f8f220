"""Junkmail retention: delete junkmail delivered more than N days ago (SME's MessageRetentionTime)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from trainer.maildir import delete, list_messages, misplaced_folder, release_quota
from trainer.maildirquota import stored_size
from trainer.users import Account


@dataclass
class RetentionReport:
    users: dict[str, int] = field(default_factory=dict)  # user -> messages deleted (or due)
    dry_run: bool = False
    # (user, why): an account that could not be reached, what could not be deleted, and
    # what is not a message (a link, a FIFO), left alone
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"users": [{"user": u, "deleted": n} for u, n in self.users.items()],
                "totals": {"deleted": sum(self.users.values())}, "dry_run": self.dry_run,
                "failures": [{"user": u, "reason": why} for u, why in self.failures]}


def expire_junk(accounts: list[Account], folder: str, days: int, dry_run: bool = False,
                now: float | None = None) -> RetentionReport:
    cutoff = (now if now is not None else time.time()) - days * 86400
    report = RetentionReport(dry_run=dry_run)
    for account in accounts:
        count = freed_bytes = 0
        skipped: list[tuple[str, str]] = []
        misplaced = misplaced_folder(account.maildir, folder, account.layout, "none of its old mail is deleted")
        if misplaced:
            skipped.append(misplaced)
        for message in list_messages(account.folder(folder), skipped):
            if message.delivered < cutoff:
                try:
                    if dry_run or delete(message.path):
                        count += 1
                        freed_bytes += stored_size(message.path.name, message.size)
                except OSError as error:  # (a link planted since the listing)
                    report.failures.append((account.user, f"{message.path}: {error.strerror or error}"))
        if count and not dry_run:
            release_quota(account.maildir, freed_bytes, count, skipped)
        report.failures += [(account.user, f"{path}: {why}") for path, why in skipped]
        report.users[account.user] = count
    return report
