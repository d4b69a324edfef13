"""A Microsoft Graph stand-in speaking the SharePoint subset the hub uses, under ``/v1.0``, over real HTTP.

It stands for another company's system, so it imports nothing of the hub's runtime. The subset::

    GET    /v1.0/drives/{drive-id}                                   the drive
    GET    /v1.0/drives/{drive-id}/root | /items/{item-id}           a driveItem (``root`` is an alias)
    GET    /v1.0/drives/{drive-id}/root:/{path}                      a driveItem by path (404 itemNotFound)
    GET    /v1.0/drives/{drive-id}/items/{item-id}/children          paged: $top, @odata.nextLink
    POST   /v1.0/drives/{drive-id}/items/{parent-id}/children        create a folder (also root:/{path}:/children)
    PUT    /v1.0/drives/{drive-id}/items/{parent-id}:/{name}:/content   upload a file: 201 new, 200 replaced
    PUT    /v1.0/drives/{drive-id}/root:/{folder-path}/{name}:/content  the same by path (folders must exist)
    PUT    /v1.0/drives/{drive-id}/items/{item-id}/content           new content for an existing file
    GET    /v1.0/drives/{drive-id}/items/{item-id}/content           a file's bytes (also root:/{path}:/content)
    DELETE /v1.0/drives/{drive-id}/items/{item-id}                   delete an item (a folder with its subtree)
    GET    /v1.0/drives/{drive-id}/root/delta                        changes: token, $top, nextLink, deltaLink
    POST   /v1.0/drives/{drive-id}/items/{item-id}/invite            grant a known group read or write
    GET    /v1.0/drives/{drive-id}/items/{item-id}/permissions[/{perm-id}]   (and DELETE one)
    GET|PATCH|DELETE /v1.0/drives/{drive-id}/items/{item-id}/retentionLabel
    GET|PATCH /v1.0/drives/{drive-id}/items/{item-id}/listItem/fields
    POST   /v1.0/subscriptions (validationToken handshake first); GET, PATCH, DELETE /v1.0/subscriptions/{id}

Every ``/v1.0`` call needs ``Authorization: Bearer <token>`` (else 401 ``InvalidAuthenticationToken``);
errors are Graph's ``{"error": {"code", "message", "innerError"}}``. There is no ``Idempotency-Key``:
creating an existing folder with ``conflictBehavior`` ``fail`` (the default here) answers 409
``nameAlreadyExists``; a content PUT replaces an existing file of that name (``conflictBehavior``
``fail`` and ``rename`` are honoured too). ``delta`` pages by ``$top`` (or ``top``, default
``page_size``) with an ``@odata.nextLink`` carrying a ``$skiptoken``; the last page has an
``@odata.deltaLink`` carrying ``token``; ``token=latest`` answers no items and the current
position; a token the simulator did not issue in its current epoch is 410 ``resyncRequired`` with
a ``Location`` that starts over. Downloads answer the bytes directly (Graph answers 302 to a
pre-authenticated URL). Faults come from :mod:`connectors.faults` (``PUT /_sim/faults``). Admin
endpoints, loopback only and without token: ``GET /_sim/state``, ``GET /_sim/requests``,
``POST /_sim/reset``.
"""

from __future__ import annotations

import hmac
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from connectors.faults import FaultInjector, FaultMiddleware, FaultPlan
from connectors.sharepoint.simulator_model import GraphError, Group, Json, Subscription, iso
from connectors.sharepoint.simulator_notify import Notifier, validate_endpoint
from connectors.sharepoint.simulator_state import GraphState

__all__ = ["DEFAULT_GROUPS", "SimulatorConfig", "create_app", "run"]

