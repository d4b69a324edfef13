"""Microsoft Graph change notifications for SharePoint: validation handshake, clientState, translation.

Graph proves the notification URL when a subscription is created or renewed by calling it with a
``validationToken`` query parameter; the endpoint answers 200 ``text/plain`` with the decoded token
within 10 seconds. Notifications then arrive as ``{"value": [...]}`` and are authenticated by the
``clientState`` secret given at subscription time (Graph signs nothing else for basic notifications).

A notification says only that something changed, never its new state: a SharePoint driveItem notification
names the subscribed resource (the drive's root) and carries ``resourceData`` with only its ``@odata.type``, no
item id and usually no notification id. So each one becomes a ``dms.change.notified.v1`` event (its
``resource_id`` empty unless the vendor sent one) and the actors ask the drive what changed (``delta``): the
ingress can answer 202 at once, within Graph's deadline, whatever the reading costs. Lifecycle
notifications (``missed``, ``reauthorizationRequired``, ``subscriptionRemoved``) travel the same way with
that name as ``change_type``, so the same actor can resynchronise or renew.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from pydantic import Field

from connectors.signatures import attribute_text, load_json_object, optional_text, require_text, stable_id
from hub.errors import AuthenticationFailed, ConfigurationError, InvalidEvent
from hub.events import CloudEvent, SchemaLookup, make_event
from hub.ingress.openapi import Json, VendorWebhook, ref, string_schema
from hub.ingress.sources import Secret, VendorBlock

__all__ = ["EVENT_TYPE", "PLATFORM", "WEBHOOK", "GraphStates", "Notification", "check_client_state",
           "parse_notifications", "to_event", "validation_token"]

#: The hub event type every notification becomes.
EVENT_TYPE = "dms.change.notified.v1"
#: The ``platform`` field of events from this adapter.
PLATFORM = "sharepoint"


class GraphStates(VendorBlock):
    """A source's ``graph`` block: the subscriptions' ``clientState`` values (several while rotating)."""

    client_states: list[Secret] = Field(min_length=1)


_TEXT: Json = {"type": "string", "minLength": 1}
_NOTIFICATION: Json = {
    "type": "object",
    "description": "One change notification (or, with `lifecycleEvent`, a subscription lifecycle notification).",
    "required": ["subscriptionId", "clientState"],
    "properties": {
        "subscriptionId": string_schema("The Graph subscription."),
        "clientState": {"type": "string", "description": "The subscription's secret (401 when it does not match)."},
        "changeType": _TEXT,
        "resource": string_schema("The changed resource, e.g. `drives/b!abc/root`."),
        "lifecycleEvent": _TEXT,
        "tenantId": {"type": ["string", "null"]},
        "id": {"type": ["string", "null"], "description": "Graph's notification id; the event id derives from it."},
        "resourceData": {"type": ["object", "null"],
                         "properties": {"id": string_schema("The changed item (driveItem notifications have none).")},
                         "additionalProperties": ref("JsonValue")},
    },
    "additionalProperties": ref("JsonValue"),
    "anyOf": [{"required": ["lifecycleEvent"]}, {"required": ["changeType", "resource"]}],
}
#: How Graph's change notifications look in the ingress's OpenAPI document: a body is needed only when there
#: is no ``validationToken`` (the subscription handshake, echoed as 200 ``text/plain``).
WEBHOOK = VendorWebhook(
    title="Microsoft Graph change notifications",
    description="Microsoft Graph change notifications. A subscription's validation request carries "
                "`validationToken`, echoed as 200 `text/plain` (the body is then not read); otherwise the "
                "body is required, every notification's `clientState` is checked, and they become "
                f"`{EVENT_TYPE}` (the actors read what changed from the drive's delta).",
    parameters=({"name": "validationToken", "in": "query", "required": False,
                 "description": "Graph's subscription validation: echoed back as it came.",
                 "schema": {"type": "string", "minLength": 1}},),
    body={
        "type": "object",
        "required": ["value"],
        "additionalProperties": ref("JsonValue"),
        "description": "Microsoft Graph change notifications; each one's `clientState` must be the subscription's.",
        "properties": {"value": {"type": "array", "minItems": 1, "items": _NOTIFICATION}},
    },
    body_required=False,
    extra_responses={200: {"description": "The `validationToken`, echoed (subscription validation).",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}},
)


@dataclass(frozen=True)
class Notification:
    """One item of a Graph change notification collection."""

    subscription_id: str
    client_state: str | None
    change_type: str
    resource: str
    resource_id: str | None
    tenant_id: str | None
    notification_id: str | None = None
    lifecycle: bool = False


def validation_token(query: Mapping[str, str] | str) -> str | None:
    """The token to echo for a subscription validation request, or None for a notification.

    ``query`` is either the parsed query parameters (values already URL-decoded, as every web
    framework gives them) or the raw query string, which is decoded here; never decode twice.
    """
    if isinstance(query, str):
        values = parse_qs(query, keep_blank_values=True).get("validationToken")
        token = values[0] if values else None
    else:
        token = query.get("validationToken")
    if token is None:
        return None
    if not token:
        raise InvalidEvent("validationToken is empty", field="validationToken")
    return token


def parse_notifications(body: bytes) -> list[Notification]:
    """Every notification of a Graph ``{"value": [...]}`` POST body.

    The body is read as strict JSON before any clientState is checked (the clientState is inside
    it), so a hostile body without credentials gets the same 400 as one with them, and no more.
    """
    items = load_json_object(body).get("value")
    if not isinstance(items, list) or not items:
        raise InvalidEvent("value must be a non-empty list of notifications", field="value")
    return [_notification(item, f"value[{index}]") for index, item in enumerate(items)]


def _notification(item: Any, path: str) -> Notification:
    if not isinstance(item, Mapping):
        raise InvalidEvent(f"{path} must be a JSON object", field=path)
    subscription_id = attribute_text(require_text(item, "subscriptionId", f"{path}.subscriptionId"),
                                     f"{path}.subscriptionId")
    lifecycle_event = optional_text(item, "lifecycleEvent", f"{path}.lifecycleEvent")
    if lifecycle_event is None:
        change_type = require_text(item, "changeType", f"{path}.changeType")
        resource = attribute_text(require_text(item, "resource", f"{path}.resource"), f"{path}.resource")
    else:
        # Lifecycle notifications concern the subscription and may name no resource.
        change_type = lifecycle_event
        resource = attribute_text(optional_text(item, "resource", f"{path}.resource")
                                  or f"subscriptions/{subscription_id}", f"{path}.resource")
    data = item.get("resourceData")
    if data is not None and not isinstance(data, Mapping):
        raise InvalidEvent(f"{path}.resourceData must be a JSON object", field=f"{path}.resourceData")
    resource_id = None if data is None else optional_text(data, "id", f"{path}.resourceData.id")
    return Notification(
        subscription_id=subscription_id,
        client_state=optional_text(item, "clientState", f"{path}.clientState"),
        change_type=change_type,
        resource=resource.lstrip("/"),
        resource_id=None if resource_id is None else attribute_text(resource_id, f"{path}.resourceData.id"),
        tenant_id=optional_text(item, "tenantId", f"{path}.tenantId"),
        notification_id=optional_text(item, "id", f"{path}.id"),
        lifecycle=lifecycle_event is not None,
    )


def check_client_state(notification: Notification, expected: Sequence[str]) -> None:
    """Accept the notification when its clientState equals one of ``expected`` (constant time)."""
    if not expected:
        raise ConfigurationError("no Graph subscription clientState is configured")
    if notification.client_state is None:
        raise AuthenticationFailed("notification carries no clientState")
    received = notification.client_state.encode("utf-8")
    # Every configured value is compared (no early exit), so the time taken says nothing about which.
    results = [hmac.compare_digest(received, secret.encode("utf-8")) for secret in expected]
    if not any(results):
        raise AuthenticationFailed("clientState does not match the subscription")


def content_digest(notification: Notification) -> str:
    """What Graph sent for one notification, as a digest (its ``clientState``, a secret, left out): a re-delivery
    of it has the same one, whenever the hub received it. The event's data carries the receipt instant, so the
    ingress compares sends of one event id by this instead (an identical re-delivery is a resend, answered 202
    and not published again; only the same id with other content is a conflict)."""
    parts = [notification.subscription_id, notification.change_type, notification.resource,
             notification.resource_id or "", notification.tenant_id or "", notification.notification_id or "",
             "lifecycle" if notification.lifecycle else ""]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def to_event(
    notification: Notification,
    *,
    registry: SchemaLookup,
    source: str,
    received_at: datetime | None = None,
) -> CloudEvent:
    """The notification as a ``dms.change.notified.v1`` event (received now unless ``received_at``).

    De-duplication caveat: a notification has no timestamp or sequence, and Graph's own ``id`` is
    optional. With an ``id`` the event id is derived from the notification alone, so Graph's retries
    of it collapse into one event (compared by :func:`content_digest`: the data carries the receipt instant).
    Without one, a retry and a genuine second change are
    indistinguishable, and a content-only id would make the idempotency store skip every later
    change to that resource while its done mark lives (driveItem notifications all name the drive
    root); so the receipt instant joins the id, and a Graph retry costs one redundant fetch instead.
    """
    if received_at is not None and received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    received = (received_at or datetime.now(UTC)).astimezone(UTC)
    parts = [PLATFORM, notification.subscription_id, notification.resource, notification.change_type,
             notification.resource_id or ""]
    if notification.notification_id is not None:
        parts.append(notification.notification_id)
    else:
        parts.append(received.isoformat(timespec="microseconds"))
    record = {
        "platform": PLATFORM,
        "change_type": notification.change_type,
        "resource": notification.resource,
        "resource_id": notification.resource_id,
        "subscription_id": notification.subscription_id,
        "tenant_id": notification.tenant_id,
        "notified_at": received,
    }
    return make_event(
        registry,
        type=EVENT_TYPE,
        source=source,
        data=record,
        subject=notification.resource_id or notification.resource,
        id=stable_id(*parts),
        time=received,
    )
