"""Builds the hub's runtime (broker, store, registry, tracing, topics) from the settings.

It knows no pattern and no vendor: ``hub/cli.py`` adds the actors and the routing table.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import fakeredis
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hub.broker import build_broker
from hub.dispatch import Dispatcher, RoutingTable
from hub.idempotency import IdempotencyMiddleware
from hub.registry import SchemaRegistry
from hub.retries import HubRetries
from hub.settings import Settings
from hub.store import DeadLetterReasons, RedisIdempotencyStore, connect_redis
from hub.topics import MemoryTopicBus, RabbitTopicBus, TopicBus
from observability.flight import FlightRecorderMiddleware, RedisFlightRecord
from observability.logging import LogContextMiddleware
from observability.tracing import TracingMiddleware, configure_tracing


@dataclass
class Runtime:
    """Everything a worker, the demo or a test needs, built once from the settings."""

    settings: Settings
    embedded: bool
    broker: dramatiq.Broker
    redis: redis.Redis
    registry: SchemaRegistry
    topics: TopicBus
    flight: RedisFlightRecord
    dead_letters: DeadLetterReasons
    tracer_provider: TracerProvider
    span_exporter: InMemorySpanExporter | None
    dispatcher: Dispatcher | None = None
    actors: dict[str, Any] = field(default_factory=dict)
    fake_server: Any = None  # the in-process Redis of the embedded mode, shared by every client
    #: Called by :meth:`close`: connector clients and other resources the actors opened.
    closers: list[Callable[[], object]] = field(default_factory=list)

    @property
    def queue_prefix(self) -> str:
        """Prefix of every queue name."""
        return self.settings.queue_prefix

    def close(self) -> None:
        """Close connections (broker, topics, Redis, connector clients) and flush spans."""
        for closer in self.closers:
            closer()
        self.broker.close()
        close = getattr(self.topics, "close", None)
        if close is not None:
            close()
        self.redis.close()
        self.tracer_provider.force_flush()


def _reachable(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout):
            return True
    except OSError:
        return False


def servers_reachable(settings: Settings) -> tuple[bool, bool]:
    """Whether RabbitMQ and Redis answer at the configured URLs."""
    return _reachable(settings.amqp_url, 5672), _reachable(settings.redis_url, 6379)


def demo_embedded(settings: Settings) -> bool:
    """Whether the demo runs embedded: when asked (``on``), or (``auto``) when RabbitMQ or Redis does not
    answer. Only the demo falls back on its own; ``serve`` and ``worker`` use :func:`embedded_requested`."""
    if settings.embedded == "on":
        return True
    if settings.embedded == "off":
        return False
    amqp_ok, redis_ok = servers_reachable(settings)
    return not (amqp_ok and redis_ok)


def embedded_requested(settings: Settings) -> bool:
    """Whether the embedded mode was asked for explicitly (``HUB_EMBEDDED=on``): the only way a server
    process (``serve``, ``worker``) runs on the in-memory broker; ``auto`` means the real servers."""
    return settings.embedded == "on"


def build_runtime(
    settings: Settings,
    *,
    embedded: bool,
    tracer_provider: TracerProvider | None = None,
    span_exporter: InMemorySpanExporter | None = None,
) -> Runtime:
    """Build the runtime on the real servers, or (``embedded``) on the StubBroker and an in-process Redis.

    The caller decides: :func:`embedded_requested` for servers, :func:`demo_embedded` for the demo.
    """
    is_embedded = embedded
    if tracer_provider is None:
        tracer_provider, span_exporter = configure_tracing(
            exporter=settings.trace_exporter, otlp_endpoint=settings.otlp_endpoint, service_name="hub"
        )
    fake_server = fakeredis.FakeServer() if is_embedded else None
    client = connect_redis(settings.redis_url, embedded=is_embedded, server=fake_server)
    registry = SchemaRegistry.load()
    prefix = settings.queue_prefix
    flight = RedisFlightRecord(client, prefix=prefix, ttl_s=settings.flight_ttl_s)
    dead_letters = DeadLetterReasons(client, prefix=prefix)
    # Order matters: after-hooks run in reverse. Tracing and log context wrap everything; the flight
    # recorder sits before HubRetries so it sees the retry-or-dead decision (``message.failed``).
    middleware = [
        TracingMiddleware(tracer_provider=tracer_provider),
        LogContextMiddleware(),
        FlightRecorderMiddleware(flight),
        HubRetries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
            reasons=dead_letters,
        ),
        IdempotencyMiddleware(
            RedisIdempotencyStore(client, prefix=prefix),
            prefix=prefix,
            lease_ms=settings.lease_ttl_ms,
            done_ttl_s=settings.done_ttl_s,
            crash_limit=settings.delivery_limit,
        ),
    ]
    broker = build_broker(
        amqp_url=settings.amqp_url,
        embedded=is_embedded,
        delivery_limit=settings.delivery_limit,
        middleware=middleware,
    )
    topics: TopicBus = MemoryTopicBus() if is_embedded else RabbitTopicBus(settings.amqp_url)
    return Runtime(
        settings=settings,
        embedded=is_embedded,
        broker=broker,
        redis=client,
        registry=registry,
        topics=topics,
        flight=flight,
        dead_letters=dead_letters,
        tracer_provider=tracer_provider,
        span_exporter=span_exporter,
        fake_server=fake_server,
    )


def attach_routes(runtime: Runtime, routes: RoutingTable) -> Dispatcher:
    """Create the dispatcher once the actors are declared, checking the table against them."""
    dispatcher = Dispatcher(runtime.broker, routes, known_types=set(runtime.registry.event_types),
                            flight=runtime.flight)
    dispatcher.check()
    runtime.dispatcher = dispatcher
    return dispatcher
