"""The composition root: the one place that wires the runtime, the actors, their routes and the ingress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_settings import BaseSettings

from connectors.settings import BoxSettings, DocuSignSettings, ErpSettings, GraphSettings
from hub.ingress.sources import SourceConfig, SourceRegistry
from hub.runtime import Infrastructure, Runtime, assemble, build_infrastructure
from hub.settings import Settings, load

if TYPE_CHECKING:
    from actors.document_intake import DriveSubscription
    from actors.exceptions.desk import ExceptionDesk
    from actors.fanout.actor import BusWall
    from actors.invoice_readiness import ReadinessGate
    from actors.reconciliation import Reconciler
    from connectors.platform import Platforms
    from connectors.sharepoint.client import GraphClient
    from hub.actor import Actor
    from hub.policy import Policy
    from hub.redaction import Redactions
    from hub.registry import SchemaRegistry

__all__ = ["Connections", "build_app", "build_ingress", "bus_wall", "events_document", "exception_desk",
           "load_sources", "readiness_gate", "reconciler", "redactions_of", "restricted_exchange",
           "source_model", "sources_from_settings"]


@dataclass(frozen=True)
class Connections:
    """Where each connector's system is and how the hub signs in (``HUB_ERP_*``, ``HUB_GRAPH_*``,
    ``HUB_DOCUSIGN_*``, ``HUB_BOX_*``)."""

    erp: ErpSettings = field(default_factory=ErpSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    docusign: DocuSignSettings = field(default_factory=DocuSignSettings)
    box: BoxSettings = field(default_factory=BoxSettings)

    @classmethod
    def load(cls) -> Connections:
        """Every connector's settings from the environment; a ConfigurationError names a bad variable."""
        return cls(erp=load(ErpSettings), graph=load(GraphSettings), docusign=load(DocuSignSettings),
                   box=load(BoxSettings))

    @staticmethod
    def models() -> tuple[type[BaseSettings], ...]:
        """The settings models read from the environment, the hub's own included."""
        return (Settings, ErpSettings, GraphSettings, DocuSignSettings, BoxSettings)


