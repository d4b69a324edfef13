"""``hub demo``'s scenario: the simulated ERP, SharePoint, DocuSign and Box drive the hub through its ingress
(a consulting engagement provisioned, its SOW signed; the documents half is ``scenario_documents``; a legal
matter on Box with its wall is ``scenario_box``), and the journey and the trace are printed.
At 400 lines on purpose: it reads as the demo's story.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from connectors.settings import BoxSettings, DocuSignSettings, ErpSettings, GraphSettings
from hub.cli.compose import Connections, source_model
from hub.duplicates import MemoryWindow
from hub.events import CloudEvent, make_event
from hub.ingress.server import bound_socket, serve_in_thread, socket_url
from hub.ingress.sources import SourceRegistry
from hub.registry import SchemaRegistry
from hub.runtime import Runtime, demo_embedded
from hub.settings import Settings
from hub.topics import Delivery, MemoryTopicBus, Receive, skipping_duplicates
from hub.workers import running_worker
from observability.flight import render_tree
from observability.tracing import configure_tracing

#: Subscribes the hub to the document library's change notifications: (runtime, notification URL, clientState).
Subscribe = Callable[[GraphSettings, str, str], None]
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
def _subscriber(runtime: Runtime, binding_key: str, echo: Callable[[str], None]) -> Iterator[Receive]:
    """Events of ``binding_key`` from ``hub.events``, each once: a second copy is shown as skipped."""

    def skipped(delivery: Delivery) -> None:
        echo(f"   a second copy of event {delivery.key().id} on hub.events (at-least-once): skipped")

    if isinstance(runtime.topics, MemoryTopicBus):
        inbox: queue.Queue[Delivery] = queue.Queue()
        runtime.topics.subscribe(binding_key, inbox.put)

        def receive_local(timeout_s: float) -> Delivery | None:
            try:
                return inbox.get(timeout=timeout_s)
            except queue.Empty:
                return None

        yield skipping_duplicates(receive_local, MemoryWindow(), on_duplicate=skipped)
    else:
        with runtime.subscription(binding_key) as receive:
            yield skipping_duplicates(receive, MemoryWindow(), on_duplicate=skipped)


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


@dataclass(frozen=True)
class DemoCredentials:
    """What the simulated systems and the ingress share, fresh for every run."""

    erp_secret: str  # Standard Webhooks secret of the ERP's posting script
    erp_api_key: str  # the ERP's key for the hard-stop check
    docusign_key: str  # DocuSign Connect HMAC key
    graph_client_state: str  # Graph subscription clientState
    operator_key: str = ""  # the console's operator key
    box_primary_key: str = ""  # the Box app's webhook signature keys
    box_secondary_key: str = ""

    @classmethod
    def generate(cls) -> DemoCredentials:
        """New random credentials."""
        return cls(erp_secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
                   erp_api_key=secrets.token_urlsafe(24), docusign_key=secrets.token_urlsafe(32),
                   graph_client_state=secrets.token_urlsafe(24), operator_key=secrets.token_urlsafe(18),
                   box_primary_key=secrets.token_urlsafe(24), box_secondary_key=secrets.token_urlsafe(24))


def demo_sources(credentials: DemoCredentials) -> SourceRegistry:
    """The demo's sources: the simulated ERP (signed events, and the hard-stop check with its API key),
    the DocuSign account (Connect HMAC), the SharePoint tenant (Graph clientState) and the Box enterprise (its
    two webhook signature keys)."""
    model = source_model()
    erp = model.model_validate({
        "id": "erp-sim", "description": "the simulated ERP of the demo", "sources": [DEMO_SOURCE],
        "event_types": ["erp.*"], "quota": "1000/minute", "queries": ["invoice_readiness"],
        "credentials": [{"scheme": "standard_webhooks", "secret": credentials.erp_secret},
                        {"scheme": "api_key",
                         "sha256": hashlib.sha256(credentials.erp_api_key.encode()).hexdigest()}],
    })
    docusign = model.model_validate({
        "id": "docusign-sim", "description": "the simulated DocuSign account", "sources": ["docusign://docusign-sim"],
        "event_types": ["esign.*"], "quota": "1000/minute", "docusign": {"hmac_keys": [credentials.docusign_key]},
    })
    graph = model.model_validate({
        "id": "sharepoint-sim", "description": "the simulated SharePoint tenant", "sources": ["graph://sharepoint-sim"],
        "event_types": ["dms.*"], "quota": "6000/minute",
        "graph": {"client_states": [credentials.graph_client_state]},
    })
    box = model.model_validate({
        "id": "box-sim", "description": "the simulated Box enterprise", "sources": ["box://box-sim"],
        "event_types": ["dms.*"], "quota": "6000/minute",
        "box": {"primary_key": credentials.box_primary_key, "secondary_key": credentials.box_secondary_key},
    })
    return SourceRegistry([erp, docusign, graph, box], origin="demo")


class SandboxUrls(Protocol):
    """Where the simulated systems listen (``simulators.sandbox.Sandbox``; hub/ does not import simulators)."""

    @property
    def erp_url(self) -> str: ...
    @property
    def graph_url(self) -> str: ...
    @property
    def drive_id(self) -> str: ...
    @property
    def site_url(self) -> str: ...
    @property
    def library(self) -> str: ...
    @property
    def docusign_url(self) -> str: ...
    @property
    def docusign_account(self) -> str: ...
    @property
    def erp_token(self) -> str: ...
    @property
    def graph_token(self) -> str: ...
    @property
    def docusign_token(self) -> str: ...
    @property
    def box_url(self) -> str: ...
    def graph_sign_in(self) -> dict[str, Any]: ...
    def docusign_sign_in(self) -> dict[str, Any]: ...


def sandbox_connections(sandbox: SandboxUrls) -> Connections:
    """The connectors pointed at the simulated systems of a sandbox (signing in when the sandbox runs with
    sign-in)."""
    return Connections(
        erp=ErpSettings(url=sandbox.erp_url, token=SecretStr(sandbox.erp_token)),
        graph=GraphSettings(url=sandbox.graph_url, token=SecretStr(sandbox.graph_token), site_url=sandbox.site_url,
                            library=sandbox.library, **sandbox.graph_sign_in()),
        docusign=DocuSignSettings(url=sandbox.docusign_url, token=SecretStr(sandbox.docusign_token),
                                  account_id=sandbox.docusign_account, **sandbox.docusign_sign_in()),
        box=BoxSettings(url=sandbox.box_url, upload_url=f"{sandbox.box_url}/api"))


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
    running_sandbox: Callable[..., Any],
    directory_groups: Sequence[str],
    subscribe: Subscribe,
    echo: Callable[[str], None],
    linger: Callable[[], None] | None = None,
    operators_file: Path | None = None,
) -> int:
    """Run the demo; returns the process exit code. ``operators_file``: where to write this run's operator (the
    console is served with the ingress); ``linger``: called once the scenario ran, the hub still up (``--keep``)."""
    embedded = demo_embedded(settings)
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
    credentials = DemoCredentials.generate()
    # Each run has queues and keys of its own (removed at the end): the simulators start afresh
    # every run and reuse their event ids, which the hub would rightly take for re-sends.
    update: dict[str, Any] = {"queue_prefix": f"demo{secrets.token_hex(4)}"}
    if operators_file is not None:
        operators_file.write_text(f"operators:\n  - {{name: demo, role: operator, sha256: "
                                  f"{hashlib.sha256(credentials.operator_key.encode()).hexdigest()}}}\n")
        update["operators_file"] = operators_file
    settings = settings.model_copy(update=update)
    # The ingress's socket is bound first: the simulators must know its URL before it starts.
    with bound_socket() as sock, running_sandbox(
            serve=serve_in_thread, ingress_events_url=f"{socket_url(sock)}/v1/events",
            webhook_secret=credentials.erp_secret, groups=directory_groups, erp_api_key=credentials.erp_api_key,
            docusign_hmac_key=credentials.docusign_key,
            box_keys=(credentials.box_primary_key, credentials.box_secondary_key)) as sandbox:
        connections = sandbox_connections(sandbox)
        runtime = build_app(settings, connections=connections, embedded=embedded, tracer_provider=provider,
                            span_exporter=spans)
        try:
            return _scenario(runtime, sandbox, build_ingress(runtime, sources=demo_sources(credentials),
                                                             tracer_provider=provider),
                             sock=sock, credentials=credentials, subscribe=subscribe, graph=connections.graph,
                             spans=spans,
                             provider=provider, echo=echo, linger=linger)
        finally:
            if not runtime.embedded:
                _purge(runtime)
            runtime.close()


def produced_metrics() -> list[str]:
    """This process's hub metrics that moved: each counter's and histogram's series, its count (and mean)."""
    from prometheus_client import REGISTRY

    lines = []
    for family in REGISTRY.collect():
        if not family.name.startswith("hub_"):
            continue
        sums = {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name.endswith("_sum")}
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            shown = "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""
            if family.type == "counter" and sample.name.endswith("_total") and sample.value:
                lines.append(f"{sample.name}{shown} {sample.value:g}")
            elif family.type == "histogram" and sample.name.endswith("_count") and sample.value:
                mean = sums.get(labels, 0.0) / sample.value
                lines.append(f"{sample.name}{shown} {sample.value:g} (mean {mean:.3f} s)")
    return lines


