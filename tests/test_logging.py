"""Logging: one JSON line format for everyone, trace and event context inside actors, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import dramatiq
import httpx
import pytest
import structlog
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Retries
from opentelemetry.trace import SpanKind

from observability.logging import (
    LogContextMiddleware,
    configure_logging,
    get_logger,
    redact_secrets,
    warn_unless_before_retries,
)
from observability.tracing import TracingMiddleware
from tests.conftest import configure_test_logging

ROUTED = ("dramatiq", "pika", "aiormq", "aio_pika", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "httpx",
          "httpcore")


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Where configure_logging writes; the logging configuration is undone afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved_level = root.level
    saved = {name: logging.getLogger(name).level for name in ROUTED}
    yield stream
    for handler in [h for h in root.handlers if getattr(h, "stream", None) is stream]:
        root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    configure_test_logging()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def run_worker(broker: StubBroker, queue: str) -> None:
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=1)
    worker.start()
    try:
        broker.join(queue, timeout=5_000)
        worker.join()
    finally:
        worker.stop()


def event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "type": "com.example.sow.signed", "source": "/docusign", "subject": None,
            "root_id": event_id}


def test_a_log_line_inside_an_actor_carries_trace_and_event_context(output, tracing) -> None:
    configure_logging(fmt="json", level="INFO", stream=output)
    provider, exporter = tracing
    broker = StubBroker(middleware=[TracingMiddleware(tracer_provider=provider), LogContextMiddleware()])
    broker.emit_after("process_boot")
    log = get_logger("tests.actor")
    actor = dramatiq.actor(lambda: log.info("syncing sow", value=1200), actor_name="sync_sow",
                           queue_name="q", broker=broker)

    message = actor.send_with_options(hub_event=event("evt-7"))
    run_worker(broker, "q")

    (line,) = [entry for entry in lines(output) if entry["event"] == "syncing sow"]
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")
    assert {k: line[k] for k in ("event_id", "event_type", "event_source", "actor", "message_id",
                                 "attempt", "value", "level", "logger")} == {
        "event_id": "evt-7", "event_type": "com.example.sow.signed", "event_source": "/docusign",
        "actor": "sync_sow", "message_id": message.message_id, "attempt": 1, "value": 1200,
        "level": "info", "logger": "tests.actor",
    }
    assert line["timestamp"].endswith("Z")


def test_the_context_is_cleared_when_a_message_is_done(output) -> None:
    configure_logging(fmt="json", level="INFO", stream=output)
    log = get_logger("tests.after")

    class LogsAfterwards(Middleware):
        # Listed before LogContextMiddleware, so its after-hook runs after that one's.
        def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                                  exception: Any = None) -> None:
            log.info("after message")

    broker = StubBroker(middleware=[LogsAfterwards(), LogContextMiddleware()])
    broker.emit_after("process_boot")
    inside = get_logger("tests.inside")
    actor = dramatiq.actor(lambda: inside.info("inside"), actor_name="a", queue_name="q", broker=broker)

    actor.send_with_options(hub_event=event("evt-1"))
    run_worker(broker, "q")
    actor.send()  # a message without hub_event must not inherit evt-1
    run_worker(broker, "q")

    inside_lines = [entry for entry in lines(output) if entry["event"] == "inside"]
    assert [entry.get("event_id") for entry in inside_lines] == ["evt-1", None]
    after_lines = [entry for entry in lines(output) if entry["event"] == "after message"]
    assert len(after_lines) == 2
    assert all("event_id" not in entry and "actor" not in entry for entry in after_lines)


def test_secrets_are_redacted_by_key_and_in_urls(output) -> None:
    configure_logging(fmt="json", level="INFO", stream=output)
    get_logger("tests.secrets").info(
        "connecting to amqp://hub:s3cret@rabbit:5672/ now",
        password="p4ss",
        client_secret="cs",
        API_KEY="k",
        headers={"Authorization": "Bearer abc", "X-DocuSign-Signature-1": "sig", "Accept": "json"},
        urls=["redis://:r3dis@cache:6379/0", "https://x.example/file?sig=abc&name=a"],
    )

    (line,) = lines(output)
    assert line["event"] == "connecting to amqp://***@rabbit:5672/ now"
    assert line["password"] == line["client_secret"] == line["API_KEY"] == "[redacted]"
    assert line["headers"] == {"Authorization": "[redacted]", "X-DocuSign-Signature-1": "[redacted]",
                               "Accept": "json"}
    assert line["urls"] == ["redis://***@cache:6379/0", "https://x.example/file?sig=[redacted]&name=a"]
    assert "s3cret" not in output.getvalue() and "r3dis" not in output.getvalue()


def test_redact_secrets_can_be_reused_as_a_plain_function() -> None:
    cleaned = redact_secrets(None, "", {"token": "t", "error": "failed: https://u:p@erp/api", "n": 3})
    assert cleaned == {"token": "[redacted]", "error": "failed: https://***@erp/api", "n": 3}


def test_stdlib_log_lines_from_libraries_come_out_as_json(output) -> None:
    configure_logging(fmt="json", level="INFO", stream=output)
    logging.getLogger("dramatiq.worker.Worker").warning("Message %s was skipped.", "m-1")
    logging.getLogger("pika.connection").info("pika chatter below warning is dropped")

    try:
        raise RuntimeError("boom at amqp://u:pw@host/")
    except RuntimeError:
        logging.getLogger("dramatiq.broker").exception("unexpected failure")

    first, second = lines(output)
    assert {k: first[k] for k in ("event", "level", "logger")} == {
        "event": "Message m-1 was skipped.", "level": "warning", "logger": "dramatiq.worker.Worker"}
    assert "timestamp" in first
    assert second["level"] == "error"
    assert "RuntimeError: boom at amqp://***@host/" in second["exception"]


def test_amqp_clients_are_heard_only_at_critical_unless_debugging(output) -> None:
    """pika and aiormq log every failed connection attempt (pika 6 to 8 ERROR lines, some with a traceback);
    the hub says it once per change of state instead."""
    configure_logging(fmt="json", level="INFO", stream=output)
    logging.getLogger("pika.adapters.blocking_connection").error("Connection workflow failed: refused")
    logging.getLogger("aiormq.connection").error("error when creating transport: refused")
    logging.getLogger("aio_pika.connection").warning("connection lost")
    logging.getLogger("pika.connection").critical("a pika failure it cannot report otherwise")
    assert [line["event"] for line in lines(output)] == ["a pika failure it cannot report otherwise"]

    configure_logging(fmt="json", level="DEBUG", stream=output)
    logging.getLogger("pika.adapters.blocking_connection").error("Connection workflow failed: refused again")
    assert lines(output)[-1]["event"] == "Connection workflow failed: refused again"


def test_the_http_client_s_line_per_request_is_heard_only_when_debugging(output) -> None:
    """httpx logs every request it sends at INFO (about 50 per provisioned workspace); not at the hub's INFO."""
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    configure_logging(fmt="json", level="INFO", stream=output)
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        client.get("https://erp.example/api/v1/projects/ENG-1")
        logging.getLogger("httpx").warning("an httpx warning")
    assert [line["event"] for line in lines(output)] == ["an httpx warning"]

    configure_logging(fmt="json", level="DEBUG", stream=output)
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        client.get("https://erp.example/api/v1/projects/ENG-2")
    assert any(line["event"].startswith("HTTP Request: GET") for line in lines(output))


