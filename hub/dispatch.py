"""Dispatch: every accepted event is enqueued, confirmed, to each actor subscribed to its type; and, on
the consuming side, each message's event handed to its actor (:func:`declare_actor`).

The publishing side enqueues to each subscriber directly (no router actor): one confirmed publish per
subscriber and no extra broker hop. ``make bench-dispatch`` measures both designs; see
``docs/architecture.md`` for the figures and the reasoning.

The routing table is derived from the actors' declarations (:meth:`RoutingTable.of`, each
:class:`hub.actor.ActorSpec` naming its triggers); ``"*"`` subscribes an actor to every type.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import CurrentMessage
from opentelemetry import trace

from hub.actor import ALL_TYPES, Actor, ActorContext, ActorSpec, DeadLetter, DeadLetterHandler, Emitter, Emitting
from hub.errors import NEVER_RETRIED, BrokerUnavailable, ConfigurationError, NotYet, UnknownEventType
from hub.events import CloudEvent, SchemaLookup, check_event, event_summary, from_message_body, to_message_body
from observability.flight import FlightRecord, Hop
from observability.logging import get_logger
from observability.metrics import PUBLISH_DURATION

log = get_logger(__name__)


class RoutingTable:
    """Event type to subscribed actor names."""

    def __init__(self, routes: Mapping[str, Sequence[str]]) -> None:
        self._routes = {event_type: tuple(actors) for event_type, actors in routes.items()}

    @classmethod
    def of(cls, specs: Iterable[ActorSpec]) -> RoutingTable:
        """The table the actors' declarations imply: each actor under each event type it is triggered by."""
        routes: dict[str, list[str]] = {}
        for spec in specs:
            for event_type in spec.triggers:
                routes.setdefault(event_type, []).append(spec.name)
        return cls(routes)

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
        queues: Mapping[str, str],
        known_types: set[str],
        flight: FlightRecord | None = None,
    ) -> None:
        missing = sorted(actor for actor in routes.actors() if actor not in queues)
        if missing:
            raise ConfigurationError(f"routing table names actors without a queue: {', '.join(missing)}")
        unknown = sorted(t for t in routes.as_dict() if t != ALL_TYPES and t not in known_types)
        if unknown:
            raise ConfigurationError(f"actors are triggered by event types with no schema: {', '.join(unknown)}")
        self.broker = broker
        self.routes = routes
        self.queues = dict(queues)
        self.known_types = known_types
        self.flight = flight

    def check(self) -> None:
        """Fail at start when the table names an actor the broker does not know."""
        missing = sorted(a for a in self.routes.actors() if a not in self.broker.get_declared_actors())
        if missing:
            raise ConfigurationError(f"routing table names undeclared actors: {', '.join(missing)}")

    def dispatch(self, event: CloudEvent, *, parent: Any | None = None) -> list[Message[Any]]:
        """Enqueue ``event`` to every subscriber; returns the messages once all were confirmed.

        ``parent`` is the message being processed when an actor emits the event: its business
        journey (root id) and trace carry on.
        """
        if event.get_type() not in self.known_types:
            raise UnknownEventType(f"no schema for event type {event.get_type()!r}")
        root_id = parent.options.get("hub_event", {}).get("root_id") if parent is not None else None
        messages = event_messages(event, self.routes, self.queues, root_id=root_id,
                                  parent_message_id=parent.message_id if parent is not None else None)
        sent = []
        for message in messages:
            started = time.time()
            try:
                sent.append(self.broker.enqueue(message))
            except BrokerConnectionError as exc:
                raise BrokerUnavailable(f"enqueue to {message.queue_name} not confirmed: {exc}") from None
            PUBLISH_DURATION.labels("worker").observe(time.time() - started)
            if self.flight is not None:
                self.flight.record(published_hop(message, started_at=started,
                                                 duration_ms=(time.time() - started) * 1000))
        log.debug("event dispatched", event_id=event.get_id(), subscribers=len(sent))
        return sent


