"""The ingress's access log: one structured line per request, never a key, a signature or a body.

The handlers note what they learnt in the request's state (``hub_source_id``, ``hub_event_types``,
``hub_problem``, ``hub_trace_id``); this ASGI middleware times the request, reads the status from the
response start and writes the line once the response is sent (or the request failed).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability.logging import get_logger

log = get_logger("hub.ingress.access")
#: Event types named on one line at most (a batch may hold 500 events of a few types).
MAX_TYPES = 5


class AccessLog:
    """Pure ASGI middleware writing ``request`` lines on the ``hub.ingress.access`` logger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and log it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._write(scope, status, (time.perf_counter() - started) * 1000)

    @staticmethod
    def _write(scope: Scope, status: int, duration_ms: float) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        route = scope.get("route")
        types = sorted(state.get("hub_event_types") or ())
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "route": getattr(route, "path", None) or "(no route)",
            "status": status,
            "duration_ms": round(duration_ms, 2),
        }
        for name, value in (("source_id", state.get("hub_source_id")), ("problem", state.get("hub_problem")),
                            ("trace_id", state.get("hub_trace_id"))):
            if value:
                fields[name] = value
        if types:
            fields["event_types"] = types[:MAX_TYPES] + ([f"+{len(types) - MAX_TYPES} more"]
                                                       if len(types) > MAX_TYPES else [])
        (log.warning if status >= 500 else log.info)("request", **fields)