def _scenario(runtime: Runtime, sandbox: Any, ingress: Any, *, sock: socket.socket, credentials: DemoCredentials,
              subscribe: Subscribe, graph: GraphSettings,
              spans: InMemorySpanExporter, provider: TracerProvider, echo: Callable[[str], None],
              linger: Callable[[], None] | None = None) -> int:
    code = "ENG-ACME-0001"
    with _subscriber(runtime, "dms.workspace.provisioned.v1", echo) as receive, \
            _subscriber(runtime, "hub.invoice.readiness_changed.v1", echo) as readiness, \
            running_worker(runtime, threads=4), serve_in_thread(ingress, sock=sock) as url:
        echo(f"0. ERP simulator {sandbox.erp_url}, SharePoint simulator {sandbox.graph_url}, "
             f"Box simulator {sandbox.box_url}, hub ingress {url}, workers running")
        if sandbox.sign_in is not None:
            echo("   the hub signs in to Entra ID (client credentials) for Graph and with the JWT grant for DocuSign")
        with sandbox.erp() as erp:
            erp.post("/clients", json={"id": "ACME", "name": "ACME Corp", "country": "DE"}).raise_for_status()
            project = erp.post("/projects", json=_acme_erp_project()).json()
        echo(f"1. the ERP created engagement {code} for ACME (Strategy, EU, DE) and posted "
             f"erp.project.created.v1 to the ingress, signed with Standard Webhooks")
        forged = post_signed(url, "whsec_" + base64.b64encode(b"not the ERP's secret").decode(),
                             {"specversion": "1.0", "id": "forged-1", "source": DEMO_SOURCE,
                              "type": "erp.project.created.v1", "data": erp_payload()})
        echo(f"   a forged copy was refused: HTTP {forged.status_code} {forged.json()['type']}")
        delivery = receive(60.0)
        if delivery is None:
            echo("FAILED: no dms.workspace.provisioned.v1 on hub.events within 60 s")
            return 1
        provisioned = runtime.registry.decode(delivery.routing_key, delivery.body)
        echo(f"2. workspace provisioned in {provisioned['provisioning_ms']} ms: {provisioned['url']}")
        echo(f"   folders: {', '.join(f.rsplit('/', 1)[-1] for f in provisioned['folders'])}")
        items = sandbox.graph_state()["drives"][sandbox.drive_id]["items"]
        workspace = next(item for path, item in items.items() if path.endswith(f"/{code}"))
        grants = ", ".join(f"{p['group']} ({'/'.join(p['roles'])})" for p in workspace["permissions"])
        echo(f"   SharePoint: groups {grants}; retention label {workspace['retentionLabel']}")
        fields = workspace["fields"]
        echo(f"   metadata: {', '.join(f'{k}={v}' for k, v in sorted(fields.items()))}")
        link = _wait_for_link(sandbox, code)
        echo(f"3. the ERP shows the link: custom field workspace_url = {link}")
        event_id = f"{code}:v{project.get('version', 1)}"
        hops = _wait_for_hops(runtime, event_id)
        echo(f"4. flight record (hub trace {event_id}):")
        echo("\n".join("   " + line for line in render_tree(hops).splitlines()))
        trace_ids = [h.trace_id for h in hops if h.trace_id]
        provider.force_flush()
        if trace_ids:
            echo(f"5. trace {trace_ids[0]}:")
            echo("\n".join(_span_lines(spans.get_finished_spans(), int(trace_ids[0], 16))))
        if not (link and link == provisioned["url"]):
            echo("FAILED: the ERP does not show the workspace link")
            return 1
        subscribe(graph, f"{url}/v1/webhooks/graph/sharepoint-sim", credentials.graph_client_state)
        echo("   the hub subscribed to the document library's change notifications (Graph, with a clientState)")
        ok = _documents(runtime, sandbox, readiness, echo=echo)
        echo(f"11. the operator console: {url}/console"
             + (f" (operator key {credentials.operator_key}, this run only; Ctrl-C ends it)" if linger is not None
                else " while the demo runs (hub demo --keep keeps it up and gives a sign-in key)"))
        echo(f"    metrics this run produced (GET {url}/metrics):")
        echo("\n".join(f"      {line}" for line in produced_metrics()))
        if linger is not None:
            linger()
    if runtime.embedded:
        echo(f"   (embedded mode: the flight record of {event_id} goes with this process; with RabbitMQ and Redis "
             "running, `hub trace` reads it afterwards)")
    else:
        days = runtime.settings.flight_ttl_s / 86_400
        echo(f"   the journey stays in Redis for {days:g} days: "
             f"HUB_QUEUE_PREFIX={runtime.queue_prefix} hub trace {event_id}")
    if sandbox.sign_in is not None:
        ok = _sign_ins(sandbox, echo=echo) and ok
    echo("demo OK" if ok else "FAILED: the document workflow, the invoice-readiness gate, the matter on Box or a "
                              "sign-in")
    return 0 if ok else 1


