"""Analytics consumers on the real RabbitMQ: the exchange and its history stream declared at start, a durable
queue per consumer with its own dead letters, replay into one consumer's queue, and the example consumer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
from click.testing import CliRunner

from hub.asyncapi import example_datum
from hub.cli import main
from hub.cli.compose import build_app, build_ingress
from hub.events import CloudEvent, make_event
from hub.ingress.server import bound_socket, serve_in_thread, socket_url
from hub.runtime import Runtime
from hub.topology import history_stream
from tests.conftest import hub_settings
from tests.support.ingress import load, write_sources
from tests.support.rabbit import AMQP_URL

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
#: The demo's event types, in the order a day of the demo's business produces them.
DEMO_TYPES = ["erp.client.upserted.v1", "erp.project.created.v1", "hub.project.changed.v1",
              "dms.workspace.provisioned.v1", "esign.envelope.sent.v1", "esign.envelope.completed.v1",
              "dms.document.state_changed.v1", "hub.engagement.activated.v1", "erp.invoice.drafted.v1",
              "dms.document.retention_applied.v1", "hub.invoice.readiness_changed.v1"]


@pytest.fixture
def channel() -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    yield connection.channel()
    connection.close()


def exists(queue: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def hub(prefix: str, *args: str, input: str | None = None) -> Any:
    """The ``hub`` command with this test's prefix."""
    env = {"HUB_QUEUE_PREFIX": prefix, "HUB_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(main, list(args), env=env, input=input)


def drain(channel: Any, queue: str) -> list[tuple[Any, bytes]]:
    """Every message ready in ``queue`` (acknowledged), in order."""
    found = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return found
        found.append((properties, body))


@pytest.fixture
def served(prefix: str, spans: Any, tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    """The hub on the real servers with its ingress served, dataschema URLs pointing at it."""
    sock = bound_socket()
    url = socket_url(sock)
    runtime = build_app(hub_settings(prefix, public_url=url), embedded=False, tracer_provider=spans[0],
                        span_exporter=spans[1])
    try:
        sources = load(write_sources(tmp_path)[0])
        with serve_in_thread(build_ingress(runtime, sources=sources), sock=sock):
            yield runtime, url
    finally:
        runtime.close()


def day_of_events(runtime: Runtime, day: datetime) -> list[CloudEvent]:
    """A day of the demo's business: an event every 15 minutes, the demo's types in turn."""
    registry = runtime.registry
    made = []
    for slot in range(96):
        event_type = DEMO_TYPES[slot % len(DEMO_TYPES)]
        data = example_datum(registry.resolved(registry.for_type(event_type).name))
        made.append(make_event(registry, type=event_type, source="erp-sim://acme-psa/prod", id=f"day-{slot:03d}",
                               subject=f"ENG-ACME-{slot:04d}", time=day + timedelta(minutes=15 * slot), data=data))
    return made


def test_the_worker_start_declares_the_exchange_and_its_history_stream(app: Runtime, prefix: str,
                                                                        channel: Any) -> None:
    assert not exists(history_stream(prefix))
    app.topics.declare()
    ok = channel.queue_declare(history_stream(prefix), passive=True)
    assert ok.method.queue == history_stream(prefix)
    # the exchange is there before any publish: a consumer binds now
    channel.queue_declare("", exclusive=True)
    channel.queue_bind(channel.queue_declare("", exclusive=True).method.queue, f"{prefix}.events", "erp.#")


def test_hub_worker_declares_the_exchange_and_its_stream_when_it_starts(prefix: str, spans: Any) -> None:
    import threading

    from hub.workers import run_worker
    from tests.support.rabbit import wait_until

    runtime = build_app(hub_settings(prefix), embedded=False, only={"fanout"}, tracer_provider=spans[0],
                        span_exporter=spans[1], migrate=False)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(runtime,), kwargs={"threads": 1, "stop": stop})
    worker.start()
    try:
        assert wait_until(lambda: exists(history_stream(prefix)), timeout=60)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()


def test_a_consumer_gets_a_durable_quorum_queue_with_its_own_dead_letters_before_any_publish(
    app: Runtime, prefix: str, channel: Any
) -> None:
    result = hub(prefix, "consumers", "add", "bi", "--bind", "erp.project.#", "--bind", "hub.invoice.*.v1",
                 "-o", "json")
    assert result.exit_code == 0, result.output
    told = json.loads(result.output)
    assert told["queue"] == f"{prefix}.consumer.bi" and told["dead_letters"] == f"{prefix}.consumer.bi.dlq"
    assert told["permissions"] == {"configure": "^$", "write": "^$", "read": f"^{prefix}\\.consumer\\.bi$"}
    again = hub(prefix, "consumers", "add", "bi", "--bind", "erp.project.#")
    assert again.exit_code == 0, again.output  # the same declaration is accepted again
    events = day_of_events(app, datetime(2027, 1, 4, tzinfo=UTC))
    for event in events:
        app.topics.publish(event, message_id=event.get_id())
    got = [properties.headers["ce-type"] for properties, _ in drain(channel, f"{prefix}.consumer.bi")]
    assert got == [e.get_type() for e in events
                   if e.get_type().startswith("erp.project.") or e.get_type() == "hub.invoice.readiness_changed.v1"]
    # a message the consumer rejects goes to its own dead-letter queue
    app.topics.publish(events[1], message_id="again")
    method, _, _ = channel.basic_get(f"{prefix}.consumer.bi")
    channel.basic_reject(method.delivery_tag, requeue=False)
    method, properties, _ = next(channel.consume(f"{prefix}.consumer.bi.dlq", inactivity_timeout=30))
    assert method is not None and properties.message_id == "again"
    assert properties.headers["x-death"][0]["reason"] == "rejected"


def test_a_bad_consumer_name_or_binding_key_is_refused(prefix: str) -> None:
    assert "consumer name" in hub(prefix, "consumers", "add", "BI!", "--bind", "#").output
    assert "binding key" in hub(prefix, "consumers", "add", "bi", "--bind", "erp..x").output


def test_replay_copies_a_slice_of_history_into_one_consumers_queue_only(app: Runtime, prefix: str,
                                                                        channel: Any) -> None:
    for name in ("bi", "finance"):
        assert hub(prefix, "consumers", "add", name, "--bind", "erp.#").exit_code == 0
    started = datetime.now(UTC) - timedelta(seconds=2)
    events = day_of_events(app, datetime(2027, 1, 4, tzinfo=UTC))
    for event in events:
        app.topics.publish(event, message_id=event.get_id())
    live = {name: len(drain(channel, f"{prefix}.consumer.{name}")) for name in ("bi", "finance")}
    assert live["bi"] == live["finance"] > 0
    result = hub(prefix, "events", "replay", "--since", started.isoformat(), "--type", "erp.invoice.drafted.v1",
                 "--type", "erp.project.created.v1", "--to", f"{prefix}.consumer.bi", "--yes", "-o", "json")
    assert result.exit_code == 0, result.output
    told = json.loads(result.output)
    wanted = [e for e in events if e.get_type() in ("erp.invoice.drafted.v1", "erp.project.created.v1")]
    assert (told["read"], told["copied"]) == (len(events), len(wanted))
    copies = drain(channel, f"{prefix}.consumer.bi")
    assert [(p.headers["ce-id"], p.message_id, body) for p, body in copies] == [
        (e.get_id(), e.get_id(), e.get_data()) for e in wanted]
    assert "x-stream-offset" not in copies[0][0].headers
    assert drain(channel, f"{prefix}.consumer.finance") == []  # the other consumer sees nothing again
    # a second replay reads the first one's end mark as nothing
    second = hub(prefix, "events", "replay", "--since", started.isoformat(), "--to", f"{prefix}.consumer.finance",
                 "--yes", "-o", "json")
    assert json.loads(second.output)["copied"] == len(events)


def test_replay_stops_at_its_mark_while_events_keep_coming(app: Runtime, prefix: str, channel: Any) -> None:
    from hub.history import replay

    assert hub(prefix, "consumers", "add", "bi", "--bind", "nothing.live.here.v1").exit_code == 0
    started = datetime.now(UTC) - timedelta(seconds=2)
    events = day_of_events(app, datetime(2027, 1, 4, tzinfo=UTC))
    for event in events[:10]:
        app.topics.publish(event, message_id=event.get_id())

    def more_traffic(_: str) -> None:  # published while the replay runs: after its mark
        event = events[10 + len(more)]
        app.topics.publish(event, message_id=event.get_id())
        more.append(event)

    more: list[CloudEvent] = []
    result = replay(AMQP_URL, prefix=prefix, since=started, to_queue=f"{prefix}.consumer.bi", on_copy=more_traffic)
    assert (result.read, result.copied, len(more)) == (10, 10, 10)
    assert [p.headers["ce-id"] for p, _ in drain(channel, f"{prefix}.consumer.bi")] == [
        e.get_id() for e in events[:10]]


def test_replay_into_a_queue_that_does_not_exist_is_refused(app: Runtime, prefix: str) -> None:
    app.topics.declare()
    result = hub(prefix, "events", "replay", "--since", "1h", "--to", f"{prefix}.consumer.nobody", "--yes")
    assert result.exit_code == 1 and "does not exist" in result.output


def run_example(*args: str) -> list[dict[str, Any]]:
    """Run examples/consumer.py to its --count; its JSON lines."""
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "consumer.py"), *args], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_example_consumer_replays_a_day_of_demo_traffic_and_consumes_live(
    served: tuple[Runtime, str], prefix: str, tmp_path: Path
) -> None:
    runtime, url = served
    assert hub(prefix, "consumers", "add", "bi", "--bind", "#").exit_code == 0
    started = datetime.now(UTC) - timedelta(seconds=2)
    day = datetime(2027, 1, 4, tzinfo=UTC)
    events = day_of_events(runtime, day)
    for event in events:
        runtime.topics.publish(event, message_id=event.get_id())
    replayed = run_example("replay", "--stream", history_stream(prefix), "--since",
                           started.isoformat().replace("+00:00", "Z"), "--count", str(len(events)))
    assert [line["id"] for line in replayed] == [e.get_id() for e in events]
    assert replayed[0]["time"] == "2027-01-04T00:00:00Z" and replayed[-1]["time"] == "2027-01-04T23:45:00Z"
    for line, event in zip(replayed, events, strict=True):
        payload = event.get_data()
        assert isinstance(payload, bytes)
        assert line["data"] == json.loads(json.dumps(runtime.registry.decode(event.get_type(), payload),
                                                     default=lambda value: value.isoformat()))
    # live, with an older revision of the invoice: what v2 added is skipped
    readers = tmp_path / "readers"
    readers.mkdir()
    older = json.loads((ROOT / "schemas" / "history" / "erp.invoice.drafted.v1" / "1.avsc").read_text())
    (readers / "erp.invoice.drafted.v1.avsc").write_text(json.dumps(older))
    live = run_example("live", "--amqp-url", AMQP_URL, "--queue", f"{prefix}.consumer.bi", "--count",
                       str(len(events)), "--reader-schemas", str(readers))
    assert [line["id"] for line in live] == [e.get_id() for e in events]
    invoice = next(line for line in live if line["type"] == "erp.invoice.drafted.v1")
    assert sorted(invoice["data"]) == sorted(field["name"] for field in older["fields"])
    assert url.startswith("http://127.0.0.1:")
    # data that does not decode is rejected to the consumer's dead-letter queue, and the next event is handled
    broken, good = events[0], events[1]
    runtime.topics.publish(CloudEvent(dict(broken.get_attributes()), b"\xff\xff\xff"), message_id="broken")
    runtime.topics.publish(good, message_id="good")
    assert [line["id"] for line in run_example("live", "--queue", f"{prefix}.consumer.bi", "--count", "1")] == [
        good.get_id()]
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        method, properties, _ = next(connection.channel().consume(f"{prefix}.consumer.bi.dlq", inactivity_timeout=30))
        assert method is not None and properties.message_id == "broken"
    finally:
        connection.close()


