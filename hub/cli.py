"""The ``hub`` command, and the composition root: the one place that wires runtime, actors and routes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import dramatiq
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hub.dispatch import RoutingTable
from hub.errors import ConfigurationError, HubError
from hub.ingress.sources import SourceRegistry
from hub.runtime import Runtime, attach_routes, build_runtime, embedded_requested
from hub.settings import Settings, load_settings
from observability.logging import configure_logging, mask_text


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


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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


def _settings(*, quieter_than: str = "DEBUG") -> Settings:
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    level = max(settings.log_level, quieter_than, key=_LEVELS.index)
    configure_logging(fmt=settings.log_format, level=level)
    return settings


@click.group()
def main() -> None:
    """Integration hub for ERP/PSA, document platforms and e-signature (settings: HUB_* variables)."""
    try:
        load_settings()  # every command fails at start on an unknown or invalid setting
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--threads", default=8, show_default=True, help="Worker threads per process.")
@click.option("--processes", default=1, show_default=True, help="Worker processes.")
@click.option("--heartbeat-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Touched every few seconds while RabbitMQ and Redis answer (for a container healthcheck).")
def worker(threads: int, processes: int, heartbeat_file: Path | None) -> None:
    """Run the actors: consume every actor queue until SIGTERM or Ctrl-C.

    Waits for RabbitMQ and Redis at start (never falls back to the embedded mode unless HUB_EMBEDDED=on).
    """
    if processes > 1:
        beat = ["--heartbeat-file", str(heartbeat_file)] if heartbeat_file else []
        children = [
            subprocess.Popen([sys.executable, "-m", "hub", "worker", "--threads", str(threads), *beat])  # noqa: S603
            for _ in range(processes)
        ]

        def forward(signum: int, _frame: object) -> None:
            for child in children:
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        codes = [child.wait() for child in children]
        sys.exit(max(codes))
    from hub.workers import run_worker

    settings = _settings()
    runtime = build_app(settings, embedded=embedded_requested(settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"hub worker: {_mode(runtime)}, {threads} threads, pid {os.getpid()}", err=True)
    run_worker(runtime, threads=threads, stop=stop, heartbeat_file=heartbeat_file)


def _mode(runtime: Runtime) -> str:
    if runtime.embedded:
        return "EMBEDDED (HUB_EMBEDDED=on: StubBroker, in-process Redis; nothing is persisted)"
    settings = runtime.settings
    return f"RabbitMQ {mask_text(settings.amqp_url)}, Redis {mask_text(settings.redis_url)}"


@main.command()
def serve() -> None:
    """Run the HTTP ingress on HUB_HTTP_BIND (sources from HUB_SOURCES_FILE)."""
    from hub.ingress.server import run_server
    from hub.ingress.sources import sources_from_settings

    settings = _settings()
    try:
        sources = sources_from_settings(settings, os.environ)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    runtime = build_app(settings, embedded=embedded_requested(settings))
    host, _, port = settings.http_bind.rpartition(":")
    click.echo(f"hub serve: {_mode(runtime)}, {len(sources)} source(s), http://{host}:{port}", err=True)
    run_server(build_ingress(runtime, sources=sources), host=host.strip("[]"), port=int(port))


def _env_secret(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise click.ClickException(f"set {name} to {what}")
    return value


@main.command()
@click.argument("system", type=click.Choice(["erp", "sharepoint", "docusign"]))
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it on loopback).")
@click.option("--port", type=int, help="Port (default: erp 8091, sharepoint 8092, docusign 8093).")
@click.option("--webhook-url", help="erp: the hub ingress events URL to post signed CloudEvents to; "
                                    "docusign: the ingress's /v1/webhooks/docusign/<source id> for Connect.")
@click.option("--webhook-secret-env", default=None,
              help="Environment variable holding the webhook secret: the Standard Webhooks secret (whsec_...) "
                   "for erp (default ERP_SIM_WEBHOOK_SECRET), the Connect HMAC key for docusign "
                   "(default DOCUSIGN_SIM_HMAC_KEY).")
@click.option("--readiness-url", help="erp: the hub's /v1/invoices/{number}/readiness, asked before finalising "
                                      "(API key from $ERP_SIM_READINESS_KEY).")
def simulate(system: str, host: str, port: int | None, webhook_url: str | None, webhook_secret_env: str | None,
             readiness_url: str | None) -> None:
    """Run a simulated ERP, SharePoint (Microsoft Graph subset) or DocuSign account as an HTTP service."""
    settings = _settings()
    if system == "docusign":
        from connectors.docusign.simulator import ConnectConfig, DocuSignSimConfig
        from connectors.docusign.simulator import run as run_docusign

        connect = None
        if webhook_url:
            key = _env_secret(webhook_secret_env or "DOCUSIGN_SIM_HMAC_KEY", "the Connect HMAC key the hub knows")
            connect = ConnectConfig(url=webhook_url, hmac_key=key)
        run_docusign(host, port or 8093, DocuSignSimConfig(token=settings.docusign_token.get_secret_value(),
                                                           connect=connect))
    elif system == "erp":
        from connectors.erp.simulator import ErpSimConfig, ReadinessGate
        from connectors.erp.simulator import run as run_erp
        from connectors.erp.simulator_webhooks import WebhookConfig

        webhook = gate = None
        if webhook_url:
            secret = _env_secret(webhook_secret_env or "ERP_SIM_WEBHOOK_SECRET", "the webhook secret the hub knows")
            webhook = WebhookConfig(url=webhook_url, secret=secret)
        if readiness_url:
            api_key = _env_secret("ERP_SIM_READINESS_KEY", "the ERP's API key for the hard-stop check")
            gate = ReadinessGate(url_template=readiness_url, api_key=api_key)
        run_erp(host, port or 8091, ErpSimConfig(token=settings.erp_token.get_secret_value(), webhook=webhook,
                                                 readiness=gate))
    else:
        from actors import DEFAULT_POLICY
        from connectors.sharepoint.simulator import DEFAULT_GROUPS, SimulatorConfig
        from connectors.sharepoint.simulator import run as run_graph
        from hub.policy import load_policy

        known = load_policy(settings.policy_file or DEFAULT_POLICY).security_groups.known_groups or []
        run_graph(host, port or 8092, SimulatorConfig(token=settings.graph_token.get_secret_value(),
                                                      drives=(settings.graph_drive_id,),
                                                      groups=tuple(dict.fromkeys([*known, *DEFAULT_GROUPS]))))


@main.command()
def demo() -> None:
    """Run the end-to-end demo (real servers when they answer, the embedded mode otherwise)."""
    from hub.demo import run_demo

    settings = _settings(quieter_than="WARNING")
    from actors import DEFAULT_POLICY
    from connectors.sandbox import running_sandbox
    from hub.policy import load_policy

    groups = load_policy(settings.policy_file or DEFAULT_POLICY).security_groups.known_groups or []
    sys.exit(run_demo(settings, build_app=build_app, build_ingress=build_ingress, running_sandbox=running_sandbox,
                      directory_groups=groups, subscribe=_subscribe_documents, echo=click.echo))


def _subscribe_documents(runtime: Runtime, notification_url: str, client_state: str) -> None:
    """Subscribe the ingress's Graph webhook to the workspaces drive (document intake)."""
    from actors.document_intake import ensure_subscription
    from connectors.sharepoint.client import GraphClient

    graph = GraphClient.from_settings(runtime.settings)
    try:
        ensure_subscription(graph, notification_url, client_state)
    finally:
        graph.http.client.close()