def test_a_consumer_threads_per_restart_lines_are_dropped_but_not_its_unexpected_errors(output) -> None:
    """Dramatiq's consumer threads (one per queue and delay queue) write two lines per restart in an
    outage; the broker's link to RabbitMQ says it once instead (tests/test_reconnects.py)."""
    configure_logging(fmt="json", level="INFO", stream=output)
    thread_log = logging.getLogger("dramatiq.worker.ConsumerThread(hub.fanout.DQ)")
    thread_log.critical("Consumer encountered a connection error: %s", "StreamLostError: Transport indicated EOF")
    thread_log.info("Restarting consumer in %0.2f seconds.", 3.0)
    try:
        raise RuntimeError("a defect")
    except RuntimeError:
        thread_log.critical("Consumer encountered an unexpected error.", exc_info=True)
    logging.getLogger("tests.other").critical("Consumer encountered a connection error: %s", "someone else's")
    (unexpected, other) = lines(output)
    assert unexpected["event"] == "Consumer encountered an unexpected error." and "a defect" in unexpected["exception"]
    assert other["event"] == "Consumer encountered a connection error: someone else's"


def test_configuring_twice_does_not_duplicate_lines(output) -> None:
    configure_logging(fmt="console", level="DEBUG", stream=output)
    configure_logging(fmt="json", level="INFO", stream=output)
    get_logger("tests.once").info("once")
    get_logger("tests.once").debug("below the level")

    assert [entry["event"] for entry in lines(output)] == ["once"]


