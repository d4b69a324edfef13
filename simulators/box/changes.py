"""The event stream and webhooks V2, under ``/2.0``::

    GET    /2.0/events?stream_type=&stream_position=&limit=   ``changes`` (also ``all``, ``sync``) or
           ``admin_logs_streaming`` (also ``admin_logs``); ``now``: none and the head; ``0``: from the start.
           ``next_stream_position`` is a number for user streams and a string for the enterprise's, as in Box.
    POST   /2.0/webhooks        {target: {type, id}, address, triggers}: 201; 409 conflict for the same target
                                and address; 400 for an address that is not https (test hosts excepted)
    GET    /2.0/webhooks        marker paging (limit, marker)
    GET|DELETE /2.0/webhooks/{id}
    PUT    /2.0/webhooks/{id}   {target?, address?, triggers?}: the webhook with what is given replaced
"""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from simulators.box.model import BoxError, Json, bad_request, not_found
from simulators.box.routes import page_by_marker
from simulators.box.state import BoxState, Webhook

_STREAMS = {"all", "changes", "sync", "admin_logs", "admin_logs_streaming"}
#: The V2 triggers this simulator fires.
TRIGGERS = frozenset({"FILE.UPLOADED", "FILE.TRASHED", "FOLDER.CREATED", "FOLDER.TRASHED",
                      "METADATA_INSTANCE.CREATED",
                      "METADATA_INSTANCE.UPDATED", "COLLABORATION.CREATED", "COLLABORATION.UPDATED",
                      "COLLABORATION.REMOVED"})


class _Target(BaseModel):
    type: Literal["file", "folder"]
    id: str


class _NewWebhook(BaseModel):
    target: _Target
    address: str
    triggers: list[str]


class _WebhookUpdate(BaseModel):
    target: _Target | None = None
    address: str | None = None
    triggers: list[str] | None = None


def change_routes(state: BoxState) -> APIRouter:
    """The events and webhooks routes (mount under ``/2.0``)."""
    routes = APIRouter()
    config = state.config

    @routes.get("/events")
    def events(stream_type: str = "all", stream_position: str | None = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Json:
        if stream_type not in _STREAMS:
            raise bad_request("Invalid stream_type")
        chunk, following = state.stream(stream_position, limit)
        position: int | str = str(following) if stream_type.startswith("admin_logs") else following
        return {"chunk_size": len(chunk), "next_stream_position": position,
                "entries": [event.to_json(stream_type) for event in chunk]}

    def check(address: str, triggers: list[str]) -> None:
        url = httpx.URL(address)
        if url.scheme != "https" and not (url.scheme == "http" and url.host in config.http_webhook_hosts):
            raise bad_request("The address must be an https URL", address=address)
        unknown = sorted(set(triggers) - TRIGGERS)
        if not triggers or unknown:
            raise bad_request(f"Invalid triggers: {', '.join(unknown) or 'none given'}")

    @routes.post("/webhooks", status_code=201)
    def create_webhook(body: _NewWebhook) -> Json:
        check(body.address, body.triggers)
        with state.lock:
            state.item(body.target.id, body.target.type)
            if any(w.target_id == body.target.id and w.address == body.address for w in state.webhooks.values()):
                raise BoxError(409, "conflict", "Webhook:... already exists on the specified target")
            hook = Webhook(state.ids.next("webhook"), body.target.type, body.target.id, body.address,
                           list(dict.fromkeys(body.triggers)), state.account)
            state.webhooks[hook.id] = hook
            return hook.to_json()

    @routes.get("/webhooks")
    def list_webhooks(limit: Annotated[int | None, Query(ge=1, le=1000)] = None, marker: str | None = None) -> Json:
        with state.lock:
            hooks = [{k: v for k, v in w.to_json().items() if k in {"type", "id", "target"}}
                     for w in state.webhooks.values()]
        return page_by_marker(hooks, marker, limit or config.page_size)

    @routes.get("/webhooks/{webhook_id}")
    def get_webhook(webhook_id: str) -> Json:
        with state.lock:
            hook = state.webhooks.get(webhook_id)
        if hook is None:
            raise not_found()
        return hook.to_json()

    @routes.put("/webhooks/{webhook_id}")
    def update_webhook(webhook_id: str, body: _WebhookUpdate) -> Json:
        with state.lock:
            hook = state.webhooks.get(webhook_id)
            if hook is None:
                raise not_found()
            address, triggers = body.address or hook.address, body.triggers or hook.triggers
            check(address, triggers)
            if body.target is not None:
                state.item(body.target.id, body.target.type)
                hook.target_type, hook.target_id = body.target.type, body.target.id
            hook.address, hook.triggers = address, list(dict.fromkeys(triggers))
            return hook.to_json()

    @routes.delete("/webhooks/{webhook_id}", status_code=204)
    def delete_webhook(webhook_id: str) -> Response:
        with state.lock:
            if state.webhooks.pop(webhook_id, None) is None:
                raise not_found()
        return Response(status_code=204)

    return routes
