"""Counting worker deaths: every redelivery counts once, across the copies of a message, whether the dead
worker's lease is still held or has run out; the message is parked at the limit. The middleware's hook
on the in-tree Redis (fakeredis), with the deliveries a RabbitMQ consumer would hand it."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest

from hub.idempotency import IdempotencyMiddleware, PoisonMessage, RedisIdempotencyStore, RetryLater, idempotency_key

EVENT = {"id": "evt-1", "source": "erp-sim://acme-psa/prod", "type": "erp.project.created.v1"}


def _delivery(options: dict[str, Any], *, redelivered: bool) -> Any:
    """One delivery of message ``m-1`` to the ``effect`` actor, as the consumer hands it to the middleware."""
    return SimpleNamespace(message_id="m-1", actor_name="effect", options=dict(options), redelivered=redelivered)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


_started: list[IdempotencyMiddleware] = []


@pytest.fixture(autouse=True)
def _stop_lease_renewers() -> Iterator[None]:
    yield
    while _started:
        _started.pop().before_worker_shutdown(None, None)  # type: ignore[arg-type]


def _middleware(client: fakeredis.FakeRedis, crash_limit: int) -> IdempotencyMiddleware:
    """One worker's middleware (its lease renewer is stopped after the test)."""
    middleware = IdempotencyMiddleware(RedisIdempotencyStore(client, prefix="t"), prefix="t", lease_ms=1_000,
                                       done_ttl_s=60, crash_limit=crash_limit)
    _started.append(middleware)
    return middleware


KEY = idempotency_key("t", "effect", EVENT["source"], EVENT["id"])


def test_a_death_seen_with_the_lease_held_and_one_seen_after_it_expired_both_count(
        client: fakeredis.FakeRedis) -> None:
    first_worker, second_worker, third_worker = (_middleware(client, crash_limit=2) for _ in range(3))
    first_worker.before_process_message(None, _delivery({"hub_event": EVENT}, redelivered=False))  # type: ignore[arg-type]
    # ...and it dies holding the lease: the redelivery finds the lease still live.
    redelivery = _delivery({"hub_event": EVENT}, redelivered=True)
    with pytest.raises(RetryLater) as later:
        second_worker.before_process_message(None, redelivery)  # type: ignore[arg-type]
    assert redelivery.options["hub_crashes"] == 1 and later.value.delay is not None and later.value.delay >= 1_000
    client.delete(KEY)  # the dead worker's lease runs out
    copy = _delivery(redelivery.options, redelivered=False)
    second_worker.before_process_message(None, copy)  # type: ignore[arg-type]  # the copy runs...
    client.delete(KEY)  # ...its worker dies too, and this time the lease runs out before the redelivery
    with pytest.raises(PoisonMessage, match="died 2 times"):
        third_worker.before_process_message(None, _delivery(copy.options, redelivered=True))  # type: ignore[arg-type]
    assert client.get(KEY) is None  # the claim the hook took to look is given back


def test_a_redelivery_after_the_lease_ran_out_goes_on_as_a_copy_that_can_claim_at_once(
        client: fakeredis.FakeRedis) -> None:
    middleware = _middleware(client, crash_limit=3)
    delivery = _delivery({"hub_event": EVENT, "hub_crashes": 1}, redelivered=True)
    with pytest.raises(RetryLater) as later:
        middleware.before_process_message(None, delivery)  # type: ignore[arg-type]
    assert (delivery.options["hub_crashes"], later.value.delay) == (2, 0)
    assert "died (2 of 3)" in str(later.value.cause)
    assert client.get(KEY) is None
    copy = _delivery(delivery.options, redelivered=False)
    middleware.before_process_message(None, copy)  # type: ignore[arg-type]  # claims and runs
    assert client.get(KEY) is not None


def test_a_first_delivery_and_a_done_message_count_no_death(client: fakeredis.FakeRedis) -> None:
    middleware = _middleware(client, crash_limit=1)
    fresh = _delivery({"hub_event": EVENT}, redelivered=False)
    middleware.before_process_message(None, fresh)  # type: ignore[arg-type]
    middleware.after_process_message(None, fresh)  # type: ignore[arg-type]
    again = _delivery({"hub_event": EVENT}, redelivered=True)  # its ack was lost after done was written
    with pytest.raises(Exception, match="duplicate"):
        middleware.before_process_message(None, again)  # type: ignore[arg-type]
    assert "hub_crashes" not in fresh.options and "hub_crashes" not in again.options
