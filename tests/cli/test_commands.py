"""The `spamkit` command as scripts use it: real processes, exit codes and --json fields."""

from __future__ import annotations

import json
import mailbox
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.store.base import today
from tests.engine.lmdbdamage import DAMAGES, damage


def spamkit(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args], input=stdin.decode("latin-1")
                          if stdin is not None else None, capture_output=True, text=True,
                          env=env, timeout=300, encoding="latin-1")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory,
            split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> dict[str, Path]:
    """250 spam as a directory of files, 250 ham as a Maildir, 20 test messages as an mbox."""
    root = tmp_path_factory.mktemp("cli")
    train, test = split
    spam_dir = root / "spam"
    spam_dir.mkdir()
    for message in [m for m in train if m.label == "spam"][:250]:
        (spam_dir / message.path.replace("/", "_")).write_bytes(message.data)
    maildir = mailbox.Maildir(root / "ham", create=True)
    for message in [m for m in train if m.label == "ham"][:250]:
        maildir.add(message.data)
    box = mailbox.mbox(root / "test.mbox")
    for message in test[:20]:
        box.add(message.data)
    box.flush()
    return {"spam": spam_dir, "ham": root / "ham", "mbox": root / "test.mbox",
            "one": spam_dir / sorted(p.name for p in spam_dir.iterdir())[0]}


def test_learn_check_and_magic(tmp_path: Path, folders: dict[str, Path]) -> None:
    db = str(tmp_path / "db")
    spam = spamkit("learn", "--spam", str(folders["spam"]), "--db", db, "--json")
    assert spam.returncode == 0, spam.stderr
    result = json.loads(spam.stdout)
    assert {"learned", "relearned", "skipped", "failed", "seconds"} <= result.keys()
    assert result["learned"] == 250
    ham = json.loads(spamkit("learn", "--ham", str(folders["ham"]), "--db", db, "--json").stdout)
    assert ham["learned"] == 250
    again = json.loads(spamkit("learn", "--ham", str(folders["ham"]), "--db", db, "--json").stdout)
    assert again["skipped"] == 250 and again["learned"] == 0

    magic = json.loads(spamkit("db", "magic", "--db", db, "--json").stdout)
    assert (magic["nspam"], magic["nham"]) == (250, 250) and magic["ntokens"] > 1000

    checked = spamkit("check", "--db", db, "--json", str(folders["mbox"]))
    assert checked.returncode == 0, checked.stderr
    lines = [json.loads(line) for line in checked.stdout.splitlines()]
    assert len(lines) == 20
    for line in lines:
        assert line["verdict"] in ("ham", "spam", "reject")
        assert line["bayes_verdict"] in ("ham", "unsure", "spam")
        assert 0.0 <= line["bayes"] <= 1.0
        assert line["path"].startswith(str(folders["mbox"]))
        assert {"score", "required", "rules", "autolearn"} <= line.keys()

    explained = spamkit("check", "--db", db, "--explain", str(folders["one"]))
    assert explained.returncode == 0 and "spam" in explained.stdout.splitlines()[0]
    assert len(explained.stdout.splitlines()) > 5


def test_stdin_relearn_and_forget(tmp_path: Path, folders: dict[str, Path]) -> None:
    db = str(tmp_path / "db")
    message = folders["one"].read_bytes()
    first = json.loads(spamkit("learn", "--ham", "-", "--db", db, "--json", stdin=message).stdout)
    moved = json.loads(spamkit("learn", "--spam", "-", "--db", db, "--json", stdin=message).stdout)
    gone = json.loads(spamkit("learn", "--forget", "-", "--db", db, "--json", stdin=message).stdout)
    assert (first["learned"], moved["relearned"], gone["forgotten"]) == (1, 1, 1)
    magic = json.loads(spamkit("db", "magic", "--db", db, "--json").stdout)
    assert (magic["nspam"], magic["nham"], magic["ntokens"]) == (0, 0, 0)
    again = spamkit("learn", "--forget", "-", "--db", db, stdin=message)
    assert "forgotten: 0, not learned: 1" in again.stdout  # (it said "relearned: 0, already known: 1")
    # a mistyped --db made an empty database, and then said nothing was there to forget
    missing = spamkit("learn", "--forget", "-", "--db", str(tmp_path / "dbb"), stdin=message)
    assert missing.returncode == 74 and "no spamkit database at" in missing.stderr
    assert not (tmp_path / "dbb").exists()


