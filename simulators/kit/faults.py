"""Fault injection for the simulators: latency, 5xx, 429 with ``Retry-After``, outage and ghost writes.

Framework-agnostic: :class:`FaultMiddleware` wraps any ASGI app (FastAPI, Starlette, plain ASGI)::

    faults = FaultInjector(FaultPlan(error_rate=0.1, seed=7))
    app = FaultMiddleware(create_inner_app(), faults)

Every HTTP request outside ``/_sim/`` goes through the plan. One seeded ``random.Random`` draws one
number per request, so the same plan, seed and request order inject the same faults. The plan is
set at construction, in-process with :meth:`FaultInjector.set`, or over HTTP (no token: bind the
simulator to loopback) with ``PUT /_sim/faults`` (a JSON :class:`FaultPlan`; omitted fields take
their defaults; the random generator is re-seeded) and read with ``GET /_sim/faults``.

Order of checks per request: ``outage`` (every request 503), then the draw ``r``:
``r < error_rate`` answers 500, ``r < error_rate + throttle_rate`` answers 429 with
``Retry-After: retry_after_s``, ``r < ... + ghost_rate`` is a ghost: the request *is* handled (the
change committed) but the response is held until the client gives up and disconnects (or
``ghost_hold_s`` passes, then it is sent late). ``latency_s`` is added before every request.
Injected responses carry ``x-sim-fault: outage|error|throttle|ghost``; their body is the kit's generic one
unless the middleware is given a ``refusal``: the ASGI response answering one in the vendor's own shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Path prefix never subject to faults (the simulators' admin endpoints).
ADMIN_PREFIX = "/_sim/"
FAULTS_PATH = "/_sim/faults"


@dataclass(frozen=True)
class FaultPlan:
    """What to inject; rates are fractions of requests and must not add up past 1."""

    latency_s: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    outage: bool = False
    ghost_rate: float = 0.0
    ghost_hold_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "ghost_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_rate + self.throttle_rate + self.ghost_rate > 1.0 + 1e-9:
            raise ValueError("error_rate + throttle_rate + ghost_rate must not exceed 1")
        if self.latency_s < 0 or self.retry_after_s < 0 or self.ghost_hold_s < 0:
            raise ValueError("latency_s, retry_after_s and ghost_hold_s must not be negative")

    @classmethod
    def from_json(cls, data: Any) -> FaultPlan:
        """Build from a JSON object; unknown fields are refused (``ValueError``)."""
        if not isinstance(data, dict):
            raise ValueError("a fault plan is a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON object."""
        return dataclasses.asdict(self)


class FaultInjector:
    """The current plan and its seeded random generator; safe to change from any thread."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._random = random.Random(self._plan.seed)
        #: How many faults of each kind were injected since the last :meth:`set`.
        self.injected: Counter[str] = Counter()

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self._plan

    def set(self, plan: FaultPlan) -> None:
        """Replace the plan, re-seed the generator and zero the counters."""
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed)
            self.injected = Counter()

    def decide(self) -> tuple[FaultPlan, str | None]:
        """Draw the fault for one request: ``None``, ``"outage"``, ``"error"``, ``"throttle"`` or ``"ghost"``."""
        with self._lock:
            plan = self._plan
            if plan.outage:
                kind: str | None = "outage"
            else:
                r = self._random.random()
                if r < plan.error_rate:
                    kind = "error"
                elif r < plan.error_rate + plan.throttle_rate:
                    kind = "throttle"
                elif r < plan.error_rate + plan.throttle_rate + plan.ghost_rate:
                    kind = "ghost"
                else:
                    kind = None
            if kind:
                self.injected[kind] += 1
            return plan, kind


async def _send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
                     ) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class FaultMiddleware:
    """ASGI middleware applying a :class:`FaultInjector`'s plan and serving ``/_sim/faults``."""

    def __init__(self, app: ASGIApp, injector: FaultInjector,
                 refusal: Callable[[str, FaultPlan], ASGIApp] | None = None) -> None:
        self.app = app
        self.injector = injector
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path == FAULTS_PATH:
            await self._admin(scope, receive, send)
            return
        if path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        plan, kind = self.injector.decide()
        if plan.latency_s:
            await asyncio.sleep(plan.latency_s)
        fault = [(b"x-sim-fault", (kind or "").encode())] if kind else []
        if kind in {"outage", "error", "throttle"} and self.refusal is not None:
            await self.refusal(kind, plan)(scope, receive, send)  # carries x-sim-fault itself
        elif kind == "outage":
            await _send_json(send, 503, {"error": "service_unavailable", "message": "simulated outage"},
                             [*fault, (b"retry-after", str(plan.retry_after_s).encode())])
        elif kind == "error":
            await _send_json(send, 500, {"error": "internal_error", "message": "simulated server error"}, fault)
        elif kind == "throttle":
            await _send_json(send, 429, {"error": "too_many_requests", "message": "simulated throttling"},
                             [*fault, (b"retry-after", str(plan.retry_after_s).encode())])
        elif kind == "ghost":
            await self._ghost(plan, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _ghost(self, plan: FaultPlan, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle the request fully, then hold the response until the client hangs up."""
        held: list[Message] = []
        body_read = asyncio.Event()

        async def inner_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_read.set()
            return message

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, inner_receive, hold)
        if not body_read.is_set():
            await _read_body(receive)
        try:
            # After the body, receive() only returns once the client disconnects.
            await asyncio.wait_for(receive(), timeout=plan.ghost_hold_s)
            return  # the client gave up; the committed change stays, the answer is lost
        except TimeoutError:
            pass
        for message in held:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-sim-fault", b"ghost")]}
            await send(message)

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        if method == "GET":
            await _send_json(send, 200, self.injector.plan.to_json())
            return
        if method != "PUT":
            await _send_json(send, 405, {"error": "method_not_allowed", "message": "use GET or PUT"},
                             [(b"allow", b"GET, PUT")])
            return
        try:
            plan = FaultPlan.from_json(json.loads(await _read_body(receive) or b"{}"))
        except (ValueError, TypeError) as exc:
            await _send_json(send, 422, {"error": "invalid_fault_plan", "message": str(exc)})
            return
        self.injector.set(plan)
        await _send_json(send, 200, plan.to_json())
