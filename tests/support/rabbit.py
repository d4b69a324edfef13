"""Helpers that look at the real RabbitMQ the way an operator would."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pika
import pytest

from chaos.servers import RABBIT_BIN, PrivateRabbit, ServerError, scratch_dir
from hub.topology import exchange_name, history_stream

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def queue_depth(name: str) -> int:
    """Messages ready in a queue (0 when it does not exist)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(name, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        if connection.is_open:
            connection.close()


def consumer_counts(names: list[str]) -> list[int]:
    """Consumers attached to each queue (0 when it does not exist), over one connection."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        counts = []
        for name in names:
            channel = connection.channel()
            try:
                counts.append(int(channel.queue_declare(name, passive=True).method.consumer_count))
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                counts.append(0)
        return counts
    finally:
        if connection.is_open:
            connection.close()


#: Actors the tests declare besides the hub's own (tests/support/crash_worker.py).
TEST_ACTORS = ("effect",)
#: Analytics consumers the tests add (``hub consumers add``).
TEST_CONSUMERS = ("bi", "finance", "outside", "inside")


def delete_queues(prefix: str) -> None:
    """Delete the queues a test may have declared under ``prefix`` (quorum queues are costly to leave
    behind): every actor's queue, its ``.DQ`` and its ``.XQ``. Deleting a queue that does not exist is
    a no-op, so no listing (``rabbitmqctl``, half a second a call) is needed."""
    from actors import SPECS

    actors = {spec.name for spec in SPECS} | set(TEST_ACTORS)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for actor in sorted(actors):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{prefix}.{actor}{suffix}")
        for consumer in TEST_CONSUMERS:
            for suffix in ("", ".dlq"):
                channel.queue_delete(f"{prefix}.consumer.{consumer}{suffix}")
        channel.queue_delete(history_stream(prefix))
        channel.exchange_delete(exchange_name(prefix))
        channel.exchange_delete(f"{exchange_name(prefix)}.walled")  # the walls tests' restricted exchange
    finally:
        connection.close()


def set_policy(name: str, pattern: str, definition: str) -> None:
    """Apply a RabbitMQ policy (as an operator would with rabbitmqctl)."""
    subprocess.run(["rabbitmqctl", "-q", "set_policy", "--apply-to", "queues", name, pattern, definition],
                   check=True, capture_output=True, timeout=60)


def clear_policy(name: str) -> None:
    """Remove a policy."""
    subprocess.run(["rabbitmqctl", "-q", "clear_policy", name], check=False, capture_output=True, timeout=60)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def memory_alarm(rabbit: PrivateRabbit) -> bool:
    """Whether a memory alarm is raised on the private node ``rabbit``."""
    status = json.loads(rabbit.ctl("-q", "status", "--formatter", "json"))
    return any(alarm.get("resource") == "memory" for alarm in status["alarms"])


@contextlib.contextmanager
def private_rabbit_node() -> Iterator[PrivateRabbit]:
    """Boot a private RabbitMQ node (about ten seconds; the test is skipped where none can boot), stop and remove it
    afterwards."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        pytest.skip("rabbitmq-server is not installed here: no private node to raise an alarm on")
    base = scratch_dir("hubrmq-")
    node = PrivateRabbit(base)
    try:
        try:
            node.boot()
        except ServerError as exc:
            pytest.skip(f"a private RabbitMQ node did not boot here: {exc}")
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
