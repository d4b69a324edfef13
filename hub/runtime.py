"""Builds the hub's runtime: the infrastructure from the settings (broker, Redis, registry, tracing,
topics), then, given the actors, their declarations on the broker and the dispatcher routing to them.

It knows no pattern and no vendor: the composition root (:mod:`hub.cli.compose`) hands the actors in.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import fakeredis
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.registry import Collector

from hub.actor import Actor, ActorSpec, DeadLetterHandler, Emitter
from hub.batching import ClosingWrites
from hub.broker import build_broker
from hub.connectivity import ServerLink
from hub.db import Database, connect_database, ensure_database, upgrade
from hub.dispatch import Dispatcher, RoutingTable, declare_actor, declare_dead_letters
from hub.endpoints import SentinelAddress, is_sentinel
from hub.errors import ConfigurationError
from hub.events import SchemaLookup
from hub.idempotency import IdempotencyMiddleware, RedisIdempotencyStore
from hub.policy import Policy
from hub.registry import SchemaRegistry
from hub.retries import HubRetries
from hub.scheduler import Job
from hub.settings import ENV_PREFIX, Settings
from hub.store import DeadLetterReasons, connect_redis
from hub.topics import MemoryTopicBus, RabbitTopicBus, Receive, TopicBus, exchange_name, rabbit_subscription
from hub.topology import StreamRetention
from observability.flight import FlightRecorderMiddleware, RedisFlightRecord
from observability.logging import LogContextMiddleware
from observability.metrics import MetricsMiddleware
from observability.tracing import TracingMiddleware, configure_tracing


@dataclass(frozen=True, kw_only=True)
class Infrastructure:
    """What every actor runs on, built from the settings before any actor: broker, Redis, schemas, topics,
    the flight record and tracing."""

    settings: Settings
    embedded: bool
    broker: dramatiq.Broker
    redis: redis.Redis
    #: The records a firm cannot lose and the outbox (PostgreSQL; SQLite in the embedded mode).
    db: Database
    registry: SchemaRegistry
    topics: TopicBus
    flight: RedisFlightRecord
    dead_letters: DeadLetterReasons
    tracer_provider: TracerProvider
    span_exporter: InMemorySpanExporter | None
    #: This process's links to RabbitMQ, Redis and the database: every client of each reports to it
    #: (``hub.connectivity``).
    rabbitmq_link: ServerLink
    redis_link: ServerLink
    database_link: ServerLink
    fake_server: Any = None  # the in-process Redis of the embedded mode, shared by every client

    @property
    def links(self) -> tuple[ServerLink, ServerLink, ServerLink]:
        """The links to RabbitMQ, Redis and the database."""
        return self.rabbitmq_link, self.redis_link, self.database_link

    @property
    def queue_prefix(self) -> str:
        """Prefix of every queue name and Redis key."""
        return self.settings.queue_prefix

    def subscription(self, binding_key: str) -> AbstractContextManager[Receive]:
        """A private queue on RabbitMQ bound to this hub's topic exchange, as a consumer would bind one."""
        return rabbit_subscription(self.settings.amqp_url, binding_key, exchange=self.topics.exchange)


