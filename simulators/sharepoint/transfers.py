"""The Graph simulator's large transfers: upload sessions and downloads through pre-authenticated URLs.

As Graph does for a SharePoint document library:

* ``GET .../items/{id}/content`` (or ``root:/{path}:/content``) answers 302 to a pre-authenticated URL on the
  site's host (``/_layouts/15/download.aspx?UniqueId=...&tempauth=...``), valid for an hour, which serves the
  bytes to whoever holds it: no bearer token. One that carries ``Authorization`` is refused (401), as
  SharePoint may: a client must not hand its Graph token to another host.
* ``POST .../items/{parent-id}:/{name}:/createUploadSession`` (also ``root:/{path}:/createUploadSession``, and
  ``items/{item-id}/createUploadSession`` for new content of an existing file) answers 200 with ``uploadUrl``,
  ``expirationDateTime`` and ``nextExpectedRanges: ["0-"]``; the conflict behaviour is
  ``item["@microsoft.graph.conflictBehavior"]`` (``fail`` checked now and when the last byte lands).
  The upload URL is pre-authenticated too. Each ``PUT`` carries ``Content-Range: bytes {start}-{end}/{total}``
  and ``Content-Length``; a fragment other than the last must be a multiple of 320 KiB (327,680 bytes) and at
  most 60 MiB, must start where the previous one ended (else 416 ``invalidRange``) and keep the total. Until the
  last byte: 202 with ``nextExpectedRanges``; then the file is committed: 201 (new) or 200 (replaced) with the
  driveItem. ``GET`` on the upload URL answers the session's state, ``DELETE`` cancels it (204); an unknown,
  cancelled, finished or expired session is 404 ``itemNotFound``.

Pre-authenticated URLs name ``SimulatorConfig.preauth_host`` when set (a host other than the one the Graph
calls go to, as in a real tenant, so an SDK's token policy is exercised), else the host the request came to.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from simulators.sharepoint.config import SimulatorConfig
from simulators.sharepoint.model import GraphError, Json, check_name, iso, now
from simulators.sharepoint.state import GraphState

#: Graph's fragment unit and largest fragment.
FRAGMENT_UNIT = 320 * 1024
MAX_FRAGMENT = 60 * 1024 * 1024
#: How long a pre-authenticated download URL and an upload session live.
DOWNLOAD_LIFETIME = timedelta(hours=1)
SESSION_LIFETIME = timedelta(days=1)
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")

UniqueIdQuery = Annotated[str, Query(alias="UniqueId")]
TempAuthQuery = Annotated[str, Query(alias="tempauth")]
GuidQuery = Annotated[str, Query(alias="guid")]


@dataclass
class UploadSession:
    """An upload under way: where the file goes and the bytes received so far."""

    id: str
    drive_id: str
    parent_id: str
    path: str
    behavior: str
    expiration: datetime
    #: The existing file whose content the upload replaces (``items/{id}/createUploadSession``).
    item_id: str | None = None
    total: int | None = None
    received: bytearray = field(default_factory=bytearray)


class Transfers:
    """Upload sessions and the secret that signs pre-authenticated URLs, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every session; URLs handed out before stop working."""
        with self._lock:
            self.sessions: dict[str, UploadSession] = {}
            self._secret = secrets.token_bytes(32)
            self.refused_tokens = 0

    def sign(self, *parts: str) -> str:
        """A ``tempauth`` value binding ``parts``."""
        return hmac.new(self._secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def open(self, session: UploadSession) -> None:
        """Record a new session."""
        with self._lock:
            self.sessions[session.id] = session

    def session(self, session_id: str, tempauth: str) -> UploadSession:
        """A live session, else 404 (a wrong ``tempauth`` is 401)."""
        if not hmac.compare_digest(tempauth, self.sign("upload", session_id)):
            raise GraphError(401, "unauthenticated", "The pre-authenticated URL is not valid.")
        with self._lock:
            found = self.sessions.get(session_id)
            if found is None or found.expiration <= now():
                self.sessions.pop(session_id, None)
                raise GraphError(404, "itemNotFound", "The upload session does not exist or has expired.")
            return found

    def close(self, session_id: str) -> None:
        """Forget a session (finished or cancelled)."""
        with self._lock:
            self.sessions.pop(session_id, None)

    def view(self) -> dict[str, Any]:
        """The admin view: open sessions, and pre-authenticated calls refused for carrying a token."""
        with self._lock:
            return {"uploadSessions": {s.id: {"path": s.path, "received": len(s.received), "total": s.total}
                                       for s in self.sessions.values()},
                    "preauthRefusedTokens": self.refused_tokens}

    def count_refused_token(self) -> None:
        """Count a pre-authenticated call that carried a bearer token (and was refused)."""
        with self._lock:
            self.refused_tokens += 1


def _preauth_base(request: Request, config: SimulatorConfig) -> str:
    url = request.base_url
    if config.preauth_host:
        url = url.replace(hostname=config.preauth_host)
    return str(url).rstrip("/")


def _no_bearer(request: Request, transfers: Transfers) -> None:
    if request.headers.get("authorization"):
        transfers.count_refused_token()
        raise GraphError(401, "unauthenticated", "A pre-authenticated URL takes no Authorization header.")


def _status(session: UploadSession) -> Json:
    return {"expirationDateTime": iso(session.expiration), "nextExpectedRanges": [f"{len(session.received)}-"]}


def graph_transfer_routes(state: GraphState, config: SimulatorConfig, transfers: Transfers) -> APIRouter:
    """The ``/v1.0`` side: downloads answering 302, and creating upload sessions (mount before the drive
    routes: their catch-all paths)."""
    router = APIRouter()

    def redirect(request: Request, drive_id: str, item_id: str) -> Response:
        item = state.item(drive_id, item_id)
        if not item.is_file:
            raise GraphError(400, "invalidRequest", "only a file has content; this item is a folder")
        expires = str(int((now() + DOWNLOAD_LIFETIME).timestamp()))
        tempauth = transfers.sign("download", drive_id, item.id, expires)
        location = (f"{_preauth_base(request, config)}/_layouts/15/download.aspx?UniqueId={item.id}"
                    f"&drive={drive_id}&expires={expires}&tempauth={tempauth}")
        return RedirectResponse(location, status_code=302)

    @router.get("/drives/{drive_id}/items/{item_id}/content")
    def download(request: Request, drive_id: str, item_id: str) -> Response:
        return redirect(request, drive_id, item_id)

    @router.get("/drives/{drive_id}/root:/{path:path}:/content")
    def download_by_path(request: Request, drive_id: str, path: str) -> Response:
        return redirect(request, drive_id, state.by_path(drive_id, path).id)

    def open_session(request: Request, drive_id: str, parent_id: str, path: str, body: Json | None,
                     item_id: str | None = None) -> JSONResponse:
        item = (body or {}).get("item") or {}
        if not isinstance(item, dict):
            raise GraphError(400, "invalidRequest", "item must be a driveItemUploadableProperties object")
        behavior = str(item.get("@microsoft.graph.conflictBehavior") or "replace")
        if behavior not in {"fail", "replace", "rename"}:
            raise GraphError(400, "invalidRequest", f"unknown conflictBehavior {behavior!r}")
        if item_id is None:
            folder_path, _, name = path.strip("/").rpartition("/")
            check_name(name)
            parent = state.by_path(drive_id, folder_path, under=parent_id)  # the folder must exist: 404
            if parent.is_file:
                raise GraphError(400, "invalidRequest", f"{parent.name!r} is a file and cannot contain items")
            existing = parent.children.get(name.casefold())
            if existing is not None and behavior == "fail":
                raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
        elif not state.item(drive_id, item_id).is_file:
            raise GraphError(400, "invalidRequest", "only a file has content")
        session = UploadSession(id=uuid.uuid4().hex, drive_id=drive_id, parent_id=parent_id, path=path,
                                behavior=behavior, expiration=now() + SESSION_LIFETIME, item_id=item_id)
        transfers.open(session)
        url = (f"{_preauth_base(request, config)}/_api/v2.0/uploadSession?guid={session.id}"
               f"&tempauth={transfers.sign('upload', session.id)}")
        return JSONResponse({"uploadUrl": url, **_status(session)})

    @router.post("/drives/{drive_id}/root:/{path:path}:/createUploadSession")
    def session_by_path(request: Request, drive_id: str, path: str,
                        body: Annotated[Json | None, Body()] = None) -> JSONResponse:
        return open_session(request, drive_id, "root", path, body)

    @router.post("/drives/{drive_id}/items/{reference:path}/createUploadSession")
    def session_below_item(request: Request, drive_id: str, reference: str,
                           body: Annotated[Json | None, Body()] = None) -> JSONResponse:
        parent_id, sep, below = reference.partition(":")
        if sep:  # {parent-id}:/{name}:
            return open_session(request, drive_id, parent_id, below.rstrip(":"), body)
        return open_session(request, drive_id, reference, "", body, item_id=reference)

    return router


def preauth_routes(state: GraphState, transfers: Transfers) -> APIRouter:
    """The pre-authenticated side, outside ``/v1.0`` (no bearer token): downloads and upload fragments."""
    router = APIRouter()

    @router.get("/_layouts/15/download.aspx")
    def fetch(request: Request, unique_id: UniqueIdQuery, tempauth: TempAuthQuery,
              drive: str = "", expires: str = "0") -> Response:
        _no_bearer(request, transfers)
        valid = hmac.compare_digest(tempauth, transfers.sign("download", drive, unique_id, expires))
        if not valid or not expires.isdigit() or int(expires) < now().timestamp():
            raise GraphError(401, "unauthenticated", "The pre-authenticated URL is not valid or has expired.")
        data, media_type = state.content_of(drive, unique_id)
        return Response(content=data, headers={"Content-Type": media_type})

    @router.get("/_api/v2.0/uploadSession")
    def session_status(request: Request, guid: GuidQuery, tempauth: TempAuthQuery) -> Json:
        _no_bearer(request, transfers)
        return _status(transfers.session(guid, tempauth))

    @router.delete("/_api/v2.0/uploadSession", status_code=204)
    def cancel(request: Request, guid: GuidQuery, tempauth: TempAuthQuery) -> Response:
        _no_bearer(request, transfers)
        transfers.session(guid, tempauth)
        transfers.close(guid)
        return Response(status_code=204)

    @router.put("/_api/v2.0/uploadSession")
    async def fragment(request: Request, guid: GuidQuery, tempauth: TempAuthQuery) -> JSONResponse:
        _no_bearer(request, transfers)
        session = transfers.session(guid, tempauth)
        data = await request.body()
        start, end, total = _content_range(request, len(data))
        if session.total is not None and total != session.total:
            raise GraphError(400, "invalidRequest", "The total size differs from the earlier fragments'.")
        if start != len(session.received):
            raise GraphError(416, "invalidRange", f"The fragment starts at {start}; the session expects "
                             f"{len(session.received)}.")
        last = end == total - 1
        if len(data) > MAX_FRAGMENT or (not last and len(data) % FRAGMENT_UNIT):
            raise GraphError(400, "invalidRequest", "A fragment other than the last must be a multiple of "
                             "320 KiB (327,680 bytes), and no fragment may exceed 60 MiB.")
        session.total = total
        session.received.extend(data)
        if not last:
            return JSONResponse(_status(session), status_code=202)
        transfers.close(guid)
        content = bytes(session.received)
        if session.item_id is not None:
            return JSONResponse(state.to_json(state.replace_content(session.drive_id, session.item_id, content,
                                                                    None)))
        item, new = state.upload(session.drive_id, session.parent_id, session.path, content, None,
                                 session.behavior)
        return JSONResponse(state.to_json(item), status_code=201 if new else 200)

    return router


def _content_range(request: Request, length: int) -> tuple[int, int, int]:
    declared = request.headers.get("content-length")
    if declared is None:
        raise GraphError(411, "invalidRequest", "Content-Length is required.")
    match = _RANGE.match(request.headers.get("content-range", "").strip())
    if match is None:
        raise GraphError(400, "invalidRequest", "Content-Range must be 'bytes {start}-{end}/{total}'.")
    start, end, total = (int(group) for group in match.groups())
    if not start <= end < total or end - start + 1 != length or int(declared) != length:
        raise GraphError(400, "invalidRequest", "Content-Range and Content-Length do not match the fragment.")
    return start, end, total
