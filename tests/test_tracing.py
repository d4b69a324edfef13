"""Tracing: one trace per business event across publish, actor, retries; links and attributes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Retries, SkipMessage
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as semconv
from opentelemetry.trace import SpanKind, StatusCode

from observability.tracing import (
    TracingMiddleware,
    configure_tracing,
    current_traceparent,
    inject_headers,
    publish_span,
    trace_id_hex,
)

SOURCE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def hub_event(event_id: str = "evt-1", **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "com.example.project.created", "source": "/erp", "subject": "P-1",
            "root_id": event_id, **extra}


@pytest.fixture
def make_broker(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> Iterator[Callable[..., StubBroker]]:
    brokers: list[tuple[StubBroker, dramatiq.Worker]] = []

    def make(*extra: Middleware) -> StubBroker:
        broker = StubBroker(middleware=[
            TracingMiddleware(tracer_provider=tracing[0]),
            Retries(max_retries=3, min_backoff=1, max_backoff=5),
            *extra,
        ])
        broker.emit_after("process_boot")
        worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=1)
        worker.start()
        brokers.append((broker, worker))
        return broker

    yield make
    for broker, worker in brokers:
        worker.stop()
        broker.close()


def consumer_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]


def test_an_actor_span_is_a_child_of_the_publish_span(make_broker, tracing) -> None:
    provider, exporter = tracing
    broker = make_broker()
    ran: list[str] = []
    actor = dramatiq.actor(lambda: ran.append(current_traceparent() or ""), actor_name="provision",
                           queue_name="q", broker=broker)

    with publish_span(destination="q", routing_key="q", message_id=None, event=hub_event(),
                      tracer_provider=provider) as publish:
        actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    (span,) = consumer_spans(exporter)
    assert span.name == "process provision"
    assert span.parent is not None and span.parent.span_id == publish.get_span_context().span_id
    assert format(span.context.trace_id, "032x") == trace_id_hex(publish)
    (traceparent,) = ran
    assert traceparent.startswith(f"00-{trace_id_hex(publish)}-{span.context.span_id:016x}-")


def test_every_retry_attempt_stays_in_the_publishers_trace(make_broker, tracing) -> None:
    provider, exporter = tracing
    broker = make_broker()
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("simulator down")

    actor = dramatiq.actor(flaky, actor_name="flaky", queue_name="q", broker=broker)
    with publish_span(destination="q", routing_key=None, message_id=None, event=None,
                      tracer_provider=provider) as publish:
        actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    first, second = sorted(consumer_spans(exporter), key=lambda s: s.attributes["hub.attempt"])
    assert [first.attributes["hub.attempt"], second.attributes["hub.attempt"]] == [1, 2]
    assert {format(s.context.trace_id, "032x") for s in (first, second)} == {trace_id_hex(publish)}
    assert first.parent is not None and second.parent is not None
    assert first.parent.span_id == second.parent.span_id == publish.get_span_context().span_id
    assert first.attributes["hub.outcome"] == "retry"
    assert second.attributes["hub.outcome"] == "ok"


def test_a_message_published_outside_any_span_keeps_one_trace_across_retries(make_broker, tracing) -> None:
    _, exporter = tracing
    broker = make_broker()
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("simulator down")

    actor = dramatiq.actor(flaky, actor_name="flaky", queue_name="q", broker=broker)
    actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    first, second = sorted(consumer_spans(exporter), key=lambda s: s.attributes["hub.attempt"])
    assert first.parent is None
    assert second.context.trace_id == first.context.trace_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id


def test_the_cloudevents_traceparent_becomes_a_link_not_the_parent(make_broker, tracing) -> None:
    _, exporter = tracing
    broker = make_broker()
    actor = dramatiq.actor(lambda: None, actor_name="linked", queue_name="q", broker=broker)

    actor.send_with_options(hub_event=hub_event(traceparent=SOURCE_TRACEPARENT))
    actor.send_with_options(hub_event=hub_event("evt-2", traceparent="not-a-traceparent"))
    broker.join("q", timeout=5_000)

    by_event = {s.attributes["cloudevents.event_id"]: s for s in consumer_spans(exporter)}
    linked = by_event["evt-1"]
    (link,) = linked.links
    assert format(link.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(link.context.span_id, "016x") == "b7ad6b7169203331"
    assert format(linked.context.trace_id, "032x") != "0af7651916cd43dd8448eb211c80319c"
    assert linked.parent is None
    assert by_event["evt-2"].links == ()


def test_the_consumer_span_carries_messaging_and_cloudevents_attributes(make_broker, tracing) -> None:
    _, exporter = tracing
    broker = make_broker()
    actor = dramatiq.actor(lambda: None, actor_name="attrs", queue_name="q", broker=broker)

    message = actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    (span,) = consumer_spans(exporter)
    assert span.attributes is not None
    assert dict(span.attributes) == {
        semconv.MESSAGING_SYSTEM: "rabbitmq",
        semconv.MESSAGING_DESTINATION_NAME: "q",
        semconv.MESSAGING_OPERATION_TYPE: "process",
        semconv.MESSAGING_OPERATION_NAME: "process",
        semconv.MESSAGING_MESSAGE_ID: message.message_id,
        "cloudevents.event_id": "evt-1",
        "cloudevents.event_type": "com.example.project.created",
        "cloudevents.event_source": "/erp",
        "cloudevents.event_subject": "P-1",
        "hub.root_id": "evt-1",
        "hub.attempt": 1,
        "hub.outcome": "ok",
    }


def test_a_failure_is_recorded_as_an_exception_with_error_status_and_masked_credentials(
    make_broker, tracing
) -> None:
    _, exporter = tracing
    broker = make_broker()
    broker.fail_fast_default = False

    def broken() -> None:
        raise ValueError("cannot reach amqp://hub:s3cret@rabbit:5672/")

    actor = dramatiq.actor(broken, actor_name="broken", queue_name="q", broker=broker, throws=(ValueError,))
    actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    (span,) = consumer_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["hub.outcome"] == "dead"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "cannot reach amqp://***@rabbit:5672/"
    assert "s3cret" not in (span.status.description or "")


def test_a_skipped_message_ends_its_span_as_skipped(make_broker, tracing) -> None:
    _, exporter = tracing

    class SkipAll(Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            raise SkipMessage("duplicate")

    broker = make_broker(SkipAll())
    ran: list[int] = []
    actor = dramatiq.actor(lambda: ran.append(1), actor_name="skipped", queue_name="q", broker=broker)
    actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    (span,) = consumer_spans(exporter)
    assert ran == []
    assert span.attributes is not None and span.attributes["hub.outcome"] == "skipped"


def test_a_publish_inside_an_actor_uses_the_middlewares_provider_and_nests_under_its_span(
    make_broker, tracing
) -> None:
    _, exporter = tracing
    broker = make_broker()

    def fan_out() -> None:
        with publish_span(destination="hub.events", routing_key="a.b", message_id="m-9", event=None):
            pass

    actor = dramatiq.actor(fan_out, actor_name="fan_out", queue_name="q", broker=broker)
    actor.send_with_options(hub_event=hub_event())
    broker.join("q", timeout=5_000)

    (consumer,) = consumer_spans(exporter)
    (producer,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert producer.parent is not None and producer.parent.span_id == consumer.context.span_id


def test_publish_span_is_a_producer_span_with_routing_attributes(tracing) -> None:
    provider, exporter = tracing
    with publish_span(destination="hub.events", routing_key="project.created", message_id="m-1",
                      event=hub_event(subject=None), tracer_provider=provider):
        headers: dict[str, str] = {}
        inject_headers(headers)

    (span,) = exporter.get_finished_spans()
    assert span.name == "publish hub.events"
    assert span.kind is SpanKind.PRODUCER
    assert span.attributes is not None
    assert span.attributes[semconv.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY] == "project.created"
    assert span.attributes[semconv.MESSAGING_MESSAGE_ID] == "m-1"
    assert "cloudevents.event_subject" not in span.attributes
    assert headers["traceparent"].startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")


def test_there_is_no_traceparent_outside_a_span() -> None:
    assert current_traceparent() is None


def test_the_otlp_exporter_requires_an_endpoint() -> None:
    with pytest.raises(ValueError, match="otlp_endpoint"):
        configure_tracing(exporter="otlp", otlp_endpoint=None, service_name="hub", set_global=False)


def test_configuring_tracing_twice_keeps_the_first_global_provider_without_complaint() -> None:
    # The global provider can be set once per process, so this runs in a process of its own.
    script = (
        "from opentelemetry import trace\n"
        "from observability.tracing import configure_tracing\n"
        "first, _ = configure_tracing(exporter='none', otlp_endpoint=None, service_name='a')\n"
        "second, _ = configure_tracing(exporter='memory', otlp_endpoint=None, service_name='b')\n"
        "assert trace.get_tracer_provider() is first and second is not first\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Overriding" not in done.stderr