@dataclass(frozen=True, kw_only=True)
class Runtime(Infrastructure):
    """The hub assembled, once, by the composition root: the infrastructure, the declared actors and the
    dispatcher that routes events to them by their declarations. Immutable: nothing is filled in later."""

    dispatcher: Dispatcher
    #: The firm's policy the actors were built with.
    policy: Policy
    #: The declared Dramatiq actors by name.
    actors: Mapping[str, dramatiq.Actor[Any, Any]]
    #: Every actor's declaration by name.
    specs: Mapping[str, ActorSpec]
    #: The migrations folders of the actors' stores (beside the hub's own).
    migrations: tuple[Path, ...] = ()
    #: Called by :meth:`close`: connector clients and other resources the actors use.
    closers: tuple[Callable[[], object], ...] = ()
    #: Checks a worker process (``hub worker``) runs once when it starts consuming, in a thread of their own, with
    #: the dispatcher and the schemas to raise what they find (see :func:`hub.workers.run_worker`).
    at_worker_start: tuple[Callable[[Emitter, SchemaLookup], object], ...] = ()
    #: What ``/metrics`` reads at each scrape from the actors' stores (held invoices, open exceptions, ...).
    collectors: tuple[Collector, ...] = ()
    #: The scheduled jobs a worker process runs (``hub.scheduler``).
    jobs: tuple[Job, ...] = ()

    def upgrade_database(self) -> None:
        """Create the database if it is missing and bring its tables to the newest version (the hub's
        and every actor store's migrations): at start, and by ``hub db upgrade``."""
        if not self.embedded:
            ensure_database(self.db.url)
        upgrade(self.db, self.migrations)

    def close(self) -> None:
        """Close connections (broker, topics, Redis, connector clients) and flush spans."""
        for closer in self.closers:
            closer()
        self.broker.close()
        close = getattr(self.topics, "close", None)
        if close is not None:
            close()
        self.redis.close()
        self.db.close()
        self.tracer_provider.force_flush()


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return _answers(parts.hostname or "127.0.0.1", parts.port or default_port)


def _redis_reachable(url: str) -> bool:
    if is_sentinel(url):
        return any(_answers(host, port) for host, port in SentinelAddress.parse(url).sentinels)
    return _reachable(url, 6379)


def servers_reachable(settings: Settings) -> tuple[bool, bool, bool]:
    """Whether RabbitMQ (one of its nodes), Redis (or one of its sentinels) and the database (PostgreSQL; a
    SQLite file always is) answer."""
    database = settings.database_url.startswith("sqlite") or _reachable(settings.database_url, 5432)
    rabbitmq = any(_reachable(url, 5672) for url in settings.amqp_urls)
    return rabbitmq, _redis_reachable(settings.redis_url), database


def demo_embedded(settings: Settings) -> bool:
    """Whether the demo runs embedded: when asked (``on``), or (``auto``) when RabbitMQ, Redis or PostgreSQL
    does not answer. Only the demo falls back on its own; ``serve`` and ``worker`` use :func:`embedded_requested`."""
    if settings.embedded == "on":
        return True
    if settings.embedded == "off":
        return False
    return not all(servers_reachable(settings))


def embedded_requested(settings: Settings) -> bool:
    """Whether the embedded mode was asked for explicitly (``HUB_EMBEDDED=on``): the only way a server
    process (``serve``, ``worker``) runs on the in-memory broker; ``auto`` means the real servers."""
    return settings.embedded == "on"


