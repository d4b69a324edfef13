"""Microsoft Graph change notifications: validation handshake, clientState and translation."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.sharepoint.inbound import (
    Notification,
    check_client_state,
    parse_notifications,
    to_event,
    validation_token,
)
from hub.errors import AuthenticationFailed, ConfigurationError, InvalidEvent, JsonTooComplex, MalformedJson
from hub.events import validate_event
from hub.registry import SchemaRegistry

SOURCE = "graph://tenant/84bd8158-6d4d-4958-8b9f-9d6445542f95"
CLIENT_STATE = "secretClientValue-7f3c9a"
TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
SUBSCRIPTION = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
SITE_LIST = (
    "sites/contoso.sharepoint.com,2C712604-1370-44E7-A1F5-426573FDA80A,2D2244C3-251A-49EA-93A8-39E1C3A060FE"
    "/lists/b1b9ee2c-5e5e-4b43-9b2b-2e9a1c7f3d10"
)
RECEIVED = datetime(2025, 3, 14, 9, 27, 2, 125000, tzinfo=UTC)

#: A notification collection as Graph POSTs it: a list item change, then a drive-root change.
PAYLOAD: dict[str, Any] = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": SUBSCRIPTION,
            "subscriptionExpirationDateTime": "2025-03-16T18:23:45.9356913Z",
            "clientState": CLIENT_STATE,
            "changeType": "updated",
            "resource": SITE_LIST + "/items/42",
            "tenantId": TENANT,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.ListItem",
                "@odata.id": SITE_LIST + "/items/42",
                "id": "42",
            },
        },
        {
            "subscriptionId": "a1b2c3d4-0000-4000-8000-1234567890ab",
            "subscriptionExpirationDateTime": "2025-03-16T18:23:45.9356913Z",
            "clientState": CLIENT_STATE,
            "changeType": "updated",
            "resource": "/drives/b!q2rAnYVwSEWXKfmAA3cz0DvlxqCF6bVNjSi2YB_bkkhSPQlbyvYmTYVl-nBYSfRj/root",
            "tenantId": TENANT,
        },
    ]
}
BODY = json.dumps(PAYLOAD).encode("utf-8")

#: A lifecycle notification delivered to the same URL.
LIFECYCLE = {
    "value": [
        {
            "subscriptionId": SUBSCRIPTION,
            "subscriptionExpirationDateTime": "2025-03-16T18:23:45.9356913Z",
            "tenantId": TENANT,
            "clientState": CLIENT_STATE,
            "lifecycleEvent": "missed",
        }
    ]
}


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def body_with(**changes: Any) -> bytes:
    document = copy.deepcopy(PAYLOAD)
    document["value"][0].update(changes)
    return json.dumps(document).encode("utf-8")


def test_the_validation_token_is_echoed_decoded_from_the_raw_query_string() -> None:
    query = ("validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+"
             "Request-Id%3a+8a7c1b4e-1f0d-4a6e-b2c3-5d9e8f7a6b10")
    assert validation_token(query) == (
        "Validation: Testing client application reachability for subscription "
        "Request-Id: 8a7c1b4e-1f0d-4a6e-b2c3-5d9e8f7a6b10"
    )


def test_parsed_query_parameters_are_echoed_as_given_and_never_decoded_twice() -> None:
    assert validation_token({"validationToken": "Validation: 100%2B sure"}) == "Validation: 100%2B sure"


def test_a_notification_post_has_no_validation_token() -> None:
    assert validation_token({}) is None
    assert validation_token("") is None


def test_an_empty_validation_token_is_refused() -> None:
    with pytest.raises(InvalidEvent):
        validation_token("validationToken=")


def test_every_notification_of_the_collection_is_parsed() -> None:
    item, root = parse_notifications(BODY)
    assert item == Notification(
        subscription_id=SUBSCRIPTION,
        client_state=CLIENT_STATE,
        change_type="updated",
        resource=SITE_LIST + "/items/42",
        resource_id="42",
        tenant_id=TENANT,
        notification_id="lsgTZMr9KwAAA",
    )
    assert root.resource.startswith("drives/b!") and root.resource.endswith("/root")
    assert (root.resource_id, root.notification_id, root.lifecycle) == (None, None, False)


def test_a_lifecycle_notification_names_the_subscription_as_its_resource() -> None:
    [notification] = parse_notifications(json.dumps(LIFECYCLE).encode())
    assert notification.lifecycle
    assert notification.change_type == "missed"
    assert notification.resource == f"subscriptions/{SUBSCRIPTION}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b"[]", None),
        (b"{}", "value"),
        (b'{"value": []}', "value"),
        (b'{"value": ["x"]}', "value[0]"),
        (body_with(subscriptionId=None), "value[0].subscriptionId"),
        (body_with(changeType=None), "value[0].changeType"),
        (body_with(resource=None), "value[0].resource"),
        (body_with(resourceData="42"), "value[0].resourceData"),
        (body_with(clientState=7.5), "value[0].clientState"),
    ],
)
def test_a_malformed_collection_is_refused_naming_the_field(body: bytes, field: str | None) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_notifications(body)
    assert caught.value.field == field


def test_the_subscription_client_state_is_accepted() -> None:
    for notification in parse_notifications(BODY):
        check_client_state(notification, [CLIENT_STATE])


def test_during_rotation_the_previous_client_state_is_still_accepted() -> None:
    [notification, _] = parse_notifications(BODY)
    check_client_state(notification, ["the-new-client-state", CLIENT_STATE])


def test_a_client_state_mismatch_is_rejected_without_naming_the_secret() -> None:
    [notification, _] = parse_notifications(body_with(clientState="guessed-value"))
    with pytest.raises(AuthenticationFailed) as caught:
        check_client_state(notification, [CLIENT_STATE])
    assert CLIENT_STATE not in str(caught.value) and "guessed-value" not in str(caught.value)


def test_a_notification_without_client_state_is_rejected() -> None:
    [notification, _] = parse_notifications(body_with(clientState=None))
    with pytest.raises(AuthenticationFailed):
        check_client_state(notification, [CLIENT_STATE])


def test_no_configured_client_state_is_a_configuration_error() -> None:
    [notification, _] = parse_notifications(BODY)
    with pytest.raises(ConfigurationError):
        check_client_state(notification, [])


def test_a_notification_becomes_a_contract_change_event(registry: SchemaRegistry) -> None:
    [notification, _] = parse_notifications(BODY)
    event = to_event(notification, registry=registry, source=SOURCE, received_at=RECEIVED)
    assert event.get_type() == "dms.change.notified.v1"
    assert event.get_subject() == "42"
    assert validate_event(event, registry) == {
        "platform": "sharepoint",
        "change_type": "updated",
        "resource": SITE_LIST + "/items/42",
        "resource_id": "42",
        "subscription_id": SUBSCRIPTION,
        "tenant_id": TENANT,
        "notified_at": RECEIVED,
    }


def test_a_change_without_an_item_id_is_keyed_by_its_resource(registry: SchemaRegistry) -> None:
    [_, root] = parse_notifications(BODY)
    event = to_event(root, registry=registry, source=SOURCE, received_at=RECEIVED)
    assert event.get_subject() == root.resource
    assert validate_event(event, registry)["resource_id"] is None


def test_a_lifecycle_notification_becomes_a_change_event_too(registry: SchemaRegistry) -> None:
    [notification] = parse_notifications(json.dumps(LIFECYCLE).encode())
    event = to_event(notification, registry=registry, source=SOURCE, received_at=RECEIVED)
    assert validate_event(event, registry)["change_type"] == "missed"


def test_a_graph_retry_of_a_notification_with_an_id_gets_the_same_event_id(registry: SchemaRegistry) -> None:
    first = parse_notifications(BODY)[0]
    again = parse_notifications(BODY)[0]
    later = RECEIVED + timedelta(minutes=3)
    ids = {to_event(n, registry=registry, source=SOURCE, received_at=t).get_id() for n, t in
           ((first, RECEIVED), (again, later))}
    assert len(ids) == 1


def test_the_same_notification_without_an_id_received_once_maps_to_one_event_id(registry: SchemaRegistry) -> None:
    [_, root] = parse_notifications(BODY)
    first = to_event(root, registry=registry, source=SOURCE, received_at=RECEIVED)
    assert first.get_id() == to_event(root, registry=registry, source=SOURCE, received_at=RECEIVED).get_id()


def test_a_later_change_to_the_same_drive_root_is_not_swallowed_as_a_duplicate(registry: SchemaRegistry) -> None:
    [_, root] = parse_notifications(BODY)
    first = to_event(root, registry=registry, source=SOURCE, received_at=RECEIVED)
    later = to_event(root, registry=registry, source=SOURCE, received_at=RECEIVED + timedelta(seconds=30))
    assert first.get_id() != later.get_id()


def test_different_notifications_get_different_event_ids(registry: SchemaRegistry) -> None:
    first = parse_notifications(BODY)[0]
    other = parse_notifications(body_with(id="mvkTZMr9KwBBB"))[0]
    assert to_event(first, registry=registry, source=SOURCE, received_at=RECEIVED).get_id() != to_event(
        other, registry=registry, source=SOURCE, received_at=RECEIVED
    ).get_id()


def test_a_naive_receipt_time_is_refused(registry: SchemaRegistry) -> None:
    [notification, _] = parse_notifications(BODY)
    with pytest.raises(ValueError, match="timezone"):
        to_event(notification, registry=registry, source=SOURCE, received_at=datetime(2025, 3, 14, 9, 27))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}", JsonTooComplex),
        (b'{"value": [{"n": ' + b"9" * 5000 + b"}]}", JsonTooComplex),
        (BODY.replace(b'"changeType": "updated"', b'"changeType": "updated", "changeType": "deleted"', 1),
         MalformedJson),
        (BODY.replace(b'"id": "42"', b'"id": "4\\ud8002"', 1), MalformedJson),
        (BODY.replace(b'"tenantId"', b'"\\udc00tenantId"', 1), MalformedJson),
    ],
)
def test_a_hostile_body_is_refused_before_any_client_state_is_looked_at(body: bytes, error: type[Exception]) -> None:
    assert body != BODY
    with pytest.raises(error) as caught:
        parse_notifications(body)
    assert CLIENT_STATE not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"resource": SITE_LIST + "/items/42\r\nX: y"}, "value[0].resource"),
        ({"resourceData": {"id": "42\x00"}}, "value[0].resourceData.id"),
        ({"subscriptionId": "sub\x7f"}, "value[0].subscriptionId"),
        ({"resource": "drives/\x85/root"}, "value[0].resource"),
    ],
)
def test_a_control_character_in_a_field_that_becomes_an_attribute_is_refused_naming_it(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_notifications(body_with(**changes))
    assert caught.value.field == field
