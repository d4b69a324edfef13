"""The Graph simulator's outbound HTTP: the ``validationToken`` handshake and change-notification delivery.

As Graph does: on subscription creation it POSTs ``?validationToken=<token>`` (``text/plain``) to the
notification URL and requires, within 10 s, 200 ``text/plain`` with the decoded token as the body.
Notifications are POSTed as JSON from a background thread; an answer other than 2xx (or none within
the timeout) is retried with exponential backoff, a few times, then counted as failed.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx


def validate_endpoint(url: str, *, timeout_s: float) -> str | None:
    """Perform the handshake against ``url``; ``None`` when it passed, else why it failed."""
    token = f"Validation: {secrets.token_urlsafe(24)}"  # Graph's tokens also contain spaces and colons
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            response = client.post(url, params={"validationToken": token},
                                   headers={"Content-Type": "text/plain; charset=utf-8"})
    except httpx.HTTPError as exc:
        return f"the validation request failed: {type(exc).__name__}"
    if response.status_code != 200:
        return f"the endpoint answered {response.status_code} to the validation request"
    if not response.headers.get("content-type", "").startswith("text/plain"):
        return "the validation response is not text/plain"
    if response.text != token:
        return "the validation response does not echo the validation token"
    return None


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    attempt: int = field(default=1, compare=False)


class Notifier:
    """Delivers change notifications from one daemon thread, retrying with backoff."""

    def __init__(self, *, attempts: int = 5, backoff_s: float = 0.2, timeout_s: float = 3.0) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._queue: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.delivered = 0
        self.failed = 0
        self.attempted = 0
        #: The latest deliveries: url, notification ids, attempt, outcome.
        self.log: deque[dict[str, Any]] = deque(maxlen=200)

    def submit(self, url: str, body: dict[str, Any]) -> None:
        """Queue one notification POST (never blocks on the network)."""
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._queue, _Delivery(time.monotonic(), next(self._seq), url, body))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="graph-sim-notifier", daemon=True)
                self._thread.start()
            self._cond.notify()

    @property
    def pending(self) -> int:
        """Notifications not yet delivered nor given up."""
        with self._cond:
            return len(self._queue)

    def clear(self) -> None:
        """Drop pending notifications and zero the counters."""
        with self._cond:
            self._queue.clear()
            self.delivered = self.failed = self.attempted = 0
            self.log.clear()

    def stats(self) -> dict[str, Any]:
        """Counters and the latest deliveries."""
        with self._cond:
            return {"delivered": self.delivered, "failed": self.failed, "attempted": self.attempted,
                    "pending": len(self._queue), "log": list(self.log)}

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; pending notifications are dropped."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._queue)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as client:
            while (delivery := self._next()) is not None:
                try:
                    status: int | str = client.post(delivery.url, json=delivery.body).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                ok = isinstance(status, int) and 200 <= status < 300
                with self._cond:
                    self.attempted += 1
                    self.log.append({"url": delivery.url, "attempt": delivery.attempt, "status": status,
                                     "ids": [n.get("id") for n in delivery.body.get("value", [])]})
                    if ok:
                        self.delivered += 1
                    elif delivery.attempt >= self.attempts:
                        self.failed += 1
                    elif not self._stopping:
                        delivery.due = time.monotonic() + self.backoff_s * 2 ** (delivery.attempt - 1)
                        delivery.attempt += 1
                        heapq.heappush(self._queue, delivery)
