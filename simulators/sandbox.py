"""The simulated systems side by side, for the demo and the integration tests: the ERP simulator
(posting signed CloudEvents to the hub's ingress, and asking the hub's hard-stop check before it
finalises an invoice), the SharePoint/Graph simulator and the DocuSign simulator (Connect
notifications to the hub's DocuSign webhook), each on its own loopback port.

The caller says how an app is served (``serve``: e.g. an ASGI server in a background thread, yielding its
base URL), and maps the :class:`Sandbox`'s URLs onto its own settings: nothing here knows the hub.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from simulators.docusign import ConnectConfig, DocuSignSimConfig
from simulators.docusign import create_app as docusign_app
from simulators.erp import ErpSimConfig, ReadinessGate, WebhookConfig
from simulators.erp import create_app as erp_app
from simulators.kit.faults import FaultPlan
from simulators.sharepoint import BUILTIN_COLUMNS, DEFAULT_GROUPS, SimulatorConfig
from simulators.sharepoint import create_app as graph_app

#: Serves an app while the block runs and yields its base URL (``http://host:port``).
Serve = Callable[[FastAPI], AbstractContextManager[str]]

#: The CloudEvents source the simulated ERP claims.
ERP_SOURCE = "erp-sim://acme-psa/prod"
#: The ingress source ids of the simulated DocuSign account and SharePoint tenant.
DOCUSIGN_SOURCE_ID = "docusign-sim"
GRAPH_SOURCE_ID = "sharepoint-sim"
#: Hosts the simulated Graph may notify over plain http (the sandbox's ingress), as a test exception.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: The DocuSign account of the simulator.
DOCUSIGN_ACCOUNT = "acme-firm"
#: The document columns the firm's workspaces library has, which its people fill in on their files; the
#: columns the hub itself writes (workspace metadata, a signed document's envelope) it creates when missing.
DOCUMENT_COLUMNS: tuple[str, ...] = (
    "DocumentClass", "DocumentState", "ProjectCode", "Milestone", "InvoiceNumber", "ContractValue",
    "ContractCurrency", "Milestones",
)


@dataclass(frozen=True)
class Sandbox:
    """Where the simulators listen, and their admin views."""

    erp_url: str
    graph_url: str  # ends in /v1.0, as Microsoft Graph's base URL
    erp_token: str
    graph_token: str
    drive_id: str
    #: The SharePoint site and the library (its drive ``drive_id``) holding the workspaces.
    site_url: str = "https://sim.sharepoint.example/sites/hub"
    library: str = "workspaces"
    docusign_url: str = ""
    docusign_token: str = "docusign-sim-token"  # noqa: S105 - the simulator's well-known default
    docusign_account: str = DOCUSIGN_ACCOUNT

    def docusign(self) -> httpx.Client:
        """An HTTP client on the DocuSign simulator's account API (as a sender's tool would be)."""
        return httpx.Client(base_url=f"{self.docusign_url}/restapi/v2.1/accounts/{self.docusign_account}",
                            timeout=10, headers={"authorization": f"Bearer {self.docusign_token}"})

    def sign_envelope(self, envelope_id: str) -> dict[str, Any]:
        """Every signer signs (the simulator's admin route); Connect then notifies the hub."""
        response = httpx.post(f"{self.docusign_url}/_sim/envelopes/{envelope_id}/sign", timeout=10)
        response.raise_for_status()
        envelope: dict[str, Any] = response.json()
        return envelope

    def send_for_signature(self, project_code: str, document_class: str, name: str, *, content: bytes = b"",
                           fields: dict[str, str] | None = None) -> str:
        """Send one document for signature with the hub's custom fields; returns the envelope id."""
        body = {
            "emailSubject": f"Please sign: {name}",
            "documents": [{"documentId": "1", "name": name, "documentClass": document_class,
                           "documentBase64": base64.b64encode(content or f"%PDF-1.7 {name}".encode()).decode()}],
            "recipients": {"signers": [{"name": "Dana Client", "email": "dana@client.example", "recipientId": "1"}]},
            "customFields": {"textCustomFields": [
                {"name": "project_code", "value": project_code}, {"name": "document_class", "value": document_class},
                *({"name": k, "value": v} for k, v in (fields or {}).items())]},
            "status": "sent",
        }
        with self.docusign() as docusign:
            response = docusign.post("/envelopes", json=body)
            response.raise_for_status()
            return str(response.json()["envelopeId"])

    def graph(self) -> httpx.Client:
        """An HTTP client on the SharePoint simulator's Graph API (as a user's tool would be)."""
        return httpx.Client(base_url=self.graph_url, timeout=10,
                            headers={"authorization": f"Bearer {self.graph_token}"})

    def put_document(self, folder: str, name: str, *, fields: dict[str, Any], label: str | None = None,
                     content: bytes = b"") -> str:
        """Upload a file into ``folder`` of the drive with list-item ``fields``; returns its item id."""
        with self.graph() as graph:
            response = graph.put(f"/drives/{self.drive_id}/root:/{folder}/{name}:/content",
                                 content=content or f"%PDF-1.7 {name}".encode(),
                                 headers={"content-type": "application/pdf"})
            response.raise_for_status()
            item_id = str(response.json()["id"])
        self.set_document(item_id, fields=fields, label=label)
        return item_id

    def set_document(self, item_id: str, *, fields: dict[str, Any] | None = None, label: str | None = None) -> None:
        """Change a document's list-item fields and/or apply a retention label (as a user would)."""
        with self.graph() as graph:
            if fields:
                graph.patch(f"/drives/{self.drive_id}/items/{item_id}/listItem/fields", json=fields).raise_for_status()
            if label:
                graph.patch(f"/drives/{self.drive_id}/items/{item_id}/retentionLabel",
                            json={"name": label}).raise_for_status()

    def delete_document(self, item_id: str) -> None:
        """Delete a file from the drive (as a user would)."""
        with self.graph() as graph:
            graph.delete(f"/drives/{self.drive_id}/items/{item_id}").raise_for_status()

    def draft_invoice(self, project_code: str, *, number: str, amount_minor: int, currency: str, period: str,
                      milestone_id: str | None = None) -> dict[str, Any]:
        """Draft an invoice in the ERP (the ERP posts erp.invoice.drafted.v1)."""
        with self.erp() as erp:
            response = erp.post("/invoices", json={
                "number": number, "project_code": project_code, "period": period, "milestone_id": milestone_id,
                "amount": {"amount_minor": amount_minor, "currency": currency}})
            response.raise_for_status()
            invoice: dict[str, Any] = response.json()
            return invoice

    def finalize_invoice(self, number: str) -> httpx.Response:
        """Ask the ERP to finalise an invoice (it asks the hub's hard-stop check first)."""
        with self.erp() as erp:
            return erp.post(f"/invoices/{number}/finalize")

    def erp_state(self) -> dict[str, Any]:
        """The ERP simulator's records."""
        state: dict[str, Any] = httpx.get(f"{self.erp_url}/_sim/state", timeout=10).json()
        return state

    def graph_state(self) -> dict[str, Any]:
        """The SharePoint simulator's drives, items, permissions, labels and fields."""
        state: dict[str, Any] = httpx.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/state", timeout=10).json()
        return state

    def graph_requests(self) -> dict[str, Any]:
        """Counts of committed creates, invites and calls (no duplicates is provable from these)."""
        counts: dict[str, Any] = httpx.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/requests",
                                           timeout=10).json()
        return counts

    def set_graph_faults(self, plan: FaultPlan) -> None:
        """Change the SharePoint simulator's faults mid-run."""
        httpx.put(f"{self.graph_url.removesuffix('/v1.0')}/_sim/faults", json=plan.to_json(), timeout=10)

    def set_erp_faults(self, plan: FaultPlan) -> None:
        """Change the ERP simulator's faults mid-run."""
        httpx.put(f"{self.erp_url}/_sim/faults", json=plan.to_json(), timeout=10).raise_for_status()

    def flush_erp_webhooks(self, timeout_s: float = 20.0) -> None:
        """Wait until the ERP simulator delivered every webhook."""
        httpx.post(f"{self.erp_url}/_sim/deliveries/flush", params={"timeout_s": timeout_s}, timeout=timeout_s + 5)

    def erp(self) -> httpx.Client:
        """An HTTP client on the ERP simulator's API (as an ERP user's tool would be)."""
        return httpx.Client(base_url=f"{self.erp_url}/api/v1", timeout=10,
                            headers={"authorization": f"Bearer {self.erp_token}"})


