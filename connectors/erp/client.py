"""Outbound client of the ERP/PSA REST API (``/api/v1``), on the shared :class:`connectors.http.Http` policy.

Every write is "ensure": it states the wanted value (PATCH of a field, billing code by code), so a
repeat is harmless; each also sends an ``Idempotency-Key`` derived from the caller's key and the
operation (``<key>:workspace-link`` ...), so one key (an event id, say) may serve several calls, and a
write whose answer was lost (timeout) may be retried. Milestones are ensured by name
(:meth:`ErpClient.ensure_milestone`). Errors follow the hub's tree: 404 is :class:`ProjectNotFound` /
:class:`ClientNotFound` / :class:`InvoiceNotFound`, other 4xx ``UpstreamRejected`` (permanent),
5xx, 429, timeouts and an open circuit ``UpstreamUnavailable`` (retryable, with ``retry_after``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.http import Http, json_of, outbound_client
from connectors.settings import ErpSettings
from hub.errors import UpstreamRejected

#: Timeouts towards the ERP: connecting is quick or not at all; answers may take a little longer.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
_API = "/api/v1"
_Model = TypeVar("_Model", bound=BaseModel)


class ErpNotFound(UpstreamRejected):
    """The ERP has no record with this key (HTTP 404)."""


class ProjectNotFound(ErpNotFound):
    """The ERP has no project, engagement or matter with this code."""


class ClientNotFound(ErpNotFound):
    """The ERP has no client with this id."""


class InvoiceNotFound(ErpNotFound):
    """The ERP has no invoice with this number."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Money(_Record):
    """An amount in minor units of an ISO 4217 currency."""

    amount_minor: int
    currency: str


class Project(_Record):
    """A project, engagement or matter as the ERP holds it."""

    code: str
    client_id: str
    name: str
    engagement_type: Literal["consulting", "legal", "engineering", "managed_services"]
    practice: str
    region: Literal["NA", "EU", "ME", "APAC"]
    country: str
    partner: str
    billing_model: Literal["time_and_materials", "fixed_fee", "milestone", "retainer", "subscription"]
    status: Literal["planned", "active", "on_hold", "closed", "cancelled"]
    value: Money | None = None
    start_date: date | None = None
    end_date: date | None = None
    conflicted_groups: tuple[str, ...] = ()
    time_entry_enabled: bool = False
    billing_codes_active: bool = False
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    version: int
    updated_at: datetime

    @property
    def workspace_url(self) -> str | None:
        """The workspace link custom field, when set."""
        url = self.custom_fields.get("workspace_url")
        return url if isinstance(url, str) and url else None

    def template_values(self) -> dict[str, str]:
        """The project's fields by the names the policy's templates use (workspace path, billing codes)."""
        return {"project_code": self.code, "client_id": self.client_id, "engagement_type": self.engagement_type,
                "practice": self.practice, "region": self.region, "country": self.country, "name": self.name,
                "partner": self.partner, "status": self.status}


class Client(_Record):
    """A client as the ERP holds it."""

    id: str
    name: str
    country: str
    status: Literal["prospect", "active", "inactive"]
    industry: str | None = None
    parent_client_id: str | None = None
    billing_currency: str | None = None
    version: int = 1
    updated_at: datetime


class BillingCode(_Record):
    """A billing code of a project."""

    code: str
    active: bool


class Milestone(_Record):
    """A billing milestone of a project; its ``name`` is the key shared with the contract documents."""

    id: str
    name: str
    amount: Money
    due_date: date | None = None
    status: Literal["open", "achieved", "invoiced"] = "open"


class BilledArtefact(_Record):
    """One artefact an invoice bills: a document class and its business number or title."""

    document_class: str
    reference: str


class Invoice(_Record):
    """An invoice as the ERP holds it: a draft until finalised."""

    number: str
    project_code: str
    amount: Money
    #: The billed month, ``YYYY-MM``.
    period: str
    milestone_id: str | None = None
    status: Literal["draft", "final"]
    updated_at: datetime
    #: What it bills: its milestone's deliverables, the period's change records, the service report.
    bills: list[BilledArtefact] = []


class TimeEntry(_Record):
    """Hours booked on a project under a billing code."""

    id: str
    project_code: str
    date: date
    hours: float
    billing_code: str
    person: str


def project_record(project: Project) -> dict[str, Any]:
    """The project as the ERP's ``erp.project.updated.v1`` carries it (the decoded Avro record): what master data
    merges, read from the API rather than announced."""
    return {"project_code": project.code, "client_id": project.client_id, "name": project.name,
            "engagement_type": project.engagement_type, "practice": project.practice, "region": project.region,
            "country": project.country, "partner": project.partner, "billing_model": project.billing_model,
            "status": project.status,
            "value": None if project.value is None else {"amount_minor": project.value.amount_minor,
                                                          "currency": project.value.currency},
            "start_date": project.start_date, "end_date": project.end_date,
            "conflicted_groups": list(project.conflicted_groups), "updated_at": project.updated_at}


