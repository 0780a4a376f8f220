"""The `spamkit learn` sweep on local Maildir++ folders, as the cron job runs it."""

from __future__ import annotations

import json
import mailbox
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from spamkit.message import message_key
from spamkit.store import LmdbStore
from trainer.maildir import folder_path, modified_utf7

USERS = ("alice", "bob", "carol")


def spamkit(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    result = subprocess.run([sys.executable, "-m", "spamkit", *args], capture_output=True,
                            text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def make_users(root: Path, train: list[CorpusMessage], per_folder: int = 15) -> dict[str, list[bytes]]:
    """Maildirs for USERS with real corpus spam in LearnAsSpam, ham in LearnAsHam."""
    spam = [m.data for m in train if m.label == "spam"]
    ham = [m.data for m in train if m.label == "ham"]
    placed: dict[str, list[bytes]] = {}
    for index, user in enumerate(USERS):
        (root / user).mkdir(parents=True)
        maildir = mailbox.Maildir(root / user / "Maildir", create=True)
        chunk = slice(index * per_folder, (index + 1) * per_folder)
        for folder_name, messages in (("LearnAsSpam", spam[chunk]), ("LearnAsHam", ham[chunk])):
            folder = maildir.add_folder(folder_name)
            for data in messages:
                folder.add(data)
        maildir.add_folder("junkmail")
        placed[user] = spam[chunk] + ham[chunk]
    return placed


@pytest.fixture
def root(tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Path:
    make_users(tmp_path / "users", split[0])
    return tmp_path / "users"


def folder_files(root: Path, user: str, folder: str) -> list[Path]:
    base = root / user / "Maildir" / f".{folder}"
    return [p for sub in ("new", "cur") for p in (base / sub).iterdir()]


def test_sweep_learns_everything_once_and_empties_the_folders(root: Path, tmp_path: Path) -> None:
    pattern, db = f"{root}/{{user}}/Maildir", str(tmp_path / "db")
    before = json.loads(spamkit("stats", "--maildirs", pattern, "--db", db, "--json").stdout)
    assert [(u["user"], u["LearnAsSpam"], u["LearnAsHam"]) for u in before["users"]] == \
        [(u, 15, 15) for u in USERS]
    assert before["db"] is None and not Path(db).exists()  # stats never creates a database
    assert before["bayes_judging"] is False and before["bayes_to_go"] == {"spam": 200, "ham": 200}

    result = json.loads(spamkit("learn", "--maildirs", pattern, "--db", db, "--json").stdout)
    assert result["totals"]["spam_learned"] + result["totals"]["known"] >= 45
    for user in USERS:
        assert folder_files(root, user, "LearnAsSpam") == []
        assert folder_files(root, user, "LearnAsHam") == []
    magic = json.loads(spamkit("db", "magic", "--db", db, "--json").stdout)
    learned = result["totals"]["spam_learned"], result["totals"]["ham_learned"]
    assert (magic["nspam"], magic["nham"]) == learned

    after = json.loads(spamkit("stats", "--maildirs", pattern, "--db", db, "--json").stdout)
    assert after["totals"]["LearnAsSpam"] == after["totals"]["LearnAsHam"] == 0
    assert after["totals"]["missed_spam_30d"] == learned[0]
    assert after["db"]["nspam"] == learned[0]
    # the SME guide's "200 spam before it starts to function": how far off that is
    assert after["bayes_judging"] is False
    assert after["bayes_to_go"] == {"spam": 200 - learned[0], "ham": 200 - learned[1]}
    text = spamkit("stats", "--maildirs", pattern, "--db", db).stdout
    assert text.endswith(f"Bayes is not judging yet: it waits until it has learned 200 spam and 200 "
                         f"ham (BayesMinSpam, BayesMinHam); {200 - learned[0]} spam and "
                         f"{200 - learned[1]} ham to go\n")
    config = tmp_path / "spamkit.toml"
    config.write_text("BayesMinSpam = 10\nBayesMinHam = 10\n")
    judging = json.loads(spamkit("stats", "--maildirs", pattern, "--db", db, "--config", str(config),
                                 "--json").stdout)
    assert judging["bayes_judging"] is True and judging["bayes_to_go"] == {"spam": 0, "ham": 0}
    assert "Bayes" not in spamkit("stats", "--maildirs", pattern, "--db", db, "--config", str(config)).stdout

    again = json.loads(spamkit("learn", "--maildirs", pattern, "--db", db, "--json").stdout)
    assert again["totals"] == {"spam_learned": 0, "ham_learned": 0, "known": 0, "failed": 0,
                               "removed": 0}


def test_dry_run_changes_nothing(root: Path, tmp_path: Path) -> None:
    pattern, db = f"{root}/{{user}}/Maildir", tmp_path / "db"
    out = json.loads(spamkit("learn", "--maildirs", pattern, "--db", str(db), "--json",
                             "--dry-run").stdout)
    assert out["dry_run"] and out["totals"]["spam_learned"] + out["totals"]["known"] == 45
    assert not db.exists()
    assert len(folder_files(root, "alice", "LearnAsSpam")) == 15


def test_one_user_limit_and_ham_back_to_inbox(root: Path, tmp_path: Path) -> None:
    pattern, db = f"{root}/{{user}}/Maildir", str(tmp_path / "db")
    spamkit("learn", "--maildirs", pattern, "--db", db, "--user", "bob", "--limit", "5",
            "--ham-to-inbox", "--quiet")
    assert len(folder_files(root, "bob", "LearnAsSpam")) == 10
    assert len(folder_files(root, "bob", "LearnAsHam")) == 10
    assert len(list((root / "bob" / "Maildir" / "cur").iterdir())) == 5  # ham back in the Inbox
    assert len(folder_files(root, "alice", "LearnAsSpam")) == 15  # other users untouched


@pytest.mark.parametrize("name", ["../alice", "a/b", "..", "Alice", "al\u0456ce", "/root", "-x"])
def test_user_names_that_could_escape_are_refused(root: Path, tmp_path: Path, name: str) -> None:
    result = spamkit("learn", "--maildirs", f"{root}/{{user}}/Maildir", "--db",
                     str(tmp_path / "db"), "--user", name, check=False)
    assert result.returncode == 2 and "refusing user name" in result.stderr


def test_a_user_with_no_maildir_is_named_not_reported_empty(root: Path, tmp_path: Path) -> None:
    """A mistyped --user (or one whose Maildir is gone) said "0 learned", "deleted 0" and
    exit 0, as if that user's folders were empty."""
    pattern = f"{root}/{{user}}/Maildir"
    for command in (("learn", "--db", str(tmp_path / "db")), ("stats", "--db", str(tmp_path / "db")),
                    ("expire-junk", "--days", "3")):
        result = spamkit(*command, "--maildirs", pattern, "--user", "alcie", check=False)
        assert result.returncode == 2, (command, result.stderr)
        assert f"no Maildir for alcie at {root}/alcie/Maildir" in result.stderr
    assert not (tmp_path / "db").exists()


def test_a_maildir_pattern_that_matches_nothing_is_said(tmp_path: Path) -> None:
    """SME's default MaildirPattern on another system matched no Maildir, and the cron
    job's `spamkit learn --quiet` learned nothing every half hour, exit 0, printing nothing."""
    config = tmp_path / "spamkit.toml"
    config.write_text(f'# on this host\nMaildirPattern = "{tmp_path}/home/{{user}}/Maildir"\n')
    env = dict(os.environ, SPAMKIT_CONFIG=str(config))
    for command in (("learn", "--quiet", "--db", str(tmp_path / "db")), ("stats", "--db", str(tmp_path / "db")),
                    ("expire-junk",), ("make-folders", "--quiet")):
        result = subprocess.run([sys.executable, "-m", "spamkit", *command], capture_output=True, text=True,
                                env=env, timeout=120)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr == (f"spamkit: error: no user Maildirs: {tmp_path}/home does not exist "
                                 f"({config}:2: {tmp_path}/home/{{user}}/Maildir); set MaildirPattern to "
                                 "where they are, e.g. /home/{user}/Maildir, or read them over IMAP with "
                                 "--imap-accounts\n")
    (tmp_path / "home" / "alice").mkdir(parents=True)  # a home, with no Maildir in it yet
    result = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--quiet", "--db", str(tmp_path / "db")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert (result.returncode, result.stdout) == (0, "")
    assert "warning: no user has a Maildir" in result.stderr and f"no {tmp_path}/home/NAME/Maildir" in result.stderr
    # the accounts ExtraAccounts names are Maildirs enough, with no base directory at all
    (tmp_path / "bob" / "cur").mkdir(parents=True)
    config.write_text(f'MaildirPattern = "{tmp_path}/nohome/{{user}}/Maildir"\nExtraAccounts = ["bob={tmp_path}/bob"]\n')
    result = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--quiet", "--db", str(tmp_path / "db")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_nul_and_paths_outside_the_base_are_refused(tmp_path: Path) -> None:
    from trainer.users import UnsafeUser, check_user_name, resolve

    with pytest.raises(UnsafeUser):
        check_user_name("root\x00")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "mallory").symlink_to("/")
    with pytest.raises(UnsafeUser, match="outside"):
        resolve(f"{tmp_path}/base/{{user}}/Maildir", "mallory")


def test_odd_entries_are_skipped_and_left_alone(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.eml"
    outside.write_bytes(b"Subject: not yours\n\nprivate\n")
    new = root / "alice" / "Maildir" / ".LearnAsSpam" / "new"
    (new / "1.link").symlink_to(outside)
    os.mkfifo(new / "2.fifo")
    (new / "3.big").write_bytes(b"Subject: big\n\n" + b"x" * 200_000)
    tmp_msg = root / "alice" / "Maildir" / ".LearnAsSpam" / "tmp" / "4.delivering"
    tmp_msg.write_bytes(b"Subject: half written\n\n")
    (root / "evil").symlink_to(tmp_path)  # a "user" that is a link out of the base
    config = tmp_path / "spamkit.toml"
    config.write_text("TrainerMaxFileSize = 100000\n")
    env = dict(os.environ, SPAMKIT_CONFIG=str(config))
    result = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--maildirs",
                             f"{root}/{{user}}/Maildir", "--db", str(tmp_path / "db"), "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1  # the big file was left behind, and said so
    report = json.loads(result.stdout)
    alice = next(u for u in report["users"] if u["user"] == "alice")
    assert alice["failed"] == 1 and "larger than" in alice["failures"][0]["reason"]
    assert {u["user"] for u in report["users"]} == set(USERS)
    assert outside.read_bytes().startswith(b"Subject: not yours")
    assert (new / "1.link").is_symlink() and (new / "2.fifo").exists() and (new / "3.big").exists()
    assert tmp_msg.exists()
    # the link and the FIFO are not failures, but the report warns of them (checklist 34)
    assert alice["skipped"] == [{"message": str(new / "1.link"), "reason": "a symbolic link: not read, left in the folder"},
                                {"message": str(new / "2.fifo"), "reason": "a FIFO: not read, left in the folder"}]
    again = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--maildirs", f"{root}/{{user}}/Maildir",
                            "--db", str(tmp_path / "db")], capture_output=True, text=True, env=env, timeout=300)
    assert f"spamkit: warning: alice: skipped {new / '1.link'}: a symbolic link" in again.stderr
    assert f"spamkit: warning: alice: skipped {new / '2.fifo'}: a FIFO" in again.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to plant a link owned by a mail user")
def test_folders_linked_out_of_the_maildir_by_their_user_are_not_followed(root: Path, tmp_path: Path) -> None:
    """The sweep and expire-junk run as root over directories their users control. A
    user's `.LearnAsSpam/cur` linked to a directory of root's had the sweep learn and
    delete what it found there; `.junkmail/cur` so linked had expire-junk delete every
    file there older than the retention. Links root made (an administrator's) are followed."""
    nobody = pwd.getpwnam("nobody")
    victim = tmp_path / "root-only"
    victim.mkdir(mode=0o700)
    precious = victim / "1000000000.precious"
    precious.write_bytes(b"Subject: root's\n\nkeep me\n")
    os.utime(precious, (1e9, 1e9))  # older than any retention
    maildir = root / "alice" / "Maildir"
    for folder in (".LearnAsSpam", ".junkmail"):
        for sub in ("cur", "new"):
            shutil.rmtree(maildir / folder / sub)
            (maildir / folder / sub).symlink_to(victim)
            os.chown(maildir / folder / sub, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
    # stats counts nothing there either, and says why (it said 0, as for an empty folder)
    counted = json.loads(spamkit("stats", "--maildirs", f"{root}/{{user}}/Maildir", "--db", str(tmp_path / "db"),
                                 "--user", "alice", "--json").stdout)["users"][0]
    assert (counted["LearnAsSpam"], counted["LearnAsHam"], counted["JunkMail"]) == (0, 15, 0)
    assert {entry["message"] for entry in counted["skipped"]} == {
        str(maildir / folder / sub) for folder in (".LearnAsSpam", ".junkmail") for sub in ("new", "cur")}
    assert "not counted: " in spamkit("stats", "--maildirs", f"{root}/{{user}}/Maildir", "--user", "alice").stderr
    learned = json.loads(spamkit("learn", "--maildirs", f"{root}/{{user}}/Maildir", "--db", str(tmp_path / "db"),
                                 "--user", "alice", "--json").stdout)["users"][0]
    assert learned["spam_learned"] == 0 and learned["removed"] == 15  # its LearnAsHam, not the link
    assert [entry["message"] for entry in learned["skipped"]] == [str(maildir / ".LearnAsSpam" / sub)
                                                                  for sub in ("new", "cur")]
    assert "a symbolic link made by uid" in learned["skipped"][0]["reason"]
    expired = spamkit("expire-junk", "--maildirs", f"{root}/{{user}}/Maildir", "--user", "alice", "--json",
                      check=False)
    assert expired.returncode == 1 and json.loads(expired.stdout)["totals"]["deleted"] == 0
    assert precious.exists()
    # a link root made, as an administrator's /home -> /srv/home, is followed
    (tmp_path / "via-link").symlink_to(root)
    bob = json.loads(spamkit("learn", "--maildirs", f"{tmp_path}/via-link/{{user}}/Maildir", "--db",
                             str(tmp_path / "db"), "--user", "bob", "--json").stdout)["users"][0]
    assert (bob["spam_learned"], bob["ham_learned"], bob["removed"], bob["skipped"]) == (15, 15, 30, [])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to plant a link owned by a mail user")
def test_a_folder_swapped_for_a_link_after_the_listing_is_not_followed(tmp_path: Path) -> None:
    """The sweep keeps a folder's directory open from message to message; a user who
    swaps the folder for a link between the listing and the removal gets it walked, and
    refused, again."""
    from trainer.maildir import UnsafeLink, delete, list_messages, read_message

    folder = tmp_path / "Maildir" / ".LearnAsSpam"
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True)
    (folder / "new" / "1.eml").write_bytes(b"Subject: spam\n\nbuy\n")
    [message] = list(list_messages(folder))
    victim = tmp_path / "root-only"
    victim.mkdir(mode=0o700)
    (victim / "1.eml").write_bytes(b"root's own\n")
    (folder / "new").rename(folder / "was-new")
    (folder / "new").symlink_to(victim)
    os.chown(folder / "new", pwd.getpwnam("nobody").pw_uid, -1, follow_symlinks=False)
    assert read_message(message, 10**6).data is None
    with pytest.raises(UnsafeLink):
        delete(message.path)
    assert (victim / "1.eml").read_bytes() == b"root's own\n"


def test_open_directory_stops_on_a_loop_of_links(tmp_path: Path) -> None:
    from trainer.maildir import open_directory

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="too many symbolic links"):
        open_directory(tmp_path / "a" / "cur")
    (tmp_path / "c").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        open_directory(tmp_path / "c" / "cur")
    (tmp_path / "d").mkdir()
    os.close(open_directory(tmp_path / "d" / ".." / "d"))  # ".." is walked, not a link


