"""``hub demo``: a simulated ERP posts a signed project-created event to the HTTP ingress; it is
dispatched to the fan-out, a subscriber bound to ``hub.events`` receives and decodes it, and the
journey and the trace are printed.
"""

from __future__ import annotations

import base64
import json
import queue
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import httpx
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from standardwebhooks.webhooks import Webhook

from hub.events import CloudEvent, make_event
from hub.ingress.server import serve_in_thread
from hub.ingress.sources import SourceConfig, SourceRegistry
from hub.registry import SchemaRegistry
from hub.runtime import Runtime, resolve_embedded
from hub.settings import Settings
from hub.topics import Delivery, MemoryTopicBus, rabbit_subscription
from hub.workers import running_worker
from observability.flight import render_tree
from observability.tracing import configure_tracing

#: The simulated ERP instance the demo publishes as.
DEMO_SOURCE = "erp-sim://acme-psa/prod"


def acme_engagement() -> dict[str, Any]:
    """The consulting scenario's engagement: client ACME, practice Strategy, region EU, country DE."""
    return {
        "project_code": "ENG-ACME-0001",
        "client_id": "C-ACME",
        "name": "ACME operating model redesign",
        "engagement_type": "consulting",
        "practice": "Strategy",
        "region": "EU",
        "country": "DE",
        "partner": "p.schmidt@example-firm.com",
        "billing_model": "time_and_materials",
        "status": "planned",
        "value": {"amount_minor": 48_000_000, "currency": "EUR"},
        "start_date": date(2027, 1, 4),
        "end_date": date(2027, 6, 30),
        "conflicted_groups": [],
        "updated_at": datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    }


def project_created(registry: SchemaRegistry, *, traceparent: str | None = None,
                    data: dict[str, Any] | None = None) -> CloudEvent:
    """A project-created event as the ERP would publish it."""
    record = data or acme_engagement()
    return make_event(
        registry,
        type="erp.project.created.v1",
        source=DEMO_SOURCE,
        subject=record["project_code"],
        data=record,
        partitionkey=f"project:{record['project_code']}",
        traceparent=traceparent,
    )


@contextmanager
def _subscriber(runtime: Runtime, binding_key: str) -> Iterator[Callable[[float], Delivery | None]]:
    if isinstance(runtime.topics, MemoryTopicBus):
        inbox: queue.Queue[Delivery] = queue.Queue()
        runtime.topics.subscribe(binding_key, inbox.put)

        def receive_local(timeout_s: float) -> Delivery | None:
            try:
                return inbox.get(timeout=timeout_s)
            except queue.Empty:
                return None

        yield receive_local
    else:
        with rabbit_subscription(runtime.settings.amqp_url, binding_key) as receive:
            yield receive


def _span_lines(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[str]:
    mine = sorted((s for s in spans if s.context and s.context.trace_id == trace_id),
                  key=lambda s: s.start_time or 0)
    if not mine:
        return []
    t0 = mine[0].start_time or 0
    by_id = {s.context.span_id: s for s in mine if s.context}
    lines = []
    for span in mine:
        depth, parent = 0, span.parent
        while parent is not None and parent.span_id in by_id:
            depth += 1
            parent = by_id[parent.span_id].parent
        took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        offset = ((span.start_time or 0) - t0) / 1e6
        status = span.status.status_code.name
        lines.append(f"  {'  ' * depth}{span.name:<34} +{offset:7.1f} ms  {took:7.1f} ms  {status}")
    return lines


def erp_payload() -> dict[str, Any]:
    """The engagement as the ERP's posting script sends it: Avro's JSON form (days, epoch milliseconds)."""
    record = acme_engagement()
    record["start_date"] = (record["start_date"] - date(1970, 1, 1)).days
    record["end_date"] = (record["end_date"] - date(1970, 1, 1)).days
    record["updated_at"] = int(record["updated_at"].timestamp() * 1000)
    return record


def demo_sources(secret: str) -> SourceRegistry:
    """The demo's one publishing source: the simulated ERP, signing with Standard Webhooks."""
    config = SourceConfig.model_validate({
        "id": "erp-sim", "description": "the simulated ERP of the demo", "sources": [DEMO_SOURCE],
        "event_types": ["erp.*"], "quota": "1000/minute",
        "credentials": [{"scheme": "standard_webhooks", "secret": secret}],
    })
    return SourceRegistry([config], origin="demo")


def post_signed(url: str, secret: str, document: dict[str, Any]) -> httpx.Response:
    """What the ERP's posting script does: a structured CloudEvent, signed, with its trace context."""
    body = json.dumps(document).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/cloudevents+json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    propagate.inject(headers)
    return httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)