@main.command()
@click.argument("event_id")
def trace(event_id: str) -> None:
    """Print the journey of one business event: every hop, with timings, errors and trace ids."""
    from hub.store import connect_redis
    from observability.flight import RedisFlightRecord, render_tree

    settings = _settings()
    record = RedisFlightRecord(connect_redis(settings.redis_url, embedded=False),
                               prefix=settings.queue_prefix, ttl_s=settings.flight_ttl_s)
    hops = record.hops(event_id)
    if not hops:
        raise click.ClickException(f"no flight record for event {event_id} (expired or never seen)")
    click.echo(render_tree(hops))


@main.group()
def schemas() -> None:
    """Avro schemas of the event contract."""


def _schema_dirs(against: Path | None) -> tuple[Path, Path]:
    from importlib.resources import files

    current = Path(str(files("schemas")))
    return current, against or current / "released"


@schemas.command("check")
@click.option("--against", type=click.Path(path_type=Path, file_okay=False),
              help="Released snapshot to compare with (default: schemas/released).")
def schemas_check(against: Path | None) -> None:
    """Fail when a schema change is not backward compatible with the released version."""
    from hub.compat import check_backward
    from hub.registry import SchemaRegistry

    current, released = _schema_dirs(against)
    try:
        registry = SchemaRegistry.load(current)
        problems = check_backward(current, released)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in problems:
        click.echo(f"INCOMPATIBLE {problem.name} ({problem.event_type or 'shared type'}): {problem.reason}")
    if problems:
        raise click.ClickException(f"{len(problems)} incompatible schema change(s)")
    click.echo(f"{len(registry.event_types)} event types backward compatible with {released}")


