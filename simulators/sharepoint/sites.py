"""The Graph simulator's routes for finding things by name: the site by host name and path, its document
libraries (drives) and their lists' columns, the directory's groups by display name, and the tenant's
published retention labels. Thin translations onto :class:`~simulators.sharepoint.state.GraphState`.

As Graph: ``/sites/{hostname}:/{path}`` and ``/sites/{site-id}`` (``host,collection-guid,web-guid``) name the
same site, and the host-path form may go on (``/sites/{hostname}:/{path}:/drives``); an unknown site is 404
``itemNotFound``. ``/groups`` takes ``$filter`` with ``eq`` on ``displayName``, ``mail`` or ``id`` (string
literals in single quotes, a quote inside doubled: ``'O''Brien'``; comparisons ignore case, as Entra ID's);
another property is 400 ``Request_UnsupportedQuery``, a clause that does not parse 400 ``BadRequest``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from simulators.sharepoint.model import GraphError, Group, Json, Library, iso
from simulators.sharepoint.state import GraphState

FilterQuery = Annotated[str | None, Query(alias="$filter")]
GroupTopQuery = Annotated[int | None, Query(alias="$top", ge=1, le=999)]
SkipQuery = Annotated[str | None, Query(alias="$skiptoken")]

_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$")
_ANY_EQ = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le|in|startswith)\b", re.IGNORECASE)
_GROUP_FILTERS = {"displayname": "displayName", "mail": "mail", "id": "id"}


def group_json(group: Group) -> Json:
    """The Graph ``group`` resource of a security group."""
    return {"id": group.id, "displayName": group.name, "mail": group.email, "mailEnabled": False,
            "mailNickname": group.name.casefold(), "securityEnabled": True, "groupTypes": [],
            "description": None, "visibility": None}


def _matching(groups: list[Group], clause: str) -> list[Group]:
    """The groups a ``$filter`` clause selects, or Graph's 400 for a clause it does not support."""
    match = _CLAUSE.match(clause)
    if match is None:
        other = _ANY_EQ.match(clause)
        if other is not None and other.group(1).casefold() not in _GROUP_FILTERS:
            raise GraphError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause "
                             f"specified for property '{other.group(1)}' of resource 'Group'.")
        raise GraphError(400, "BadRequest", f"Invalid filter clause: syntax error in '{clause}'.")
    field = _GROUP_FILTERS.get(match.group(1).casefold())
    if field is None:
        raise GraphError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified "
                         f"for property '{match.group(1)}' of resource 'Group'.")
    wanted = match.group(2).replace("''", "'").casefold()
    return [g for g in groups if _value(g, field).casefold() == wanted]


def _value(group: Group, field: str) -> str:
    return group.name if field == "displayName" else group.email if field == "mail" else group.id


def _drive_json(state: GraphState, library: Library) -> Json:
    root = state.item(library.drive_id, "root")
    return {"id": library.drive_id, "name": library.name, "description": "", "driveType": "documentLibrary",
            "webUrl": state.web_url(library.drive_id, ""), "createdDateTime": iso(root.created)}


def _list_json(state: GraphState, library: Library) -> Json:
    return {"id": library.list_id, "name": library.name, "displayName": library.name,
            "webUrl": state.web_url(library.drive_id, ""), "list": {"template": "documentLibrary", "hidden": False},
            "parentReference": {"siteId": state.site.id}}


def site_routes(state: GraphState) -> APIRouter:
    """The site, its drives and lists' columns, directory groups and published retention labels."""
    router = APIRouter()
    site = state.site

    def resolve(reference: str) -> list[str]:
        """The path segments after the site a ``/sites/...`` reference names, or 404 for another site."""
        host, colon, rest = reference.partition(":")
        if colon and rest.startswith("/"):  # {hostname}:/{path}[:/{more}]
            path, _, more = rest[1:].partition(":")
            if host.casefold() != site.hostname.casefold() or path.strip("/").casefold() != site.path.casefold():
                raise GraphError(404, "itemNotFound", "Requested site could not be found")
            return [s for s in more.split("/") if s]
        first, *more_segments = [s for s in reference.split("/") if s]
        if first.casefold() != site.id.casefold():
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        return more_segments

    def library_of_list(list_id: str) -> Library:
        found = next((lib for lib in site.libraries if lib.list_id.casefold() == list_id.casefold()), None)
        if found is None:
            raise GraphError(404, "itemNotFound", "The list could not be found.")
        return found

    @router.get("/sites/{reference:path}")
    def get_site(reference: str) -> Json:
        segments = resolve(reference)
        if not segments:
            return site.to_json()
        if segments == ["drives"]:
            return {"value": [_drive_json(state, lib) for lib in site.libraries]}
        if segments == ["lists"]:
            return {"value": [_list_json(state, lib) for lib in site.libraries]}
        if len(segments) == 2 and segments[0] == "lists":
            return _list_json(state, library_of_list(segments[1]))
        if len(segments) == 3 and segments[0] == "lists" and segments[2] == "columns":
            return {"value": [c.to_json() for c in state.list_columns(segments[1])]}
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segments[-1]}'.")

    @router.post("/sites/{reference:path}")
    def post_site(reference: str, body: Annotated[Json, Body()]) -> JSONResponse:
        segments = resolve(reference)
        if len(segments) == 3 and segments[0] == "lists" and segments[2] == "columns":
            return JSONResponse(state.add_column(segments[1], body).to_json(), status_code=201)
        raise GraphError(405, "BadRequest", "The request method is not supported for this resource.")

    @router.get("/drives/{drive_id}/list")
    def get_drive_list(drive_id: str) -> Json:
        library = site.library(drive_id)
        if library is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        return _list_json(state, library)

    @router.get("/groups")
    def list_groups(request: Request, filter_: FilterQuery = None, top: GroupTopQuery = None,
                    skip_token: SkipQuery = None) -> Json:
        groups = state.groups() if filter_ is None else _matching(state.groups(), filter_)
        if skip_token is not None and not skip_token.isdigit():
            raise GraphError(400, "BadRequest", "invalid $skiptoken")
        skip, size = int(skip_token or 0), top or 100
        body: Json = {"value": [group_json(g) for g in groups[skip:skip + size]]}
        if skip + size < len(groups):
            body["@odata.nextLink"] = str(request.url.include_query_params(**{"$skiptoken": str(skip + size)}))
        return body

    @router.get("/groups/{group_id}")
    def get_group(group_id: str) -> Json:
        return group_json(state.group(group_id))

    @router.get("/security/labels/retentionLabels")
    def list_retention_labels() -> Json:
        return {"value": state.published_labels()}

    return router
