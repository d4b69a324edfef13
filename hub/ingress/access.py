"""The ingress's access log: one ``request`` line per request on the ``hub.ingress.access`` logger, and the
HTTP request metrics, from the route, status and what the handlers noted in the request's state
(``hub_source_id``, ``hub_problem``, ``hub_trace_id``, ``hub_event_types``)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability.logging import get_logger
from observability.metrics import HTTP_DURATION, HTTP_REQUESTS

__all__ = ["MAX_TYPES", "AccessLog"]

access_log = get_logger("hub.ingress.access")
#: Request methods a metric label names (any other is ``other``: a label set stays bounded).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
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
        (access_log.warning if status >= 500 else access_log.info)("request", **fields)
        method = str(fields["method"]) if fields["method"] in _METHODS else "other"
        path = str(fields["route"])
        HTTP_REQUESTS.labels(method, path, str(status), _problem_label(state.get("hub_problem"))).inc()
        HTTP_DURATION.labels(method, path).observe(duration_ms / 1000)


def _problem_label(problem: object) -> str:
    """The problem type of an answer as a metric label: the last part of its URN (``unauthenticated``), or
    ``none``."""
    return str(problem).rpartition(":")[2] if problem else "none"