def build_infrastructure(
    settings: Settings,
    *,
    embedded: bool,
    tracer_provider: TracerProvider | None = None,
    span_exporter: InMemorySpanExporter | None = None,
) -> Infrastructure:
    """The infrastructure on the real servers, or (``embedded``) on the StubBroker and an in-process Redis.

    The caller decides: :func:`embedded_requested` for servers, :func:`demo_embedded` for the demo.
    Nothing connects here.
    """
    is_embedded = embedded
    if tracer_provider is None:
        tracer_provider, span_exporter = configure_tracing(
            exporter=settings.trace_exporter, otlp_endpoint=settings.otlp_endpoint, service_name="hub"
        )
    fake_server = fakeredis.FakeServer() if is_embedded else None
    rabbitmq_link = ServerLink("RabbitMQ", settings.amqp_url, setting=f"{ENV_PREFIX}AMQP_URL")
    redis_link = ServerLink("Redis", settings.redis_url, setting=f"{ENV_PREFIX}REDIS_URL")
    database_link = ServerLink("PostgreSQL", settings.database_url, setting=f"{ENV_PREFIX}DATABASE_URL")
    client = connect_redis(settings.redis_url, embedded=is_embedded, server=fake_server, link=redis_link)
    db = connect_database(settings.database_url, prefix=settings.queue_prefix, embedded=is_embedded)
    registry = SchemaRegistry.load(schema_base_url=f"{settings.public_url}/v1/schemas")
    prefix = settings.queue_prefix
    # A message's done mark and hops (its own, those of what it published) go to Redis in one round trip.
    writes = ClosingWrites(client)
    flight = RedisFlightRecord(client, prefix=prefix, ttl_s=settings.flight_ttl_s, writes=writes)
    dead_letters = DeadLetterReasons(client, prefix=prefix)
    # Order matters: after-hooks run in reverse. Tracing and log context wrap everything; the flight
    # recorder and the metrics sit before HubRetries so they see the retry-or-dead decision (``message.failed``);
    # the closing writes before all that write through them, so they are sent once all of those have run.
    middleware = [
        TracingMiddleware(tracer_provider=tracer_provider),
        LogContextMiddleware(),
        writes,
        FlightRecorderMiddleware(flight),
        MetricsMiddleware(),
        HubRetries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
            reasons=dead_letters,
            prerequisite_wait_s=settings.prerequisite_wait_s,
        ),
        IdempotencyMiddleware(
            RedisIdempotencyStore(client, prefix=prefix, writes=writes),
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
        link=rabbitmq_link,
    )
    exchange = exchange_name(prefix)
    topics: TopicBus = (MemoryTopicBus(exchange=exchange) if is_embedded
                        else RabbitTopicBus(settings.amqp_url, exchange=exchange, link=rabbitmq_link,
                                            retention=StreamRetention(settings.events_max_age,
                                                                      settings.events_max_bytes)))
    return Infrastructure(
        settings=settings,
        embedded=is_embedded,
        broker=broker,
        redis=client,
        db=db,
        registry=registry,
        topics=topics,
        flight=flight,
        dead_letters=dead_letters,
        tracer_provider=tracer_provider,
        span_exporter=span_exporter,
        rabbitmq_link=rabbitmq_link,
        redis_link=redis_link,
        database_link=database_link,
        fake_server=fake_server,
    )


def assemble(infra: Infrastructure, actors: Sequence[Actor], *, policy: Policy,
             dead_letters: DeadLetterHandler | None = None, closers: Sequence[Callable[[], object]] = (),
             migrations: Sequence[Path] = (),
             at_worker_start: Sequence[Callable[[Emitter, SchemaLookup], object]] = (),
             collectors: Sequence[Collector] = (), jobs: Sequence[Job] = ()) -> Runtime:
    """Declare every actor on the broker, derive the routing table from their specs and build the one
    immutable :class:`Runtime`. ``dead_letters`` is told of the others' dead letters; ``migrations``: the
    actors' stores' migrations folders; ``at_worker_start``: checks a worker process runs when it starts;
    ``collectors``: the actors' figures ``/metrics`` reads at each scrape; ``jobs``: the scheduled jobs."""
    prefix = infra.queue_prefix
    specs = {actor.spec.name: actor.spec for actor in actors}
    if dead_letters is not None:
        specs[dead_letters.spec.name] = dead_letters.spec
    if len(specs) != len(actors) + (dead_letters is not None):
        raise ConfigurationError("two actors share a name")
    dispatcher = Dispatcher(infra.broker, RoutingTable.of(specs.values()),
                            queues={name: spec.queue(prefix) for name, spec in specs.items()},
                            known_types=set(infra.registry.event_types), flight=infra.flight)
    declared = {actor.spec.name: declare_actor(infra.broker, actor, prefix=prefix, registry=infra.registry,
                                              emitter=dispatcher) for actor in actors}
    if dead_letters is not None:
        declared[dead_letters.spec.name] = declare_dead_letters(infra.broker, dead_letters, prefix=prefix,
                                                                registry=infra.registry, emitter=dispatcher)
    for spec in specs.values():
        if spec.dead_letters_to is not None and spec.dead_letters_to not in specs:
            raise ConfigurationError(f"actor {spec.name!r} sends its dead letters to {spec.dead_letters_to!r}, "
                                     "which is not declared")
    dispatcher.check()
    fields = {f.name: getattr(infra, f.name) for f in dataclasses.fields(Infrastructure)}
    return Runtime(**fields, dispatcher=dispatcher, policy=policy, actors=declared, specs=specs,
                   closers=tuple(closers), migrations=tuple(migrations), at_worker_start=tuple(at_worker_start),
                   collectors=tuple(collectors), jobs=tuple(jobs))
