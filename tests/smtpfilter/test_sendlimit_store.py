"""The sendlimit filter's counts on a shared Redis: two servers' counts of one login add
up, and a login's record expires by itself an hour after its last message."""

from __future__ import annotations

import threading
import time
import uuid

import redis

from smtpfilter.plugins.sendlimit import BUCKET, WINDOW, SendCounts
from tests.servers.redis import RedisServer


def test_two_servers_count_one_login_together_on_redis(redis_server: RedisServer) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    servers = [SendCounts(redis_server.url(prefix=prefix)), SendCounts(redis_server.url(prefix=prefix))]

    def send(counts: SendCounts) -> None:
        for _ in range(25):
            counts.add("alice", 2)

    threads = [threading.Thread(target=send, args=(servers[index % 2],)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert servers[0].sent("alice") == servers[1].sent("Alice") == 200
    ttl = redis.Redis(port=redis_server.port).pttl(prefix + "alice") / 1000
    assert WINDOW < ttl <= WINDOW + BUCKET
    assert servers[0].sent("alice", time.time() + WINDOW + 2 * BUCKET) == 0
