"""The fan-out's topic publishes: one confirming channel per process (the hub's) against one per thread.

``python -m bench.confirms`` (``make bench-confirms``, about a minute): ``--threads`` threads each publish
``--messages / threads`` hub events, confirmed and persistent, on a topic exchange of the run's own with a history
stream and one quorum queue bound (as ``hub.events`` is, with one subscriber), two ways, alternating within each
repetition:

- ``per-thread`` (the baseline, the hub's design before): each thread on a blocking pika channel of its own, one
  unconfirmed message at a time;
- ``window`` (the hub's :class:`hub.topics.RabbitTopicBus`): every thread on one channel
  (:class:`hub.confirms.ConfirmWindow`), confirms awaited per publish, RabbitMQ acknowledging them together.

Printed per way: messages/s, the publishing process's CPU and RabbitMQ's CPU per message, the most publishes
awaiting their confirm at once; then the window's ratios to the baseline of the same repetitions. Written to
``bench/results/confirms.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika

from bench.common import (
    AMQP_URL,
    BenchError,
    Stats,
    cpu_of,
    exit_on_sigterm,
    format_table,
    machine_info,
    new_prefix,
    now_iso,
    percentile,
    server_pids,
    write_report,
)
from hub.cli.scenario import project_created
from hub.events import to_amqp
from hub.registry import SchemaRegistry
from hub.topics import RabbitTopicBus
from hub.topology import StreamRetention, stream_of

WAYS = ("per-thread", "window")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Exchange:
    """The run's topic exchange, its history stream and one subscriber's quorum queue."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}.events"
        self.queue = f"{prefix}.subscriber"
        self.retention = StreamRetention("1h", 1024**3)
        declaring = RabbitTopicBus(AMQP_URL, exchange=self.name, retention=self.retention)
        try:
            declaring.declare()
        finally:
            declaring.close()
        with self._channel() as channel:
            channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(self.queue, self.name, routing_key="#")

    @staticmethod
    @contextlib.contextmanager
    def _channel() -> Iterator[Any]:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            yield connection.channel()
        finally:
            connection.close()

    def purge(self) -> None:
        """Empty the subscriber's queue between phases (the stream keeps its history; it is deleted at the end)."""
        with self._channel() as channel:
            channel.queue_purge(self.queue)

    def delete(self) -> None:
        """Remove the exchange, the stream and the queue."""
        with self._channel() as channel:
            channel.queue_delete(self.queue)
            channel.queue_delete(stream_of(self.name))
            channel.exchange_delete(self.name)


def _per_thread(exchange: Exchange, body: bytes, properties: pika.BasicProperties, routing_key: str
                ) -> tuple[Callable[[], Callable[[], None]], Callable[[], None], Callable[[], int]]:
    """(a thread's publisher factory, close, most in flight) for the baseline."""
    connections: list[Any] = []
    lock = threading.Lock()

    def publisher() -> Callable[[], None]:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        with lock:
            connections.append(connection)
        channel = connection.channel()
        channel.confirm_delivery()
        return lambda: channel.basic_publish(exchange.name, routing_key, body, properties)

    def close() -> None:
        for connection in connections:
            connection.close()

    return publisher, close, lambda: 1  # a blocking confirming channel holds one unconfirmed message at a time


def _window(exchange: Exchange, body: bytes, properties: pika.BasicProperties, routing_key: str
            ) -> tuple[Callable[[], Callable[[], None]], Callable[[], None], Callable[[], int]]:
    bus = RabbitTopicBus(AMQP_URL, exchange=exchange.name, retention=exchange.retention)
    bus.declare()
    window = bus.window
    return (lambda: lambda: window.publish(exchange.name, routing_key, body, properties), bus.close,
            lambda: window.in_flight_max)


