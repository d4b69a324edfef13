"""Idempotency on the real RabbitMQ and Redis: duplicates, and workers killed with SIGKILL mid-message.

A naive ``SET key NX`` store fails these tests: after a worker dies holding its claim, the
redelivered message would be skipped as a duplicate and its side effect lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from hub.cli.scenario import project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.conftest import start_crash_worker
from tests.support.crash_worker import ACTOR, declare_effect_actor
from tests.support.rabbit import queue_depth, wait_until
from tests.support.signals import done, finished

pytestmark = pytest.mark.integration


def _dispatcher(app: Runtime) -> Dispatcher:
    declare_effect_actor(app)
    return Dispatcher(app.broker, RoutingTable({"erp.project.created.v1": (ACTOR,)}),
                      queues={ACTOR: app.broker.get_actor(ACTOR).queue_name},
                      known_types=set(app.registry.event_types))


def _calls(client: redis.Redis, prefix: str) -> int:
    return int(client.llen(f"{prefix}:effect:calls"))


def _applied(client: redis.Redis, prefix: str) -> int:
    return int(client.scard(f"{prefix}:effect:applied"))


def test_the_same_event_delivered_twice_runs_its_side_effect_once(app: Runtime, prefix: str) -> None:
    dispatcher = _dispatcher(app)
    event = project_created(app.registry)
    with running_worker(app, threads=2):
        dispatcher.dispatch(event)
        dispatcher.dispatch(event)
        # Both copies may arrive together: one runs, the other waits for the lease, then is skipped.
        assert wait_until(lambda: "skipped" in _outcomes(app, event.get_id()), timeout=30)
    assert _calls(app.redis, prefix) == 1
    outcomes = _outcomes(app, event.get_id())
    assert outcomes.count("ok") == 1
    assert outcomes.count("skipped") == 1


def _outcomes(app: Runtime, event_id: str) -> list[str]:
    return [h.outcome for h in app.flight.hops(event_id) if h.actor == ACTOR]


@pytest.mark.parametrize("crash_point", ["after_claim", "after_effect", "after_done"])
def test_a_worker_killed_mid_message_loses_nothing_and_duplicates_nothing(
    app: Runtime, prefix: str, crash_point: str
) -> None:
    dispatcher = _dispatcher(app)
    app.redis.set(f"{prefix}:crash:{crash_point}", "1")
    event = project_created(app.registry)
    first = start_crash_worker(prefix)
    try:
        dispatcher.dispatch(event)
        assert first.wait(timeout=60) == -9, "the worker should have died at the crash point"
    finally:
        if first.poll() is None:
            first.kill()
    second = start_crash_worker(prefix)
    try:
        assert wait_until(lambda: _applied(app.redis, prefix) == 1, timeout=30)
        assert wait_until(
            lambda: queue_depth(f"{prefix}.{ACTOR}") == 0 and queue_depth(f"{prefix}.{ACTOR}.DQ") == 0,
            timeout=30,
        )
        # The redelivery has been run (or skipped) to the end and the event is marked done: every later copy
        # would be skipped before the actor runs, so the counts below are final.
        assert wait_until(lambda: finished(app.flight, event.get_id(), ACTOR)
                          and done(app.redis, prefix, ACTOR, event.get_source(), event.get_id()), timeout=30)
    finally:
        second.terminate()
        second.wait(timeout=30)
    expected_calls = {"after_claim": 1, "after_effect": 2, "after_done": 1}[crash_point]
    assert _applied(app.redis, prefix) == 1, "the side effect must be applied exactly once"
    assert _calls(app.redis, prefix) == expected_calls
    assert queue_depth(f"{prefix}.{ACTOR}.XQ") == 0


def test_a_redis_outage_retries_the_message_instead_of_running_or_skipping_it(
    prefix: str, spans: object
) -> None:
    from hub.cli.compose import build_app
    from tests.conftest import hub_settings
    from tests.support.netproxy import TcpProxy

    proxy = TcpProxy(("127.0.0.1", 6379))
    provider, exporter = spans  # type: ignore[misc]
    runtime = build_app(hub_settings(prefix, redis_url=f"redis://127.0.0.1:{proxy.port}/0"), embedded=False,
                        tracer_provider=provider, span_exporter=exporter)
    direct = redis.Redis()
    try:
        dispatcher = _dispatcher(runtime)
        event = project_created(runtime.registry)
        proxy.cut()
        with running_worker(runtime, threads=1):
            dispatcher.dispatch(event)
            # While Redis is down the message waits in the delay queue, neither run nor dropped.
            assert wait_until(lambda: _process_spans(exporter) >= 1, timeout=20)
            assert _calls(direct, prefix) == 0
            proxy.restore()
            assert wait_until(lambda: _calls(direct, prefix) == 1, timeout=30)
        assert queue_depth(f"{prefix}.{ACTOR}.XQ") == 0
    finally:
        runtime.close()
        proxy.close()
        direct.close()


def _process_spans(exporter: object) -> int:
    return sum(1 for s in exporter.get_finished_spans() if s.name == f"process {ACTOR}")  # type: ignore[attr-defined]


def test_a_worker_stops_cleanly_on_sigterm(prefix: str, tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    worker = start_crash_worker(prefix, "--heartbeat-file", str(heartbeat))
    try:
        # The first heartbeat comes once the consumers run, after the SIGTERM handler is installed.
        assert wait_until(lambda: heartbeat.exists() or worker.poll() is not None, timeout=60)
        assert worker.poll() is None, "the worker ended before it was told to"
        worker.terminate()
        assert worker.wait(timeout=30) == 0
        assert not heartbeat.exists()  # a clean stop removes it
    finally:
        if worker.poll() is None:
            worker.kill()