@contextmanager
def running_sandbox(
    *,
    serve: Serve,
    ingress_events_url: str | None,
    webhook_secret: str,
    groups: Sequence[str] = (),
    erp_faults: FaultPlan | None = None,
    graph_faults: FaultPlan | None = None,
    erp_token: str = "erp-sim-token",  # noqa: S107 - the simulators' well-known defaults
    graph_token: str = "graph-sim-token",  # noqa: S107
    library: str = "workspaces",
    erp_api_key: str | None = None,
    docusign_hmac_key: str | None = None,
    graph_notify_ca: str | None = None,
    labels: Sequence[str] | None = None,
    columns: Sequence[str] = DOCUMENT_COLUMNS,
) -> Iterator[Sandbox]:
    """Serve the simulators with ``serve`` while the block runs; the ERP posts to ``ingress_events_url`` (with
    ``None`` it posts nothing: the caller publishes the events itself).

    With ``erp_api_key`` the ERP asks the ingress's hard-stop check before finalising an invoice; with
    ``docusign_hmac_key`` DocuSign Connect notifies the ingress's ``docusign-sim`` webhook. Graph notifies https
    URLs whose certificate chains to ``graph_notify_ca`` (a PEM file); without one, as the one exception to
    Graph's rule, it also notifies plain-http URLs on loopback (the demo's ingress). SharePoint's
    site has one library, ``library``, with SharePoint's own columns and ``columns``; the tenant publishes
    the retention ``labels`` (``None``: any label applies, and the label list is refused).
    """
    base = (ingress_events_url or "").removesuffix("/v1/events")
    webhook = None if ingress_events_url is None else WebhookConfig(
        url=ingress_events_url, secret=webhook_secret, source=ERP_SOURCE, backoff_s=0.2)
    gate = None if erp_api_key is None else ReadinessGate(
        url_template=f"{base}/v1/invoices/{{number}}/readiness", api_key=erp_api_key)
    erp = erp_app(ErpSimConfig(token=erp_token, faults=erp_faults or FaultPlan(), webhook=webhook, readiness=gate))
    connect = None if docusign_hmac_key is None else ConnectConfig(
        url=f"{base}/v1/webhooks/docusign/{DOCUSIGN_SOURCE_ID}", hmac_key=docusign_hmac_key, backoff_s=0.2)
    docusign = docusign_app(DocuSignSimConfig(connect=connect))
    directory = tuple(dict.fromkeys([*groups, *DEFAULT_GROUPS]))
    graph = graph_app(SimulatorConfig(
        token=graph_token, drives=(library,), groups=directory, faults=graph_faults or FaultPlan(),
        columns=tuple(dict.fromkeys([*BUILTIN_COLUMNS, *columns])),
        retention_labels=None if labels is None else frozenset(labels), notify_ca_file=graph_notify_ca,
        http_notification_hosts=LOOPBACK if graph_notify_ca is None else frozenset()))
    site = graph.state.graph.site
    with ExitStack() as stack:
        erp_url = stack.enter_context(serve(erp))
        graph_url = stack.enter_context(serve(graph))
        docusign_url = stack.enter_context(serve(docusign))
        yield Sandbox(erp_url=erp_url, graph_url=f"{graph_url}/v1.0", erp_token=erp_token,
                      graph_token=graph_token, drive_id=site.libraries[0].drive_id, site_url=site.web_url,
                      library=library, docusign_url=docusign_url)
