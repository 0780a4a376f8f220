"""`python -m benchmarks.sweep`: the cron job's speed, 100 users with 50 messages each.

Each user's LearnAsSpam gets 25 corpus spam and LearnAsHam 25 ham (training folds, so
users share no message). Timed in the same run, one process each:
- spamkit's Maildir sweep (`spamkit learn --maildirs`), which learns and removes;
- `sa-learn --spam` then `--ham` over the same folders (a copy: sa-learn removes nothing),
  which is what SME's cron job runs today;
- spamkit's sweep over IMAP, against a real Dovecot on loopback serving the same folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks import installed
from benchmarks.tools import run_measured
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of

USERS = 100
PER_FOLDER = 25


def build(root: Path, spam: list[bytes], ham: list[bytes], users: list[str]) -> int:
    """Maildir++ folders for each user; returns the number of messages placed."""
    placed = 0
    for index, user in enumerate(users):
        for folder, source in (("LearnAsSpam", spam), ("LearnAsHam", ham)):
            base = root / user / "Maildir" / f".{folder}"
            for sub in ("cur", "new", "tmp"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            (root / user / "Maildir" / "cur").mkdir(exist_ok=True)
            for number in range(PER_FOLDER):
                data = source[(index * PER_FOLDER + number) % len(source)]
                (base / "new" / f"1700000000.M{index}P{number}.bench").write_bytes(data)
                placed += 1
    return placed


def sweep_report() -> str:
    messages = [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) != TEST_FOLD]
    spam = [m.data for m in messages if m.label == "spam"]
    ham = [m.data for m in messages if m.label == "ham"]
    users = [f"user{n:03d}" for n in range(USERS)]
    work = Path(tempfile.mkdtemp(prefix="spamkit-sweep-"))
    env = dict(os.environ, SPAMKIT_CONFIG=str(work / "none.toml"))
    rows = []

    local = work / "local"
    total = build(local, spam, ham, users)
    ours = run_measured([*installed.spamkit(), "learn", "--maildirs", f"{local}/{{user}}/Maildir",
                         "--db", str(work / "db-local"), "--quiet"], env=env)
    left = sum(1 for _ in local.rglob("*.bench"))
    rows.append(("spamkit learn, local Maildirs", total, ours.seconds, f"{left} left in the folders"))

    if shutil.which("sa-learn"):
        copy = work / "sa"
        build(copy, spam, ham, users)
        home = work / "sa-home"
        home.mkdir()
        sa_env = dict(os.environ, HOME=str(home))
        folders = {label: [str(copy / u / "Maildir" / f".{folder}") for u in users]
                   for label, folder in (("spam", "LearnAsSpam"), ("ham", "LearnAsHam"))}
        seconds = 0.0
        for label in ("spam", "ham"):
            run = run_measured(["sa-learn", f"--{label}", "--dbpath", str(home / "bayes"), *folders[label]],
                               env=sa_env)
            seconds += run.seconds
        rows.append(("sa-learn --spam / --ham, the same folders", total, seconds, "removes nothing"))

    imap_row = _imap(work, spam, ham, users, env)
    if imap_row:
        rows.append(imap_row)
    shutil.rmtree(work, ignore_errors=True)
    lines = [f"| sweep ({USERS} users x {2 * PER_FOLDER} messages) | messages | seconds | msg/s | note |",
             "|---|---:|---:|---:|---|"]
    for name, count, seconds, note in rows:
        lines.append(f"| {name} | {count} | {seconds:.1f} | {count / seconds:,.0f} | {note} |")
    return "\n".join(lines)


def _imap(work: Path, spam: list[bytes], ham: list[bytes], users: list[str],
          env: dict[str, str]) -> tuple[str, int, float, str] | None:
    if shutil.which("dovecot") is None:
        return None
    from tests.servers import dovecot as server

    names = dict(server.USERS)
    server.USERS.clear()
    server.USERS.update({u: "pw-" + u for u in users})
    try:
        generator = server.start_dovecot()
        instance = next(generator)
        try:
            total = build(instance.root / "mail", spam, ham, users)
            subprocess.run(["chown", "-R", "dovecot:dovecot", str(instance.root / "mail")], check=True)
            accounts = instance.accounts_file(work / "accounts.toml", users=tuple(users))
            run = run_measured([*installed.spamkit(), "learn", "--imap-accounts", str(accounts),
                                "--db", str(work / "db-imap"), "--quiet"], env=env)
            left = sum(instance.count(u, f) for u in users for f in ("LearnAsSpam", "LearnAsHam"))
            return ("spamkit learn --imap-accounts, Dovecot on loopback", total, run.seconds,
                    f"{left} left in the folders")
        finally:
            generator.close()
    finally:
        server.USERS.clear()
        server.USERS.update(names)


if __name__ == "__main__":
    print(sweep_report())
