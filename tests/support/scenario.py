"""The whole hub with its simulated systems, as the demo runs it: ERP simulator -> signed webhook ->
ingress -> RabbitMQ -> workers -> SharePoint and Box simulators and ERP write-back.

``running_scenario(..., platform="box")`` keeps every workspace on one document platform (the policy's
``platforms`` section), and the scenario's platform methods (``folder``, ``put_document``, ``set_document``, ...)
act on that platform's simulator: one test, run on each platform (:data:`tests.support.platforms.on_each_platform`).
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from actors import DEFAULT_POLICY
from actors.document_intake import ensure_subscription
from connectors.box.client import BoxClient
from connectors.box.platform import BoxPlatform
from connectors.sharepoint.client import GraphClient
from hub.cli.compose import Connections, build_app, build_ingress
from hub.cli.scenario import DemoCredentials, demo_sources, sandbox_connections
from hub.ingress.server import bound_socket, serve_in_thread, socket_url
from hub.platforms import PlatformName
from hub.policy import WORKSPACES_ROOT, Policy
from hub.runtime import Runtime
from hub.settings import Settings
from hub.workers import running_worker
from simulators.kit import http
from simulators.kit.faults import FaultPlan
from simulators.sandbox import BOX_SOURCE_ID, GRAPH_SOURCE_ID, Sandbox, SignIn, running_sandbox
from tests.support.platforms import Folder, box_folder, policy_on, sharepoint_folder
from tests.support.tls import TlsTerminator, loopback_tls


@dataclass
class Scenario:
    """A running hub and its simulators."""

    runtime: Runtime
    sandbox: Sandbox
    ingress_url: str
    credentials: DemoCredentials
    #: The ingress's Graph webhook over https (the TLS terminator in front of the ingress), as Graph requires.
    graph_webhook_url: str = ""
    #: The authority (a PEM file) the TLS terminator's certificate chains to.
    tls_ca: str = ""
    #: The connectors' settings the hub runs with.
    connections: Connections | None = None
    #: The document platform the scenario's workspaces are on (with ``platform=`` given; else the policy's choice,
    #: and the platform methods below act on SharePoint).
    platform: PlatformName = "sharepoint"

    def readiness(self, number: str) -> httpx.Response:
        """The hard-stop check, asked as the ERP asks it."""
        return http.get(f"{self.ingress_url}/v1/invoices/{number}/readiness", timeout=10,
                         headers={"authorization": f"Bearer {self.credentials.erp_api_key}"})

    def create_client(self, client_id: str, name: str, country: str) -> None:
        """Create a client in the ERP (a user at the ERP's screen would)."""
        with self.sandbox.erp() as erp:
            erp.post("/clients", json={"id": client_id, "name": name, "country": country}).raise_for_status()

    def create_project(self, **fields: Any) -> dict[str, Any]:
        """Create a project in the ERP; the ERP posts its event to the hub."""
        with self.sandbox.erp() as erp:
            response = erp.post("/projects", json=fields)
            response.raise_for_status()
            project: dict[str, Any] = response.json()
            return project

    def update_project(self, code: str, **changes: Any) -> dict[str, Any]:
        """Change a project in the ERP."""
        with self.sandbox.erp() as erp:
            response = erp.patch(f"/projects/{code}", json=changes)
            response.raise_for_status()
            project: dict[str, Any] = response.json()
            return project

    def erp_project(self, code: str) -> dict[str, Any]:
        """The ERP's record now."""
        with self.sandbox.erp() as erp:
            project: dict[str, Any] = erp.get(f"/projects/{code}").json()
            return project

    def workspace(self, path: str) -> dict[str, Any] | None:
        """The SharePoint simulator's item at ``path`` of the workspaces drive."""
        items = self.sandbox.graph_state()["drives"][self.sandbox.drive_id]["items"]
        found: dict[str, Any] | None = items.get(path)
        return found

    def box_folder(self, path: str) -> dict[str, Any] | None:
        """The Box simulator's folder at ``path`` below its root, with its own collaborations (group -> role),
        metadata instance and retention policies; None when there is none."""
        state = self.sandbox.box_state()
        item = state["items"].get(path)
        if item is None:
            return None
        folder = item["id"]
        return {**item,
                "collaborations": {c["accessible_by"]["name"]: c["role"] for c in state["collaborations"]
                                   if c["item"]["id"] == folder},
                "metadata": next((m for m in state["metadata"] if m["item"] == folder), {}),
                "retention": sorted(a["retention_policy"]["policy_name"] for a in state["assignments"]
                                    if a["assigned_to"]["id"] == folder)}

    def folder(self, path: str) -> Folder | None:
        """The folder or file at ``path`` (below the workspaces' root) on the scenario's platform; None when none."""
        if self.platform == "sharepoint":
            return sharepoint_folder(self.workspace(path))
        assert self.connections is not None
        box = self.connections.box
        return box_folder(self.sandbox.box_state(), path, web=str(box.web_url), template=box.metadata_template)

    def put_document(self, folder: str, name: str, *, fields: dict[str, str]) -> str:
        """Upload a file into ``folder`` with the document fields (list-item columns, or the template's instance),
        as a user would on the scenario's platform; returns its id."""
        if self.platform == "sharepoint":
            return self.sandbox.put_document(folder, name, fields=fields)
        return self.sandbox.box_put_document(folder, name, fields=fields)

    def set_document(self, item_id: str, *, fields: dict[str, str]) -> None:
        """Change a file's document fields on the scenario's platform, as a user would."""
        if self.platform == "sharepoint":
            self.sandbox.set_document(item_id, fields=fields)
        else:
            self.sandbox.box_set_document(item_id, fields=fields)

    def delete_document(self, item_id: str) -> None:
        """Delete a file on the scenario's platform, as a user would (Box moves it to the trash)."""
        if self.platform == "sharepoint":
            self.sandbox.delete_document(item_id)
        else:
            with self.sandbox.box() as box:
                box.delete(f"/files/{item_id}").raise_for_status()

    def edit_metadata(self, path: str, fields: dict[str, str]) -> None:
        """Someone edits the folder's canonical fields by hand on the scenario's platform."""
        folder = self.folder(path)
        assert folder is not None, path
        if self.platform == "sharepoint":
            with self.sandbox.graph() as graph:
                graph.patch(f"/drives/{self.sandbox.drive_id}/items/{folder.id}/listItem/fields",
                            json=fields).raise_for_status()
            return
        assert self.connections is not None
        patch = [{"op": "replace", "path": f"/{key}", "value": value} for key, value in fields.items()]
        with self.sandbox.box() as box:
            box.put(f"/folders/{folder.id}/metadata/enterprise/{self.connections.box.metadata_template}",
                    headers={"content-type": "application/json-patch+json"},
                    content=json.dumps(patch).encode()).raise_for_status()

    def set_platform_faults(self, plan: FaultPlan) -> None:
        """Change the faults of the scenario's platform's simulator mid-run."""
        if self.platform == "sharepoint":
            self.sandbox.set_graph_faults(plan)
        else:
            http.put(f"{self.sandbox.box_url}/_sim/faults", json=plan.to_json(), timeout=10).raise_for_status()

    def platform_faults_injected(self) -> dict[str, int]:
        """The faults the scenario's platform's simulator injected so far, by kind."""
        state = self.sandbox.graph_state() if self.platform == "sharepoint" else self.sandbox.box_state()
        injected: dict[str, int] = state["faults"]["injected"]
        return injected

    def raised(self, receive: Any, kind: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """The first ``hub.exception.raised.v1`` of ``kind`` that ``receive`` (a subscription to that type)
        delivers, decoded; the others are skipped. Fails when none comes within ``timeout`` of the last."""
        while True:
            alert = receive(timeout)
            assert alert is not None, f"no {kind} exception"
            data: dict[str, Any] = self.runtime.registry.decode("hub.exception.raised.v1", alert.body)
            if data["kind"] == kind:
                return data


def acme_project(**overrides: Any) -> dict[str, Any]:
    """The consulting scenario's engagement."""
    return {"code": "ENG-ACME-0001", "client_id": "ACME", "name": "ACME operating model redesign",
            "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
            "partner": "p.schmidt@example-firm.com", "billing_model": "time_and_materials", "status": "planned",
            "value": {"amount_minor": 48_000_000, "currency": "EUR"}, **overrides}


#: How the scenarios sign in: tokens living 5 s, renewed before they expire (at half their lifetime), so a
#: scenario of a few seconds already spans renewals.
SCENARIO_SIGN_IN = SignIn(token_lifetime_s=5.0)


@contextmanager
def running_scenario(
    settings: Settings,
    *,
    embedded: bool = False,
    tracer: tuple[TracerProvider, InMemorySpanExporter] | None = None,
    graph_faults: FaultPlan | None = None,
    threads: int = 4,
    documents: bool = False,
    sign_in: SignIn | None = None,
    labels: Collection[str] | None = None,
    platform: PlatformName | None = None,
) -> Iterator[Scenario]:
    """Start simulators, ingress and workers; stop them all afterwards.

    ``documents``: the hub also subscribes to the drive's change notifications and to Box's webhooks on the
    workspaces' root folder (document intake). Graph reaches
    the ingress over https only (``Scenario.graph_webhook_url``), through a TLS terminator in front of it as in
    production, whose certificate the simulator trusts. ``sign_in``: the hub signs in to Graph and DocuSign,
    whose tokens expire (see :class:`simulators.sandbox.SignIn`); by default as a firm's hub does, with tokens
    living :data:`SCENARIO_SIGN_IN`'s few seconds, so every scenario runs across token expiries. ``None``: the
    simulators take their static tokens. ``labels``: the retention labels the tenant
    publishes (default: every label the policy applies). ``platform``: every workspace on that document platform
    (the policy's ``platforms`` section replaced; the scenario's platform methods act on it).
    """
    if platform is not None:
        settings = settings.model_copy(update={"policy_file": policy_on(settings.policy_file or DEFAULT_POLICY,
                                                                        platform)})
    credentials = DemoCredentials.generate()
    with ExitStack() as stack:
        sock = stack.enter_context(bound_socket())  # the simulators must know the ingress URL first
        tls = loopback_tls(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        sandbox = stack.enter_context(running_sandbox(
            serve=serve_in_thread, ingress_events_url=f"{socket_url(sock)}/v1/events",
            webhook_secret=credentials.erp_secret,
            groups=_known_groups(settings), graph_faults=graph_faults, erp_api_key=credentials.erp_api_key,
            docusign_hmac_key=credentials.docusign_key, graph_notify_ca=tls.ca,
            labels=_labels(settings) if labels is None else sorted(labels), sign_in=sign_in,
            box_keys=(credentials.box_primary_key, credentials.box_secondary_key)))
        provider, exporter = tracer if tracer else (None, None)
        terminator = TlsTerminator(sock.getsockname()[:2], tls)
        stack.callback(terminator.close)
        webhook = f"{terminator.url}/v1/webhooks/graph/{GRAPH_SOURCE_ID}"
        connections = sandbox_connections(sandbox)
        if documents:  # the hub keeps the drive's subscription, as a firm's does (reconciliation checks it)
            graph_settings = connections.graph.model_copy(update={
                "notification_url": webhook, "client_state": SecretStr(credentials.graph_client_state)})
            connections = replace(connections, graph=graph_settings)
        runtime = build_app(settings, connections=connections, embedded=embedded, tracer_provider=provider,
                            span_exporter=exporter)
        stack.callback(runtime.close)
        url = stack.enter_context(serve_in_thread(
            build_ingress(runtime, sources=demo_sources(credentials), tracer_provider=provider), sock=sock))
        stack.enter_context(running_worker(runtime, threads=threads))
        if documents:
            graph = GraphClient.from_settings(connections.graph)
            stack.callback(graph.close)
            ensure_subscription(graph, webhook, credentials.graph_client_state)
            box = BoxPlatform(BoxClient.from_settings(connections.box))
            stack.callback(box.client.close)  # the workspaces' root folder notifies the ingress's Box route
            box.subscribe(box.ensure_folder(WORKSPACES_ROOT).id, f"{url}/v1/webhooks/box/{BOX_SOURCE_ID}")
        yield Scenario(runtime=runtime, sandbox=sandbox, ingress_url=url, credentials=credentials,
                       graph_webhook_url=webhook, tls_ca=tls.ca, connections=connections,
                       platform=platform or "sharepoint")


@functools.cache
def _policy(path: Path | None) -> Policy:
    """The policy file, read once per session (the scenarios start many sandboxes from it)."""
    from actors import load_policy

    return load_policy(path)


def _labels(settings: Settings) -> list[str]:
    """Every retention label the policy applies: the simulated tenant publishes them."""
    return sorted(_policy(settings.policy_file).retention.all_labels())


def _known_groups(settings: Settings) -> list[str]:
    return list(_policy(settings.policy_file).security_groups.known_groups or [])


__all__ = ["Scenario", "acme_project", "running_scenario"]
