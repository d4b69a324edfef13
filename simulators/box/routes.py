"""Folders, groups and collaborations under ``/2.0``::

    GET    /2.0/folders/{id}                      a folder (``0``: the root), with its first items
    GET    /2.0/folders/{id}/items                offset paging (offset, limit) or marker paging (usemarker=true)
    POST   /2.0/folders                           create: 201; 409 item_name_in_use with context_info.conflicts
    DELETE /2.0/folders/{id}?recursive=           to the trash, with its items: 204; 400 folder_not_empty without
                                                  recursive=true; 412 precondition_failed for a stale If-Match
    GET    /2.0/folders/{id}/collaborations       marker paging (limit, marker)
    GET    /2.0/groups?filter_term=               groups whose name starts with the term (offset paging)
    POST   /2.0/collaborations                    a group as viewer or editor: 201; 400 user_already_collaborator
    PUT    /2.0/collaborations/{id}               a new role
    DELETE /2.0/collaborations/{id}               204
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from simulators.box.model import Json, bad_request
from simulators.box.state import BoxState

Role = Literal["editor", "viewer", "previewer", "uploader", "previewer uploader", "viewer uploader", "co-owner"]
_ORDER = [{"by": "type", "direction": "ASC"}, {"by": "name", "direction": "ASC"}]


class _Ref(BaseModel):
    id: str


class _NewFolder(BaseModel):
    name: str
    parent: _Ref


class _Target(BaseModel):
    type: Literal["file", "folder"]
    id: str


class _Grantee(BaseModel):
    type: Literal["user", "group"]
    id: str | None = None
    login: str | None = None


class _NewCollaboration(BaseModel):
    item: _Target
    accessible_by: _Grantee
    role: Role


class _RoleChange(BaseModel):
    role: Role


def page_by_marker(entries: list[Any], marker: str | None, limit: int) -> Json:
    """One page of ``entries`` by Box's marker paging: ``entries``, ``limit``, ``next_marker`` (null at the end)."""
    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise bad_request("Invalid marker") from None
    chunk = entries[start:start + limit]
    following = start + len(chunk)
    return {"entries": chunk, "limit": limit, "next_marker": str(following) if following < len(entries) else None,
            "prev_marker": str(max(0, start - limit)) if start else None}


def page_by_offset(entries: list[Any], offset: int, limit: int, *, order: bool = True) -> Json:
    """One page of ``entries`` by offset: ``total_count``, ``entries``, ``offset``, ``limit`` (and ``order``)."""
    if offset > 10_000:
        raise bad_request("Invalid offset: queries with offset above 10000 are rejected")
    page: Json = {"total_count": len(entries), "entries": entries[offset:offset + limit], "offset": offset,
                  "limit": limit}
    if order:
        page["order"] = _ORDER
    return page


def folder_routes(state: BoxState) -> APIRouter:
    """The folder, group and collaboration routes (mount under ``/2.0``)."""
    routes = APIRouter()
    default_limit = state.config.page_size

    @routes.get("/folders/{folder_id}")
    def get_folder(folder_id: str) -> Json:
        with state.lock:
            folder = state.item(folder_id, "folder")
            body = state.render(folder)
            kids = [k.mini() for k in state.children(folder_id)]
            body["item_collection"] = page_by_offset(kids, 0, 100)
            return body

    @routes.get("/folders/{folder_id}/items")
    def list_items(folder_id: str, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int | None, Query(ge=1, le=1000)] = None, usemarker: bool = False,
                   marker: str | None = None) -> Json:
        with state.lock:
            kids = [k.mini() for k in state.children(folder_id)]
        size = limit or default_limit
        if usemarker:
            return page_by_marker(kids, marker, size)
        return page_by_offset(kids, offset, size)

    @routes.post("/folders", status_code=201)
    def create_folder(body: _NewFolder) -> Json:
        with state.lock:
            return state.render(state.create_folder(body.parent.id, body.name))

    @routes.delete("/folders/{folder_id}", status_code=204)
    def trash_folder(folder_id: str, recursive: bool = False,
                     if_match: Annotated[str | None, Header()] = None) -> Response:
        state.trash_folder(folder_id, recursive=recursive, etag=if_match)
        return Response(status_code=204)

    @routes.get("/folders/{folder_id}/collaborations")
    def folder_collaborations(folder_id: str, limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
                              marker: str | None = None) -> Json:
        with state.lock:
            state.item(folder_id, "folder")
            found = [c for c in state.collaborations.values() if c["item"]["id"] == folder_id]
        return page_by_marker(found, marker, limit or default_limit)

    @routes.get("/groups")
    def list_groups(filter_term: str | None = None, offset: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int | None, Query(ge=1, le=1000)] = None) -> Json:
        with state.lock:
            groups = sorted(state.groups.values(), key=lambda g: str(g["name"]).casefold())
        if filter_term:
            groups = [g for g in groups if str(g["name"]).casefold().startswith(filter_term.casefold())]
        return page_by_offset(groups, offset, limit or default_limit, order=False)

    @routes.post("/collaborations", status_code=201)
    def add_collaboration(body: _NewCollaboration) -> Json:
        return state.add_collaboration(body.item.type, body.item.id, body.accessible_by.model_dump(), body.role)

    @routes.get("/collaborations/{collaboration_id}")
    def get_collaboration(collaboration_id: str) -> Json:
        with state.lock:
            return state.collaboration(collaboration_id)

    @routes.put("/collaborations/{collaboration_id}")
    def change_collaboration(collaboration_id: str, body: _RoleChange) -> Json:
        return state.update_collaboration(collaboration_id, body.role)

    @routes.delete("/collaborations/{collaboration_id}", status_code=204)
    def remove_collaboration(collaboration_id: str) -> Response:
        state.remove_collaboration(collaboration_id)
        return Response(status_code=204)

    return routes

