"""Exceptions as an operating model: every dead letter of a pattern actor becomes a
``hub.exception.raised.v1`` event routed to the owner of that workflow (finance, PMO, records
management, platform team), on the topic exchange for alerting."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from hub.errors import NEVER_RETRIED
from hub.events import make_event
from hub.runtime import Runtime

ACTOR_NAME = "exceptions"
#: The CloudEvents ``source`` of the hub's own exception events.
SOURCE = "hub://exceptions"
_NAMESPACE = uuid.UUID("5b0e6c1e-8f2a-4b39-9a57-3c2f0d7e4a11")


def exception_record(message: Mapping[str, Any], reason: Mapping[str, str], *, owner: str,
                     now: datetime) -> dict[str, Any]:
    """The ``hub.exception.raised.v1`` data for one dead letter (pure)."""
    options = message.get("options") or {}
    failed = options.get("hub_event") or {}
    subject = failed.get("subject") or failed.get("id") or message.get("message_id", "")
    return {
        "exception_id": str(uuid.uuid5(_NAMESPACE, str(message.get("message_id", "")))),
        "owner": owner,
        "kind": f"{message.get('actor_name', 'unknown')}.dead_letter",
        "severity": "high",
        "subject": str(subject),
        "detail": f"{reason.get('why', 'failed')}: {reason.get('error', '')}"[:2000],
        "project": {"code": str(failed["subject"]), "erp_id": None, "workspace_id": None}
        if failed.get("subject") else None,
        "event_id": failed.get("id"),
        "event_type": failed.get("type"),
        "raised_at": now,
    }


def register(runtime: Runtime, *, owners: Mapping[str, str], default_owner: str = "platform_team") -> Any:
    """Declare the exceptions actor; ``owners`` maps an actor name to the owner of its workflow."""

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR_NAME, queue_name=f"{runtime.queue_prefix}.{ACTOR_NAME}",
                    throws=NEVER_RETRIED)
    def exceptions(message: dict[str, Any], reason: dict[str, str]) -> None:
        """Raise the exception event for one dead letter."""
        owner = owners.get(str(message.get("actor_name")), default_owner)
        data = exception_record(message, reason, owner=owner, now=datetime.now(UTC))
        event = make_event(runtime.registry, type="hub.exception.raised.v1", source=SOURCE,
                           id=data["exception_id"], subject=data["subject"], data=data)
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(event, parent=CurrentMessage.get_current_message())

    return exceptions
