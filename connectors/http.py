"""What every outbound connector shares: timeouts, retries honouring ``Retry-After``, a circuit breaker
per target, idempotency keys, tracing, and the mapping of HTTP failures onto the hub's error tree.

A client gets an injected ``httpx.Client`` (``httpx.MockTransport`` in unit tests, the simulators
over real HTTP in integration tests, the real service in production) and calls :meth:`Http.request`.
Retries here are short and few (a blip); anything longer is the actor's retry with backoff, which
survives a worker restart.

Waits between in-call attempts (:meth:`RetryPolicy.wait`): the server's ``Retry-After`` when it asks
for one, as given; otherwise *full jitter* (a uniform draw between 0 and the exponential backoff, as in
AWS's "Exponential Backoff and Jitter"), so workers that failed together do not retry together. A wait
longer than ``max_wait_s`` is not waited: the call gives up and the actor's retry takes over. A
``Retry-After: 0`` asks for no particular wait: the backoff applies, and the error handed to the actor
carries no ``retry_after``, so the actor's backoff decides instead of an immediate re-run (a hot loop
that burns the actor's attempts in moments and trips the breaker).

The retry loop is written here rather than taken from stamina or tenacity, on purpose. It retries on
answers (status codes) as well as on exceptions, takes its wait from the answer's ``Retry-After``,
gives up (rather than sleeps) when that wait is too long for a worker thread, asks the breaker before
every attempt but tells it the outcome once per call, and opens one CLIENT span per attempt. stamina can
express most of it (its backoff hook may return a wait or refuse a retry) but keeps its sleep and its
random source global (``stamina.set_testing``), so a unit test could no longer see the waits of one
client; tenacity injects ``sleep`` but needs a custom wait, a stop that recomputes the wait, and result
predicates: more adapter code than the loop itself. The sleep and the jitter draw are injected instead.

Every client trusts the same certificate authorities through one TLS context per process
(:func:`outbound_client`): httpx would otherwise read the CA bundle again for each client it makes, about 80 ms of
CPU each.

The breakers are visible: :attr:`CircuitBreaker.state` (``closed``, ``open``, ``half_open``) and its
counters, and :func:`breakers` lists every live breaker by target, for an operator view or a metrics
exporter.
"""

from __future__ import annotations

import email.utils
import functools
import os
import random
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from hub.errors import CircuitOpen, UpstreamRejected, UpstreamUnavailable
from observability.metrics import breaker_state
from observability.tracing import inject_headers

#: Statuses worth retrying: timeout, conflict-in-progress, throttling, server errors.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

#: How soon a call refused while a half-open trial is out comes back (seconds).
TRIAL_POLL_S = 1.0