def test_untrained_database_abstains(tmp_path: Path, folders: dict[str, Path]) -> None:
    db = str(tmp_path / "db")
    spamkit("learn", "--spam", str(folders["one"]), "--db", db)
    out = json.loads(spamkit("check", "--db", db, "--json", str(folders["one"])).stdout)
    assert out["bayes"] is None and out["bayes_verdict"] == "unsure"
    assert "not enough learned" in out["reason"]
    assert not [r for r in out["rules"] if r["name"].startswith("BAYES_")]


def test_errors_are_one_line_and_an_exit_code(tmp_path: Path, folders: dict[str, Path]) -> None:
    missing_db = spamkit("check", "--db", str(tmp_path / "nothing"), str(tmp_path))
    assert missing_db.returncode == 74
    assert missing_db.stderr.startswith("spamkit: error: no spamkit database")
    assert "Traceback" not in missing_db.stderr
    assert not (tmp_path / "nothing").exists()
    rules_alone = spamkit("check", "--db", str(tmp_path / "nothing"), "--json", str(folders["one"]),
                          env=dict(os.environ, SPAMKIT_USEBAYES="false"))  # as the help says
    assert rules_alone.returncode == 0 and json.loads(rules_alone.stdout)["bayes"] is None
    assert not (tmp_path / "nothing").exists()

    no_mode = spamkit("learn", str(tmp_path), "--db", str(tmp_path / "db"))
    assert no_mode.returncode == 2 and "--spam, --ham or --forget" in no_mode.stderr

    # PATHs belong to no flag: this taught every message as ham (the last flag), silently
    both = spamkit("learn", "--spam", str(tmp_path), "--ham", str(tmp_path), "--db", str(tmp_path / "db"))
    assert both.returncode == 2 and "--ham and --spam given together" in both.stderr
    assert not (tmp_path / "db").exists()
    (tmp_path / "empty").mkdir()
    repeated = spamkit("learn", "--spam", "--spam", str(tmp_path / "empty"), "--db", str(tmp_path / "db"), "--json")
    assert repeated.returncode == 0 and json.loads(repeated.stdout)["learned"] == 0
    # the sweep's options were ignored: a --dry-run learned for real
    dry = spamkit("learn", "--spam", "--dry-run", str(folders["one"]), "--db", str(tmp_path / "db"))
    assert dry.returncode == 2 and "--dry-run is for the sweep" in dry.stderr
    assert not (tmp_path / "db").exists()  # (nor did the empty directory make a database)

    # a mistyped PATH made an empty database at --db, which check took for one that had
    # learned nothing (and so did train)
    unreadable = spamkit("learn", "--spam", str(tmp_path / "no-such-file"), "--db",
                         str(tmp_path / "db"), "--json")
    assert unreadable.returncode == 1
    assert json.loads(unreadable.stdout)["failures"][0]["reason"] == "No such file or directory"
    said = spamkit("learn", "--spam", str(tmp_path / "no-such-file"), "--db", str(tmp_path / "db"))
    assert said.returncode == 1 and "not one message could be read, so no database was made" in said.stderr
    trained = spamkit("train", "--spam", str(tmp_path / "no-such-file"), "--ham", str(tmp_path / "empty"),
                      "--db", str(tmp_path / "db"), "--json")
    assert trained.returncode == 1 and json.loads(trained.stdout)["failed"] == 1
    assert not (tmp_path / "db").exists()
    checked = spamkit("check", str(folders["one"]), "--db", str(tmp_path / "db"))
    assert checked.returncode == 74  # (no database: what check says when there is none)
    # with a database there, the run is as before: each failure counted, the database kept
    spamkit("learn", "--spam", str(folders["one"]), "--db", str(tmp_path / "db"))
    again = spamkit("learn", "--ham", str(tmp_path / "no-such-file"), "--db", str(tmp_path / "db"), "--json")
    assert again.returncode == 1 and json.loads(again.stdout)["failed"] == 1
    assert json.loads(spamkit("db", "magic", "--db", str(tmp_path / "db"), "--json").stdout)["nspam"] >= 1


