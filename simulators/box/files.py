"""Files: uploads on the upload host (``/api/2.0``), reads and downloads on the API host (``/2.0``)::

    POST   /api/2.0/files/content                      multipart: ``attributes`` (JSON: name, parent.id) before
                                                       ``file``; 201 ``{"total_count": 1, "entries": [file]}``;
                                                       409 item_name_in_use naming the existing file
    POST   /api/2.0/files/{id}/content                 a new version (``attributes`` optional: a new name)
    POST   /api/2.0/files/upload_sessions              {folder_id, file_size, file_name}: 201 an upload session
    POST   /api/2.0/files/{id}/upload_sessions         the same for a new version
    PUT    /api/2.0/files/upload_sessions/{id}         a part: ``digest: sha=<base64 SHA-1>``, ``content-range``
    GET    /api/2.0/files/upload_sessions/{id}[/parts] the session, its parts
    POST   /api/2.0/files/upload_sessions/{id}/commit  {parts}, ``digest`` of the whole file: 201 the file
    DELETE /api/2.0/files/upload_sessions/{id}         abort
    GET    /2.0/files/{id}                             the file
    DELETE /2.0/files/{id}                             204: the file moved to the trash (404 when there is none)
    GET    /2.0/files/{id}/content                     302 to a pre-authenticated URL (``/_dl/...``, no token);
                                                       202 with Retry-After while not ready (``downloads_not_ready``)

Parts must be ``part_size`` bytes (the last one may be shorter) at offsets that are multiples of it; a part
sent again with the same range and digest is answered as the first time.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from simulators.box.model import BoxError, Item, Json, bad_request, box_time, not_found
from simulators.box.state import BoxState

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class _NewSession(BaseModel):
    folder_id: str | None = None
    file_size: int
    file_name: str | None = None


@dataclass
class _Session:
    id: str
    folder_id: str
    file_name: str
    file_size: int
    part_size: int
    file_id: str | None
    expires_at: datetime
    parts: dict[int, Json] = field(default_factory=dict)
    chunks: dict[int, bytes] = field(default_factory=dict)

    @property
    def total_parts(self) -> int:
        return max(1, -(-self.file_size // self.part_size))


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def _digest(header: str | None) -> bytes:
    """The SHA-1 a ``digest: sha=<base64>`` header names; 400 when it names none."""
    value = (header or "").strip()
    if not value.lower().startswith("sha="):
        raise bad_request("Missing or invalid digest header")
    try:
        return base64.b64decode(value[4:], validate=True)
    except ValueError:
        raise bad_request("Invalid digest header") from None


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """The (name, bytes) parts of a ``multipart/form-data`` body, in the order sent."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise bad_request("The upload must be multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append((str(name or ""), payload if isinstance(payload, bytes) else b""))
    return parts


