"""Actors as declared components.

An actor is an object with a :class:`ActorSpec` (its name, the event types that trigger it, how it
fails) and a ``handle(context)`` method; its dependencies (connectors, stores, the policy) come in
through its constructor, never from a global. The composition root declares it on the broker
(:func:`hub.runtime.assemble`): the Dramatiq function decodes and validates the event, builds an
:class:`ActorContext` and calls ``handle``. The routing table is derived from the specs
(:meth:`hub.dispatch.RoutingTable.of`), so it is never written twice.

``context.emit`` and ``context.raise_exception`` publish new events in the journey and trace of the
message being processed. A unit test calls ``handle`` with :func:`unit_context` (a
:class:`RecordingEmitter` collects what the actor emits) and fakes of the actor's dependencies: no
broker, no Redis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from hub.errors import ConfigurationError
from hub.events import CloudEvent, SchemaLookup, make_event
from hub.outbox import Origin, Outbox, Outgoing, publish_pending
from observability.tracing import context_carrier

__all__ = [
    "ALL_TYPES",
    "EXCEPTION_RAISED",
    "Actor",
    "ActorContext",
    "ActorSpec",
    "DeadLetter",
    "DeadLetterHandler",
    "Emitter",
    "Emitting",
    "Mode",
    "RecordingEmitter",
    "unit_context",
]

#: A trigger that subscribes an actor to every event type.
ALL_TYPES = "*"
#: The hub's own event for a case routed to its owner.
EXCEPTION_RAISED = "hub.exception.raised.v1"
#: How a workflow fails: retried from its queue, or stopped at once and routed to its owner.
Mode = Literal["queue_and_retry", "hard_stop"]


@dataclass(frozen=True)
class ActorSpec:
    """What an actor is, where it runs and how it fails: data read by the broker and the middleware."""

    #: The actor's name: its queue is ``<prefix>.<name>``.
    name: str
    #: The event types it takes (``ALL_TYPES`` for every one); none for a dead-letter handler.
    triggers: tuple[str, ...] = ()
    #: The policy workflow whose mode, attempts and owner apply (see :meth:`with_workflow`).
    workflow: str | None = None
    mode: Mode = "queue_and_retry"
    #: Attempts before a message is dead-lettered; None: the hub's ``HUB_MAX_RETRIES`` + 1.
    max_attempts: int | None = None
    #: Who is told of this actor's dead letters (``hub.exception.raised.v1``).
    owner: str = "platform_team"
    #: The actor told of each of this actor's dead letters, if any.
    dead_letters_to: str | None = "exceptions"
    #: The lifetime of the lock it takes on an entity (None: it takes none). A worker that dies holding the
    #: lock keeps the entity locked this long, and every update to it waits as long (``hub.retries``).
    lock_ttl_ms: int | None = None

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of the events this actor emits."""
        return f"hub://{self.name.replace('_', '-')}"

    def queue(self, prefix: str) -> str:
        """The actor's queue name under a queue prefix."""
        return f"{prefix}.{self.name}"

    @property
    def max_retries(self) -> int | None:
        """Retries after the first attempt (None: the hub's default)."""
        if self.mode == "hard_stop":
            return 0
        return None if self.max_attempts is None else max(self.max_attempts - 1, 0)

    @property
    def lock_ms(self) -> int:
        """The lifetime of its entity lock; a ConfigurationError for an actor that declares none."""
        if self.lock_ttl_ms is None:
            raise ConfigurationError(f"actor {self.name!r} takes a lock but declares no lock_ttl_ms")
        return self.lock_ttl_ms

    def with_workflow(self, *, mode: Mode, max_attempts: int, owner: str) -> ActorSpec:
        """This spec with the mode, attempts and owner the policy gives its workflow."""
        return replace(self, mode=mode, max_attempts=max_attempts, owner=owner)

    def with_lock_ttl(self, lock_ttl_ms: int | None) -> ActorSpec:
        """This spec with its entity lock living ``lock_ttl_ms`` (``HUB_LOCK_TTL_MS``); unchanged when None or
        when it takes no lock."""
        if lock_ttl_ms is None or self.lock_ttl_ms is None:
            return self
        return replace(self, lock_ttl_ms=lock_ttl_ms)


class Emitter(Protocol):
    """Where an actor's new events go: the dispatcher, or a recorder in a unit test."""

    def dispatch(self, event: CloudEvent, *, parent: Any | None = None) -> list[Any]:
        """Publish ``event`` to its subscribers, continuing ``parent``'s journey and trace."""
        ...


