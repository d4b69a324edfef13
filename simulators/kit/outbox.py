"""What every simulator's outbound webhooks share: an outbox that retries each item on its own schedule
until it is acknowledged or its vendor gives up, a delivery log, ``flush`` for tests, ``hold`` and ``release``
(the vendor's deliveries held back, as behind its own queue's delay, to deliver them late and out of order), and
``export`` (the held items taken out as the exact requests the vendor would send, for a test to deliver
itself: late, twice, out of order), and the ``/_sim/deliveries`` routes.

Vendors retry for hours or days, each item on its own: one refused item does not hold up the others.
So an item's first attempt is made in the order items were queued, and a failed one waits for its next
attempt in a schedule (:class:`DeliveryConfig`: backoff from ``backoff_s``, doubling, at most
``max_backoff_s`` apart, for ``horizon_s`` after its first attempt, and at most ``attempts`` attempts
when the vendor counts them) while later items go out. One daemon thread makes every attempt, when it
is due by the outbox's :class:`~simulators.kit.clock.Clock`; a test gives a
:class:`~simulators.kit.clock.ManualClock` and moves it to :meth:`Outbox.next_due` to run a schedule of
days in no time.

A subclass says what one attempt sends (:meth:`Outbox._request`: method, URL, headers with the vendor's
signature, body) and, when its vendor does, which answers end the attempts at once and how long an answer
asks it to wait; a vendor whose retries are not a plain backoff overrides :meth:`DeliveryConfig.wait_s`.
"""

from __future__ import annotations

import base64
import email.utils
import heapq
import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from simulators.kit import http
from simulators.kit.clock import Clock, SystemClock

