"""A message's closing writes (its done mark, its flight-record hop, the hops of what it published) reach Redis
in one round trip (:mod:`hub.batching`), on the real Redis, through the hub's own middleware in a Dramatiq
worker; what each writer is told when the round trip fails; a script Redis forgot is loaded and sent again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import fakeredis
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

from hub.batching import ClosingWrites
from hub.idempotency import IdempotencyMiddleware, RedisIdempotencyStore, idempotency_key
from observability.flight import FlightRecorderMiddleware, Hop, RedisFlightRecord

pytestmark = pytest.mark.integration


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one send per command, or per pipeline."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    pool = redis.ConnectionPool(host="127.0.0.1", port=6379, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    yield client
    client.close()


def _published(root: str, n: int) -> Hop:
    return Hop(root_id=root, event_id=f"{root}-child-{n}", event_type="hub.project.changed.v1", actor="fanout",
               message_id=f"{root}-m{n}", parent_message_id=None, outcome="published", attempt=0,
               started_at=time.time(), duration_ms=1.0, error=None, trace_id=None)


def _worker(client: redis.Redis, prefix: str, *, batched: bool = True) -> tuple[StubBroker, Any, RedisFlightRecord]:
    writes = ClosingWrites(client) if batched else None
    flight = RedisFlightRecord(client, prefix=prefix, ttl_s=600, writes=writes)
    idempotency = IdempotencyMiddleware(RedisIdempotencyStore(client, prefix=prefix, writes=writes), prefix=prefix,
                                        lease_ms=60_000, done_ttl_s=600)
    broker = StubBroker(middleware=[*([writes] if writes else []), FlightRecorderMiddleware(flight), idempotency])
    broker.emit_after("process_boot")
    sends: list[int] = []

    def effect(root: str) -> None:
        for n in range(2):  # what the actor published: two hops recorded while it runs
            flight.record(_published(root, n))
        sends.append(CountingConnection.sends)  # what was sent up to the actor's end

    dramatiq.actor(effect, actor_name="effect", queue_name="q", broker=broker)
    return broker, sends, flight


def _run(broker: StubBroker, root: str) -> None:
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        broker.get_actor("effect").send_with_options(args=(root,), hub_event={"id": root, "source": "/erp",
                                                                               "type": "erp.project.created.v1"})
        broker.join("q", fail_fast=True, timeout=10_000)
        worker.join()
    finally:
        worker.stop()


@pytest.mark.parametrize("batched", [True, False], ids=["closing-writes", "one-by-one"])
def test_the_done_mark_and_every_hop_of_a_message_reach_redis_in_one_round_trip(client: redis.Redis,
                                                                                   batched: bool) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    broker, sends, _ = _worker(client, prefix, batched=batched)
    try:
        _run(broker, f"{prefix}-warm")  # loads the scripts
        root = f"{prefix}-evt"
        before = CountingConnection.sends
        _run(broker, root)
        after = CountingConnection.sends
    finally:
        broker.close()
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    claim = 1
    while_running = sends[-1] - before  # from the message's start to its actor's end
    closing = after - sends[-1]  # after the actor's end
    if batched:
        assert (while_running, closing) == (claim, 1)  # the published hops waited for the message's end
    else:
        assert (while_running, closing) == (claim + 2, 2)  # a round trip per hop, then the done mark and a hop


def test_what_a_batched_message_wrote_is_all_there(client: redis.Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    broker, _, flight = _worker(client, prefix)
    root = f"{prefix}-evt"
    try:
        _run(broker, root)
        key = idempotency_key(prefix, "effect", "/erp", root)
        mark = client.get(key)
        hops = flight.hops(root)
        ttl = client.ttl(flight.key(root))
    finally:
        broker.close()
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    assert mark is not None and mark.startswith(b"done:")
    assert sorted(hop.outcome for hop in hops) == ["ok", "published", "published"]
    assert 0 < ttl <= 600


def test_a_round_trip_that_fails_tells_each_writer_and_nothing_is_raised() -> None:
    # Nothing listens on port 1; one attempt per call (redis-py's default retries take seconds).
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    writes = ClosingWrites(down)
    answers: list[Any] = []
    writes.before_process_message(None, None)  # type: ignore[arg-type]
    writes.write(lambda target: target.set("a", 1), answers.append)
    writes.write(lambda target: target.set("b", 2), answers.append)
    assert answers == []  # held
    writes.after_process_message(None, None)  # type: ignore[arg-type]
    assert len(answers) == 2 and all(isinstance(answer, redis.ConnectionError) for answer in answers)
    writes.write(lambda target: target.set("c", 3), answers.append)  # no message held: at once
    assert len(answers) == 3 and isinstance(answers[2], redis.ConnectionError)


def test_a_script_redis_forgot_is_loaded_and_sent_again_alone() -> None:
    client = fakeredis.FakeRedis()
    writes = ClosingWrites(client)
    store = RedisIdempotencyStore(client, prefix="t", writes=writes)
    claim = store.claim("t:idem:effect:x", lease_ms=10_000)
    client.script_flush()  # as after Redis restarted empty (the lease would be gone too; kept here)
    answers: list[Any] = []
    writes.before_process_message(None, None)  # type: ignore[arg-type]
    store.mark_done("t:idem:effect:x", claim.token, done_ttl_s=60, answer=answers.append)
    writes.write(lambda target: target.set("t:other", 1), answers.append)
    writes.after_process_message(None, None)  # type: ignore[arg-type]
    assert answers == [True, True]  # the done mark's fencing held; the other write was sent with it
    assert client.get("t:idem:effect:x") == f"done:{claim.token}".encode()
    assert client.get("t:other") == b"1"
