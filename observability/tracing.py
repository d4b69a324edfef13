"""OpenTelemetry tracing: provider setup, W3C context through Dramatiq messages, publish spans.

One business event keeps one trace: :class:`TracingMiddleware` writes the publisher's context into
``message.options["trace_context"]`` once and keeps it on every re-enqueue (retries, delays), so every
attempt's CONSUMER span is a child of the original publish. The CloudEvents ``traceparent`` of the
event (the source system's own trace) becomes a span link, not the parent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Literal

import dramatiq
from dramatiq.common import q_name
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from observability.logging import get_logger, mask_text, warn_unless_before_retries

__all__ = [
    "TracingMiddleware",
    "attached_context",
    "configure_tracing",
    "context_carrier",
    "current_traceparent",
    "inject_headers",
    "inject_message_context",
    "publish_span",
    "trace_id_hex",
]

log = get_logger(__name__)

_TRACER_NAME = "hub"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACES_PATH = "/v1/traces"
# The middleware's provider travels in the OpenTelemetry context, so that publish_span() inside an
# actor records with the same provider even when it is not the global one (tests, embedded mode).
_PROVIDER_KEY = otel_context.create_key("hub-tracer-provider")


def configure_tracing(
    *,
    exporter: Literal["otlp", "console", "memory", "none"],
    otlp_endpoint: str | None,
    service_name: str,
    set_global: bool = True,
) -> tuple[TracerProvider, InMemorySpanExporter | None]:
    """Build a tracer provider; make it global unless one is already set (OpenTelemetry allows one)."""
    if exporter == "otlp" and not otlp_endpoint:
        raise ValueError("otlp_endpoint is required when exporter is 'otlp'")
    if exporter not in ("otlp", "console", "memory", "none"):
        raise ValueError(f"unknown span exporter {exporter!r}")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    memory: InMemorySpanExporter | None = None
    if exporter == "otlp":
        # Imported here: the OTLP exporter pulls in requests and protobuf, useless to other modes.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        assert otlp_endpoint is not None
        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith(_TRACES_PATH):
            endpoint += _TRACES_PATH
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "memory":
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    # "none" still records spans so that trace ids propagate and correlate logs; nothing is exported.
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider, memory


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    if provider is None:
        found = otel_context.get_value(_PROVIDER_KEY)
        provider = found if isinstance(found, trace.TracerProvider) else trace.get_tracer_provider()
    return provider.get_tracer(_TRACER_NAME)


def trace_id_hex(span: Span) -> str:
    """The span's trace id as 32 lowercase hex digits."""
    return format(span.get_span_context().trace_id, "032x")


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` outside any valid span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current context to outbound HTTP headers."""
    _PROPAGATOR.inject(headers)


def _parse_traceparent(value: object) -> SpanContext | None:
    if not isinstance(value, str):
        return None
    ctx = trace.get_current_span(_PROPAGATOR.extract({"traceparent": value})).get_span_context()
    return ctx if ctx.is_valid else None


def _event_attributes(event: Mapping[str, Any] | None) -> dict[str, str]:
    if not event:
        return {}
    names = {
        "id": "cloudevents.event_id",
        "type": "cloudevents.event_type",
        "source": "cloudevents.event_source",
        "subject": "cloudevents.event_subject",
    }
    # OpenTelemetry drops None attribute values with a warning, so absent fields are left out.
    return {attr: str(event[key]) for key, attr in names.items() if event.get(key) is not None}


@contextmanager
def publish_span(
    *,
    destination: str,
    routing_key: str | None,
    message_id: str | None,
    event: Mapping[str, str | None] | None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Iterator[Span]:
    """A PRODUCER span ``publish <destination>`` around a publish to an exchange by hub code.

    Without ``tracer_provider``: the provider of the TracingMiddleware whose message is being
    processed, else the global one.
    """
    attributes: dict[str, str] = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": destination,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        **_event_attributes(event),
    }
    if routing_key is not None:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    tracer = _tracer(tracer_provider)
    with tracer.start_as_current_span(
        f"publish {destination}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def _record_error(span: Span, exception: BaseException) -> None:
    # Exception texts can carry connection URLs with credentials; spans leave the process.
    text = mask_text(str(exception))
    span.record_exception(exception, attributes={"exception.message": text})
    span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {text}"[:300]))


@dataclass
class _Active:
    message_id: str
    span: Span
    token: Token[otel_context.Context]


def context_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty outside a trace), to be resumed later by
    :func:`attached_context` (the outbox keeps it with each pending event)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def attached_context(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context of ``carrier`` current for the block: what is published in it continues
    that trace."""
    token = otel_context.attach(_PROPAGATOR.extract(dict(carrier or {})))
    try:
        yield
    finally:
        otel_context.detach(token)


def inject_message_context(options: dict[str, Any]) -> None:
    """Write the current trace context into a message's options (``trace_context``), unless they carry one
    already (a retry or a delay keeps its first publisher's): what every publisher of a message does."""
    if "trace_context" in options:
        return
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if carrier:
        options["trace_context"] = carrier


class TracingMiddleware(dramatiq.Middleware):
    """Carries the W3C trace context through messages and wraps each attempt in a CONSUMER span.

    Place it first among the hub's middleware (before log context, flight recorder, ``Retries`` and
    idempotency): its ``before_process_message`` then runs before theirs, so their log lines carry
    the trace id, and its after-hooks run last, so the span is still current while ``Retries``
    re-enqueues and ``hub.outcome`` can tell a retry (``retry``) from a dead letter (``dead``).
    """

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_TRACER_NAME)
        # One worker thread processes one message at a time, and a context token may only be
        # detached in the thread that attached it.
        self._local = threading.local()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Warn about a middleware order that would mislabel dead letters as retries."""
        warn_unless_before_retries(broker, self)

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int) -> None:
        """Record the publisher's context unless the message already carries one (a retry, a delay)."""
        inject_message_context(message.options)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Start the CONSUMER span of this attempt and make it current."""
        try:
            self._start(message)
        except Exception:  # tracing must never stop or skip a message
            log.warning("could not start the message span", exc_info=True)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Record the outcome and any exception, then end the span."""
        outcome = "ok" if exception is None else ("dead" if message.failed else "retry")
        self._finish(message, outcome, exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Mark the span skipped (or dead, if the skipping middleware failed the message) and end it."""
        self._finish(message, "dead" if message.failed else "skipped", None)

    def _start(self, message: Any) -> None:
        carrier = message.options.get("trace_context")
        # Always from the carrier, never the thread's current context: a worker thread has no
        # business parenting one message's span under whatever another message left behind.
        parent = _PROPAGATOR.extract(carrier if isinstance(carrier, dict) else {})
        event = message.options.get("hub_event")
        event = event if isinstance(event, Mapping) else None
        links = []
        linked = _parse_traceparent(event.get("traceparent")) if event else None
        if linked is not None:
            links.append(Link(linked, {"hub.link.reason": "cloudevents.traceparent"}))
        attributes: dict[str, str | int] = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": q_name(message.queue_name),
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": message.message_id,
            "hub.attempt": int(message.options.get("retries") or 0) + 1,
            **_event_attributes(event),
        }
        if event and event.get("root_id"):
            attributes["hub.root_id"] = str(event["root_id"])
        span = self._tracer.start_span(
            f"process {message.actor_name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        current = trace.set_span_in_context(span, parent)
        if self._provider is not None:
            current = otel_context.set_value(_PROVIDER_KEY, self._provider, current)
        token = otel_context.attach(current)
        self._local.active = _Active(message.message_id, span, token)
        if not trace.get_current_span(parent).get_span_context().is_valid:
            # Published outside any span: this attempt is the trace's root, and retries (which copy
            # the options) must continue it rather than start new traces.
            fresh: dict[str, str] = {}
            _PROPAGATOR.inject(fresh)
            message.options["trace_context"] = fresh

    def _finish(self, message: Any, outcome: str, exception: BaseException | None) -> None:
        active: _Active | None = getattr(self._local, "active", None)
        if active is None or active.message_id != message.message_id:
            return  # an earlier middleware skipped the message before this one started a span
        self._local.active = None
        try:
            active.span.set_attribute("hub.outcome", outcome)
            if exception is not None:
                _record_error(active.span, exception)
        finally:
            active.span.end()
            otel_context.detach(active.token)
