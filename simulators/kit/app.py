"""The app factory every simulator is built with: its vendor's error dialect, fault injection, the ``/_sim``
admin routes and the lifetime of its outbound deliveries.

A simulator builds its API router and its own ``/_sim`` routes, then::

    app = simulator_app("ERP/PSA simulator", api=api, admin=admin, dialect=ERP_ERRORS,
                        faults=FaultInjector(plan), outbox=outbox, resets=(state.reset,))

What the factory adds, for every simulator alike:

* the fault middleware (:mod:`simulators.kit.faults`; it serves ``GET|PUT /_sim/faults`` itself);
* ``POST /_sim/reset``: runs ``resets`` in order, forgets the outbox's queue and log, and puts back the
  fault plan the injector had when the app was built; answers ``{"reset": true}``;
* ``GET /_sim/deliveries`` and ``POST /_sim/deliveries/flush?timeout_s=10``, the outbox's log (empty
  without an outbox; ``deliveries=False`` leaves them out), ``POST /_sim/deliveries/hold``, ``/release`` and
  ``/export`` (the held deliveries as the signed requests they would be, taken out unsent); an outbox's
  delivery thread runs while the app serves;
* :class:`~simulators.kit.errors.SimError`, malformed requests and (when the dialect says how) Starlette's own
  errors answered in the vendor's shape.

The admin routes need no token: bind a simulator to loopback (or guard them with ``admin_dependencies``).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultMiddleware, FaultPlan
from simulators.kit.outbox import Outbox, delivery_routes

__all__ = ["ErrorDialect", "bearer_guard", "bearer_matches", "fault_answer", "serve", "simulator_app"]


@dataclass(frozen=True)
class ErrorDialect:
    """How a vendor's service answers errors: the shape of its body, and what it says to a malformed request."""

    #: The answer to a refused request.
    render: Callable[[SimError], Response]
    #: A request whose parameters or body do not validate, as the vendor refuses it.
    invalid: Callable[[RequestValidationError], SimError]
    #: Starlette's own errors (unknown path, wrong method) in the vendor's shape; ``None`` leaves FastAPI's.
    http_error: Callable[[StarletteHTTPException], SimError] | None = None
    #: An injected fault (``outage``, ``error``, ``throttle``) as the vendor answers it, with the plan's
    #: ``Retry-After``; ``None`` leaves the kit's generic body.
    fault: Callable[[str, FaultPlan], SimError] | None = None


#: FastAPI's own OpenTelemetry, off.
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def bearer_guard(token: str, refusal: Callable[[], SimError]) -> Callable[[Request], None]:
    """A route dependency raising ``refusal()`` unless the request carries ``Bearer <token>``."""

    def authorise(request: Request) -> None:
        if not bearer_matches(request.headers.get("authorization"), token):
            raise refusal()

    return authorise


def simulator_app(
    title: str,
    *,
    api: APIRouter,
    dialect: ErrorDialect,
    faults: FaultInjector,
    admin: APIRouter | None = None,
    outbox: Outbox | None = None,
    resets: Sequence[Callable[[], None]] = (),
    on_shutdown: Sequence[Callable[[], None]] = (),
    admin_dependencies: Sequence[Depends] = (),
    deliveries: bool = True,
    docs: bool = True,
) -> FastAPI:
    """A simulator's FastAPI app with the kit's parts; ``app.state`` holds ``faults`` and ``outbox``.

    ``api``: the vendor's API (with its own prefix and authorisation); ``admin``: the simulator's own routes
    under ``/_sim`` (its router has no prefix); ``on_shutdown`` runs after the outbox stopped; ``docs=False``
    serves no OpenAPI document.
    """
    initial_plan = faults.plan

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if outbox is not None:
            outbox.start()
        yield
        if outbox is not None:
            outbox.close()
        for stop in on_shutdown:
            stop()

    docs_options: dict[str, Any] = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    # A vendor's service leaves no span in the hub's traces, even run in the hub's process (FastAPI's own
    # OpenTelemetry is on whenever a global tracer provider is set).
    app = FastAPI(title=title, version="1", lifespan=lifespan, telemetry=NO_TELEMETRY, **docs_options)
    app.state.faults, app.state.outbox = faults, outbox
    app.include_router(api)
    admin_routes = APIRouter(prefix="/_sim", tags=["simulator admin"], dependencies=list(admin_dependencies))
    if admin is not None:
        admin_routes.include_router(admin)

    @admin_routes.post("/reset")
    async def reset() -> dict[str, Any]:
        for forget in resets:
            forget()
        if outbox is not None:
            outbox.reset()
        faults.set(initial_plan)
        return {"reset": True}

    if deliveries:
        admin_routes.include_router(delivery_routes(outbox))
    app.include_router(admin_routes)
    app.add_middleware(FaultMiddleware, injector=faults, refusal=fault_answer(dialect))
    _answer_errors(app, dialect)
    return app


def fault_answer(dialect: ErrorDialect) -> Callable[[str, FaultPlan], Response] | None:
    """An injected fault in the vendor's shape, marked ``x-sim-fault`` (None: the kit's generic body)."""
    fault = dialect.fault
    if fault is None:
        return None

    def answer(kind: str, plan: FaultPlan) -> Response:
        response = dialect.render(fault(kind, plan))
        response.headers["x-sim-fault"] = kind
        return response

    return answer


def _answer_errors(app: FastAPI, dialect: ErrorDialect) -> None:
    async def refused(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimError)
        return dialect.render(exc)

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return dialect.render(dialect.invalid(exc))

    app.add_exception_handler(SimError, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    http_error = dialect.http_error
    if http_error is not None:
        async def framework(_: Request, exc: Exception) -> Response:
            assert isinstance(exc, StarletteHTTPException) and http_error is not None
            return dialect.render(http_error(exc))

        app.add_exception_handler(StarletteHTTPException, framework)


def serve(app: FastAPI, *, host: str, port: int, access_log: bool = True) -> None:
    """Serve a simulator in the foreground until interrupted (``hub simulate``); keep ``host`` on loopback."""
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