def test_a_message_flagged_deleted_was_withdrawn_and_is_left_alone(root: Path, tmp_path: Path) -> None:
    """A mail program without MOVE moves a message out of LearnAsSpam by copying it and
    flagging the original deleted (T in its Maildir name) until it expunges. Learning
    that copy as spam would learn what the user took back; it is left for the expunge."""
    cur = root / "alice" / "Maildir" / ".LearnAsSpam" / "cur"
    first = sorted(folder_files(root, "alice", "LearnAsSpam"))[0]
    withdrawn = cur / (first.name.split(":", 1)[0] + ":2,ST")
    first.rename(withdrawn)
    waiting = json.loads(spamkit("stats", "--maildirs", f"{root}/{{user}}/Maildir", "--user", "alice",
                                 "--json").stdout)
    assert waiting["users"][0]["LearnAsSpam"] == 14  # what the sweep will learn
    report = json.loads(spamkit("learn", "--maildirs", f"{root}/{{user}}/Maildir", "--user", "alice",
                                "--db", str(tmp_path / "db"), "--json").stdout)
    assert report["users"][0]["spam_learned"] == 14 and report["users"][0]["failed"] == 0
    assert folder_files(root, "alice", "LearnAsSpam") == [withdrawn]
    with LmdbStore(tmp_path / "db") as store:
        assert message_key(withdrawn.read_bytes()) not in {m.key for m in store.seen_records()}


