"""`spamkit db compact`: the file shrinks to its pages in use, every record stays, and it
never runs under a process that has the database open (whose writes would be lost)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spamkit.store import LmdbStore
from spamkit.store.compact import TEMPORARY_NAME
from tests.engine.dbstate import database_state
from tests.engine.lmdbdamage import DAMAGES, damage
from tests.servers.tmpfs import small_disk


def spamkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml"))


@pytest.fixture(scope="module")
def expired_db(tmp_path_factory: pytest.TempPathFactory, trained_db: Path) -> Path:
    """The trained database expired to 20,000 tokens: most of its file is free pages."""
    path = tmp_path_factory.mktemp("expired") / "db"
    shutil.copytree(trained_db, path)
    with LmdbStore(path) as store:
        store.expire(20_000)
    return path


@pytest.fixture
def db(tmp_path: Path, expired_db: Path) -> Path:
    path = tmp_path / "db"
    shutil.copytree(expired_db, path)
    return path


def dump_text(path: Path) -> str:
    out = io.StringIO()
    with LmdbStore(path) as store:
        store.dump(out)
    return out.getvalue()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compact_shrinks_the_file_to_its_pages_in_use_and_keeps_every_record(db: Path) -> None:
    before_text, before_state = dump_text(db), database_state(db)
    size = (db / "data.mdb").stat().st_size
    done = spamkit("db", "compact", "--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["before"] == size and report["after"] == (db / "data.mdb").stat().st_size
    assert report["after"] < size / 2  # (18.9 MiB to 4.1 here)
    assert dump_text(db) == before_text and database_state(db) == before_state
    assert spamkit("db", "verify", "--db", str(db)).returncode == 0
    assert sorted(p.name for p in db.iterdir()) == ["data.mdb", "lock.mdb"]
    with LmdbStore(db) as store:  # and it is written to as before
        store.set_meta("after_compaction", "yes")
    assert LmdbStore(db, readonly=True).meta_value("after_compaction") == "yes"

    assert spamkit("db", "compact", "--db", str(db.parent / "none")).returncode == 74
    assert not (db.parent / "none").exists()
    redis = spamkit("db", "compact", "--db", "redis://127.0.0.1:1/0")
    assert redis.returncode == 2 and "LMDB" in redis.stderr


@pytest.fixture
def holder(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with the database open (as `serve` keeps it), until the test ends."""
    process = subprocess.Popen([sys.executable, "-c", "import sys\nfrom spamkit.store import LmdbStore\n"
                                f"store = LmdbStore({str(db)!r})\nprint('open', flush=True)\nsys.stdin.read()"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "open\n"
    yield process
    process.kill()
    process.wait(10)


def test_compact_refuses_a_database_another_process_has_open(db: Path, holder: subprocess.Popen[str]) -> None:
    inode, content = (db / "data.mdb").stat().st_ino, digest(db / "data.mdb")
    refused = spamkit("db", "compact", "--db", str(db))
    assert refused.returncode == 75  # (EX_TEMPFAIL: a cron job may try again later)
    assert f"pid {holder.pid}: " in refused.stderr and "LmdbStore" in refused.stderr
    assert "stop `spamkit serve`" in refused.stderr and "\n" not in refused.stderr.rstrip("\n")
    assert (db / "data.mdb").stat().st_ino == inode and digest(db / "data.mdb") == content
    assert not (db / TEMPORARY_NAME).exists()


def _stopped_holding_the_lock(db: Path) -> subprocess.Popen[str]:
    """A `db compact` stopped (SIGSTOP) while it holds the database alone."""
    lock_inode = (db / "lock.mdb").stat().st_ino
    for _attempt in range(20):
        compaction = subprocess.Popen([sys.executable, "-m", "spamkit", "db", "compact", "--db", str(db)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while compaction.poll() is None:
            if re.search(rf"WRITE\s+{compaction.pid}\s+\S+:{lock_inode} ", Path("/proc/locks").read_text()):
                compaction.send_signal(signal.SIGSTOP)
                return compaction
        compaction.wait()
    pytest.fail("never caught the compaction holding the lock")


def test_a_process_that_opens_the_database_meanwhile_waits_then_writes_into_the_new_file(db: Path) -> None:
    """LMDB makes an opener wait while the lock is held alone. The lock file then still
    described the old file, and the opener's first write found the database "damaged"
    (no meta page holds transaction 3): compaction now has LMDB set the lock file up for
    the new file before it lets go."""
    before = database_state(db)
    compaction = _stopped_holding_the_lock(db)
    opener = subprocess.Popen([sys.executable, "-c", "from spamkit.store import LmdbStore\n"
                               f"store = LmdbStore({str(db)!r})\nstore.set_meta('witness', 'written')\n"
                               "print(store.totals().nspam)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(1.0)
    assert opener.poll() is None  # waiting inside LMDB's open
    compaction.send_signal(signal.SIGCONT)
    assert compaction.wait(60) == 0, compaction.stderr.read() if compaction.stderr else ""
    out, err = opener.communicate(timeout=60)
    assert opener.returncode == 0, err
    assert int(out) == before[0].nspam
    with LmdbStore(db) as store:
        assert store.meta_value("witness") == "written" and not store.verify()
    assert database_state(db) == before


@pytest.mark.slow
def test_kill_9_during_compaction_leaves_the_old_file_or_the_new_one(tmp_path: Path, expired_db: Path) -> None:
    before = database_state(expired_db)
    old_size = (expired_db / "data.mdb").stat().st_size
    rng = random.Random(7)
    outcomes = []
    for kill in range(12):
        db = tmp_path / f"db{kill}"
        shutil.copytree(expired_db, db)
        process = subprocess.Popen([sys.executable, "-m", "spamkit", "db", "compact", "--db", str(db)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        outcomes.append((db / "data.mdb").stat().st_size < old_size)
        assert database_state(db) == before
        with LmdbStore(db, readonly=True) as store:
            assert not store.verify()
        done = spamkit("db", "compact", "--db", str(db))  # (and a crashed run's copy is removed)
        assert done.returncode == 0 and not (db / TEMPORARY_NAME).exists(), done.stderr
        assert database_state(db) == before
        shutil.rmtree(db)
    assert any(outcomes) and not all(outcomes)  # (kills landed on both sides of the rename)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_the_new_file_keeps_the_old_files_owner_and_mode(db: Path) -> None:
    """The cron job runs as root; the database belongs to the service's user, who must
    still be able to write it afterwards."""
    shutil.chown(db, "nobody", "nogroup")
    shutil.chown(db / "data.mdb", "nobody", "nogroup")
    os.chmod(db / "data.mdb", 0o640)
    (db / "lock.mdb").unlink()  # (LMDB makes it again; so does compaction, for the same user)
    assert spamkit("db", "compact", "--db", str(db)).returncode == 0
    data, lock = (db / "data.mdb").stat(), (db / "lock.mdb").stat()
    assert (data.st_uid, data.st_gid, data.st_mode & 0o777) == (65534, 65534, 0o640)
    assert (lock.st_uid, lock.st_gid) == (65534, 65534)


def test_a_disk_without_room_for_the_copy_changes_nothing(tmp_path: Path, expired_db: Path) -> None:
    size = (expired_db / "data.mdb").stat().st_size
    with small_disk(tmp_path / "disk", f"{(size >> 10) + 2048}k") as disk:  # 2 MiB beside the file
        db = disk / "db"
        shutil.copytree(expired_db, db)
        content = digest(db / "data.mdb")
        refused = spamkit("db", "compact", "--db", str(db))
        assert refused.returncode == 74
        assert re.search(r"needs \d+ MiB free beside it, and the disk has [012] MiB; nothing was changed",
                         refused.stderr), refused.stderr
        assert digest(db / "data.mdb") == content and not (db / TEMPORARY_NAME).exists()


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_file_is_refused_not_copied(db: Path, kind: str) -> None:
    """LMDB's compacting copy walks every tree and trusts every page header it meets; the
    file check goes first, so damage is exit 65 with the way out, never a crash or a copy
    of the damage."""
    damage(db, kind)
    content = digest(db / "data.mdb")
    refused = spamkit("db", "compact", "--db", str(db))
    assert refused.returncode == 65, refused.stderr
    assert "is damaged" in refused.stderr and "db reset --yes" in refused.stderr
    assert digest(db / "data.mdb") == content and not (db / TEMPORARY_NAME).exists()



# The filter's stores keep their LMDB environments open for the life of the process, so
# they are filled and read in processes of their own, and the compaction finds them free.
_FILL = r"""
import json, sys, time
from smtpfilter.plugins.greylist import GreylistStore
from smtpfilter.plugins.karma import KarmaStore

greylist, karma = sys.argv[1], sys.argv[2]
now = time.time()
store = GreylistStore(greylist, 60, 3600, 36 * 86400, 0)
for number in range(20_000):  # the last 200 arrive now; the rest never retried in time
    store.check(f"198.51.{number // 250}.0/24", f"s{number}@sender.example", "rcpt@ok.example",
                now if number >= 19_800 else now - 7200)
assert store.prune(now) == 19_800
KarmaStore(karma).update("a@sender.example", 1, 0, 3, 3)
"""
_READ = r"""
import json, sys
from smtpfilter.plugins.greylist import GreylistStore
from smtpfilter.plugins.karma import KarmaStore

print(json.dumps({"greylist": dict(GreylistStore(sys.argv[1], 60, 3600, 36 * 86400, 0).records.items()),
                  "karma": KarmaStore(sys.argv[2]).get("a@sender.example")}, sort_keys=True))
"""


def _in_a_process(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_filters_databases_are_compacted_too(tmp_path: Path, db: Path) -> None:
    """`db compact --filter-databases`: the filter's stores keep their records in LMDB's
    main tree, which compaction used to take for a list of tables (it failed on them);
    one in Redis, or not made yet, is passed over."""
    greylist, karma = tmp_path / "greylist", tmp_path / "karma"
    _in_a_process(_FILL, str(greylist), str(karma))
    kept = _in_a_process(_READ, str(greylist), str(karma))
    assert len(json.loads(kept)["greylist"]) >= 200 and json.loads(kept)["karma"]["good"] == 1
    config = tmp_path / "spamkit.toml"
    config.write_text(f'GreylistDatabase = "{greylist}"\nKarmaDatabase = "{karma}"\n'
                      'SendLimitDatabase = "redis://127.0.0.1:1/0"\n'
                      f'DmarcReportDatabase = "{tmp_path / "dmarc.sqlite"}"\n')
    size = (greylist / "data.mdb").stat().st_size
    done = spamkit("db", "compact", "--db", str(db), "--config", str(config), "--filter-databases", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["after"] < report["before"]  # the token database first, as without the option
    by_filter = {entry["filter"]: entry for entry in report["filters"]}
    assert by_filter["greylist"]["before"] == size and by_filter["greylist"]["after"] < size / 10
    assert by_filter["karma"]["path"] == str(karma) and "after" in by_filter["karma"]
    assert by_filter["sendlimit"]["skipped"] == "in Redis"
    assert _in_a_process(_READ, str(greylist), str(karma)) == kept  # every record, as it was

    text = spamkit("db", "compact", "--db", str(db), "--config", str(config), "--filter-databases")
    assert text.returncode == 0, text.stderr
    assert f"compacted greylist at {greylist}: " in text.stdout and "sendlimit at redis://" in text.stdout
    shutil.rmtree(greylist)
    gone = json.loads(spamkit("db", "compact", "--db", str(db), "--config", str(config),
                              "--filter-databases", "--json").stdout)
    assert [entry.get("skipped") for entry in gone["filters"]] == [None, "not made yet", "in Redis",
                                                                   "not made yet"]


def test_the_dmarc_report_records_are_compacted_too(tmp_path: Path, db: Path) -> None:
    """The dmarc filter's rows are in SQLite, which reuses the pages of the rows a sent
    report deletes but never shortens its file: a day of many sources left it at its
    largest. `db compact --filter-databases` VACUUMs it; the rows not sent stay as they were."""
    from smtpfilter.dmarcreports import Observation, ReportStore

    reports = tmp_path / "dmarc.sqlite"
    store = ReportStore(reports)
    for number in range(20_000):
        store.record(Observation("example.org", {"p": "none"}, ("mailto:d@example.org",),
                                 f"192.0.{number // 250}.{number % 250}", "example.org", "none",
                                 "pass", "fail", (("example.org", "s1", "pass"),), ("example.org", "fail")),
                     when=86400 * 20_000 if number < 19_900 else 86400 * 20_001)
    assert store.forget_before("2024-10-05") == 19_900  # (day 20,000 is 2024-10-04, 20,001 the 5th)
    kept = [(r.policy_domain, r.day, sorted(seen.source_ip for seen, _ in r.rows)) for r in store.reports("9999")]
    store.close()
    config = tmp_path / "spamkit.toml"
    config.write_text(f'DmarcReportDatabase = "{reports}"\nGreylistDatabase = "{tmp_path / "g"}"\n'
                      f'KarmaDatabase = "{tmp_path / "k"}"\nSendLimitDatabase = "{tmp_path / "s"}"\n')
    done = spamkit("db", "compact", "--db", str(db), "--config", str(config), "--filter-databases", "--json")
    assert done.returncode == 0, done.stderr
    dmarc = json.loads(done.stdout)["filters"][-1]
    assert dmarc["filter"] == "dmarc" and dmarc["path"] == str(reports)
    assert dmarc["after"] < dmarc["before"] / 20, dmarc
    assert dmarc["after"] == reports.stat().st_size  # (the write-ahead log emptied into it)
    again = ReportStore(reports)
    assert [(r.policy_domain, r.day, sorted(seen.source_ip for seen, _ in r.rows))
            for r in again.reports("9999")] == kept and len(kept[0][2]) == 100
    again.close()


def test_a_filter_database_given_as_the_token_database_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """--db naming the greylist's directory by mistake: every command says what it is and
    exits 65 with the file unchanged. Before, `learn` added spamkit's tables beside the
    records and `db reset --yes` set the greylist aside as a damaged token database."""
    greylist = tmp_path / "greylist"
    _in_a_process(_FILL, str(greylist), str(tmp_path / "karma"))
    content = digest(greylist / "data.mdb")
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: hi\n\nhello\n")
    for command in (["db", "magic"], ["db", "reset", "--yes"], ["learn", "--spam", str(message)],
                    ["check", str(message)], ["db", "dump"]):
        refused = spamkit(*command, "--db", str(greylist))
        assert refused.returncode == 65, (command, refused.stderr)
        assert "not spamkit's tokens" in refused.stderr and "greylist" in refused.stderr, command
        assert "db reset" not in refused.stderr  # (which would set the greylist aside)
    verified = spamkit("db", "verify", "--db", str(greylist))
    assert verified.returncode == 65 and "not a token database" in verified.stderr
    assert "db reset" not in verified.stderr
    report = json.loads(spamkit("db", "verify", "--db", str(greylist), "--json").stdout)
    assert report["sound"] is False and "not spamkit's tokens" in report["problems"][0]
    assert digest(greylist / "data.mdb") == content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["greylist", "karma", "m.eml"]  # nothing set aside


def test_a_token_database_with_a_stray_record_in_its_main_tree_still_opens(tmp_path: Path) -> None:
    """What karma wrote into the token database when KarmaDatabase named its directory (it
    is refused now): a record among the tables' names, sorted before them. The token
    database is still one, and opens; only a file without spamkit's tables is refused."""
    import lmdb

    path = tmp_path / "db"
    with LmdbStore(path) as store:
        store.set_meta("made", "here")
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"192.0.2.1", b'{"good": 1, "bad": 0, "until": 0}')
    env.close()
    with LmdbStore(path, readonly=True) as store:
        assert store.meta_value("made") == "here"
    assert spamkit("db", "verify", "--db", str(path)).returncode == 0