def test_the_console_format_is_human_readable(output) -> None:
    configure_logging(fmt="console", level="INFO", stream=output)
    get_logger("tests.console").info("workspace provisioned", matter="M-1")

    text = output.getvalue()
    assert "workspace provisioned" in text and "matter=M-1" in text
    assert not text.lstrip().startswith("{")


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging(fmt="json", level="LOUD")


def test_a_middleware_listed_after_retries_is_reported(output) -> None:
    configure_logging(fmt="json", level="INFO", stream=output)
    well_placed, misplaced = LogContextMiddleware(), LogContextMiddleware()
    broker = StubBroker(middleware=[well_placed, Retries(), misplaced])

    assert warn_unless_before_retries(broker, well_placed)
    assert not warn_unless_before_retries(broker, misplaced)
    (line,) = [e for e in lines(output) if e["event"].startswith("middleware placed after Retries")]
    assert line["middleware"] == "LogContextMiddleware"


@pytest.mark.integration
def test_a_failing_message_is_logged_by_its_ids_never_with_its_payload(output, app) -> None:
    """The ERP does not answer, so provisioning fails and is retried: Dramatiq's failure line names the
    message, actor, event id and type, and holds neither ``data_base64`` nor any business value."""
    from hub.cli.scenario import project_created
    from hub.workers import running_worker
    from tests.support.rabbit import wait_until

    configure_logging(fmt="json", level="INFO", stream=output)
    event = project_created(app.registry)
    payload = json.dumps(app.registry.decode(event.get_type(), event.get_data()), default=str)
    assert app.dispatcher is not None
    with running_worker(app, threads=1):
        app.dispatcher.dispatch(event)
        assert wait_until(lambda: any(h.actor == "provisioning" and h.outcome == "retry"
                                      for h in app.flight.hops(event.get_id())), timeout=30)
    text = output.getvalue()
    failures = [line for line in lines(output) if "Failed to process message" in line["event"]]
    assert failures, text
    assert f"event {event.get_id()}, type erp.project.created.v1" in failures[0]["event"]
    assert "actor provisioning" in failures[0]["event"]
    assert "data_base64" not in text
    import base64

    assert base64.b64encode(event.get_data()).decode()[:40] not in text
    assert "ACME operating model redesign" in payload and "ACME operating model redesign" not in text


