"""A Microsoft Graph stand-in speaking the SharePoint subset the hub uses, under ``/v1.0``, over real HTTP.

The subset (routes in :mod:`simulators.sharepoint.routes`, records in :mod:`simulators.sharepoint.state`)::

    GET    /v1.0/drives/{drive-id}                                   the drive
    GET    /v1.0/drives/{drive-id}/root | /items/{item-id}           a driveItem (``root`` is an alias)
    GET    /v1.0/drives/{drive-id}/root:/{path}                      a driveItem by path (404 itemNotFound)
    GET    /v1.0/drives/{drive-id}/items/{item-id}[?$select=&$expand=]  (query options: simulators.sharepoint.query)
    GET    /v1.0/drives/{drive-id}/items/{item-id}/children          paged: $top (<= 1000), @odata.nextLink;
           $orderby=name [desc], $select, $expand=listItem($expand=fields),retentionLabel
    POST   /v1.0/$batch                                              JSON batching (simulators.sharepoint.batch)
    POST   /v1.0/drives/{drive-id}/items/{parent-id}/children        create a folder (also root:/{path}:/children)
    PUT    /v1.0/drives/{drive-id}/items/{parent-id}:/{name}:/content   upload a file: 201 new, 200 replaced
    PUT    /v1.0/drives/{drive-id}/root:/{folder-path}/{name}:/content  the same by path (folders must exist)
    PUT    /v1.0/drives/{drive-id}/items/{item-id}/content           new content for an existing file
    GET    /v1.0/drives/{drive-id}/items/{item-id}/content           302 to a pre-authenticated URL (also by path)
    POST   /v1.0/drives/{drive-id}/items/{parent-id}:/{name}:/createUploadSession   (also root:/{path}:/...,
           items/{item-id}/createUploadSession): fragments PUT to the pre-authenticated uploadUrl
    DELETE /v1.0/drives/{drive-id}/items/{item-id}                   delete an item (a folder with its subtree)
    GET    /v1.0/drives/{drive-id}/root/delta                        changes: token, $top, nextLink, deltaLink
    GET    /v1.0/drives/{drive-id}/root/delta() | /items/root/delta() | .../delta(token='...')   the same
    GET    /v1.0/drives/{drive-id}/items/{item-id}/listItem          its fields only with $expand=fields
    POST   /v1.0/drives/{drive-id}/items/{item-id}/invite            grant a known group read or write
    GET    /v1.0/drives/{drive-id}/items/{item-id}/permissions[/{perm-id}]   (and DELETE one)
    GET|PATCH|DELETE /v1.0/drives/{drive-id}/items/{item-id}/retentionLabel
    GET|PATCH /v1.0/drives/{drive-id}/items/{item-id}/listItem/fields
    POST   /v1.0/subscriptions (validationToken handshake first); GET, PATCH, DELETE /v1.0/subscriptions/{id}
           (an https notificationUrl and a drive's root only, as SharePoint requires; notifications name no item)
    GET    /v1.0/sites/{hostname}:/{server-relative-path}            the site (also /sites/{site-id})
    GET    /v1.0/sites/{site-id}/drives                              its document libraries
    GET    /v1.0/drives/{drive-id}/list                              a library's list
    GET|POST /v1.0/sites/{site-id}/lists/{list-id}/columns           its columns (create: a columnDefinition)
    GET    /v1.0/groups[?$filter=displayName eq '...']               directory groups (also mail, id); /groups/{id}
    GET    /v1.0/security/labels/retentionLabels                     the tenant's published retention labels

Every ``/v1.0`` call needs ``Authorization: Bearer <token>`` (else 401 ``InvalidAuthenticationToken``, with
Graph's ``WWW-Authenticate``): the configured static token, or with ``SimulatorConfig.sign_in`` only a token
the tenant's Entra ID issued (:mod:`simulators.sharepoint.login`, served as an app of its own by
:func:`create_login_app`), refused once expired ("Lifetime validation failed, the token is expired.");
errors are Graph's ``{"error": {"code", "message", "innerError"}}`` on every answer (unknown routes, wrong
methods, malformed requests and injected faults included). There is no ``Idempotency-Key``:
creating an existing folder with ``conflictBehavior`` ``fail`` (the default here) answers 409
``nameAlreadyExists``; a content PUT replaces an existing file of that name (``conflictBehavior``
``fail`` and ``rename`` are honoured too). ``delta`` pages by ``$top`` (or ``top``, default
``page_size``) with an ``@odata.nextLink`` carrying a ``$skiptoken``; the last page has an
``@odata.deltaLink`` carrying ``token``; ``token=latest`` answers no items and the current
position; a token the simulator did not issue in its current epoch is 410 ``resyncRequired`` with
a ``Location`` that starts over. Downloads and upload sessions: :mod:`simulators.sharepoint.transfers`.
Faults come from :mod:`simulators.kit.faults` (``PUT /_sim/faults``). Admin
endpoints, loopback only and without token: ``GET /_sim/state``, ``GET /_sim/requests``,
``POST /_sim/seed`` (folder trees in bulk, no notifications: :mod:`simulators.sharepoint.seed`),
``GET /_sim/tokens`` (tokens issued per client, refused sign-ins), ``POST /_sim/tokens/revoke?client_id=``
(its tokens then answer 401), ``POST /_sim/reset``, and the change
notifications' log: ``GET /_sim/deliveries``,
``POST /_sim/deliveries/flush?timeout_s=10`` (Graph's retry schedule: :mod:`simulators.sharepoint.notify`),
``POST /_sim/deliveries/hold``, ``/release`` and ``/export`` (:mod:`simulators.kit.outbox`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulators.kit.app import ErrorDialect, bearer_matches, fault_answer, serve, simulator_app
from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultPlan
from simulators.kit.tokens import TokenIssuer
from simulators.sharepoint.batch import Shortcuts, batch_routes
from simulators.sharepoint.changes import change_routes
from simulators.sharepoint.config import DEFAULT_GROUPS, SimulatorConfig
from simulators.sharepoint.model import GraphError, Group, Json, Site, iso
from simulators.sharepoint.notify import Notifier
from simulators.sharepoint.routes import drive_routes, hot_read_routes, hot_reads, subscription_routes
from simulators.sharepoint.seed import seed
from simulators.sharepoint.sites import site_routes
from simulators.sharepoint.state import GraphState
from simulators.sharepoint.transfers import Transfers, graph_transfer_routes, preauth_routes

__all__ = ["DEFAULT_GROUPS", "SimulatorConfig", "create_app", "run"]


def _render(exc: SimError) -> JSONResponse:
    inner: Json = {"date": iso(datetime.now(UTC)), "request-id": str(uuid.uuid4()),
                   "client-request-id": str(uuid.uuid4())}
    inner_code = exc.inner_code if isinstance(exc, GraphError) else None
    if inner_code:
        inner = {"code": inner_code, **inner}
    headers = dict(exc.headers)
    if exc.status == 401:
        headers["WWW-Authenticate"] = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                                       'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"')
    return JSONResponse({"error": {"code": exc.code, "message": exc.message, "innerError": inner}},
                        status_code=exc.status, headers=headers or None)


def _invalid(exc: RequestValidationError) -> SimError:
    where = "; ".join(".".join(str(part) for part in e.get("loc", ())) for e in exc.errors()[:3])
    return GraphError(400, "invalidRequest", f"Invalid request: {where}.")


def _http_error(exc: StarletteHTTPException) -> SimError:
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return GraphError(404, "itemNotFound", "Resource not found for the segment.", headers=headers)
    if exc.status_code == 405:
        return GraphError(405, "notSupported", "The HTTP method is not supported on this resource.",
                          headers=headers)
    return GraphError(exc.status_code, "invalidRequest", str(exc.detail), headers=headers)


#: What Graph answers for each injected fault (OneDrive's error codes).
_FAULTS = {"outage": (503, "serviceNotAvailable", "The service is temporarily unavailable."),
           "error": (500, "generalException", "An unspecified error has occurred."),
           "throttle": (429, "activityLimitReached", "The app or user has been throttled.")}


def _fault(kind: str, plan: FaultPlan) -> SimError:
    status, code, message = _FAULTS[kind]
    headers = {} if kind == "error" else {"Retry-After": str(plan.retry_after_s)}
    return GraphError(status, code, message, headers=headers)


#: Graph's ``{"error": {"code", "message", "innerError"}}`` on every answer that is not a success: refusals,
#: malformed requests, unknown routes and methods, and injected faults.
GRAPH_ERRORS = ErrorDialect(render=_render, invalid=_invalid, http_error=_http_error, fault=_fault)


def _bearer(config: SimulatorConfig, state: GraphState, tokens: TokenIssuer | None
            ) -> Callable[..., Awaitable[None]]:
    # A coroutine: checked on the event loop, not in a worker thread (each hop costs more than the check).
    async def check(request: Request) -> None:
        authorization = request.headers.get("authorization")  # read, not declared: see hot_read_routes
        if not authorization:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if tokens is not None:
            scheme, _, given = authorization.partition(" ")
            verdict = tokens.check(given.strip()) if scheme.lower() == "bearer" else "unknown"
            if verdict == "expired":
                raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
            if verdict == "unknown":
                raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        elif not bearer_matches(authorization, config.token):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        # The request's URL only without a route: building it costs more than the rest of the check.
        state.count_call(f"{request.method} {getattr(request.scope.get('route'), 'path', None) or request.url.path}")
    return check


def _loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    if not (host.startswith("127.") or host in {"::1", "testclient"}):
        raise GraphError(403, "accessDenied", "the simulator's admin endpoints answer loopback callers only")


def create_app(config: SimulatorConfig | None = None) -> FastAPI:
    """A fresh simulator: its own state, fault injector and notification thread (started with the app, or on
    first use)."""
    config = config or SimulatorConfig()
    notifier = Notifier(backoff_s=config.notify_backoff_s, max_backoff_s=config.notify_max_backoff_s,
                        horizon_s=config.notify_horizon_s, timeout_s=config.notify_timeout_s,
                        verify=config.notify_ca_file)
    site = Site.build(web_host=config.web_host, name=config.site, libraries=config.drives,
                      graph_ids=config.graph_ids, site_groups=config.site_groups)
    state = GraphState(site=site, groups=[Group.named(g, config.group_domain) for g in config.groups],
                       tenant_id=config.tenant_id, retention_labels=config.retention_labels,
                       columns=config.columns, notify=notifier.submit)
    faults = FaultInjector(config.faults)
    transfers = Transfers()
    tokens = TokenIssuer(lifetime_s=config.sign_in.token_lifetime_s) if config.sign_in else None
    admin = APIRouter()

    @admin.get("/tokens")
    def get_tokens() -> Json:
        return tokens.stats() if tokens else {"issued": {}, "live": {}, "refused": {}, "lifetime_s": None}

    @admin.post("/tokens/revoke")
    def revoke_tokens(client_id: str) -> Json:
        return {"revoked": tokens.revoke(client_id) if tokens else 0}

    @admin.get("/state")
    def get_state() -> Json:
        return {**state.snapshot(), "notifications": notifier.stats(),
                "faults": {"plan": faults.plan.to_json(), "injected": dict(faults.injected)},
                "transfers": transfers.view()}

    @admin.get("/requests")
    def get_requests() -> Json:
        return state.request_counts()

    @admin.post("/seed")
    async def seed_folders(request: Request) -> Json:
        return {"seeded": seed(state, await request.body())}

    guard = _bearer(config, state, tokens)
    reads = hot_reads(state, config)
    refusal = fault_answer(GRAPH_ERRORS)
    assert refusal is not None  # the dialect says how Graph answers an injected fault
    shortcuts = Shortcuts(routes=reads, guard=guard, faults=faults, refusal=refusal, render=GRAPH_ERRORS.render)
    api = APIRouter(prefix="/v1.0", dependencies=[Depends(guard)])
    api.include_router(batch_routes(shortcuts))
    api.include_router(hot_read_routes(reads))
    api.include_router(change_routes(state, config))  # before the drive routes' catch-all paths
    api.include_router(graph_transfer_routes(state, config, transfers))
    api.include_router(drive_routes(state, config))
    api.include_router(subscription_routes(state, config))
    api.include_router(site_routes(state))
    app = simulator_app("Microsoft Graph simulator (SharePoint subset)", api=api, admin=admin, dialect=GRAPH_ERRORS,
                        faults=faults, outbox=notifier,
                        resets=(state.reset, transfers.reset, *((tokens.reset,) if tokens else ())),
                        admin_dependencies=[Depends(_loopback)], docs=False)
    app.include_router(preauth_routes(state, transfers))
    app.state.graph = state
    app.state.tokens = tokens
    app.state.notifier = notifier
    return app


def run(host: str = "127.0.0.1", port: int = 8092, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator until interrupted (``hub simulate sharepoint``); bind loopback unless told."""
    serve(create_app(config), host=host, port=port, access_log=False)
