"""Helpers that look at the real RabbitMQ the way an operator would."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pika

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


def delete_queues(prefix: str) -> None:
    """Delete every queue named ``<prefix>.*`` (quorum queues are costly to leave behind)."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True,
                         check=False, timeout=60).stdout
    names = [line.strip() for line in out.splitlines() if line.strip().startswith(prefix + ".")]
    if not names:
        return
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
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
