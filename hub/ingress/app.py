"""The ingress ASGI app: ``POST /v1/events``, native webhooks, health; problem+json errors.

The composition root gives it the webhook adapters and the routers it mounts besides (a pattern's
queries, :mod:`hub.ingress.queries`); the app knows none of them by name.

Order of checks for an event request: body size (while reading), authentication, CloudEvents
binding and schema, authorisation of each event, quota, then one confirmed publish per subscriber.
202 is answered only after RabbitMQ confirmed every publish of every event in the request. Every
request leaves one line in the access log (:class:`AccessLog`).

Redis is asked once before the publish and once after (:mod:`hub.ingress.admission`): one script checks
a signed webhook's replay, charges the quota and claims every event; one settles them (or releases them
when the publish fails). The replay check belongs to authentication: a request refused after the
signature verified and before that script (binding, schema, authorisation, broker not ready) asks the
replay guard alone first, so a reused webhook id with another body is a 401 whatever else is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Protocol

import redis.asyncio
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hub.batching import HeldWrites
from hub.epoch import redis_data_note
from hub.errors import BrokerUnavailable, HubError, StoreUnavailable
from hub.events import CloudEvent
from hub.ingress import openapi
from hub.ingress.access import AccessLog
from hub.ingress.admission import Admission
from hub.ingress.auth import (
    AuthenticatedSource,
    QuotaDecision,
    QuotaGate,
    RedisReplayGuard,
    authenticate,
    check_replay,
    verify,
)
from hub.ingress.binding import read_events
from hub.ingress.openapi_schemas import EVENTS_REQUEST, SOURCE_ID
from hub.ingress.outcomes import Claim, OutcomeStore
from hub.ingress.problems import PROBLEM_JSON, Kind, Problem, from_error
from hub.ingress.sources import SourceRegistry
from hub.ingress.webhooks import WebhookAdapter, WebhookRequest
from hub.registry import SchemaRegistry
from observability.flight import Writes
from observability.logging import get_logger
from observability.metrics import CONTENT_TYPE, exposition

log = get_logger(__name__)


class EventPublisher(Protocol):
    """Confirmed publishing of one event to all its subscribers."""

    @property
    def ready(self) -> bool:
        """Connected and not blocked."""
        ...

    async def publish(self, event: CloudEvent, *, root_id: str | None = None,
                      writes: Writes | None = None) -> list[str]:
        """Return once every subscriber's message was confirmed; raise ``BrokerUnavailable`` otherwise. ``writes``:
        where the publishes' Redis writes (flight-record hops) wait for the request's closing round trip."""
        ...


@dataclass
class Ingress:
    """Everything the app needs, built by the composition root."""

    registry: SchemaRegistry
    sources: SourceRegistry
    publisher: EventPublisher
    #: Charges the queries; its keys are the event requests' quota too.
    quotas: QuotaGate
    #: Asked alone by the queries and by refused event requests; its keys are the admission's replay check.
    replay_guard: RedisReplayGuard
    #: Settles and releases claims; its keys are the admission's claims.
    outcomes: OutcomeStore
    redis: redis.asyncio.Redis
    adapters: Mapping[str, WebhookAdapter]
    tracer: trace.Tracer
    max_body_bytes: int = 1_048_576
    unavailable_retry_after_s: int = 5
    #: The hub's Redis key prefix (``HUB_QUEUE_PREFIX``), for the epoch ``/readyz`` reports.
    key_prefix: str = "hub"

    @cached_property
    def admission(self) -> Admission:
        """The one script call admitting an event request, on the keys of the three parts above."""
        return Admission(self.redis, quotas=self.quotas, replay_guard=self.replay_guard, outcomes=self.outcomes)


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


#: FastAPI's own OpenTelemetry (since 0.160: a SERVER span, an operation span and metrics per request, on whenever a
#: global tracer provider is set) is off: the hub makes its own server span (:func:`server_span`, with the event's
#: attributes and the sender's trace context) and its own metrics; FastAPI's would be a second SERVER span in every
#: trace and about a tenth of the ingress's CPU.
NO_FRAMEWORK_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


def create_app(ingress: Ingress, *, routers: Iterable[APIRouter] = (), lifespan: Any = None) -> FastAPI:
    """The FastAPI app of the ingress, with the ``routers`` the composition root contributes mounted."""
    app = FastAPI(title="Integration hub ingress", version="1", lifespan=lifespan,
                  description="Governed edge for source systems: CloudEvents 1.0 and native webhooks.",
                  telemetry=NO_FRAMEWORK_TELEMETRY)
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
             responses=openapi.HEALTHZ_RESPONSES)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE)

    @app.get("/readyz", summary="RabbitMQ and Redis are reachable", operation_id="readyz", tags=["health"],
             responses=openapi.READYZ_RESPONSES)
    async def readyz(request: Request) -> Response:
        redis_ok, note = True, "unknown"
        try:
            await asyncio.wait_for(_ping(ingress.redis), timeout=2)
            note = await asyncio.wait_for(redis_data_note(ingress.redis, ingress.key_prefix), timeout=2)
        except (redis.RedisError, OSError, TimeoutError):
            redis_ok = False
        if ingress.publisher.ready and redis_ok:
            return JSONResponse({"status": "ready", "rabbitmq": "ok", "redis": "ok", "redis_data": note})
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
        openapi_extra=EVENTS_REQUEST,
        responses=openapi.EVENTS_RESPONSES,
    )
    async def publish_events(request: Request) -> JSONResponse:
        with server_span(ingress, request, "POST /v1/events") as span:
            body = await read_body(request, ingress.max_body_bytes)
            caller = verify_request(ingress, request, body)
            span.set_attribute("hub.source_id", caller.id)
            request.state.hub_source_id = caller.id
            async with replay_checked_when_refused(ingress, caller):
                mode, events = read_events(list(request.scope["headers"]), request.headers.get("content-type"),
                                           body, ingress.registry)
                request.state.hub_event_types = {event.get_type() for event in events}
                span.set_attribute("cloudevents.mode", mode)
                may_accept(ingress, caller, events)
            accepted, quota = await _accept(ingress, caller, events)
            return JSONResponse({"accepted": accepted}, status_code=202, headers=rate_limit_headers(quota))

    # One route for every vendor; the document writes it as one path per vendor (:func:`openapi.document`).
    @app.post(openapi.WEBHOOK_PATH, status_code=202, summary="Native webhooks of one configured source",
              tags=["webhooks"], responses=openapi.WEBHOOK_RESPONSES)
    async def webhook(vendor: str, source_id: Annotated[str, Path(json_schema_extra=SOURCE_ID)],
                      request: Request) -> Response:
        with server_span(ingress, request, f"POST /v1/webhooks/{vendor}") as span:
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
            may_accept(ingress, caller, reply.events)
            accepted, quota = await _accept(ingress, caller, reply.events, contents=reply.contents or None)
            return JSONResponse({"accepted": accepted}, status_code=202, headers=rate_limit_headers(quota))

    for router in routers:
        app.include_router(router)
    # FastAPI's documented way to extend the document ("Extending OpenAPI"): replace the app's ``openapi``.
    app.openapi = openapi.generator(  # type: ignore[method-assign]
        app, vendors={vendor: adapter.document for vendor, adapter in ingress.adapters.items()})
    return app


@contextlib.contextmanager
def server_span(ingress: Ingress, request: Request, name: str) -> Iterator[Span]:
    """The request's server span (continuing the caller's trace), with the problem that ends it recorded."""
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


async def authenticate_request(ingress: Ingress, request: Request, body: bytes) -> AuthenticatedSource:
    """The source whose credentials the request carries (401, or 503 when the replay guard cannot be asked)."""
    try:
        return await authenticate(dict(request.headers), body, sources=ingress.sources,
                                  replay_guard=ingress.replay_guard, source_hint=None)
    except HubError as error:
        raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None


def verify_request(ingress: Ingress, request: Request, body: bytes) -> AuthenticatedSource:
    """The source whose credentials the request carries (401), its replay check left to the admission."""
    try:
        return verify(dict(request.headers), body, sources=ingress.sources, source_hint=None)
    except HubError as error:
        raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None


@contextlib.asynccontextmanager
async def replay_checked_when_refused(ingress: Ingress, caller: AuthenticatedSource) -> AsyncIterator[None]:
    """Ask the replay guard alone when the block refuses a signed webhook before its admission: a reused
    webhook id with another body is a 401 (authentication comes first), and the id is remembered as the
    admission would have."""
    try:
        yield
    except (Problem, HubError):
        if caller.webhook_id is not None:
            try:
                await check_replay(caller, ingress.replay_guard)
            except HubError as error:
                raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None
        raise


def may_accept(ingress: Ingress, caller: AuthenticatedSource, events: list[CloudEvent]) -> None:
    """What is checked before Redis is asked: the caller may publish each event (403) and the broker is ready
    (503)."""
    try:
        for event in events:
            ingress.sources.may_publish(caller.source, event.get_type(), event.get_source())
        if not ingress.publisher.ready:
            raise BrokerUnavailable("not connected to RabbitMQ, blocked, or confirms stalled")
    except HubError as error:
        raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None


def rate_limit_headers(quota: QuotaDecision) -> dict[str, str]:
    """What is left of the source's quota, so a sender can pace itself before it meets a 429."""
    return {"RateLimit-Limit": str(quota.limit), "RateLimit-Remaining": str(quota.remaining)}


