"""Reliability checklist 12 as a service starts: a token database `serve` or `spamd` cannot
use then (a Redis not up yet, an LMDB file the check finds damaged) does not stop it. Each
message gets WhenDatabaseDown, and the database is used from the first retry
(DatabaseRetry) that finds it answering and sound, with no restart. And later: an LMDB
file put in its place while it runs is followed (docs/decisions/0028)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import urllib.request
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.store import LmdbStore
from spamkit.store.redis import RedisStore
from tests.engine.lmdbdamage import damage
from tests.servers.net import free_port, wait_for_port
from tests.servers.redis import start_redis
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks


def _ham(tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> Path:
    path = tmp_path / "ham.eml"
    path.write_bytes(next(m for m in split[1] if m.label == "ham").data)
    return path


def _until(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def _reachable_directory() -> Path:
    """A directory where the user a service runs as (nobody, under root) may reach a
    database once it is restored: pytest's own directories are root's alone."""
    where = Path(tempfile.mkdtemp(prefix="spamkit-unusable-"))
    where.chmod(0o755)
    return where


def _damaged_copy(trained_db: Path, db: Path, kind: str) -> str:
    """`trained_db` copied to `db` and damaged there (tests/engine/lmdbdamage.py); returns
    the administrator's last backup: a dump of it from before the damage."""
    shutil.copytree(trained_db, db)
    dump = io.StringIO()
    with LmdbStore(trained_db) as store:
        store.dump(dump)
    damage(db, kind)
    return dump.getvalue()


def _repair(db: Path, dump: str, give_to: str | None = "nobody") -> None:
    """What the error tells the administrator to do: move the damaged file aside and
    restore the last dump; then, as root, give it to the user the service runs as."""
    for command in (["db", "reset", "--yes"], ["db", "restore", "-"]):
        subprocess.run([sys.executable, "-m", "spamkit", *command, "--db", str(db)], input=dump,
                       text=True, capture_output=True, timeout=120, check=True)
    if give_to is not None and os.geteuid() == 0:
        subprocess.run(["chown", "-R", give_to, str(db)], check=True)