def test_output_that_cannot_be_written_is_exit_74(tmp_path: Path, folders: dict[str, Path]) -> None:
    """A dump or a report to a full disk (/dev/full) is one line and EX_IOERR, not an
    internal error, and nothing more is said when the interpreter exits."""
    db = str(tmp_path / "db")
    assert spamkit("learn", "--spam", str(folders["spam"]), "--db", db).returncode == 0
    for args in (["db", "dump"], ["db", "dump", "/dev/full"], ["db", "magic", "--json"],
                 ["check", "--json", str(folders["one"])]):
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "spamkit", *args, "--db", db], stdout=full,
                                    stderr=subprocess.PIPE, text=True, timeout=120)
        assert result.returncode == 74, args
        named = "cannot write the dump to /dev/full: " if "/dev/full" in args else ""
        assert result.stderr == f"spamkit: error: {named}No space left on device\n", args
    assert Path("/dev/full").is_char_device()  # written to as it is, never replaced by a file


def test_dump_restore_expire_reset(tmp_path: Path, folders: dict[str, Path]) -> None:
    db, copy = str(tmp_path / "db"), str(tmp_path / "copy")
    spamkit("learn", "--spam", str(folders["spam"]), "--db", db)
    dump_file = tmp_path / "dump.txt"
    assert spamkit("db", "dump", str(dump_file), "--db", db).returncode == 0
    assert dump_file.read_text().startswith("spamkit-dump 1\n")
    assert spamkit("db", "restore", str(dump_file), "--db", copy).returncode == 0
    assert spamkit("db", "dump", "--db", copy).stdout == dump_file.read_text()

    expired = json.loads(spamkit("db", "expire", "--max-tokens", "100", "--db", copy, "--json").stdout)
    assert expired["ntokens"] == 100 and expired["removed"] > 0
    assert (expired["seen_removed"], expired["events_removed"]) == (0, 0)  # all learned today

    # learned 400 days ago: the seen marks and audit events go, the counts stay
    long_ago = today() - 400
    aged = re.sub(r"(?m)^seen (\S+) (\S+) \d+( \S+)?$", rf"seen \1 \2 {long_ago}\3", dump_file.read_text())
    aged = re.sub(r"(?m)^event (\w{32})\w{16} ", lambda m: f"event {m[1]}{long_ago * 86400 * 10**9:016x} ", aged)
    dump_file.write_text(aged)
    assert spamkit("db", "restore", str(dump_file), "--db", copy).returncode == 0
    learned = json.loads(spamkit("db", "magic", "--db", copy, "--json").stdout)
    # the defaults are the configuration's, as learning keeps to them: BayesSeenDays 0
    # remembers every message, and BayesMaxTokens is how many tokens stay
    config = tmp_path / "spamkit.toml"
    config.write_text(f"BayesSeenDays = 0\nBayesMaxTokens = 1000\nDatabase = '{copy}'\n")
    assert spamkit("db", "path", "--config", str(config)).stdout == f"{copy}\n"
    done = spamkit("db", "expire", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    kept = json.loads(done.stdout)
    assert (kept["ntokens"], kept["seen_removed"], kept["events_removed"]) == (1000, 0, 0)
    assert kept["removed"] == learned["ntokens"] - 1000 > 0
    done = spamkit("db", "expire", "--db", copy, "--json")
    assert done.returncode == 0, done.stderr
    forgot = json.loads(done.stdout)
    assert forgot["seen_removed"] == forgot["events_removed"] == learned["nseen"] > 0
    magic = json.loads(spamkit("db", "magic", "--db", copy, "--json").stdout)
    assert (magic["nseen"], magic["nevents"], magic["nspam"]) == (0, 0, learned["nspam"])
    # a mistyped --db made an empty database, then said it expired nothing
    missing = spamkit("db", "expire", "--db", str(tmp_path / "cpy"))
    assert missing.returncode == 74 and "no spamkit database at" in missing.stderr
    assert not (tmp_path / "cpy").exists()

    # a bad dump (binary bytes, here after two good lines) is bad input: exit 65, its
    # line named, the database as it was
    before = spamkit("db", "dump", "--db", copy).stdout
    binary = tmp_path / "binary.dump"
    binary.write_bytes(b"spamkit-dump 1\nmeta nspam 3\n\xff\xfe\x00token\n")
    bad = spamkit("db", "restore", str(binary), "--db", copy)
    assert bad.returncode == 65 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "spamkit: error: dump line 3: not UTF-8 text; is this a spamkit dump?"
    assert spamkit("db", "dump", "--db", copy).stdout == before
    # the same dump with no database there: none is left behind (an empty one was, which
    # `check` then took for a database that has learned nothing)
    nowhere = tmp_path / "new" / "db"
    bad = spamkit("db", "restore", str(binary), "--db", str(nowhere))
    assert bad.returncode == 65 and not nowhere.exists() and (tmp_path / "new").is_dir()
    assert spamkit("db", "restore", str(dump_file), "--db", str(nowhere)).returncode == 0
    assert json.loads(spamkit("db", "magic", "--db", str(nowhere), "--json").stdout)["nspam"] > 0

    refused = spamkit("db", "reset", "--db", db)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert spamkit("db", "reset", "--yes", "--db", db).returncode == 0
    magic = json.loads(spamkit("db", "magic", "--db", db, "--json").stdout)
    assert (magic["nspam"], magic["ntokens"]) == (0, 0)


@pytest.mark.parametrize("damage", ["cut short", "garbage"])
def test_a_damaged_database_is_an_error_then_reset_and_restored(
        tmp_path: Path, folders: dict[str, Path], damage: str) -> None:
    """A data file cut short (a copy that stopped part way) would be read past its end
    through LMDB's memory map, a SIGBUS; a file of garbage is not LMDB at all. Either is
    a one-line error with exit 65 from every command, `stats` still counts the folders,
    and `db reset --yes` moves the damage aside so that a dump can be restored."""
    good = tmp_path / "good"
    assert spamkit("learn", "--spam", str(folders["spam"]), "--db", str(good)).returncode == 0
    dump_file = tmp_path / "dump.txt"
    assert spamkit("db", "dump", str(dump_file), "--db", str(good)).returncode == 0
    db = tmp_path / "damaged"
    db.mkdir(mode=0o700)
    data = (good / "data.mdb").read_bytes()
    (db / "data.mdb").write_bytes(data[: len(data) // 3] if damage == "cut short"
                                  else bytes(range(256)) * 400)
    expected = "is cut short" if damage == "cut short" else "is damaged"
    for command in (["db", "magic"], ["check", str(folders["mbox"])], ["learn", "--ham", str(folders["ham"])],
                    ["db", "dump"], ["learn", "--maildirs", str(tmp_path / "{user}"), "--dry-run"]):
        result = spamkit(*command, "--db", str(db))
        assert result.returncode == 65, (command, result.returncode, result.stderr)
        assert expected in result.stderr and "db reset --yes" in result.stderr
        assert "Traceback" not in result.stderr
    (tmp_path / "alice").mkdir()
    mailbox.Maildir(tmp_path / "alice" / "Maildir", create=True).add_folder("LearnAsSpam")
    stats = spamkit("stats", "--maildirs", str(tmp_path / "{user}" / "Maildir"), "--db", str(db), "--json")
    assert stats.returncode == 65 and expected in json.loads(stats.stdout)["db_error"]
    assert json.loads(stats.stdout)["users"][0]["user"] == "alice"

    reset = spamkit("db", "reset", "--yes", "--db", str(db))
    assert reset.returncode == 0 and "moved the damaged database aside" in reset.stderr
    assert len(list(db.glob("data.mdb.damaged-*"))) == 1
    assert spamkit("db", "restore", str(dump_file), "--db", str(db)).returncode == 0
    assert spamkit("db", "dump", "--db", str(db)).stdout == dump_file.read_text()


@pytest.mark.parametrize("damage", ["a page of the wrong type", "a meta value not UTF-8"])
def test_damage_inside_a_file_that_opens_is_exit_65_and_reset_sets_it_aside(
        tmp_path: Path, folders: dict[str, Path], damage: str) -> None:
    """Damage LMDB itself notices while reading (the token tree's root page marked as an
    overflow page), or a text value that is not text: every command that meets it says the
    database is damaged and exits 65, not an internal error; `db reset --yes`, whose
    emptying meets it too, moves the file aside and starts an empty one."""
    import struct

    import lmdb

    db = tmp_path / "db"
    assert spamkit("learn", "--spam", str(folders["spam"]), "--db", str(db)).returncode == 0
    assert spamkit("learn", "--ham", str(folders["ham"]), "--db", str(db)).returncode == 0  # (Bayes judges)
    env = lmdb.open(str(db), max_dbs=8)
    if damage == "a page of the wrong type":
        with env.begin() as txn:  # the MDB_db record of the tokens table: its root page last
            root = struct.unpack("<IHHQQQQQ", txn.get(b"tokens"))[-1]
        env.close()
        with open(db / "data.mdb", "r+b") as data:
            data.seek(root * 4096 + 10)  # the page header's flags
            data.write(struct.pack("<H", 0x04))  # P_OVERFLOW
        commands = [["check", str(folders["mbox"])], ["db", "dump"], ["learn", "--spam", str(folders["mbox"])]]
    else:
        with env.begin(write=True) as txn:
            txn.put(b"tokenizer", b"\xff\xfe", db=env.open_db(b"meta", txn=txn))
        env.close()
        commands = [["db", "magic"], ["db", "dump"]]
    for command in commands:
        result = spamkit(*command, "--db", str(db))
        assert result.returncode == 65, (command, result.returncode, result.stderr)
        assert "is damaged" in result.stderr and "db reset --yes" in result.stderr
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    reset = spamkit("db", "reset", "--yes", "--db", str(db))
    assert reset.returncode == 0, reset.stderr
    if damage == "a page of the wrong type":  # (a bad meta value is simply emptied)
        assert "moved the damaged database aside" in reset.stderr
        assert len(list(db.glob("data.mdb.damaged-*"))) == 1
    assert json.loads(spamkit("db", "magic", "--db", str(db), "--json").stdout)["nspam"] == 0


@pytest.fixture(scope="module")
def learned_db(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path]) -> Path:
    """A database that has learned the spam and the ham folders (its byte model too)."""
    db = tmp_path_factory.mktemp("learned") / "db"
    assert spamkit("learn", "--spam", str(folders["spam"]), "--db", str(db)).returncode == 0
    assert spamkit("learn", "--ham", str(folders["ham"]), "--db", str(db)).returncode == 0
    return db


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_page_header_is_exit_65_not_a_crash(
        tmp_path: Path, folders: dict[str, Path], learned_db: Path, kind: str) -> None:
    """LMDB trusts every page header it reads: one damaged field made `db magic`, `db
    dump`, `db expire`, the cron job and `db reset` die of SIGSEGV or SIGBUS, or abort
    on an assertion, with no word of why. The file is now walked first (`db verify`),
    and each says the database is damaged, exits 65 and changes nothing; `db dump
    --salvage` reads what LMDB can; `db reset --yes` sets the file aside, and a dump
    restores into the new one."""
    dump_file = tmp_path / "dump.txt"
    assert spamkit("db", "dump", str(dump_file), "--db", str(learned_db)).returncode == 0
    db = tmp_path / "db"
    shutil.copytree(learned_db, db)
    damage(db, kind)
    damaged_bytes = (db / "data.mdb").read_bytes()
    maildirs = tmp_path / "users"
    (maildirs / "alice").mkdir(parents=True)
    inbox = mailbox.Maildir(maildirs / "alice" / "Maildir", create=True).add_folder("LearnAsSpam")
    inbox.add(mailbox.mbox(folders["mbox"])[0].as_bytes())  # (one not learned yet)
    for command in (["db", "verify"], ["db", "magic"], ["db", "dump"], ["db", "expire", "--max-tokens", "100"],
                    ["learn", "--ham", str(folders["mbox"])], ["db", "restore", str(dump_file)],
                    ["learn", "--maildirs", str(maildirs / "{user}" / "Maildir")]):
        result = spamkit(*command, "--db", str(db))
        assert result.returncode == 65, (command, result.returncode, result.stderr[-300:])
        assert "damaged" in result.stderr and "db reset --yes" in result.stderr, command
    assert len(inbox) == 1  # (nothing learned, so nothing taken from the folder)
    assert (db / "data.mdb").read_bytes() == damaged_bytes
    verified = json.loads(spamkit("db", "verify", "--json", "--db", str(db)).stdout)
    assert verified["sound"] is False and verified["problems"]
    if kind in ("page number", "overflow page header"):  # (LMDB reads past these two)
        salvaged = spamkit("db", "dump", "--salvage", "--db", str(db))
        assert salvaged.returncode == 0 and salvaged.stdout == dump_file.read_text()
    assert json.loads(spamkit("db", "verify", "--json", "--db", str(learned_db)).stdout) == {
        "path": str(learned_db), "sound": True, "problems": []}

    reset = spamkit("db", "reset", "--yes", "--db", str(db))
    assert reset.returncode == 0 and "moved the damaged database aside" in reset.stderr
    assert spamkit("db", "restore", str(dump_file), "--db", str(db)).returncode == 0
    assert spamkit("db", "verify", "--db", str(db)).returncode == 0
    assert spamkit("db", "dump", "--db", str(db)).stdout == dump_file.read_text()


def test_a_damaged_record_met_while_learning_is_exit_65(tmp_path: Path, folders: dict[str, Path]) -> None:
    """One token record of the wrong length (damage inside a file that opens): learning
    stops at the batch that meets it, reports what it committed, and exits 65 (damage,
    restore a dump) rather than 74 (a disk fault); so do the commands that read it."""
    import lmdb

    from spamkit.analysis import Analyzer

    db = tmp_path / "db"
    assert spamkit("learn", "--spam", str(folders["spam"]), "--db", str(db)).returncode == 0
    assert spamkit("learn", "--ham", str(folders["ham"]), "--db", str(db)).returncode == 0
    ham = tmp_path / "message"
    ham.write_bytes(mailbox.mbox(folders["mbox"])[0].as_bytes())
    key = sorted(Analyzer().analyze(ham.read_bytes()).hashes)[0]
    env = lmdb.open(str(db), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(key, b"\x01\x02\x03", db=env.open_db(b"tokens", txn=txn))
    env.close()

    learned = spamkit("learn", "--ham", str(ham), "--db", str(db), "--json")
    assert learned.returncode == 65, learned.stderr
    assert "damaged" in json.loads(learned.stdout)["error"] and "Traceback" not in learned.stderr
    for command in (["check", str(ham)], ["db", "magic"], ["db", "expire", "--max-tokens", "100"],
                    ["db", "dump"]):
        result = spamkit(*command, "--db", str(db))
        assert result.returncode == 65, (command, result.returncode, result.stderr)
        assert "damaged" in result.stderr and "db reset --yes" in result.stderr


def test_a_damaged_audit_event_is_exit_65_not_an_internal_error(tmp_path: Path, learned_db: Path) -> None:
    """An audit event that is not text was decoded outside the dump's read transaction,
    which was then still open when the store closed: `db dump` and `db verify` said
    "internal error" (exit 70). They now say the database is damaged (65)."""
    import lmdb

    db = tmp_path / "db"
    shutil.copytree(learned_db, db)
    env = lmdb.open(str(db), max_dbs=8)
    with env.begin(write=True) as txn:
        history = env.open_db(b"history", txn=txn)
        key = next(iter(txn.cursor(db=history).iternext(values=False)))
        txn.put(key, b'{"action": "\xff\xfe"}', db=history)
    env.close()
    for command in (["db", "dump"], ["db", "verify"]):
        result = spamkit(*command, "--db", str(db))
        assert result.returncode == 65, (command, result.returncode, result.stderr[-300:])
        assert "damaged" in result.stderr and "internal error" not in result.stderr


def test_a_dump_that_fails_part_way_leaves_the_last_backup_whole(tmp_path: Path, learned_db: Path) -> None:
    """`db dump FILE` wrote into FILE as it went: a nightly backup that met a damaged
    record half way (or a full disk) replaced the last good backup with half of a dump,
    just when the backup was needed. It now replaces FILE only with a whole dump."""
    import lmdb

    backup = tmp_path / "backups" / "spamkit.dump"
    backup.parent.mkdir()
    assert spamkit("db", "dump", str(backup), "--db", str(learned_db)).returncode == 0
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # (as private as the database)
    good = backup.read_text()
    assert good.splitlines()[-1].startswith("end ")
    db = tmp_path / "db"
    shutil.copytree(learned_db, db)
    env = lmdb.open(str(db), max_dbs=8)
    with env.begin(write=True) as txn:  # the last token record, so the dump fails near its end
        txn.put(b"\xff" * 8, b"\x01\x02\x03", db=env.open_db(b"tokens", txn=txn))
    env.close()
    failed = spamkit("db", "dump", str(backup), "--db", str(db))
    assert failed.returncode == 65 and "not 12 bytes" in failed.stderr
    assert backup.read_text() == good
    assert sorted(p.name for p in backup.parent.iterdir()) == ["spamkit.dump"]
    nowhere = spamkit("db", "dump", str(tmp_path / "missing" / "x.dump"), "--db", str(learned_db))
    assert nowhere.returncode == 74 and "cannot write the dump to" in nowhere.stderr


def test_db_path_follows_option_and_environment(tmp_path: Path) -> None:
    assert spamkit("db", "path", "--db", "/srv/x").stdout.strip() == "/srv/x"
    import os
    env = dict(os.environ, SPAMKIT_DB=str(tmp_path / "envdb"))
    assert spamkit("db", "path", env=env).stdout.strip() == str(tmp_path / "envdb")


def test_learn_expires_above_max_tokens(tmp_path: Path, folders: dict[str, Path]) -> None:
    db = str(tmp_path / "db")
    out = json.loads(spamkit("learn", "--spam", str(folders["spam"]), "--db", db, "--json",
                             "--max-tokens", "5000").stdout)
    assert out["expired"] > 0
    magic = json.loads(spamkit("db", "magic", "--db", db, "--json").stdout)
    assert magic["ntokens"] == 3750 and magic["last_expire_removed"] == out["expired"]


def test_batch_commands_restore_the_garbage_collector() -> None:
    import gc

    from spamkit.cli import batch_garbage_collection

    before, seen = gc.get_threshold(), {}

    @batch_garbage_collection
    def work(fail: bool) -> None:
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()
        if fail:
            raise RuntimeError("boom")

    work(False)
    assert seen["threshold"][0] == 100_000 and seen["frozen"] > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError):
        work(True)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


_THREADS_AFTER_NUMPY = """
import os, sys
from spamkit.cli import main
main(["--version"], standalone_mode=False)
import numpy
print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")))
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "2")])
def test_the_command_keeps_numpy_to_one_thread_unless_told(given: str | None, expected: str) -> None:
    """numpy's OpenBLAS starts a thread a core at import, which a spamkit command never
    uses (~0.1 s of CPU a process); an OPENBLAS_NUM_THREADS the admin set is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    result = subprocess.run([sys.executable, "-c", _THREADS_AFTER_NUMPY], capture_output=True, text=True,
                            env=env, timeout=60, check=True)
    setting, threads = result.stdout.split()[-2:]
    assert setting == expected
    if given is None:
        assert threads == "1"  # (the main thread alone: no BLAS threads started)


_MODULES_AFTER = """
import sys
from spamkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)))
"""
# what a one-message `check` or `deliver` never needs, and would pay for at every start: the
# SMTP server and its checks, IMAP, Redis, the email package's policies, Pyzor's client
_NOT_AT_START = ("smtpfilter", "aiosmtpd", "dns", "imapclient", "redis", "email.policy", "email.parser",
                 "pyzor", "spamkit.pyzor", "sklearn", "mailparser", "dkim", "spf")


def test_check_and_deliver_load_nothing_they_do_not_use(tmp_path: Path, trained_db: Path,
                                                        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """A process a message (deliver from .qmail, check from a script) pays for every
    module it imports; these are imported only by the commands that use them."""
    message = tmp_path / "m.eml"
    message.write_bytes(split[1][0].data)
    (tmp_path / "u" / "Maildir" / "cur").mkdir(parents=True)
    for arguments, stdin in ((["check", "--db", str(trained_db), str(message)], None),
                             (["deliver", "u", "--maildirs", f"{tmp_path}/{{user}}/Maildir", "--db",
                               str(trained_db)], split[1][0].data)):
        done = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *arguments], input=stdin,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        loaded = done.stdout.decode().split("\n")[-2].split()
        assert [name for name in loaded if name.split(".")[0] in _NOT_AT_START or name in _NOT_AT_START] == [], \
            arguments[0]


def test_config_set_and_unset_say_a_running_filter_needs_a_reload(tmp_path: Path) -> None:
    """serve and spamd read the configuration at start and at SIGHUP only; the list file
    they read again by themselves, so `wbl add` has no such note."""
    config = tmp_path / "spamkit.toml"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "spamkit", *args, "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result

    note = "takes this at its next reload (systemctl reload spamkit-filter spamkit-spamd)"
    assert note in run("config", "set", "SortSpam", "true").stderr
    assert note in run("config", "unset", "SortSpam").stderr
    assert note not in run("config", "unset", "SortSpam").stderr  # (nothing changed)
    assert "reload" not in run("wbl", "add", "black", "*@spam.example").stderr
