"""Event fan-out: canonical events go to the topic exchange ``hub.events`` for analytics and alerts."""

from __future__ import annotations

from hub.actor import ALL_TYPES, ActorContext, ActorSpec
from hub.idempotency import side_effect_key
from hub.topics import TopicBus
from observability.tracing import publish_span

#: Every event type, published with routing key = its type.
SPEC = ActorSpec(name="fanout", triggers=(ALL_TYPES,))


class FanOut:
    """Publishes each event, confirmed, on the topic exchange (validated already: never malformed data)."""

    spec = SPEC

    def __init__(self, topics: TopicBus) -> None:
        self.topics = topics

    def handle(self, context: ActorContext) -> None:
        """Publish the event with routing key = its type; the message id is stable across redeliveries."""
        event = context.event
        summary = {"id": event.get_id(), "type": event.get_type(), "source": event.get_source(),
                   "subject": event.get_subject()}
        message_id = side_effect_key(event.get_id(), self.spec.name, "publish")
        with publish_span(destination=self.topics.exchange, routing_key=event.get_type(),
                          message_id=message_id, event=summary):
            self.topics.publish(event, message_id=message_id)
