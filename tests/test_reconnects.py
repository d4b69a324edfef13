"""Quiet, bounded reconnects against the real servers: through an outage a worker or the ingress logs a
handful of lines (lost, retrying every N s, restored), not one per attempt of every consumer; credentials the
server refuses stop ``hub worker`` and ``hub serve`` with one clear message and a non-zero exit.

Outages are staged with a TCP proxy in front of the shared RabbitMQ and Redis, which are never stopped;
refused credentials are the shared servers' own answer to a wrong password. Each test waits for the line
that says the state changed, never for a while.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from hub.cli.scenario import project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.runtime import Runtime
from tests.conftest import worker_env
from tests.support.ingress import write_sources
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import consumer_counts, wait_until
from tests.test_startup import Process, hub_process

pytestmark = pytest.mark.integration

#: Lines an outage may cost a process, from the cut to "restored": lost, retrying every N s, restored, and
#: a little room. Before, a 17 s outage cost a worker about 680.
OUTAGE_LINES = 6
#: Every line a process that stops on refused credentials may write, its start included (uvicorn's own
#: start and stop lines aside).
REFUSAL_LINES = 8
WRONG = "not-the-password"


def _queues(app: Runtime) -> list[str]:
    return [f"{spec.queue(app.queue_prefix)}{suffix}" for spec in app.specs.values() for suffix in ("", ".DQ")]


def _outage_lines(process: Process, start: int) -> list[str]:
    """The lines written from ``start`` up to and including the one saying RabbitMQ is restored."""
    restored = next(i for i, line in enumerate(process.lines) if "RabbitMQ connection restored at" in line)
    return process.lines[start:restored + 1]


def test_a_worker_logs_a_rabbitmq_outage_in_a_few_lines_and_consumes_again_once_it_is_restored(
    app: Runtime, prefix: str
) -> None:
    rabbit = TcpProxy(("127.0.0.1", 5672))
    env = worker_env(prefix, HUB_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F",
                     HUB_LOG_LEVEL="INFO", HUB_LOG_FORMAT="json")
    queues = _queues(app)
    dispatcher = Dispatcher(app.broker, RoutingTable({"erp.project.created.v1": ("fanout",)}),
                            queues={"fanout": app.actors["fanout"].queue_name},
                            known_types=set(app.registry.event_types))
    try:
        with hub_process(["worker", "--threads", "2"], env) as worker:
            worker.wait_for("RabbitMQ, Redis and the database answer; starting the consumers")
            assert wait_until(lambda: all(consumer_counts(queues)), timeout=60, interval=0.2)
            start = len(worker.lines)
            rabbit.cut()  # every consumer (one per queue and delay queue) loses its connection
            worker.wait_for(rf"RabbitMQ connection lost at amqp://\*\*\*@127\.0\.0\.1:{rabbit.port}/%2F")
            # Written once the backoff reached its ceiling: five attempts or more have failed by then.
            worker.wait_for(r"RabbitMQ still does not answer at amqp://\*\*\*@127\.0\.0\.1:\d+/%2F after \d+ attempts; "
                            r"retrying every [\d.]+-[\d.]+ s")
            rabbit.restore()
            worker.wait_for(r"RabbitMQ connection restored at amqp://\*\*\*@")
            assert wait_until(lambda: all(consumer_counts(queues)), timeout=60, interval=0.2)
            event = project_created(app.registry)
            dispatcher.dispatch(event)
            assert wait_until(lambda: any(hop.actor == "fanout" and hop.outcome == "ok"
                                          for hop in app.flight.hops(event.get_id())), timeout=60)
            assert worker.stop() == 0
    finally:
        rabbit.close()
    during = _outage_lines(worker, start)
    assert len(during) <= OUTAGE_LINES, "".join(during)
    text = "".join(worker.lines)
    for noise in ("Traceback", "Consumer encountered", "Restarting consumer", '"logger": "pika', "guest:guest"):
        assert noise not in text, noise


def test_the_ingress_logs_a_rabbitmq_outage_in_a_few_lines_and_is_ready_again_once_it_is_restored(
    prefix: str, tmp_path: Path
) -> None:
    rabbit = TcpProxy(("127.0.0.1", 5672))
    path, _ = write_sources(tmp_path)
    env = worker_env(prefix, HUB_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F",
                     HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND="127.0.0.1:0", HUB_LOG_LEVEL="INFO",
                     HUB_LOG_FORMAT="json")
    try:
        with hub_process(["serve"], env) as serve:
            port = int(serve.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
            ready = f"http://127.0.0.1:{port}/readyz"
            assert wait_until(lambda: httpx.get(ready).status_code == 200, timeout=60)
            start = len(serve.lines)
            rabbit.cut()
            serve.wait_for(rf"RabbitMQ connection lost at amqp://\*\*\*@127\.0\.0\.1:{rabbit.port}/%2F")
            assert httpx.get(ready).status_code == 503
            serve.wait_for(r"RabbitMQ still does not answer at .* retrying every")
            rabbit.restore()
            serve.wait_for(r"RabbitMQ connection restored at amqp://\*\*\*@")
            assert wait_until(lambda: httpx.get(ready).status_code == 200, timeout=60)
            serve.stop()
    finally:
        rabbit.close()
    during = [line for line in _outage_lines(serve, start) if '"logger": "hub.ingress.access"' not in line]
    assert len(during) <= OUTAGE_LINES, "".join(during)
    assert "Traceback" not in "".join(serve.lines)


@pytest.mark.parametrize(("command", "server", "variable", "url"), [
    ("worker", "RabbitMQ", "HUB_AMQP_URL", f"amqp://guest:{WRONG}@127.0.0.1:5672/%2F"),
    ("worker", "Redis", "HUB_REDIS_URL", f"redis://:{WRONG}@127.0.0.1:6379/0"),
    ("serve", "RabbitMQ", "HUB_AMQP_URL", f"amqp://guest:{WRONG}@127.0.0.1:5672/%2F"),
    ("serve", "Redis", "HUB_REDIS_URL", f"redis://:{WRONG}@127.0.0.1:6379/0"),
])
def test_credentials_the_server_refuses_stop_the_process_after_a_few_tries_with_one_clear_message(
    prefix: str, tmp_path: Path, command: str, server: str, variable: str, url: str
) -> None:
    path, _ = write_sources(tmp_path)
    env = worker_env(prefix, HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND="127.0.0.1:0", HUB_LOG_LEVEL="INFO",
                     HUB_LOG_FORMAT="json", **{variable: url})
    with hub_process([command], env) as process:
        error = process.wait_for(rf"^Error: {server} at (\S+) refused the hub's credentials 3 times in a row "
                                 rf"\((.+)\); stopping: check the user name and password in {variable}$")
        code = process.popen.wait(timeout=60)
    assert code == 1
    assert error.group(1) == re.sub(r"//[^@]+@", "//***@", url)
    assert ("ACCESS_REFUSED" if server == "RabbitMQ" else "AuthenticationError") in error.group(2)
    text = "".join(process.lines)
    assert WRONG not in text
    hub_lines = [line for line in process.lines if '"logger": "uvicorn.error"' not in line]
    assert len(hub_lines) <= REFUSAL_LINES, text
    assert "Traceback" not in text