#: An hour and a day, in seconds.
HOUR_S = 3_600.0
DAY_S = 24 * HOUR_S


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    """How an outbox retries an item until it is acknowledged, and when it gives up on it."""

    #: First retry delay; doubled on each further attempt, never past ``max_backoff_s``.
    backoff_s: float = 0.5
    max_backoff_s: float = HOUR_S
    #: No attempt is made later than this after the item's first one: the item is given up.
    horizon_s: float = DAY_S
    #: Delivery attempts per item, the first included, when the vendor counts them (None: only the horizon).
    attempts: int | None = None
    #: Per-attempt HTTP timeout.
    timeout_s: float = 5.0

    def wait_s(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (from 1) before the next one."""
        return min(self.backoff_s * 2.0 ** min(attempt - 1, 64), self.max_backoff_s)


def retry_after_s(response: httpx.Response) -> float | None:
    """The delay a ``Retry-After`` header asks for (seconds or an HTTP date); ``None`` without a valid one."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class OutboundRequest:
    """One attempt of an item as the vendor sends it: the method, the URL, the headers the vendor sets (its
    signature among them) and the body, byte for byte."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        """The request as JSON (the body in base64, since signatures cover its exact bytes)."""
        return {"method": self.method, "url": self.url, "headers": dict(self.headers),
                "body": base64.b64encode(self.body).decode()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> OutboundRequest:
        """The request :meth:`to_json` wrote."""
        return cls(method=str(value["method"]), url=str(value["url"]), headers=dict(value["headers"]),
                   body=base64.b64decode(value["body"]))


@dataclass(order=True)
class _Due:
    """An item waiting for its next attempt."""

    due: float
    seq: int
    item: dict[str, Any] = field(compare=False)
    entry: dict[str, Any] = field(compare=False)
    attempt: int = field(default=1, compare=False)
    #: When its first attempt was made (None before it).
    first_at: float | None = field(default=None, compare=False)
    #: The outbox's resets before it was queued: a reset forgets it.
    generation: int = field(default=0, compare=False)


class Outbox:
    """Queued items posted from one daemon thread, each retried on its own schedule; subclasses say how one
    attempt is posted. ``keep``: finished items kept in the log (None: all)."""

    def __init__(self, delivery: DeliveryConfig, *, thread_name: str, transport: httpx.BaseTransport | None = None,
                 clock: Clock | None = None, keep: int | None = None, trust_env: bool = True) -> None:
        self._delivery = delivery
        self._thread_name = thread_name
        self._transport = transport
        self._trust_env = trust_env
        self._clock: Clock = clock or SystemClock()
        self._keep = keep
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._log: list[dict[str, Any]] = []
        self._in_flight = 0
        self._generation = 0
        self._cond = threading.Condition()
        self._clock.watch(self._cond)
        self._stopping = False
        self._held = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delivery thread (once)."""
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
                self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the delivery thread; items still waiting are not sent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=timeout_s)

    def _enqueue(self, item: dict[str, Any], described: dict[str, Any]) -> None:
        """Queue ``item`` with its delivery-log entry (``described`` plus the delivery state); returns at once."""
        entry = {**described, "state": "pending", "attempts": 0, "last_status": None, "last_error": None,
                 "statuses": []}
        with self._cond:
            self._log.append(entry)
            heapq.heappush(self._due, _Due(self._clock.now(), next(self._seq), item, entry,
                                           generation=self._generation))
            self._cond.notify_all()
        self.start()

    def deliveries(self) -> list[dict[str, Any]]:
        """A copy of the delivery log, oldest first."""
        with self._cond:
            return [{**entry, "statuses": list(entry["statuses"])} for entry in self._log]

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued item is delivered or given up; ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._due and not self._in_flight, timeout=timeout_s)

    def idle(self, timeout_s: float) -> bool:
        """Wait until no attempt is under way or due by the clock (only later ones wait); ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout=timeout_s)

    def next_due(self) -> float | None:
        """When, by the outbox's clock, the next attempt is due (None: nothing waits)."""
        with self._cond:
            return self._due[0].due if self._due else None

    def hold(self) -> None:
        """Make no attempt until :meth:`release`: items queue up meanwhile (an attempt under way completes)."""
        with self._cond:
            self._held = True
            self._cond.notify_all()

    def release(self) -> None:
        """Attempt again what is due, held items first, in the order they were queued."""
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def export(self) -> list[OutboundRequest]:
        """Take every waiting item out of the queue, unsent, as the request its next attempt would be, in the
        order the attempts are due (first attempts in the order queued); the log says ``exported``. Hold first,
        so that none goes out meanwhile (an attempt under way completes and is not exported)."""
        with self._cond:
            jobs = sorted(self._due)
            self._due.clear()
            for job in jobs:
                job.entry["state"] = "exported"
            self._trim()
            self._cond.notify_all()
        return [self._request(job.item, job.attempt) for job in jobs]

    def reset(self) -> None:
        """Drop waiting items and forget the log (an attempt under way still completes)."""
        with self._cond:
            self._due.clear()
            self._log.clear()
            self._generation += 1
            self._cond.notify_all()

    def _idle(self) -> bool:
        return not self._in_flight and (self._held or not self._due or self._due[0].due > self._clock.now())

    def _request(self, item: dict[str, Any], attempt: int) -> OutboundRequest:
        """What attempt number ``attempt`` (from 1) of ``item`` sends, signed now."""
        raise NotImplementedError

    def _post(self, client: httpx.Client, item: dict[str, Any], attempt: int) -> httpx.Response:
        """Send attempt number ``attempt`` of ``item``."""
        request = self._request(item, attempt)
        return client.request(request.method, request.url, headers=request.headers, content=request.body)

    def _final(self, status: int) -> bool:
        """Whether a non-2xx ``status`` ends the attempts at once; by default every one is retried."""
        return False

    def _asked_delay_s(self, response: httpx.Response) -> float | None:
        """The delay a failed answer asks for before the next attempt; by default none is honoured."""
        return None

    def _next(self) -> _Due | None:
        """The next item whose attempt is due, once it is (None when the outbox stops)."""
        with self._cond:
            while not self._stopping:
                if self._held:
                    self._cond.wait()
                    continue
                if self._due and self._due[0].due <= self._clock.now():
                    self._in_flight += 1
                    return heapq.heappop(self._due)
                self._clock.wait(self._cond, self._due[0].due if self._due else None)
            return None

    def _attempt(self, client: httpx.Client, job: _Due) -> None:
        """Make one attempt of ``job`` and log it; schedule its next attempt unless it is done with."""
        first_at = self._clock.now() if job.first_at is None else job.first_at
        status: int | None = None
        error: str | None = None
        asked: float | None = None
        try:
            response = self._post(client, job.item, job.attempt)
            status = response.status_code
            asked = self._asked_delay_s(response)
        except Exception as exc:  # a network error, or anything else: logged as the attempt's error
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self._in_flight -= 1
            entry = job.entry
            entry.update(attempts=job.attempt, last_status=status, last_error=error)
            entry["statuses"].append(status)
            if status is not None and 200 <= status < 300:
                entry["state"] = "delivered"
            else:
                due = self._retry_due(job, status, asked, first_at)
                if due is None:
                    entry["state"] = "failed"
                elif job.generation == self._generation:  # not forgotten by a reset meanwhile
                    heapq.heappush(self._due, _Due(due, next(self._seq), job.item, entry, job.attempt + 1, first_at,
                                                   job.generation))
            self._trim()
            self._cond.notify_all()

    def _retry_due(self, job: _Due, status: int | None, asked: float | None, first_at: float) -> float | None:
        """When the attempt after a failed one is due, or None when the vendor gives the item up."""
        delivery = self._delivery
        if status is not None and self._final(status):
            return None
        if delivery.attempts is not None and job.attempt >= delivery.attempts:
            return None
        wait = delivery.wait_s(job.attempt) if asked is None else min(asked, delivery.max_backoff_s)
        due = self._clock.now() + wait
        return None if due - first_at > delivery.horizon_s else due

    def _trim(self) -> None:
        while self._keep is not None and len(self._log) > self._keep and self._log[0]["state"] != "pending":
            self._log.pop(0)

    def _run(self) -> None:
        with http.client(timeout=self._delivery.timeout_s, transport=self._transport,
                          trust_env=self._trust_env) as client:
            while (job := self._next()) is not None:
                self._attempt(client, job)


def delivery_routes(outbox: Outbox | None) -> APIRouter:
    """``GET /deliveries``, ``POST /deliveries/flush``, ``/deliveries/hold``, ``/deliveries/release`` and
    ``/deliveries/export`` (``{"requests": [...]}``, see :meth:`Outbox.export`; mount under ``/_sim``)."""
    routes = APIRouter()

    @routes.get("/deliveries")
    async def deliveries() -> dict[str, Any]:
        return {"items": outbox.deliveries() if outbox else []}

    @routes.post("/deliveries/flush")
    def flush(timeout_s: float = Query(10.0, gt=0, le=120)) -> JSONResponse:
        empty = outbox.flush(timeout_s) if outbox else True
        return JSONResponse({"empty": empty}, status_code=200 if empty else 504)

    @routes.post("/deliveries/hold", status_code=204)
    def hold() -> None:
        if outbox:
            outbox.hold()

    @routes.post("/deliveries/release", status_code=204)
    def release() -> None:
        if outbox:
            outbox.release()

    @routes.post("/deliveries/export")
    def export() -> dict[str, Any]:
        return {"requests": [request.to_json() for request in outbox.export()] if outbox else []}

    return routes
