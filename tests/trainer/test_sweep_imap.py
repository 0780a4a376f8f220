"""The sweep over IMAP against a real Dovecot: learn, commit, then UID EXPUNGE."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.message import message_key
from spamkit.store import LmdbStore
from trainer.retention import RetentionReport
from trainer.sweep import SweepReport
from tests.servers.dovecot import (BARE_HOST, MASTER_PASSWORD, MASTER_USER, MOVE_ONLY_HOST, PREFIXED_USER,
                                  UIDPLUS_ONLY_HOST, USERS, Dovecot, logins)


def spamkit(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    result = subprocess.run([sys.executable, "-m", "spamkit", *args], capture_output=True,
                            text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def fill(server: Dovecot, train: list[CorpusMessage], per_folder: int) -> set[bytes]:
    spam = [m.data for m in train if m.label == "spam"]
    ham = [m.data for m in train if m.label == "ham"]
    keys = set()
    for index, user in enumerate(USERS):
        part = slice(index * per_folder, (index + 1) * per_folder)
        server.fill(user, "LearnAsSpam", spam[part])
        server.fill(user, "LearnAsHam", ham[part])
        server.fill(user, "junkmail", spam[:2])
        keys |= {message_key(d) for d in spam[part] + ham[part]}
    return keys


def test_imap_sweep_empties_the_folders_and_learns_each_message(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    keys = fill(server, split[0], per_folder=12)
    accounts = server.accounts_file(tmp_path / "accounts.toml")
    db = str(tmp_path / "db")
    before = json.loads(spamkit("stats", "--imap-accounts", str(accounts), "--db", db, "--json").stdout)
    assert [(u["user"], u["LearnAsSpam"], u["LearnAsHam"], u["NotSeen"]) for u in before["users"]] == \
        [(u, 12, 12, 2) for u in USERS]
    out = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--json").stdout)
    assert out["totals"]["failed"] == 0
    assert out["totals"]["removed"] == 72
    for user in USERS:
        assert server.count(user, "LearnAsSpam") == server.count(user, "LearnAsHam") == 0
        assert server.count(user, "junkmail") == 2  # never touched
    with LmdbStore(Path(db)) as store:
        assert {m.key for m in store.seen_records()} == keys
        totals = store.totals()
    assert totals.nspam + totals.nham == len(keys)
    after = json.loads(spamkit("stats", "--imap-accounts", str(accounts), "--db", db, "--json").stdout)
    assert after["totals"]["LearnAsSpam"] == 0 and after["db"]["nspam"] == totals.nspam
    assert out["totals"]["spam_learned"] == after["totals"]["missed_spam_30d"]


def test_peek_leaves_messages_unread_in_a_dry_run(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    fill(server, split[0], per_folder=3)
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))
    out = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db",
                             str(tmp_path / "db"), "--json", "--dry-run").stdout)
    assert out["totals"]["spam_learned"] == 3 and not (tmp_path / "db").exists()
    stats = json.loads(spamkit("stats", "--imap-accounts", str(accounts), "--json").stdout)
    assert stats["users"][0]["LearnAsSpam"] == 3
    seen_flags = [name for name in os.listdir(server.maildir("alice") / ".LearnAsSpam" / "cur")
                  if ":2," in name and "S" in name.split(":2,")[1]]
    assert seen_flags == []  # BODY.PEEK[] sets no \Seen


def test_tls_with_certificate_checks(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    fill(server, split[0], per_folder=2)
    trusted = server.accounts_file(tmp_path / "tls.toml", "tls", ("bob",), ca_file=str(server.ca_file))
    out = json.loads(spamkit("learn", "--imap-accounts", str(trusted), "--db", str(tmp_path / "db"),
                             "--json").stdout)
    assert out["totals"]["removed"] == 4
    untrusted = server.accounts_file(tmp_path / "untrusted.toml", "tls", ("carol",))
    refused = spamkit("learn", "--imap-accounts", str(untrusted), "--db", str(tmp_path / "db"),
                      "--json", check=False)
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in json.loads(refused.stdout)["users"][0]["failures"][0]["reason"]
    assert server.count("carol", "LearnAsSpam") == 2  # nothing learned, nothing removed


def test_credentials_file_must_be_private(server: Dovecot, tmp_path: Path) -> None:
    accounts = server.accounts_file(tmp_path / "accounts.toml")
    os.chmod(accounts, 0o644)
    result = spamkit("learn", "--imap-accounts", str(accounts), "--db", str(tmp_path / "db"), check=False)
    assert result.returncode == 2 and "chmod 600" in result.stderr


def test_wrong_password_is_reported_and_nothing_moves(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    fill(server, split[0], per_folder=2)
    path = tmp_path / "bad.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'[[account]]\nuser = "alice"\npassword = "nope"\nhost = "127.0.0.1"\n'
                 b'port = %d\nsecurity = "none"\n' % server.plain_port)
    os.close(fd)
    result = spamkit("learn", "--imap-accounts", str(path), "--db", str(tmp_path / "db"), "--json",
                     check=False)
    assert result.returncode == 1
    assert "cannot log in" in json.loads(result.stdout)["users"][0]["failures"][0]["reason"]
    assert server.count("alice", "LearnAsSpam") == 2


def test_a_master_user_sweeps_every_mailbox_with_one_password(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """An administrator sweeping every mailbox of a server over IMAP needs no user's
    password: a [defaults] table gives the server and the master user, and each account
    is a line. Each mailbox is opened by SASL PLAIN as its user (authorization identity)
    and reported under that user's name; an account the master may not open is refused
    alone, and a wrong master password refuses them all without moving anything."""
    fill(server, split[0], per_folder=3)

    def accounts(password: str) -> str:
        text = (f'[defaults]\nhost = "127.0.0.1"\nport = {server.plain_port}\nsecurity = "none"\n'
                f'master_user = "{MASTER_USER}"\npassword = "{password}"\n')
        text += "".join(f'\n[[account]]\nuser = "{user}"\n' for user in ("alice", "bob", "nobody"))
        path = tmp_path / f"{password}.toml"
        path.write_text(text)
        path.chmod(0o600)
        return str(path)

    wrong = json.loads(spamkit("learn", "--imap-accounts", accounts("nope"), "--db", str(tmp_path / "db"),
                               "--json", check=False).stdout)
    assert [("cannot log in" in u["failures"][0]["reason"]) for u in wrong["users"]] == [True] * 3
    assert server.count("alice", "LearnAsSpam") == server.count("bob", "LearnAsSpam") == 3

    result = spamkit("learn", "--imap-accounts", accounts(MASTER_PASSWORD), "--db", str(tmp_path / "db"),
                     "--json", check=False)
    assert result.returncode == 1  # nobody's mailbox
    users = {u["user"]: u for u in json.loads(result.stdout)["users"]}
    for user in ("alice", "bob"):
        assert (users[user]["spam_learned"], users[user]["ham_learned"], users[user]["removed"]) == (3, 3, 6)
        assert server.count(user, "LearnAsSpam") == server.count(user, "LearnAsHam") == 0
    assert "AUTHORIZATIONFAILED" in users["nobody"]["failures"][0]["reason"]
    assert server.count("carol", "LearnAsSpam") == 3  # not listed: not opened


@pytest.mark.slow
def test_kill_9_mid_imap_sweep_loses_nothing(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    rng = random.Random(11)
    for attempt in range(3):
        server.clear()
        keys = fill(server, split[0], per_folder=150)
        accounts = server.accounts_file(tmp_path / f"a{attempt}.toml")
        db = tmp_path / f"db{attempt}"
        command = [sys.executable, "-m", "spamkit", "learn", "--imap-accounts", str(accounts),
                   "--db", str(db), "--batch-size", "25", "--quiet"]
        env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 2.0))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        remaining = set()
        for user in USERS:
            for folder in ("LearnAsSpam", "LearnAsHam"):
                base = server.maildir(user) / f".{folder}"
                for sub in ("new", "cur"):
                    for name in os.listdir(base / sub):
                        # Dovecot may still be carrying out an expunge the killed client
                        # sent: a file can go between listing and reading. If it was not
                        # committed, the assertion below finds it missing from both sets.
                        try:
                            remaining.add(message_key((base / sub / name).read_bytes()))
                        except FileNotFoundError:
                            continue
        learned = set()
        if (db / "data.mdb").exists():
            with LmdbStore(db) as store:
                learned = {m.key for m in store.seen_records()}
        assert keys <= remaining | learned, f"attempt {attempt}: a message was lost"
        subprocess.run(command, env=env, check=True, timeout=300)
        with LmdbStore(db) as store:
            assert {m.key for m in store.seen_records()} == keys
            totals = store.totals()
        assert totals.nspam + totals.nham == len(keys)
        assert all(server.count(u, f) == 0 for u in USERS for f in ("LearnAsSpam", "LearnAsHam"))


def mark_deleted_by_another_client(server: Dovecot, user: str, folder: str,
                                   host: str) -> tuple[int, bytes]:
    """Flag the folder's highest UID \\Deleted from a session of its own, as a mail
    program does before it expunges; returns that UID and its message."""
    from imapclient import IMAPClient

    with IMAPClient(host, server.plain_port, ssl=False) as client:
        client.login(user, logins()[user])
        client.select_folder(folder)
        uid = max(client.search("ALL"))
        data = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        client.add_flags([uid], [b"\\Deleted"])
        client.logout()
    return uid, data


def uids_on_server(server: Dovecot, user: str, folder: str) -> list[int]:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", server.plain_port, ssl=False) as client:
        client.login(user, logins()[user])
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search("ALL"))
        client.logout()
    return uids


@pytest.mark.parametrize("host, removal", [("127.0.0.1", "UID EXPUNGE"), (MOVE_ONLY_HOST, "MOVE"),
                                           (BARE_HOST, "learn-only")])
def test_only_learned_uids_are_removed_whatever_the_server_offers(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        host: str, removal: str) -> None:
    """Checklist item 37. A message another client flagged \\Deleted (and has not yet
    expunged) was withdrawn from the folder: a mail program that moves without MOVE
    leaves such a copy behind. It is neither learned nor removed; a plain EXPUNGE would
    remove it, so spamkit sends UID EXPUNGE (UIDPLUS), else MOVEs its own messages to
    Trash, else removes nothing and says so."""
    spam = [m.data for m in split[0] if m.label == "spam"][:4]
    server.fill("alice", "LearnAsSpam", spam)
    flagged, withdrawn = mark_deleted_by_another_client(server, "alice", "LearnAsSpam", host)
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",), host=host)
    db = str(tmp_path / "db")
    user = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db,
                              "--json").stdout)["users"][0]
    assert user["spam_learned"] == 3 and user["failed"] == 0
    left = uids_on_server(server, "alice", "LearnAsSpam")
    if removal == "learn-only":
        assert user["removed"] == 0 and len(left) == 4
        assert [s["message"] for s in user["skipped"]] == ["alice/LearnAsSpam"]
        assert "3 learned messages left in the folder" in user["skipped"][0]["reason"]
        assert "neither UIDPLUS nor MOVE" in user["skipped"][0]["reason"]
    else:
        assert user["removed"] == 3 and user["skipped"] == []
        assert left == [flagged]  # the other client's message is still there
    assert len(uids_on_server(server, "alice", "Trash")) == (3 if removal == "MOVE" else 0)
    with LmdbStore(Path(db)) as store:
        assert store.totals().nspam == 3
        assert message_key(withdrawn) not in {m.key for m in store.seen_records()}
    # what waits to be learned, as `stats` counts it, leaves the withdrawn message out too
    waiting = json.loads(spamkit("stats", "--imap-accounts", str(accounts), "--json").stdout)
    assert waiting["users"][0]["LearnAsSpam"] == (3 if removal == "learn-only" else 0)

    again = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db,
                               "--json").stdout)["users"][0]
    assert again["spam_learned"] == 0 and again["known"] == (3 if removal == "learn-only" else 0)
    assert uids_on_server(server, "alice", "LearnAsSpam") == left
    with LmdbStore(Path(db)) as store:
        assert store.totals().nspam == 3


def bodies_on_server(server: Dovecot, user: str, folder: str) -> list[bytes]:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", server.plain_port, ssl=False) as client:
        client.login(user, logins()[user])
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search("ALL"))
        found = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        client.logout()
    return sorted(bytes(found[uid][b"BODY[]"]) for uid in uids)


@pytest.mark.parametrize("host, way", [("127.0.0.1", "MOVE"), (MOVE_ONLY_HOST, "MOVE"),
                                       (UIDPLUS_ONLY_HOST, "COPY, then UID EXPUNGE"),
                                       (BARE_HOST, "learn-only")])
def test_learned_ham_goes_back_to_the_inbox_when_asked(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        host: str, way: str) -> None:
    """LearnHamToInbox (or --ham-to-inbox) over IMAP: the IMAP sweep expunged learned ham
    whatever it said, so a user's rescued mail was gone, where the Maildir sweep put it
    back. Spam is removed as before."""
    ham = [m.data for m in split[0] if m.label == "ham"][:4]
    spam = [m.data for m in split[0] if m.label == "spam"][:2]
    server.fill("alice", "LearnAsHam", ham[:3])
    server.fill("alice", "LearnAsSpam", spam)
    server.fill("alice", "INBOX", ham[3:])  # (a message of the user's own, left as it is)
    inbox_before = bodies_on_server(server, "alice", "INBOX")
    ham_before = bodies_on_server(server, "alice", "LearnAsHam")  # (as the server gives them: CRLF)
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",), host=host)
    db = str(tmp_path / "db")
    user = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--ham-to-inbox",
                              "--json").stdout)["users"][0]
    assert (user["ham_learned"], user["spam_learned"], user["failed"]) == (3, 2, 0)
    if way == "learn-only":
        assert user["removed"] == 0 and server.count("alice", "LearnAsHam") == 3
        assert bodies_on_server(server, "alice", "INBOX") == inbox_before
        return
    assert user["removed"] == 5
    assert server.count("alice", "LearnAsHam") == server.count("alice", "LearnAsSpam") == 0
    assert bodies_on_server(server, "alice", "INBOX") == sorted(inbox_before + ham_before)
    assert server.count("alice", "Trash") == (2 if host == MOVE_ONLY_HOST else 0)  # (the spam)
    again = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--ham-to-inbox",
                               "--json").stdout)["users"][0]
    assert (again["ham_learned"], again["known"], again["removed"]) == (0, 0, 0)
    assert len(bodies_on_server(server, "alice", "INBOX")) == 4  # each put back once


@pytest.mark.parametrize("host", ["127.0.0.1", MOVE_ONLY_HOST])
def test_folders_under_the_personal_namespace_prefix_are_found(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        host: str) -> None:
    """On Courier, Cyrus and Dovecots set up like them, every folder sits under the
    personal namespace's prefix: LearnAsSpam is INBOX.LearnAsSpam, Trash INBOX.Trash. The
    sweep and `stats` find them there (NAMESPACE), as a mail program does."""
    spam = [m.data for m in split[0] if m.label == "spam"][:3]
    ham = [m.data for m in split[0] if m.label == "ham"][:2]
    server.fill(PREFIXED_USER, "LearnAsSpam", spam)
    server.fill(PREFIXED_USER, "LearnAsHam", ham)
    assert uids_on_server(server, PREFIXED_USER, "LearnAsSpam") == []  # not outside the prefix
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=(PREFIXED_USER,), host=host)
    db = str(tmp_path / "db")
    waiting = json.loads(spamkit("stats", "--imap-accounts", str(accounts), "--json").stdout)
    assert (waiting["users"][0]["LearnAsSpam"], waiting["users"][0]["LearnAsHam"]) == (3, 2)
    user = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db,
                              "--json").stdout)["users"][0]
    assert (user["spam_learned"], user["ham_learned"], user["removed"]) == (3, 2, 5)
    assert user["failed"] == 0 and user["skipped"] == []
    assert server.count(PREFIXED_USER, "LearnAsSpam") == server.count(PREFIXED_USER, "LearnAsHam") == 0
    # MOVE puts them in the user's own Trash, INBOX.Trash, not a folder the server refuses
    assert len(uids_on_server(server, PREFIXED_USER, "INBOX.Trash")) == (5 if host == MOVE_ONLY_HOST else 0)


def test_nested_folders_are_found_as_the_server_and_maildir_spell_them(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders set as Junk/LearnAsSpam (the levels as a mail program shows them) are
    Junk.LearnAsSpam on a server whose delimiter is '.', INBOX.Junk.LearnAsSpam under a
    prefix, and .Junk.LearnAsSpam in a Maildir++ on disk: each sweep finds its own."""
    monkeypatch.setenv("SPAMKIT_SPAMFOLDER", "Junk/LearnAsSpam")
    monkeypatch.setenv("SPAMKIT_HAMFOLDER", "Junk/LearnAsHam")
    spam = [m.data for m in split[0] if m.label == "spam"][:4]
    ham = [m.data for m in split[0] if m.label == "ham"][:4]
    for user, (spam_part, ham_part) in (("alice", (spam[:2], ham[:2])), (PREFIXED_USER, (spam[2:3], ham[2:3]))):
        server.fill(user, "Junk.LearnAsSpam", spam_part)
        server.fill(user, "Junk.LearnAsHam", ham_part)
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice", PREFIXED_USER))
    db = str(tmp_path / "db")
    waiting = json.loads(spamkit("stats", "--imap-accounts", str(accounts), "--json").stdout)["users"]
    assert [(u["LearnAsSpam"], u["LearnAsHam"]) for u in waiting] == [(2, 2), (1, 1)]
    users = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--json").stdout)["users"]
    assert [(u["spam_learned"], u["ham_learned"], u["removed"], u["skipped"]) for u in users] == [
        (2, 2, 4, []), (1, 1, 2, [])]
    assert server.count("alice", "Junk.LearnAsSpam") == server.count(PREFIXED_USER, "Junk.LearnAsHam") == 0
    # the same setting on the Maildirs themselves
    server.fill("bob", "Junk.LearnAsSpam", spam[3:])
    server.fill("bob", "Junk.LearnAsHam", ham[3:])
    pattern = str(server.maildir("{user}"))
    bob = json.loads(spamkit("learn", "--maildirs", pattern, "--user", "bob", "--db", db,
                             "--json").stdout)["users"][0]
    assert (bob["spam_learned"], bob["ham_learned"], bob["removed"]) == (1, 1, 2)
    assert server.count("bob", "Junk.LearnAsSpam") == server.count("bob", "Junk.LearnAsHam") == 0


