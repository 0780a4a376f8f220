"""Maildirs whose folders Dovecot keeps in its LAYOUT=fs (`MaildirLayout = "fs"`).

With `mail_location = maildir:~/Maildir:LAYOUT=fs`, Dovecot keeps LearnAsSpam in
Maildir/LearnAsSpam/ and Junk/LearnAsSpam in Maildir/Junk/LearnAsSpam/, not in
Maildir++'s .LearnAsSpam and .Junk.LearnAsSpam. Before, the sweep found no folder there
and learned nothing, saying nothing; `make-folders` and `deliver` made dot-folders the
IMAP server does not show. The fixture's FS_USER has that layout (its own userdb mail
location, "/" between levels), so IMAP here is the real server's view of what spamkit did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from imapclient import IMAPClient

from corpora import CorpusMessage
from spamkit.config import load_config
from spamkit.errors import ConfigError
from tests.servers.dovecot import FS_PASSWORD, FS_USER, Dovecot
from tests.trainer.commands import SPAMMER, spamkit_with



def imap(server: Dovecot) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.plain_port, ssl=False)
    client.login(FS_USER, FS_PASSWORD)
    return client


def message_count(server: Dovecot, folder: str) -> int:
    with imap(server) as client:
        return int(client.select_folder(folder, readonly=True)[b"EXISTS"])


def fill_over_imap(server: Dovecot, folders: dict[str, list[bytes]]) -> None:
    """Make each folder and put its messages in as a mail program does, over IMAP."""
    with imap(server) as client:
        for folder, messages in folders.items():
            client.create_folder(folder)
            client.subscribe_folder(folder)
            for data in messages:
                client.append(folder, data)


def maildirs(server: Dovecot) -> str:
    return f"{server.root}/mail/{{user}}/Maildir"


def test_the_sweep_learns_fs_layout_folders_beside_maildir_plus_ones(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """One configuration for users of both layouts: erin's own [user] table says fs."""
    spam = [m.data for m in split[0] if m.label == "spam"][:9]
    ham = [m.data for m in split[0] if m.label == "ham"][:6]
    fill_over_imap(server, {"Junk/LearnAsSpam": spam[:6], "LearnAsHam": ham})
    server.fill("alice", "Junk.LearnAsSpam", spam[6:])  # Maildir++: .Junk.LearnAsSpam
    erin = server.maildir(FS_USER)
    assert len(os.listdir(erin / "Junk" / "LearnAsSpam" / "new")) == 6  # (Dovecot's fs layout)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'SpamFolder = "Junk/LearnAsSpam"\n\n[user.{FS_USER}]\nMaildirLayout = "fs"\n')

    done = spamkit_with("learn", "--maildirs", maildirs(server), "--db", str(tmp_path / "db"), "--json",
                   config=config)
    assert done.returncode == 0, done.stderr
    users = {u["user"]: u for u in json.loads(done.stdout)["users"]}
    assert (users[FS_USER]["spam_learned"], users[FS_USER]["ham_learned"], users[FS_USER]["failed"],
            users[FS_USER]["removed"]) == (6, 6, 0, 12)
    assert (users["alice"]["spam_learned"], users["alice"]["removed"]) == (3, 3)
    assert message_count(server, "Junk/LearnAsSpam") == message_count(server, "LearnAsHam") == 0
    assert not (erin / ".Junk.LearnAsSpam").exists() and not (erin / ".LearnAsHam").exists()
    magic = spamkit_with("db", "magic", "--db", str(tmp_path / "db"), "--json", config=config)
    assert (json.loads(magic.stdout)["nspam"], json.loads(magic.stdout)["nham"]) == (9, 6)