def build_app(
    settings: Settings,
    *,
    embedded: bool,
    tracer_provider: TracerProvider | None = None,
    span_exporter: InMemorySpanExporter | None = None,
    only: Collection[str] | None = None,
    connections: Connections | None = None,
    migrate: bool = True,
) -> Runtime:
    """Build the infrastructure, the connectors, each pattern's actor with its store, and the runtime
    that declares them (routes derived from their declarations). ``only``: declare just these actors
    (and the dead-letter handler), for a benchmark of one flow. ``connections``: the connectors' settings
    (default: from the environment). ``migrate``: bring the database's tables up to date now (a server process
    does it once the database answers)."""
    import actors
    from actors.document_intake import DocumentIntake, RedisIntakeStore
    from actors.document_workflow import DocumentPolicy, DocumentWorkflow
    from actors.exceptions import ExceptionRouter, InboxRecorder, SqlExceptionInbox
    from actors.exceptions.metrics import ExceptionGauges
    from actors.fanout import FanOut
    from actors.invoice_readiness import InvoiceReadiness, ReadinessGate, ReadinessRules, SqlReadinessStore
    from actors.invoice_readiness.metrics import ReadinessGauges
    from actors.master_data import (
        DEFAULT_MAPPING,
        MasterData,
        RedisDeltaCursor,
        SqlMasterDataStore,
        load_master_data_mapping,
    )
    from actors.master_data.check import CanonicalCheck
    from actors.provisioning import Provisioning, RedisProvisioningStore
    from actors.provisioning.labels import LabelCheck
    from actors.reconciliation import Reconciler, SqlReconciliationStore
    from actors.reconciliation.metrics import ReconciliationGauges
    from connectors.docusign.client import DocuSignClient
    from connectors.erp.client import ErpClient
    from connectors.sharepoint.client import GraphClient
    from hub.actor import Emitting
    from hub.cli.jobs import SubscriptionGauge, scheduled_jobs
    from hub.cli.platforms import box_of, document_platforms
    from hub.crosswalk import SqlCrosswalk
    from hub.scheduler import JobGauges, JobRecord
    from hub.store import RedisLocks

    policy = actors.load_policy(settings.policy_file)
    specs = {name: spec.with_lock_ttl(settings.lock_ttl_ms) for name, spec in actors.with_workflows(policy).items()}
    infra = build_infrastructure(settings, embedded=embedded, tracer_provider=tracer_provider,
                                 span_exporter=span_exporter)
    prefix, client = infra.queue_prefix, infra.redis
    connections = connections or Connections.load()
    erp = ErpClient.from_settings(connections.erp)
    graph = GraphClient.from_settings(connections.graph)
    docusign = DocuSignClient.from_settings(connections.docusign)
    platforms, close_platforms = document_platforms(policy, connections, graph=graph)
    locks = RedisLocks(client, prefix=prefix)
    crosswalk = SqlCrosswalk(infra.db)
    gate = ReadinessGate(policy=policy, rules=policy.section(actors.invoice_readiness.SECTION, ReadinessRules),
                         erp=erp, store=SqlReadinessStore(infra.db), locks=locks, platforms=platforms)
    wall = bus_wall(infra, policy)
    rules = load_master_data_mapping(settings.mapping_file or DEFAULT_MAPPING)
    handlers: list[Actor] = [
        FanOut(infra.topics, wall=wall),
        Provisioning(spec=specs["provisioning"], policy=policy, erp=erp, platforms=platforms, crosswalk=crosswalk,
                     locks=locks, store=RedisProvisioningStore(client, prefix=prefix)),
        MasterData(spec=specs["master_data"], rules=rules, platforms=platforms, crosswalk=crosswalk, locks=locks,
                   store=SqlMasterDataStore(infra.db), cursor=RedisDeltaCursor(client, prefix=prefix), erp=erp),
        DocumentIntake(spec=specs["document_intake"], platforms=platforms, erp=erp, locks=locks,
                       store=RedisIntakeStore(client, prefix=prefix),
                       subscription=subscription_of(connections, graph)),
        DocumentWorkflow(spec=specs["document_workflow"], policy=policy,
                         rules=policy.section(actors.document_workflow.SECTION, DocumentPolicy),
                         erp=erp, platforms=platforms, docusign=docusign, locks=locks),
        InvoiceReadiness(spec=specs["invoice_readiness"], gate=gate),
    ]
    inbox = SqlExceptionInbox(infra.db)
    handlers.append(InboxRecorder(inbox, spec=specs["exception_inbox"]))
    if only is not None:
        handlers = [handler for handler in handlers if handler.spec.name in only]
    router = ExceptionRouter({spec.name: spec.owner for spec in specs.values()}, inbox=inbox)
    declared = {handler.spec.name for handler in handlers}
    reconciler = Reconciler(
        policy=policy, erp=erp, graph=graph, crosswalk=crosswalk, store=SqlReconciliationStore(infra.db), locks=locks,
        out=lambda: Emitting(spec=actors.reconciliation.SPEC, registry=infra.registry, emitter=runtime.dispatcher),
        readiness=gate, notification_url=str(connections.graph.notification_url or "") or None,
        box=box_of(platforms), canonical=CanonicalCheck(rules, crosswalk, SqlMasterDataStore(infra.db)))
    jobs = scheduled_jobs(
        prefix=prefix, client=client, flight_ttl_s=settings.flight_ttl_s, graph=graph, graph_settings=connections.graph,
        gate=gate if "invoice_readiness" in declared else None,
        out=lambda: Emitting(spec=specs["invoice_readiness"], registry=infra.registry, emitter=runtime.dispatcher),
        reconciler=reconciler if "provisioning" in declared else None)
    runtime = assemble(infra, handlers, dead_letters=router, policy=policy, migrations=actors.MIGRATIONS,
                       closers=(erp.close, graph.close, docusign.close, *close_platforms,
                                *((wall.restricted.close,) if wall and hasattr(wall.restricted, "close") else ())),
                       jobs=jobs,
                       collectors=[ReadinessGauges(SqlReadinessStore(infra.db)), ExceptionGauges(inbox),
                                   ReconciliationGauges(SqlReconciliationStore(infra.db)),
                                   JobGauges(jobs, JobRecord(client, prefix=prefix)),
                                   SubscriptionGauge(client, prefix=prefix)],
                       at_worker_start=[LabelCheck(policy=policy, platform=platform, spec=specs["provisioning"])
                                        for platform in platforms]
                       if any(handler.spec.name == "provisioning" for handler in handlers) else [])
    if migrate or embedded:
        runtime.upgrade_database()
    return runtime


