"""The exception inbox over HTTP, on the ingress: list and read cases (query :data:`READ`), acknowledge and resolve
them (query :data:`ACT`), with a source's API key as every query of the ingress (:mod:`hub.ingress.queries`).

``GET /v1/exceptions?owner=&state=&older_than=``, ``GET /v1/exceptions/{id}``,
``POST /v1/exceptions/{id}/acknowledge`` and ``POST /v1/exceptions/{id}/resolve`` (JSON body ``{"note": "...",
"retry": true}``, both optional). The database is read in a worker thread under a deadline, as the hard-stop
check does; a database that does not answer is 503.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from actors.exceptions.desk import CannotRetry, ExceptionDesk
from actors.exceptions.store import STATES, State, UnknownCase
from hub.ingress.openapi import Json, responses
from hub.ingress.problems import Kind, Problem
from hub.ingress.queries import QUERY_SECURITY, QueryGuard, answer_response

__all__ = ["ACT", "READ", "exceptions_router"]

#: The query a source lists to read the inbox.
READ = "exceptions"
#: The query a source lists to acknowledge and resolve cases (replaying dead letters).
ACT = "exception_actions"
#: Seconds the API waits for the database (and a replay) before it answers 503.
DEADLINE_S = 10.0
T = TypeVar("T")

_ID = re.compile(r"^[0-9a-f-]{6,36}$")
_AGE = re.compile(r"^(\d{1,6})([mhd])$")
_OWNER = re.compile(r"^[a-z_]{1,64}$")
#: The query parameters, checked by the routes (400 invalid-parameter) rather than by FastAPI.
_OWNER_SCHEMA: Json = {"type": "string", "pattern": _OWNER.pattern,
                       "description": "Only this owner's cases: finance, pmo, records_management, platform_team, risk."}
_STATE_SCHEMA: Json = {"type": "string", "enum": list(STATES), "description": "Only cases in this state (default: "
                       "open and acknowledged)."}
_AGE_SCHEMA: Json = {"type": "string", "pattern": _AGE.pattern,
                     "description": "Only cases first seen longer ago than this: 30m, 6h, 2d."}
_ID_SCHEMA: Json = {"type": "string", "pattern": _ID.pattern,
                    "description": "The case's id, or its first 6 characters or more."}
_CASE: Json = {"type": "object", "description": "One case of the inbox: its owner, code (kind), business key "
               "(subject), evidence (detail), first and last seen, occurrences and state.",
               "required": ["id", "owner", "kind", "subject", "state", "occurrences", "first_seen", "last_seen"]}
_READ_RESPONSES = responses(
    200, 400, 401, 403, 404, 429, 503,
    answers={200: answer_response("The cases asked for, oldest first.", {"type": "object"})},
    problems={403: "The caller's source may not read the exception inbox."},
    kinds={400: (Kind.INVALID_PARAMETER,)},
)
_ACT_RESPONSES = responses(
    200, 400, 401, 403, 404, 429, 503,
    answers={200: answer_response("The case as it is now (and the dead letters replayed).", _CASE)},
    problems={400: "A bad id or body, or a retry of a case with no dead letter left to replay.",
              403: "The caller's source may not act on the exception inbox."},
    kinds={400: (Kind.INVALID_PARAMETER,)},
)
_BODY: Json = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False,
    "properties": {"note": {"type": "string", "maxLength": 2000}, "retry": {"type": "boolean"}}}}}}}


def _age(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = _AGE.fullmatch(text) if len(text) <= 8 else None
    if match is None:
        raise Problem(Kind.INVALID_PARAMETER, "older_than is a number and m, h or d: 30m, 6h, 2d")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def _case_id(text: str) -> str:
    if not _ID.fullmatch(text):
        raise Problem(Kind.INVALID_PARAMETER, "a case id is 6 to 36 hexadecimal digits and dashes")
    return text


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Problem(Kind.INVALID_PARAMETER, "the body is not JSON") from None
    if not isinstance(body, dict) or set(body) - {"note", "retry"} or not isinstance(body.get("note", ""), str) \
            or not isinstance(body.get("retry", False), bool) or len(body.get("note") or "") > 2000:
        raise Problem(Kind.INVALID_PARAMETER, 'the body is {"note": "<at most 2000 characters>", "retry": true|false}')
    return body


async def _in_thread(call: Callable[[], T]) -> T:
    try:
        with anyio.fail_after(DEADLINE_S):
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
    except UnknownCase as exc:
        raise Problem(Kind.NOT_FOUND, str(exc)) from None
    except CannotRetry as exc:
        raise Problem(Kind.INVALID_PARAMETER, str(exc)) from None


def exceptions_router(desk: ExceptionDesk, *, guard: QueryGuard) -> APIRouter:
    """The inbox's routes over ``desk``, for sources that may ask :data:`READ` or :data:`ACT`."""
    router = APIRouter()

    @router.get("/v1/exceptions", summary="The exception inbox: cases not yet resolved", tags=["operations"],
                operation_id="exceptions_list", openapi_extra={"security": QUERY_SECURITY}, responses=_READ_RESPONSES)
    async def exceptions_list(request: Request,
                              owner: Annotated[str | None, Query(json_schema_extra=_OWNER_SCHEMA)] = None,
                              state: Annotated[str | None, Query(json_schema_extra=_STATE_SCHEMA)] = None,
                              older_than: Annotated[str | None, Query(json_schema_extra=_AGE_SCHEMA)] = None
                              ) -> JSONResponse:
        async with guard.asking(request, READ, route="GET /v1/exceptions") as question:
            if state is not None and state not in STATES:
                raise Problem(Kind.INVALID_PARAMETER, f"state is one of {', '.join(STATES)}")
            if owner is not None and not _OWNER.fullmatch(owner):
                raise Problem(Kind.INVALID_PARAMETER, "owner is a name such as finance or records_management")
            age = _age(older_than)
            states: tuple[State, ...] = (state,) if state is not None else ("open", "acknowledged")

            async def listed() -> dict[str, Any]:
                cases = await _in_thread(lambda: desk.cases(owner=owner, states=states, older_than=age))
                return {"cases": [case.as_dict() for case in cases]}

            return await question.answer(listed, unavailable="the exception inbox cannot be read now")

    @router.get("/v1/exceptions/{case_id}", summary="One case of the exception inbox", tags=["operations"],
                operation_id="exceptions_show", openapi_extra={"security": QUERY_SECURITY}, responses=_READ_RESPONSES)
    async def exceptions_show(case_id: Annotated[str, Path(json_schema_extra=_ID_SCHEMA)],
                              request: Request) -> JSONResponse:
        async with guard.asking(request, READ, route="GET /v1/exceptions/{case_id}") as question:
            key = _case_id(case_id)

            async def shown() -> dict[str, Any]:
                return (await _in_thread(lambda: desk.case(key))).as_dict()

            return await question.answer(shown, unavailable="the exception inbox cannot be read now")

    @router.post("/v1/exceptions/{case_id}/acknowledge", summary="Acknowledge a case: someone is on it",
                 tags=["operations"], operation_id="exceptions_acknowledge",
                 openapi_extra={"security": QUERY_SECURITY, **_BODY}, responses=_ACT_RESPONSES)
    async def exceptions_acknowledge(case_id: Annotated[str, Path(json_schema_extra=_ID_SCHEMA)],
                                     request: Request) -> JSONResponse:
        async with guard.asking(request, ACT, route="POST /v1/exceptions/{case_id}/acknowledge") as question:
            key, body = _case_id(case_id), await _body(request)
            by = f"api:{question.caller.id}"

            async def acknowledged() -> dict[str, Any]:
                return (await _in_thread(lambda: desk.acknowledge(key, by=by, note=body.get("note")))).as_dict()

            return await question.answer(acknowledged, unavailable="the exception inbox cannot be written now")

    @router.post("/v1/exceptions/{case_id}/resolve", summary="Resolve a case, replaying its dead letters on request",
                 tags=["operations"], operation_id="exceptions_resolve",
                 openapi_extra={"security": QUERY_SECURITY, **_BODY}, responses=_ACT_RESPONSES)
    async def exceptions_resolve(case_id: Annotated[str, Path(json_schema_extra=_ID_SCHEMA)],
                                 request: Request) -> JSONResponse:
        async with guard.asking(request, ACT, route="POST /v1/exceptions/{case_id}/resolve") as question:
            key, body = _case_id(case_id), await _body(request)
            by = f"api:{question.caller.id}"

            async def resolved() -> dict[str, Any]:
                done = await _in_thread(lambda: desk.resolve(key, by=by, note=body.get("note"),
                                                             retry=bool(body.get("retry"))))
                return {**done.case.as_dict(), "replayed": list(done.replayed)}

            return await question.answer(resolved, unavailable="the exception inbox cannot be written now")

    return router