def _busy(ms: float) -> None:
    """Hold the interpreter for ``ms`` of CPU, as a worker thread's own work on a message does."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def phase(way: str, exchange: Exchange, *, threads: int, messages: int, work_ms: float = 0.0) -> dict[str, float]:
    """Publish ``messages`` from ``threads`` threads one way, each doing ``work_ms`` of CPU work before each publish;
    messages/s, CPU ms per message and the publish's wait (p50, p99)."""
    event = project_created(SchemaRegistry.load())
    message = to_amqp(event)
    properties = pika.BasicProperties(headers=message.headers, content_type=message.content_type,
                                      delivery_mode=pika.DeliveryMode.Persistent, message_id=event.get_id())
    make, close, in_flight = (_per_thread if way == "per-thread" else _window)(exchange, message.body, properties,
                                                                              event.get_type())
    rabbit = server_pids()["rabbitmq"]
    publishers = [make() for _ in range(threads)]  # connected before the clock starts, both ways
    start = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    waits: list[float] = []

    def run(publish: Callable[[], None], count: int) -> None:
        start.wait()
        mine = []
        try:
            for _ in range(count):
                if work_ms:
                    _busy(work_ms)
                began = time.perf_counter()
                publish()
                mine.append(time.perf_counter() - began)
        except BaseException as exc:  # reported after the phase
            failures.append(exc)
        waits.extend(mine)

    counts = [messages // threads + (1 if n < messages % threads else 0) for n in range(threads)]
    workers = [threading.Thread(target=run, args=(publish, count)) for publish, count in zip(publishers, counts,
                                                                                              strict=True)]
    for worker in workers:
        worker.start()
    rabbit_before, own_before = cpu_of(rabbit), _own_cpu_s()
    began = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    own, rabbit_after = _own_cpu_s() - own_before, cpu_of(rabbit)
    most = in_flight()
    close()
    if failures:
        raise BenchError(f"{way}: {len(failures)} publishes failed; first: {failures[0]}")
    result = {"msgs_per_s": messages / seconds, "client_cpu_ms": own * 1000 / messages, "in_flight_max": most,
              "wait_p50_ms": percentile(waits, 0.50) * 1000, "wait_p99_ms": percentile(waits, 0.99) * 1000}
    if rabbit_before is not None and rabbit_after is not None:
        result["rabbitmq_cpu_ms"] = (rabbit_after - rabbit_before) * 1000 / messages
    return result


def run(*, threads: int, messages: int, repeats: int, work_ms: float = 0.0) -> dict[str, Any]:
    """Every repetition measures both ways, the order alternating; returns the report."""
    exchange = Exchange(new_prefix())
    samples: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    try:
        for rep in range(repeats):
            for way in (WAYS if rep % 2 == 0 else tuple(reversed(WAYS))):
                exchange.purge()
                result = phase(way, exchange, threads=threads, messages=messages, work_ms=work_ms)
                samples[way].append(result)
                shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
                print(f"  rep {rep + 1}/{repeats} {way}: {shown}", flush=True)
    finally:
        exchange.delete()
    metrics = ("msgs_per_s", "client_cpu_ms", "rabbitmq_cpu_ms", "wait_p50_ms", "wait_p99_ms")
    summary = {way: {m: Stats.of([s[m] for s in samples[way] if m in s]) for m in metrics
                     if any(m in s for s in samples[way])} for way in WAYS}
    ratios = {m: Stats.of([w[m] / b[m] for w, b in zip(samples["window"], samples["per-thread"], strict=True)
                           if m in w and m in b and b[m]])
              for m in metrics if all(m in s for s in samples["window"] + samples["per-thread"])}
    rows = [[way, *(summary[way][m].show(3 if m != "msgs_per_s" else 0) if m in summary[way] else "-"
                    for m in metrics), max(int(s["in_flight_max"]) for s in samples[way])] for way in WAYS]
    rows.append(["window / per-thread, same repetition", *(ratios[m].show(2) if m in ratios else "-"
                                                           for m in metrics), ""])
    print(format_table(["way", "msgs/s", "client CPU ms/msg", "RabbitMQ CPU ms/msg", "wait p50 ms", "wait p99 ms",
                        "most in flight"], rows))
    return {"when": now_iso(), "machine": machine_info(), "threads": threads, "messages": messages, "work_ms": work_ms,
            "repeats": repeats, "samples": samples,
            "summary": {way: {m: s.as_dict() for m, s in summary[way].items()} for way in WAYS},
            "ratios_window_to_per_thread": {m: s.as_dict() for m, s in ratios.items()}}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Topic publishes: one confirming channel per process against one "
                                                 "per thread, on the real RabbitMQ.")
    parser.add_argument("--threads", type=int, default=8, help="publishing threads (default 8, as hub worker)")
    parser.add_argument("--messages", type=int, default=6000, help="messages per phase (default 6000)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of both ways (default 5)")
    parser.add_argument("--work-ms", type=float, default=0.0,
                        help="CPU work per message before its publish, in each thread (default 0)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.messages < args.threads or args.repeats < 1:
        parser.error("need --threads >= 1, --messages >= --threads and --repeats >= 1")
    exit_on_sigterm()
    print(f"topic publishes: {args.threads} threads, {args.messages} messages per phase, {args.repeats} repetitions")
    try:
        report = run(threads=args.threads, messages=args.messages, repeats=args.repeats, work_ms=args.work_ms)
    except BenchError as exc:
        sys.exit(f"confirms benchmark failed: {exc}")
    print(f"written to {write_report('confirms', report)}")


if __name__ == "__main__":
    main()