def _start_spamd(db: Path, config: Path, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """(process, port) of `spamkit spamd` (as nobody, under root), once it listens."""
    port = free_port()
    as_user = ["--user", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([sys.executable, "-m", "spamkit", "spamd", "--listen", f"127.0.0.1:{port}",
                                *options, *as_user, "--db", str(db), "--config", str(config)],
                               stderr=subprocess.PIPE)
    wait_for_port(port, 120)
    return process, port


def _symbols(port: int, message: bytes) -> bytes:
    """spamd's whole answer to a SYMBOLS request for `message`."""
    request = b"SYMBOLS SPAMC/1.5\r\nContent-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: client.recv(65536), b""))


def test_serve_started_before_its_redis_uses_the_policy_then_the_database(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """A reboot that starts the filter before Redis: it exited 75 whatever WhenDatabaseDown
    said, and the MTA in front deferred every message. Now it scores with the rules alone
    (here) until Redis answers, and with Bayes from then on."""
    port = free_port()
    location = f"redis://127.0.0.1:{port}/0"
    config = tmp_path / "spamkit.toml"
    config.write_text('WhenDatabaseDown = "rules"\nDatabaseRetry = 1\n')
    ham = _ham(tmp_path, split)
    dump = io.StringIO()
    with LmdbStore(trained_db) as lmdb:
        lmdb.dump(dump)
    process, filter_port = start_serve(sink.port, location, config)
    (tmp_path / "redis").mkdir()
    servers = start_redis(tmp_path / "redis", port=port)
    try:
        assert swaks(filter_port, ham).startswith("250")
        [rules_alone] = sink.messages()
        assert b"autolearn=unavailable" in rules_alone and b"BAYES_" not in rules_alone
        next(servers)
        with RedisStore(location) as store:
            store.restore(io.StringIO(dump.getvalue()))

        def scored_with_bayes() -> bool:
            assert swaks(filter_port, ham).startswith("250")
            return any(b"BAYES_00" in message for message in sink.messages())

        assert _until(scored_with_bayes)
    finally:
        status, stderr = stop_serve(process)
        servers.close()
    assert status == 0
    log = stderr.decode()
    assert "the token database cannot be used: cannot reach the database" in log
    assert f"the token database redis://127.0.0.1:{port}/0 can be used again" in log


def test_serve_on_a_damaged_file_defers_then_scores_once_it_is_restored(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """It would not start on a damaged file (exit 65), so the MTA in front had only a
    connection refused to go on. Now it runs and answers what WhenDatabaseDown says (451,
    the default); the damaged file is never read for a message; and once the administrator
    has restored the last dump in its place, it scores with it, without a restart."""
    db = _reachable_directory() / "db"
    dump = _damaged_copy(trained_db, db, "free space bounds")
    config = tmp_path / "spamkit.toml"
    metrics_port = free_port()
    config.write_text(f'DatabaseRetry = 1\nMetricsListen = "127.0.0.1:{metrics_port}"\n')
    ham = _ham(tmp_path, split)
    process, port = start_serve(sink.port, db, config)
    try:
        reply = swaks(port, ham)
        assert reply.startswith("451") and "Spam database unavailable" in reply, reply
        assert sink.messages() == []
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
        assert b'spamkit_filter_unchecked_total{filter="spamscore",reason="database"} 1' in metrics
        _repair(db, dump)
        ok = _until(lambda: swaks(port, ham).startswith("250"))
    finally:
        status, stderr = stop_serve(process)
        shutil.rmtree(db.parent)
    assert ok, stderr.decode()[-3000:]
    assert status == 0
    [relayed] = sink.messages()
    assert b"BAYES_00" in relayed
    log = stderr.decode()
    assert "is damaged (tokens: page" in log and "db reset --yes" in log
    assert f"the token database {db} can be used again" in log


def test_spamd_on_a_damaged_file_scores_with_the_rules_then_with_the_restored_database(
        tmp_path: Path, trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """The same for `spamkit spamd`, with WhenDatabaseDown = "rules"."""
    db = _reachable_directory() / "db"
    dump = _damaged_copy(trained_db, db, "child link")
    (tmp_path / "spamkit.toml").write_text('WhenDatabaseDown = "rules"\nDatabaseRetry = 1\n')
    process, port = _start_spamd(db, tmp_path / "spamkit.toml")
    message = _ham(tmp_path, split).read_bytes()
    try:
        rules_alone = _symbols(port, message)
        assert rules_alone.startswith(b"SPAMD/1.1 0 EX_OK\r\n") and b"BAYES_" not in rules_alone
        _repair(db, dump)
        assert _until(lambda: b"BAYES_00" in _symbols(port, message))
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        shutil.rmtree(db.parent)
    assert process.returncode == 0
    log = stderr.decode()
    assert "is damaged (tokens:" in log and f"the token database {db} can be used again" in log


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to start as root and give it up")
def test_a_database_only_root_may_open_again_is_said_to_need_a_restart(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Started as root (contrib/systemd), the filter opens its database before it becomes
    its own user; a retry runs as that user, who may not open a database only root may.
    The log says so, and what to do, rather than a bare "Permission denied"."""
    db = tmp_path / "db"  # (pytest's directories are root's alone)
    dump = _damaged_copy(trained_db, db, "free space bounds")
    config = tmp_path / "spamkit.toml"
    config.write_text("DatabaseRetry = 1\n")
    process, port = start_serve(sink.port, db, config)
    try:
        assert swaks(port, _ham(tmp_path, split)).startswith("451")
        _repair(db, dump, give_to=None)
        time.sleep(2.5)  # (two retries)
        assert swaks(port, _ham(tmp_path, split)).startswith("451")
    finally:
        status, stderr = stop_serve(process)
    assert status == 0
    assert (f"the token database cannot be used: Permission denied: {db} (as user nobody; a "
            "database it opened as root at start needs a restart of the service") in stderr.decode()


# -- an LMDB file put in place while the service runs ------------------------------------

def _give_to_nobody(path: Path) -> None:
    """As root, a database the service (nobody) may open again, as it could at start."""
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "nobody", str(path)], check=True)


def _move_over(source: Path, db: Path) -> None:
    """A backup put in place as administrators do: copied beside data.mdb, renamed over it."""
    shutil.copyfile(source / "data.mdb", db / "data.mdb.new")
    _give_to_nobody(db)
    os.replace(db / "data.mdb.new", db / "data.mdb")


def _relayed(port: int, message: Path, sink: Sink) -> bytes:
    """The message as the filter relayed it just now ("" if it did not)."""
    before = set(sink.directory.iterdir())
    if not swaks(port, message).startswith("250"):
        return b""
    [new] = set(sink.directory.iterdir()) - before
    return new.read_bytes()


def test_serve_goes_over_to_a_database_file_put_in_its_place(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """A backup moved over data.mdb while the filter runs; then the directory removed and
    made again by a new learn. Before, the filter scored with the file it had opened until
    it was restarted (what it autolearned went with that file), and a learn or `db magic`
    meanwhile was refused, the file called "cut short". Now it goes over to the file in
    place within a second, and lets the old one go, so the others open the new one too.
    While there is no file in place, or (as root) only one the user it became may not
    open, it says so once and scores with the file it has."""
    db = _reachable_directory() / "db"
    LmdbStore(db).close()  # a new database: Bayes abstains
    _give_to_nobody(db)
    config = tmp_path / "spamkit.toml"
    config.write_text("DatabaseRetry = 1\n")
    spamkit = [sys.executable, "-m", "spamkit"]
    environment = {**os.environ, "SPAMKIT_CONFIG": str(config)}
    ham = _ham(tmp_path, split)
    process, port = start_serve(sink.port, db, config)
    try:
        assert b"X-Spam-Status: No" in (new := _relayed(port, ham, sink)) and b"BAYES_" not in new
        _move_over(trained_db, db)
        assert _until(lambda: b"BAYES_00" in _relayed(port, ham, sink))
        magic = subprocess.run([*spamkit, "db", "magic", "--json", "--db", str(db)], env=environment,
                               capture_output=True, text=True, timeout=60)
        assert magic.returncode == 0, magic.stderr
        with LmdbStore(trained_db, readonly=True) as trained:
            assert json.loads(magic.stdout)["nham"] == trained.totals().nham

        shutil.rmtree(db)
        time.sleep(1.5)
        assert b"BAYES_00" in _relayed(port, ham, sink)  # (the file it has, until another is there)
        subprocess.run([*spamkit, "learn", "--db", str(db), "--ham", str(ham)], env=environment,
                       capture_output=True, timeout=60, check=True)
        if os.geteuid() == 0:  # (root's directory, 0700: nobody may not look inside)
            time.sleep(1.5)
            assert b"BAYES_00" in _relayed(port, ham, sink)
            _give_to_nobody(db)
        assert _until(lambda: b"BAYES_" not in _relayed(port, ham, sink))  # one ham: it abstains
    finally:
        status, stderr = stop_serve(process)
        shutil.rmtree(db.parent)
    assert status == 0
    log = stderr.decode()
    assert log.count(f"the token database {db} was replaced since it was opened") == 2, log[-3000:]
    assert "no file is in its place yet" in log
    if os.geteuid() == 0:
        assert f"as user nobody it may not look inside {db}: restart the service" in log


def test_spamd_children_and_their_parent_go_over_to_a_file_moved_in(
        tmp_path: Path, trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """spamd --processes 2: each child follows the file, and so does the parent, which
    scans nothing but whose handle on the old file would keep the new one from opening."""
    db = _reachable_directory() / "db"
    LmdbStore(db).close()
    _give_to_nobody(db)
    (tmp_path / "spamkit.toml").write_text("DatabaseRetry = 1\n")
    process, port = _start_spamd(db, tmp_path / "spamkit.toml", "--processes", "2", "--max-children", "2")
    message = _ham(tmp_path, split).read_bytes()
    try:
        assert b"BAYES_" not in _symbols(port, message)
        _move_over(trained_db, db)
        # (which child answers is the kernel's choice: ten in a row, all with Bayes)
        assert _until(lambda: all(b"BAYES_00" in _symbols(port, message) for _ in range(10)), seconds=30)
        magic = subprocess.run([sys.executable, "-m", "spamkit", "db", "magic", "--db", str(db)],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "SPAMKIT_CONFIG": str(tmp_path / "spamkit.toml")})
        assert magic.returncode == 0, magic.stderr
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        shutil.rmtree(db.parent)
    assert process.returncode == 0
    assert stderr.decode().count(f"the token database {db} was replaced since it was opened") == 3
