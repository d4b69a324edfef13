"""Event fan-out: canonical events go to the topic exchange ``hub.events`` for analytics and alerts.

With ethical walls on the bus (the policy's ``ethical_walls.on_the_bus``), an event about a walled matter goes
to ``hub.events`` redacted (its type's protected fields removed, :mod:`hub.redaction`) and in full only to the
restricted exchange the policy names; an event of a protected type about a matter whose verdict is not known
yet waits for it (:mod:`actors.fanout.walls`).
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.fanout.walls import MatterWalls, matter_of, verdict
from hub.actor import ALL_TYPES, ActorContext, ActorSpec
from hub.errors import NotYet
from hub.events import CloudEvent
from hub.idempotency import side_effect_key
from hub.policy import EthicalWalls
from hub.redaction import Redactions
from hub.topics import TopicBus
from observability.tracing import publish_span

#: Every event type, published with routing key = its type.
SPEC = ActorSpec(name="fanout", triggers=(ALL_TYPES,))


@dataclass(frozen=True)
class BusWall:
    """What the fan-out needs to keep walled matters off the open exchange."""

    policy: EthicalWalls
    redactions: Redactions
    matters: MatterWalls
    restricted: TopicBus


class FanOut:
    """Publishes each event, confirmed, on the topic exchange (validated already: never malformed data)."""

    spec = SPEC

    def __init__(self, topics: TopicBus, *, wall: BusWall | None = None) -> None:
        self.topics = topics
        self.wall = wall

    def handle(self, context: ActorContext) -> None:
        """Publish the event with routing key = its type; the message id is stable across redeliveries."""
        event = context.event
        if self.wall is None or not self._walled(context):
            self._publish(self.topics, event, "publish")
            return
        self._publish(self.wall.restricted, event, "publish-walled")
        self._publish(self.topics, self.wall.redactions.redact(event, context.data), "publish")

    def _walled(self, context: ActorContext) -> bool:
        """Whether the event is about a walled matter; raises NotYet for a protected type whose matter's
        verdict is not known yet."""
        assert self.wall is not None
        event_type, data = context.event.get_type(), context.data
        matter = matter_of(data)
        if matter is None:
            return False
        said = verdict(event_type, data, self.wall.policy)
        known = self.wall.matters.learn(matter, said) if said is not None else None
        if not self.wall.redactions.protects(event_type):
            return False
        if known is None:
            known = self.wall.matters.walled(matter)
        if known is None:
            raise NotYet(f"whether matter {matter} is walled is not known yet (its project event has not come)",
                         prerequisite="matter_verdict")
        return known

    def _publish(self, bus: TopicBus, event: CloudEvent, step: str) -> None:
        summary = {"id": event.get_id(), "type": event.get_type(), "source": event.get_source(),
                   "subject": event.get_subject()}
        message_id = side_effect_key(event.get_id(), self.spec.name, step)
        with publish_span(destination=bus.exchange, routing_key=event.get_type(), message_id=message_id,
                          event=summary):
            bus.publish(event, message_id=message_id)
