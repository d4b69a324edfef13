"""One trace from the publisher through every attempt of the fan-out to the topic publish."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hub.cli.compose import build_app
from hub.cli.scenario import project_created
from hub.runtime import Runtime
from hub.workers import running_worker
from observability.tracing import current_traceparent
from tests.conftest import hub_settings
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 6379))
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_app(prefix: str, redis_proxy: TcpProxy,
                spans: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[Runtime]:
    settings = hub_settings(prefix, redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0")
    runtime = build_app(settings, embedded=False, tracer_provider=spans[0], span_exporter=spans[1])
    yield runtime
    runtime.close()


def test_one_trace_id_from_publish_to_fan_out_across_a_retry(
    proxied_app: Runtime, redis_proxy: TcpProxy, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    app = proxied_app
    assert app.dispatcher is not None
    tracer = provider.get_tracer("test")

    event_ids: list[str] = []

    def process_spans() -> list[object]:
        # This event's attempts only: master data's own events reach the fan-out too, on their own schedule.
        return [s for s in exporter.get_finished_spans() if s.name == "process fanout"
                and (s.attributes or {}).get("cloudevents.event_id") in event_ids]

    def is_topic_publish(span: Any) -> bool:
        return bool(span.name == f"publish {app.topics.exchange}"
                    and (span.attributes or {}).get("cloudevents.event_id") in event_ids)

    with app.subscription("erp.project.created.v1") as receive:
        redis_proxy.cut()  # the first attempt cannot claim: an explicit retry
        with running_worker(app, threads=1):
            with tracer.start_as_current_span("erp publish", kind=SpanKind.PRODUCER) as root:
                event = project_created(app.registry, traceparent=current_traceparent())
                event_ids.append(event.get_id())
                app.dispatcher.dispatch(event)
            assert wait_until(lambda: len(process_spans()) >= 1, timeout=30)
            redis_proxy.restore()
            delivery = None
            for _ in range(20):
                delivery = receive(5.0)
                if delivery is None or delivery.event().get_id() == event.get_id():
                    break
            assert delivery is not None and delivery.event().get_id() == event.get_id()
            assert wait_until(lambda: any(is_topic_publish(s) for s in exporter.get_finished_spans()))

    trace_id = root.get_span_context().trace_id
    finished = exporter.get_finished_spans()
    attempts = sorted(process_spans(), key=lambda s: s.start_time or 0)  # type: ignore[attr-defined]
    assert len(attempts) >= 2, "the outage must have caused a retry"
    assert [s.attributes["hub.attempt"] for s in attempts][:2] == [1, 2]
    assert attempts[0].status.status_code.name == "ERROR"
    topic_publish = next(s for s in finished if is_topic_publish(s))
    for span in [*attempts, topic_publish]:
        assert span.context is not None and span.context.trace_id == trace_id
    assert topic_publish.parent is not None and topic_publish.parent.span_id == attempts[-1].context.span_id
    assert attempts[0].attributes["messaging.system"] == "rabbitmq"
    assert attempts[0].attributes["cloudevents.event_id"] == event.get_id()
    assert any(link.context.span_id == root.get_span_context().span_id for link in attempts[0].links)
    assert delivery.headers.get("ce-traceparent") == event.get_attributes()["traceparent"]
