"""Dispatch: every accepted event is enqueued, confirmed, to each actor subscribed to its type.

The publishing side enqueues to each subscriber directly (no router actor): one confirmed publish per
subscriber and no extra broker hop. ``make bench-dispatch`` measures both designs; see
``docs/architecture.md`` for the figures and the reasoning.

The routing table is data handed in by the composition root (``actors/routes.py``); ``"*"``
subscribes an actor to every type.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.errors import BrokerConnectionError
from opentelemetry import trace

from hub.errors import BrokerUnavailable, UnknownEventType
from hub.events import CloudEvent, event_summary, to_message_body
from observability.flight import FlightRecord, Hop
from observability.logging import get_logger

log = get_logger(__name__)

#: Subscribes an actor to every event type.
ALL_TYPES = "*"


class RoutingTable:
    """Event type to subscribed actor names."""

    def __init__(self, routes: Mapping[str, Sequence[str]]) -> None:
        self._routes = {event_type: tuple(actors) for event_type, actors in routes.items()}

    def subscribers(self, event_type: str) -> tuple[str, ...]:
        """The actors that must receive ``event_type``, in a stable order."""
        specific = self._routes.get(event_type, ())
        wildcard = tuple(a for a in self._routes.get(ALL_TYPES, ()) if a not in specific)
        return specific + wildcard

    def actors(self) -> set[str]:
        """Every actor named in the table."""
        return {actor for actors in self._routes.values() for actor in actors}

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        """The table, for documentation and the CLI."""
        return dict(self._routes)


class Dispatcher:
    """Enqueues events to their subscribers on the broker."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        routes: RoutingTable,
        *,
        known_types: set[str],
        flight: FlightRecord | None = None,
    ) -> None:
        self.broker = broker
        self.routes = routes
        self.known_types = known_types
        self.flight = flight

    def check(self) -> None:
        """Fail at start when the table names an actor the broker does not know."""
        missing = sorted(a for a in self.routes.actors() if a not in self.broker.get_declared_actors())
        if missing:
            raise UnknownEventType(f"routing table names undeclared actors: {', '.join(missing)}")

    def dispatch(self, event: CloudEvent, *, parent: Any | None = None) -> list[Message[Any]]:
        """Enqueue ``event`` to every subscriber; returns the messages once all were confirmed.

        ``parent`` is the message being processed when an actor emits the event: its business
        journey (root id) and trace carry on.
        """
        if event.get_type() not in self.known_types:
            raise UnknownEventType(f"no schema for event type {event.get_type()!r}")
        root_id = None
        options: dict[str, Any] = {}
        if parent is not None:
            root_id = parent.options.get("hub_event", {}).get("root_id")
            options["hub_parent"] = parent.message_id
        summary = event_summary(event, root_id=root_id)
        body = to_message_body(event)
        sent = []
        for actor_name in self.routes.subscribers(event.get_type()):
            actor = self.broker.get_actor(actor_name)
            message: Message[Any] = Message(
                queue_name=actor.queue_name,
                actor_name=actor_name,
                args=(body,),
                kwargs={},
                options={**options, "hub_event": summary},
            )
            started = time.time()
            try:
                sent.append(self.broker.enqueue(message))
            except BrokerConnectionError as exc:
                raise BrokerUnavailable(f"enqueue to {actor.queue_name} not confirmed: {exc}") from None
            if self.flight is not None:
                self.flight.record(Hop(
                    root_id=str(summary["root_id"]), event_id=event.get_id(), event_type=event.get_type(),
                    actor=actor_name, message_id=message.message_id,
                    parent_message_id=options.get("hub_parent"), outcome="published", attempt=0,
                    started_at=started, duration_ms=(time.time() - started) * 1000, error=None,
                    trace_id=_trace_id(),
                ))
        log.debug("event dispatched", event_id=event.get_id(), subscribers=len(sent))
        return sent


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
