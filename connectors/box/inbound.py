"""Box webhooks (V2): signature verification and translation to the hub's contract.

Box signs ``body bytes + BOX-DELIVERY-TIMESTAMP bytes`` with HMAC-SHA256 under the app's primary and
secondary signature keys and sends both base64 digests (``BOX-SIGNATURE-PRIMARY``/``-SECONDARY``);
either may match either configured key, so keys rotate one at a time without a gap. The timestamp is
signed, and a delivery older than 10 minutes (or from too far in the future) is refused as a replay.

A webhook says only that something happened to an item, so each one becomes a
``dms.change.notified.v1`` event and an actor fetches the item's class and state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.signatures import (
    any_match,
    attribute_text,
    get_header,
    hmac_sha256,
    optional_text,
    parse_instant,
    require_object,
    require_text,
    stable_id,
)
from hub.errors import AuthenticationFailed, ConfigurationError, InvalidEvent
from hub.events import CloudEvent, SchemaLookup, make_event
from hub.ingress.openapi import Json, VendorWebhook, header, json_object
from hub.ingress.sources import Secret, VendorBlock

__all__ = ["EVENT_TYPE", "MAX_AGE", "MAX_CLOCK_SKEW", "PLATFORM", "WEBHOOK", "BoxKeys", "to_event", "verify"]

#: The hub event type every webhook becomes.
EVENT_TYPE = "dms.change.notified.v1"
#: The ``platform`` field of events from this adapter.
PLATFORM = "box"
#: Deliveries older than this are refused (Box's documented replay window).
MAX_AGE = timedelta(minutes=10)
#: Deliveries stamped further ahead than this are refused; allows for clock drift only.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class BoxKeys(VendorBlock):
    """A source's ``box`` block: the webhook signature keys; Box signs with both so either may be rotated."""

    primary_key: Secret
    secondary_key: Secret | None = None


_SIGNATURE: Json = {"type": "string", "minLength": 1}

#: How Box's webhooks look in the ingress's OpenAPI document.
WEBHOOK = VendorWebhook(
    title="Box webhooks v2",
    description="Box webhooks v2: either signature over body and delivery timestamp, refused when older "
                "than 10 minutes.",
    parameters=(
        header("BOX-SIGNATURE-PRIMARY", "Base64 HMAC-SHA256 with the primary key.", _SIGNATURE, required=True),
        header("BOX-SIGNATURE-SECONDARY", "Base64 HMAC-SHA256 with the secondary key (either may verify).",
               _SIGNATURE),
        header("BOX-DELIVERY-TIMESTAMP", "When Box sent it (RFC 3339); signed with the body.",
               {"type": "string", "format": "date-time"}, required=True),
        header("BOX-SIGNATURE-VERSION", "Always `1`.", {"type": "string", "enum": ["1"]}, required=True),
        header("BOX-SIGNATURE-ALGORITHM", "Always `HmacSHA256`.", {"type": "string", "enum": ["HmacSHA256"]},
               required=True),
    ),
    body=json_object("A Box webhook v2 payload."),
)


def verify(
    body: bytes,
    headers: Mapping[str, str],
    *,
    primary_key: str | None,
    secondary_key: str | None,
    now: datetime,
) -> None:
    """Accept a Box delivery whose signature matches a configured key and whose timestamp is fresh."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    keys = [key for key in (primary_key, secondary_key) if key]
    if not keys:
        raise ConfigurationError("no Box webhook signature key is configured")
    if get_header(headers, "BOX-SIGNATURE-VERSION") != "1":
        raise AuthenticationFailed("BOX-SIGNATURE-VERSION must be 1")
    if get_header(headers, "BOX-SIGNATURE-ALGORITHM") != "HmacSHA256":
        raise AuthenticationFailed("BOX-SIGNATURE-ALGORITHM must be HmacSHA256")
    timestamp = get_header(headers, "BOX-DELIVERY-TIMESTAMP")
    if not timestamp:
        raise AuthenticationFailed("missing BOX-DELIVERY-TIMESTAMP header")
    signatures = [
        value
        for value in (get_header(headers, "BOX-SIGNATURE-PRIMARY"), get_header(headers, "BOX-SIGNATURE-SECONDARY"))
        if value
    ]
    if not signatures:
        raise AuthenticationFailed("missing BOX-SIGNATURE-PRIMARY/SECONDARY header")
    # The timestamp is signed as sent: its bytes, not a reformatted instant.
    digests = [hmac_sha256(key, body, timestamp.encode("utf-8")) for key in keys]
    if not any_match(signatures, digests):
        raise AuthenticationFailed("Box signature does not match any configured key")
    try:
        sent_at = parse_instant(timestamp, "BOX-DELIVERY-TIMESTAMP")
    except InvalidEvent:
        raise AuthenticationFailed("BOX-DELIVERY-TIMESTAMP is not an RFC 3339 timestamp") from None
    if now - sent_at > MAX_AGE:
        raise AuthenticationFailed("BOX-DELIVERY-TIMESTAMP is older than 10 minutes")
    if sent_at - now > MAX_CLOCK_SKEW:
        raise AuthenticationFailed("BOX-DELIVERY-TIMESTAMP is in the future")


def to_event(payload: Mapping[str, Any], *, registry: SchemaLookup, source: str) -> CloudEvent:
    """The webhook payload as a ``dms.change.notified.v1`` event with ``platform`` box."""
    kind = optional_text(payload, "type", "type")
    if kind is not None and kind != "webhook_event":
        raise InvalidEvent(f"type must be webhook_event, got {kind!r}", field="type")
    trigger = require_text(payload, "trigger", "trigger")
    item = require_object(payload, "source", "source")
    item_type = require_text(item, "type", "source.type")
    item_id = attribute_text(require_text(item, "id", "source.id"), "source.id")
    created_text = require_text(payload, "created_at", "created_at")
    created_at = parse_instant(created_text, "created_at")
    webhook = payload.get("webhook")
    if webhook is not None and not isinstance(webhook, Mapping):
        raise InvalidEvent("webhook must be a JSON object", field="webhook")
    webhook_id = None if webhook is None else optional_text(webhook, "id", "webhook.id")
    resource = f"{item_type}s/{item_id}"
    # Box keeps the body's id across its retries (only BOX-DELIVERY-ID changes), so it is the event id.
    body_id = optional_text(payload, "id", "id")
    event_id = attribute_text(body_id, "id") if body_id is not None else stable_id(
        PLATFORM, webhook_id or "", trigger, resource, created_text
    )
    record = {
        "platform": PLATFORM,
        "change_type": trigger,
        "resource": resource,
        "resource_id": item_id,
        "subscription_id": webhook_id,
        "tenant_id": None,
        "notified_at": created_at,
    }
    return make_event(
        registry, type=EVENT_TYPE, source=source, data=record, subject=item_id, id=event_id, time=created_at
    )
