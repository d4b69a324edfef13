"""What every simulator's outbound notifications share: an ordered outbox drained by one daemon
thread, a delivery log, ``flush`` for tests, and the ``/_sim/deliveries`` admin routes.

Imports nothing of the hub: simulators stand for other companies' systems.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse


class Outbox:
    """Queued items posted in order by one daemon thread; subclasses say how one item is delivered."""

    def __init__(self, *, timeout_s: float, thread_name: str, transport: httpx.BaseTransport | None = None
                 ) -> None:
        self._timeout_s = timeout_s
        self._thread_name = thread_name
        self._transport = transport
        self._queue: queue.Queue[tuple[dict[str, Any], dict[str, Any]] | None] = queue.Queue()
        self._log: list[dict[str, Any]] = []
        self._pending = 0
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delivery thread (once)."""
        with self._idle:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
                self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the delivery thread; items still queued are not sent."""
        self._stop.set()
        self._queue.put(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=timeout_s)

    def _enqueue(self, item: dict[str, Any], described: dict[str, Any]) -> None:
        """Queue ``item`` with its delivery-log entry (``described`` plus the delivery state); returns at once."""
        entry = {**described, "state": "pending", "attempts": 0, "last_status": None, "last_error": None,
                 "statuses": []}
        with self._idle:
            self._log.append(entry)
            self._pending += 1
        self.start()
        self._queue.put((item, entry))

    def deliveries(self) -> list[dict[str, Any]]:
        """A copy of the delivery log, oldest first."""
        with self._idle:
            return [{**entry, "statuses": list(entry["statuses"])} for entry in self._log]

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued item is delivered or given up; ``False`` on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def reset(self) -> None:
        """Drop queued items and forget the log (an item in flight still completes)."""
        with self._idle:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._pending -= 1
            self._log.clear()
            self._idle.notify_all()

    def _record(self, entry: dict[str, Any], attempt: int, status: int | None, error: str | None) -> bool:
        """Log one attempt; True when it was delivered (a 2xx)."""
        with self._idle:
            entry.update(attempts=attempt, last_status=status, last_error=error)
            entry["statuses"].append(status)
            if status is not None and 200 <= status < 300:
                entry["state"] = "delivered"
                return True
            return False

    def _give_up(self, entry: dict[str, Any]) -> None:
        with self._idle:
            entry["state"] = "failed"

    def _deliver(self, client: httpx.Client, item: dict[str, Any], entry: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout_s, transport=self._transport) as client:
            while not self._stop.is_set():
                queued = self._queue.get()
                if queued is None:
                    continue
                item, entry = queued
                try:
                    self._deliver(client, item, entry)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()


def delivery_routes(outbox: Outbox | None) -> APIRouter:
    """``GET /deliveries`` and ``POST /deliveries/flush`` (mount under ``/_sim``)."""
    routes = APIRouter()

    @routes.get("/deliveries")
    async def deliveries() -> dict[str, Any]:
        return {"items": outbox.deliveries() if outbox else []}

    @routes.post("/deliveries/flush")
    def flush(timeout_s: float = Query(10.0, gt=0, le=120)) -> JSONResponse:
        empty = outbox.flush(timeout_s) if outbox else True
        return JSONResponse({"empty": empty}, status_code=200 if empty else 504)

    return routes


def outbox_lifespan(outbox: Outbox | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A simulator app's lifespan: the outbox's delivery thread runs while the app serves."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if outbox is not None:
            outbox.start()
        yield
        if outbox is not None:
            outbox.close()

    return lifespan
