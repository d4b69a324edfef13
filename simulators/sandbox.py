"""The simulated systems side by side, for the demo and the integration tests: the ERP simulator
(posting signed CloudEvents to the hub's ingress, and asking the hub's hard-stop check before it
finalises an invoice), the SharePoint/Graph simulator, the DocuSign simulator (Connect
notifications to the hub's DocuSign webhook) and the Box simulator (webhooks V2 signed with both keys, to the
address the hub subscribes: the ingress's Box route), each on its own loopback port.

The caller says how an app is served (``serve``: e.g. an ASGI server in a background thread, yielding its
base URL), and maps the :class:`Sandbox`'s URLs onto its own settings: nothing here knows the hub.

With :class:`~simulators.sign_in.SignIn` the simulated vendors refuse static tokens, as the real ones do
(:mod:`simulators.sign_in`).
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from simulators.box import DEFAULT_GROUPS as BOX_GROUPS
from simulators.box import BoxSimConfig
from simulators.box import create_app as box_app
from simulators.docusign import ConnectConfig, DocuSignSimConfig
from simulators.docusign import create_app as docusign_app
from simulators.erp import ErpSimConfig, ReadinessGate, WebhookConfig
from simulators.erp import create_app as erp_app
from simulators.kit import http
from simulators.kit.faults import FaultPlan
from simulators.kit.outbox import OutboundRequest
from simulators.kit.tls import serving_tls
from simulators.sharepoint import BUILTIN_COLUMNS, DEFAULT_GROUPS, SimulatorConfig
from simulators.sharepoint import create_app as graph_app
from simulators.sharepoint.login import create_login_app
from simulators.sign_in import SignIn, SignInCredentials, SignInParts, tool_tokens

__all__ = ["BOX_SOURCE_ID", "DOCUSIGN_SOURCE_ID", "ERP_SOURCE", "GRAPH_SOURCE_ID", "WEBHOOK_SYSTEMS", "Sandbox",
           "SignIn", "SignInCredentials", "running_sandbox"]

#: Serves an app while the block runs and yields its base URL (``http://host:port``).
Serve = Callable[[FastAPI], AbstractContextManager[str]]

#: The CloudEvents source the simulated ERP claims.
ERP_SOURCE = "erp-sim://acme-psa/prod"
#: The ingress source ids of the simulated DocuSign account and SharePoint tenant.
DOCUSIGN_SOURCE_ID = "docusign-sim"
GRAPH_SOURCE_ID = "sharepoint-sim"
#: The ingress source id of the simulated Box enterprise (its webhooks go to /v1/webhooks/box/<it>).
BOX_SOURCE_ID = "box-sim"
#: Hosts the simulated Graph may notify over plain http (the sandbox's ingress), as a test exception.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: The DocuSign account of the simulator.
DOCUSIGN_ACCOUNT = "acme-firm"
#: The document columns the firm's workspaces library has, which its people fill in on their files; the
#: columns the hub itself writes (workspace metadata, a signed document's envelope) it creates when missing.
DOCUMENT_COLUMNS: tuple[str, ...] = (
    "DocumentClass", "DocumentState", "ProjectCode", "Reference", "Milestone", "InvoiceNumber", "ContractValue",
    "ContractCurrency", "Milestones",
)


#: The simulated systems that send webhooks: the ERP, DocuSign Connect, Graph's change notifications and Box's.
WEBHOOK_SYSTEMS = ("erp", "docusign", "graph", "box")

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
    #: With sign-in: the credentials a firm would configure (``None``: static tokens).
    sign_in: SignInCredentials | None = None
    #: With sign-in: a token for the sandbox's own tools, per system (``graph``, ``docusign``).
    tool_token: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    #: The Box simulator (API at /2.0, uploads at /api/2.0, sign-in at /oauth2/token) and its app's credentials.
    box_url: str = ""
    box_client_id: str = BoxSimConfig.client_id
    box_client_secret: str = field(default=BoxSimConfig.client_secret, repr=False)
    box_enterprise_id: str = BoxSimConfig.enterprise_id

    def box(self) -> httpx.Client:
        """An HTTP client on the Box simulator's API, signed in with the app's client credentials (as a tool of
        the firm's Box admin would be)."""
        token = http.post(f"{self.box_url}/oauth2/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": self.box_client_id,
            "client_secret": self.box_client_secret, "box_subject_type": "enterprise",
            "box_subject_id": self.box_enterprise_id})
        token.raise_for_status()
        return http.client(base_url=f"{self.box_url}/2.0", timeout=10,
                            headers={"authorization": f"Bearer {token.json()['access_token']}"})

    def box_put_document(self, folder: str, name: str, *, fields: dict[str, str], content: bytes = b"",
                         template: str = "hubWorkspace") -> str:
        """Upload a file into the Box folder at ``folder`` (a path below the root) and give it the workspace
        template's instance with ``fields`` (the template's missing fields added first), as a user would; returns
        the file's id."""
        parent = self.box_state()["items"][folder]["id"]
        with self.box() as box:
            response = http.post(
                f"{self.box_url}/api/2.0/files/content", timeout=10, headers=box.headers,
                data={"attributes": json.dumps({"name": name, "parent": {"id": parent}})},
                files={"file": (name, content or f"%PDF-1.7 {name}".encode(), "application/pdf")})
            response.raise_for_status()
            file_id = str(response.json()["entries"][0]["id"])
        self.box_set_document(file_id, fields=fields, template=template)
        return file_id

    def box_set_document(self, file_id: str, *, fields: dict[str, str], template: str = "hubWorkspace") -> None:
        """Set a Box file's fields in the workspace template's instance (created when missing), as a user would."""
        with self.box() as box:
            schema = box.get(f"/metadata_templates/enterprise/{template}/schema")
            schema.raise_for_status()
            known = {f["key"] for f in schema.json()["fields"]}
            missing = [{"op": "addField", "data": {"type": "string", "key": k, "displayName": k}}
                       for k in fields if k not in known]
            if missing:
                box.put(f"/metadata_templates/enterprise/{template}/schema", json=missing).raise_for_status()
            instance = f"/files/{file_id}/metadata/enterprise/{template}"
            if box.get(instance).status_code == 404:
                box.post(instance, json=fields).raise_for_status()
            else:
                patch = [{"op": "add", "path": f"/{k}", "value": v} for k, v in fields.items()]
                box.put(instance, content=json.dumps(patch).encode(),
                        headers={"content-type": "application/json-patch+json"}).raise_for_status()

    def box_state(self) -> dict[str, Any]:
        """The Box simulator's folders by path, collaborations, metadata instances, retention assignments and
        webhooks."""
        state: dict[str, Any] = http.get(f"{self.box_url}/_sim/state", timeout=10).json()
        return state

    def graph_sign_in(self) -> dict[str, Any]:
        """The Graph connector's sign-in settings; empty with static tokens."""
        return self.sign_in.graph_settings() if self.sign_in else {}

    def docusign_sign_in(self) -> dict[str, Any]:
        """The DocuSign connector's sign-in settings; empty with static tokens."""
        return self.sign_in.docusign_settings() if self.sign_in else {}

    def token_requests(self) -> dict[str, dict[str, Any]]:
        """Tokens each simulated identity provider issued (per client) and refused (per error): ``graph``,
        ``docusign``."""
        graph = http.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/tokens", timeout=10).json()
        docusign = http.get(f"{self.docusign_url}/_sim/tokens", timeout=10).json()
        return {"graph": graph, "docusign": docusign}

    def docusign(self) -> httpx.Client:
        """An HTTP client on the DocuSign simulator's account API (as a sender's tool would be)."""
        token = self.tool_token("docusign") if self.tool_token else self.docusign_token
        return http.client(base_url=f"{self.docusign_url}/restapi/v2.1/accounts/{self.docusign_account}",
                            timeout=10, headers={"authorization": f"Bearer {token}"})

    def sign_envelope(self, envelope_id: str) -> dict[str, Any]:
        """Every signer signs (the simulator's admin route); Connect then notifies the hub."""
        response = http.post(f"{self.docusign_url}/_sim/envelopes/{envelope_id}/sign", timeout=10)
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
        token = self.tool_token("graph") if self.tool_token else self.graph_token
        return http.client(base_url=self.graph_url, timeout=10, headers={"authorization": f"Bearer {token}"})

    def make_folders(self, path: str) -> None:
        """Create the folder ``path`` of the drive and any missing parent, as a user would (existing ones stay)."""
        with self.graph() as graph:
            parent = ""
            for name in path.split("/"):
                where = f"/drives/{self.drive_id}/root:/{parent}:/children" if parent else \
                    f"/drives/{self.drive_id}/root/children"
                graph.post(where, json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "replace"}
                           ).raise_for_status()
                parent = f"{parent}/{name}" if parent else name

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
                      milestone_id: str | None = None, bills: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """Draft an invoice in the ERP (the ERP posts erp.invoice.drafted.v1); ``bills``: (document class,
        reference) it bills besides its milestone's deliverables."""
        with self.erp() as erp:
            response = erp.post("/invoices", json={
                "number": number, "project_code": project_code, "period": period, "milestone_id": milestone_id,
                "amount": {"amount_minor": amount_minor, "currency": currency},
                "bills": [{"document_class": c, "reference": r} for c, r in bills]})
            response.raise_for_status()
            invoice: dict[str, Any] = response.json()
            return invoice

    def finalize_invoice(self, number: str) -> httpx.Response:
        """Ask the ERP to finalise an invoice (it asks the hub's hard-stop check first)."""
        with self.erp() as erp:
            return erp.post(f"/invoices/{number}/finalize")

    def erp_state(self) -> dict[str, Any]:
        """The ERP simulator's records."""
        state: dict[str, Any] = http.get(f"{self.erp_url}/_sim/state", timeout=10).json()
        return state

    def erp_writes(self) -> dict[str, dict[str, int]]:
        """The ERP simulator's write requests carried out per record (``writes``) and those that changed it
        (``changes``)."""
        counts: dict[str, dict[str, int]] = http.get(f"{self.erp_url}/_sim/writes", timeout=10).json()
        return counts

    def graph_state(self) -> dict[str, Any]:
        """The SharePoint simulator's drives, items, permissions, labels and fields."""
        state: dict[str, Any] = http.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/state", timeout=10).json()
        return state

    def graph_requests(self) -> dict[str, Any]:
        """Counts of committed creates, invites and calls (no duplicates is provable from these)."""
        counts: dict[str, Any] = http.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/requests",
                                           timeout=10).json()
        return counts

    def set_graph_faults(self, plan: FaultPlan) -> None:
        """Change the SharePoint simulator's faults mid-run."""
        http.put(f"{self.graph_url.removesuffix('/v1.0')}/_sim/faults", json=plan.to_json(), timeout=10)

    def set_erp_faults(self, plan: FaultPlan) -> None:
        """Change the ERP simulator's faults mid-run."""
        http.put(f"{self.erp_url}/_sim/faults", json=plan.to_json(), timeout=10).raise_for_status()

    def flush_erp_webhooks(self, timeout_s: float = 20.0) -> None:
        """Wait until the ERP simulator delivered every webhook."""
        http.post(f"{self.erp_url}/_sim/deliveries/flush", params={"timeout_s": timeout_s}, timeout=timeout_s + 5)

    def hold_erp_webhooks(self) -> None:
        """The ERP simulator posts no webhook until :meth:`release_erp_webhooks` (its records change meanwhile)."""
        self.hold_webhooks("erp")

    def release_erp_webhooks(self) -> None:
        """The ERP simulator posts the webhooks it held, in their order."""
        self.release_webhooks("erp")

    def hold_webhooks(self, *systems: str) -> None:
        """The named systems (of :data:`WEBHOOK_SYSTEMS`; all by default) hold their webhooks until released."""
        for system in systems or WEBHOOK_SYSTEMS:
            http.post(f"{self._admin(system)}/deliveries/hold", timeout=10).raise_for_status()

    def release_webhooks(self, *systems: str) -> None:
        """The named systems (all by default) send the webhooks they held, in their order."""
        for system in systems or WEBHOOK_SYSTEMS:
            http.post(f"{self._admin(system)}/deliveries/release", timeout=10).raise_for_status()

    def export_webhooks(self, *systems: str) -> list[tuple[str, OutboundRequest]]:
        """The webhooks the named systems (all by default) hold, taken out unsent as the signed requests they
        would send (system by system, each in its order): a test delivers them itself."""
        taken: list[tuple[str, OutboundRequest]] = []
        for system in systems or WEBHOOK_SYSTEMS:
            response = http.post(f"{self._admin(system)}/deliveries/export", timeout=10)
            response.raise_for_status()
            taken += [(system, OutboundRequest.from_json(r)) for r in response.json()["requests"]]
        return taken

    def _admin(self, system: str) -> str:
        bases = {"erp": self.erp_url, "docusign": self.docusign_url, "graph": self.graph_url.removesuffix("/v1.0"),
                 "box": self.box_url}
        return f"{bases[system]}/_sim"

    def erp(self) -> httpx.Client:
        """An HTTP client on the ERP simulator's API (as an ERP user's tool would be)."""
        return http.client(base_url=f"{self.erp_url}/api/v1", timeout=10,
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
    sign_in: SignIn | None = None,
    box_keys: tuple[str, str | None] = (BoxSimConfig.primary_key, BoxSimConfig.secondary_key),
) -> Iterator[Sandbox]:
    """Serve the simulators with ``serve`` while the block runs; the ERP posts to ``ingress_events_url`` (with
    ``None`` it posts nothing: the caller publishes the events itself).

    With ``erp_api_key`` the ERP asks the ingress's hard-stop check before finalising an invoice; with
    ``docusign_hmac_key`` DocuSign Connect notifies the ingress's ``docusign-sim`` webhook. Graph notifies https
    URLs whose certificate chains to ``graph_notify_ca`` (a PEM file); without one, as the one exception to
    Graph's rule, it also notifies plain-http URLs on loopback (the demo's ingress). SharePoint's
    site has one library, ``library``, with SharePoint's own columns and ``columns``; the tenant publishes
    the retention ``labels`` (``None``: any label applies, and the label list is refused);
    with ``sign_in`` Graph and DocuSign take only the tokens their sign-in issued (see the module's docstring).
    Box's enterprise has the directory's groups and the retention policies named as the ``labels`` (every default
    one without them); its webhooks are signed with ``box_keys`` (primary, secondary) and, as the one exception to
    Box's https rule, go to loopback over plain http.
    """
    base = (ingress_events_url or "").removesuffix("/v1/events")
    webhook = None if ingress_events_url is None else WebhookConfig(
        url=ingress_events_url, secret=webhook_secret, source=ERP_SOURCE, backoff_s=0.2)
    gate = None if erp_api_key is None else ReadinessGate(
        url_template=f"{base}/v1/invoices/{{number}}/readiness", api_key=erp_api_key)
    erp = erp_app(ErpSimConfig(token=erp_token, faults=erp_faults or FaultPlan(), webhook=webhook, readiness=gate))
    connect = None if docusign_hmac_key is None else ConnectConfig(
        url=f"{base}/v1/webhooks/docusign/{DOCUSIGN_SOURCE_ID}", hmac_key=docusign_hmac_key, backoff_s=0.2)
    directory = tuple(dict.fromkeys([*groups, *DEFAULT_GROUPS]))
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-sandbox-")))
        made = SignInParts.make(sign_in, folder) if sign_in else None
        docusign = docusign_app(DocuSignSimConfig(connect=connect, jwt=made.docusign if made else None))
        graph_config = SimulatorConfig(
            token=graph_token, drives=(library,), groups=directory, faults=graph_faults or FaultPlan(),
            columns=tuple(dict.fromkeys([*BUILTIN_COLUMNS, *columns])),
            retention_labels=None if labels is None else frozenset(labels), notify_ca_file=graph_notify_ca,
            http_notification_hosts=LOOPBACK if graph_notify_ca is None else frozenset(),
            sign_in=made.tenant if made else None)
        graph = graph_app(graph_config)
        box_config = BoxSimConfig(groups=tuple(dict.fromkeys([*directory, *BOX_GROUPS])), primary_key=box_keys[0],
                                  secondary_key=box_keys[1], http_webhook_hosts=LOOPBACK,
                                  retention_policies=BoxSimConfig.retention_policies if labels is None
                                  else tuple(labels))
        site = graph.state.graph.site
        erp_url = stack.enter_context(serve(erp))
        graph_url = stack.enter_context(serve(graph))
        docusign_url = stack.enter_context(serve(docusign))
        box_url = stack.enter_context(serve(box_app(box_config)))
        credentials, tool_token = None, None
        if made is not None:
            login = create_login_app(tenant_id=graph_config.tenant_id, tenant=made.tenant, tokens=graph.state.tokens)
            login_url = stack.enter_context(serving_tls(login, keys=made.tls, folder=folder))
            credentials = made.credentials(tenant_id=graph_config.tenant_id, login_url=login_url,
                                           docusign_url=docusign_url)
            tool_token = tool_tokens(graph.state.tokens, docusign.state.tokens)
        yield Sandbox(erp_url=erp_url, graph_url=f"{graph_url}/v1.0", erp_token=erp_token,
                      graph_token=graph_token, drive_id=site.libraries[0].drive_id, site_url=site.web_url,
                      library=library, docusign_url=docusign_url, sign_in=credentials, tool_token=tool_token,
                      box_url=box_url)