#: A breaker's state: calls pass, calls are refused, or one trial call decides.
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class RetryPolicy:
    """In-call retries: ``attempts`` in all, full-jitter exponential from ``backoff_s``, never waiting past
    ``max_wait_s``."""

    attempts: int = 3
    backoff_s: float = 0.2
    max_wait_s: float = 5.0

    def wait(self, attempt: int, *, retry_after: float | None, draw: float) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (from 1), or None to give up now.

        ``retry_after``: the server's ``Retry-After``, honoured as given when positive (a zero or a past
        date asks for nothing the backoff does not give). ``draw``: a uniform number in [0, 1] that picks
        the jittered wait between 0 and the exponential backoff (capped at ``max_wait_s``).
        """
        if retry_after is not None and retry_after > 0:
            return retry_after if retry_after <= self.max_wait_s else None
        return draw * min(self.backoff_s * 2.0 ** (attempt - 1), self.max_wait_s)


@dataclass(frozen=True)
class BreakerSnapshot:
    """One breaker's state at one moment, as an operator view or a metrics exporter reads it."""

    target: str
    state: BreakerState
    consecutive_failures: int
    times_opened: int
    threshold: int
    reset_s: float


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed requests (each after its in-call retries, so blips
    do not trip it); while open, calls fail at once for ``reset_s``; then it is half-open: one trial call
    goes through (the others keep failing fast), and its outcome closes or opens it again."""

    def __init__(self, *, threshold: int = 5, reset_s: float = 10.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._since = 0.0  # when it opened, or when the half-open trial went through
        self._failures = 0
        self._opened = 0
        self._lock = threading.Lock()

    def check(self, target: str) -> bool:
        """Raise :class:`~hub.errors.CircuitOpen` while open (or while a trial call is out); True when this
        call is the half-open trial, whose outcome alone decides.

        While a trial is out, the refusal asks to come back within ``TRIAL_POLL_S`` rather than a whole reset
        period: the trial usually answers within a call's timeout, and a successful one closes the breaker
        for everyone waiting."""
        with self._lock:
            if self._state == "closed":
                return False
            waited = self._clock() - self._since
            if waited < self.reset_s:
                left = self.reset_s - waited
                if self._state == "open":
                    raise CircuitOpen(f"circuit open for {target}", target=target, retry_after=left,
                                      reset_s=self.reset_s)
                raise CircuitOpen(f"circuit half-open for {target}, a trial call is out", target=target,
                                  retry_after=min(left, TRIAL_POLL_S), reset_s=self.reset_s)
            # Open long enough, or a trial that never reported back (its worker died): this caller tries.
            self._state, self._since = "half_open", self._clock()
            return True

    def record(self, ok: bool) -> None:
        """Count a call's outcome."""
        with self._lock:
            if ok:
                self._state, self._failures = "closed", 0
                return
            self._failures += 1
            if self._state == "half_open" or (self._state == "closed" and self._failures >= self.threshold):
                self._state, self._since = "open", self._clock()
                self._opened += 1

    @property
    def state(self) -> BreakerState:
        """``closed``; ``open`` (calls refused); ``half_open`` (the next call, or the one out, is the trial)."""
        with self._lock:
            return self._current()

    @property
    def open(self) -> bool:
        """Whether calls are currently refused (or wait for a trial)."""
        return self.state != "closed"

    @property
    def consecutive_failures(self) -> int:
        """Failed calls since the last success."""
        return self._failures

    @property
    def times_opened(self) -> int:
        """How often it has opened (a failed trial opens it again)."""
        return self._opened

    def snapshot(self, target: str) -> BreakerSnapshot:
        """The state and counters now, under ``target``."""
        with self._lock:
            return BreakerSnapshot(target=target, state=self._current(), consecutive_failures=self._failures,
                                   times_opened=self._opened, threshold=self.threshold, reset_s=self.reset_s)

    def _current(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._since >= self.reset_s:
            return "half_open"
        return self._state


class _Breakers:
    """The live breakers of this process by target; weak, so a closed client's breaker drops out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: weakref.WeakKeyDictionary[CircuitBreaker, str] = weakref.WeakKeyDictionary()

    def add(self, target: str, breaker: CircuitBreaker) -> None:
        with self._lock:
            self._targets[breaker] = target

    def snapshot(self) -> list[BreakerSnapshot]:
        with self._lock:
            pairs = list(self._targets.items())
        return sorted((breaker.snapshot(target) for breaker, target in pairs),
                      key=lambda s: (s.target, s.state, s.times_opened))


_BREAKERS = _Breakers()


def breakers() -> list[BreakerSnapshot]:
    """Every live circuit breaker of this process, by target (one per target and client, so one per
    target in a worker): what an operator view shows and a metrics exporter exports."""
    return _BREAKERS.snapshot()


@functools.cache
def _trusted_authorities() -> ssl.SSLContext:
    """The certificate authorities httpx trusts by default (``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else
    certifi's bundle), read once per process; one context serves every client and thread."""
    import certifi

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


def outbound_client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` with ``options``, verifying servers against the process's shared TLS context."""
    return httpx.Client(verify=_trusted_authorities(), **options)


def json_of(response: httpx.Response) -> Any:
    """The answer's body as JSON, decoded by orjson: the bulk reads (a reconciliation's hundred thousand batch
    answers) spend more time decoding than anything else on the client's side; the values are the same as
    ``response.json()``'s."""
    return orjson.loads(response.content)


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
    """One target's HTTP policy around an injected ``httpx.Client``.

    ``sleep`` and ``jitter`` (a draw in [0, 1)) are injectable so unit tests neither wait nor guess.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        target: str,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        self._jitter = jitter
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("hub.connectors")
        _BREAKERS.add(target, self.breaker)

    def _outcome(self, ok: bool) -> None:
        """Tell the breaker a call's outcome, and the metrics its state."""
        self.breaker.record(ok)
        breaker_state(self.target, self.breaker.state)

    def back_off(self, attempt: int, *, retry_after: float | None) -> bool:
        """Wait before attempt ``attempt + 1`` as the policy says (the server's ``Retry-After`` when positive, else
        jittered backoff); False, without waiting, when that wait is too long for a worker thread."""
        wait = self.retry.wait(attempt, retry_after=retry_after, draw=self._jitter())
        if wait is None:
            return False
        self._sleep(wait)
        return True

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

        Raises ``UpstreamUnavailable`` (retryable; ``retry_after`` only when the server asked for a positive
        wait, so a ``Retry-After: 0`` leaves the actor's backoff in charge instead of a hot loop) or
        ``UpstreamRejected``. A POST or PATCH is retried only when it carries an ``Idempotency-Key`` or the
        caller knows a repeat is harmless (``retry_safe``: a create that fails on conflict, a PATCH that sets
        values). The half-open breaker's trial call gets one attempt.
        """
        sent_headers = dict(headers or {})
        if idempotency_key:
            sent_headers["Idempotency-Key"] = idempotency_key
        retry_safe = retry_safe or method.upper() in _IDEMPOTENT_METHODS or idempotency_key is not None
        attempts = self.retry.attempts if retry_safe else 1
        last: UpstreamUnavailable | None = None
        for attempt in range(1, attempts + 1):
            trial = self.breaker.check(self.target)
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
                        self._outcome(True)
                        return response
                    if response.status_code not in RETRYABLE_STATUS:
                        self._outcome(True)  # the service answered; the request was wrong
                        span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
                        raise UpstreamRejected(f"{self.target}: {method.upper()} {url} answered "
                                               f"{response.status_code}")
                    asked = retry_after_s(response)  # a zero (or a past date) asks for no particular wait
                    last = UpstreamUnavailable(f"{self.target}: answered {response.status_code}",
                                               retry_after=asked or None)
                span.set_status(Status(StatusCode.ERROR, str(last)))
            if trial or attempt == attempts:
                break
            wait = self.retry.wait(attempt, retry_after=last.retry_after, draw=self._jitter())
            if wait is None:
                break  # a long wait belongs to the actor's retry, not to a blocked worker thread
            self._sleep(wait)
        assert last is not None
        self._outcome(False)  # a request that failed after its retries: the target may be down
        raise last
