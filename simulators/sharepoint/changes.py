"""The Graph simulator's change and list-item reads: ``delta`` in every form Graph accepts, and the file's
``listItem`` (its fields only with ``$expand=fields``).

``delta`` answers on the drive's root, as SharePoint does (OneDrive for Business and SharePoint support it on
the root folder only; another folder is 400): ``/root/delta``, ``/root/delta()``, ``/items/root/delta()`` (the
form msgraph-sdk builds), each with ``?token=`` or as the function ``delta(token='...')``. Whatever the form of
the request, ``@odata.nextLink`` and ``@odata.deltaLink`` name ``/drives/{id}/root/delta`` with the token as a
query parameter (as SharePoint writes them), and a 410's ``Location`` starts over there.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request

from simulators.sharepoint.config import SimulatorConfig
from simulators.sharepoint.model import GraphError, Json
from simulators.sharepoint.query import list_item_json
from simulators.sharepoint.state import GraphState

TopQuery = Annotated[int | None, Query(alias="$top", ge=1, le=1000)]
PlainTopQuery = Annotated[int | None, Query(alias="top", ge=1, le=1000)]
TokenQuery = Annotated[str | None, Query(alias="token")]
SkipQuery = Annotated[str | None, Query(alias="$skiptoken")]
ExpandQuery = Annotated[str | None, Query(alias="$expand")]
SelectQuery = Annotated[str | None, Query(alias="$select")]

#: ``'abc'`` (the function form's argument, quoted as OData writes strings).
_QUOTED = re.compile(r"^'([^']*)'$")
#: ``fields`` or ``fields($select=A,B)``.
_EXPAND_FIELDS = re.compile(r"^fields(?:\(\$select=([^)]*)\))?$")


def _function_token(argument: str) -> str:
    match = _QUOTED.match(argument)
    if match is None or not match.group(1):
        raise GraphError(400, "invalidRequest", "delta(token='...') needs the token as a quoted string")
    return match.group(1)


def change_routes(state: GraphState, config: SimulatorConfig) -> APIRouter:
    """``delta`` in all its forms and ``listItem`` (mount before the drive routes: their catch-all paths)."""
    router = APIRouter()

    def delta(request: Request, drive_id: str, item_id: str, token: str | None, top: int | None,
              skip_token: str | None) -> Json:
        if state.item(drive_id, item_id).parent_id is not None:
            raise GraphError(400, "invalidRequest", "delta is only supported on the root folder of a document "
                             "library")
        base = request.url.replace(path=f"/v1.0/drives/{quote(drive_id, safe='')}/root/delta")
        base = base.remove_query_params(["token", "$skiptoken"])
        try:
            values, next_skip, delta_token = state.delta_page(drive_id, token=token, skip_token=skip_token,
                                                              top=top or config.page_size)
        except GraphError as exc:
            if exc.status == 410:  # as Graph: where a fresh enumeration starts
                exc.headers["Location"] = str(base)
            raise
        if next_skip is not None:
            return {"value": values, "@odata.nextLink": str(base.include_query_params(**{"$skiptoken": next_skip}))}
        return {"value": values, "@odata.deltaLink": str(base.include_query_params(token=delta_token))}

    @router.get("/drives/{drive_id}/root/delta")
    @router.get("/drives/{drive_id}/root/delta()")
    def root_delta(request: Request, drive_id: str, token: TokenQuery = None, top: TopQuery = None,
                   plain_top: PlainTopQuery = None, skip_token: SkipQuery = None) -> Json:
        return delta(request, drive_id, "root", token, top or plain_top, skip_token)

    @router.get("/drives/{drive_id}/items/{item_id}/delta")
    @router.get("/drives/{drive_id}/items/{item_id}/delta()")
    def item_delta(request: Request, drive_id: str, item_id: str, token: TokenQuery = None, top: TopQuery = None,
                   plain_top: PlainTopQuery = None, skip_token: SkipQuery = None) -> Json:
        return delta(request, drive_id, item_id, token, top or plain_top, skip_token)

    @router.get("/drives/{drive_id}/root/delta(token={argument})")
    def root_delta_function(request: Request, drive_id: str, argument: str, top: TopQuery = None,
                            plain_top: PlainTopQuery = None, skip_token: SkipQuery = None) -> Json:
        return delta(request, drive_id, "root", _function_token(argument), top or plain_top, skip_token)

    @router.get("/drives/{drive_id}/items/{item_id}/delta(token={argument})")
    def item_delta_function(request: Request, drive_id: str, item_id: str, argument: str, top: TopQuery = None,
                            plain_top: PlainTopQuery = None, skip_token: SkipQuery = None) -> Json:
        return delta(request, drive_id, item_id, _function_token(argument), top or plain_top, skip_token)

    @router.get("/drives/{drive_id}/items/{item_id}/listItem")
    async def list_item(drive_id: str, item_id: str, expand: ExpandQuery = None, select: SelectQuery = None) -> Json:
        item = state.item(drive_id, item_id)
        if item.parent_id is None:
            raise GraphError(404, "itemNotFound", "The root of a document library has no list item.")
        body = list_item_json(state, item, site=config.site)
        if select is not None:
            wanted = {name.strip() for name in select.split(",") if name.strip()}
            body = {k: v for k, v in body.items() if k in wanted or k == "@odata.etag"}
        if expand is None:
            return body
        match = _EXPAND_FIELDS.match(expand.strip())
        if match is None:
            raise GraphError(400, "invalidRequest", f"Parsing OData Select and Expand failed: {expand!r} cannot "
                             "be expanded; listItem expands 'fields'.")
        fields = state.fields_of(drive_id, item_id)
        if match.group(1) is not None:
            chosen = {name.strip() for name in match.group(1).split(",") if name.strip()}
            fields = {k: v for k, v in fields.items() if k in chosen or k in {"@odata.etag", "id"}}
        return {**body, "fields": fields}

    return router