def event_messages(event: CloudEvent, routes: RoutingTable, queues: Mapping[str, str], *,
                   root_id: str | None = None, parent_message_id: str | None = None) -> list[Message[Any]]:
    """The Dramatiq message of ``event`` for each subscribed actor, on the actor's queue: the one message
    builder of every publisher (the dispatcher, the ingress). Pure; the publisher adds the trace context."""
    summary = event_summary(event, root_id=root_id)
    body = to_message_body(event)
    options: dict[str, Any] = {"hub_event": summary}
    if parent_message_id is not None:
        options["hub_parent"] = parent_message_id
    return [Message(queue_name=queues[actor], actor_name=actor, args=(body,), kwargs={}, options=dict(options))
            for actor in routes.subscribers(event.get_type())]


def published_hop(message: Message[Any], *, started_at: float, duration_ms: float) -> Hop:
    """The flight-record hop of one confirmed enqueue, whoever published it (in the current trace)."""
    event = message.options["hub_event"]
    return Hop(root_id=str(event["root_id"]), event_id=str(event["id"]), event_type=str(event["type"]),
               actor=message.actor_name, message_id=message.message_id,
               parent_message_id=message.options.get("hub_parent"), outcome="published", attempt=0,
               started_at=started_at, duration_ms=duration_ms, error=None, trace_id=_trace_id())


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


# -- the consuming side: a message's event back into an actor's hands


def _options(spec: ActorSpec) -> dict[str, Any]:
    options: dict[str, Any] = {"throws": NEVER_RETRIED}
    if spec.max_retries is not None:
        options["max_retries"] = spec.max_retries
    if spec.dead_letters_to is not None:
        options["on_dead_letter"] = spec.dead_letters_to
    return options


def declare_actor(broker: dramatiq.Broker, actor: Actor, *, prefix: str, registry: SchemaLookup,
                  emitter: Emitter) -> dramatiq.Actor[Any, Any]:
    """Declare ``actor`` on ``broker`` from its spec: the message's event decoded and validated, handed to
    ``actor.handle`` with a context that emits through ``emitter`` in the message's journey and trace.

    A message of a type the actor does not take here is a newer hub's (a rolling upgrade: a new worker routes a
    type it added to the actor's queue, which older workers still consume): it waits for a worker that takes it
    (:class:`NotYet`, up to ``HUB_PREREQUISITE_WAIT_S``), instead of being dead-lettered by this one."""
    spec = actor.spec

    def run(event_body: dict[str, Any]) -> None:
        event = from_message_body(event_body)
        triggers = actor.spec.triggers
        if triggers and ALL_TYPES not in triggers and event.get_type() not in triggers:
            raise NotYet(f"{spec.name} in this worker does not take {event.get_type()}: a newer hub routed it here; "
                         "waiting for a worker that takes it", prerequisite="worker")
        data = check_event(event, registry)
        actor.handle(ActorContext(spec=spec, registry=registry, emitter=emitter,
                                  parent=CurrentMessage.get_current_message(), event=event,
                                  decode=lambda: registry.decode(event.get_type(), data)))

    run.__doc__ = type(actor).__doc__
    declared: dramatiq.Actor[Any, Any] = dramatiq.actor(
        broker=broker, actor_name=spec.name, queue_name=spec.queue(prefix), **_options(spec))(run)
    return declared


def declare_dead_letters(broker: dramatiq.Broker, handler: DeadLetterHandler, *, prefix: str, registry: SchemaLookup,
                         emitter: Emitter) -> dramatiq.Actor[Any, Any]:
    """Declare the actor told of every other actor's dead letters (``(message, reason)`` arguments)."""
    spec = handler.spec

    def run(message: dict[str, Any], reason: dict[str, str]) -> None:
        letter = DeadLetter(message=message, why=reason.get("why", "failed"), error=reason.get("error", ""))
        handler.handle_dead_letter(letter, Emitting(spec=spec, registry=registry, emitter=emitter,
                                                    parent=CurrentMessage.get_current_message()))

    run.__doc__ = type(handler).__doc__
    declared: dramatiq.Actor[Any, Any] = dramatiq.actor(
        broker=broker, actor_name=spec.name, queue_name=spec.queue(prefix), **_options(spec))(run)
    return declared
