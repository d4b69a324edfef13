"""The Graph simulator's ``/v1.0`` routes: drives and driveItems (folders, files, permissions, retention
labels, list-item fields) and subscriptions (``delta`` and ``listItem``: :mod:`simulators.sharepoint.changes`).
Every route is a thin translation onto :class:`~simulators.sharepoint.state.GraphState`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from simulators.sharepoint.batch import Handler, Shortcut
from simulators.sharepoint.config import SimulatorConfig
from simulators.sharepoint.model import GraphError, Json, Subscription, iso
from simulators.sharepoint.notify import validate_endpoint
from simulators.sharepoint.query import ItemQuery, render
from simulators.sharepoint.state import GraphState

# Module level: FastAPI resolves the (string) annotations of the routes in this module's globals.
TopQuery = Annotated[int | None, Query(alias="$top", ge=1, le=1000)]
SkipQuery = Annotated[str | None, Query(alias="$skiptoken")]
BehaviorQuery = Annotated[str | None, Query(alias="@microsoft.graph.conflictBehavior")]
SelectQuery = Annotated[str | None, Query(alias="$select")]
ExpandQuery = Annotated[str | None, Query(alias="$expand")]
OrderQuery = Annotated[str | None, Query(alias="$orderby")]


def _top(value: str | None) -> int | None:
    """``$top``: a whole number from 1 to 1,000 (the answer to anything else is the one a declared query gets)."""
    if value is None:
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 1000:
        raise GraphError(400, "invalidRequest", "Invalid request: query.$top.")
    return int(value)


def _children(state: GraphState, config: SimulatorConfig, request: Request, drive_id: str, item_id: str,
              top: int | None, skip_token: str | None, query: ItemQuery) -> Json:
    """One page of an item's children as Graph answers it (``@odata.nextLink`` while more are left)."""
    if skip_token is not None and not skip_token.isdigit():
        raise GraphError(400, "invalidRequest", "invalid $skiptoken")
    skip, size = int(skip_token or 0), top or config.page_size
    page, more = state.children_page(drive_id, item_id, skip=skip, top=size, descending=query.descending)
    body: Json = {"value": [render(state, item, query, site=config.site) for item in page]}
    if more:
        body["@odata.nextLink"] = str(request.url.include_query_params(**{"$skiptoken": str(skip + size)}))
    return body


def hot_reads(state: GraphState, config: SimulatorConfig) -> tuple[Shortcut, ...]:
    """The reads a reconciliation makes by the hundred thousand (a folder's children, an item's permissions): the
    routes :func:`hot_read_routes` serves and the shortcuts a ``$batch`` answers them by."""

    def list_children(request: Request, params: dict[str, str]) -> Json:
        # The query options read here rather than declared: FastAPI's parameter machinery costs more than the read.
        query_params = request.query_params
        query = ItemQuery.parse(select=query_params.get("$select"), expand=query_params.get("$expand"),
                                orderby=query_params.get("$orderby"))
        return _children(state, config, request, params["drive_id"], params.get("item_id", "root"),
                         _top(query_params.get("$top")), query_params.get("$skiptoken"), query)

    def list_permissions(_: Request, params: dict[str, str]) -> Json:
        return {"value": state.permissions(params["drive_id"], params["item_id"])}

    return (Shortcut("/drives/{drive_id}/root/children", list_children),
            Shortcut("/drives/{drive_id}/items/{item_id}/children", list_children),
            Shortcut("/drives/{drive_id}/items/{item_id}/permissions", list_permissions))


def hot_read_routes(reads: tuple[Shortcut, ...]) -> APIRouter:
    """The hot reads' routes (mount under ``/v1.0``), before every other route: a request is matched against the
    routes in order, and these would otherwise be tried after fifty others."""
    router = APIRouter()
    for read in reads:
        router.add_api_route(read.path, _endpoint(read.handler), methods=["GET"])
    return router


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Json]]:
    async def read(request: Request) -> Json:
        return handler(request, request.path_params)
    return read