def test_folders_named_beyond_ascii_are_found_where_dovecot_keeps_them(
        server: Dovecot, tmp_path: Path, trained_db: Path,
        split: tuple[list[CorpusMessage], list[CorpusMessage]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot (as Courier) names folders on disk in IMAP's modified UTF-7: the folder a
    mail program shows as "Müll/Spam & Co" is .M&APw-ll.Spam &- Co. The trainer looked
    for .Müll.Spam & Co, which no mail program shows: a Maildir sweep found nothing to
    learn in such a folder, and `deliver` put a French site's spam in an "Indésirables"
    its users never saw. Here Dovecot makes and fills the folders over IMAP."""
    from imapclient import IMAPClient

    spam_folder, ham_folder = "Müll/Spam & Co", "Kein Müll"
    monkeypatch.setenv("SPAMKIT_SPAMFOLDER", spam_folder)
    monkeypatch.setenv("SPAMKIT_HAMFOLDER", ham_folder)
    spam = [m.data for m in split[0] if m.label == "spam"][:4]
    ham = [m.data for m in split[0] if m.label == "ham"][:4]

    def fill_over_imap(user: str, spam_part: list[bytes], ham_part: list[bytes]) -> None:
        server.fill(user, "LearnAsSpam", [])  # (the Maildir, owned as Dovecot expects)
        with IMAPClient("127.0.0.1", server.plain_port, ssl=False) as client:
            client.login(user, logins()[user])
            for folder, messages in (("Müll.Spam & Co", spam_part), (ham_folder, ham_part)):
                if not client.folder_exists(folder):
                    client.create_folder(folder)
                for data in messages:
                    client.append(folder, data)
            client.logout()

    fill_over_imap("alice", spam[:2], ham[:2])
    assert (server.maildir("alice") / ".M&APw-ll.Spam &- Co").is_dir()  # (Dovecot's own name for it)
    pattern, db = str(server.maildir("{user}")), str(tmp_path / "db")
    waiting = json.loads(spamkit("stats", "--maildirs", pattern, "--user", "alice", "--json").stdout)
    assert (waiting["users"][0]["LearnAsSpam"], waiting["users"][0]["LearnAsHam"]) == (2, 2)
    alice = json.loads(spamkit("learn", "--maildirs", pattern, "--user", "alice", "--db", db,
                               "--json").stdout)["users"][0]
    assert (alice["spam_learned"], alice["ham_learned"], alice["removed"], alice["skipped"]) == (2, 2, 4, [])
    assert uids_on_server(server, "alice", "Müll.Spam & Co") == uids_on_server(server, "alice", ham_folder) == []
    # over IMAP, where the names go as the server's own (imapclient encodes them)
    fill_over_imap("bob", spam[2:], ham[2:])
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("bob",))
    bob = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--json").stdout)["users"][0]
    assert (bob["spam_learned"], bob["ham_learned"], bob["removed"], bob["skipped"]) == (2, 2, 4, [])
    # `deliver` files spam in the junk folder its users see
    config = tmp_path / "spamkit.toml"
    config.write_text('SortSpam = true\nSensitivity = "custom"\nTagLevel = 4\nJunkFolder = "Indésirables"\n')
    junk = next(m for m in split[1] if m.label == "spam" and b"BAYES" not in m.data)
    server.fill("carol", "LearnAsSpam", [])
    delivered = subprocess.run([sys.executable, "-m", "spamkit", "deliver", "carol", "--maildirs", pattern,
                                "--db", str(trained_db), "--config", str(config)],
                               input=junk.data, capture_output=True, timeout=120)
    assert delivered.returncode == 0, delivered.stderr
    assert len(uids_on_server(server, "carol", "Indésirables")) == 1


def test_stats_counts_the_accounts_it_reaches_and_names_the_one_it_cannot(
        server: Dovecot, tmp_path: Path) -> None:
    """One IMAP server down made `spamkit stats` stop with "error: Connection refused", no
    account named and no one counted; now the others are counted and it is named."""
    server.fill("alice", "LearnAsSpam", [b"Subject: one\n\nbody\n", b"Subject: two\n\nbody\n"])
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
        port = closed.getsockname()[1]
        text = accounts.read_text() + f'[[account]]\nuser = "bob"\npassword = "x"\nhost = "127.0.0.1"\n' \
            f'port = {port}\nsecurity = "none"\n'
        accounts.write_text(text)
        result = spamkit("stats", "--imap-accounts", str(accounts), "--json", check=False)
        plain = spamkit("stats", "--imap-accounts", str(accounts), check=False)
    assert result.returncode == plain.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert [(u["user"], u["LearnAsSpam"]) for u in out["users"]] == [("alice", 2)]
    assert [f["user"] for f in out["failures"]] == ["bob"]
    assert f"bob@127.0.0.1:{port}" in out["failures"][0]["reason"]
    assert "alice" in plain.stdout and f"bob: not counted: bob@127.0.0.1:{port}" in plain.stderr


def sweep_count_and_expire(accounts_file: Path, db: Path, days: int, dry_run: bool
                           ) -> tuple[SweepReport, list[tuple[str, str]], RetentionReport]:
    """The three runs an accounts file serves, in process: the sweep, `stats` and
    junkmail retention of `days` (the file is made private first)."""
    from spamkit.cli.trainer import imap_stats
    from spamkit.config import load_config
    from spamkit.learn import Learner
    from trainer.accounts import load_accounts
    from trainer.imap import imap_expire_junk, imap_sweep
    from trainer.sweep import SweepOptions

    accounts_file.chmod(0o600)
    accounts = load_accounts(accounts_file)
    with LmdbStore(db) as store:
        swept = imap_sweep(accounts, Learner(store), SweepOptions())
    _, stats_failures = imap_stats(accounts, load_config("/nonexistent/spamkit.toml", environ={}))
    return swept, stats_failures, imap_expire_junk(accounts, "junkmail", days, dry_run=dry_run)


def test_a_server_that_does_not_answer_is_waited_for_once_a_run(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that takes connections and never greets (down, or behind a firewall that
    drops) made each of its accounts wait the whole timeout: with fifty accounts on it,
    fifty minutes of a cron run. The first account waits; the others on that server are
    not tried this run and are named as such; an account elsewhere is swept as usual. The
    same for `stats` and `expire-junk`."""
    import trainer.imap

    monkeypatch.setattr(trainer.imap, "TIMEOUT", 5.0)  # (for the real server too: ample, where 0.5 s once was not)
    server.fill("alice", "LearnAsSpam", [m.data for m in split[0] if m.label == "spam"][:2])
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel takes the connections; nothing ever answers on them
        port = silent.getsockname()[1]
        path = tmp_path / "accounts.toml"
        path.write_text(f'[defaults]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\npassword = "x"\n'
                        + "".join(f'\n[[account]]\nuser = "{user}"\n' for user in ("ann", "ben", "cid"))
                        + f'\n[[account]]\nuser = "alice"\npassword = "{logins()["alice"]}"\n'
                        + f"port = {server.plain_port}\n")  # (on the server that answers)
        swept, stats_failures, expired = sweep_count_and_expire(path, tmp_path / "db", days=60, dry_run=True)
    for reasons in ([u.failures[0][1] for u in swept.users[:3]], [why for _, why in stats_failures],
                    [why for _, why in expired.failures]):
        assert len(reasons) == 3 and "timed out" in reasons[0]
        assert all(f"not tried: 127.0.0.1:{port} did not answer" in why for why in reasons[1:]), reasons
    assert (swept.users[3].user, swept.users[3].spam_learned, swept.users[3].failures) == ("alice", 2, [])


def test_a_server_that_stops_answering_after_login_is_waited_for_once_a_run(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that greets and logs in but never answers the command that opens a folder
    (its mail storage hangs) made each of its accounts wait the whole timeout, as a
    silent server did before it was remembered. Now the first account waits and is said
    to have stopped on no answer; the others on that server are not tried this run, and
    nothing of theirs is touched; an account elsewhere is swept as usual. The same for
    `stats` and `expire-junk`."""
    import trainer.imap
    from tests.servers.stall import stalling_relay

    monkeypatch.setattr(trainer.imap, "TIMEOUT", 5.0)
    spam = [m.data for m in split[0] if m.label == "spam"][:2]
    for user in ("alice", "bob", "carol"):
        server.fill(user, "LearnAsSpam", spam)
        server.fill(user, "junkmail", spam)
    with stalling_relay(("127.0.0.1", server.plain_port), b"SELECT", b"EXAMINE") as relay:
        path = tmp_path / "accounts.toml"
        path.write_text(f'[defaults]\nhost = "127.0.0.1"\nsecurity = "none"\nport = {relay.port}\n'
                        + "".join(f'\n[[account]]\nuser = "{user}"\npassword = "{logins()[user]}"\n'
                                  for user in ("bob", "carol"))
                        + f'\n[[account]]\nuser = "alice"\npassword = "{logins()["alice"]}"\n'
                        + f"port = {server.plain_port}\n")  # (straight to the server)
        swept, stats_failures, expired = sweep_count_and_expire(path, tmp_path / "db", days=0, dry_run=False)
        stalled = relay.stalled
    for reasons in ([u.failures[0][1] for u in swept.users[:2]], [why for _, why in stats_failures],
                    [why for _, why in expired.failures]):
        assert len(reasons) == 2 and "timed out" in reasons[0], reasons
        assert f"not tried: 127.0.0.1:{relay.port} did not answer" in reasons[1], reasons
        assert "stopped answering after login" in reasons[1], reasons
    assert "no answer for 5 s: the server stopped answering" in swept.users[0].failures[0][1]
    assert stalled == 3  # bob's sweep, stats and retention; carol was never tried
    assert (swept.users[2].user, swept.users[2].spam_learned, swept.users[2].failures) == ("alice", 2, [])
    assert expired.users == {"bob": 0, "carol": 0, "alice": 2}
    assert [server.count(user, "LearnAsSpam") for user in ("alice", "bob", "carol")] == [0, 2, 2]
    assert [server.count(user, "junkmail") for user in ("alice", "bob", "carol")] == [0, 2, 2]


def test_an_account_with_neither_folder_is_reported(server: Dovecot, tmp_path: Path) -> None:
    """An account listed for the sweep that has no LearnAsSpam or LearnAsHam folder (a
    typo in the folder setting, or folders under a name the server does not show) is said
    in "skipped", where before it was passed over without a word."""
    server.fill("alice", "INBOX", [b"Subject: hello\n\nhi\n"])
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))
    user = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", str(tmp_path / "db"),
                              "--json").stdout)["users"][0]
    assert user["failed"] == 0
    assert [s["message"] for s in user["skipped"]] == ["alice"]
    assert "no folder LearnAsSpam or LearnAsHam" in user["skipped"][0]["reason"]


@pytest.mark.parametrize("host", ["127.0.0.1", BARE_HOST])
def test_junkmail_retention_over_imap(server: Dovecot, tmp_path: Path, host: str) -> None:
    """MessageRetentionTime for accounts spamkit reaches only over IMAP: junkmail that
    arrived more than --days days ago (INTERNALDATE) is deleted by UID, flagged \\Deleted
    or not (a trashed file in a Maildir goes too); what arrived since is left, flagged or
    not. A server that offers no way to remove only those UIDs removes nothing and says
    so (exit 1)."""
    import datetime

    from imapclient import IMAPClient

    now = datetime.datetime.now(datetime.timezone.utc)
    old = now - datetime.timedelta(days=90)
    # by the hour, not the day, as the Maildir retention counts (SEARCH BEFORE alone
    # compares days); the first one's clock in a zone where it is already the next day
    just_over = (now - datetime.timedelta(days=60, hours=2)).astimezone(datetime.timezone(datetime.timedelta(hours=13)))
    just_under = now - datetime.timedelta(days=60) + datetime.timedelta(hours=2)
    server.fill("alice", "junkmail", [])
    with IMAPClient("127.0.0.1", server.plain_port, ssl=False) as client:
        client.login("alice", logins()["alice"])
        for when, subject in ((old, "old one"), (just_over, "old two"), (now, "new"), (just_under, "not yet"),
                              (old, "old, flagged"), (now, "new, flagged")):
            client.append("junkmail", f"Subject: {subject}\r\n\r\nbody\r\n".encode(), msg_time=when)
        client.select_folder("junkmail")
        client.add_flags(sorted(client.search("ALL"))[-2:], [b"\\Deleted"])  # by a user's client
        client.logout()

    def subjects_left() -> set[str]:
        with IMAPClient("127.0.0.1", server.plain_port, ssl=False) as client:
            client.login("alice", logins()["alice"])
            client.select_folder("junkmail", readonly=True)
            fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
            client.logout()
        return {v[b"BODY[]"].split(b"\r\n", 1)[0].decode().removeprefix("Subject: ")
                for v in fetched.values()}

    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",), host=host)
    expire = ("expire-junk", "--imap-accounts", str(accounts), "--days", "60", "--json")
    dry = json.loads(spamkit(*expire, "--dry-run").stdout)
    everything = {"old one", "old two", "new", "not yet", "old, flagged", "new, flagged"}
    assert dry["users"] == [{"user": "alice", "deleted": 3}] and dry["failures"] == []
    assert subjects_left() == everything
    done = spamkit(*expire, check=False)
    out = json.loads(done.stdout)
    if host == BARE_HOST:
        assert done.returncode == 1 and out["users"] == [{"user": "alice", "deleted": 0}]
        assert "neither UIDPLUS nor MOVE" in out["failures"][0]["reason"]
        assert subjects_left() == everything
    else:
        assert done.returncode == 0 and out["users"] == [{"user": "alice", "deleted": 3}]
        assert subjects_left() == {"new", "not yet", "new, flagged"}


def write_many(server: Dovecot, user: str, folder: str, count: int, expired: int = 0) -> Path:
    """`count` small messages written straight into a Maildir folder, in UID order; every
    other one of the first 2 x `expired` arrived 90 days ago (Dovecot reads a Maildir
    message's arrival from its mtime)."""
    path = server.maildir(user) / f".{folder}"
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True)
    old = time.time() - 90 * 86400
    for index in range(count):
        message = path / "cur" / f"1600000000.M{index:06d}P1.test:2,S"
        message.write_bytes(b"Subject: junk %d\r\n\r\nbody %d\r\n" % (index, index))
        if index % 2 == 0 and index < 2 * expired:
            os.utime(message, (old, old))
    subprocess.run(["chown", "-R", "dovecot:dovecot", str(server.maildir(user).parent)], check=True)
    return path


def numbers_left(folder: Path) -> list[int]:
    return sorted(int(name.split(".M")[1][:6]) for name in os.listdir(folder / "cur") + os.listdir(folder / "new"))


@pytest.mark.parametrize("host", ["127.0.0.1", MOVE_ONLY_HOST])
def test_retention_removes_twelve_thousand_scattered_messages(server: Dovecot, tmp_path: Path, host: str) -> None:
    """A junk folder of 24,000 messages, every other one expired: one UID EXPUNGE (or
    MOVE) naming the 12,000 would be a 70 KB command line, and Dovecot refuses lines over
    64 KB, so the run failed ("Too long argument") and deleted nothing. Now each command
    names at most 1,000 UIDs, through UIDPLUS and through MOVE to Trash alike."""
    junk = write_many(server, "alice", "junkmail", 24_000, expired=12_000)
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",), host=host)
    out = json.loads(spamkit("expire-junk", "--imap-accounts", str(accounts), "--days", "60", "--json").stdout)
    assert out == {**out, "users": [{"user": "alice", "deleted": 12_000}], "failures": []}
    assert numbers_left(junk) == list(range(1, 24_000, 2))
    if host == MOVE_ONLY_HOST:
        assert server.count("alice", "Trash") == 12_000


def test_retention_cut_off_between_flagging_and_expunging_is_finished_by_the_next_run(
        server: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after a group of expired junk was flagged \\Deleted and
    before its UID EXPUNGE. The next run deletes those as well: they are still due. (It
    searched UNDELETED and left them for good, flagged, for the user's client to expunge.)"""
    import trainer.imap
    from imapclient import IMAPClient

    from trainer.accounts import load_accounts
    from trainer.imap import imap_expire_junk

    junk = write_many(server, "alice", "junkmail", 10, expired=5)
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))
    expunge = IMAPClient.uid_expunge
    calls = []

    def dropped_at_the_second(self: IMAPClient, messages: list[int]) -> object:
        calls.append(messages)
        if len(calls) == 2:
            raise OSError("connection reset by peer")
        return expunge(self, messages)

    with monkeypatch.context() as patched:
        patched.setattr(trainer.imap, "UIDS_PER_COMMAND", 2)
        patched.setattr(IMAPClient, "uid_expunge", dropped_at_the_second)
        cut_off = imap_expire_junk(load_accounts(accounts), "junkmail", 60, dry_run=False)
    assert "connection lost" in cut_off.failures[0][1] and len(calls) == 2
    assert numbers_left(junk) == [1, 3, 4, 5, 6, 7, 8, 9]  # one group gone, one flagged, one untouched
    out = json.loads(spamkit("expire-junk", "--imap-accounts", str(accounts), "--days", "60", "--json").stdout)
    assert out["users"] == [{"user": "alice", "deleted": 3}] and out["failures"] == []
    assert numbers_left(junk) == [1, 3, 5, 7, 9]


def test_a_folder_too_large_for_one_search_answer_is_searched_in_windows(server: Dovecot, tmp_path: Path) -> None:
    """Python's imaplib refuses an answer line over 1 MB; SEARCH UNDELETED in a folder of
    160,000 messages answers 1.1 MB, so `stats` failed for the account and a sweep of the
    folder learned nothing. Such a folder is now searched 50,000 UIDs at a time."""
    folder = write_many(server, "alice", "LearnAsSpam", 160_000)
    accounts = str(server.accounts_file(tmp_path / "accounts.toml", users=("alice",)))
    stats = json.loads(spamkit("stats", "--imap-accounts", accounts, "--json").stdout)
    assert stats["failures"] == [] and stats["users"][0]["LearnAsSpam"] == 160_000
    swept = json.loads(spamkit("learn", "--imap-accounts", accounts, "--limit", "40", "--db", str(tmp_path / "db"),
                               "--json").stdout)
    assert (swept["totals"]["spam_learned"], swept["totals"]["removed"], swept["totals"]["failed"]) == (40, 40, 0)
    assert numbers_left(folder) == list(range(40, 160_000))


def test_user_picks_one_imap_account(server: Dovecot, tmp_path: Path,
                                     split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """--user with --imap-accounts was ignored: `expire-junk --user bob` emptied every
    account's junk folder, and `learn --user bob` swept every account."""
    import datetime

    from imapclient import IMAPClient

    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=90)
    for user in ("alice", "bob"):
        server.fill(user, "junkmail", [])
        server.fill(user, "LearnAsSpam", [m.data for m in split[0] if m.label == "spam"][:2])
        with IMAPClient("127.0.0.1", server.plain_port, ssl=False) as client:
            client.login(user, logins()[user])
            client.append("junkmail", b"Subject: old\r\n\r\nbody\r\n", msg_time=old)
            client.logout()
    accounts = str(server.accounts_file(tmp_path / "accounts.toml", users=("alice", "bob")))
    expired = json.loads(spamkit("expire-junk", "--imap-accounts", accounts, "--user", "bob", "--days", "60",
                                 "--json").stdout)
    assert expired["users"] == [{"user": "bob", "deleted": 1}]
    assert server.count("alice", "junkmail") == 1 and server.count("bob", "junkmail") == 0
    waiting = json.loads(spamkit("stats", "--imap-accounts", accounts, "--user", "alice", "--json").stdout)
    assert [(u["user"], u["LearnAsSpam"]) for u in waiting["users"]] == [("alice", 2)]
    swept = json.loads(spamkit("learn", "--imap-accounts", accounts, "--user", "alice", "--db",
                               str(tmp_path / "db"), "--json").stdout)
    assert [(u["user"], u["spam_learned"]) for u in swept["users"]] == [("alice", 2)]
    assert server.count("alice", "LearnAsSpam") == 0 and server.count("bob", "LearnAsSpam") == 2
    for wrong, said in ((("--user", "nobody"), "no account for user 'nobody'"),
                        (("--maildirs", str(tmp_path / "{user}")), "give one of --maildirs and --imap-accounts")):
        for command in (("expire-junk", "--days", "60"), ("stats",), ("learn", "--db", str(tmp_path / "db"))):
            refused = spamkit(*command, "--imap-accounts", accounts, *wrong, check=False)
            assert refused.returncode == 2 and said in refused.stderr, (command, refused.stderr)
    assert server.count("alice", "junkmail") == 1 and server.count("bob", "LearnAsSpam") == 2


def test_a_sweep_cut_off_between_flagging_and_expunging_is_finished_by_the_next(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Checklist item 37: the connection drops after the learned messages were flagged
    \\Deleted and before UID EXPUNGE. The next sweep expunges them, by UID, because they
    are learned with the folder's label; a message another client flagged, never
    learned, is still left alone."""
    from imapclient import IMAPClient

    from spamkit.learn import Learner
    from trainer.accounts import load_accounts
    from trainer.imap import imap_sweep
    from trainer.sweep import SweepOptions

    spam = [m.data for m in split[0] if m.label == "spam"][:4]
    server.fill("alice", "LearnAsSpam", spam)
    flagged, withdrawn = mark_deleted_by_another_client(server, "alice", "LearnAsSpam", "127.0.0.1")
    accounts_file = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))

    def dropped(self: IMAPClient, messages: object = None) -> None:
        raise OSError("connection reset by peer")

    with monkeypatch.context() as patched, LmdbStore(tmp_path / "db") as store:
        patched.setattr(IMAPClient, "uid_expunge", dropped)
        cut_off = imap_sweep(load_accounts(accounts_file), Learner(store), SweepOptions())
    assert cut_off.users[0].spam_learned == 3 and cut_off.users[0].removed == 0
    assert "connection lost" in cut_off.users[0].failures[0][1]
    assert len(uids_on_server(server, "alice", "LearnAsSpam")) == 4  # 3 of ours flagged, not gone

    rerun = json.loads(spamkit("learn", "--imap-accounts", str(accounts_file), "--db", str(tmp_path / "db"),
                               "--json").stdout)["users"][0]
    assert (rerun["spam_learned"], rerun["known"], rerun["removed"], rerun["failed"]) == (0, 0, 3, 0)
    assert uids_on_server(server, "alice", "LearnAsSpam") == [flagged]
    with LmdbStore(tmp_path / "db") as store:
        assert store.totals().nspam == 3
        assert message_key(withdrawn) not in {m.key for m in store.seen_records()}


def test_a_uidvalidity_change_mid_sweep_removes_nothing_and_the_next_sweep_finishes(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Checklist item 36. When the folder's UIDVALIDITY changes between fetching and
    removing, the UIDs no longer name the messages learned: nothing is removed, the sweep
    of that folder stops, and the next sweep, finding them known, learns nothing twice
    and removes them. The change is made by Dovecot's own doveadm after the first chunk
    is committed."""
    from trainer.accounts import load_accounts
    from trainer.imap import CHUNK, imap_sweep
    from trainer.sweep import SweepOptions
    from spamkit.learn import Learner

    spam = [m.data for m in split[0] if m.label == "spam"][: CHUNK + 20]
    server.fill("alice", "LearnAsSpam", spam)
    accounts = load_accounts(server.accounts_file(tmp_path / "accounts.toml", users=("alice",)))
    validities = iter(range(1000, 2000))

    class RenumberingAfterEachCommit(Learner):
        def learn(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            outcome = super().learn(*args, **kwargs)
            server.doveadm("mailbox", "update", "-u", "alice", "--uid-validity", str(next(validities)),
                           "LearnAsSpam")
            return outcome

    db = tmp_path / "db"
    with LmdbStore(db) as store:
        report = imap_sweep(accounts, RenumberingAfterEachCommit(store), SweepOptions())
    user = report.users[0]
    assert user.spam_learned == CHUNK and user.removed == 0  # the first chunk, then it stopped
    assert user.failures == [("alice/LearnAsSpam", "UIDVALIDITY changed; nothing removed")]
    assert server.count("alice", "LearnAsSpam") == CHUNK + 20

    rerun = json.loads(spamkit("learn", "--imap-accounts", str(tmp_path / "accounts.toml"),
                               "--db", str(db), "--json").stdout)["users"][0]
    assert (rerun["known"], rerun["spam_learned"], rerun["removed"]) == (CHUNK, 20, CHUNK + 20)
    assert server.count("alice", "LearnAsSpam") == 0
    with LmdbStore(db) as store:
        assert store.totals().nspam == len({message_key(d) for d in spam})


def test_a_message_over_the_size_cap_is_left_unread_and_the_rest_learned(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Checklist item 38: the cap is checked on RFC822.SIZE before anything is fetched;
    the large message stays in the folder without \\Seen, is reported, and the sweep
    exits 1 so cron mails the admin; the others are learned and removed."""
    spam = [m.data for m in split[0] if m.label == "spam"][:3]
    large = b"Subject: an archive\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    server.fill("alice", "LearnAsSpam", [*spam, large])
    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))
    config = tmp_path / "spamkit.toml"
    config.write_text("TrainerMaxFileSize = 100000\n")
    result = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--imap-accounts", str(accounts),
                             "--db", str(tmp_path / "db"), "--json"], capture_output=True, text=True,
                            env=dict(os.environ, SPAMKIT_CONFIG=str(config)), timeout=300)
    assert result.returncode == 1, result.stderr
    user = json.loads(result.stdout)["users"][0]
    assert (user["spam_learned"], user["removed"], user["failed"]) == (3, 3, 1)
    assert user["failures"][0]["reason"] == "larger than 100000 bytes; left in the folder"
    [left] = [p for sub in ("new", "cur") for p in (server.maildir("alice") / ".LearnAsSpam" / sub).iterdir()]
    assert left.read_bytes().replace(b"\r\n", b"\n") == large.replace(b"\r\n", b"\n")
    flags = left.name.rsplit(":2,", 1)[1] if ":2," in left.name else ""
    assert "S" not in flags  # never fetched, so never marked read


def test_a_folder_of_large_messages_is_fetched_in_bounded_memory(server: Dovecot, tmp_path: Path) -> None:
    """Messages are fetched at most 16 MiB at a time (by RFC822.SIZE), not 100 at a time
    whatever their size: 80 messages of 2 MB take no more memory than 20 do (within 40
    MiB; before, 80 took about 350 MiB more)."""
    from tests.peak_memory import run_measured
    from tests.trainer.test_sweep_maildir import large_spam

    accounts = server.accounts_file(tmp_path / "accounts.toml", users=("alice",))
    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    peaks = {}
    for count in (20, 80):
        server.clear()
        server.fill("alice", "LearnAsSpam", large_spam(count, seed=count))
        done, peaks[count] = run_measured([sys.executable, "-m", "spamkit", "learn", "--imap-accounts",
                                           str(accounts), "--db", str(tmp_path / f"db{count}"), "--json"], env)
        assert done.returncode == 0, done.stderr
        user = json.loads(done.stdout)["users"][0]
        assert user["spam_learned"] == user["removed"] == count
    assert peaks[80] - peaks[20] < 40, peaks


def test_starttls_with_certificate_checks(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    fill(server, split[0], per_folder=2)
    accounts = server.accounts_file(tmp_path / "starttls.toml", "starttls", ("alice",),
                                    ca_file=str(server.ca_file))
    out = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", str(tmp_path / "db"),
                             "--json").stdout)
    assert out["totals"]["removed"] == 4 and out["totals"]["failed"] == 0


def test_a_full_disk_stops_the_imap_sweep_and_expunges_only_what_was_committed(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """The database on a real 2 MiB tmpfs fills part way: the sweep says so (exit 74, the
    report carries the error), every message is committed or still on the server, and
    once there is room a rerun learns the rest, each message once."""
    from tests.servers.tmpfs import grow, small_disk, stopped_by_a_full_disk

    keys = fill(server, split[0], per_folder=150)
    accounts = server.accounts_file(tmp_path / "accounts.toml")
    with small_disk(tmp_path / "disk", "2m") as disk:
        db = str(disk / "db")
        stopped = spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--batch-size", "50",
                          "--json", check=False)
        report = stopped_by_a_full_disk(stopped)
        with LmdbStore(Path(db)) as store:
            learned = {mark.key for mark in store.seen_records()}
        left = sum(server.count(user, folder) for user in USERS for folder in ("LearnAsSpam", "LearnAsHam"))
        assert 0 < len(learned) < len(keys)
        assert left == 2 * 150 * len(USERS) - report["totals"]["removed"]
        on_server = {message_key(path.read_bytes()) for user in USERS
                     for folder in (".LearnAsSpam", ".LearnAsHam") for sub in ("cur", "new")
                     for path in (server.maildir(user) / folder / sub).iterdir()}
        assert on_server | learned == keys  # nothing removed that was not committed

        grow(disk, "64m")
        rerun = json.loads(spamkit("learn", "--imap-accounts", str(accounts), "--db", db, "--json").stdout)
        assert "error" not in rerun and rerun["totals"]["failed"] == 0
        with LmdbStore(Path(db)) as store:
            marks = {mark.key for mark in store.seen_records()}
            totals = store.totals()
        assert marks == keys and totals.nspam + totals.nham == len(keys)
        for user in USERS:
            assert server.count(user, "LearnAsSpam") == server.count(user, "LearnAsHam") == 0