def client_record(client: Client) -> dict[str, Any]:
    """The client as the ERP's ``erp.client.upserted.v1`` carries it (the decoded Avro record)."""
    return {"client_id": client.id, "name": client.name, "country": client.country, "status": client.status,
            "industry": client.industry, "parent_client_id": client.parent_client_id,
            "billing_currency": client.billing_currency, "updated_at": client.updated_at}


def sequence_of(version: int) -> str:
    """A record version as the ERP's events carry it in their ``sequence`` extension."""
    return f"{version:020d}"


def _parse(model: type[_Model], payload: Any, target: str) -> _Model:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise UpstreamRejected(f"{target}: unexpected {model.__name__} in the answer: {exc.error_count()} "
                               f"error(s), first at {'.'.join(map(str, exc.errors()[0]['loc']))}") from None


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("updated_since must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ErpClient:
    """Typed calls to the ERP API; the injected :class:`Http` carries base URL, token and resilience."""

    def __init__(self, http: Http) -> None:
        self.http = http

    @classmethod
    def from_settings(cls, settings: ErpSettings, *, client: httpx.Client | None = None) -> ErpClient:
        """A client for ``settings.url`` with ``settings.token``.

        A given ``client`` keeps its transport and timeouts but gets the base URL and bearer token.
        """
        if client is None:
            client = outbound_client(timeout=DEFAULT_TIMEOUT)
        client.base_url = httpx.URL(settings.url)
        client.headers["authorization"] = f"Bearer {settings.token.get_secret_value()}"
        return cls(Http(client, target="erp"))

    def close(self) -> None:
        """Close the underlying ``httpx.Client``."""
        self.http.client.close()

    # -- reads --------------------------------------------------------------------------------------

    def get_project(self, code: str) -> Project:
        """One project by its code; ``ProjectNotFound`` when the ERP has none."""
        response = self._call("GET", f"/projects/{quote(code, safe='')}", not_found=ProjectNotFound(
            f"erp: project {code!r} not found"))
        return _parse(Project, response.json(), "erp")

    def iter_projects(self, *, updated_since: datetime | None = None, status: str | None = None,
                      order: Literal["updated_at", "code"] = "updated_at", page_size: int = 100) -> Iterator[Project]:
        """Every project (changed at or after ``updated_since``), following ``next_cursor`` page by page.

        ``order``: ``updated_at`` (then ``code``), the modified-since listing; ``code``, the projects by their
        business key, as a reconciliation merges them. ``page_size``: at most 1,000 (the ERP's largest page).
        """
        params: dict[str, Any] = {"limit": page_size}
        if updated_since is not None:
            params["updated_since"] = _timestamp(updated_since)
        if status is not None:
            params["status"] = status
        if order != "updated_at":
            params["order"] = order
        for item in self._pages("/projects", params):
            yield _parse(Project, item, "erp")

    def iter_clients(self, *, page_size: int = 100) -> Iterator[Client]:
        """Every client in ``id`` order, following ``next_cursor`` page by page (``page_size`` at most 1,000)."""
        for item in self._pages("/clients", {"limit": page_size}):
            yield _parse(Client, item, "erp")

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        """The items of a keyset-paged list, page after page."""
        params = dict(params)
        while True:
            page = json_of(self._call("GET", path, params=params))
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def list_projects(self, updated_since: datetime | None = None, *, status: str | None = None) -> list[Project]:
        """Every project (changed at or after ``updated_since``), all pages read."""
        return list(self.iter_projects(updated_since=updated_since, status=status))

    def get_client(self, client_id: str) -> Client:
        """One client by its ERP id; ``ClientNotFound`` when the ERP has none."""
        response = self._call("GET", f"/clients/{quote(client_id, safe='')}", not_found=ClientNotFound(
            f"erp: client {client_id!r} not found"))
        return _parse(Client, response.json(), "erp")

    def billing_codes(self, code: str) -> list[BillingCode]:
        """The billing codes of a project."""
        response = self._call("GET", f"/projects/{quote(code, safe='')}/billing-codes",
                              not_found=ProjectNotFound(f"erp: project {code!r} not found"))
        return [_parse(BillingCode, item, "erp") for item in response.json().get("items", [])]

    def milestones(self, code: str) -> list[Milestone]:
        """The milestones of a project."""
        response = self._call("GET", f"/projects/{quote(code, safe='')}/milestones",
                              not_found=ProjectNotFound(f"erp: project {code!r} not found"))
        return [_parse(Milestone, item, "erp") for item in response.json().get("items", [])]

    def milestone_name(self, code: str, milestone_id: str) -> str | None:
        """The name of a milestone of a project; ``None`` when the project has no such milestone."""
        return next((m.name for m in self.milestones(code) if m.id == milestone_id), None)

    def time_entries(self, code: str) -> list[TimeEntry]:
        """The time entries booked on a project."""
        response = self._call("GET", f"/projects/{quote(code, safe='')}/time-entries",
                              not_found=ProjectNotFound(f"erp: project {code!r} not found"))
        return [_parse(TimeEntry, item, "erp") for item in response.json().get("items", [])]

    def list_invoices(self, *, project_code: str | None = None, status: str | None = None) -> list[Invoice]:
        """Invoices, optionally of one project and/or one status (``draft``, ``final``), all pages read."""
        params: dict[str, Any] = {}
        if project_code is not None:
            params["project_code"] = project_code
        if status is not None:
            params["status"] = status
        invoices: list[Invoice] = []
        while True:
            page = self._call("GET", "/invoices", params=params).json()
            invoices += [_parse(Invoice, item, "erp") for item in page.get("items", [])]
            cursor = page.get("next_cursor")
            if not cursor:
                return invoices
            params["cursor"] = cursor

    def get_invoice(self, number: str) -> Invoice:
        """One invoice by its number; ``InvoiceNotFound`` when the ERP has none."""
        response = self._call("GET", f"/invoices/{quote(number, safe='')}", not_found=InvoiceNotFound(
            f"erp: invoice {number!r} not found"))
        return _parse(Invoice, response.json(), "erp")

    # -- writes ("ensure") --------------------------------------------------------------------------

    def update_project(self, code: str, changes: Mapping[str, Any], *, idempotency_key: str,
                       if_match: int | None = None) -> Project:
        """PATCH a project (``if_match``: its expected version; a mismatch is ``UpstreamRejected``)."""
        headers = {"if-match": f'"{if_match}"'} if if_match is not None else None
        response = self._call("PATCH", f"/projects/{quote(code, safe='')}", json=dict(changes), headers=headers,
                              idempotency_key=idempotency_key,
                              not_found=ProjectNotFound(f"erp: project {code!r} not found"))
        return _parse(Project, response.json(), "erp")

    def set_workspace_link(self, code: str, url: str, *, idempotency_key: str) -> Project:
        """Write the workspace link into the project's ``workspace_url`` custom field."""
        return self.update_project(code, {"custom_fields": {"workspace_url": url}},
                                   idempotency_key=f"{idempotency_key}:workspace-link")

    def enable_time_entry(self, code: str, *, idempotency_key: str) -> Project:
        """Open the project for time entry."""
        return self.update_project(code, {"time_entry_enabled": True},
                                   idempotency_key=f"{idempotency_key}:time-entry")

    def update_project_value(self, code: str, value: Money, *, idempotency_key: str) -> Project:
        """Set the project's contract value."""
        return self.update_project(code, {"value": value.model_dump()}, idempotency_key=f"{idempotency_key}:value")

    def activate_billing_codes(self, code: str, codes: Sequence[str], *, idempotency_key: str) -> Project:
        """Ensure each billing code exists and is active, then mark the project's billing codes active."""
        for billing_code in codes:
            self._call("POST", f"/projects/{quote(code, safe='')}/billing-codes",
                       json={"code": billing_code, "active": True},
                       idempotency_key=f"{idempotency_key}:billing-code:{billing_code}",
                       not_found=ProjectNotFound(f"erp: project {code!r} not found"))
        return self.update_project(code, {"billing_codes_active": True},
                                   idempotency_key=f"{idempotency_key}:billing-codes-active")

    def ensure_milestone(self, code: str, name: str, amount: Money, due_date: date | None, *,
                         idempotency_key: str) -> Milestone:
        """Ensure the project has a milestone called ``name`` with this amount and due date.

        Adds it when no milestone has that name; patches amount and due date when they differ; sends
        nothing when they are equal. Returns the milestone as the ERP then holds it.
        """
        path = f"/projects/{quote(code, safe='')}/milestones"
        not_found = ProjectNotFound(f"erp: project {code!r} not found")
        wanted = {"amount": amount.model_dump(), "due_date": None if due_date is None else due_date.isoformat()}
        key = f"{idempotency_key}:milestone:{quote(name, safe='')}"
        existing = next((m for m in self.milestones(code) if m.name == name), None)
        if existing is None:
            response = self._call("POST", path, json={"name": name, **wanted}, idempotency_key=key,
                                  not_found=not_found)
            return _parse(Milestone, response.json(), "erp")
        same_amount = (existing.amount.amount_minor, existing.amount.currency) == (amount.amount_minor, amount.currency)
        if same_amount and existing.due_date == due_date:
            return existing
        response = self._call("PATCH", f"{path}/{quote(existing.id, safe='')}", json=wanted,
                              idempotency_key=f"{key}:update", not_found=not_found)
        return _parse(Milestone, response.json(), "erp")

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None, idempotency_key: str | None = None,
              not_found: ErpNotFound | None = None) -> httpx.Response:
        response = self.http.request(method, _API + path, json=json, params=params, headers=headers,
                                     idempotency_key=idempotency_key,
                                     ok_statuses=frozenset({404}) if not_found is not None else frozenset())
        if response.status_code == 404 and not_found is not None:
            raise not_found
        return response
