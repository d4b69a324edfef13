"""The shared HTTP policy on its own: full-jitter waits, ``Retry-After``, the circuit breaker's states and
counters on an injected clock, and the registry an operator view reads (``httpx.MockTransport``, no sockets);
and the TLS context every outbound client shares."""

from __future__ import annotations

import gc
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from connectors.http import TRIAL_POLL_S, BreakerSnapshot, CircuitBreaker, Http, RetryPolicy, breakers
from hub.errors import CircuitOpen, UpstreamUnavailable


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _http(handler: Callable[[httpx.Request], httpx.Response], *, breaker: CircuitBreaker, target: str = "svc",
          waits: list[float] | None = None, draw: float = 1.0) -> Http:
    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="https://svc.example")
    return Http(client, target=target, breaker=breaker, sleep=(waits if waits is not None else []).append,
                jitter=lambda: draw)


def _failing(sent: list[httpx.Request], status: int = 503, headers: dict[str, str] | None = None
             ) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, headers=headers)
    return handler


def test_the_backoff_is_full_jitter_below_the_exponential_and_never_past_max_wait() -> None:
    policy = RetryPolicy(attempts=5, backoff_s=0.5, max_wait_s=3.0)
    assert [policy.wait(n, retry_after=None, draw=1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert [policy.wait(n, retry_after=None, draw=0.0) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert policy.wait(3, retry_after=None, draw=0.25) == 0.5


def test_retry_after_is_honoured_as_given_and_one_too_long_for_a_worker_thread_gives_up() -> None:
    policy = RetryPolicy(backoff_s=0.2, max_wait_s=5.0)
    assert policy.wait(1, retry_after=2.0, draw=0.0) == 2.0
    assert policy.wait(1, retry_after=30.0, draw=1.0) is None  # the actor's retry takes over
    assert policy.wait(2, retry_after=0.0, draw=1.0) == 0.4  # "now" asks for nothing: the backoff decides


def test_in_call_waits_are_drawn_and_a_retry_after_of_zero_leaves_the_actors_backoff_in_charge() -> None:
    sent: list[httpx.Request] = []
    waits: list[float] = []
    http = _http(_failing(sent, 503, {"retry-after": "0"}), breaker=CircuitBreaker(), waits=waits, draw=0.5)
    with pytest.raises(UpstreamUnavailable) as raised:
        http.request("GET", "/things")
    assert len(sent) == 3 and waits == [0.1, 0.2]  # half of 0.2 and 0.4: the draw, not Retry-After's zero
    assert raised.value.retry_after is None


def test_the_breaker_opens_after_its_threshold_and_refuses_until_reset_without_sending() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, reset_s=10.0, clock=clock)
    sent: list[httpx.Request] = []
    http = _http(_failing(sent), breaker=breaker)
    assert (breaker.state, breaker.consecutive_failures, breaker.times_opened) == ("closed", 0, 0)
    with pytest.raises(UpstreamUnavailable):
        http.request("GET", "/a")
    assert (breaker.state, breaker.consecutive_failures) == ("closed", 1)  # one call, after its three attempts
    with pytest.raises(UpstreamUnavailable):
        http.request("GET", "/a")
    assert (breaker.state, breaker.consecutive_failures, breaker.times_opened) == ("open", 2, 1)
    assert len(sent) == 6
    clock.now += 4.0
    with pytest.raises(CircuitOpen, match="circuit open for svc") as refused:
        http.request("GET", "/a")
    assert refused.value.retry_after == pytest.approx(6.0) and refused.value.target == "svc"
    assert len(sent) == 6 and breaker.open


def test_after_reset_one_trial_call_goes_through_alone_and_its_failure_opens_the_breaker_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_s=10.0, clock=clock)
    sent: list[httpx.Request] = []
    http = _http(_failing(sent), breaker=breaker)
    with pytest.raises(UpstreamUnavailable):
        http.request("GET", "/a")
    clock.now += 10.0
    assert breaker.state == "half_open"
    assert breaker.check("svc") is True  # a trial is out now: everyone else keeps failing fast
    with pytest.raises(CircuitOpen, match="trial call is out") as waiting:
        breaker.check("svc")
    # The trial answers within a call's timeout: the others come back soon, not after a whole reset period.
    assert waiting.value.retry_after == pytest.approx(TRIAL_POLL_S) and waiting.value.reset_s == 10.0
    breaker.record(False)
    assert (breaker.state, breaker.times_opened) == ("open", 2)
    clock.now += 10.0
    before = len(sent)
    with pytest.raises(UpstreamUnavailable, match="answered 503"):
        http.request("GET", "/a")
    assert len(sent) - before == 1  # the trial gets one attempt: its outcome decides at once
    assert (breaker.state, breaker.times_opened) == ("open", 3)


def test_a_successful_trial_closes_the_breaker_and_a_trial_that_never_reports_back_is_replaced() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_s=5.0, clock=clock)
    breaker.record(False)
    clock.now += 5.0
    assert breaker.check("svc") is True
    clock.now += 5.0  # the trial's worker died: after another reset period someone else tries
    assert breaker.state == "half_open" and breaker.check("svc") is True
    breaker.record(True)
    assert (breaker.state, breaker.consecutive_failures, breaker.times_opened) == ("closed", 0, 1)
    assert breaker.check("svc") is False


