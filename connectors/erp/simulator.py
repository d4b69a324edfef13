"""A stateful stand-in for an ERP/PSA (NetSuite/Kantata-style REST) speaking the API subset the hub uses.

In-process: ``create_app(ErpSimConfig(...))`` gives a FastAPI app (serve it with uvicorn or
``hub.ingress.server.serve_in_thread`` in tests); standalone: ``run(host, port, config)``.

API (under ``/api/v1``, ``Authorization: Bearer <token>`` on every call, 401 JSON otherwise; errors
are ``{"error": <code>, "message": ...}``)::

    GET  /clients                        POST /clients              GET|PATCH /clients/{id}
    GET  /projects?status=&updated_since=&limit=&cursor=   -> {"items": [...], "next_cursor": ...}
    POST /projects                       GET|PATCH /projects/{code}   (ETag / If-Match: <version>)
    GET|POST /projects/{code}/milestones PATCH /projects/{code}/milestones/{id}
    GET|POST /projects/{code}/billing-codes   (POST is idempotent by code)
    GET|POST /projects/{code}/time-entries
    GET|POST /invoices?project_code=&status=   GET /invoices/{number}   POST /invoices/{number}/finalize

Time entries (``{"date", "hours", "billing_code", "person"}`` -> 201 with an ``id``) are refused with
409 ``time_entry_disabled`` while the project's ``time_entry_enabled`` is false and 409
``billing_code_inactive`` while the billing code is missing or inactive. An invoice's ``milestone_id``
must be a milestone of its project (422 ``unknown_milestone``).

Finalising: with ``ErpSimConfig.readiness`` (a :class:`ReadinessGate`) set, finalising a draft first
asks the gate (``GET`` of its URL template, ``Authorization: Bearer <api_key>``; see
:mod:`connectors.erp.simulator_gate`). ``"status": "ready"`` finalises; ``"held"`` answers 409
``{"error": "invoice_held", "message", "hold_reasons": [...]}``; anything else (non-200, bad JSON,
timeout, refused connection) answers 503 ``readiness_unavailable``: the gate fails closed, and the
invoice stays draft in both cases. Finalising a final invoice is a no-op 200 that asks nothing.
Without a gate, finalising always succeeds. Every gate call is logged in ``readiness_checks``.

Every POST and PATCH honours ``Idempotency-Key``: the same key with the same method, path and body
replays the first 2xx answer (``Idempotent-Replayed: true``); with anything else it is 422. A PATCH
that changes nothing keeps the version and sends no event.

Admin endpoints under ``/_sim/`` need no token, so bind the simulator to loopback::

    GET|PUT /_sim/faults (see connectors.faults)   POST /_sim/reset
    GET /_sim/state   (clients, projects, milestones, invoices, billing_codes, time_entries, readiness_checks)
    GET /_sim/deliveries   POST /_sim/deliveries/flush?timeout_s=10

Project creates and updates, client creates and updates, and invoice drafts
(``erp.invoice.drafted.v1``, ``milestone`` being the milestone's name) are posted to the hub as signed
CloudEvents (see :mod:`connectors.erp.simulator_webhooks`). Imports nothing of the hub runtime.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from connectors.erp.simulator_gate import ReadinessGate, ask
from connectors.erp.simulator_state import (
    BillingCodeIn,
    ClientIn,
    ClientPatch,
    ErpState,
    InvoiceIn,
    MilestoneIn,
    MilestonePatch,
    ProjectIn,
    ProjectPatch,
    ProjectStatus,
    SimError,
    TimeEntryIn,
)
from connectors.erp.simulator_webhooks import Outbox, WebhookConfig, client_event, invoice_event, project_event
from connectors.faults import FaultInjector, FaultMiddleware, FaultPlan
from connectors.sim_outbox import delivery_routes, outbox_lifespan

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


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None, **details: Any
           ) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **details}, status_code=status, headers=headers)


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


class _Api:
    """The routes, bound to one simulator's state and outbox."""

    def __init__(self, config: ErpSimConfig, state: ErpState, outbox: Outbox | None) -> None:
        self.config, self.state, self.outbox = config, state, outbox

    def authorise(self, request: Request) -> None:
        """Refuse a missing or wrong bearer token with 401."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.config.token.encode()):
            raise SimError(401, "unauthorized", "a valid bearer token is required")

    def emit(self, event: dict[str, Any]) -> None:
        """Hand an event to the outbox, when webhooks are configured."""
        if self.outbox is not None:
            self.outbox.enqueue(event)

    def source(self) -> str:
        """The CloudEvents ``source`` of this ERP."""
        return self.config.webhook.source if self.config.webhook else "erp-sim://unconfigured"

    def idempotent(self, request: Request, body: Any,
                   action: Callable[[], tuple[int, Any, dict[str, str]]]) -> JSONResponse:
        """Run ``action`` once per ``Idempotency-Key``; replay its 2xx answer for the same request."""
        key = request.headers.get("idempotency-key")
        if not key:
            status, content, headers = action()
            return JSONResponse(content, status_code=status, headers=headers)
        fingerprint = f"{request.method} {request.url.path} {json.dumps(body, sort_keys=True)}"
        with self.state.lock:
            seen = self.state.idempotency.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    raise SimError(422, "idempotency_key_reused", "this Idempotency-Key was used for another request")
                status, (content, headers) = seen[1], seen[2]
                return JSONResponse(content, status_code=status, headers={**headers, "idempotent-replayed": "true"})
            status, content, headers = action()
            self.state.idempotency[key] = (fingerprint, status, (content, headers))
        return JSONResponse(content, status_code=status, headers=headers)

    def router(self) -> APIRouter:
        """The ``/api/v1`` routes."""
        api = APIRouter(prefix="/api/v1", dependencies=[Depends(self.authorise)])
        state = self.state

        @api.get("/clients")
        async def list_clients() -> dict[str, Any]:
            with state.lock:
                return {"items": [dict(c) for c in state.clients.values()], "next_cursor": None}

        @api.post("/clients", status_code=201)
        async def create_client(body: ClientIn, request: Request) -> JSONResponse:
            def action() -> tuple[int, Any, dict[str, str]]:
                client = state.create_client(body)
                self.emit(client_event(client, source=self.source()))
                return 201, client, {}
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True), action)

        @api.get("/clients/{client_id}")
        async def get_client(client_id: str) -> dict[str, Any]:
            return state.client(client_id)

        @api.patch("/clients/{client_id}")
        async def patch_client(client_id: str, body: ClientPatch, request: Request) -> JSONResponse:
            def action() -> tuple[int, Any, dict[str, str]]:
                client, changed = state.patch_client(client_id, body)
                if changed:
                    self.emit(client_event(client, source=self.source()))
                return 200, client, {}
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True), action)

        @api.get("/projects")
        async def list_projects(status: ProjectStatus | None = None, updated_since: str | None = None,
                                limit: int = Query(50, ge=1, le=200), cursor: str | None = None) -> dict[str, Any]:
            items, next_cursor = state.list_projects(status=status, updated_since=updated_since, limit=limit,
                                                     cursor=cursor)
            return {"items": items, "next_cursor": next_cursor}

        @api.post("/projects", status_code=201)
        async def create_project(body: ProjectIn, request: Request) -> JSONResponse:
            def action() -> tuple[int, Any, dict[str, str]]:
                project = state.create_project(body)
                self.emit(project_event(project, created=True, source=self.source()))
                return 201, project, {**_etag(project), "location": f"/api/v1/projects/{project['code']}"}
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True), action)

        @api.get("/projects/{code}")
        async def get_project(code: str) -> JSONResponse:
            project = state.project(code)
            return JSONResponse(project, headers=_etag(project))

        @api.patch("/projects/{code}")
        async def patch_project(code: str, body: ProjectPatch, request: Request) -> JSONResponse:
            expected = _if_match(request)

            def action() -> tuple[int, Any, dict[str, str]]:
                project, changed = state.patch_project(code, body, if_match=expected)
                if changed:
                    self.emit(project_event(project, created=False, source=self.source()))
                return 200, project, _etag(project)
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True), action)

        @api.get("/projects/{code}/milestones")
        async def list_milestones(code: str) -> dict[str, Any]:
            return {"items": state.milestones_of(code), "next_cursor": None}

        @api.post("/projects/{code}/milestones", status_code=201)
        async def add_milestone(code: str, body: MilestoneIn, request: Request) -> JSONResponse:
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True),
                                   lambda: (201, state.add_milestone(code, body), {}))

        @api.patch("/projects/{code}/milestones/{milestone_id}")
        async def patch_milestone(code: str, milestone_id: str, body: MilestonePatch, request: Request
                                  ) -> JSONResponse:
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True),
                                   lambda: (200, state.patch_milestone(code, milestone_id, body), {}))

        @api.get("/projects/{code}/billing-codes")
        async def list_billing_codes(code: str) -> dict[str, Any]:
            return {"items": state.billing_codes_of(code), "next_cursor": None}

        @api.post("/projects/{code}/billing-codes")
        async def put_billing_code(code: str, body: BillingCodeIn, request: Request) -> JSONResponse:
            def action() -> tuple[int, Any, dict[str, str]]:
                record, created = state.put_billing_code(code, body)
                return (201 if created else 200), record, {}
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True), action)

        @api.get("/projects/{code}/time-entries")
        async def list_time_entries(code: str) -> dict[str, Any]:
            return {"items": state.time_entries_of(code), "next_cursor": None}

        @api.post("/projects/{code}/time-entries", status_code=201)
        async def add_time_entry(code: str, body: TimeEntryIn, request: Request) -> JSONResponse:
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True),
                                   lambda: (201, state.add_time_entry(code, body), {}))

        @api.get("/invoices")
        async def list_invoices(project_code: str | None = None,
                                status: Literal["draft", "final"] | None = None) -> dict[str, Any]:
            return {"items": state.list_invoices(project_code=project_code, status=status), "next_cursor": None}

        @api.post("/invoices", status_code=201)
        async def create_invoice(body: InvoiceIn, request: Request) -> JSONResponse:
            def action() -> tuple[int, Any, dict[str, str]]:
                invoice = state.create_invoice(body)
                milestone = None if invoice["milestone_id"] is None else state.milestone_name(
                    invoice["project_code"], invoice["milestone_id"])
                self.emit(invoice_event(invoice, milestone=milestone, source=self.source()))
                return 201, invoice, {"location": f"/api/v1/invoices/{invoice['number']}"}
            return self.idempotent(request, body.model_dump(mode="json", exclude_unset=True), action)

        @api.get("/invoices/{number}")
        async def get_invoice(number: str) -> dict[str, Any]:
            return state.invoice(number)

        @api.post("/invoices/{number}/finalize")
        async def finalize_invoice(number: str) -> dict[str, Any]:
            gate = self.config.readiness
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

    def admin(self, injector: FaultInjector) -> APIRouter:
        """The ``/_sim`` routes (no token; ``/_sim/faults`` is served by the fault middleware)."""
        admin = APIRouter(prefix="/_sim", tags=["simulator admin"])

        @admin.get("/state")
        async def dump_state() -> dict[str, Any]:
            return self.state.dump()

        @admin.post("/reset")
        async def reset() -> dict[str, Any]:
            self.state.reset()
            if self.outbox is not None:
                self.outbox.reset()
            injector.set(self.config.faults)
            return {"reset": True}

        admin.include_router(delivery_routes(self.outbox))
        return admin


def create_app(config: ErpSimConfig | None = None) -> FastAPI:
    """The simulated ERP as a FastAPI app; ``app.state`` holds ``erp`` (records), ``outbox`` and ``faults``."""
    config = config or ErpSimConfig()
    state = ErpState(config.clock)
    outbox = Outbox(config.webhook) if config.webhook else None
    injector = FaultInjector(config.faults)
    routes = _Api(config, state, outbox)

    app = FastAPI(title="ERP/PSA simulator", version="1", lifespan=outbox_lifespan(outbox))
    app.state.erp, app.state.outbox, app.state.faults = state, outbox, injector
    app.include_router(routes.router())
    app.include_router(routes.admin(injector))
    app.add_middleware(FaultMiddleware, injector=injector)

    @app.exception_handler(SimError)
    async def sim_error(_: Request, exc: SimError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.error, exc.message, headers, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return _error(422, "validation_failed", "the request is not valid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail), dict(exc.headers or {}))

    return app


def run(host: str = "127.0.0.1", port: int = 8091, config: ErpSimConfig | None = None) -> None:
    """Serve the simulator until interrupted (the ``/_sim`` endpoints are open: keep ``host`` on loopback)."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
