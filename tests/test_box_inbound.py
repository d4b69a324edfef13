"""Box webhooks (V2): signatures over body and timestamp, replay window, key rotation, translation."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connectors.box.inbound import to_event, verify
from connectors.signatures import load_json_object
from hub.errors import AuthenticationFailed, ConfigurationError, InvalidEvent, JsonTooComplex, MalformedJson
from hub.events import validate_event
from hub.registry import SchemaRegistry

SOURCE = "box://enterprise/1164695563"
PRIMARY = "SamplePrimaryKey-4C5D2bF8e1aA9x"
SECONDARY = "SampleSecondaryKey-7a1Bc3dE5fG7h"
#: The hub's clock; Box stamps deliveries in its own offset (Pacific time in the documented example).
NOW = datetime(2025, 3, 14, 17, 10, 40, tzinfo=UTC)
PACIFIC = timezone(timedelta(hours=-7))

#: A FILE.UPLOADED delivery shaped like Box's documented example.
PAYLOAD: dict[str, Any] = {
    "type": "webhook_event",
    "id": "eb0c4e06-751f-442c-86f8-fd5bb404dbec",
    "created_at": "2025-03-14T10:10:32-07:00",
    "trigger": "FILE.UPLOADED",
    "webhook": {"id": "53", "type": "webhook"},
    "created_by": {"type": "user", "id": "226067247", "name": "Anna Schmidt", "login": "a.schmidt@firm.example"},
    "source": {
        "id": "73835521473",
        "type": "file",
        "file_version": {
            "type": "file_version", "id": "78096737033", "sha1": "2c61623e86bef78e1a96e6d1cd2a5b2d5ee5c2e2"
        },
        "sequence_id": "0",
        "etag": "0",
        "sha1": "2c61623e86bef78e1a96e6d1cd2a5b2d5ee5c2e2",
        "name": "SOW ACME-2025-014.pdf",
        "description": "",
        "size": 184_532,
        "parent": {"type": "folder", "id": "9962424889", "sequence_id": "0", "etag": "0", "name": "SOWs"},
        "item_status": "active",
    },
    "additional_info": [],
}
BODY = json.dumps(PAYLOAD).encode("utf-8")


def stamp(at: datetime) -> str:
    return at.astimezone(PACIFIC).isoformat(timespec="seconds")


def sign(body: bytes, timestamp: str, key: str) -> str:
    digest = hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def headers(body: bytes = BODY, *, sent: datetime = NOW - timedelta(seconds=8), primary: str = PRIMARY,
            secondary: str = SECONDARY) -> dict[str, str]:
    timestamp = stamp(sent)
    return {
        "BOX-DELIVERY-ID": "673a081b-bb4b-4d45-b4f1-4131a29c1d07",
        "BOX-DELIVERY-TIMESTAMP": timestamp,
        "BOX-SIGNATURE-PRIMARY": sign(body, timestamp, primary),
        "BOX-SIGNATURE-SECONDARY": sign(body, timestamp, secondary),
        "BOX-SIGNATURE-VERSION": "1",
        "BOX-SIGNATURE-ALGORITHM": "HmacSHA256",
        "USER-AGENT": "Box-WH-Client/0.1",
    }


def check(body: bytes, sent_headers: dict[str, str], *, primary: str | None = PRIMARY,
          secondary: str | None = SECONDARY, now: datetime = NOW) -> None:
    verify(body, sent_headers, primary_key=primary, secondary_key=secondary, now=now)


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def test_a_delivery_signed_with_both_keys_verifies() -> None:
    check(BODY, headers())


def test_header_names_are_matched_whatever_their_case() -> None:
    check(BODY, {name.lower(): value for name, value in headers().items()})


def test_during_rotation_the_secondary_signature_alone_is_enough() -> None:
    sent = headers(primary="the-retired-primary-key")
    check(BODY, sent)
    del sent["BOX-SIGNATURE-PRIMARY"]
    check(BODY, sent)


def test_either_signature_may_match_either_configured_key() -> None:
    sent = headers(primary=SECONDARY, secondary="some-other-key")
    check(BODY, sent, primary=PRIMARY, secondary=SECONDARY)
    check(BODY, headers(), primary=None, secondary=PRIMARY)


def test_signatures_made_with_other_keys_are_rejected() -> None:
    with pytest.raises(AuthenticationFailed):
        check(BODY, headers(primary="wrong-1", secondary="wrong-2"))


def test_a_body_with_one_flipped_byte_is_rejected() -> None:
    tampered = bytearray(BODY)
    tampered[BODY.index(b"73835521473")] ^= 0x01
    with pytest.raises(AuthenticationFailed):
        check(bytes(tampered), headers())


def test_the_same_json_serialised_differently_is_rejected() -> None:
    reserialised = json.dumps(json.loads(BODY), indent=2).encode("utf-8")
    with pytest.raises(AuthenticationFailed):
        check(reserialised, headers())


def test_a_timestamp_changed_after_signing_is_rejected() -> None:
    sent = headers()
    sent["BOX-DELIVERY-TIMESTAMP"] = stamp(NOW - timedelta(seconds=2))
    with pytest.raises(AuthenticationFailed):
        check(BODY, sent)


@pytest.mark.parametrize("missing", ["BOX-SIGNATURE-PRIMARY", "BOX-DELIVERY-TIMESTAMP", "BOX-SIGNATURE-VERSION",
                                     "BOX-SIGNATURE-ALGORITHM"])
def test_a_delivery_missing_a_signature_header_is_rejected(missing: str) -> None:
    sent = headers()
    del sent[missing]
    if missing == "BOX-SIGNATURE-PRIMARY":
        del sent["BOX-SIGNATURE-SECONDARY"]
    with pytest.raises(AuthenticationFailed):
        check(BODY, sent)


def test_an_unknown_signature_version_is_rejected() -> None:
    with pytest.raises(AuthenticationFailed):
        check(BODY, headers() | {"BOX-SIGNATURE-VERSION": "2"})


def test_a_delivery_older_than_ten_minutes_is_rejected_as_a_replay() -> None:
    with pytest.raises(AuthenticationFailed, match="older"):
        check(BODY, headers(sent=NOW - timedelta(minutes=10, seconds=1)))


def test_a_delivery_nine_minutes_old_is_still_accepted() -> None:
    check(BODY, headers(sent=NOW - timedelta(minutes=9)))


def test_a_delivery_stamped_in_the_future_is_rejected() -> None:
    with pytest.raises(AuthenticationFailed, match="future"):
        check(BODY, headers(sent=NOW + timedelta(minutes=6)))


def test_a_little_clock_drift_ahead_is_tolerated() -> None:
    check(BODY, headers(sent=NOW + timedelta(seconds=30)))


def test_a_signed_but_unparseable_timestamp_is_rejected() -> None:
    sent = headers()
    sent["BOX-DELIVERY-TIMESTAMP"] = "Fri, 14 Mar 2025 17:10:32 GMT"
    for name, key in (("BOX-SIGNATURE-PRIMARY", PRIMARY), ("BOX-SIGNATURE-SECONDARY", SECONDARY)):
        sent[name] = sign(BODY, sent["BOX-DELIVERY-TIMESTAMP"], key)
    with pytest.raises(AuthenticationFailed, match="RFC 3339"):
        check(BODY, sent)


def test_the_rejection_names_neither_a_key_nor_an_expected_signature() -> None:
    good = headers()
    with pytest.raises(AuthenticationFailed) as caught:
        check(BODY, headers(primary="forged", secondary="forged"))
    message = str(caught.value)
    assert all(secret not in message for secret in (PRIMARY, SECONDARY, good["BOX-SIGNATURE-PRIMARY"]))


def test_no_configured_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        check(BODY, headers(), primary=None, secondary="")


def test_a_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone"):
        check(BODY, headers(), now=NOW.replace(tzinfo=None))


def test_a_delivery_becomes_a_contract_change_event(registry: SchemaRegistry) -> None:
    event = to_event(PAYLOAD, registry=registry, source=SOURCE)
    assert event.get_type() == "dms.change.notified.v1"
    assert event.get_id() == "eb0c4e06-751f-442c-86f8-fd5bb404dbec"
    assert event.get_subject() == "73835521473"
    assert validate_event(event, registry) == {
        "platform": "box",
        "change_type": "FILE.UPLOADED",
        "resource": "files/73835521473",
        "resource_id": "73835521473",
        "subscription_id": "53",
        "tenant_id": None,
        "notified_at": datetime(2025, 3, 14, 17, 10, 32, tzinfo=UTC),
    }


def test_a_box_retry_keeps_the_payload_id_and_so_the_event_id(registry: SchemaRegistry) -> None:
    first = to_event(json.loads(BODY), registry=registry, source=SOURCE)
    again = to_event(json.loads(BODY), registry=registry, source=SOURCE)
    assert first.get_id() == again.get_id()


def test_without_a_payload_id_the_event_id_is_derived_from_the_delivery(registry: SchemaRegistry) -> None:
    anonymous = {key: value for key, value in PAYLOAD.items() if key != "id"}
    first = to_event(anonymous, registry=registry, source=SOURCE)
    assert first.get_id() == to_event(copy.deepcopy(anonymous), registry=registry, source=SOURCE).get_id()
    later = anonymous | {"created_at": "2025-03-14T10:12:05-07:00"}
    assert to_event(later, registry=registry, source=SOURCE).get_id() != first.get_id()


def test_numeric_ids_of_older_payloads_are_read_as_text(registry: SchemaRegistry) -> None:
    document = copy.deepcopy(PAYLOAD) | {"id": 11446498, "webhook": {"id": 53, "type": "webhook"}}
    document["source"] = {"id": 12345, "type": "folder", "name": "SOWs"}
    event = to_event(document, registry=registry, source=SOURCE)
    data = validate_event(event, registry)
    assert (event.get_id(), data["resource"], data["subscription_id"]) == ("11446498", "folders/12345", "53")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": None}, "trigger"),
        ({"source": None}, "source"),
        ({"source": {"type": "file"}}, "source.id"),
        ({"source": {"id": "1"}}, "source.type"),
        ({"created_at": None}, "created_at"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"webhook": "53"}, "webhook"),
        ({"type": "event"}, "type"),
    ],
)
def test_a_malformed_payload_is_refused_naming_the_field(
    registry: SchemaRegistry, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_event(copy.deepcopy(PAYLOAD) | change, registry=registry, source=SOURCE)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "eb0c4e06\r\n751f"}, "id"),
        ({"source": {"id": "7383\x005521473", "type": "file"}}, "source.id"),
        ({"source": {"id": "\ufffe", "type": "file"}}, "source.id"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at"),
        ({"created_at": "2025-03-14T10:10:32-0700"}, "created_at"),
    ],
)
def test_a_field_that_becomes_an_attribute_must_be_a_cloudevents_string_or_instant(
    registry: SchemaRegistry, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_event(copy.deepcopy(PAYLOAD) | change, registry=registry, source=SOURCE)
    assert caught.value.field == field


def test_a_hostile_body_is_refused_by_the_strict_json_reader_after_verification() -> None:
    deep = b'{"trigger": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    check(deep, headers(deep))  # the signature is over bytes: it verifies whatever they hold
    with pytest.raises(JsonTooComplex):
        load_json_object(deep)
    with pytest.raises(MalformedJson):
        load_json_object(BODY.replace(b'"trigger": "FILE.UPLOADED"', b'"trigger": "FILE.\\udfffUPLOADED"', 1))
