"""`spamkit serve` on a shared Redis database: scores as it does on LMDB, and when Redis
goes away it does what WhenDatabaseDown says (451, the rules alone, or relayed with a
header saying it was not scanned), never relaying unscanned mail as if it were scored."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import redis as redis_client

from corpora import CorpusMessage
from spamkit.store import LmdbStore
from spamkit.store.redis import RedisStore
from tests.servers.redis import start_redis
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks


def _check(message: Path, db: str) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-m", "spamkit", "check", "--json", str(message), "--db", db],
                         capture_output=True, text=True, timeout=60, check=True)
    record: dict[str, object] = json.loads(run.stdout)
    return record


def test_serve_scores_from_redis_and_answers_451_when_it_is_gone(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    servers = start_redis(tmp_path)
    redis = next(servers)
    location = redis.url()
    dump = io.StringIO()
    with LmdbStore(trained_db) as lmdb:
        lmdb.dump(dump)
    with RedisStore(location) as store:
        store.restore(io.StringIO(dump.getvalue()))
    ham = tmp_path / "ham.eml"
    ham.write_bytes(next(m for m in split[1] if m.label == "ham").data)
    on_redis, on_lmdb = _check(ham, location), _check(ham, str(trained_db))
    assert on_redis["bayes"] == on_lmdb["bayes"] and on_redis["verdict"] == on_lmdb["verdict"] == "ham"
    policies = ("tempfail", "rules", "unscanned")
    filters = []
    for policy in policies:
        config = tmp_path / f"{policy}.toml"
        config.write_text(f'WhenDatabaseDown = "{policy}"\n')
        filters.append(start_serve(sink.port, location, config, stderr=subprocess.DEVNULL))
    try:
        for _, port in filters:
            assert swaks(port, ham).startswith("250"), "scored from Redis and relayed"
        assert len(sink.messages()) == 3
        assert all(b"autolearn=disabled" in m for m in sink.messages())  # (serve without --autolearn)
        redis.process.terminate()
        redis.process.wait(10)
        replies = {policy: swaks(port, ham) for policy, (_, port) in zip(policies, filters)}
        assert replies["tempfail"].startswith("451"), replies
        assert replies["rules"].startswith("250") and replies["unscanned"].startswith("250"), replies
        relayed = sink.messages()  # (in the sink's file order, not arrival order)
        assert len(relayed) == 5, "tempfail relayed nothing; the other two relayed once each"
        assert sum(b"tests=BAYES_00" in m and b"autolearn=disabled" in m for m in relayed) == 3
        without_bayes = [m for m in relayed if b"autolearn=unavailable" in m]
        assert len(without_bayes) == 1 and b"BAYES_" not in without_bayes[0], "rules: scored without Bayes"
        assert sum(b"X-Spam-Status: unscanned, spam database unavailable" in m for m in relayed) == 1
        # Redis back (here empty, and then restored): each filter scores with it again
        servers.close()
        (tmp_path / "again").mkdir()
        servers = start_redis(tmp_path / "again", port=redis.port)
        next(servers)
        with RedisStore(location) as store:
            store.restore(io.StringIO(dump.getvalue()))
        replies = {policy: swaks(port, ham) for policy, (_, port) in zip(policies, filters)}
        assert all(reply.startswith("250") for reply in replies.values()), replies
        assert sum(b"tests=BAYES_00" in m and b"autolearn=disabled" in m for m in sink.messages()) == 6
    finally:
        for process, _ in filters:
            stop_serve(process)
        servers.close()


def test_serve_on_a_redis_past_its_maxmemory_goes_on_scoring_and_only_autolearn_fails(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """A Redis past its maxmemory (noeviction) refuses writes, and it refused every
    MULTI/EXEC, reads too: serve answered every message 451 (WhenDatabaseDown's default)
    until someone made room. Now it starts, scores from the full database as before, and
    relays; what autolearn picks is not learned, which the header (autolearn=failed) and
    the log say, naming maxmemory."""
    servers = start_redis(tmp_path)
    location = next(servers).url()
    dump = io.StringIO()
    with LmdbStore(trained_db) as lmdb:
        lmdb.dump(dump)
    with RedisStore(location) as store:
        store.restore(io.StringIO(dump.getvalue()))
        ntokens = store.totals().ntokens
    hams = []
    for number, message in enumerate([m for m in split[1] if m.label == "ham"][:20]):
        hams.append(tmp_path / f"ham{number}.eml")
        hams[-1].write_bytes(message.data)
    run = subprocess.run([sys.executable, "-m", "spamkit", "check", "--json", *map(str, hams),
                          "--db", location], capture_output=True, text=True, timeout=120, check=True)
    ham = Path(next(r["path"] for r in map(json.loads, run.stdout.splitlines()) if r["autolearn"] == "ham"))
    client = redis_client.Redis(port=int(location.rsplit(":", 1)[1].split("/")[0]))
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1)
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    process, port = start_serve(sink.port, location, config, "--autolearn")
    try:
        assert swaks(port, ham).startswith("250")
        relayed = sink.messages()
        assert len(relayed) == 1 and b"tests=BAYES_00" in relayed[0], "scored with Bayes"
        assert b"autolearn=failed" in relayed[0]
        with RedisStore(location, readonly=True) as store:
            assert store.totals().ntokens == ntokens
    finally:
        _, stderr = stop_serve(process)
        servers.close()
    assert b"autolearn failed" in stderr and b"maxmemory" in stderr
