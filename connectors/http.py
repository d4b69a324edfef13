"""What every outbound connector shares: timeouts, retries honouring ``Retry-After``, a circuit breaker
per target, idempotency keys, tracing, and the mapping of HTTP failures onto the hub's error tree.

A client gets an injected ``httpx.Client`` (``httpx.MockTransport`` in unit tests, the simulators
over real HTTP in integration tests, the real service in production) and calls :meth:`Http.request`.
Retries here are short and few (a blip); anything longer is the actor's retry with backoff, which
survives a worker restart.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from hub.errors import UpstreamRejected, UpstreamUnavailable
from observability.tracing import inject_headers

#: Statuses worth retrying: timeout, conflict-in-progress, throttling, server errors.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class RetryPolicy:
    """In-call retries: ``attempts`` in all, exponential from ``backoff_s``, never waiting past ``max_wait_s``."""

    attempts: int = 3
    backoff_s: float = 0.2
    max_wait_s: float = 5.0


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed requests (each after its in-call retries, so blips
    do not trip it); while open, calls fail at once for ``reset_s``, then one trial call goes through."""

    def __init__(self, *, threshold: int = 5, reset_s: float = 10.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def check(self, target: str) -> None:
        """Raise ``UpstreamUnavailable`` while open; after ``reset_s`` one trial call is let through."""
        with self._lock:
            if self._opened_at is None:
                return
            waited = self._clock() - self._opened_at
            if waited < self.reset_s:
                raise UpstreamUnavailable(f"circuit open for {target}", retry_after=self.reset_s - waited)
            self._opened_at = self._clock()  # half-open: this caller tries, the others keep failing fast

    def record(self, ok: bool) -> None:
        """Count a call's outcome."""
        with self._lock:
            if ok:
                self._failures, self._opened_at = 0, None
                return
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self._clock()

    @property
    def open(self) -> bool:
        """Whether calls are currently refused."""
        return self._opened_at is not None


def retry_after_s(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), when the response has one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Http:
    """One target's HTTP policy around an injected ``httpx.Client``."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        target: str,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("hub.connectors")

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool = False,
        ok_statuses: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send, retrying what is safe to retry; return a 2xx (or an ``ok_statuses``) response.

        Raises ``UpstreamUnavailable`` (retryable, with ``retry_after``) or ``UpstreamRejected``.
        A POST or PATCH is retried only when it carries an ``Idempotency-Key`` or the caller knows a
        repeat is harmless (``retry_safe``: a create that fails on conflict, a PATCH that sets values).
        """
        sent_headers = dict(headers or {})
        if idempotency_key:
            sent_headers["Idempotency-Key"] = idempotency_key
        retry_safe = retry_safe or method.upper() in _IDEMPOTENT_METHODS or idempotency_key is not None
        attempts = self.retry.attempts if retry_safe else 1
        last: UpstreamUnavailable | None = None
        for attempt in range(1, attempts + 1):
            self.breaker.check(self.target)
            with self._tracer.start_as_current_span(f"{method.upper()} {self.target}", kind=SpanKind.CLIENT) as span:
                span.set_attribute("http.request.method", method.upper())
                span.set_attribute("server.address", self.target)
                span.set_attribute("http.request.resend_count", attempt - 1)
                inject_headers(sent_headers)
                try:
                    response = self.client.request(method, url, json=json, params=params, headers=sent_headers)
                except httpx.TimeoutException as exc:
                    last = UpstreamUnavailable(f"{self.target}: timed out ({type(exc).__name__})")
                except httpx.TransportError as exc:
                    last = UpstreamUnavailable(f"{self.target}: unreachable ({type(exc).__name__})")
                else:
                    span.set_attribute("http.response.status_code", response.status_code)
                    if response.is_success or response.status_code in ok_statuses:
                        self.breaker.record(True)
                        return response
                    if response.status_code not in RETRYABLE_STATUS:
                        self.breaker.record(True)  # the service answered; the request was wrong
                        span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
                        raise UpstreamRejected(f"{self.target}: {method.upper()} {url} answered "
                                               f"{response.status_code}")
                    last = UpstreamUnavailable(f"{self.target}: answered {response.status_code}",
                                               retry_after=retry_after_s(response))
                span.set_status(Status(StatusCode.ERROR, str(last)))
            if attempt < attempts:
                wait = last.retry_after if last.retry_after is not None else self.retry.backoff_s * 2 ** (attempt - 1)
                if wait > self.retry.max_wait_s:
                    break  # a long wait belongs to the actor's retry, not to a blocked worker thread
                self._sleep(wait)
        assert last is not None
        self.breaker.record(False)  # a request that failed after its retries: the target may be down
        raise last