def bus_wall(infra: Infrastructure, policy: Policy) -> BusWall | None:
    """The fan-out's ethical walls on the bus, when the policy sets ``ethical_walls.on_the_bus``: the redacted
    variants, the matters' verdicts in the hub's database and the restricted exchange (its publisher closed with the
    runtime's topic bus)."""
    from actors.fanout.actor import BusWall
    from actors.fanout.walls import SqlMatterWalls
    from hub.redaction import Redactions
    from hub.topics import MemoryTopicBus, RabbitTopicBus, TopicBus

    on_the_bus = policy.ethical_walls.on_the_bus
    if on_the_bus is None:
        return None
    exchange = restricted_exchange(infra.settings, policy)
    assert exchange is not None
    restricted: TopicBus = (MemoryTopicBus(exchange=exchange) if infra.embedded
                            else RabbitTopicBus(infra.settings.amqp_url, exchange=exchange, link=infra.rabbitmq_link))
    return BusWall(policy=policy.ethical_walls, redactions=Redactions(infra.registry, on_the_bus.protected_fields),
                   matters=SqlMatterWalls(infra.db), restricted=restricted)


def restricted_exchange(settings: Settings, policy: Policy) -> str | None:
    """The exchange carrying walled matters' events in full, ``<prefix>.<restricted_exchange>``, or None."""
    on_the_bus = policy.ethical_walls.on_the_bus
    return None if on_the_bus is None else f"{settings.queue_prefix}.{on_the_bus.restricted_exchange}"


def exception_desk(runtime: Runtime) -> ExceptionDesk:
    """The exception inbox over the runtime's database, as operators work it; resolving with a retry replays dead
    letters on the runtime's RabbitMQ (not in the embedded mode: its broker keeps none)."""
    from actors.exceptions import SqlExceptionInbox
    from actors.exceptions.desk import ExceptionDesk
    from hub.dlq import replay_dead_letters

    def replay(actor: str, message_ids: Collection[str]) -> list[str]:
        queue = runtime.broker.get_actor(actor).queue_name
        return replay_dead_letters(runtime.settings.amqp_url, runtime.broker, queue, message_ids=set(message_ids),
                                   reasons=runtime.dead_letters)

    return ExceptionDesk(SqlExceptionInbox(runtime.db), replay=None if runtime.embedded else replay)


def subscription_of(connections: Connections, graph: GraphClient) -> DriveSubscription | None:
    """The drive's change subscription through ``graph`` (its notification URL and client state), when both are
    set."""
    from actors.document_intake import DriveSubscription

    url, state = connections.graph.notification_url, connections.graph.client_state
    return None if url is None or state is None else DriveSubscription(graph, str(url), state.get_secret_value())


def reconciler(runtime: Runtime, connections: Connections) -> Reconciler:
    """Reconciliation over the runtime's database, Redis and broker, for ``hub reconcile`` (the caller closes the
    clients it holds: ``reconciler.close()``)."""
    import actors
    from actors.master_data import DEFAULT_MAPPING, SqlMasterDataStore, load_master_data_mapping
    from actors.master_data.check import CanonicalCheck
    from actors.reconciliation import Reconciler, SqlReconciliationStore
    from connectors.sharepoint.client import GraphClient
    from hub.actor import Emitting
    from hub.cli.platforms import box_of, document_platforms
    from hub.crosswalk import SqlCrosswalk
    from hub.store import RedisLocks

    graph = GraphClient.from_settings(connections.graph)
    platforms, _ = document_platforms(runtime.policy, connections, graph=graph)  # closed with the reconciler
    gate = readiness_gate(runtime, connections, platforms=platforms)
    crosswalk = SqlCrosswalk(runtime.db)
    rules = load_master_data_mapping(runtime.settings.mapping_file or DEFAULT_MAPPING)
    return Reconciler(
        policy=runtime.policy, erp=gate.erp, graph=graph, crosswalk=crosswalk, store=SqlReconciliationStore(runtime.db),
        locks=RedisLocks(runtime.redis, prefix=runtime.queue_prefix),
        out=lambda: Emitting(spec=actors.reconciliation.SPEC, registry=runtime.registry, emitter=runtime.dispatcher),
        readiness=gate, notification_url=str(connections.graph.notification_url or "") or None,
        box=box_of(platforms), canonical=CanonicalCheck(rules, crosswalk, SqlMasterDataStore(runtime.db)))