async def _accept(ingress: Ingress, caller: AuthenticatedSource, events: list[CloudEvent],
                  contents: list[str] | None = None) -> tuple[list[dict[str, Any]], QuotaDecision]:
    """Admit the request (replay check, quota, claim of each (source, id): one Redis script), publish what is
    new, settle it (one more round trip, with the publishes' flight-record hops); all or nothing.
    :func:`may_accept` was asked before.

    The claim is atomic per event, so of identical deliveries arriving at once only one publishes; the
    others answer its outcome as a re-send once it is confirmed. ``contents``: per event, the digest of the
    vendor's content it came from (see :class:`~hub.ingress.webhooks.WebhookReply`).
    """
    claims: list[Claim] = []
    closing = HeldWrites()  # the publishes' flight-record hops, sent with the settle (or the release)
    try:
        admitted = await ingress.admission.admit(caller, events, contents)
        decision = admitted.quota
        if not decision.allowed:
            raise Problem(Kind.RATE_LIMITED, f"source {caller.id!r} is over its quota of {decision.limit} events",
                          retry_after_s=max(1, decision.retry_after_s))
        claims = admitted.claims
        conflicts = [event.get_id() for event, c in zip(events, claims, strict=True) if c.verdict == "conflict"]
        if conflicts:
            raise Problem(Kind.ID_CONFLICT, f"event id(s) {', '.join(conflicts)} were accepted before with "
                          "different content", field="id")
        fresh = [event for event, c in zip(events, claims, strict=True) if c.verdict == "new"]
        await asyncio.gather(*(ingress.publisher.publish(event, writes=closing) for event in fresh))
    except BaseException as error:
        await ingress.outcomes.release(list(zip(events, claims, strict=False)), writes=closing)
        if isinstance(error, HubError):
            if isinstance(error, StoreUnavailable):
                log.warning("ingress store unavailable", error=str(error))
            raise from_error(error, retry_after_s=ingress.unavailable_retry_after_s) from None
        raise
    results: list[dict[str, Any]] = []
    settled: list[tuple[CloudEvent, Claim, dict[str, Any]]] = []
    for event, claim in zip(events, claims, strict=True):
        if claim.verdict == "new":
            outcome = {"id": event.get_id(), "source": event.get_source(), "type": event.get_type(),
                       "status": "accepted"}
            settled.append((event, claim, outcome))
            results.append(outcome)
        else:
            results.append({**(claim.outcome or {}), "status": "accepted", "resent": True})
    try:
        await ingress.outcomes.settle(settled, writes=closing)
    except StoreUnavailable as error:
        # Published and confirmed: the answer is 202 all the same. The claims expire, and a re-send after that
        # is published again, which the consumers' idempotency absorbs.
        log.warning("accepted events' outcomes not recorded", event_ids=[e.get_id() for e, _, _ in settled],
                    error=str(error))
    return results, decision


@contextlib.asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    """A lifespan that does nothing (tests that manage the parts themselves)."""
    yield


async def _ping(client: redis.asyncio.Redis) -> bool:
    answer: Any = client.ping()  # a coroutine on the asyncio client
    return bool(await answer)
