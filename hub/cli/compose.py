"""The composition root: the one place that wires the runtime, the actors, their routes and the ingress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hub.dispatch import RoutingTable
from hub.ingress.sources import SourceRegistry
from hub.runtime import Runtime, attach_routes, build_runtime
from hub.settings import Settings

__all__ = ["build_app", "build_ingress"]


def build_app(
    settings: Settings,
    *,
    embedded: bool,
    tracer_provider: TracerProvider | None = None,
    span_exporter: InMemorySpanExporter | None = None,
) -> Runtime:
    """Build the runtime, declare every actor and attach the routing table."""
    from actors import register_all
    from actors.routes import ROUTES

    runtime = build_runtime(settings, embedded=embedded, tracer_provider=tracer_provider,
                            span_exporter=span_exporter)
    register_all(runtime)
    attach_routes(runtime, RoutingTable(ROUTES))
    return runtime



def _readiness_answer(runtime: Runtime, client: Any) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """The hard-stop check: the gate's verdict on one invoice from the facts in Redis, evaluated now."""
    from actors import policy_of
    from actors.invoice_readiness_store import Keys, project_facts, readiness_body, verdict

    policy = policy_of(runtime)
    keys = Keys(runtime.settings.queue_prefix)

    async def answer(number: str) -> dict[str, Any]:
        raw_code = await client.get(keys.invoice(number))
        code = raw_code.decode() if isinstance(raw_code, bytes) else raw_code
        facts = project_facts(code or "", await client.hgetall(keys.project(code)) if code else {})
        return readiness_body(number, code, verdict(facts, number, policy))

    return answer


def build_ingress(
    runtime: Runtime, *, sources: SourceRegistry, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The HTTP ingress on the runtime: confirmed publishing (aio-pika, or the dispatcher when embedded),
    Redis-backed replay guard, quotas and accepted-event outcomes, and the native webhook adapters."""
    from connectors.webhooks import adapters
    from hub.ingress.app import EventPublisher, Ingress, create_app
    from hub.ingress.auth import RedisReplayGuard
    from hub.ingress.local import DispatcherPublisher
    from hub.ingress.outcomes import OutcomeStore
    from hub.ingress.publisher import AsyncEventPublisher
    from hub.ingress.quotas import QuotaGate
    from hub.probes import watch_async_redis
    from hub.store import connect_async_redis

    settings = runtime.settings
    prefix = settings.queue_prefix
    assert runtime.dispatcher is not None
    publisher: DispatcherPublisher | AsyncEventPublisher
    if runtime.embedded:
        publisher = DispatcherPublisher(runtime.dispatcher)
    else:
        publisher = AsyncEventPublisher(
            amqp_url=settings.amqp_url, routes=runtime.dispatcher.routes,
            queues={name: actor.queue_name for name, actor in runtime.actors.items()},
            delivery_limit=settings.delivery_limit, tracer_provider=tracer_provider or runtime.tracer_provider)
    client = connect_async_redis(settings.redis_url, embedded=runtime.embedded, server=runtime.fake_server)
    events_publisher: EventPublisher = publisher
    readiness = _readiness_answer(runtime, client)
    ingress = Ingress(
        registry=runtime.registry, sources=sources, publisher=events_publisher,
        quotas=QuotaGate(client, key_prefix=prefix), replay_guard=RedisReplayGuard(client, key_prefix=prefix),
        outcomes=OutcomeStore(client, prefix=prefix), redis=client, adapters=adapters(runtime.registry),
        tracer=(tracer_provider or runtime.tracer_provider).get_tracer("hub.ingress"),
        max_body_bytes=settings.max_body_bytes, readiness=readiness,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watch = None
        if isinstance(publisher, AsyncEventPublisher):
            await publisher.start(require_connection=False)  # not ready (503) until RabbitMQ answers
            watch = asyncio.create_task(watch_async_redis(client, settings.redis_url), name="hub-redis-watch")
        try:
            yield
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            await publisher.close()
            await client.aclose()

    return create_app(ingress, lifespan=lifespan)
