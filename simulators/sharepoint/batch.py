"""JSON batching: ``POST /v1.0/$batch``, as Microsoft Graph serves it.

The body is ``{"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}, ...]}``: at most 20
requests (more, none, a duplicate id, a missing ``id``/``method``/``url``, a ``body`` without a ``Content-Type``
header, a ``dependsOn`` naming no request of the batch or a circle of them: 400 ``BadRequest`` with Graph's error
body). ``url`` is relative to the version root (``/drives/...``; a leading ``/v1.0`` and an absolute URL's
scheme and host are taken off, as msgraph-core 1.x sends them); ``body`` is a JSON value, or a base64 string
for other content. msgraph-core's own ``depends_on`` is read like ``dependsOn``.

The answer is ``200 {"responses": [{"id", "status", "headers", "body"?}, ...]}`` (the order of the responses is
not the order of the requests, as Graph says it may not be: a client matches them by ``id``). Each sub-request is
handed in-process to the whole app (no HTTP round trip): the same fault injection, the same bearer token check
(the batch's ``Authorization`` applies to each), the same handlers and error bodies as a direct call, so a
throttled sub-request answers 429 with ``Retry-After`` among its headers. A ghost fault (the change committed, the
answer lost) answers 504 inside a batch. A request whose dependency did not succeed is not run: 424
``FailedDependency``. JSON bodies come back as JSON; other content as base64.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from simulators.sharepoint.model import GraphError, Json

#: Graph's limit of requests in one batch.
MAX_REQUESTS = 20
_VERSION_ROOT = "/v1.0"
#: Headers of a sub-response that describe the batch's transport, not the sub-request.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


@dataclass(frozen=True)
class Step:
    """One request of a batch."""

    id: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    depends_on: tuple[str, ...]


def _step(raw: Any, index: int) -> Step:
    if not isinstance(raw, dict):
        raise _bad(f"Invalid batch payload format: request {index} is not an object.")
    request_id, method, url = raw.get("id"), raw.get("method"), raw.get("url")
    if not isinstance(request_id, str) or not request_id:
        raise _bad(f"Invalid batch payload format: request {index} has no id.")
    if not isinstance(method, str) or not method or not isinstance(url, str) or not url:
        raise _bad(f"Invalid batch payload format: request '{request_id}' needs a method and a url.")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _bad(f"Invalid batch payload format: the headers of request '{request_id}' are not an object.")
    depends = raw.get("dependsOn", raw.get("depends_on")) or []
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise _bad(f"Invalid batch payload format: dependsOn of request '{request_id}' is not a list of ids.")
    body = b""
    if raw.get("body") is not None:
        if not any(k.lower() == "content-type" for k in headers):
            raise _bad(f"Request '{request_id}': a body needs a Content-Type header.")
        if isinstance(raw["body"], str) and not any(
                "json" in v.lower() for k, v in headers.items() if k.lower() == "content-type"):
            try:
                body = base64.b64decode(raw["body"], validate=True)
            except (binascii.Error, ValueError):
                raise _bad(f"Request '{request_id}': the body is not base64.") from None
        else:
            body = json.dumps(raw["body"]).encode()
    if "://" in url:  # msgraph-core 1.x sends the request's absolute URL: its path and query are what count
        parts = urlsplit(url)
        path, query = parts.path, parts.query
    else:
        path, _, query = url.partition("?")
    path = "/" + path.lstrip("/")
    if path == _VERSION_ROOT or path.startswith(_VERSION_ROOT + "/"):
        path = path[len(_VERSION_ROOT):] or "/"
    return Step(id=request_id, method=method.upper(), path=path, query=query, headers=dict(headers), body=body,
                depends_on=tuple(depends))


def parse_batch(raw: bytes) -> list[Step]:
    """The requests of a batch body in an order that runs each after what it depends on, else 400."""
    try:
        payload = json.loads(raw or b"null")
    except ValueError:
        raise _bad("Invalid batch payload format: the body is not JSON.") from None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not requests:
        raise _bad("Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(requests) > MAX_REQUESTS:
        raise _bad(f"The number of requests in the batch ({len(requests)}) exceeds the limit of {MAX_REQUESTS}.")
    steps = [_step(r, i) for i, r in enumerate(requests)]
    by_id: dict[str, Step] = {}
    for step in steps:
        if step.id.casefold() in by_id:
            raise _bad(f"Invalid batch payload format: the request id '{step.id}' is used twice.")
        by_id[step.id.casefold()] = step
    ordered: list[Step] = []
    done: set[str] = set()

    def visit(step: Step, path: tuple[str, ...]) -> None:
        key = step.id.casefold()
        if key in done:
            return
        if key in path:
            raise _bad(f"Invalid batch payload format: request '{step.id}' depends on itself.")
        for dependency in step.depends_on:
            if dependency.casefold() not in by_id:
                raise _bad(f"Invalid batch payload format: request '{step.id}' depends on an unknown request "
                           f"'{dependency}'.")
            visit(by_id[dependency.casefold()], (*path, key))
        done.add(key)
        ordered.append(step)

    for step in steps:
        visit(step, ())
    return ordered


def _canonical(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


async def dispatch(request: Request, step: Step) -> Json:
    """Run one sub-request through the app (faults, token check, handlers, error bodies) and answer it as a
    batch response entry."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in step.headers.items()
               if k.lower() not in {"authorization", "content-length", "host"}]
    authorization = request.headers.get("authorization")
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    headers += [(b"host", (request.headers.get("host") or "graph").encode("latin-1")),
                (b"content-length", str(len(step.body)).encode())]
    path = _VERSION_ROOT + step.path
    scope: MutableMapping[str, Any] = {
        "type": "http", "asgi": request.scope.get("asgi", {"version": "3.0"}), "http_version": "1.1",
        "method": step.method, "scheme": request.scope.get("scheme", "http"), "server": request.scope.get("server"),
        "client": request.scope.get("client"), "root_path": "", "path": unquote(path),
        "raw_path": path.encode("latin-1", "replace"), "query_string": step.query.encode("latin-1", "replace"),
        "headers": headers, "state": dict(request.scope.get("state") or {}),
    }
    sent_body = False
    status: int | None = None
    answer_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": step.body, "more_body": False}
        return {"type": "http.disconnect"}  # read after the body: the caller is not waiting (a ghost's answer)

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, answer_headers
        if message["type"] == "http.response.start":
            status, answer_headers = int(message["status"]), list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    if status is None:  # a ghost: the change is committed, its answer lost
        return _entry(step.id, GraphError(504, "gatewayTimeout", "The request timed out before it was answered."))
    response_headers = {_canonical(k.decode("latin-1")): v.decode("latin-1") for k, v in answer_headers
                        if k.decode("latin-1").lower() not in _HOP_HEADERS}
    entry: Json = {"id": step.id, "status": status, "headers": response_headers}
    content = b"".join(chunks)
    if content:
        media = response_headers.get("Content-Type", "")
        entry["body"] = json.loads(content) if "json" in media else base64.b64encode(content).decode()
    return entry


