"""Folders spamkit makes are made as the IMAP server makes them, subscribed: the junkmail
folder `spamkit deliver` makes on a user's first spam, and what `spamkit make-folders`
makes for each user who lacks SpamFolder, HamFolder or JunkFolder.

Before, deliver made .junkmail without subscribing it, and Thunderbird, Horde and
Roundcube, which show subscribed folders only, never showed it: a real Dovecot listed it
in LSUB for no user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.servers.dovecot import PREFIXED_PASSWORD, PREFIXED_USER, USERS, Dovecot
from trainer import folders
from trainer.folders import STALE_LOCK_SECONDS, subscribe

SPAM = b"From: pills@spam.example\r\nTo: alice@example.org\r\nSubject: cheap\r\n\r\nbuy now\r\n"


def deliver(user: str, maildirs: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", "deliver", user, "--maildirs", maildirs,
                           "--config", str(config), "--db", str(config.parent / "no-db")],
                          input=SPAM.decode(), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, SENDER="pills@spam.example"))


def sorting_config(tmp_path: Path) -> Path:
    """SortSpam on, and the sender blacklisted: the message is spam without a database."""
    config = tmp_path / "spamkit.toml"
    config.write_text('SortSpam = true\n')
    (tmp_path / "lists").write_text("black pills@spam.example\n")
    return config


def subscribed(dovecot: Dovecot, user: str, password: str) -> list[str]:
    with IMAPClient("127.0.0.1", port=dovecot.plain_port, ssl=False) as client:
        client.login(user, password)
        return sorted(name for _, _, name in client.list_sub_folders())


def test_dovecot_lists_the_junkmail_folder_deliver_made_as_subscribed(dovecot: Dovecot, tmp_path: Path) -> None:
    dovecot.clear()
    config = sorting_config(tmp_path)
    for user in ("alice", PREFIXED_USER):
        dovecot.fill(user, "INBOX", [])
    with IMAPClient("127.0.0.1", port=dovecot.plain_port, ssl=False) as client:
        client.login("alice", USERS["alice"])
        client.create_folder("Archive")
        client.subscribe_folder("Archive")
    assert subscribed(dovecot, "alice", USERS["alice"]) == ["Archive"]  # (before: and no more)
    for user in ("alice", PREFIXED_USER):
        result = deliver(user, f"{dovecot.root}/mail/{{user}}/Maildir", config)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        folder = dovecot.maildir(user) / ".junkmail"
        assert len(os.listdir(folder / "new")) == 1
        assert (folder / "maildirfolder").is_file()
        # written as the Maildir's owner, as all else deliver writes
        assert (dovecot.maildir(user) / "subscriptions").stat().st_uid == dovecot.maildir(user).stat().st_uid
    assert subscribed(dovecot, "alice", USERS["alice"]) == ["Archive", "junkmail"]
    assert subscribed(dovecot, PREFIXED_USER, PREFIXED_PASSWORD) == ["INBOX.junkmail"]
    with IMAPClient("127.0.0.1", port=dovecot.plain_port, ssl=False) as client:
        client.login("alice", USERS["alice"])
        client.select_folder("junkmail", readonly=True)
        assert len(client.search()) == 1
        # a folder that was there is left as the user keeps it: unsubscribed stays so
        client.unsubscribe_folder("junkmail")
    assert deliver("alice", f"{dovecot.root}/mail/{{user}}/Maildir", config).returncode == 0
    assert subscribed(dovecot, "alice", USERS["alice"]) == ["Archive"]
    assert len(os.listdir(dovecot.maildir("alice") / ".junkmail" / "new")) == 2
    dovecot.clear()


def test_the_subscription_files_as_each_server_writes_them(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    maildir.mkdir()
    subscribe(maildir, "Junk/Indésirables")
    subscribe(maildir, "Junk.Indésirables")  # (the same folder: once)
    assert (maildir / "subscriptions").read_text() == "V\t2\n\nJunk\tInd&AOk-sirables\n"
    # Dovecot before 2.3 separated levels with "."; Courier writes INBOX.NAME, and its
    # file is written only when there is one
    (maildir / "subscriptions").write_text("Sent\nDrafts")
    (maildir / "courierimapsubscribed").write_text("INBOX.Sent\n")
    subscribe(maildir, "Junk/Indésirables")
    assert (maildir / "subscriptions").read_text() == "Sent\nDrafts\nJunk.Ind&AOk-sirables\n"
    assert (maildir / "courierimapsubscribed").read_text() == "INBOX.Sent\nINBOX.Junk.Ind&AOk-sirables\n"
    courier_only = tmp_path / "Courier"
    courier_only.mkdir()
    (courier_only / "courierimapsubscribed").write_text("")
    subscribe(courier_only, "junkmail")
    assert sorted(os.listdir(courier_only)) == ["courierimapsubscribed"]
    assert (courier_only / "courierimapsubscribed").read_text() == "INBOX.junkmail\n"


def test_a_held_lock_delays_no_delivery_and_a_stale_one_is_taken(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = sorting_config(tmp_path)
    maildir = tmp_path / "users" / "alice" / "Maildir"
    (maildir / "cur").mkdir(parents=True)
    lock = maildir / "subscriptions.lock"
    lock.write_text("")  # another writer's, fresh
    result = deliver("alice", f"{tmp_path}/users/{{user}}/Maildir", config)
    assert result.returncode == 0, result.stderr  # delivered: a retry would deliver it twice
    assert "could not subscribe it" in result.stderr and "subscriptions.lock is held" in result.stderr
    assert len(os.listdir(maildir / ".junkmail" / "new")) == 1
    assert not (maildir / "subscriptions").exists() and lock.exists()  # the other writer's lock is left
    stale = time.time() - STALE_LOCK_SECONDS - 10
    os.utime(lock, (stale, stale))
    monkeypatch.setattr(folders, "LOCK_WAIT_SECONDS", 0.2)
    subscribe(maildir, "junkmail")
    assert (maildir / "subscriptions").read_text() == "V\t2\n\njunkmail\n"
    assert not lock.exists()


def spamkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml"))


def test_make_folders_makes_what_each_user_lacks_as_that_user() -> None:
    """Run as root, as cron runs it: each user's folders are that user's (two users of
    two owners, so the first user's identity is given back before the second's)."""
    base = Path(tempfile.mkdtemp(prefix="spamkit-folders-"))  # (pytest's is root's alone: no user gets in)
    os.chmod(base, 0o755)
    try:
        _make_folders_as_each_user(base / "users")
    finally:
        shutil.rmtree(base)


def _make_folders_as_each_user(root: Path) -> None:
    owners = {"alice": "nobody", "bob": "daemon"}
    for user in owners:
        (root / user / "Maildir" / "cur").mkdir(parents=True)
    (root / "bob" / "Maildir" / ".junkmail" / "cur").mkdir(parents=True)  # bob's, unsubscribed: kept so
    for user, owner in owners.items():
        subprocess.run(["chown", "-R", f"{owner}:", str(root / user)], check=True)
    pattern = f"{root}/{{user}}/Maildir"
    dry = spamkit("make-folders", "--maildirs", pattern, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "made": [{"user": "alice", "folder": name} for name in ("LearnAsSpam", "LearnAsHam", "junkmail")]
        + [{"user": "bob", "folder": name} for name in ("LearnAsSpam", "LearnAsHam")],
        "present": 1, "failed": [], "dry_run": True}
    assert not (root / "alice" / "Maildir" / ".LearnAsSpam").exists()
    result = spamkit("make-folders", "--maildirs", pattern)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "5 folders made, 1 there already"
    for user, owner in owners.items():
        maildir = root / user / "Maildir"
        uid = pwd.getpwnam(owner).pw_uid
        for name in ("LearnAsSpam", "LearnAsHam"):
            for path in (maildir / f".{name}", maildir / f".{name}" / "new", maildir / f".{name}" / "maildirfolder"):
                assert path.stat().st_uid == uid, path
        assert (maildir / "subscriptions").stat().st_uid == uid
    assert (root / "alice" / "Maildir" / "subscriptions").read_text() == "V\t2\n\nLearnAsSpam\nLearnAsHam\njunkmail\n"
    assert (root / "bob" / "Maildir" / "subscriptions").read_text() == "V\t2\n\nLearnAsSpam\nLearnAsHam\n"
    again = spamkit("make-folders", "--maildirs", pattern, "--json")
    assert json.loads(again.stdout) == {"made": [], "present": 6, "failed": [], "dry_run": False}
    quiet = spamkit("make-folders", "--maildirs", pattern, "--quiet")  # (cron's line: nothing to mail)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_make_folders_over_imap(dovecot: Dovecot, tmp_path: Path) -> None:
    dovecot.clear()
    for user in ("alice", PREFIXED_USER):
        dovecot.fill(user, "INBOX", [])
    dovecot.fill("alice", "junkmail", [])  # there (unsubscribed): kept as it is
    accounts = dovecot.accounts_file(tmp_path / "accounts.toml", users=("alice", PREFIXED_USER))
    result = spamkit("make-folders", "--imap-accounts", str(accounts), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(m["user"].split("@")[0], m["folder"]) for m in report["made"]] == [
        ("alice", "LearnAsSpam"), ("alice", "LearnAsHam"),
        (PREFIXED_USER, "INBOX.LearnAsSpam"), (PREFIXED_USER, "INBOX.LearnAsHam"), (PREFIXED_USER, "INBOX.junkmail")]
    assert report["present"] == 1 and report["failed"] == []
    assert subscribed(dovecot, "alice", USERS["alice"]) == ["LearnAsHam", "LearnAsSpam"]
    assert subscribed(dovecot, PREFIXED_USER, PREFIXED_PASSWORD) == [
        "INBOX.LearnAsHam", "INBOX.LearnAsSpam", "INBOX.junkmail"]
    again = json.loads(spamkit("make-folders", "--imap-accounts", str(accounts), "--json").stdout)
    assert again["made"] == [] and again["present"] == 6
    dovecot.clear()