def readiness_gate(runtime: Runtime, connections: Connections, *, platforms: Platforms | None = None
                   ) -> ReadinessGate:
    """The invoice-readiness gate over the runtime's database, for ``hub readiness`` (the caller closes the
    ERP client it holds: ``gate.erp.close()``); ``platforms``: where it reads the projects' documents, for a
    rebuild (:func:`hub.cli.platforms.document_platforms`)."""
    import actors
    from actors.invoice_readiness import ReadinessGate, ReadinessRules, SqlReadinessStore
    from connectors.erp.client import ErpClient
    from hub.store import RedisLocks

    prefix = runtime.queue_prefix
    return ReadinessGate(policy=runtime.policy,
                         rules=runtime.policy.section(actors.invoice_readiness.SECTION, ReadinessRules),
                         erp=ErpClient.from_settings(connections.erp),
                         store=SqlReadinessStore(runtime.db),
                         locks=RedisLocks(runtime.redis, prefix=prefix), platforms=platforms)


def build_ingress(runtime: Runtime, *, sources: SourceRegistry, tracer_provider: TracerProvider | None = None,
                  settle_at_once: bool = False) -> FastAPI:
    """The HTTP ingress on the runtime: confirmed publishing (aio-pika, or the dispatcher when embedded),
    Redis-backed replay guard, quotas and accepted-event outcomes, the native webhook adapters and the
    routers of the patterns' queries (the hard-stop check reads the runtime's database). ``sources``: loaded
    with :func:`source_model` (:func:`load_sources`). ``settle_at_once``: each request settles before its response,
    not with the next request's round trip (:class:`hub.batching.TrailingWrites`; ``python -m bench.settles``)."""
    import actors
    from actors.exceptions.router import exceptions_router
    from actors.invoice_readiness import ReadinessRules, SqlReadinessStore
    from actors.invoice_readiness.router import held_router, readiness_answer, readiness_router
    from connectors.webhooks import adapters
    from hub.batching import TrailingWrites
    from hub.catalogue import SchemaCatalogue
    from hub.errors import ConfigurationError
    from hub.ingress.app import EventPublisher, Ingress, create_app
    from hub.ingress.auth import QuotaGate, RedisReplayGuard
    from hub.ingress.local import DispatcherPublisher
    from hub.ingress.outcomes import OutcomeStore
    from hub.ingress.publisher import AsyncEventPublisher
    from hub.ingress.queries import QueryGuard
    from hub.ingress.schemas import schemas_router
    from hub.probes import watch_async_redis
    from hub.store import connect_async_redis
    from observability.flight import AsyncRedisFlightRecord

    vendor_adapters = adapters(runtime.registry)
    for source in sources:
        missing = sorted(set(vendor_adapters) - set(source.vendors()))
        if missing:
            raise ConfigurationError(f"source {source.id!r} has no place for the {', '.join(missing)} block(s): "
                                     "build the sources with hub.cli.compose.source_model()")
    settings = runtime.settings
    prefix = settings.queue_prefix
    client = connect_async_redis(settings.redis_url, embedded=runtime.embedded, server=runtime.fake_server)
    publisher: DispatcherPublisher | AsyncEventPublisher
    if runtime.embedded:
        publisher = DispatcherPublisher(runtime.dispatcher)
    else:
        publisher = AsyncEventPublisher(
            amqp_url=settings.amqp_url, routes=runtime.dispatcher.routes,
            queues={name: actor.queue_name for name, actor in runtime.actors.items()},
            delivery_limit=settings.delivery_limit, tracer_provider=tracer_provider or runtime.tracer_provider,
            flight=AsyncRedisFlightRecord(client, prefix=prefix, ttl_s=settings.flight_ttl_s),
            link=runtime.rabbitmq_link)
    events_publisher: EventPublisher = publisher
    readiness = readiness_answer(SqlReadinessStore(runtime.db), runtime.policy,
                                 runtime.policy.section(actors.invoice_readiness.SECTION, ReadinessRules))
    ingress = Ingress(
        registry=runtime.registry, sources=sources, publisher=events_publisher,
        quotas=QuotaGate(client, key_prefix=prefix), replay_guard=RedisReplayGuard(client, key_prefix=prefix),
        outcomes=OutcomeStore(client, prefix=prefix, trailing=None if settle_at_once else TrailingWrites(client)),
        redis=client, adapters=vendor_adapters,
        tracer=(tracer_provider or runtime.tracer_provider).get_tracer("hub.ingress"),
        max_body_bytes=settings.max_body_bytes, key_prefix=prefix,
    )
    guard = QueryGuard(ingress)
    desk = exception_desk(runtime)
    routers = [held_router(SqlReadinessStore(runtime.db), guard=guard), readiness_router(readiness, guard=guard),
               exceptions_router(desk, guard=guard),
               schemas_router(SchemaCatalogue.load(runtime.registry),
                              events_document(settings, runtime.registry, runtime.policy),
                              redactions=redactions_of(runtime.registry, runtime.policy))]
    if settings.operators_file is not None:
        from hub.cli.console import RuntimeConsole
        from hub.console import console_router
        from hub.console.auth import Operators, Sessions

        secret = settings.console_secret.get_secret_value().encode() if settings.console_secret else None
        routers.append(console_router(RuntimeConsole(runtime, desk=desk, readiness=SqlReadinessStore(runtime.db)),
                                      operators=Operators.load(settings.operators_file), sessions=Sessions(secret),
                                      trace_url=settings.trace_ui_url, flight_ttl_days=settings.flight_ttl_s // 86_400))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watch = None
        if isinstance(publisher, AsyncEventPublisher):
            await publisher.start(require_connection=False)  # not ready (503) until RabbitMQ answers
            watch = asyncio.create_task(watch_async_redis(client, runtime.redis_link), name="hub-redis-watch")
        try:
            yield
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            await publisher.close()
            await ingress.outcomes.close()  # the last requests' settles
            await client.aclose()

    return create_app(ingress, routers=routers, lifespan=lifespan)


def events_document(settings: Settings, registry: SchemaRegistry, policy: Policy) -> dict[str, Any]:
    """The AsyncAPI document of this hub's topic exchange (``hub schemas export``, ``GET /v1/asyncapi.json``):
    its prefix, the first RabbitMQ node consumers reach (without credentials) and the ingress's address."""
    from hub.asyncapi import Redaction, document
    from hub.catalogue import SchemaCatalogue

    node = urlsplit(settings.amqp_urls[0])
    host = f"{node.hostname or '127.0.0.1'}:{node.port or (5671 if node.scheme == 'amqps' else 5672)}"
    exchange, redactions = restricted_exchange(settings, policy), redactions_of(registry, policy)
    redaction = None if exchange is None or redactions is None else Redaction(exchange, redactions.schemas())
    return document(SchemaCatalogue.load(registry), prefix=settings.queue_prefix, amqp_host=host,
                    public_url=settings.public_url, redaction=redaction)


def redactions_of(registry: SchemaRegistry, policy: Policy) -> Redactions | None:
    """The redacted variants the policy's ``ethical_walls.on_the_bus`` declares, or None."""
    from hub.redaction import Redactions

    on_the_bus = policy.ethical_walls.on_the_bus
    return None if on_the_bus is None else Redactions(registry, on_the_bus.protected_fields)


def source_model() -> type[SourceConfig]:
    """One source of the sources file: the runtime's fields, each webhook adapter's block of keys, and the
    queries of the routers :func:`build_ingress` mounts."""
    from actors.exceptions.router import ACT, READ
    from actors.invoice_readiness.router import HELD, QUERY
    from connectors.webhooks import vendor_blocks
    from hub.ingress import sources

    return sources.source_model(vendors=vendor_blocks(), queries=(QUERY, HELD, READ, ACT))


def load_sources(path: Path, environ: Mapping[str, str]) -> SourceRegistry:
    """Read and validate a sources file with :func:`source_model` (``secret_env`` looked up in ``environ``)."""
    from hub.ingress import sources

    return sources.load_sources(path, environ, model=source_model())


def sources_from_settings(settings: Settings, environ: Mapping[str, str]) -> SourceRegistry:
    """Load the sources file named by ``HUB_SOURCES_FILE`` with :func:`source_model` (``hub serve``)."""
    from hub.ingress import sources

    return sources.sources_from_settings(settings, environ, model=source_model())
