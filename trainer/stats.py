"""`spamkit stats`: what waits in each user's training folders and junkmail, and how often
each user had to correct the filter over the last 30 days (from the audit log).

Read-only: it never creates or changes a database.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from spamkit.errors import NoDatabase
from spamkit.store import open_store
from trainer.maildir import list_messages, misplaced_folder
from trainer.users import Account

CORRECTION_DAYS = 30


@dataclass
class UserStats:
    user: str
    learn_as_spam: int = 0
    learn_as_ham: int = 0
    junk_read: int = 0
    junk_unread: int = 0
    missed_spam: int = 0  # spam the user taught in the last 30 days
    false_positives: int = 0  # ham the user taught in the last 30 days
    # what was not counted, and why (a folder reached through its user's symbolic link, a
    # FIFO...): the sweep will not read it either, and says so too
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"user": self.user, "LearnAsSpam": self.learn_as_spam, "LearnAsHam": self.learn_as_ham,
                "JunkMail": self.junk_read, "NotSeen": self.junk_unread,
                "missed_spam_30d": self.missed_spam, "false_positives_30d": self.false_positives,
                "skipped": [{"message": path, "reason": why} for path, why in self.skipped]}


def folder_stats(accounts: list[Account], spam_folder: str, ham_folder: str,
                 junk_folder: str) -> list[UserStats]:
    out = []
    for account in accounts:
        stats = UserStats(account.user)
        for name in (spam_folder, ham_folder, junk_folder):
            misplaced = misplaced_folder(account.maildir, name, account.layout, "nothing under it is counted")
            if misplaced:
                stats.skipped.append(misplaced)
        # a message flagged deleted (T) is on its way out, and the sweep leaves it: not counted
        stats.learn_as_spam = sum(not m.trashed for m in list_messages(account.folder(spam_folder),
                                                                       stats.skipped))
        stats.learn_as_ham = sum(not m.trashed for m in list_messages(account.folder(ham_folder),
                                                                      stats.skipped))
        for message in list_messages(account.folder(junk_folder), stats.skipped):
            if message.trashed:
                continue
            if message.seen:
                stats.junk_read += 1
            else:
                stats.junk_unread += 1
        out.append(stats)
    return out


def add_corrections(stats: list[UserStats], db_path: str | None,
                    now: float | None = None) -> dict[str, object] | None:
    """Fill in each user's corrections from the audit log; returns `db magic`, or None
    when there is no database (which is then not created). A database that is there but
    cannot be read raises its StoreError."""
    try:
        store = open_store(db_path, readonly=True)
    except NoDatabase:
        return None
    since = (now if now is not None else time.time()) - CORRECTION_DAYS * 86400
    by_user = {s.user: s for s in stats}
    with store:
        magic = store.magic()
        for _, record in store.history_records():
            event = json.loads(record)
            who = str(event.get("by", ""))
            if not who.startswith("trainer:") or float(event.get("time", 0)) < since:
                continue
            user = by_user.get(who.split(":", 1)[1])
            if user is None or event.get("outcome") not in ("learned", "relearned"):
                continue
            if event.get("action") == "spam":
                user.missed_spam += 1
            elif event.get("action") == "ham":
                user.false_positives += 1
    return magic