def large_spam(count: int, seed: int, size: int = 2_000_000) -> list[bytes]:
    """Spam carrying an attachment of `size` random bytes, as an archive of spam can."""
    import base64

    rng = random.Random(seed)
    head = (b"From: offers%d@example.net\nSubject: your invoice %d\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
            b"Open the attached invoice now.\n--b\nContent-Type: application/zip; name=invoice.zip\n"
            b"Content-Transfer-Encoding: base64\n\n")
    return [head % (i, i) + base64.encodebytes(rng.randbytes(size * 3 // 4)) + b"\n--b--\n"
            for i in range(count)]


def test_a_folder_of_large_messages_is_swept_in_bounded_memory(root: Path, tmp_path: Path) -> None:
    """The sweep reads a folder's messages one at a time as learning takes them, and a
    batch keeps only each message's keys and byte sample: 100 messages of 2 MB take no
    more memory than 10 do (within 40 MiB; before, every message was read first and a
    batch held them all: 100 took about 180 MiB more)."""
    from tests.peak_memory import run_measured

    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    peaks = {}
    for user, count in (("alice", 10), ("bob", 100)):
        folder = mailbox.Maildir(root / user / "Maildir", create=False).get_folder("LearnAsSpam")
        for data in large_spam(count, seed=count):
            folder.add(data)
        done, peaks[count] = run_measured([sys.executable, "-m", "spamkit", "learn", "--maildirs",
                                           f"{root}/{{user}}/Maildir", "--user", user,
                                           "--db", str(tmp_path / "db"), "--json"], env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["users"][0]["spam_learned"] == count + 15
        assert folder_files(root, user, "LearnAsSpam") == []
    assert peaks[100] - peaks[10] < 40, peaks


def test_a_second_sweep_waits_for_nobody(root: Path, tmp_path: Path) -> None:
    from trainer.lock import SweepLock

    db = tmp_path / "db"
    LmdbStore(db).close()
    with SweepLock(db / "sweep.lock"):
        result = spamkit("learn", "--maildirs", f"{root}/{{user}}/Maildir", "--db", str(db))
        # the cron job's --quiet says nothing (cron mailed the line to the administrator
        # every half hour that a long sweep ran on), and --json stays JSON
        quiet = spamkit("learn", "--quiet", "--maildirs", f"{root}/{{user}}/Maildir", "--db", str(db))
        as_json = spamkit("learn", "--json", "--maildirs", f"{root}/{{user}}/Maildir", "--db", str(db))
    assert result.stdout.strip() == "spamkit learn: another sweep is running; nothing to do"
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert json.loads(as_json.stdout) == {"users": [], "seconds": 0.0, "dry_run": False, "already_running": True,
                                          "totals": {"spam_learned": 0, "ham_learned": 0, "known": 0,
                                                     "failed": 0, "removed": 0}}
    assert len(folder_files(root, "alice", "LearnAsSpam")) == 15


def test_expire_junk_by_delivery_time(root: Path, tmp_path: Path) -> None:
    junk = root / "carol" / "Maildir" / ".junkmail" / "cur"
    now = int(time.time())
    for age_days, name in ((40, "old"), (10, "recent"), (31, "older")):
        (junk / f"{now - age_days * 86400}.M1P1.{name}:2,S").write_bytes(b"Subject: x\n\ny\n")
    # a name that is not a time, though str.isdigit says its head is a number: its mtime
    # counts (float("\u00b2") stopped the run with a ValueError)
    odd = junk / "\u00b2.M1P1.odd:2,S"
    odd.write_bytes(b"Subject: x\n\ny\n")
    os.utime(odd, (now - 50 * 86400, now - 50 * 86400))
    pattern = f"{root}/{{user}}/Maildir"
    dry = json.loads(spamkit("expire-junk", "--days", "30", "--maildirs", pattern, "--json",
                             "--dry-run").stdout)
    assert dry["totals"]["deleted"] == 3 and len(list(junk.iterdir())) == 4
    done = json.loads(spamkit("expire-junk", "--days", "30", "--maildirs", pattern, "--json").stdout)
    assert done["totals"]["deleted"] == 3
    assert [p.name.split(".")[-1] for p in junk.iterdir()] == ["recent:2,S"]


@pytest.mark.slow
def test_kill_9_mid_sweep_loses_nothing(tmp_path: Path,
                                        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Killed at random moments, a sweep never removes a message it had not committed, and
    reruns learn each remaining message exactly once."""
    rng = random.Random(4)
    for attempt in range(6):
        root = tmp_path / f"run{attempt}"
        placed = make_users(root, split[0], per_folder=120)
        db = tmp_path / f"db{attempt}"
        command = [sys.executable, "-m", "spamkit", "learn", "--maildirs", f"{root}/{{user}}/Maildir",
                   "--db", str(db), "--batch-size", "20", "--quiet"]
        env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        remaining = {message_key(p.read_bytes()) for user in USERS
                     for folder in ("LearnAsSpam", "LearnAsHam") for p in folder_files(root, user, folder)}
        everything = {message_key(data) for data in sum(placed.values(), [])}
        learned: set[bytes] = set()
        if (db / "data.mdb").exists():
            with LmdbStore(db) as store:
                learned = {mark.key for mark in store.seen_records()}
        # every message is still in its folder or its tokens are committed
        assert everything <= remaining | learned, f"attempt {attempt}: a message was lost"
        subprocess.run(command, env=env, check=True, timeout=300)
        with LmdbStore(db) as store:
            marks = {mark.key for mark in store.seen_records()}
            totals = store.totals()
        assert marks == everything
        assert totals.nspam + totals.nham == len(everything)  # each learned exactly once
        assert not any(folder_files(root, u, f) for u in USERS for f in ("LearnAsSpam", "LearnAsHam"))


def test_the_report_can_be_mailed(root: Path, tmp_path: Path) -> None:
    """A real SMTP server on loopback (aiosmtpd) receives the sweep report."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    received: list[bytes] = []

    class Keep(Sink):
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope.content)
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = tmp_path / "spamkit.toml"
        config.write_text(f'ReportSmtpServer = "127.0.0.1:{port}"\nReportFrom = "spamkit@example.org"\n')
        env = dict(os.environ, SPAMKIT_CONFIG=str(config))
        command = [sys.executable, "-m", "spamkit", "learn", "--maildirs", f"{root}/{{user}}/Maildir",
                   "--db", str(tmp_path / "db"), "--quiet", "--mail-report", "admin@example.org"]
        # a dry run mails what it would do (it mailed nothing, without a word), and does nothing
        before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        result = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, env=env,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) == before
        assert not (tmp_path / "db").exists()
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
    finally:
        controller.stop()
    assert len(received) == 2
    dry, real = received
    assert b"Subject: spamkit learn (dry run): would learn " in dry and b"nothing learned or removed" in dry
    assert b"Subject: spamkit learn: " in real and b"alice" in real
    would = re.search(rb"would learn (\d+) spam, (\d+) ham", dry)
    learned = re.search(rb"Subject: spamkit learn: (\d+) spam, (\d+) ham", real)
    assert would and learned and would.groups() == learned.groups() and would[1] != b"0"


def test_a_message_renamed_mid_sweep_is_found_next_time(root: Path, tmp_path: Path) -> None:
    """A mail client moving a message from new/ to cur/ between listing and reading: that
    message is neither learned nor lost this time, and the next sweep learns it once."""
    from spamkit.learn import Learner
    from trainer import maildir as maildir_module
    from trainer.sweep import SweepOptions, sweep
    from trainer.users import accounts

    real_read = maildir_module.read_message
    renamed: list[Path] = []

    def read_after_a_rename(message, max_size):  # type: ignore[no-untyped-def]
        if not renamed and message.path.parent.name == "new":
            target = message.path.parent.parent / "cur" / (message.path.name + ":2,S")
            os.rename(message.path, target)  # what the mail client did meanwhile
            renamed.append(target)
        return real_read(message, max_size)

    users = accounts(f"{root}/{{user}}/Maildir", "alice")
    with LmdbStore(tmp_path / "db") as store:
        import trainer.sweep as sweep_module

        sweep_module.read_message = read_after_a_rename
        try:
            first = sweep(users, Learner(store), SweepOptions())
        finally:
            sweep_module.read_message = real_read
        assert first.users[0].failed == 1 and renamed[0].exists()
        second = sweep(users, Learner(store), SweepOptions())
        learned = first.users[0].spam_learned + second.users[0].spam_learned + \
            first.users[0].known + second.users[0].known
        assert learned == 15 and not renamed[0].exists()
        assert store.totals().nspam + store.totals().nham == 30


def test_a_full_disk_stops_the_sweep_and_removes_only_what_was_committed(
        tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """The database on a real 2 MiB tmpfs fills up part way: the sweep reports what it did
    and why it stopped (exit 74), every message is learned or still in its folder, and
    once there is room a rerun learns the rest, each message once."""
    from tests.servers.tmpfs import grow, small_disk, stopped_by_a_full_disk

    placed = make_users(tmp_path / "users", split[0], per_folder=150)
    pattern = f"{tmp_path / 'users'}/{{user}}/Maildir"
    everything = {message_key(data) for data in sum(placed.values(), [])}
    with small_disk(tmp_path / "disk", "2m") as disk:
        db = str(disk / "db")
        stopped = spamkit("learn", "--maildirs", pattern, "--db", db, "--batch-size", "50", "--json",
                          check=False)
        report = stopped_by_a_full_disk(stopped)
        with LmdbStore(Path(db)) as store:
            learned = {mark.key for mark in store.seen_records()}
        remaining = [p for user in USERS for folder in ("LearnAsSpam", "LearnAsHam")
                     for p in folder_files(tmp_path / "users", user, folder)]
        assert 0 < len(learned) < len(everything)
        assert report["totals"]["removed"] == len(everything) - len(remaining)
        # nothing lost: each message is committed or still in place, and what was
        # removed was committed
        remaining_keys = {message_key(p.read_bytes()) for p in remaining}
        assert remaining_keys | learned == everything
        assert len(learned) == report["totals"]["spam_learned"] + report["totals"]["ham_learned"]

        grow(disk, "64m")
        rerun = json.loads(spamkit("learn", "--maildirs", pattern, "--db", db, "--json").stdout)
        assert "error" not in rerun
        with LmdbStore(Path(db)) as store:
            marks = {mark.key for mark in store.seen_records()}
            totals = store.totals()
        assert marks == everything and totals.nspam + totals.nham == len(everything)
        assert not any(folder_files(tmp_path / "users", u, f) for u in USERS
                       for f in ("LearnAsSpam", "LearnAsHam"))


def test_report_server_forms() -> None:
    """ReportSmtpServer as admins write it: with or without a port, IPv6 in brackets or
    bare; a port that is not a number is named, not a traceback."""
    from spamkit.errors import ConfigError
    from trainer.sweep import smtp_server

    assert smtp_server("127.0.0.1:25") == ("127.0.0.1", 25)
    assert smtp_server("mail.example.org") == ("mail.example.org", 25)
    assert smtp_server("mail.example.org:587") == ("mail.example.org", 587)
    assert smtp_server("[::1]:2525") == ("::1", 2525)
    assert smtp_server("2001:db8::25") == ("2001:db8::25", 25)
    with pytest.raises(ConfigError, match="port must be a number"):
        smtp_server("mail.example.org:smtp")


def test_a_folder_kept_in_utf8_on_disk_is_found_too(tmp_path: Path, split: tuple[list[CorpusMessage],
                                                                                 list[CorpusMessage]]) -> None:
    """Dovecot with its ":UTF-8" mail_location option keeps names as written (.Müll);
    where only that folder is there, the sweep uses it. Where both are, the modified
    UTF-7 one, which Dovecot and Courier make by default, wins."""
    spam = [m.data for m in split[0] if m.label == "spam"][:3]
    (tmp_path / "users" / "alice").mkdir(parents=True)
    maildir = mailbox.Maildir(tmp_path / "users" / "alice" / "Maildir", create=True)
    for data in spam[:2]:
        maildir.add_folder("Müll").add(data)
    pattern, db = f"{tmp_path}/users/{{user}}/Maildir", str(tmp_path / "db")
    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml", SPAMKIT_SPAMFOLDER="Müll")
    learned = subprocess.run([sys.executable, "-m", "spamkit", "learn", "--maildirs", pattern, "--db", db,
                              "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert learned.returncode == 0, learned.stderr
    assert json.loads(learned.stdout)["totals"]["spam_learned"] == 2
    maildir.add_folder("Müll").add(spam[2])
    maildir.add_folder("M&APw-ll").add(spam[2])  # (both now: the encoded one is read)
    assert folder_path(maildir_path := tmp_path / "users" / "alice" / "Maildir", "Müll") == \
        maildir_path / ".M&APw-ll"


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_folder_names_on_disk_are_imaps_modified_utf7(name: str) -> None:
    """Our encoder (trainer/maildir.modified_utf7, kept out of imapclient for `deliver`'s
    start-up) writes every name as imapclient's does, and imapclient reads it back."""
    from imapclient import imap_utf7

    encoded = modified_utf7(name)
    assert encoded == imap_utf7.encode(name).decode("ascii")
    assert imap_utf7.decode(encoded.encode("ascii")) == name
    assert encoded.isascii()
