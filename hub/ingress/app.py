"""The ingress ASGI app: ``POST /v1/events``, native webhooks, health, readiness; problem+json errors.

Order of checks for an event request: body size (while reading), authentication, CloudEvents
binding and schema, authorisation of each event, quota, then one confirmed publish per subscriber.
202 is answered only after RabbitMQ confirmed every publish of every event in the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import redis.asyncio
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hub.errors import BrokerUnavailable, HubError, StoreUnavailable
from hub.events import CloudEvent
from hub.ingress import openapi
from hub.ingress.access import AccessLog
from hub.ingress.auth import AuthenticatedSource, ReplayGuard, authenticate
from hub.ingress.binding import read_events
from hub.ingress.outcomes import Claim, OutcomeStore
from hub.ingress.problems import PROBLEM_JSON, Kind, Problem, from_error
from hub.ingress.quotas import QuotaDecision, QuotaGate
from hub.ingress.sources import SourceRegistry
from hub.ingress.webhooks import WebhookAdapter, WebhookRequest
from hub.registry import SchemaRegistry
from observability.logging import get_logger

log = get_logger(__name__)
_INVOICE_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class EventPublisher(Protocol):
    """Confirmed publishing of one event to all its subscribers."""

    @property
    def ready(self) -> bool:
        """Connected and not blocked."""
        ...

    async def publish(self, event: CloudEvent, *, root_id: str | None = None) -> list[str]:
        """Return once every subscriber's message was confirmed; raise ``BrokerUnavailable`` otherwise."""
        ...