@schemas.command("release")
def schemas_release() -> None:
    """Record the current schemas as the released snapshot (after a passing check)."""
    from hub.compat import release

    current, released = _schema_dirs(None)
    try:
        names = release(current, released)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    for name in names:
        click.echo(f"released {name}")


@main.group()
def dlq() -> None:
    """Dead letters of the actor queues."""


def _real_runtime() -> Runtime:
    settings = _settings()
    runtime = build_app(settings, embedded=False)
    return runtime


def _queues(runtime: Runtime, actors: tuple[str, ...], queues: tuple[str, ...]) -> list[str]:
    names = list(queues)
    for name in actors or (() if queues else tuple(sorted(runtime.actors))):
        try:
            names.append(runtime.broker.get_actor(name).queue_name)
        except dramatiq.errors.ActorNotFound:
            known = ", ".join(sorted(runtime.actors))
            raise click.ClickException(f"no actor named {name!r}; known: {known}") from None
    return names


@dlq.command("list")
@click.option("--actor", "actors", multiple=True, help="Actor name (default: every actor).")
@click.option("--queue", "queues", multiple=True, help="Queue name, instead of an actor.")
def dlq_list(actors: tuple[str, ...], queues: tuple[str, ...]) -> None:
    """List dead letters with their failure reasons."""
    from hub.dlq import list_dead_letters

    runtime = _real_runtime()
    total = 0
    for queue in _queues(runtime, actors, queues):
        letters = list_dead_letters(runtime.settings.amqp_url, queue, runtime.dead_letters)
        total += len(letters)
        for letter in letters:
            click.echo(letter.describe())
    click.echo(f"{total} dead letter(s)", err=True)
    runtime.close()


@dlq.command("replay")
@click.option("--actor", "actors", multiple=True, help="Actor whose dead letters to replay.")
@click.option("--queue", "queues", multiple=True, help="Queue name, instead of an actor.")
@click.option("--message-id", "message_ids", multiple=True, help="Replay only these (default: all).")
def dlq_replay(actors: tuple[str, ...], queues: tuple[str, ...], message_ids: tuple[str, ...]) -> None:
    """Replay dead letters with their original ids, so idempotency still holds."""
    from hub.dlq import replay_dead_letters

    if not actors and not queues:
        raise click.UsageError("name the dead letters to replay with --actor or --queue")
    runtime = _real_runtime()
    replayed: list[str] = []
    for queue in _queues(runtime, actors, queues):
        replayed += replay_dead_letters(runtime.settings.amqp_url, runtime.broker, queue,
                                        message_ids=set(message_ids) or None, reasons=runtime.dead_letters)
    for message_id in replayed:
        click.echo(f"replayed {message_id}")
    click.echo(f"{len(replayed)} dead letter(s) replayed", err=True)
    runtime.close()


@main.group()
def documents() -> None:
    """Document intake: the document library's change notifications."""


