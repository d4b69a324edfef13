"""Retries decided by the error type, on the StubBroker (the RabbitMQ paths are in test_dead_letters).

Past 400 lines on purpose: failures, lock, circuit and prerequisite waits are one budget's cases, on the same stub
broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import fakeredis
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from structlog.testing import capture_logs

from connectors.http import CircuitBreaker, Http
from hub.errors import CircuitOpen, EntityLocked, NotYet, SchemaViolation, StoreUnavailable, UpstreamUnavailable
from hub.idempotency import Claim, IdempotencyMiddleware
from hub.retries import (
    HubRetries,
    circuit_wait_delay,
    circuit_wait_horizon_ms,
    describe,
    lock_wait_delay,
    lock_wait_horizon_ms,
)
from hub.store import DeadLetterReasons, RedisLocks, holding


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

    def mark_done(self, key: str, token: int, *, done_ttl_s: int,
                  answer: Callable[[bool | StoreUnavailable], None]) -> None:
        answer(StoreUnavailable("redis unavailable: ConnectionError"))


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


# -- waiting for an entity's lock -------------------------------------------------------------------


def test_a_lock_wait_starts_short_doubles_and_never_outlasts_the_lock() -> None:
    def no_jitter() -> float:
        return 0.0

    waits = [lock_wait_delay(n, 30_000, max_ms=900_000, jitter=no_jitter) for n in range(8)]
    assert waits == [200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600]
    # Past the lock's end the wait stops at it (and a margin): a dead holder's lock is waited out, not more.
    assert lock_wait_delay(8, 4_000, max_ms=900_000, jitter=no_jitter) == 4_050
    assert lock_wait_delay(0, 0, max_ms=900_000, jitter=no_jitter) == 50  # given back meanwhile: come back soon
    assert lock_wait_delay(0, -2, max_ms=900_000, jitter=no_jitter) == 50  # Redis's -2: no such key


def test_the_jitter_only_lengthens_a_lock_wait_and_the_hub_s_longest_delay_caps_it() -> None:
    assert lock_wait_delay(3, 30_000, max_ms=900_000, jitter=lambda: 0.5) == 1_800
    assert lock_wait_delay(3, 30_000, max_ms=900_000, jitter=lambda: 0.999) < 2_000  # up to a quarter more
    assert lock_wait_delay(20, 3_600_000, max_ms=1_500_000, jitter=lambda: 0.5) == 1_500_000
    assert lock_wait_horizon_ms(60_000) == 120_000


@pytest.fixture
def store() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def locks(store: fakeredis.FakeRedis) -> RedisLocks:
    return RedisLocks(store, prefix="t")


def _run_once(stub: StubBroker, fn: Callable[[], None], name: str) -> dramatiq.Message[Any]:
    """Send one message to ``fn`` as the actor ``name`` on ``stub`` and return it once its queue is drained
    (every retry run); the broker is closed after."""
    actor = dramatiq.actor(fn, actor_name=name, queue_name="q", broker=stub)
    worker = _worker_on(stub)
    try:
        message: dramatiq.Message[Any] = actor.send()
        stub.join("q", fail_fast=False, timeout=10_000)
    finally:
        worker.stop()
        stub.close()
    return message


def _worker_on(stub: StubBroker) -> dramatiq.Worker:
    stub.emit_after("process_boot")
    worker = dramatiq.Worker(stub, worker_timeout=50, worker_threads=1)
    worker.start()
    return worker


def test_waiting_for_the_lock_of_a_dead_worker_spends_no_retries_and_runs_once_the_lock_runs_out(
    reasons: DeadLetterReasons, locks: RedisLocks
) -> None:
    """No retry at all is allowed for failures, and the lock outlives several waits: the message still runs."""
    stub = StubBroker(middleware=[HubRetries(max_retries=0, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    assert locks.acquire("project:P1", ttl_ms=700) is not None  # its worker died: never given back
    tries: list[str] = []

    def provision() -> None:
        try:
            with holding(locks, "project:P1", ttl_ms=700, busy="project P1 is being provisioned"):
                tries.append("ran")
        except EntityLocked:
            tries.append("waited")
            raise

    with capture_logs() as logs:
        _run_once(stub, provision, "provision")
    assert tries[-1] == "ran" and tries.count("ran") == 1 and tries.count("waited") >= 1, tries
    assert stub.dead_letters == []
    waits = [entry for entry in logs if entry["event"] == "waiting for a lock"]
    assert len(waits) == tries.count("waited") and all(entry["lock"] == "project:P1" for entry in waits)
    assert not [entry for entry in logs if entry["event"] == "retrying message"]


def test_lock_waits_leave_the_failure_budget_whole(reasons: DeadLetterReasons, locks: RedisLocks) -> None:
    """One retry is allowed; the lock is waited for first, then one failure is still retried."""
    stub = StubBroker(middleware=[HubRetries(max_retries=1, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    assert locks.acquire("mdm:client_1", ttl_ms=500) is not None
    tries: list[str] = []

    def merge() -> None:
        try:
            with holding(locks, "mdm:client_1", ttl_ms=500, busy="client_1 is being merged"):
                if "failed" not in tries:
                    tries.append("failed")
                    raise UpstreamUnavailable("503 from the document platform")
                tries.append("ran")
        except EntityLocked:
            tries.append("waited")
            raise

    _run_once(stub, merge, "merge")
    assert tries.count("waited") >= 1 and tries[-2:] == ["failed", "ran"], tries
    assert stub.dead_letters == []


def test_a_lock_still_held_after_two_of_its_lifetimes_dead_letters_the_message_and_says_why(
    reasons: DeadLetterReasons, store: fakeredis.FakeRedis, locks: RedisLocks
) -> None:
    stub = StubBroker(middleware=[HubRetries(max_retries=1, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    store.set("t:lock:project:P9", "stuck")  # no expiry: a lock no worker gives back or lets run out
    tries: list[int] = []

    def provision() -> None:
        tries.append(1)
        with holding(locks, "project:P9", ttl_ms=500, busy="project P9 is being provisioned"):
            pass

    message = _run_once(stub, provision, "provision")
    assert [m.message_id for m in stub.dead_letters] == [message.message_id]
    assert len(tries) > 2  # more waits than the one retry a failure gets
    reason = reasons.get(message.message_id)
    assert reason is not None and reason["why"].startswith("lock project:P9 still held after ")
    assert reason["why"].endswith("(its lifetime: 500 ms)") and reason["error"].startswith("EntityLocked")


def test_a_replayed_dead_letter_starts_a_run_of_its_own_with_its_whole_budget() -> None:
    """Lock waits are counted apart from failures: a replay that kept them (and dropped the attempts) would
    start with a budget bent by the last run."""
    from hub.dlq import replay_options

    dead = {"retries": 7, "hub_lock_waits": 3, "hub_lock_wait": {"since": 1, "waits": 2}, "traceback": "x",
            "hub_circuit_waits": 2, "hub_circuit_wait_since": 1, "hub_prerequisite_waits": 4,
            "hub_prerequisite_wait_since": 1, "hub_dead": {"why": "retries exhausted"}, "max_retries": 3,
            "hub_event": {"id": "e-1"}}
    assert replay_options(dead) == {"max_retries": 3, "hub_event": {"id": "e-1"}}


# -- waiting for an open circuit --------------------------------------------------------------------


def test_a_circuit_wait_lasts_until_the_breaker_lets_a_call_through_and_only_the_hub_s_longest_delay_caps_it() -> None:
    assert circuit_wait_delay(8.0, max_ms=900_000, jitter=lambda: 0.0) == 8_050
    assert 8_050 < circuit_wait_delay(8.0, max_ms=900_000, jitter=lambda: 0.999) < 8_050 * 1.25
    assert circuit_wait_delay(0.0, max_ms=900_000, jitter=lambda: 0.0) == 50
    assert circuit_wait_delay(4_000.0, max_ms=1_500_000, jitter=lambda: 0.0) == 1_500_000


def test_the_circuit_wait_budget_is_the_failure_budget_s_backoff_and_at_least_three_open_periods() -> None:
    # 12 retries from 1 s doubling up to 5 min: 1+2+4+...+256 s, then 300 s three times.
    assert circuit_wait_horizon_ms(10.0, max_retries=12, min_backoff=1_000, max_backoff=300_000) == 1_411_000
    assert circuit_wait_horizon_ms(10.0, max_retries=3, min_backoff=100, max_backoff=2_000) == 30_000
    assert circuit_wait_horizon_ms(10.0, max_retries=None, min_backoff=100, max_backoff=2_000) is None


def test_a_call_refused_by_an_open_breaker_spends_no_retry_and_runs_once_the_breaker_lets_it_through(
    reasons: DeadLetterReasons,
) -> None:
    """No retry at all is allowed for failures; the target failed for others and its breaker is open. The
    message waits for the half-open trial, makes it, and the breaker closes. Counted as a failure (the old
    way), the refusal dead-lettered the message at once."""
    stub = StubBroker(middleware=[HubRetries(max_retries=0, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    breaker = CircuitBreaker(threshold=1, reset_s=0.4)
    breaker.record(False)  # other messages' calls failed: open for 0.4 s
    sent: list[str] = []

    def healthy(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200, json={})

    http = Http(httpx.Client(transport=httpx.MockTransport(healthy), base_url="https://graph.example"),
                target="graph", breaker=breaker)
    tries: list[str] = []

    def provision() -> None:
        try:
            http.request("GET", "/sites/root")
        except CircuitOpen:
            tries.append("refused")
            raise
        tries.append("ran")

    with capture_logs() as logs:
        _run_once(stub, provision, "provision")
    assert tries == ["refused", "ran"] and sent == ["/sites/root"]
    assert stub.dead_letters == [] and breaker.state == "closed"
    waits = [entry for entry in logs if entry["event"] == "waiting for a circuit"]
    assert len(waits) == 1 and waits[0]["target"] == "graph" and waits[0]["delay_ms"] >= 300
    assert not [entry for entry in logs if entry["event"] == "retrying message"]


def test_circuit_waits_leave_the_failure_budget_whole(reasons: DeadLetterReasons) -> None:
    """One retry is allowed: refusals by the breaker come first, then one failure is still retried."""
    stub = StubBroker(middleware=[HubRetries(max_retries=1, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    tries: list[str] = []

    def sync() -> None:
        if len(tries) < 2:
            tries.append("refused")
            raise CircuitOpen("circuit open for graph", target="graph", retry_after=0.05, reset_s=0.2)
        if "failed" not in tries:
            tries.append("failed")
            raise UpstreamUnavailable("graph: answered 503")
        tries.append("ran")

    _run_once(stub, sync, "sync")
    assert tries == ["refused", "refused", "failed", "ran"]
    assert stub.dead_letters == []


def test_a_circuit_that_stays_open_past_the_budget_dead_letters_the_message_and_says_which(
    reasons: DeadLetterReasons,
) -> None:
    stub = StubBroker(middleware=[HubRetries(max_retries=1, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    tries: list[int] = []

    def sync() -> None:
        tries.append(1)
        raise CircuitOpen("circuit open for graph", target="graph", retry_after=0.05, reset_s=0.1)

    message = _run_once(stub, sync, "sync")
    assert [m.message_id for m in stub.dead_letters] == [message.message_id]
    assert len(tries) > 2  # more waits than the one retry a failure gets
    reason = reasons.get(message.message_id)
    assert reason is not None and reason["why"].startswith("circuit of graph still open after ")
    assert reason["why"].endswith("(the budget: 300 ms)") and reason["error"].startswith("CircuitOpen")


# -- waiting for a prerequisite that does not exist yet ---------------------------------------------


def _workspace_missing() -> NotYet:
    return NotYet("folder Clients/C1/P1/Contracts of project P1's workspace does not exist yet",
                  prerequisite="workspace")


def test_a_missing_prerequisite_spends_no_retry_and_the_message_runs_once_it_exists(
    reasons: DeadLetterReasons,
) -> None:
    """No retry at all is allowed for failures; the workspace appears after three tries: the SOW is filed."""
    stub = StubBroker(middleware=[HubRetries(max_retries=0, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    tries: list[str] = []

    def file_sow() -> None:
        if len(tries) < 3:
            tries.append("waited")
            raise _workspace_missing()
        tries.append("filed")

    with capture_logs() as logs:
        _run_once(stub, file_sow, "document_workflow")
    assert tries == ["waited", "waited", "waited", "filed"] and stub.dead_letters == []
    waits = [entry for entry in logs if entry["event"] == "waiting for a prerequisite"]
    assert [entry["prerequisite"] for entry in waits] == ["workspace"] * 3
    assert [entry["delay_ms"] >= 10 * 2 ** n for n, entry in enumerate(waits)] == [True] * 3  # it backs off
    assert not [entry for entry in logs if entry["event"] == "retrying message"]


def test_prerequisite_waits_leave_the_failure_budget_whole(reasons: DeadLetterReasons) -> None:
    """One retry is allowed: two waits for the workspace come first, then one failure is still retried."""
    stub = StubBroker(middleware=[HubRetries(max_retries=1, min_backoff=10, max_backoff=2_000, reasons=reasons)])
    tries: list[str] = []

    def file_sow() -> None:
        if len(tries) < 2:
            tries.append("waited")
            raise _workspace_missing()
        if "failed" not in tries:
            tries.append("failed")
            raise UpstreamUnavailable("graph: answered 503")
        tries.append("filed")

    _run_once(stub, file_sow, "document_workflow")
    assert tries == ["waited", "waited", "failed", "filed"]
    assert stub.dead_letters == []


def test_a_prerequisite_still_missing_at_the_horizon_dead_letters_the_message_naming_it(
    reasons: DeadLetterReasons,
) -> None:
    """A workspace never provisioned: the waits go on up to the horizon, the last one at it, then the message is
    dead-lettered saying what is missing (the owner's case: test_dead_letters)."""
    stub = StubBroker(middleware=[HubRetries(max_retries=1, min_backoff=10, max_backoff=2_000, reasons=reasons,
                                             prerequisite_wait_s=0.3)])
    tries: list[float] = []

    def file_sow() -> None:
        tries.append(time.monotonic())
        raise _workspace_missing()

    message = _run_once(stub, file_sow, "document_workflow")
    assert [m.message_id for m in stub.dead_letters] == [message.message_id]
    assert len(tries) > 2  # more waits than the one retry a failure gets
    assert tries[-1] - tries[0] >= 0.3  # the last try came at the horizon, not before it
    reason = reasons.get(message.message_id)
    assert reason is not None and reason["why"].startswith("workspace still missing after ")
    assert reason["why"].endswith("(the horizon: 300 ms)")
    assert reason["error"].startswith("NotYet: folder Clients/C1/P1/Contracts of project P1's workspace")