def test_a_layout_that_does_not_match_the_maildir_is_said_and_nothing_is_touched(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """With the default (Maildir++) on erin's fs Maildir: the sweep, even --quiet, names the
    folder it would have missed and learns and removes nothing; make-folders makes no
    dot-folders the server would not show; stats counts nothing, and says why."""
    spam = [m.data for m in split[0] if m.label == "spam"][:4]
    fill_over_imap(server, {"LearnAsSpam": spam})
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    erin = server.maildir(FS_USER)
    hint = (f"left {erin / 'LearnAsSpam'}: a folder as Dovecot's LAYOUT=fs lays them out, but "
            "MaildirLayout is maildir++: nothing under it is read or removed (set MaildirLayout "
            "to fs if the IMAP server keeps folders so)")

    done = spamkit_with("learn", "--maildirs", maildirs(server), "--user", FS_USER, "--db", str(tmp_path / "db"),
                   "--quiet", config=config)
    assert done.returncode == 0, done.stderr
    assert f"spamkit: {FS_USER}: {hint}" in done.stderr.splitlines()
    assert message_count(server, "LearnAsSpam") == 4

    made = spamkit_with("make-folders", "--maildirs", maildirs(server), "--user", FS_USER, "--json", config=config)
    assert made.returncode == 1
    report = json.loads(made.stdout)
    assert report["made"] == [] and len(report["failed"]) == 1
    assert report["failed"][0]["reason"].startswith(f"{erin / 'LearnAsSpam'}: a folder as Dovecot's LAYOUT=fs")
    assert report["failed"][0]["reason"].endswith("no folder made for this user (set MaildirLayout to fs "
                                                  "if the IMAP server keeps folders so)")
    assert sorted(name for name in os.listdir(erin) if name.startswith(".")) == []

    stats = spamkit_with("stats", "--maildirs", maildirs(server), "--user", FS_USER, "--db", str(tmp_path / "db"),
                    "--json", config=config)
    row = json.loads(stats.stdout)["users"][0]
    assert row["LearnAsSpam"] == 0
    assert row["skipped"] == [{"message": str(erin / "LearnAsSpam"), "reason":
                               "a folder as Dovecot's LAYOUT=fs lays them out, but MaildirLayout is "
                               "maildir++: nothing under it is counted (set MaildirLayout to fs if the "
                               "IMAP server keeps folders so)"}]


def test_folders_made_and_junk_delivered_under_fs_layout_are_what_dovecot_shows(
        server: Dovecot, tmp_path: Path) -> None:
    server.fill(FS_USER, "INBOX", [])
    erin = server.maildir(FS_USER)
    config = tmp_path / "spamkit.toml"
    config.write_text('MaildirLayout = "fs"\nSpamFolder = "Junk/LearnAsSpam"\nSortSpam = true\n')
    (tmp_path / "lists").write_text(f"black {SPAMMER}\n")  # spam without a database

    made = spamkit_with("make-folders", "--maildirs", maildirs(server), "--user", FS_USER, "--json", config=config)
    assert made.returncode == 0, made.stderr
    assert [entry["folder"] for entry in json.loads(made.stdout)["made"]] == \
        ["Junk/LearnAsSpam", "LearnAsHam", "junkmail"]
    for level in ("Junk", "Junk/LearnAsSpam", "LearnAsHam", "junkmail"):
        assert (erin / level).stat().st_uid == erin.stat().st_uid  # made as the Maildir's owner
    assert not (erin / "Junk" / "LearnAsSpam" / "maildirfolder").exists()  # (Maildir++'s alone)
    with imap(server) as client:
        assert sorted(name for _, _, name in client.list_sub_folders()) == \
            ["Junk/LearnAsSpam", "LearnAsHam", "junkmail"]
        client.append("Junk/LearnAsSpam", b"Subject: selectable\r\n\r\nyes\r\n")
    assert message_count(server, "Junk/LearnAsSpam") == 1

    spam = f"From: {SPAMMER}\r\nTo: {FS_USER}@example.org\r\nSubject: cheap\r\n\r\nbuy now\r\n"
    delivered = spamkit_with("deliver", FS_USER, "--maildirs", maildirs(server), "--db", str(tmp_path / "no-db"),
                        config=config, input=spam)
    assert delivered.returncode == 0, delivered.stderr
    assert message_count(server, "junkmail") == 1 and message_count(server, "INBOX") == 0
    assert not (erin / ".junkmail").exists()

    [name] = os.listdir(erin / "junkmail" / "new")
    os.rename(erin / "junkmail" / "new" / name, erin / "junkmail" / "new" / ("1000000000." + name.split(".", 1)[1]))
    expired = spamkit_with("expire-junk", "--maildirs", maildirs(server), "--user", FS_USER, "--json", config=config)
    assert expired.returncode == 0, expired.stderr
    assert json.loads(expired.stdout)["totals"]["deleted"] == 1
    assert message_count(server, "junkmail") == 0


def test_a_folder_named_as_a_maildir_s_own_directory_is_refused_under_fs(tmp_path: Path) -> None:
    """Under LAYOUT=fs a folder's mail is in its cur, new and tmp: a JunkFolder "Junk/new"
    would have deliver put spam among the Junk folder's new mail (Dovecot refuses the name)."""
    config = tmp_path / "spamkit.toml"
    config.write_text('MaildirLayout = "fs"\nJunkFolder = "Junk/new"\n')
    with pytest.raises(ConfigError, match=r"spamkit.toml:2: JunkFolder 'Junk/new' cannot be a folder under "
                                          r"MaildirLayout fs \(from .*spamkit.toml:1\): 'new' is where"):
        load_config(config)
    config.write_text('SpamFolder = "cur"\n\n[user.erin]\nMaildirLayout = "fs"\n')
    with pytest.raises(ConfigError, match=r"spamkit.toml:1: SpamFolder 'cur' cannot be a folder under "
                                          r"MaildirLayout fs \(from .*spamkit.toml:4\)"):
        load_config(config)
    config.write_text('JunkFolder = "Junk.new"\n')  # (Maildir++: .Junk.new is a folder like any)
    assert load_config(config)["JunkFolder"] == "Junk.new"
