"""What every simulator's outbound webhooks share: an ordered outbox drained by one daemon thread, its
retries with exponential backoff, a delivery log, ``flush`` for tests, and the ``/_sim/deliveries`` routes.

A subclass says how one attempt is posted (:meth:`Outbox._post`) and, when its vendor does, which answers
end the attempts at once and how long an answer asks it to wait.
"""

from __future__ import annotations

import email.utils
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    """How an outbox retries: attempts per item and the backoff between them."""

    #: Delivery attempts per item, the first included.
    attempts: int = 5
    #: First retry delay; doubled on each further attempt, never past ``max_backoff_s``.
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    #: Per-attempt HTTP timeout.
    timeout_s: float = 5.0


def retry_after_s(response: httpx.Response) -> float | None:
    """The delay a ``Retry-After`` header asks for (seconds or an HTTP date); ``None`` without a valid one."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class Outbox:
    """Queued items posted in order by one daemon thread; subclasses say how one attempt is posted."""

    def __init__(self, delivery: DeliveryConfig, *, thread_name: str, transport: httpx.BaseTransport | None = None
                 ) -> None:
        self._delivery = delivery
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

    def _post(self, client: httpx.Client, item: dict[str, Any], attempt: int) -> httpx.Response:
        """Post attempt number ``attempt`` (from 1) of ``item``."""
        raise NotImplementedError

    def _final(self, status: int) -> bool:
        """Whether a non-2xx ``status`` ends the attempts at once; by default every one is retried."""
        return False

    def _asked_delay_s(self, response: httpx.Response) -> float | None:
        """The delay a failed answer asks for before the next attempt; by default none is honoured."""
        return None

    def _deliver(self, client: httpx.Client, item: dict[str, Any], entry: dict[str, Any]) -> None:
        delivery = self._delivery
        for attempt in range(1, delivery.attempts + 1):
            wait = min(delivery.backoff_s * 2 ** (attempt - 1), delivery.max_backoff_s)
            status: int | None = None
            error: str | None = None
            try:
                response = self._post(client, item, attempt)
                status = response.status_code
                asked = self._asked_delay_s(response)
                if asked is not None:
                    wait = min(asked, delivery.max_backoff_s)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if self._record(entry, attempt, status, error):
                return
            final = status is not None and self._final(status)
            if final or attempt == delivery.attempts or self._stop.wait(wait):
                self._give_up(entry)
                return

    def _run(self) -> None:
        with httpx.Client(timeout=self._delivery.timeout_s, transport=self._transport) as client:
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