@pytest.mark.integration
def test_the_ingress_writes_one_access_line_per_request_without_keys_signatures_or_bodies(
    output, app, tmp_path
) -> None:
    import httpx

    from tests.support.ingress import load, serving, signed_headers, write_sources
    from tests.test_ingress_app import bearer, sdk_event, structured

    configure_logging(fmt="json", level="INFO", stream=output)
    path, creds = write_sources(tmp_path)
    headers, body = structured(sdk_event("evt-logged"))
    with serving(app, load(path)) as url:
        accepted = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)})
        signed = signed_headers(creds.webhook_secrets[0], body)
        resent = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **signed})
        refused = httpx.post(f"{url}/v1/events", content=body, headers={**headers, "authorization": "Bearer nope"})
        missing = httpx.get(f"{url}/v1/nowhere")
    assert [r.status_code for r in (accepted, resent, refused, missing)] == [202, 202, 401, 404]
    access = [line for line in lines(output) if line["logger"] == "hub.ingress.access"]
    assert [line["status"] for line in access] == [202, 202, 401, 404]
    first = access[0]
    assert first["event"] == "request" and first["method"] == "POST" and first["route"] == "/v1/events"
    assert first["source_id"] == "erp-acme" and first["event_types"] == ["erp.project.created.v1"]
    assert len(first["trace_id"]) == 32 and first["duration_ms"] >= 0 and "problem" not in first
    assert access[2]["problem"] == "urn:hub:problem:unauthenticated" and "source_id" not in access[2]
    assert access[3]["problem"] == "urn:hub:problem:not-found"
    text = output.getvalue()
    for secret in (creds.api_key, signed["webhook-signature"].split(",", 1)[1], "ENG-ACME-0001", "nope"):
        assert secret not in text


@pytest.mark.integration
def test_a_duplicate_is_skipped_with_one_info_line_of_ids_and_none_of_its_payload(output, app) -> None:
    """Under at-least-once delivery a duplicate is ordinary: one INFO line naming it by its ids (event,
    source, actor, message, idempotency key), none of the event's data, and no WARNING from Dramatiq."""
    import base64

    from hub.cli.scenario import project_created
    from hub.dispatch import Dispatcher, RoutingTable
    from hub.workers import running_worker
    from tests.support.crash_worker import ACTOR, declare_effect_actor
    from tests.support.rabbit import wait_until

    declare_effect_actor(app)
    dispatcher = Dispatcher(app.broker, RoutingTable({"erp.project.created.v1": (ACTOR,)}),
                            queues={ACTOR: app.broker.get_actor(ACTOR).queue_name},
                            known_types=set(app.registry.event_types))
    configure_logging(fmt="json", level="INFO", stream=output)
    event = project_created(app.registry)
    payload = app.registry.decode(event.get_type(), event.get_data())
    with running_worker(app, threads=1):  # one thread: the first copy is done before the second is read
        dispatcher.dispatch(event)
        dispatcher.dispatch(event)
        assert wait_until(lambda: any(hop.actor == ACTOR and hop.outcome == "skipped"
                                      for hop in app.flight.hops(event.get_id())), timeout=30)
    skipped = [line for line in lines(output) if line["event"] == "duplicate skipped"]
    assert len(skipped) == 1, output.getvalue()
    (line,) = skipped
    assert line["level"] == "info"
    assert line["event_id"] == event.get_id() and line["event_source"] == event.get_source()
    assert line["actor"] == ACTOR and line["message_id"] and line["idempotency_key"].startswith(app.queue_prefix)
    allowed = {"event", "level", "logger", "timestamp", "event_id", "event_source", "event_type", "actor",
               "message_id", "attempt", "idempotency_key", "trace_id", "span_id"}
    assert set(line) <= allowed, set(line) - allowed
    text = output.getvalue()
    assert "was skipped" not in text  # Dramatiq's WARNING for the skip is not written
    assert "data_base64" not in text and base64.b64encode(event.get_data()).decode()[:40] not in text
    assert payload["name"] not in text and payload["partner"] not in text


def test_without_a_stream_lines_go_to_the_standard_error_of_the_moment_never_to_stdout(
        output, monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging(fmt="json", level="INFO")
    log = get_logger("tests.stderr")
    stdout, first, second = io.StringIO(), io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("sys.stderr", first)
    log.info("before the swap")
    monkeypatch.setattr("sys.stderr", second)  # a CLI runner's capture, while another thread still logs
    log.info("after the swap")
    assert [entry["event"] for entry in lines(first)] == ["before the swap"]
    assert [entry["event"] for entry in lines(second)] == ["after the swap"]
    assert stdout.getvalue() == ""
