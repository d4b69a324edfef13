"""A stateful stand-in for an ERP/PSA (NetSuite/Kantata-style REST) speaking the API subset the hub uses.

In-process: ``create_app(ErpSimConfig(...))`` gives a FastAPI app (serve it with uvicorn or
any ASGI server in a thread, as :mod:`simulators.sandbox` does); standalone: ``run(host, port, config)``.

API (under ``/api/v1``, ``Authorization: Bearer <token>`` on every call, 401 JSON otherwise; errors
are ``{"error": <code>, "message": ...}``)::

    GET  /clients?limit=&cursor=         POST /clients              GET|PATCH /clients/{id}
    GET  /projects?status=&updated_since=&limit=&cursor=&order=   -> {"items": [...], "next_cursor": ...}
    POST /projects                       GET|PATCH /projects/{code}   (ETag / If-Match: <version>)
    GET|POST /projects/{code}/milestones PATCH /projects/{code}/milestones/{id}
    GET|POST /projects/{code}/billing-codes   (POST is idempotent by code)
    GET|POST /projects/{code}/time-entries
    GET|POST /invoices?project_code=&status=   GET /invoices/{number}   POST /invoices/{number}/finalize

Lists page by keyset (``limit`` at most 1,000; ``next_cursor`` is null on the last page): clients in ``id``
order (100 a page by default); projects in (``updated_at``, ``code``) order, or with ``order=code`` in
``code`` order (50 a page by default). A page costs what it returns: the orders are indexes kept on write.

Time entries (``{"date", "hours", "billing_code", "person"}`` -> 201 with an ``id``) are refused with
409 ``time_entry_disabled`` while the project's ``time_entry_enabled`` is false and 409
``billing_code_inactive`` while the billing code is missing or inactive. An invoice's ``milestone_id``
must be a milestone of its project (422 ``unknown_milestone``). A draft states what it bills (``bills``:
``{"document_class", "reference"}`` each): its milestone's ``deliverables`` (titles) first, then the
``bills`` the draft was posted with (the period's change records, the service report).

Finalising: with ``ErpSimConfig.readiness`` (a :class:`ReadinessGate`) set, finalising a draft first
asks the gate (``GET`` of its URL template, ``Authorization: Bearer <api_key>``; see
:mod:`simulators.erp.gate`). ``"status": "ready"`` finalises; ``"held"`` answers 409
``{"error": "invoice_held", "message", "hold_reasons": [...]}``; anything else (non-200, bad JSON,
timeout, refused connection) answers 503 ``readiness_unavailable``: the gate fails closed, and the
invoice stays draft in both cases. Finalising a final invoice is a no-op 200 that asks nothing.
Without a gate, finalising always succeeds. Every gate call is logged in ``readiness_checks``.

Every POST and PATCH but ``finalize`` honours ``Idempotency-Key`` (:mod:`simulators.kit.idempotency`): the
same key with the same method, path and body replays the first 2xx answer (``Idempotent-Replayed: true``);
with anything else it is 422 ``idempotency_key_reused``. A PATCH that changes nothing keeps the version and
sends no event.

Admin endpoints under ``/_sim/`` need no token, so bind the simulator to loopback::

    GET|PUT /_sim/faults (see simulators.kit.faults)   POST /_sim/reset
    GET /_sim/state   (clients, projects, milestones, invoices, billing_codes, time_entries, readiness_checks)
    GET /_sim/writes  (write requests carried out per record, and those that changed it; replays are neither)
    POST /_sim/seed   ({"clients": [...], "projects": [...]} stored at once, no webhooks: simulators.erp.seed)
    GET /_sim/deliveries   POST /_sim/deliveries/flush?timeout_s=10   POST /_sim/deliveries/hold|release|export

Project creates and updates, client creates and updates, and invoice drafts
(``erp.invoice.drafted.v1``, ``milestone`` being the milestone's name) are posted to the hub as signed
CloudEvents (see :mod:`simulators.erp.webhooks`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulators.erp.gate import ReadinessGate, ask
from simulators.erp.models import (
    BillingCodeIn,
    ClientIn,
    ClientPatch,
    InvoiceIn,
    MilestoneIn,
    MilestonePatch,
    ProjectIn,
    ProjectPatch,
    ProjectStatus,
    TimeEntryIn,
)
from simulators.erp.seed import seed
from simulators.erp.state import ErpState
from simulators.erp.webhooks import Outbox, WebhookConfig, client_event, invoice_event, project_event
from simulators.kit.app import ErrorDialect, bearer_guard, serve, simulator_app
from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultPlan
from simulators.kit.idempotency import Written

#: The largest page of ``GET /projects`` and ``GET /clients``.
MAX_PAGE = 1000

__all__ = ["ErpSimConfig", "ReadinessGate", "WebhookConfig", "create_app", "run"]


@dataclass(frozen=True)
class ErpSimConfig:
    """How a simulated ERP behaves: its API token, faults, where its webhooks go and whom it asks before
    finalising an invoice."""

    token: str = "erp-sim-token"  # noqa: S105 - the default of hub.settings.Settings.erp_token
    faults: FaultPlan = dataclasses.field(default_factory=FaultPlan)
    #: ``None``: changes are not posted anywhere.
    webhook: WebhookConfig | None = None
    #: The ERP's clock (UTC); ``updated_at`` stays strictly increasing whatever it says.
    clock: Callable[[], datetime] | None = None
    #: ``None``: invoices are finalised without asking; otherwise the gate must answer ``ready`` first.
    readiness: ReadinessGate | None = None


def _render(exc: SimError) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else exc.headers
    return JSONResponse({"error": exc.code, "message": exc.message, **exc.details}, status_code=exc.status,
                        headers=headers or None)


def _invalid(exc: RequestValidationError) -> SimError:
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return SimError(422, "validation_failed", "the request is not valid", details=details)


def _http_error(exc: StarletteHTTPException) -> SimError:
    return SimError(exc.status_code, "http_error", str(exc.detail), headers=dict(exc.headers or {}))


#: ``{"error": <code>, "message": ..., **details}``, as the ERP answers.
ERP_ERRORS = ErrorDialect(render=_render, invalid=_invalid, http_error=_http_error)


def _unauthorised() -> SimError:
    return SimError(401, "unauthorized", "a valid bearer token is required")


def _json(body: dict[str, Any]) -> Response:
    """A JSON answer serialised at once (a page of 1,000 records skips the response model's encoder)."""
    return Response(json.dumps(body, separators=(",", ":")).encode(), media_type="application/json")


def _etag(record: dict[str, Any]) -> dict[str, str]:
    return {"etag": f'"{record["version"]}"'}


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise SimError(400, "invalid_header", "If-Match must be a project version") from None


def _api(config: ErpSimConfig, state: ErpState, outbox: Outbox | None) -> APIRouter:
    """The ``/api/v1`` routes, bound to one simulator's state (with its idempotency keys) and outbox."""
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(bearer_guard(config.token, _unauthorised))])
    source = config.webhook.source if config.webhook else "erp-sim://unconfigured"
    keys = state.idempotency

    def emit(event: dict[str, Any]) -> None:
        if outbox is not None:
            outbox.enqueue(event)

    @api.get("/clients")
    async def list_clients(limit: int = Query(100, ge=1, le=MAX_PAGE), cursor: str | None = None,
                           order: Literal["id"] = "id") -> Response:
        items, next_cursor = state.list_clients(limit=limit, cursor=cursor)
        return _json({"items": items, "next_cursor": next_cursor})

    @api.post("/clients", status_code=201)
    @keys.replayable
    def create_client(body: ClientIn) -> Written:
        client = state.create_client(body)
        emit(client_event(client, source=source))
        return Written(201, client)

    @api.get("/clients/{client_id}")
    async def get_client(client_id: str) -> dict[str, Any]:
        return state.client(client_id)

    @api.patch("/clients/{client_id}")
    @keys.replayable
    def patch_client(client_id: str, body: ClientPatch) -> Written:
        client, changed = state.patch_client(client_id, body)
        if changed:
            emit(client_event(client, source=source))
        return Written(200, client)

    @api.get("/projects")
    async def list_projects(status: ProjectStatus | None = None, updated_since: str | None = None,
                            limit: int = Query(50, ge=1, le=MAX_PAGE), cursor: str | None = None,
                            order: Literal["updated_at", "code"] = "updated_at") -> Response:
        items, next_cursor = state.list_projects(status=status, updated_since=updated_since, limit=limit,
                                                 cursor=cursor, order=order)
        return _json({"items": items, "next_cursor": next_cursor})

    @api.post("/projects", status_code=201)
    @keys.replayable
    def create_project(body: ProjectIn) -> Written:
        project = state.create_project(body)
        emit(project_event(project, created=True, source=source))
        return Written(201, project, {**_etag(project), "location": f"/api/v1/projects/{project['code']}"})

    @api.get("/projects/{code}")
    async def get_project(code: str) -> JSONResponse:
        project = state.project(code)
        return JSONResponse(project, headers=_etag(project))

    @api.patch("/projects/{code}")
    @keys.replayable
    def patch_project(code: str, body: ProjectPatch, request: Request) -> Written:
        project, changed = state.patch_project(code, body, if_match=_if_match(request))
        if changed:
            emit(project_event(project, created=False, source=source))
        return Written(200, project, _etag(project))

    @api.get("/projects/{code}/milestones")
    async def list_milestones(code: str) -> dict[str, Any]:
        return {"items": state.milestones_of(code), "next_cursor": None}

    @api.post("/projects/{code}/milestones", status_code=201)
    @keys.replayable
    def add_milestone(code: str, body: MilestoneIn) -> Written:
        return Written(201, state.add_milestone(code, body))

    @api.patch("/projects/{code}/milestones/{milestone_id}")
    @keys.replayable
    def patch_milestone(code: str, milestone_id: str, body: MilestonePatch) -> Written:
        return Written(200, state.patch_milestone(code, milestone_id, body))

    @api.get("/projects/{code}/billing-codes")
    async def list_billing_codes(code: str) -> dict[str, Any]:
        return {"items": state.billing_codes_of(code), "next_cursor": None}

    @api.post("/projects/{code}/billing-codes")
    @keys.replayable
    def put_billing_code(code: str, body: BillingCodeIn) -> Written:
        record, created = state.put_billing_code(code, body)
        return Written(201 if created else 200, record)

    @api.get("/projects/{code}/time-entries")
    async def list_time_entries(code: str) -> dict[str, Any]:
        return {"items": state.time_entries_of(code), "next_cursor": None}

    @api.post("/projects/{code}/time-entries", status_code=201)
    @keys.replayable
    def add_time_entry(code: str, body: TimeEntryIn) -> Written:
        return Written(201, state.add_time_entry(code, body))

    @api.get("/invoices")
    async def list_invoices(project_code: str | None = None,
                            status: Literal["draft", "final"] | None = None) -> dict[str, Any]:
        return {"items": state.list_invoices(project_code=project_code, status=status), "next_cursor": None}

    @api.post("/invoices", status_code=201)
    @keys.replayable
    def create_invoice(body: InvoiceIn) -> Written:
        invoice = state.create_invoice(body)
        milestone = None if invoice["milestone_id"] is None else state.milestone_name(
            invoice["project_code"], invoice["milestone_id"])
        emit(invoice_event(invoice, milestone=milestone, source=source))
        return Written(201, invoice, {"location": f"/api/v1/invoices/{invoice['number']}"})

    @api.get("/invoices/{number}")
    async def get_invoice(number: str) -> dict[str, Any]:
        return state.invoice(number)

    @api.post("/invoices/{number}/finalize")
    async def finalize_invoice(number: str) -> dict[str, Any]:
        gate = config.readiness
        if gate is None or state.invoice(number)["status"] == "final":
            return state.finalize_invoice(number)
        answer = await ask(gate, number)
        state.record_readiness_check(number, answer.outcome, http_status=answer.http_status, error=answer.error)
        if answer.outcome == "held":
            raise SimError(409, "invoice_held", f"invoice {number!r} is held by the readiness gate",
                           hold_reasons=answer.hold_reasons)
        if answer.outcome != "ready":
            raise SimError(503, "readiness_unavailable",
                           f"the readiness of invoice {number!r} could not be checked: {answer.error}")
        return state.finalize_invoice(number)

    return api


