"""The sweep over IMAP against a real Dovecot: learn, commit, then UID EXPUNGE."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.message import message_key
from spamkit.store import LmdbStore
from tests.servers.dovecot import USERS, Dovecot, start_dovecot


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    yield from start_dovecot()


@pytest.fixture
def server(dovecot: Dovecot) -> Iterator[Dovecot]:
    dovecot.clear()
    yield dovecot
    dovecot.clear()


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
                 b'port = 10143\nsecurity = "none"\n')
    os.close(fd)
    result = spamkit("learn", "--imap-accounts", str(path), "--db", str(tmp_path / "db"), "--json",
                     check=False)
    assert result.returncode == 1
    assert "cannot log in" in json.loads(result.stdout)["users"][0]["failures"][0]["reason"]
    assert server.count("alice", "LearnAsSpam") == 2


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
