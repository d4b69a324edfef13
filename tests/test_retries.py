"""Retries decided by the error type, on the StubBroker (the RabbitMQ paths are in test_dead_letters)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import fakeredis
import pytest
from dramatiq.brokers.stub import StubBroker
from structlog.testing import capture_logs

from hub.errors import SchemaViolation, StoreUnavailable, UpstreamUnavailable
from hub.idempotency import Claim, IdempotencyMiddleware
from hub.retries import HubRetries, describe
from hub.store import DeadLetterReasons


@pytest.fixture
def reasons() -> DeadLetterReasons:
    return DeadLetterReasons(fakeredis.FakeRedis(), prefix="t")


@pytest.fixture
def broker(reasons: DeadLetterReasons) -> Iterator[StubBroker]:
    stub = StubBroker(middleware=[HubRetries(max_retries=3, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    stub.emit_after("process_boot")
    worker = dramatiq.Worker(stub, worker_timeout=50, worker_threads=1)
    worker.start()
    yield stub
    worker.stop()
    stub.close()


def test_a_permanent_error_is_dead_lettered_at_once_with_its_reason(
    broker: StubBroker, reasons: DeadLetterReasons
) -> None:
    calls: list[int] = []

    def reject(_: int) -> None:
        calls.append(1)
        raise SchemaViolation("region: not a Region symbol", field="region")

    actor = dramatiq.actor(reject, actor_name="reject", queue_name="q", broker=broker)
    message = actor.send(1)
    broker.join("q", fail_fast=False, timeout=5_000)
    assert calls == [1]
    assert [m.message_id for m in broker.dead_letters] == [message.message_id]
    reason = reasons.get(message.message_id)
    assert reason is not None and reason["why"] == "permanent error"
    assert reason["error"].startswith("SchemaViolation")


def test_retry_after_sets_the_delay_of_the_next_attempt(broker: StubBroker) -> None:
    seen: list[float] = []

    def throttled(_: int) -> None:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise UpstreamUnavailable("429 Too Many Requests", retry_after=0.6)

    actor = dramatiq.actor(throttled, actor_name="throttled", queue_name="q", broker=broker)
    actor.send(1)
    broker.join("q", fail_fast=False, timeout=10_000)
    assert len(seen) == 2
    # Backoff alone would retry after about 10-20 ms; only Retry-After explains 0.6 s.
    assert seen[1] - seen[0] >= 0.6


def test_retries_exhausted_dead_letter_the_message(broker: StubBroker, reasons: DeadLetterReasons) -> None:
    def down(_: int) -> None:
        raise UpstreamUnavailable("503 from https://svc:s3cret@dms.example.com/v1.0/drives")

    actor = dramatiq.actor(down, actor_name="down", queue_name="q", broker=broker)
    message = actor.send(1)
    broker.join("q", fail_fast=False, timeout=10_000)
    reason = reasons.get(message.message_id)
    assert reason is not None and reason["why"] == "retries exhausted after 4 attempts"
    assert "s3cret" not in reason["error"]


def test_describe_masks_credentials_in_error_texts() -> None:
    text = describe(ConnectionError("cannot reach amqp://hub:pa55word@rabbit:5672/%2F"))
    assert "pa55word" not in text
    assert text.startswith("ConnectionError")


def test_the_dead_letter_handler_named_by_the_actor_is_told_why(broker: StubBroker) -> None:
    told: list[tuple[str, str]] = []

    def handler(message: dict[str, object], reason: dict[str, str]) -> None:
        told.append((str(message["actor_name"]), reason["why"]))

    dramatiq.actor(handler, actor_name="handler", queue_name="alerts", broker=broker)

    def reject(_: int) -> None:
        raise SchemaViolation("bad", field="x")

    actor = dramatiq.actor(reject, actor_name="reject", queue_name="q", broker=broker, on_dead_letter="handler")
    actor.send(1)
    broker.join("q", fail_fast=False, timeout=5_000)
    broker.join("alerts", fail_fast=False, timeout=5_000)
    assert told == [("reject", "permanent error")]


class _RedisDown:
    """An idempotency store whose Redis does not answer."""

    def claim(self, key: str, *, lease_ms: int) -> Claim:
        raise StoreUnavailable("redis unavailable: ConnectionError")

    def complete(self, key: str, token: int, *, done_ttl_s: int) -> bool:
        raise StoreUnavailable("redis unavailable: ConnectionError")

    def release(self, key: str, token: int) -> bool:
        raise StoreUnavailable("redis unavailable: ConnectionError")

    def renew(self, key: str, token: int, *, lease_ms: int) -> bool:
        raise StoreUnavailable("redis unavailable: ConnectionError")


def test_a_message_that_finds_redis_down_backs_off_on_its_own_retries_and_says_so_at_debug(
    reasons: DeadLetterReasons,
) -> None:
    """The outage itself is said once by the process's link to Redis; each message waits longer at each
    retry (a fixed delay had every message of an outage retry every two seconds and spend its retries in
    half a minute)."""
    stub = StubBroker(middleware=[
        HubRetries(max_retries=4, min_backoff=10, max_backoff=2_000, reasons=reasons),
        IdempotencyMiddleware(_RedisDown(), prefix="t", lease_ms=1_000, done_ttl_s=60),
    ])
    stub.emit_after("process_boot")
    ran: list[int] = []
    actor = dramatiq.actor(lambda: ran.append(1), actor_name="a", queue_name="q", broker=stub)
    worker = dramatiq.Worker(stub, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        with capture_logs() as logs:
            actor.send_with_options(hub_event={"id": "evt-1", "source": "/erp", "type": "erp.project.created.v1"})
            stub.join("q", fail_fast=False, timeout=10_000)
    finally:
        worker.stop()
        stub.close()
    assert ran == []  # never run without its claim
    retries = [entry for entry in logs if entry["event"] == "retrying message"]
    delays = [entry["delay_ms"] for entry in retries]
    assert len(delays) == 4 and all(10 * 2 ** n <= delay <= 20 * 2 ** n for n, delay in enumerate(delays)), delays
    said = {(entry["event"], entry["log_level"]) for entry in logs if entry["event"] != "message dead-lettered"}
    assert said == {("retrying message", "debug"), ("idempotency store unavailable; retrying message", "debug")}
    assert len(stub.dead_letters) == 1  # retries exhausted, after exponentially longer waits
