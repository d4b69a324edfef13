"""Dead letters on the real RabbitMQ: a failed retry re-enqueue, a poison message, and replay."""

from __future__ import annotations

import json

import dramatiq
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from hub.cli import main
from hub.cli.compose import build_app
from hub.cli.scenario import project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.dlq import list_dead_letters
from hub.events import to_message_body
from hub.idempotency import side_effect_key
from hub.runtime import Runtime
from tests.conftest import hub_settings, start_crash_worker, worker_env
from tests.support.crash_worker import ACTOR, declare_effect_actor
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import clear_policy, queue_depth, set_policy, wait_until
from tests.support.signals import done

pytestmark = pytest.mark.integration


def _dispatcher(app: Runtime) -> Dispatcher:
    declare_effect_actor(app)
    return Dispatcher(app.broker, RoutingTable({"erp.project.created.v1": (ACTOR,)}),
                      queues={ACTOR: app.broker.get_actor(ACTOR).queue_name},
                      known_types=set(app.registry.event_types))


def test_a_retry_whose_re_enqueue_fails_is_dead_lettered_not_lost(app: Runtime, prefix: str) -> None:
    dispatcher = _dispatcher(app)
    queue = f"{prefix}.{ACTOR}"
    # The delay queue is full: two messages wait there for an hour, the worker takes one (delay
    # prefetch 1), the other stays ready, and a max-length of 0 with reject-publish makes RabbitMQ nack
    # the retry's re-enqueue.
    policy = f"{prefix}-full-dq"
    for _ in range(2):
        parked = app.broker.get_actor(ACTOR).message(to_message_body(project_created(app.registry)))
        app.broker.enqueue(parked, delay=3_600_000)
    set_policy(policy, f"^{queue}\\.DQ$", json.dumps({"max-length": 0, "overflow": "reject-publish"}))
    try:
        app.redis.set(f"{prefix}:effect:fail", "1")  # the actor raises a retryable error
        event = project_created(app.registry)
        worker = dramatiq.Worker(app.broker, worker_threads=1, worker_timeout=100)
        worker.delay_prefetch = 1
        worker.start()
        try:
            dispatcher.dispatch(event)
            assert wait_until(lambda: queue_depth(f"{queue}.XQ") == 1, timeout=60)
        finally:
            worker.stop(timeout=10_000)
    finally:
        clear_policy(policy)
    letters = list_dead_letters(app.settings.amqp_url, queue, app.dead_letters)
    assert [letter.event_id for letter in letters] == [event.get_id()]
    assert letters[0].reason is not None
    assert "retry re-enqueue failed" in letters[0].reason["why"]


def test_a_retry_that_cannot_be_enqueued_while_rabbitmq_does_not_answer_is_held_until_it_does(
    prefix: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The actor fails while RabbitMQ does not answer (the worker reaches it through a proxy the test cuts), so its
    retry cannot be enqueued. It used to be dead-lettered, and a broker shutting down gracefully still carried the
    reject: the message was parked for an operator though only the broker had been away."""
    proxy = TcpProxy(("127.0.0.1", 5672))
    app = build_app(hub_settings(prefix, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"),
                    embedded=False, tracer_provider=spans[0], span_exporter=spans[1])
    try:
        dispatcher = _dispatcher(app)
        queue = f"{prefix}.{ACTOR}"
        app.redis.set(f"{prefix}:effect:hold", "1")
        event = project_created(app.registry)
        worker = dramatiq.Worker(app.broker, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            with capture_logs() as logs:
                dispatcher.dispatch(event)
                assert app.redis.blpop([f"{prefix}:effect:reached"], timeout=60) is not None
                proxy.cut()  # RabbitMQ stops answering while the actor runs
                app.redis.rpush(f"{prefix}:effect:go", "1")
                said = lambda: [entry["event"] for entry in logs]  # noqa: E731
                assert wait_until(lambda: "holding a retry until RabbitMQ answers" in said(), timeout=60)
                proxy.restore()
                finished = lambda: done(app.redis, prefix, ACTOR, event.get_source(), event.get_id())  # noqa: E731
                assert wait_until(lambda: finished() or queue_depth(f"{queue}.XQ") > 0, timeout=90)
        finally:
            worker.stop(timeout=10_000)
        assert finished() and queue_depth(f"{queue}.XQ") == 0
        assert app.redis.smembers(f"{prefix}:effect:applied") == {
            side_effect_key(event.get_id(), ACTOR, "apply").encode()}
        assert "held retry enqueued" in said()
        assert "message dead-lettered" not in said()
    finally:
        app.close()
        proxy.close()


def test_a_poison_message_is_parked_after_the_delivery_limit_and_replayed_once(
    app: Runtime, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = _dispatcher(app)
    queue = f"{prefix}.{ACTOR}"
    app.redis.set(f"{prefix}:poison", "1")
    event = project_created(app.registry)
    dispatcher.dispatch(event)
    # Every delivery kills its worker; it is parked after the delivery limit (2) instead of looping.
    crashes = 0
    for _ in range(6):
        if queue_depth(f"{queue}.XQ") == 1:
            break
        worker = start_crash_worker(prefix)
        try:
            wait_until(lambda w=worker: w.poll() is not None or queue_depth(f"{queue}.XQ") == 1, timeout=60)
        finally:
            crashes += worker.poll() == -9
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)
    assert queue_depth(f"{queue}.XQ") == 1
    assert crashes == 2  # HUB_DELIVERY_LIMIT: each death counted once, across the retry copies
    assert queue_depth(queue) == 0

    for key, value in worker_env(prefix).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    listed = runner.invoke(main, ["dlq", "list", "--queue", queue, "--output", "json"])
    assert listed.exit_code == 0, listed.output
    [letter] = json.loads(listed.stdout)
    assert letter["event_id"] == event.get_id()
    assert "PoisonMessage" in str(letter["error"]) or letter["death_reason"] == "delivery_limit"
    assert queue_depth(f"{queue}.XQ") == 1, "listing must not consume dead letters"

    app.redis.delete(f"{prefix}:poison")  # the bug is fixed; replay it
    unasked = runner.invoke(main, ["dlq", "replay", "--queue", queue])  # no terminal to ask on: refused
    assert unasked.exit_code == 2 and "add --yes" in unasked.output and event.get_id()[:8] in unasked.output
    assert queue_depth(f"{queue}.XQ") == 1, "nothing is replayed without a yes"
    replayed = runner.invoke(main, ["dlq", "replay", "--queue", queue, "--yes"])
    assert replayed.exit_code == 0, replayed.output
    assert "1 dead letter(s) replayed" in replayed.output
    again = runner.invoke(main, ["dlq", "replay", "--queue", queue, "--yes"])
    assert again.exit_code == 0 and "no dead letter to replay" in again.output

    worker = start_crash_worker(prefix)
    try:
        assert wait_until(lambda: app.redis.llen(f"{prefix}:effect:calls") == 1, timeout=30)
        # Marked done: from here on every copy of the event is skipped before the actor runs.
        assert wait_until(lambda: done(app.redis, prefix, ACTOR, event.get_source(), event.get_id()), timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert app.redis.llen(f"{prefix}:effect:calls") == 1
    assert queue_depth(f"{queue}.XQ") == 0