@dataclass
class Ingress:
    """Everything the app needs, built by the composition root."""

    registry: SchemaRegistry
    sources: SourceRegistry
    publisher: EventPublisher
    quotas: QuotaGate
    replay_guard: ReplayGuard
    outcomes: OutcomeStore
    redis: redis.asyncio.Redis
    adapters: Mapping[str, WebhookAdapter]
    tracer: trace.Tracer
    max_body_bytes: int = 1_048_576
    unavailable_retry_after_s: int = 5
    #: The invoice-readiness gate's answer for one invoice number (None: the endpoint answers 404).
    readiness: Callable[[str], Awaitable[dict[str, Any]]] | None = None


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it passes ``limit`` bytes (whatever Content-Length says)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(Kind.INVALID_HEADER, "Content-Length is not a number", field="content-length")
        if int(declared) > limit:
            raise Problem(Kind.PAYLOAD_TOO_LARGE, f"the body may hold at most {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(Kind.PAYLOAD_TOO_LARGE, f"the body may hold at most {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to read the answer; it is logged as a refused request, not as a server error.
        raise Problem(Kind.INVALID_HEADER, "the client closed the connection before the body was complete"
                      ) from None
    return b"".join(chunks)


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    """Render a problem as ``application/problem+json`` (and note its type for the access log)."""
    instance = request.url.path if request is not None else None
    if request is not None:
        request.state.hub_problem = problem.kind.uri
    return JSONResponse(problem.body(instance=instance), status_code=problem.kind.status,
                        media_type=PROBLEM_JSON, headers=problem.headers())


def create_app(ingress: Ingress, *, lifespan: Any = None) -> FastAPI:
    """The FastAPI app of the ingress."""
    app = FastAPI(title="Integration hub ingress", version="1", lifespan=lifespan,
                  description="Governed edge for source systems: CloudEvents 1.0 and native webhooks.")
    app.add_middleware(AccessLog)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: Kind.NOT_FOUND, 405: Kind.METHOD_NOT_ALLOWED}.get(exc.status_code, Kind.INVALID_CLOUDEVENT)
        response = problem_response(Problem(kind, str(exc.detail)), request)
        if exc.status_code == 405 and exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette still logs the exception (with its traceback) after this answer is sent.
        return problem_response(Problem(Kind.INTERNAL, "the request failed unexpectedly; nothing was accepted "
                                        "that a re-send would duplicate"), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(Problem(Kind.INVALID_HEADER, "request parameters are invalid"), request)

    @app.get("/healthz", summary="The process is alive", operation_id="healthz", tags=["health"],
             responses=openapi.responses("healthz", 200))
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="RabbitMQ and Redis are reachable", operation_id="readyz", tags=["health"],
             responses=openapi.responses("readyz", 200, 503))
    async def readyz(request: Request) -> Response:
        redis_ok = True
        try:
            await asyncio.wait_for(_ping(ingress.redis), timeout=2)
        except (redis.RedisError, OSError, TimeoutError):
            redis_ok = False
        if ingress.publisher.ready and redis_ok:
            return JSONResponse({"status": "ready", "rabbitmq": "ok", "redis": "ok"})
        down = [name for name, ok in (("rabbitmq", ingress.publisher.ready), ("redis", redis_ok)) if not ok]
        problem = Problem(Kind.UNAVAILABLE, f"not ready: {', '.join(down)} unreachable",
                          retry_after_s=ingress.unavailable_retry_after_s)
        return problem_response(problem, request)

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Publish CloudEvents (structured, binary or batch mode)",
        operation_id="publish_events",
        tags=["events"],
        openapi_extra=openapi.EVENTS_REQUEST,
        responses=openapi.responses("events", 202, 400, 401, 403, 409, 413, 415, 422, 429, 431, 500, 501, 503),
    )
    async def publish_events(request: Request) -> JSONResponse:
        with _server_span(ingress, request, "POST /v1/events") as span:
            body = await read_body(request, ingress.max_body_bytes)
            caller = await _authenticate(ingress, request, body, source_hint=None)
            span.set_attribute("hub.source_id", caller.id)
            request.state.hub_source_id = caller.id
            mode, events = read_events(list(request.scope["headers"]), request.headers.get("content-type"),
                                       body, ingress.registry)
            request.state.hub_event_types = {event.get_type() for event in events}
            span.set_attribute("cloudevents.mode", mode)
            accepted, quota = await _accept(ingress, caller, events)
            return JSONResponse({"accepted": accepted}, status_code=202, headers=_quota_headers(quota))

    @app.get("/v1/invoices/{number}/readiness", summary="Hard-stop check: may the ERP finalise this invoice?",
             operation_id="invoice_readiness", tags=["queries"], openapi_extra=openapi.READINESS_REQUEST,
             responses=openapi.responses("readiness", 200, 400, 401, 403, 404, 429, 503))
    async def invoice_readiness(number: Annotated[str, Path(json_schema_extra=openapi.INVOICE_NUMBER)],
                                request: Request) -> JSONResponse:
        with _server_span(ingress, request, "GET /v1/invoices/{number}/readiness") as span:
            if ingress.readiness is None:
                raise Problem(Kind.NOT_FOUND, "this ingress does not serve the invoice-readiness gate")
            caller = await _authenticate(ingress, request, b"", source_hint=None)
            span.set_attribute("hub.source_id", caller.id)
            request.state.hub_source_id = caller.id
            if caller.scheme != "api_key" or "invoice_readiness" not in caller.source.queries:
                raise Problem(Kind.FORBIDDEN, f"source {caller.id!r} may not ask for invoice readiness")
            if not _INVOICE_NUMBER.fullmatch(number):
                raise Problem(Kind.INVALID_PARAMETER, "invoice number must be 1-64 letters, digits, '.', '_' or '-'")
            try:
                quota = await ingress.quotas.hit(caller)
                if not quota.allowed:
                    raise Problem(Kind.RATE_LIMITED, f"source {caller.id!r} is over its quota of {quota.limit}",
                                  retry_after_s=max(1, quota.retry_after_s))
                answer = await ingress.readiness(number)
            except (redis.RedisError, OSError, StoreUnavailable):
                # A hard stop fails closed: no answer is never "ready".
                raise Problem(Kind.UNAVAILABLE, "the readiness facts cannot be read now",
                              retry_after_s=ingress.unavailable_retry_after_s) from None
            span.set_attribute("hub.invoice.status", str(answer.get("status")))
            return JSONResponse(answer, headers={"Cache-Control": "no-store", **_quota_headers(quota)})

    # One route for every vendor; the document writes it as one path per vendor (:func:`openapi.document`).
    @app.post("/v1/webhooks/{vendor}/{source_id}", status_code=202,
              summary="Native webhooks (docusign, graph, box) of one configured source", tags=["webhooks"],
              responses=openapi.responses("webhook", 202, 400, 401, 403, 404, 409, 413, 429, 503))
    async def webhook(vendor: str, source_id: Annotated[str, Path(json_schema_extra=openapi.SOURCE_ID)],
                      request: Request) -> Response:
        with _server_span(ingress, request, f"POST /v1/webhooks/{vendor}") as span:
            adapter = ingress.adapters.get(vendor)
            source = ingress.sources.get(source_id)
            if adapter is None or source is None:
                raise Problem(Kind.NOT_FOUND, f"no webhook endpoint {vendor}/{source_id}")
            body = await read_body(request, ingress.max_body_bytes)
            span.set_attribute("hub.source_id", source.id)
            request.state.hub_source_id = source.id
            webhook_request = WebhookRequest(
                headers={k.lower(): v for k, v in request.headers.items()},
                query=dict(request.query_params), body=body, now=datetime.now(UTC))
            try:
                reply = adapter.handle(webhook_request, source)
            except HubError as error:
                raise from_error(error) from None
            if reply.text is not None:
                return PlainTextResponse(reply.text, status_code=200)
            caller = AuthenticatedSource(source=source, scheme="api_key")
            request.state.hub_event_types = {event.get_type() for event in reply.events}
            if not reply.events:
                return JSONResponse({"accepted": []}, status_code=202)
            accepted, quota = await _accept(ingress, caller, reply.events)
            return JSONResponse({"accepted": accepted}, status_code=202, headers=_quota_headers(quota))

    # FastAPI's documented way to extend the document ("Extending OpenAPI"): replace the app's ``openapi``.
    app.openapi = openapi.generator(app, vendors=ingress.adapters)  # type: ignore[method-assign]
    return app


