"""Event fan-out: canonical events go to the topic exchange ``hub.events`` for analytics and alerts."""

from __future__ import annotations

from typing import Any

import dramatiq

from hub.errors import NEVER_RETRIED
from hub.events import from_message_body, validate_event
from hub.idempotency import side_effect_key
from hub.registry import SchemaRegistry
from hub.topics import TopicBus
from observability.tracing import publish_span

ACTOR_NAME = "fanout"


def register(broker: dramatiq.Broker, *, queue_prefix: str, registry: SchemaRegistry, topics: TopicBus) -> Any:
    """Declare the fan-out actor on ``broker``."""

    @dramatiq.actor(
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=f"{queue_prefix}.{ACTOR_NAME}",
        throws=NEVER_RETRIED,
        on_dead_letter="exceptions",
    )
    def fanout(event_body: dict[str, Any]) -> None:
        """Publish the event, confirmed, to the topic exchange with routing key = its type."""
        event = from_message_body(event_body)
        validate_event(event, registry)  # never put malformed data on a public topic
        summary = {"id": event.get_id(), "type": event.get_type(), "source": event.get_source(),
                   "subject": event.get_subject()}
        message_id = side_effect_key(event.get_id(), ACTOR_NAME, "publish")
        with publish_span(destination=topics.exchange, routing_key=event.get_type(),
                          message_id=message_id, event=summary):
            topics.publish(event, message_id=message_id)

    return fanout