def run_demo(
    settings: Settings,
    *,
    build_app: Callable[..., Runtime],
    build_ingress: Callable[..., Any],
    echo: Callable[[str], None],
) -> int:
    """Run the demo; returns the process exit code."""
    embedded = resolve_embedded(settings)
    if settings.trace_exporter in ("otlp", "console"):
        provider, _ = configure_tracing(exporter=settings.trace_exporter, otlp_endpoint=settings.otlp_endpoint,
                                        service_name="hub")
    else:
        provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    if embedded:
        echo("mode: EMBEDDED - RabbitMQ or Redis did not answer (or HUB_EMBEDDED=on): Dramatiq StubBroker "
             "and an in-process Redis (fakeredis) stand in; nothing is persisted.")
    else:
        echo(f"mode: real servers - RabbitMQ {_host(settings.amqp_url)}, Redis {_host(settings.redis_url)}")
    runtime = build_app(settings, embedded=embedded, tracer_provider=provider, span_exporter=spans)
    assert runtime.dispatcher is not None
    tracer = provider.get_tracer("hub.demo")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    ingress = build_ingress(runtime, sources=demo_sources(secret), tracer_provider=provider)
    try:
        with _subscriber(runtime, "erp.project.*.v1") as receive, running_worker(runtime, threads=2), \
                serve_in_thread(ingress) as url:
            echo(f"0. hub serve listening on {url} (HTTP ingress: Standard Webhooks signatures, quotas, "
                 "problem+json)")
            event_id = str(uuid.uuid4())
            document = {"specversion": "1.0", "id": event_id, "source": DEMO_SOURCE,
                        "type": "erp.project.created.v1", "subject": "ENG-ACME-0001",
                        "partitionkey": "project:ENG-ACME-0001", "datacontenttype": "application/json",
                        "data": erp_payload()}
            with tracer.start_as_current_span("erp-sim POST /v1/events", kind=SpanKind.CLIENT) as span:
                response = post_signed(url, secret, document)
                trace_id = span.get_span_context().trace_id
            echo(f"1. ERP posted erp.project.created.v1 id={event_id} subject=ENG-ACME-0001, signed: "
                 f"HTTP {response.status_code} {response.text}")
            if response.status_code != 202:
                echo("FAILED: the ingress did not accept the event")
                return 1
            resent = post_signed(url, secret, document)
            echo(f"   the ERP retried the same event: HTTP {resent.status_code}, resent="
                 f"{resent.json()['accepted'][0].get('resent', False)} (not published twice)")
            tampered = dict(document, subject="ENG-ACME-9999")
            forged = post_signed(url, "whsec_" + base64.b64encode(b"not the secret").decode(), tampered)
            echo(f"   a forged signature: HTTP {forged.status_code} {forged.json()['type']}")
            echo(f"   dispatched to: {', '.join(runtime.dispatcher.routes.subscribers('erp.project.created.v1'))}")
            delivery = receive(15.0)
            if delivery is None:
                echo("FAILED: no event reached the hub.events subscriber within 15 s")
                return 1
            received = delivery.event()
            payload = received.get_data()
            data = runtime.registry.decode(received.get_type(), payload if isinstance(payload, bytes) else b"")
            echo(f"2. subscriber on {runtime.topics.exchange!r} received routing key {delivery.routing_key!r}, "
                 f"content type {delivery.content_type}, dataschema {received.get_dataschema()}")
            echo(f"   decoded: {data['project_code']} {data['name']!r} client={data['client_id']} "
                 f"practice={data['practice']} region={data['region']} country={data['country']}")
            hops = _wait_for_hops(runtime, event_id)
            echo("3. flight record (hub trace " + event_id + "):")
            echo("\n".join("   " + line for line in render_tree(hops).splitlines()))
        provider.force_flush()
        echo(f"4. trace {trace_id:032x}:")
        echo("\n".join(_span_lines(spans.get_finished_spans(), trace_id)))
        same = received.get_id() == event_id
        echo("demo OK" if same else "FAILED: the received event is not the published one")
        return 0 if same else 1
    finally:
        runtime.close()


def _wait_for_hops(runtime: Runtime, event_id: str, timeout_s: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    hops = runtime.flight.hops(event_id)
    while time.monotonic() < deadline and not any(h.outcome == "ok" for h in hops):
        time.sleep(0.05)
        hops = runtime.flight.hops(event_id)
    return hops


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or ''}"