@documents.command("subscribe")
@click.argument("notification_url")
def documents_subscribe(notification_url: str) -> None:
    """Subscribe NOTIFICATION_URL (the ingress's /v1/webhooks/graph/<source id>) to changes of the
    workspaces drive, or renew the subscription it has (run it daily: drive subscriptions expire).

    The clientState is HUB_GRAPH_CLIENT_STATE; the ingress source must list it under graph.client_states.
    """
    from actors.document_intake import ensure_subscription
    from connectors.sharepoint.client import GraphClient

    settings = _settings()
    if settings.graph_client_state is None or not settings.graph_client_state.get_secret_value():
        raise click.UsageError("set HUB_GRAPH_CLIENT_STATE: Graph echoes it so the ingress can check each notification")
    graph = GraphClient.from_settings(settings)
    try:
        subscription = ensure_subscription(graph, notification_url, settings.graph_client_state.get_secret_value())
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        graph.http.client.close()
    click.echo(f"subscription {subscription.id} on {subscription.resource} until {subscription.expiration.isoformat()}")


@main.group()
def readiness() -> None:
    """The invoice-readiness gate: an invoice's verdict, and rebuilding the gate's facts."""


@readiness.command("show")
@click.argument("invoice")
def readiness_show(invoice: str) -> None:
    """Whether INVOICE may be finalised now, with its hold reasons (from the gate's facts)."""
    import json

    from actors import policy_of
    from actors.invoice_readiness import ReadinessGate
    from actors.invoice_readiness_store import readiness_body
    from connectors.erp.client import ErpClient

    runtime = _real_runtime()
    try:
        gate = ReadinessGate(runtime, policy=policy_of(runtime), erp=ErpClient.from_settings(runtime.settings))
        code, verdict = gate.current(invoice)
        click.echo(json.dumps(readiness_body(invoice, code, verdict), indent=2))
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        runtime.close()


@readiness.command("rebuild")
@click.argument("invoice", required=False)
@click.option("--all", "rebuild_all", is_flag=True, help="Every draft invoice in the ERP.")
def readiness_rebuild(invoice: str | None, rebuild_all: bool) -> None:
    """Rebuild the gate's facts from the ERP and the document platform (one INVOICE's project, or --all),
    and emit the verdicts that changed."""
    from actors import policy_of
    from actors.invoice_readiness import ReadinessGate
    from connectors.erp.client import ErpClient
    from connectors.sharepoint.client import GraphClient

    if (invoice is None) == (not rebuild_all):
        raise click.UsageError("name one INVOICE or give --all")
    runtime = _real_runtime()
    erp = ErpClient.from_settings(runtime.settings)
    graph = GraphClient.from_settings(runtime.settings)
    try:
        gate = ReadinessGate(runtime, policy=policy_of(runtime), erp=erp)
        changes = gate.rebuild(graph, invoice=invoice, progress=lambda code, done, total, facts: click.echo(
            f"[{done}/{total}] {code}: {facts} fact(s) from the ERP and the workspace", err=True))
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        erp.close()
        graph.http.client.close()
        runtime.close()
    for change in changes:
        codes = ", ".join(f"{r.code}({r.artefact})" for r in change.readiness.reasons) or "-"
        click.echo(f"{change.invoice_number} {change.project_code} {change.readiness.status} {codes}")
    click.echo(f"{len(changes)} verdict(s) changed", err=True)


@main.command()
def routes() -> None:
    """Show the routing table: which actors receive which event types."""
    from actors.routes import ROUTES

    for event_type, actor_names in sorted(ROUTES.items()):
        click.echo(f"{event_type:40} -> {', '.join(actor_names)}")


@main.command()
@click.argument("ref", metavar="ID")
def xref(ref: str) -> None:
    """Show every identity of an entity, the canonical id it resolves to and its lineage.

    ID is a canonical id (project_...) or entity:system:system_id (project:erp:ENG-ACME-0001).
    """
    from hub.crosswalk import RedisCrosswalk
    from hub.store import connect_redis
    from hub.xref import UnknownReference, describe, render

    settings = _settings()
    client = connect_redis(settings.redis_url, embedded=False)
    try:
        report = describe(RedisCrosswalk(client, prefix=settings.queue_prefix), ref)
    except UnknownReference as exc:
        raise click.ClickException(str(exc)) from None
    except HubError as exc:
        raise click.ClickException(f"cannot read the crosswalk: {exc}") from None
    finally:
        client.close()
    click.echo(render(report))
