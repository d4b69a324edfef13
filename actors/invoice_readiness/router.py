"""The hard-stop check the ingress serves: the gate's verdict on one invoice from the facts in the hub's
database, evaluated at the time of the request (``GET /v1/invoices/{number}/readiness``).

A query of the ingress (:mod:`hub.ingress.queries`): the composition root mounts :func:`readiness_router`
and lets sources list :data:`QUERY` in their ``queries``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from actors.invoice_readiness.facts import readiness_body, verdict
from actors.invoice_readiness.held import held_body
from actors.invoice_readiness.rules import ReadinessRules
from actors.invoice_readiness.store import ReadinessStore
from hub.ingress.openapi import Json, responses
from hub.ingress.problems import Kind, Problem
from hub.ingress.queries import QUERY_SECURITY, QueryGuard, answer_response
from hub.policy import Policy

__all__ = ["HELD", "HELD_PATH", "PATH", "QUERY", "Answer", "held_router", "readiness_answer", "readiness_router"]

#: The query a source must be allowed (``queries`` in the sources file) to ask.
QUERY = "invoice_readiness"
#: Where it is asked.
PATH = "/v1/invoices/{number}/readiness"
#: The query a source lists to see every held invoice, and where.
HELD = "held_invoices"
HELD_PATH = "/v1/invoices/held"
#: The one answer: the gate's verdict for one invoice number.
Answer = Callable[[str], Awaitable[dict[str, Any]]]
#: Seconds the check waits for the database before it answers 503.
DEADLINE_S = 3.0

_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Path parameter ``number`` (the route answers 400 invalid-parameter otherwise).
_NUMBER_SCHEMA: Json = {"type": "string", "pattern": _NUMBER.pattern,
                        "description": "The ERP's invoice number: 1 to 64 letters, digits, '.', '_' or '-', "
                                       "starting with a letter or digit."}
_HOLD_REASON: Json = {
    "type": "object",
    "required": ["code", "artefact", "detail", "name", "owner"],
    "properties": {
        "code": {"type": "string", "description": "Stable hold code, e.g. `INVOICE_NOT_DRAFTED`."},
        "artefact": {"type": "string",
                     "description": "The document id, envelope id or invoice number concerned, or the document class "
                                    "of which none is there."},
        "detail": {"type": "string", "description": "Explanation for finance, naming the document by its file name."},
        "name": {"type": ["string", "null"],
                 "description": "The document's file name (or the envelope's document); null for a class or invoice."},
        "owner": {"type": ["string", "null"],
                  "description": "Who takes the next step: `pmo`, `records_management`, `finance` or `platform_team`."},
    },
}
_READINESS: Json = {
    "type": "object",
    "required": ["invoice_number", "project_code", "status", "may_finalize", "hold_reasons"],
    "properties": {
        "invoice_number": {"type": "string"},
        "project_code": {"type": ["string", "null"], "description": "null when the hub never saw it drafted."},
        "status": {"type": "string", "enum": ["ready", "held"]},
        "may_finalize": {"type": "boolean", "description": "True exactly when `status` is `ready`."},
        "hold_reasons": {"type": "array", "items": _HOLD_REASON},
    },
}
_RESPONSES = responses(
    200, 400, 401, 403, 404, 429, 503,
    answers={200: answer_response("The gate's verdict now: `held` with every reason, or `ready`. Never cached.",
                                  _READINESS)},
    problems={400: "The invoice number is not valid.",
              403: "The caller's source may not ask for invoice readiness (only with an API key).",
              404: "This ingress does not serve the invoice-readiness gate.",
              503: "The readiness facts cannot be read now: no verdict (a hard stop fails closed)."},
    kinds={400: (Kind.INVALID_PARAMETER,)},
)


def readiness_answer(store: ReadinessStore, policy: Policy, rules: ReadinessRules, *,
                     timeout_s: float = DEADLINE_S) -> Answer:
    """The answer for one invoice number from the gate's store; fails closed: a database that does not
    answer (``StoreUnavailable``), or not within ``timeout_s`` (``TimeoutError``), is 503, never ``ready``.

    Why a worker thread rather than an asyncio engine: the check reads through the workers' own store and
    engine, the same queries on PostgreSQL and on the embedded mode's SQLite (which would need an async
    driver of its own), with outages turned into ``StoreUnavailable`` in one place
    (:meth:`hub.db.Database.begin`); a question is three indexed reads, milliseconds of a thread from the pool
    starlette's ``run_in_threadpool`` uses. It is called through anyio directly so that a stalled database
    (a connection that neither answers nor fails) cannot hold a request past the deadline: the thread is
    abandoned, to finish or fail on its own."""

    def answer_now(number: str) -> dict[str, Any]:
        code, facts = store.facts_of_invoice(number)
        return readiness_body(number, code, verdict(facts, number, policy, rules))

    async def answer(number: str) -> dict[str, Any]:
        with anyio.fail_after(timeout_s):
            return await anyio.to_thread.run_sync(answer_now, number, abandon_on_cancel=True)

    return answer


def readiness_router(answer: Answer, *, guard: QueryGuard) -> APIRouter:
    """``GET /v1/invoices/{number}/readiness``: ``answer``, for a source that may ask :data:`QUERY`."""
    router = APIRouter()

    @router.get(PATH, summary="Hard-stop check: may the ERP finalise this invoice?", operation_id="invoice_readiness",
                tags=["queries"], openapi_extra={"security": QUERY_SECURITY}, responses=_RESPONSES)
    async def invoice_readiness(number: Annotated[str, Path(json_schema_extra=_NUMBER_SCHEMA)],
                                request: Request) -> JSONResponse:
        async with guard.asking(request, QUERY, route=f"GET {PATH}") as question:
            if not _NUMBER.fullmatch(number):
                raise Problem(Kind.INVALID_PARAMETER, "invoice number must be 1-64 letters, digits, '.', '_' or '-'")

            async def gate_verdict() -> dict[str, Any]:
                body = await answer(number)
                question.span.set_attribute("hub.invoice.status", str(body.get("status")))
                return body

            return await question.answer(gate_verdict, unavailable="the readiness facts cannot be read now")

    return router


_OWNER = re.compile(r"^[a-z_]{1,64}$")
_OWNER_SCHEMA: Json = {"type": "string", "pattern": _OWNER.pattern,
                       "description": "Only invoices waiting for this owner: finance, pmo, records_management."}
_HELD_RESPONSES = responses(
    200, 400, 401, 403, 404, 429, 503,
    answers={200: answer_response("Every held invoice with its codes, reasons, owners and since when.",
                                  {"type": "object", "required": ["invoices"],
                                   "properties": {"invoices": {"type": "array", "items": {"type": "object"}}}})},
    problems={403: "The caller's source may not list held invoices.",
              503: "The readiness facts cannot be read now."},
    kinds={400: (Kind.INVALID_PARAMETER,)},
)


def held_router(store: ReadinessStore, *, guard: QueryGuard, timeout_s: float = DEADLINE_S) -> APIRouter:
    """``GET /v1/invoices/held[?owner=]``: every invoice the gate holds, for a source that may ask :data:`HELD`."""
    router = APIRouter()

    @router.get(HELD_PATH, summary="Every held invoice, with its hold codes, owners and since when",
                operation_id="held_invoices", tags=["operations"], openapi_extra={"security": QUERY_SECURITY},
                responses=_HELD_RESPONSES)
    async def held_invoices(request: Request, owner: Annotated[str | None, Query(json_schema_extra=_OWNER_SCHEMA)]
                            = None) -> JSONResponse:
        async with guard.asking(request, HELD, route=f"GET {HELD_PATH}") as question:
            if owner is not None and not _OWNER.fullmatch(owner):
                raise Problem(Kind.INVALID_PARAMETER, "owner is a name such as finance or records_management")
            async def listed() -> dict[str, Any]:
                with anyio.fail_after(timeout_s):
                    invoices = await anyio.to_thread.run_sync(store.held, abandon_on_cancel=True)
                return {"invoices": [held_body(invoice) for invoice in invoices
                                     if owner is None or owner in invoice.owners]}

            return await question.answer(listed, unavailable="the readiness facts cannot be read now")

    return router