@contextlib.contextmanager
def _server_span(ingress: Ingress, request: Request, name: str) -> Any:
    context = propagate.extract(dict(request.headers))
    with ingress.tracer.start_as_current_span(name, context=context, kind=SpanKind.SERVER,
                                              record_exception=False, set_status_on_exception=False) as span:
        span_context = span.get_span_context()
        if span_context.is_valid:
            request.state.hub_trace_id = format(span_context.trace_id, "032x")
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.path", request.url.path)
        try:
            yield span
        except Problem as problem:
            span.set_attribute("http.response.status_code", problem.kind.status)
            span.set_attribute("error.type", problem.kind.uri)
            if problem.kind.status >= 500:
                span.set_status(Status(StatusCode.ERROR, problem.kind.title))
            raise


async def _authenticate(ingress: Ingress, request: Request, body: bytes, *, source_hint: str | None
                        ) -> AuthenticatedSource:
    try:
        return await authenticate(dict(request.headers), body, sources=ingress.sources, now=datetime.now(UTC),
                                  replay_guard=ingress.replay_guard, source_hint=source_hint)
    except HubError as error:
        raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None


def _quota_headers(quota: QuotaDecision) -> dict[str, str]:
    """What is left of the source's quota, so a sender can pace itself before it meets a 429."""
    return {"RateLimit-Limit": str(quota.limit), "RateLimit-Remaining": str(quota.remaining)}


async def _accept(ingress: Ingress, caller: AuthenticatedSource, events: list[CloudEvent]
                  ) -> tuple[list[dict[str, Any]], QuotaDecision]:
    """Authorise, apply the quota, claim each (source, id), publish what is new; all or nothing.

    The claim is one atomic step per event, so of identical deliveries arriving at once only one
    publishes; the others answer its outcome as a re-send once it is confirmed.
    """
    claims: list[Claim] = []
    try:
        for event in events:
            ingress.sources.may_publish(caller.source, event.get_type(), event.get_source())
        if not ingress.publisher.ready:
            raise BrokerUnavailable("not connected to RabbitMQ, blocked, or confirms stalled")
        decision = await ingress.quotas.hit(caller, cost=len(events))
        if not decision.allowed:
            raise Problem(Kind.RATE_LIMITED, f"source {caller.id!r} is over its quota of {decision.limit} events",
                          retry_after_s=max(1, decision.retry_after_s))
        for event in events:
            claims.append(await ingress.outcomes.claim(event))
        conflicts = [event.get_id() for event, c in zip(events, claims, strict=True) if c.verdict == "conflict"]
        if conflicts:
            raise Problem(Kind.ID_CONFLICT, f"event id(s) {', '.join(conflicts)} were accepted before with "
                          "different content", field="id")
        fresh = [event for event, c in zip(events, claims, strict=True) if c.verdict == "new"]
        await asyncio.gather(*(ingress.publisher.publish(event) for event in fresh))
    except BaseException as error:
        await _release(ingress, events, claims)
        if isinstance(error, HubError):
            if isinstance(error, StoreUnavailable):
                log.warning("ingress store unavailable", error=str(error))
            raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None
        raise
    results: list[dict[str, Any]] = []
    for event, claim in zip(events, claims, strict=True):
        if claim.verdict == "new":
            outcome = {"id": event.get_id(), "source": event.get_source(), "type": event.get_type(),
                       "status": "accepted"}
            try:
                await ingress.outcomes.settle(event, claim, outcome)
            except StoreUnavailable as error:
                # Published and confirmed: the answer is 202 all the same. The claim expires, and a re-send
                # after that is published again, which the consumers' idempotency absorbs.
                log.warning("accepted event's outcome not recorded", event_id=event.get_id(), error=str(error))
            results.append(outcome)
        else:
            results.append({**(claim.outcome or {}), "status": "accepted", "resent": True})
    return results, decision


async def _release(ingress: Ingress, events: list[CloudEvent], claims: list[Claim]) -> None:
    for event, claim in zip(events, claims, strict=False):
        if claim.verdict == "new":
            await ingress.outcomes.release(event, claim)


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    """A lifespan that does nothing (tests that manage the parts themselves)."""
    yield


async def _ping(client: redis.asyncio.Redis) -> bool:
    answer: Any = client.ping()  # a coroutine on the asyncio client
    return bool(await answer)