class Transfers:
    """Upload sessions and download links, kept apart from the tree (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, _Session] = {}
        self.links: dict[str, str] = {}
        #: Download requests answered 202 per file version.
        self.not_ready: dict[str, int] = {}

    def reset(self) -> None:
        """Forget every session and link."""
        with self.lock:
            self.sessions.clear()
            self.links.clear()
            self.not_ready.clear()

    def session(self, session_id: str) -> _Session:
        """An open session; 404 otherwise."""
        found = self.sessions.get(session_id)
        if found is None or found.expires_at < datetime.now(UTC):
            raise not_found("Upload session not found")
        return found


def _session_json(session: _Session, upload_base: str) -> Json:
    url = f"{upload_base}/files/upload_sessions/{session.id}"
    return {"type": "upload_session", "id": session.id, "session_expires_at": box_time(session.expires_at),
            "part_size": session.part_size, "total_parts": session.total_parts,
            "num_parts_processed": len(session.parts),
            "session_endpoints": {"upload_part": url, "commit": f"{url}/commit", "abort": url,
                                  "list_parts": f"{url}/parts", "status": url, "log_event": f"{url}/log"}}


def upload_routes(state: BoxState, transfers: Transfers) -> APIRouter:
    """The upload host's routes (mount under ``/api/2.0``)."""
    routes = APIRouter()
    config = state.config

    def upload_base(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/api/2.0"

    async def attributes_and_file(request: Request, *, file_required: bool = True) -> tuple[Json, bytes]:
        parts = multipart_parts(request.headers.get("content-type", ""), await request.body())
        names = [name for name, _ in parts]
        if "file" not in names:
            raise bad_request("Missing the file part")
        if "attributes" in names and names.index("attributes") > names.index("file"):
            raise BoxError(400, "metadata_after_file_contents", "The attributes part must come before the file")
        attributes: Any = {}
        for name, data in parts:
            if name == "attributes":
                try:
                    attributes = json.loads(data)
                except ValueError:
                    raise bad_request("attributes is not JSON") from None
        if not isinstance(attributes, dict):
            raise bad_request("attributes must be a JSON object")
        return attributes, next(data for name, data in parts if name == "file")

    def check_md5(request: Request, content: bytes) -> None:
        expected = request.headers.get("content-md5")  # Box's name; it carries the SHA-1 (hex)
        if expected and expected.lower() != _sha1(content).hex():
            raise BoxError(400, "bad_digest", "The specified content-md5 did not match what was received")

    @routes.post("/files/content", status_code=201)
    async def upload(request: Request) -> Json:
        attributes, content = await attributes_and_file(request)
        parent = attributes.get("parent") if isinstance(attributes.get("parent"), dict) else None
        if not parent or not attributes.get("name"):
            raise bad_request("attributes needs name and parent.id")
        check_md5(request, content)
        with state.lock:
            item = state.store_file(str(parent.get("id")), str(attributes["name"]), content)
            return {"total_count": 1, "entries": [state.render(item)]}

    @routes.post("/files/{file_id}/content", status_code=201)
    async def upload_version(file_id: str, request: Request) -> Json:
        attributes, content = await attributes_and_file(request)
        check_md5(request, content)
        name = attributes.get("name")
        with state.lock:
            item = state.new_version(file_id, content, str(name) if name else None)
            return {"total_count": 1, "entries": [state.render(item)]}

    def open_session(request: Request, folder_id: str, name: str, size: int, file_id: str | None) -> Json:
        if size < config.min_session_file_size:
            raise BoxError(400, "file_size_too_small", "File size is less than minimum allowed for this API")
        session = _Session(secrets.token_hex(16).upper(), folder_id, name, size, config.part_size, file_id,
                           datetime.now(UTC) + timedelta(days=7))
        with transfers.lock:
            transfers.sessions[session.id] = session
        return _session_json(session, upload_base(request))

    @routes.post("/files/upload_sessions", status_code=201)
    def create_session(body: _NewSession, request: Request) -> Json:
        if not body.folder_id:
            raise BoxError(400, "missing_destination", "folder_id is required")
        if not body.file_name:
            raise BoxError(400, "missing_file_name", "file_name is required")
        with state.lock:
            state.item(body.folder_id, "folder")
            state.check_name(body.file_name)
            existing = state.conflict(body.folder_id, body.file_name)
            if existing is not None:
                raise state.name_in_use(existing)
        return open_session(request, body.folder_id, body.file_name, body.file_size, None)

    @routes.post("/files/{file_id}/upload_sessions", status_code=201)
    def create_version_session(file_id: str, body: _NewSession, request: Request) -> Json:
        with state.lock:
            item = state.item(file_id, "file")
        return open_session(request, item.parent_id or "0", body.file_name or item.name, body.file_size, file_id)

    @routes.put("/files/upload_sessions/{session_id}")
    async def upload_part(session_id: str, request: Request) -> Json:
        content = await request.body()
        digest = _digest(request.headers.get("digest"))
        match = _RANGE.match(request.headers.get("content-range", ""))
        with transfers.lock:
            session = transfers.session(session_id)
            if match is None:
                raise BoxError(416, "requested_range_not_satisfiable", "Invalid content-range header")
            start, end, total = (int(g) for g in match.groups())
            size = end - start + 1
            last = start + size == session.file_size
            if total != session.file_size or start % session.part_size or end < start \
                    or size != len(content) or (size != session.part_size and not last) or end >= total:
                raise BoxError(416, "requested_range_not_satisfiable",
                               "The content range does not match the session's parts")
            if _sha1(content) != digest:
                raise BoxError(412, "precondition_failed", "The digest of the part does not match its content")
            earlier = session.parts.get(start)
            if earlier is not None and earlier["sha1"] != digest.hex():
                raise BoxError(409, "range_overlaps_existing_part", "The part overlaps a part already uploaded")
            part = earlier or {"part_id": secrets.token_hex(4).upper(), "offset": start, "size": size,
                               "sha1": digest.hex()}
            session.parts[start], session.chunks[start] = part, content
            return {"part": part}

    @routes.get("/files/upload_sessions/{session_id}")
    def get_session(session_id: str, request: Request) -> Json:
        with transfers.lock:
            return _session_json(transfers.session(session_id), upload_base(request))

    @routes.get("/files/upload_sessions/{session_id}/parts")
    def list_parts(session_id: str) -> Json:
        with transfers.lock:
            parts = [p for _, p in sorted(transfers.session(session_id).parts.items())]
        return {"entries": parts, "limit": 1000, "offset": 0, "total_count": len(parts)}

    @routes.post("/files/upload_sessions/{session_id}/commit", status_code=201)
    async def commit(session_id: str, request: Request) -> Json:
        digest = _digest(request.headers.get("digest"))
        try:
            sent = (await request.json()).get("parts")
        except (ValueError, AttributeError):
            raise bad_request("The body must be {\"parts\": [...]}") from None
        with transfers.lock:
            session = transfers.session(session_id)
            ordered = [p for _, p in sorted(session.parts.items())]
            if not isinstance(sent, list) or [p.get("part_id") for p in sent if isinstance(p, dict)] \
                    != [p["part_id"] for p in ordered] or sum(p["size"] for p in ordered) != session.file_size:
                raise bad_request("The parts do not match the parts uploaded to the session")
            content = b"".join(session.chunks[offset] for offset in sorted(session.chunks))
            if _sha1(content) != digest:
                raise BoxError(412, "precondition_failed", "The digest of the file does not match its parts")
            del transfers.sessions[session_id]
        with state.lock:
            item: Item = (state.new_version(session.file_id, content) if session.file_id
                          else state.store_file(session.folder_id, session.file_name, content))
            return {"total_count": 1, "entries": [state.render(item)]}

    @routes.delete("/files/upload_sessions/{session_id}", status_code=204)
    def abort(session_id: str) -> Response:
        with transfers.lock:
            transfers.session(session_id)
            del transfers.sessions[session_id]
        return Response(status_code=204)

    return routes


def file_routes(state: BoxState, transfers: Transfers) -> APIRouter:
    """Reading a file and its content (mount under ``/2.0``)."""
    routes = APIRouter()

    @routes.get("/files/{file_id}")
    def get_file(file_id: str) -> Json:
        with state.lock:
            return state.render(state.item(file_id, "file"))

    @routes.delete("/files/{file_id}", status_code=204)
    def trash_file(file_id: str) -> Response:
        state.trash(file_id)
        return Response(status_code=204)

    @routes.get("/files/{file_id}/content", response_model=None)
    def download(file_id: str, request: Request) -> Response:
        with state.lock:
            item = state.item(file_id, "file")
        token = secrets.token_urlsafe(24)
        with transfers.lock:
            waited = transfers.not_ready.get(item.version_id, 0)
            if waited < state.config.downloads_not_ready:
                transfers.not_ready[item.version_id] = waited + 1
                return Response(status_code=202, headers={"Retry-After": "1"})
            transfers.links[token] = item.version_id
        base = str(request.base_url).rstrip("/")
        return RedirectResponse(f"{base}/_dl/{token}/{item.version_id}/content", status_code=302)

    return routes


def download_routes(state: BoxState, transfers: Transfers) -> APIRouter:
    """The pre-authenticated download URLs (``dl.boxcloud.com`` in Box): no token needed."""
    routes = APIRouter()

    @routes.get("/_dl/{token}/{version_id}/content")
    def fetch(token: str, version_id: str) -> Response:
        with transfers.lock:
            known = transfers.links.get(token)
        with state.lock:
            item = next((i for i in state.items.values() if i.type == "file" and i.version_id == version_id), None)
        if known != version_id or item is None:
            raise not_found()
        return Response(item.content, media_type="application/octet-stream")

    return routes
