"""Queries: synchronous questions a source may ask with its API key, on routes other packages contribute.

A package offering a query provides an ``APIRouter`` (the composition root mounts it with
``create_app(ingress, routers=...)``) whose handler asks through a :class:`QueryGuard`::

    async with guard.asking(request, "some_query", route="GET /v1/things/{id}/state") as question:
        check_the_parameters(...)  # raise Problem(Kind.INVALID_PARAMETER, ...)
        return await question.answer(lambda: compute(...), unavailable="the state cannot be read now")

The guard keeps the order every query follows: the server span opens; the caller authenticates (401);
it must have used its API key and list the query in its ``queries`` (403); the route checks its
parameters (400); the source's quota is charged (429); the answer is computed. A Redis or store error
while charging or computing is 503 with ``Retry-After``: a query fails closed, since no answer must
never read as a good one. Answers are never cached (``Cache-Control: no-store``) and carry the
``RateLimit-*`` headers. The names a source may list are those the mounted routers declare, given to
the sources model by the composition root (:func:`hub.ingress.sources.source_model`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from fastapi import Request
from fastapi.responses import JSONResponse
from opentelemetry.trace import Span

from hub.errors import StoreUnavailable
from hub.ingress.app import Ingress, authenticate_request, rate_limit_headers, server_span
from hub.ingress.auth import AuthenticatedSource
from hub.ingress.openapi import quota_headers
from hub.ingress.openapi_schemas import Json
from hub.ingress.problems import Kind, Problem

__all__ = ["QUERY_SECURITY", "QueryGuard", "Question", "answer_response"]

#: ``openapi_extra`` security of a query route: the API key only.
QUERY_SECURITY: list[Json] = [{"ApiKey": []}]


def answer_response(description: str, schema: Json) -> Json:
    """The documented 200 answer of a query: ``schema`` as JSON, never cached, with the quota headers."""
    return {"description": description,
            "headers": {"Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}},
                        **quota_headers(required=True)},
            "content": {"application/json": {"schema": schema}}}


@dataclass(frozen=True)
class Question:
    """One query being asked by an authenticated source that may ask it."""

    caller: AuthenticatedSource
    #: The request's server span, for the route's own attributes.
    span: Span
    ingress: Ingress

    async def answer(self, compute: Callable[[], Awaitable[Mapping[str, Any]]], *, unavailable: str) -> JSONResponse:
        """Charge the quota (429 when over it), then answer what ``compute`` returns; 503 (``unavailable``) when
        Redis or a store cannot be read."""
        try:
            quota = await self.ingress.quotas.hit(self.caller)
            if not quota.allowed:
                raise Problem(Kind.RATE_LIMITED, f"source {self.caller.id!r} is over its quota of {quota.limit}",
                              retry_after_s=max(1, quota.retry_after_s))
            body = await compute()
        except (redis.RedisError, OSError, StoreUnavailable):
            # A query fails closed: no answer is never a good one.
            raise Problem(Kind.UNAVAILABLE, unavailable,
                          retry_after_s=self.ingress.unavailable_retry_after_s) from None
        return JSONResponse(dict(body), headers={"Cache-Control": "no-store", **rate_limit_headers(quota)})


class QueryGuard:
    """Authenticates, authorises and meters the queries of the routers mounted on one ingress."""

    def __init__(self, ingress: Ingress) -> None:
        self.ingress = ingress

    @contextlib.asynccontextmanager
    async def asking(self, request: Request, query: str, *, route: str) -> AsyncIterator[Question]:
        """The question ``query`` asked by the request's source, within its server span named ``route``:
        401 without valid credentials, 403 unless it used its API key and may ask ``query``."""
        with server_span(self.ingress, request, route) as span:
            caller = await authenticate_request(self.ingress, request, b"")
            span.set_attribute("hub.source_id", caller.id)
            request.state.hub_source_id = caller.id
            if caller.scheme != "api_key" or query not in caller.source.queries:
                raise Problem(Kind.FORBIDDEN, f"source {caller.id!r} may not ask {query!r} (only with its API key, "
                                              "when its queries list it)")
            yield Question(caller=caller, span=span, ingress=self.ingress)