def _sign_ins(sandbox: Any, *, echo: Callable[[str], None]) -> bool:
    """Say how often the hub signed in to each simulated vendor; False when one refused a sign-in."""
    credentials = sandbox.sign_in
    stats = sandbox.token_requests()
    graph, docusign = stats["graph"], stats["docusign"]
    echo(f"   sign-in: tokens living {graph['lifetime_s']:g} s, issued to the hub by Entra ID (Graph): "
         f"{graph['issued'].get(credentials.graph_client_id, 0)}, by DocuSign: "
         f"{docusign['issued'].get(credentials.docusign_user_id, 0)}")
    refused = {**graph["refused"], **docusign["refused"]}
    if refused:
        echo(f"FAILED: sign-in refused: {', '.join(sorted(refused))}")
    return not refused


def _documents(runtime: Runtime, sandbox: Any, receive: Receive, *,
               echo: Callable[[str], None]) -> bool:
    """The second half: DocuSign and SharePoint documents drive the ERP and the invoice-readiness gate."""
    from hub.cli import scenario_box as demo_box
    from hub.cli import scenario_documents as demo_documents

    def create_project(**fields: Any) -> str:
        with sandbox.erp() as erp:
            erp.post("/projects", json={**_acme_erp_project(), **fields}).raise_for_status()
        code = str(fields["code"])
        if _wait_for_link(sandbox, code, timeout_s=60) is None:
            raise RuntimeError(f"workspace of {code} not provisioned within 60 s")
        return code

    def update_project(code: str, **changes: Any) -> None:
        with sandbox.erp() as erp:
            erp.patch(f"/projects/{code}", json=changes).raise_for_status()

    transitions = demo_documents.Transitions(receive, runtime.registry, echo)
    return (demo_documents.consulting(sandbox, "ENG-ACME-0001", echo)
            and demo_documents.engineering(sandbox, transitions, echo, create_project)
            and demo_documents.managed_services(sandbox, transitions, echo, create_project)
            and demo_box.legal_matter_on_box(sandbox, echo, create_project, update_project))


