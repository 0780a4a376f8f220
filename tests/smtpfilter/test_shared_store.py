"""`spamkit serve` on a shared Redis database: scores as it does on LMDB, and when Redis
goes away it answers 451 (the client tries again later), never relaying unscanned mail
as if it were scored."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

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
    process, port = start_serve(sink.port, location, tmp_path / "none.toml", stderr=subprocess.DEVNULL)
    try:
        assert swaks(port, ham).startswith("250"), "scored from Redis and relayed"
        assert len(sink.messages()) == 1
        redis.process.terminate()
        redis.process.wait(10)
        reply = swaks(port, ham)
        assert reply.startswith("451"), reply
        assert len(sink.messages()) == 1, "nothing relayed while the database is down"
    finally:
        stop_serve(process)
        servers.close()