#: The simulated directory's security groups: every practice in every region, plus back-office owners.
DEFAULT_GROUPS: tuple[str, ...] = (
    *(f"{practice}-{region}" for practice, region in itertools.product(
        ("Strategy", "Legal", "Engineering", "ManagedServices"), ("EU", "NA", "ME", "APAC"))),
    "Finance", "PMO", "Records-Management", "Platform-Team",
)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator knows at start: token, drives, directory, faults and delivery knobs."""

    token: str = "graph-sim-token"  # noqa: S105 - the simulator's well-known default, as in the hub's settings
    drives: tuple[str, ...] = ("workspaces",)
    groups: tuple[str, ...] = DEFAULT_GROUPS
    faults: FaultPlan = field(default_factory=FaultPlan)
    web_host: str = "https://sim.sharepoint.example"
    site: str = "hub"
    group_domain: str = "sim.sharepoint.example"
    tenant_id: str = "6f9c2e1a-0b7d-4c55-9a3e-5d2b8f1e7c40"
    page_size: int = 200
    #: Known retention labels; ``None`` accepts any name.
    retention_labels: frozenset[str] | None = None
    validation_timeout_s: float = 10.0
    notify_attempts: int = 5
    notify_backoff_s: float = 0.2
    notify_timeout_s: float = 3.0
    max_subscription_minutes: int = 42_300


def _error_body(status: int, code: str, message: str, *, inner_code: str | None = None,
                headers: dict[str, str] | None = None) -> JSONResponse:
    inner: Json = {"date": iso(datetime.now(UTC)), "request-id": str(uuid.uuid4()),
                   "client-request-id": str(uuid.uuid4())}
    if inner_code:
        inner = {"code": inner_code, **inner}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm=""'
    return JSONResponse({"error": {"code": code, "message": message, "innerError": inner}}, status_code=status,
                        headers=headers or None)


async def _graph_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GraphError)
    return _error_body(exc.status, exc.code, exc.message, inner_code=exc.inner_code, headers=exc.headers)


async def _invalid_request(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _error_body(400, "invalidRequest", f"the request is malformed: {exc.errors()[:3]}")


def _bearer(config: SimulatorConfig, state: GraphState) -> Callable[..., None]:
    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        if not authorization:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.token.encode()):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        route = request.scope.get("route")
        state.count_call(f"{request.method} {getattr(route, 'path', request.url.path)}")
    return check


def _loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    if not (host.startswith("127.") or host in {"::1", "testclient"}):
        raise GraphError(403, "accessDenied", "the simulator's admin endpoints answer loopback callers only")


# Module level: FastAPI resolves the (string) annotations of the routes in this module's globals.
TopQuery = Annotated[int | None, Query(alias="$top", ge=1, le=1000)]
PlainTopQuery = Annotated[int | None, Query(alias="top", ge=1, le=1000)]
TokenQuery = Annotated[str | None, Query(alias="token")]
SkipQuery = Annotated[str | None, Query(alias="$skiptoken")]
BehaviorQuery = Annotated[str | None, Query(alias="@microsoft.graph.conflictBehavior")]


def _drive_routes(state: GraphState, config: SimulatorConfig) -> APIRouter:
    router = APIRouter()

    def children(request: Request, drive_id: str, item_id: str, top: int | None, skip_token: str | None) -> Json:
        if skip_token is not None and not skip_token.isdigit():
            raise GraphError(400, "invalidRequest", "invalid $skiptoken")
        skip, size = int(skip_token or 0), top or config.page_size
        page, more = state.children_page(drive_id, item_id, skip=skip, top=size)
        body: Json = {"value": page}
        if more:
            body["@odata.nextLink"] = str(request.url.include_query_params(**{"$skiptoken": str(skip + size)}))
        return body

    def create(drive_id: str, parent_id: str, body: Json, behavior: str | None) -> JSONResponse:
        if not isinstance(body.get("folder"), dict):
            raise GraphError(400, "invalidRequest", "only folders (a 'folder' facet) can be created here")
        chosen = behavior or body.get("@microsoft.graph.conflictBehavior") or "fail"
        item, new = state.create_folder(drive_id, parent_id, body.get("name"), str(chosen))
        return JSONResponse(state.to_json(item), status_code=201 if new else 200)

    def split_path(path: str) -> tuple[str, str | None]:
        """``a/b`` -> (a/b, None); ``a/b:`` -> (a/b, None); ``a/b:/children`` -> (a/b, children)."""
        head, sep, tail = path.partition(":")
        return head, (tail.strip("/") or None) if sep else None

    def content(drive_id: str, item_id: str) -> Response:
        data, media_type = state.content_of(drive_id, item_id)
        return Response(content=data, headers={"Content-Type": media_type})

    def upload(request: Request, body: bytes, drive_id: str, parent_id: str, path: str,
               behavior: str | None) -> JSONResponse:
        item, new = state.upload(drive_id, parent_id, path, body, request.headers.get("content-type"),
                                 str(behavior or "replace"))
        return JSONResponse(state.to_json(item), status_code=201 if new else 200)

    @router.get("/drives/{drive_id}")
    def get_drive(drive_id: str) -> Json:
        root = state.item(drive_id, "root")
        return {"id": drive_id, "name": drive_id, "driveType": "documentLibrary",
                "webUrl": state.web_url(drive_id, ""), "createdDateTime": iso(root.created)}

    @router.get("/drives/{drive_id}/root")
    def get_root(drive_id: str) -> Json:
        return state.to_json(state.item(drive_id, "root"))

    @router.get("/drives/{drive_id}/root/delta")
    def delta(request: Request, drive_id: str, token: TokenQuery = None, top: TopQuery = None,
              plain_top: PlainTopQuery = None, skip_token: SkipQuery = None) -> Json:
        base = request.url.remove_query_params(["token", "$skiptoken"])
        try:
            values, next_skip, delta_token = state.delta_page(drive_id, token=token, skip_token=skip_token,
                                                              top=top or plain_top or config.page_size)
        except GraphError as exc:
            if exc.status == 410:  # as Graph: where a fresh enumeration starts
                exc.headers["Location"] = str(base)
            raise
        if next_skip is not None:
            return {"value": values, "@odata.nextLink": str(base.include_query_params(**{"$skiptoken": next_skip}))}
        return {"value": values, "@odata.deltaLink": str(base.include_query_params(token=delta_token))}

    @router.get("/drives/{drive_id}/root:/{path:path}", response_model=None)
    def get_by_path(request: Request, drive_id: str, path: str, top: TopQuery = None,
                    skip_token: SkipQuery = None) -> Json | Response:
        item_path, action = split_path(path)
        item = state.by_path(drive_id, item_path)
        if action is None:
            return state.to_json(item)
        if action == "children":
            return children(request, drive_id, item.id, top, skip_token)
        if action == "content":
            return content(drive_id, item.id)
        raise GraphError(400, "invalidRequest", f"unsupported path action {action!r}")

    @router.put("/drives/{drive_id}/root:/{path:path}")
    async def upload_by_path(request: Request, drive_id: str, path: str,
                             behavior: BehaviorQuery = None) -> JSONResponse:
        item_path, action = split_path(path)
        if action != "content":
            raise GraphError(400, "invalidRequest", "PUT to a path needs ':/content'")
        return upload(request, await request.body(), drive_id, "root", item_path, behavior)

    @router.put("/drives/{drive_id}/items/{reference:path}")
    async def upload_below_item(request: Request, drive_id: str, reference: str,
                                behavior: BehaviorQuery = None) -> JSONResponse:
        body = await request.body()
        parent_id, sep, below = reference.partition(":")
        if sep:  # {parent-id}:/{name}:/content
            item_path, action = split_path(below)
            if action != "content":
                raise GraphError(400, "invalidRequest", "PUT below an item needs ':/{name}:/content'")
            return upload(request, body, drive_id, parent_id, item_path, behavior)
        item_id, _, action = reference.partition("/")
        if action != "content":
            raise GraphError(400, "invalidRequest", "PUT to an item needs '/content'")
        item = state.replace_content(drive_id, item_id, body, request.headers.get("content-type"))
        return JSONResponse(state.to_json(item))

    @router.get("/drives/{drive_id}/items/{item_id}/content")
    def download(drive_id: str, item_id: str) -> Response:
        return content(drive_id, item_id)

    @router.delete("/drives/{drive_id}/items/{item_id}", status_code=204)
    def delete_item(drive_id: str, item_id: str) -> Response:
        state.delete(drive_id, item_id)
        return Response(status_code=204)

    @router.post("/drives/{drive_id}/root:/{path:path}")
    def create_by_path(drive_id: str, path: str, body: Annotated[Json, Body()],
                       behavior: BehaviorQuery = None) -> JSONResponse:
        item_path, action = split_path(path)
        if action != "children":
            raise GraphError(400, "invalidRequest", "POST to a path needs ':/children'")
        return create(drive_id, state.by_path(drive_id, item_path).id, body, behavior)

    @router.get("/drives/{drive_id}/items/{item_id}")
    def get_item(drive_id: str, item_id: str) -> Json:
        return state.to_json(state.item(drive_id, item_id))

    @router.get("/drives/{drive_id}/root/children")
    @router.get("/drives/{drive_id}/items/{item_id}/children")
    def list_children(request: Request, drive_id: str, item_id: str = "root", top: TopQuery = None,
                      skip_token: SkipQuery = None) -> Json:
        return children(request, drive_id, item_id, top, skip_token)

    @router.post("/drives/{drive_id}/root/children")
    @router.post("/drives/{drive_id}/items/{item_id}/children")
    def create_child(drive_id: str, body: Annotated[Json, Body()], item_id: str = "root",
                     behavior: BehaviorQuery = None) -> JSONResponse:
        return create(drive_id, item_id, body, behavior)

    @router.post("/drives/{drive_id}/items/{item_id}/invite")
    def invite(drive_id: str, item_id: str, body: Annotated[Json, Body()]) -> Json:
        return {"value": [p.to_json() for p in state.invite(drive_id, item_id, body)]}

    @router.get("/drives/{drive_id}/items/{item_id}/permissions")
    def list_permissions(drive_id: str, item_id: str) -> Json:
        return {"value": [p.to_json() for p in state.permissions(drive_id, item_id)]}

    @router.get("/drives/{drive_id}/items/{item_id}/permissions/{permission_id}")
    def get_permission(drive_id: str, item_id: str, permission_id: str) -> Json:
        return state.permission(drive_id, item_id, permission_id).to_json()

    @router.delete("/drives/{drive_id}/items/{item_id}/permissions/{permission_id}", status_code=204)
    def delete_permission(drive_id: str, item_id: str, permission_id: str) -> Response:
        state.delete_permission(drive_id, item_id, permission_id)
        return Response(status_code=204)

    @router.get("/drives/{drive_id}/items/{item_id}/retentionLabel")
    def get_label(drive_id: str, item_id: str) -> Json:
        return state.label(drive_id, item_id)

    @router.patch("/drives/{drive_id}/items/{item_id}/retentionLabel")
    def set_label(drive_id: str, item_id: str, body: Annotated[Json, Body()]) -> JSONResponse:
        label, first = state.set_label(drive_id, item_id, body.get("name"))
        return JSONResponse(label, status_code=201 if first else 200)

    @router.delete("/drives/{drive_id}/items/{item_id}/retentionLabel", status_code=204)
    def remove_label(drive_id: str, item_id: str) -> Response:
        state.remove_label(drive_id, item_id)
        return Response(status_code=204)

    @router.get("/drives/{drive_id}/items/{item_id}/listItem/fields")
    def get_fields(drive_id: str, item_id: str) -> Json:
        return state.fields_of(drive_id, item_id)

    @router.patch("/drives/{drive_id}/items/{item_id}/listItem/fields")
    def patch_fields(drive_id: str, item_id: str, body: Annotated[Json, Body()]) -> Json:
        return state.patch_fields(drive_id, item_id, body)

    return router


def _expiration(value: Any, config: SimulatorConfig) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise GraphError(400, "InvalidRequest", "expirationDateTime is not a valid timestamp") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    instant = datetime.now(UTC)
    if when <= instant or when > instant + timedelta(minutes=config.max_subscription_minutes):
        raise GraphError(400, "InvalidRequest", "expirationDateTime is in the past or beyond the maximum "
                         f"of {config.max_subscription_minutes} minutes")
    return when


def _subscription_routes(state: GraphState, config: SimulatorConfig) -> APIRouter:
    router = APIRouter()

    @router.post("/subscriptions")
    def create_subscription(body: Annotated[Json, Body()]) -> JSONResponse:
        change_type, url, resource = body.get("changeType"), body.get("notificationUrl"), body.get("resource")
        client_state = body.get("clientState")
        if change_type != "updated":
            raise GraphError(400, "InvalidRequest", "driveItem subscriptions support changeType 'updated' only")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise GraphError(400, "InvalidRequest", "notificationUrl must be an absolute http(s) URL")
        if not isinstance(resource, str):
            raise GraphError(400, "InvalidRequest", "resource is required")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 128 characters")
        expiration = _expiration(body.get("expirationDateTime"), config)
        drive_id, item_id = state.subscription_target(resource)
        failure = validate_endpoint(url, timeout_s=config.validation_timeout_s)
        if failure is not None:
            raise GraphError(400, "ValidationError", f"Subscription validation request failed: {failure}.")
        subscription = Subscription(id=str(uuid.uuid4()), resource=resource, drive_id=drive_id, item_id=item_id,
                                    change_type=change_type, notification_url=url, client_state=client_state,
                                    expiration=expiration)
        state.add_subscription(subscription)
        return JSONResponse(subscription.to_json(), status_code=201)

    @router.get("/subscriptions")
    def list_subscriptions() -> Json:
        return {"value": [s.to_json() for s in state.list_subscriptions()]}

    @router.get("/subscriptions/{subscription_id}")
    def get_subscription(subscription_id: str) -> Json:
        return state.subscription(subscription_id).to_json()

    @router.patch("/subscriptions/{subscription_id}")
    def renew_subscription(subscription_id: str, body: Annotated[Json, Body()]) -> Json:
        expiration = _expiration(body.get("expirationDateTime"), config)
        return state.renew_subscription(subscription_id, expiration).to_json()

    @router.delete("/subscriptions/{subscription_id}", status_code=204)
    def delete_subscription(subscription_id: str) -> Response:
        state.delete_subscription(subscription_id)
        return Response(status_code=204)

    return router


def _admin_routes(state: GraphState, notifier: Notifier, faults: FaultInjector, config: SimulatorConfig
                  ) -> APIRouter:
    router = APIRouter(prefix="/_sim", dependencies=[Depends(_loopback)])

    @router.get("/state")
    def get_state() -> Json:
        return {**state.snapshot(), "notifications": notifier.stats(),
                "faults": {"plan": faults.plan.to_json(), "injected": dict(faults.injected)}}

    @router.get("/requests")
    def get_requests() -> Json:
        return state.request_counts()

    @router.post("/reset")
    def reset() -> Json:
        state.reset()
        notifier.clear()
        faults.set(config.faults)
        return {"reset": True}

    return router


def create_app(config: SimulatorConfig | None = None) -> FastAPI:
    """A fresh simulator: its own state, fault injector and notification thread (started on first use)."""
    config = config or SimulatorConfig()
    notifier = Notifier(attempts=config.notify_attempts, backoff_s=config.notify_backoff_s,
                        timeout_s=config.notify_timeout_s)
    state = GraphState(drives=config.drives, groups=[Group.named(g, config.group_domain) for g in config.groups],
                       web_base=f"{config.web_host.rstrip('/')}/sites/{config.site}", tenant_id=config.tenant_id,
                       retention_labels=config.retention_labels, notify=notifier.submit)
    faults = FaultInjector(config.faults)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        notifier.stop()

    app = FastAPI(title="Microsoft Graph simulator (SharePoint subset)", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.graph = state
    app.state.faults = faults
    app.state.notifier = notifier
    app.add_middleware(FaultMiddleware, injector=faults)
    app.add_exception_handler(GraphError, _graph_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    authorised = [Depends(_bearer(config, state))]
    app.include_router(_drive_routes(state, config), prefix="/v1.0", dependencies=authorised)
    app.include_router(_subscription_routes(state, config), prefix="/v1.0", dependencies=authorised)
    app.include_router(_admin_routes(state, notifier, faults, config))
    return app


def run(host: str = "127.0.0.1", port: int = 8092, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator until interrupted (``hub simulate sharepoint``); bind loopback unless told."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)