def _acme_erp_project() -> dict[str, Any]:
    record = acme_engagement()
    return {"code": record["project_code"], "client_id": "ACME", "name": record["name"],
            "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
            "partner": record["partner"], "billing_model": "time_and_materials", "status": "planned",
            "value": record["value"], "start_date": record["start_date"].isoformat(),
            "end_date": record["end_date"].isoformat()}


def _wait_for_link(sandbox: Any, code: str, timeout_s: float = 20.0) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with sandbox.erp() as erp:
            link = erp.get(f"/projects/{code}").json().get("custom_fields", {}).get("workspace_url")
        if link:
            return str(link)
        time.sleep(0.1)
    return None


def _purge(runtime: Runtime) -> None:
    """Delete the run's queues and Redis keys, but for its flight record."""
    import contextlib

    import pika
    import pika.exceptions

    from hub.endpoints import amqp_parameters
    from hub.topology import history_stream

    connection = pika.BlockingConnection(amqp_parameters(runtime.settings.amqp_url))
    try:
        channel = connection.channel()
        names = [name for actor in runtime.actors.values()
                 for name in (actor.queue_name, f"{actor.queue_name}.DQ", f"{actor.queue_name}.XQ")]
        for name in [*names, history_stream(runtime.queue_prefix)]:
            with contextlib.suppress(pika.exceptions.AMQPError):
                channel.queue_delete(name)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.close()
    # The flight record stays (it expires by itself) so that the printed `hub trace` works afterwards.
    flight = f"{runtime.queue_prefix}:flight:"
    keys = [key for key in runtime.redis.scan_iter(f"{runtime.queue_prefix}:*", count=1000)
            if not (key.decode() if isinstance(key, bytes) else str(key)).startswith(flight)]
    if keys:
        runtime.redis.delete(*keys)


def _wait_for_hops(runtime: Runtime, event_id: str, timeout_s: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    hops = runtime.flight.hops(event_id)
    while time.monotonic() < deadline and not any(h.outcome == "ok" for h in hops):
        time.sleep(0.05)
        hops = runtime.flight.hops(event_id)
    return hops


def _host(url: str) -> str:
    """``host:port`` of each server ``url`` names (several nodes, or the sentinels), without credentials."""
    from hub.endpoints import SentinelAddress, is_sentinel

    if is_sentinel(url):
        return "sentinels " + ",".join(f"{host}:{port}" for host, port in SentinelAddress.parse(url).sentinels)
    hosts = []
    for part in url.split(","):
        netloc = part.strip().split("://", 1)[-1].split("/", 1)[0]
        hosts.append(netloc.rpartition("@")[2])
    return ",".join(hosts)