def test_a_wrong_request_does_not_count_against_the_target() -> None:
    breaker = CircuitBreaker(threshold=1)
    sent: list[httpx.Request] = []
    http = _http(_failing(sent, 400), breaker=breaker)
    with pytest.raises(Exception, match="answered 400"):
        http.request("GET", "/a")
    assert (breaker.state, breaker.consecutive_failures, len(sent)) == ("closed", 0, 1)


def test_breakers_lists_every_live_breaker_by_target_for_an_operator_view() -> None:
    clock = Clock()
    target = f"svc-{uuid.uuid4().hex[:8]}"
    down = _http(_failing([]), breaker=CircuitBreaker(threshold=1, reset_s=30.0, clock=clock), target=target)
    up = _http(lambda _: httpx.Response(200), breaker=CircuitBreaker(), target=f"{target}-b")
    with pytest.raises(UpstreamUnavailable):
        down.request("GET", "/a")
    up.request("GET", "/a")
    mine = [s for s in breakers() if s.target.startswith(target)]
    assert mine == [
        BreakerSnapshot(target=target, state="open", consecutive_failures=1, times_opened=1, threshold=1, reset_s=30.0),
        BreakerSnapshot(target=f"{target}-b", state="closed", consecutive_failures=0, times_opened=0, threshold=5,
                        reset_s=10.0),
    ]
    del down, up
    gc.collect()
    assert not [s for s in breakers() if s.target.startswith(target)]  # a dropped client's breaker goes with it


def test_outbound_clients_read_the_trusted_authorities_once_and_verify_servers_with_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connector's client shares one TLS context: the CA bundle is read once per process, not per client
    (about 80 ms of CPU each), and ``SSL_CERT_FILE`` still names the authorities trusted, as httpx's default."""
    from fastapi import FastAPI

    from connectors import http
    from hub.ingress.server import serve_in_thread
    from tests.support.tls import loopback_tls

    files = loopback_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", files.ca)
    read: list[object] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: read.append(k) or real(*a, **k))
    http._trusted_authorities.cache_clear()
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    try:
        with serve_in_thread(app, tls=files.server) as url:
            clients = [http.outbound_client(timeout=5.0) for _ in range(3)]
            try:
                assert [c.get(f"{url}/ping").json() for c in clients] == [{"ok": True}] * 3
            finally:
                for client in clients:
                    client.close()
        assert read == [{"cafile": files.ca}]
        monkeypatch.delenv("SSL_CERT_FILE")
        http._trusted_authorities.cache_clear()
        with (serve_in_thread(app, tls=files.server) as url, http.outbound_client(timeout=5.0) as stranger,
              pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED")):
            stranger.get(f"{url}/ping")  # the test authority is not in certifi's bundle
    finally:
        http._trusted_authorities.cache_clear()