@dataclass(kw_only=True)
class Emitting:
    """Publishing new events as an actor: its source, the parent message, the clock."""

    spec: ActorSpec
    registry: SchemaLookup
    emitter: Emitter
    #: The Dramatiq message being processed: its business journey and trace carry on.
    parent: Any | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The time, from the injected clock."""
        return self.clock()

    def emit(self, type: str, data: Mapping[str, Any], *, id: str, subject: str | None = None,
             partitionkey: str | None = None, sequence: str | None = None,
             time: datetime | None = None) -> CloudEvent:
        """Build (Avro-encode) and publish a new event from this actor; returns it."""
        event = make_event(self.registry, type=type, source=self.spec.source, id=id, subject=subject, data=data,
                           partitionkey=partitionkey, sequence=sequence, time=time)
        self.emitter.dispatch(event, parent=self.parent)
        return event

    def outgoing(self, type: str, data: Mapping[str, Any], *, id: str, subject: str | None = None,
                 partitionkey: str | None = None, sequence: str | None = None,
                 time: datetime | None = None) -> Outgoing:
        """Build a new event from this actor without publishing it: a store writes it to the outbox in the
        transaction of the state change that implies it, then :meth:`flush` publishes it."""
        event = make_event(self.registry, type=type, source=self.spec.source, id=id, subject=subject, data=data,
                           partitionkey=partitionkey, sequence=sequence, time=time)
        return Outgoing(event, self.origin())

    def origin(self) -> Origin:
        """The message being handled, its journey and trace: where an outbox event comes from."""
        parent = self.parent
        if parent is None:
            return Origin(trace_context=context_carrier())
        return Origin(message_id=parent.message_id, root_id=parent.options.get("hub_event", {}).get("root_id"),
                      trace_context=context_carrier())

    def flush(self, outbox: Outbox) -> int:
        """Publish what the message being handled wrote to the outbox and is still pending: right after the
        commit, and again on the message's re-run after a crash. Returns how many."""
        return publish_pending(outbox, self.emitter, origin=self.origin().message_id)

    def raise_exception(self, owner: str, *, kind: str, subject: str, detail: str, id: str,
                        severity: str = "medium", project_code: str | None = None,
                        about: CloudEvent | None = None) -> CloudEvent:
        """Route a case to its owner (finance, PMO, records management, platform team) as
        ``hub.exception.raised.v1``; ``id`` makes a case raised again the same case."""
        data: dict[str, Any] = {
            "exception_id": id, "owner": owner, "kind": kind, "severity": severity, "subject": subject,
            "detail": detail[:2000],
            "project": {"code": project_code, "erp_id": None, "workspace_id": None} if project_code else None,
            "event_id": about.get_id() if about else None, "event_type": about.get_type() if about else None,
            "raised_at": self.now(),
        }
        return self.emit(EXCEPTION_RAISED, data, id=id, subject=subject)


@dataclass(kw_only=True)
class ActorContext(Emitting):
    """One message being handled: its event, the event's decoded data, and publishing."""

    event: CloudEvent
    #: How the event's data is decoded: called once, when :attr:`data` is first read.
    decode: Callable[[], dict[str, Any]]

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        """The event's data, decoded from Avro when first read (an actor that only passes the event on, as the
        fan-out does, never pays for it); raises ``SchemaViolation`` when the bytes are no Avro of its type."""
        return self.decode()

    def raise_exception(self, owner: str, *, kind: str, subject: str, detail: str, id: str,
                        severity: str = "medium", project_code: str | None = None,
                        about: CloudEvent | None = None) -> CloudEvent:
        """As :meth:`Emitting.raise_exception`, naming the event being handled unless told otherwise."""
        return super().raise_exception(owner, kind=kind, subject=subject, detail=detail, id=id, severity=severity,
                                       project_code=project_code, about=about or self.event)


class Actor(Protocol):
    """An integration pattern's unit of work."""

    @property
    def spec(self) -> ActorSpec:
        """Its declaration."""
        ...

    def handle(self, context: ActorContext) -> None:
        """Handle one event; raise a retryable error to be retried, a permanent one to be dead-lettered."""
        ...


@dataclass(frozen=True)
class DeadLetter:
    """A message another actor gave up on, as its dead-letter handler is told of it."""

    message: Mapping[str, Any]  # the Dramatiq message as a dict (actor_name, message_id, options, ...)
    why: str
    error: str


class DeadLetterHandler(Protocol):
    """The actor told of every dead letter (``ActorSpec.dead_letters_to``)."""

    @property
    def spec(self) -> ActorSpec:
        """Its declaration."""
        ...

    def handle_dead_letter(self, letter: DeadLetter, context: Emitting) -> None:
        """React to one dead letter."""
        ...


class RecordingEmitter:
    """An :class:`Emitter` that keeps what it is given, for unit tests of actors."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    def dispatch(self, event: CloudEvent, *, parent: Any | None = None) -> list[Any]:
        """Record the event."""
        self.events.append(event)
        return []

    def of_type(self, event_type: str) -> list[CloudEvent]:
        """The recorded events of one type."""
        return [event for event in self.events if event.get_type() == event_type]


def unit_context(spec: ActorSpec, registry: SchemaLookup, event: CloudEvent, data: Mapping[str, Any], *,
                 emitter: Emitter | None = None, clock: Callable[[], datetime] | None = None) -> ActorContext:
    """A context for calling ``actor.handle`` directly in a unit test (events go to ``emitter``)."""
    return ActorContext(spec=spec, registry=registry, emitter=emitter or RecordingEmitter(), parent=None,
                        clock=clock or (lambda: datetime.now(UTC)), event=event, decode=lambda: dict(data))