def _admin(state: ErpState) -> APIRouter:
    """The ERP's own ``/_sim`` routes: ``GET /state``, every record and the readiness-gate calls; ``GET /writes``."""
    admin = APIRouter()

    @admin.get("/state")
    async def dump_state() -> dict[str, Any]:
        return state.dump()

    @admin.get("/writes")
    async def write_counts() -> dict[str, Any]:
        return state.write_counts()

    @admin.post("/seed")
    async def seed_records(request: Request) -> dict[str, Any]:
        return {"seeded": seed(state, await request.body())}

    return admin


def create_app(config: ErpSimConfig | None = None) -> FastAPI:
    """The simulated ERP as a FastAPI app; ``app.state`` holds ``erp`` (records), ``outbox`` and ``faults``."""
    config = config or ErpSimConfig()
    state = ErpState(config.clock)
    outbox = Outbox(config.webhook) if config.webhook else None
    app = simulator_app("ERP/PSA simulator", api=_api(config, state, outbox), admin=_admin(state),
                        dialect=ERP_ERRORS, faults=FaultInjector(config.faults), outbox=outbox, resets=(state.reset,))
    app.state.erp = state
    return app


def run(host: str = "127.0.0.1", port: int = 8091, config: ErpSimConfig | None = None) -> None:
    """Serve the simulator until interrupted (the ``/_sim`` endpoints are open: keep ``host`` on loopback)."""
    serve(create_app(config), host=host, port=port)