def _entry(request_id: str, error: GraphError) -> Json:
    body = {"error": {"code": error.code, "message": error.message}}
    return {"id": request_id, "status": error.status, "headers": {"Content-Type": "application/json"}, "body": body}


async def _run(request: Request, step: Step, answered: dict[str, Json]) -> Json:
    failed = [d for d in step.depends_on if not 200 <= answered[d.casefold()]["status"] < 300]
    if failed:
        return _entry(step.id, GraphError(424, "FailedDependency", f"The request depends on '{failed[0]}', "
                                          "which failed."))
    return await dispatch(request, step)


def batch_routes() -> APIRouter:
    """``POST /$batch`` (mount under ``/v1.0``, behind the token check)."""
    router = APIRouter()

    @router.post("/$batch")
    async def run_batch(request: Request) -> Response:
        steps = parse_batch(await request.body())
        answered: dict[str, Json] = {}
        while len(answered) < len(steps):
            # Each wave: every request whose dependencies are answered, run together (as Graph runs them).
            wave = [s for s in steps if s.id.casefold() not in answered
                    and all(d.casefold() in answered for d in s.depends_on)]
            for step, entry in zip(wave, await asyncio.gather(*(_run(request, s, answered) for s in wave)),
                                   strict=True):
                answered[step.id.casefold()] = entry
        body = json.dumps({"responses": list(answered.values())}, separators=(",", ":")).encode()
        return Response(body, media_type="application/json")

    return router
