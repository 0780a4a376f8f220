"""LMDB and Redis, the two TokenStores, held to each other over histories hypothesis makes
up: learning, relearning and forgetting in batches of any size (the same message twice in
one batch, autolearn meeting a taught label), `train`, expiry of tokens and of seen marks,
and each database restored from the other's dump. After every step both give the same
outcomes and hold the same totals, token counts and days, seen marks with their byte
model steps, byte model and audit log (its times aside), and both dumps read back into
the other give the same text. Redis is a real redis-server on loopback."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from corpora import CorpusMessage
from spamkit.bayes import BayesClassifier, BayesParams
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore, TokenStore
from spamkit.store.base import today
from spamkit.store.redis import RedisStore
from tests.conftest import as_items
from tests.servers.redis import RedisServer, start_redis

PICKS = st.lists(st.integers(0, 15), min_size=1, max_size=8)


class TwoStores(RuleBasedStateMachine):
    server: RedisServer
    messages: list[SourceItem]  # 8 spam, then 8 ham

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="spamkit-store-model-"))
        self.lmdb = LmdbStore(self.directory / "db")
        self.redis = RedisStore(self.server.url(prefix=f"m{uuid.uuid4().hex[:8]}:"))
        self.stores: tuple[TokenStore, TokenStore] = (self.lmdb, self.redis)

    def teardown(self) -> None:
        self.redis.reset()
        self.redis.close()
        self.lmdb.close()
        shutil.rmtree(self.directory)

    def both(self, step: str, outcomes: list[dict[str, object]]) -> None:
        for outcome in outcomes:
            outcome.pop("seconds", None)
        assert outcomes[0] == outcomes[1], step

    @rule(picks=PICKS, label=st.sampled_from([Label.SPAM, Label.HAM, None]), batch_size=st.integers(1, 5),
          by=st.sampled_from(["manual", "autolearn", "trainer:alice"]))
    def learn(self, picks: list[int], label: Label | None, batch_size: int, by: str) -> None:
        items = [self.messages[pick] for pick in picks]  # (a message may come twice)
        self.both("learn", [Learner(store, batch_size=batch_size).learn(items, label, by=by).as_json()
                            for store in self.stores])

    @rule(spam=PICKS, ham=PICKS, batch_size=st.integers(1, 8), margin=st.sampled_from([0.6, 0.9, 0.999]))
    def train(self, spam: list[int], ham: list[int], batch_size: int, margin: float) -> None:
        params = BayesParams(min_spam_learned=2, min_ham_learned=2)  # (judging within a few steps)
        self.both("train", [
            Learner(store, batch_size=batch_size).train(
                [self.messages[pick] for pick in spam], [self.messages[pick] for pick in ham],
                BayesClassifier(store, params), margin).as_json()
            for store in self.stores])

    @rule(fraction=st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    def expire(self, fraction: float) -> None:
        cap = int(self.lmdb.totals().ntokens * fraction)
        removed = [store.expire(cap) for store in self.stores]
        assert removed[0] == removed[1]
        assert cap == 0 or self.lmdb.totals().ntokens <= cap

    @rule(days_back=st.sampled_from([-1, 0, 365]))
    def expire_seen(self, days_back: int) -> None:
        removed = [store.expire_seen(today() - days_back) for store in self.stores]
        assert removed[0] == removed[1]

    @rule()
    def each_restored_from_the_others_dump(self) -> None:
        dumps = [dump_of(store) for store in self.stores]
        self.lmdb.restore(io.StringIO(dumps[1]))
        self.redis.restore(io.StringIO(dumps[0]))
        assert [dump_of(store) for store in self.stores] == [dumps[1], dumps[0]]

    @invariant()
    def the_same_state(self) -> None:
        assert state(self.lmdb) == state(self.redis)


def dump_of(store: TokenStore) -> str:
    out = io.StringIO()
    store.dump(out)
    return out.getvalue()


def state(store: TokenStore) -> tuple[object, ...]:
    """Totals; every token's counts and day; the seen marks with their byte model steps;
    the byte model; the audit log's records without their times."""
    events = sorted(repr((key[:-8], {name: value for name, value in json.loads(record).items() if name != "time"}))
                    for key, record in store.history_records())
    return (store.totals(), sorted((r.key, r.spam, r.ham, r.day) for r in store.records()),
            sorted((s.key, s.label, s.byte_step) for s in store.seen_records()),  # type: ignore[attr-defined]
            store.meta_value("bytemodel"), events)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from start_redis(tmp_path_factory.mktemp("redis"))


def test_lmdb_and_redis_hold_the_same_after_any_history(
        redis_server: RedisServer, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    train, _ = split
    TwoStores.server = redis_server
    TwoStores.messages = as_items([m for m in train if m.label == "spam"][:8] +
                                  [m for m in train if m.label == "ham"][:8])
    run_state_machine_as_test(TwoStores, settings=settings(
        max_examples=80, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
