"""Flight record: every hop of a business event in Redis, with outcomes, TTL and a readable tree."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import fakeredis
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.backoff import NoBackoff
from redis.retry import Retry
from structlog.testing import capture_logs

from observability.flight import FlightRecorderMiddleware, Hop, RedisFlightRecord, render_tree
from observability.tracing import TracingMiddleware

TTL_S = 600


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def record(client: fakeredis.FakeRedis) -> RedisFlightRecord:
    return RedisFlightRecord(client, prefix="t", ttl_s=TTL_S)


@pytest.fixture
def hub(tracing: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[Callable[..., StubBroker]]:
    """Builds a broker in the documented order: tracing, flight recorder, then Retries."""
    running: list[tuple[StubBroker, dramatiq.Worker]] = []

    def make(flight: RedisFlightRecord) -> StubBroker:
        broker = StubBroker(middleware=[
            TracingMiddleware(tracer_provider=tracing[0]),
            FlightRecorderMiddleware(flight),
            Retries(max_retries=1, min_backoff=1, max_backoff=5),
        ])
        broker.fail_fast_default = False
        broker.emit_after("process_boot")
        worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=1)
        worker.start()
        running.append((broker, worker))
        return broker

    yield make
    for broker, worker in running:
        worker.stop()
        broker.close()


def event(event_id: str = "evt-1") -> dict[str, Any]:
    return {"id": event_id, "type": "com.example.invoice.drafted", "source": "/erp", "subject": None,
            "root_id": event_id}


def hop(message_id: str, *, parent: str | None = None, actor: str = "a", outcome: str = "ok",
        attempt: int = 1, at: float = 0.0, ms: float = 1.0, error: str | None = None) -> Hop:
    return Hop(root_id="evt-1", event_id="evt-1", event_type="com.example.invoice.drafted", actor=actor,
               message_id=message_id, parent_message_id=parent, outcome=outcome,  # type: ignore[arg-type]
               attempt=attempt, started_at=1_700_000_000.0 + at, duration_ms=ms, error=error,
               trace_id="4bf92f3577b34da6a3ce929d0e0e4736")


def test_a_successful_message_is_recorded_as_one_ok_hop_with_its_trace_id(
    hub, record, client, tracing
) -> None:
    broker = hub(record)
    actor = dramatiq.actor(lambda: None, actor_name="hold_invoice", queue_name="q", broker=broker)

    message = actor.send_with_options(hub_event=event(), hub_parent="m-parent")
    broker.join("q", timeout=5_000)

    (only,) = record.hops("evt-1")
    (span,) = [s for s in tracing[1].get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert (only.actor, only.outcome, only.attempt, only.error) == ("hold_invoice", "ok", 1, None)
    assert (only.message_id, only.parent_message_id) == (message.message_id, "m-parent")
    assert only.event_type == "com.example.invoice.drafted"
    assert only.trace_id == format(span.context.trace_id, "032x")
    assert abs(only.started_at - time.time()) < 60 and only.duration_ms >= 0
    assert 0 < client.ttl("t:flight:evt-1") <= TTL_S


def test_a_retry_then_success_is_recorded_as_two_attempts(hub, record) -> None:
    broker = hub(record)
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("sharepoint said 503 at https://svc:pw@graph.example/v1.0")

    actor = dramatiq.actor(flaky, actor_name="provision", queue_name="q", broker=broker)
    actor.send_with_options(hub_event=event())
    broker.join("q", timeout=5_000)

    first, second = record.hops("evt-1")
    assert [(first.outcome, first.attempt), (second.outcome, second.attempt)] == [("retry", 1), ("ok", 2)]
    assert first.error == "ConnectionError: sharepoint said 503 at https://***@graph.example/v1.0"
    assert first.trace_id == second.trace_id is not None


def test_a_message_that_runs_out_of_retries_is_recorded_dead(hub, record) -> None:
    broker = hub(record)

    def broken() -> None:
        raise RuntimeError("erp rejects the invoice")

    actor = dramatiq.actor(broken, actor_name="release_invoice", queue_name="q", broker=broker)
    actor.send_with_options(hub_event=event())
    broker.join("q", timeout=5_000)

    assert [(h.outcome, h.attempt) for h in record.hops("evt-1")] == [("retry", 1), ("dead", 2)]


def test_an_exception_the_actor_throws_is_dead_at_once(hub, record) -> None:
    broker = hub(record)

    def permanent() -> None:
        raise ValueError("unknown project")

    actor = dramatiq.actor(permanent, actor_name="p", queue_name="q", broker=broker, throws=(ValueError,))
    actor.send_with_options(hub_event=event())
    broker.join("q", timeout=5_000)

    (only,) = record.hops("evt-1")
    assert (only.outcome, only.attempt, only.error) == ("dead", 1, "ValueError: unknown project")


def test_the_trace_id_is_found_even_when_the_recorder_is_listed_before_tracing(record, tracing) -> None:
    recorder, tracer = FlightRecorderMiddleware(record), TracingMiddleware(tracer_provider=tracing[0])
    broker = StubBroker(middleware=[recorder, tracer])
    broker.emit_after("process_boot")
    actor = dramatiq.actor(lambda: None, actor_name="a", queue_name="q", broker=broker)
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=1)
    worker.start()
    try:
        actor.send_with_options(hub_event=event())
        broker.join("q", timeout=5_000)
    finally:
        worker.stop()

    (only,) = record.hops("evt-1")
    (span,) = [s for s in tracing[1].get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert only.trace_id == format(span.context.trace_id, "032x")


def test_messages_without_a_hub_event_are_not_recorded(hub, record, client) -> None:
    broker = hub(record)
    actor = dramatiq.actor(lambda: None, actor_name="plain", queue_name="q", broker=broker)
    actor.send()
    broker.join("q", timeout=5_000)

    assert list(client.scan_iter("t:flight:*")) == []


def test_each_write_refreshes_the_expiry(record, client) -> None:
    record.record(hop("m-1"))
    client.expire("t:flight:evt-1", 5)
    record.record(hop("m-2"))

    assert client.ttl("t:flight:evt-1") > 5
    assert [h.message_id for h in record.hops("evt-1")] == ["m-1", "m-2"]


def test_a_hop_survives_a_json_round_trip() -> None:
    original = hop("m-1", parent="m-0", outcome="retry", error="E: x")
    assert Hop.from_json(original.to_json()) == original
    with pytest.raises(ValueError, match="flight record hop"):
        Hop.from_json('{"outcome": "exploded"}')


def test_render_tree_nests_children_groups_attempts_and_shows_errors() -> None:
    hops = [
        hop("m-3", parent="m-2", actor="notify_erp", at=0.120, ms=4.0),
        hop("m-1", actor="ingress", outcome="published", at=0.0, ms=0.5),
        hop("m-2", parent="m-1", actor="provision", outcome="retry", at=0.001, ms=12.25,
            error="ConnectionError: simulator down"),
        hop("m-2", parent="m-1", actor="provision", attempt=2, at=0.110, ms=8.0),
        hop("m-4", parent="m-1", actor="fan_out", at=0.002, ms=1.0),
    ]

    assert render_tree(hops) == "\n".join([
        "journey evt-1  trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "└── ingress  com.example.invoice.drafted  enqueued (confirmed)  0.5 ms  +0.0 ms",
        "    ├── provision  com.example.invoice.drafted  (2 attempts)",
        "    │   ├─ #1 retry  12.2 ms  +1.0 ms  ConnectionError: simulator down",
        "    │   ├─ #2 ok  8.0 ms  +110.0 ms",
        "    │   └── notify_erp  com.example.invoice.drafted  #1 ok  4.0 ms  +120.0 ms",
        "    └── fan_out  com.example.invoice.drafted  #1 ok  1.0 ms  +2.0 ms",
    ])
    assert render_tree(list(reversed(hops))) == render_tree(hops)
    assert render_tree([]) == "(no hops)"


def test_a_redis_outage_does_not_break_processing(hub, tracing) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    record = RedisFlightRecord(down, prefix="t", ttl_s=TTL_S)
    broker = hub(record)
    ran: list[int] = []
    actor = dramatiq.actor(lambda: ran.append(1), actor_name="a", queue_name="q", broker=broker)

    actor.send_with_options(hub_event=event())
    broker.join("q", timeout=5_000)

    assert ran == [1]
    assert broker.dead_letters == []
    assert record.dropped == 1
    with capture_logs() as logs:
        RedisFlightRecord(down, prefix="t", ttl_s=TTL_S).record(hop("m-1"))
    assert [entry["log_level"] for entry in logs] == ["warning"]
    down.close()


def test_after_an_outage_hops_are_dropped_for_a_while_instead_of_waiting_on_redis() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    now = [100.0]
    record = RedisFlightRecord(client, prefix="t", ttl_s=TTL_S, outage_backoff_s=0.2, clock=lambda: now[0])

    server.connected = False
    record.record(hop("m-1"))
    server.connected = True
    now[0] += 0.19  # still within the backoff
    record.record(hop("m-2"))
    assert record.hops("evt-1") == []
    now[0] += 0.02  # the backoff is over
    record.record(hop("m-3"))

    assert [h.message_id for h in record.hops("evt-1")] == ["m-3"]
    assert record.dropped == 2


def test_an_outage_of_the_flight_record_is_logged_once_and_its_end_once() -> None:
    server = fakeredis.FakeServer()
    now = [100.0]
    record = RedisFlightRecord(fakeredis.FakeRedis(server=server), prefix="t", ttl_s=TTL_S, outage_backoff_s=0.2,
                               clock=lambda: now[0])
    server.connected = False
    with capture_logs() as logs:
        for n in range(10):  # each try after its backoff fails again
            now[0] += 0.3
            record.record(hop(f"m-{n}"))
        server.connected = True
        now[0] += 0.3
        record.record(hop("m-back"))
        record.record(hop("m-next"))
    said = [(entry["log_level"], entry["event"]) for entry in logs if entry["log_level"] != "debug"]
    assert said == [("warning", "flight record unavailable; hops dropped until Redis answers"),
                    ("warning", "flight record written again")]
    assert [entry.get("dropped") for entry in logs if entry["event"] == "flight record written again"] == [10]
