"""The Box simulator served over real HTTP for tests, with an endpoint receiving its webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from hub.ingress.server import serve_in_thread
from simulators.box import BoxSimConfig, create_app
from simulators.kit import http

#: Small upload parts, so that a test uploads a few kilobytes in several parts.
PART_SIZE = 1024


class WebhookReceiver:
    """Serve :attr:`app`; ``POST /box`` records each delivery's raw body and headers (answering 200), after
    answering 503 to the first ``fail_first``."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        self.app = FastAPI()
        self.app.post("/box")(self.receive)

    async def receive(self, request: Request) -> Response:
        """Record the delivery."""
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response(status_code=503)
        self.deliveries.append((await request.body(), dict(request.headers)))
        return Response(status_code=200)


@dataclass
class BoxSim:
    """A running simulator: its URL and config, and a receiver of its webhooks."""

    url: str
    config: BoxSimConfig
    receiver: WebhookReceiver
    receiver_url: str
    admin: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = http.client(base_url=f"{self.url}/_sim", timeout=30.0)

    def state(self) -> dict[str, Any]:
        """``GET /_sim/state``."""
        body: dict[str, Any] = self.admin.get("/state").json()
        return body

    def faults(self, **plan: Any) -> None:
        """``PUT /_sim/faults`` with ``plan``."""
        assert self.admin.put("/faults", json=plan).status_code == 200

    def flush(self) -> None:
        """Wait until every webhook delivery is made or given up."""
        assert self.admin.post("/deliveries/flush", params={"timeout_s": 20}).status_code == 200


@contextmanager
def running_box(**overrides: Any) -> Iterator[BoxSim]:
    """The simulator (upload sessions from 2 KiB in 1 KiB parts, http webhooks to loopback) and a receiver."""
    options: dict[str, Any] = {"min_session_file_size": 2 * PART_SIZE, "part_size": PART_SIZE,
                               "http_webhook_hosts": frozenset({"127.0.0.1"}), "webhook_backoff_s": 0.05}
    config = BoxSimConfig(**{**options, **overrides})
    receiver = WebhookReceiver()
    with serve_in_thread(receiver.app) as endpoint, serve_in_thread(create_app(config)) as url:
        sim = BoxSim(url, config, receiver, f"{endpoint}/box")
        try:
            yield sim
        finally:
            sim.admin.close()