def drive_routes(state: GraphState, config: SimulatorConfig) -> APIRouter:
    """Drives and their items: reads, folders, uploads, delete, permissions, labels and fields.

    The reads are coroutines: they only look at the state in memory (its lock is held for microseconds), so they
    run on the event loop rather than hop to a worker thread, which costs more than the read itself (a batch of
    20 reads makes 20 hops)."""
    router = APIRouter()

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

    def upload(request: Request, body: bytes, drive_id: str, parent_id: str, path: str,
               behavior: str | None) -> JSONResponse:
        item, new = state.upload(drive_id, parent_id, path, body, request.headers.get("content-type"),
                                 str(behavior or "replace"))
        return JSONResponse(state.to_json(item), status_code=201 if new else 200)

    @router.get("/drives/{drive_id}")
    async def get_drive(drive_id: str) -> Json:
        root = state.item(drive_id, "root")
        return {"id": drive_id, "name": state.drive_name(drive_id), "driveType": "documentLibrary",
                "webUrl": state.web_url(drive_id, ""), "createdDateTime": iso(root.created)}

    @router.get("/drives/{drive_id}/root")
    async def get_root(drive_id: str) -> Json:
        return state.to_json(state.item(drive_id, "root"))

    @router.get("/drives/{drive_id}/root:/{path:path}", response_model=None)
    async def get_by_path(request: Request, drive_id: str, path: str, top: TopQuery = None,
                    skip_token: SkipQuery = None, select: SelectQuery = None, expand: ExpandQuery = None,
                    orderby: OrderQuery = None) -> Json | Response:
        item_path, action = split_path(path)
        item = state.by_path(drive_id, item_path)
        if action is None:
            return render(state, item, ItemQuery.parse(select=select, expand=expand), site=config.site)
        if action == "children":
            query = ItemQuery.parse(select=select, expand=expand, orderby=orderby)
            return _children(state, config, request, drive_id, item.id, top, skip_token, query)
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
    async def get_item(drive_id: str, item_id: str, select: SelectQuery = None, expand: ExpandQuery = None) -> Json:
        query = ItemQuery.parse(select=select, expand=expand)
        return render(state, state.item(drive_id, item_id), query, site=config.site)

    @router.post("/drives/{drive_id}/root/children")
    @router.post("/drives/{drive_id}/items/{item_id}/children")
    def create_child(drive_id: str, body: Annotated[Json, Body()], item_id: str = "root",
                     behavior: BehaviorQuery = None) -> JSONResponse:
        return create(drive_id, item_id, body, behavior)

    @router.post("/drives/{drive_id}/items/{item_id}/invite")
    def invite(drive_id: str, item_id: str, body: Annotated[Json, Body()]) -> Json:
        return {"value": [p.to_json() for p in state.invite(drive_id, item_id, body)]}

    @router.get("/drives/{drive_id}/items/{item_id}/permissions/{permission_id}")
    async def get_permission(drive_id: str, item_id: str, permission_id: str) -> Json:
        return state.permission(drive_id, item_id, permission_id)

    @router.delete("/drives/{drive_id}/items/{item_id}/permissions/{permission_id}", status_code=204)
    def delete_permission(drive_id: str, item_id: str, permission_id: str) -> Response:
        state.delete_permission(drive_id, item_id, permission_id)
        return Response(status_code=204)

    @router.get("/drives/{drive_id}/items/{item_id}/retentionLabel")
    async def get_label(drive_id: str, item_id: str) -> Json:
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
    async def get_fields(drive_id: str, item_id: str) -> Json:
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


def _https_or_excepted(url: str, config: SimulatorConfig) -> bool:
    """Whether ``url`` is an absolute https URL (or plain http to a host the test exception names)."""
    parsed = urlsplit(url)
    if not parsed.hostname:
        return False
    return parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in config.http_notification_hosts)


def subscription_routes(state: GraphState, config: SimulatorConfig) -> APIRouter:
    """Change-notification subscriptions: created after the endpoint's validation handshake, renewed, deleted."""
    router = APIRouter()

    @router.post("/subscriptions")
    def create_subscription(body: Annotated[Json, Body()]) -> JSONResponse:
        change_type, url, resource = body.get("changeType"), body.get("notificationUrl"), body.get("resource")
        client_state = body.get("clientState")
        if change_type != "updated":
            raise GraphError(400, "InvalidRequest", "driveItem subscriptions support changeType 'updated' only")
        if not isinstance(url, str) or not _https_or_excepted(url, config):
            raise GraphError(400, "InvalidRequest", "The notificationUrl must be an absolute https URL.")
        if not isinstance(resource, str):
            raise GraphError(400, "InvalidRequest", "resource is required")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 128 characters")
        expiration = _expiration(body.get("expirationDateTime"), config)
        drive_id, item_id = state.subscription_target(resource)
        failure = validate_endpoint(url, timeout_s=config.validation_timeout_s, verify=config.notify_ca_file)
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