def test_a_history_stream_declared_with_other_retention_stops_the_hub_naming_the_settings(
    app: Runtime, prefix: str
) -> None:
    from hub.errors import ConfigurationError
    from hub.topics import RabbitTopicBus
    from hub.topology import StreamRetention

    app.topics.declare()
    other = RabbitTopicBus(AMQP_URL, exchange=f"{prefix}.events", retention=StreamRetention("1D", 10 * 1024**3))
    try:
        with pytest.raises(ConfigurationError, match=r"HUB_EVENTS_MAX_AGE.*inequivalent arg 'x-max-age'"):
            other.declare()
    finally:
        other.close()


def test_a_consumer_user_with_the_printed_permissions_reads_its_queue_and_nothing_else(
    served: tuple[Runtime, str], prefix: str
) -> None:
    import secrets
    import urllib.parse

    runtime, _ = served
    added = hub(prefix, "consumers", "add", "bi", "--bind", "erp.#", "-o", "json")
    permissions = json.loads(added.output)["permissions"]
    user, password = f"{prefix}-bi", secrets.token_hex(16)  # no leading "-", which rabbitmqctl reads as an option
    subprocess.run(["rabbitmqctl", "-q", "add_user", user, password], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", "/", user, permissions["configure"],
                        permissions["write"], permissions["read"]], check=True, capture_output=True, timeout=60)
        event = day_of_events(runtime, datetime(2027, 1, 4, tzinfo=UTC))[1]
        runtime.topics.publish(event, message_id=event.get_id())
        url = f"amqp://{user}:{urllib.parse.quote(password)}@127.0.0.1:5672/%2F"
        assert [line["id"] for line in run_example("live", "--amqp-url", url, "--queue", f"{prefix}.consumer.bi",
                                                   "--count", "1")] == [event.get_id()]
        refused = subprocess.run([sys.executable, str(ROOT / "examples" / "consumer.py"), "replay", "--amqp-url",
                                  url, "--stream", history_stream(prefix), "--count", "1"],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0 and "ACCESS_REFUSED" in refused.stderr
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", user], check=False, capture_output=True, timeout=60)
