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
throttled sub-request answers 429 with ``Retry-After`` among its headers. The hot reads (:class:`Shortcuts`: a
folder's children, an item's permissions, read by the hundred thousand in a reconciliation) skip the app's
routing and parameter machinery, most of a sub-request's cost, but not its parts: the app's own fault
injector draws first, then its token check runs and counts the call, then the route's own handler; an error is
rendered by the app's error dialect; the answer is the direct call's, as JSON (``tests/test_graph_batch.py``
compares them). A ghost fault (the change committed, the
answer lost) answers 504 inside a batch. A request whose dependency did not succeed is not run: 424
``FailedDependency``. JSON bodies come back as JSON; other content as base64.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector, FaultPlan
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
        payload = orjson.loads(raw or b"null")
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


def _scope(request: Request, step: Step) -> MutableMapping[str, Any]:
    """The ASGI scope of one sub-request: the batch's ``Authorization`` and host, the step's method, path, query,
    headers and body length."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in step.headers.items()
               if k.lower() not in {"authorization", "content-length", "host"}]
    authorization = request.headers.get("authorization")
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    headers += [(b"host", (request.headers.get("host") or "graph").encode("latin-1")),
                (b"content-length", str(len(step.body)).encode())]
    path = _VERSION_ROOT + step.path
    return {
        "type": "http", "asgi": request.scope.get("asgi", {"version": "3.0"}), "http_version": "1.1",
        "method": step.method, "scheme": request.scope.get("scheme", "http"), "server": request.scope.get("server"),
        "client": request.scope.get("client"), "root_path": "", "path": unquote(path),
        "raw_path": path.encode("latin-1", "replace"), "query_string": step.query.encode("latin-1", "replace"),
        "headers": headers, "state": dict(request.scope.get("state") or {}),
    }


def _answered(request_id: str, status: int, headers: Iterable[tuple[bytes, bytes]], content: bytes) -> Json:
    """A sub-request's answer as a batch response entry: its headers as Graph names them (less the transport's),
    a JSON body as JSON, other content as base64."""
    response_headers = {_canonical(k.decode("latin-1")): v.decode("latin-1") for k, v in headers
                        if k.decode("latin-1").lower() not in _HOP_HEADERS}
    entry: Json = {"id": request_id, "status": status, "headers": response_headers}
    if content:
        media = response_headers.get("Content-Type", "")
        entry["body"] = orjson.loads(content) if "json" in media else base64.b64encode(content).decode()
    return entry


async def dispatch(request: Request, step: Step) -> Json:
    """Run one sub-request through the app (faults, token check, handlers, error bodies) and answer it as a
    batch response entry."""
    scope = _scope(request, step)
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
        return _lost(step.id)
    return _answered(step.id, status, answer_headers, b"".join(chunks))


def _lost(request_id: str) -> Json:
    return _entry(request_id, GraphError(504, "gatewayTimeout", "The request timed out before it was answered."))


def _entry(request_id: str, error: GraphError) -> Json:
    body = {"error": {"code": error.code, "message": error.message}}
    return {"id": request_id, "status": error.status, "headers": {"Content-Type": "application/json"}, "body": body}


#: A hot read's answer: the request and its path parameters to the JSON body (a ``GraphError`` refuses it).
Handler = Callable[[Request, dict[str, str]], Json]


@dataclass(frozen=True)
class Shortcut:
    """A GET route a batch answers without the app's routing and parameter machinery: a hot read."""

    #: The route's template below ``/v1.0`` (``/drives/{drive_id}/items/{item_id}/children``): the call's name.
    path: str
    handler: Handler
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # As Starlette compiles a route's template: each {name} one whole path segment.
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(re.escape(part) if n % 2 == 0 else f"(?P<{part}>[^/]+)" for n, part in enumerate(parts))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


@dataclass(frozen=True)
class Shortcuts:
    """The hot reads a batch answers itself, and what it takes to answer them as the app does: the app's fault
    injector, its token check (which counts the call), and its vendor's shape of an injected fault and of an
    error."""

    routes: tuple[Shortcut, ...]
    guard: Callable[[Request], Awaitable[None]]
    faults: FaultInjector
    refusal: Callable[[str, FaultPlan], Response]
    render: Callable[[SimError], Response]

    def find(self, step: Step) -> tuple[Shortcut, dict[str, str]] | None:
        """The shortcut serving this step, with its path parameters (None: the app serves it)."""
        if step.method != "GET":
            return None
        path = unquote(step.path)
        for route in self.routes:
            match = route.pattern.match(path)
            if match is not None:
                return route, match.groupdict()
        return None

    async def answer(self, request: Request, step: Step, route: Shortcut, params: dict[str, str]) -> Json:
        """The step answered as the app answers it: the fault drawn first (as the fault middleware draws it), then
        the token check, then the handler; errors in the vendor's shape; a ghost's answer lost (504)."""
        plan, kind = self.faults.decide()
        if plan.latency_s:
            await asyncio.sleep(plan.latency_s)
        if kind in {"outage", "error", "throttle"}:
            return _responded(step.id, self.refusal(kind, plan))
        scope = _scope(request, step)
        scope["route"], scope["path_params"] = route, params
        sub = Request(scope)
        try:
            await self.guard(sub)
            entry: Json = {"id": step.id, "status": 200, "headers": {"Content-Type": "application/json"},
                           "body": route.handler(sub, params)}
        except SimError as exc:
            entry = _responded(step.id, self.render(exc))
        return _lost(step.id) if kind == "ghost" else entry


def _responded(request_id: str, response: Response) -> Json:
    return _answered(request_id, response.status_code, response.raw_headers, bytes(response.body))


async def _run(request: Request, step: Step, answered: dict[str, Json], shortcuts: Shortcuts | None) -> Json:
    failed = [d for d in step.depends_on if not 200 <= answered[d.casefold()]["status"] < 300]
    if failed:
        return _entry(step.id, GraphError(424, "FailedDependency", f"The request depends on '{failed[0]}', "
                                          "which failed."))
    found = shortcuts.find(step) if shortcuts is not None else None
    if shortcuts is not None and found is not None:
        return await shortcuts.answer(request, step, *found)
    return await dispatch(request, step)


def batch_routes(shortcuts: Shortcuts | None = None) -> APIRouter:
    """``POST /$batch`` (mount under ``/v1.0``, behind the token check); ``shortcuts``: the hot reads it answers
    without a round trip through the whole app."""
    router = APIRouter()

    @router.post("/$batch")
    async def run_batch(request: Request) -> Response:
        steps = parse_batch(await request.body())
        answered: dict[str, Json] = {}
        while len(answered) < len(steps):
            # Each wave: every request whose dependencies are answered, run together (as Graph runs them).
            wave = [s for s in steps if s.id.casefold() not in answered
                    and all(d.casefold() in answered for d in s.depends_on)]
            entries = await asyncio.gather(*(_run(request, s, answered, shortcuts) for s in wave))
            for step, entry in zip(wave, entries, strict=True):
                answered[step.id.casefold()] = entry
        body = orjson.dumps({"responses": list(answered.values())}, option=orjson.OPT_NON_STR_KEYS)
        return Response(body, media_type="application/json")

    return router
