"""What the dispatch benchmark's publisher and worker processes share: settings, actors, events, counters.

Both sides declare the same actors on their own broker (Dramatiq needs the declaration to route and to
consume):

- ``bench_sub_0..K-1``: no-op subscribers; each processed message increments ``<prefix>:bench:done``.
- ``bench_router``: the router design's actor; it re-dispatches the event to the K subscribers with a
  :class:`hub.dispatch.Dispatcher`, the current message as parent (the journey carries on).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage, Middleware

from hub.cli.scenario import acme_engagement, project_created
from hub.dispatch import Dispatcher, RoutingTable
from hub.events import CloudEvent, from_message_body
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from hub.settings import Settings, load_settings

#: The event type dispatched (the ERP's project-created event).
EVENT_TYPE = "erp.project.created.v1"
#: The router design's actor.
ROUTER = "bench_router"


def bench_settings(prefix: str) -> Settings:
    """The hub's settings for a benchmark run on the real servers."""
    return load_settings(queue_prefix=prefix, embedded="off", log_level="WARNING", log_format="console")


def subscriber_names(count: int) -> tuple[str, ...]:
    """Names of the ``count`` subscriber actors."""
    return tuple(f"bench_sub_{i}" for i in range(count))


def done_key(prefix: str) -> str:
    """Redis counter of subscriber messages processed."""
    return f"{prefix}:bench:done"


def ready_key(prefix: str, pid: int) -> str:
    """Set by a worker process once it consumes."""
    return f"{prefix}:bench:ready:{pid}"


def stats_key(prefix: str, pid: int) -> str:
    """Hash where a worker process reports its counters (``published``, ``failed``)."""
    return f"{prefix}:bench:worker:{pid}"


def declare_subscribers(runtime: Runtime, count: int) -> list[Any]:
    """Declare the no-op subscriber actors; each counts its processed messages in Redis."""
    prefix, client = runtime.queue_prefix, runtime.redis
    key = done_key(prefix)
    declared = []
    for name in subscriber_names(count):

        def subscriber(event_body: dict[str, Any]) -> None:
            """No work beyond counting: what is measured is the messaging around it."""
            client.incr(key)

        declare = dramatiq.actor(broker=runtime.broker, actor_name=name, queue_name=f"{prefix}.{name}")
        declared.append(declare(subscriber))
    return declared


def dispatcher_for(runtime: Runtime, routes: RoutingTable) -> Dispatcher:
    """A dispatcher configured exactly like the hub's own (broker, known types, flight record...), other routes.

    Copying ``runtime.dispatcher`` (built by ``hub.cli.compose.build_app``) keeps the benchmark on the code path
    the hub runs, whatever the dispatcher's configuration becomes.
    """
    if runtime.dispatcher is None:
        raise RuntimeError("build the runtime with hub.cli.compose.build_app first (it attaches the dispatcher)")
    dispatcher = copy.copy(runtime.dispatcher)
    dispatcher.routes = routes
    dispatcher.check()
    return dispatcher


def direct_dispatcher(runtime: Runtime, count: int) -> Dispatcher:
    """A dispatcher sending the event type straight to the ``count`` subscribers."""
    return dispatcher_for(runtime, RoutingTable({EVENT_TYPE: subscriber_names(count)}))


def declare_router(runtime: Runtime, count: int) -> Any:
    """Declare the router actor: it dispatches each event it receives to the ``count`` subscribers.

    Needs :class:`dramatiq.middleware.CurrentMessage` on the broker for the parent message (added here
    when missing).
    """
    if not any(isinstance(m, CurrentMessage) for m in runtime.broker.middleware):
        runtime.broker.add_middleware(CurrentMessage())
    fan = direct_dispatcher(runtime, count) if count else None

    def bench_router(event_body: dict[str, Any]) -> None:
        """Decode the event and enqueue it, confirmed, to each subscriber."""
        if fan is None:
            raise RuntimeError("router declared without subscribers")
        fan.dispatch(from_message_body(event_body), parent=CurrentMessage.get_current_message())

    declare = dramatiq.actor(broker=runtime.broker, actor_name=ROUTER, queue_name=f"{runtime.queue_prefix}.{ROUTER}")
    return declare(bench_router)


def router_dispatcher(runtime: Runtime) -> Dispatcher:
    """The publisher's dispatcher in the router design: every event goes once to the router."""
    return dispatcher_for(runtime, RoutingTable({EVENT_TYPE: (ROUTER,)}))


def declare_all(runtime: Runtime, count: int) -> None:
    """Declare subscribers and router (both processes do the same)."""
    declare_subscribers(runtime, count)
    declare_router(runtime, count)


def make_events(registry: SchemaRegistry, count: int, *, tag: str) -> list[CloudEvent]:
    """``count`` distinct project-created events (distinct ids and project codes)."""
    base = acme_engagement()
    return [project_created(registry, data={**base, "project_code": f"ENG-{tag}-{i:06d}"}) for i in range(count)]


class EnqueueCounter(Middleware):
    """Counts the messages this process enqueued (confirmed) and the actor failures it saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.published = 0
        self.failed = 0

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        """One confirmed publish."""
        with self._lock:
            self.published += 1

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        """Count failures (a benchmark with failures is not a clean measurement)."""
        if exception is not None:
            with self._lock:
                self.failed += 1

    def snapshot(self) -> dict[str | bytes, int]:
        """The counters, for the stats hash."""
        with self._lock:
            return {"published": self.published, "failed": self.failed}


def read_worker_stats(client: redis.Redis[bytes], prefix: str, pids: list[int]) -> dict[str, int]:
    """Sum of the counters reported by the worker processes ``pids``."""
    total = {"published": 0, "failed": 0}
    for pid in pids:
        for field, value in client.hgetall(stats_key(prefix, pid)).items():
            name = field.decode()
            if name in total:
                total[name] += int(value)
    return total
