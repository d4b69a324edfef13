"""What reaches ``hub.events``: a durable queue of the run bound to every routing key, read in a thread that
reconnects across broker outages, counting the copies of each event by (``ce-source``, ``ce-id``).

A copy the hub published twice arrives as two messages; a message of ours redelivered after a lost
connection (``redelivered``) is not counted again, so what is counted twice was published twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pika
import pika.exceptions

from hub.errors import HubError
from hub.registry import SchemaRegistry
from hub.topics import EXCHANGE


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class TopicCounter:
    """Counts the copies of every event published on the hub's topic exchange (``<prefix>.events``) from the
    moment :meth:`start` returns."""

    def __init__(self, amqp_url: str, queue: str, *, exchange: str = EXCHANGE,
                 inspect: Callable[[bytes], None] = lambda _: None) -> None:
        self._url, self.queue, self.exchange = amqp_url, queue, exchange
        self._inspect = inspect  # sees every header block and body (the secret canaries)
        self._registry = SchemaRegistry.load()
        self._lock = threading.Lock()
        self.copies: Counter[tuple[str, str]] = Counter()
        #: (event type, project code) of every event seen at least once (the code from its data; its subject when
        #: the data has none), with the monotonic time it was first seen.
        self.first_seen: dict[tuple[str, str], float] = {}
        self.last_message = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-topic", daemon=True)

    def start(self) -> TopicCounter:
        """Declare and bind the queue (durable, on the broker's disk), then consume in the background."""
        self._declare()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop consuming (the queue stays until the broker goes)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _declare(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self._url))
        try:
            channel = connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            channel.queue_declare(self.queue, durable=True)
            channel.queue_bind(self.queue, self.exchange, routing_key="#")
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except (pika.exceptions.AMQPError, OSError):
                self._stop.wait(0.5)  # the broker is down or restarting: connect again

    def _consume(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self._url))
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=500)
            for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.5):
                if self._stop.is_set():
                    return
                if method is None:
                    continue
                self._count(properties, body, redelivered=bool(method.redelivered))
                channel.basic_ack(method.delivery_tag)
        finally:
            if connection.is_open:
                connection.close()

    def _count(self, properties: pika.BasicProperties, body: bytes, *, redelivered: bool) -> None:
        headers = properties.headers or {}
        key = (_text(headers.get("ce-source")), _text(headers.get("ce-id")))
        self._inspect(repr(headers).encode() + body)
        with self._lock:
            self.last_message = time.monotonic()
            if redelivered and key in self.copies:
                return
            self.copies[key] += 1
            self.first_seen.setdefault(self._project(headers, body), self.last_message)

    def _project(self, headers: dict[str, object], body: bytes) -> tuple[str, str]:
        event_type = _text(headers.get("ce-type"))
        try:
            code = self._registry.decode(event_type, body).get("project_code")
        except (HubError, KeyError):
            code = None
        return event_type, str(code or _text(headers.get("ce-subject")))

    def seen(self, event_type: str, project: str) -> float | None:
        """When an event of ``event_type`` about the project ``project`` was first seen (monotonic), or ``None``."""
        with self._lock:
            return self.first_seen.get((event_type, project))

    def copies_of(self, source: str, event_id: str) -> int:
        """How many copies of the event arrived."""
        with self._lock:
            return self.copies[(source, event_id)]

    def duplicated(self) -> int:
        """Copies beyond the first, over every event."""
        with self._lock:
            return sum(count - 1 for count in self.copies.values() if count > 1)
