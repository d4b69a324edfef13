"""DocuSign Connect inbound: HMAC verification of the raw body and the translation of envelope-sent,
envelope-delivered and envelope-completed.

Past 400 lines on purpose: every Connect message and signature case against the one translation.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from connectors.docusign.inbound import parse, to_event, verify
from hub.errors import (
    AuthenticationFailed,
    ConfigurationError,
    InvalidEvent,
    JsonTooComplex,
    MalformedJson,
    SchemaViolation,
)
from hub.events import validate_event
from hub.registry import SchemaRegistry

SOURCE = "docusign://account/12345678-abcd-1234-abcd-1234567890ab"
KEY = "Xq3sE0oY1nJmV3zC6jQ9yT2uR5wA8dF4hK7pL0bN6gM="
NEW_KEY = "c2Vjb25kLWNvbm5lY3Qta2V5LWZvci1yb3RhdGlvbg=="
ENVELOPE_ID = "4d7e1a52-93b6-4f0e-9a1d-6c2b8e5f0a11"
FIELDS = "data.envelopeSummary.customFields.textCustomFields"

#: A JSON SIM envelope-completed message (envelope summary with recipients, custom fields, documents).
PAYLOAD: dict[str, Any] = {
    "event": "envelope-completed",
    "apiVersion": "v2.1",
    "uri": f"/restapi/v2.1/accounts/12345678-abcd-1234-abcd-1234567890ab/envelopes/{ENVELOPE_ID}",
    "retryCount": 0,
    "configurationId": 10523871,
    "generatedDateTime": "2025-03-14T09:27:01.4566935Z",
    "data": {
        "accountId": "12345678-abcd-1234-abcd-1234567890ab",
        "userId": "0b8a5c1e-6f3d-4c2a-9e7b-1d4f6a8c2e90",
        "envelopeId": ENVELOPE_ID,
        "envelopeSummary": {
            "status": "completed",
            "emailSubject": "Please DocuSign: SOW ACME-2025-014",
            "createdDateTime": "2025-03-12T15:02:11.37Z",
            "sentDateTime": "2025-03-12T15:02:12.1Z",
            "completedDateTime": "2025-03-14T09:26:53.5899912Z",
            "customFields": {
                "textCustomFields": [
                    {"fieldId": "10731712", "name": "project_code", "show": "true", "required": "false",
                     "value": "ACME-2025-014"},
                    {"fieldId": "10731713", "name": "document_class", "show": "true", "required": "false",
                     "value": "SOW"},
                    {"fieldId": "10731714", "name": "contract_value", "show": "false", "required": "false",
                     "value": "125,000.00"},
                    {"fieldId": "10731715", "name": "contract_currency", "show": "false", "required": "false",
                     "value": "EUR"},
                    {"fieldId": "10731716", "name": "start_date", "show": "false", "required": "false",
                     "value": "2025-04-01"},
                    {"fieldId": "10731717", "name": "end_date", "show": "false", "required": "false",
                     "value": "2025-09-30"},
                    {"fieldId": "10731718", "name": "notes", "show": "false", "required": "false", "value": ""},
                ],
                "listCustomFields": [],
            },
            "recipients": {
                "signers": [
                    {"recipientId": "1", "routingOrder": "1", "status": "completed", "name": "Anna Schmidt",
                     "email": "a.schmidt@acme.example", "roleName": "client_signatory",
                     "signedDateTime": "2025-03-13T10:14:22.903Z", "deliveredDateTime": "2025-03-13T10:12:09.2Z"},
                    {"recipientId": "2", "routingOrder": "2", "status": "completed", "name": "Peter Weber",
                     "email": "p.weber@firm.example", "roleName": "engagement_partner",
                     "signedDateTime": "2025-03-14T09:26:53.5899912Z"},
                ],
                "carbonCopies": [],
                "recipientCount": "2",
            },
            "envelopeDocuments": [
                {"documentId": "1", "documentIdGuid": "9e0c3b7a-2d4f-4e61-8a5b-0f1c2d3e4f50",
                 "name": "SOW ACME-2025-014.pdf", "type": "content", "order": "1"},
                {"documentId": "certificate", "name": "Summary", "type": "summary", "order": "999"},
            ],
        },
    },
}
#: The body as DocuSign sends it: the exact bytes are what is signed.
BODY = json.dumps(PAYLOAD, indent=2).encode("utf-8")


def sign(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def payload(**summary_changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(PAYLOAD)
    document["data"]["envelopeSummary"].update(summary_changes)
    return document


def without_field(name: str) -> dict[str, Any]:
    document = payload()
    fields = document["data"]["envelopeSummary"]["customFields"]["textCustomFields"]
    fields[:] = [field for field in fields if field["name"] != name]
    return document


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def test_a_body_signed_with_the_connect_key_verifies() -> None:
    verify(BODY, {"X-DocuSign-Signature-1": sign(BODY, KEY)}, [KEY])


def test_signature_headers_are_found_whatever_their_case() -> None:
    verify(BODY, {"x-docusign-signature-1": sign(BODY, KEY)}, [KEY])


def test_during_rotation_a_signature_made_with_the_second_key_verifies() -> None:
    headers = {"X-DocuSign-Signature-1": sign(BODY, "retired-key"), "X-DocuSign-Signature-2": sign(BODY, NEW_KEY)}
    verify(BODY, headers, [KEY, NEW_KEY])


def test_a_signature_made_with_another_key_is_rejected() -> None:
    with pytest.raises(AuthenticationFailed):
        verify(BODY, {"X-DocuSign-Signature-1": sign(BODY, "not-the-key")}, [KEY])


def test_a_body_with_one_flipped_byte_is_rejected() -> None:
    tampered = bytearray(BODY)
    tampered[BODY.index(b"ACME-2025-014")] ^= 0x01
    with pytest.raises(AuthenticationFailed):
        verify(bytes(tampered), {"X-DocuSign-Signature-1": sign(BODY, KEY)}, [KEY])


def test_the_same_json_serialised_differently_is_rejected() -> None:
    reserialised = json.dumps(json.loads(BODY)).encode("utf-8")
    assert json.loads(reserialised) == json.loads(BODY) and reserialised != BODY
    with pytest.raises(AuthenticationFailed):
        verify(reserialised, {"X-DocuSign-Signature-1": sign(BODY, KEY)}, [KEY])


def test_a_request_without_a_signature_header_is_rejected() -> None:
    with pytest.raises(AuthenticationFailed, match="missing"):
        verify(BODY, {"Content-Type": "application/json", "X-DocuSign-Signature": sign(BODY, KEY)}, [KEY])


@pytest.mark.parametrize("garbage", ["", "not base64 at all!", "é" * 44, sign(BODY, KEY)[:-4]])
def test_a_malformed_signature_is_rejected_as_unauthenticated(garbage: str) -> None:
    with pytest.raises(AuthenticationFailed):
        verify(BODY, {"X-DocuSign-Signature-1": garbage}, [KEY])


def test_the_rejection_names_neither_the_key_nor_the_expected_signature() -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        verify(BODY, {"X-DocuSign-Signature-1": sign(BODY, "forged")}, [KEY])
    assert KEY not in str(caught.value) and sign(BODY, KEY) not in str(caught.value)


def test_no_configured_key_is_a_configuration_error_not_a_rejection() -> None:
    with pytest.raises(ConfigurationError):
        verify(BODY, {"X-DocuSign-Signature-1": sign(BODY, KEY)}, [])


def test_parse_reads_the_json_body() -> None:
    assert parse(BODY) == PAYLOAD


@pytest.mark.parametrize("body", [b"{\"event\": ", b"\xff\xfe", b"[1, 2]"])
def test_parse_refuses_a_body_that_is_not_a_json_object(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse(body)


def test_envelope_completed_becomes_a_contract_event_keyed_by_envelope(registry: SchemaRegistry) -> None:
    event = to_event(parse(BODY), registry=registry, source=SOURCE)
    assert event is not None
    data = validate_event(event, registry)
    assert event.get_type() == "esign.envelope.completed.v1"
    assert event.get_subject() == ENVELOPE_ID
    assert event.get_source() == SOURCE
    assert event.get_attributes()["partitionkey"] == "project:ACME-2025-014"
    assert data["envelope_id"] == ENVELOPE_ID
    assert data["project_code"] == "ACME-2025-014"
    assert data["document_class"] == "sow"
    assert data["document_name"] == "SOW ACME-2025-014.pdf"
    assert data["completed_at"] == datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
    assert data["value"] == {"amount_minor": 12_500_000, "currency": "EUR"}
    assert (data["start_date"], data["end_date"]) == (date(2025, 4, 1), date(2025, 9, 30))
    assert [(s["name"], s["email"], s["role"]) for s in data["signers"]] == [
        ("Anna Schmidt", "a.schmidt@acme.example", "client_signatory"),
        ("Peter Weber", "p.weber@firm.example", "engagement_partner"),
    ]
    assert data["signers"][0]["signed_at"] == datetime(2025, 3, 13, 10, 14, 22, 903000, tzinfo=UTC)


def test_optional_business_fields_may_be_absent(registry: SchemaRegistry) -> None:
    document = payload()
    summary = document["data"]["envelopeSummary"]
    summary["customFields"]["textCustomFields"] = summary["customFields"]["textCustomFields"][:2]
    del summary["envelopeDocuments"]
    event = to_event(document, registry=registry, source=SOURCE)
    assert event is not None
    data = validate_event(event, registry)
    assert (data["value"], data["start_date"], data["end_date"], data["document_name"]) == (None, None, None, None)


def test_a_value_in_a_three_decimal_currency_is_kept_in_fils(registry: SchemaRegistry) -> None:
    document = payload()
    for field in document["data"]["envelopeSummary"]["customFields"]["textCustomFields"]:
        field["value"] = {"contract_value": "4500.125", "contract_currency": "bhd"}.get(field["name"], field["value"])
    event = to_event(document, registry=registry, source=SOURCE)
    assert event is not None
    assert validate_event(event, registry)["value"] == {"amount_minor": 4_500_125, "currency": "BHD"}


def test_a_connect_retry_of_the_same_notification_gets_the_same_event_id(registry: SchemaRegistry) -> None:
    retry = copy.deepcopy(PAYLOAD) | {"retryCount": 1, "generatedDateTime": "2025-03-14T09:42:17.0012Z"}
    first = to_event(parse(BODY), registry=registry, source=SOURCE)
    again = to_event(parse(BODY), registry=registry, source=SOURCE)
    retried = to_event(retry, registry=registry, source=SOURCE)
    assert first is not None and again is not None and retried is not None
    assert first.get_id() == again.get_id() == retried.get_id()


def test_another_envelope_gets_another_event_id(registry: SchemaRegistry) -> None:
    other = copy.deepcopy(PAYLOAD)
    other["data"]["envelopeId"] = "0f9e8d7c-6b5a-4321-8765-43210fedcba9"
    first, second = (to_event(doc, registry=registry, source=SOURCE) for doc in (PAYLOAD, other))
    assert first is not None and second is not None
    assert first.get_id() != second.get_id()


def on_the_way(event: str) -> dict[str, Any]:
    """The same envelope as Connect reports it sent (``envelope-sent``) or opened (``envelope-delivered``)."""
    document = payload(status="sent" if event == "envelope-sent" else "delivered")
    summary = document["data"]["envelopeSummary"]
    document["event"] = event
    del summary["completedDateTime"]
    if event == "envelope-delivered":
        summary["deliveredDateTime"] = "2025-03-13T10:12:09.2Z"
    for signer in summary["recipients"]["signers"]:
        signer.update(status=summary["status"], signedDateTime=None)
    return document


@pytest.mark.parametrize(("event", "event_type", "instant", "at"), [
    ("envelope-sent", "esign.envelope.sent.v1", "sent_at", datetime(2025, 3, 12, 15, 2, 12, 100000, tzinfo=UTC)),
    ("envelope-delivered", "esign.envelope.delivered.v1", "delivered_at",
     datetime(2025, 3, 13, 10, 12, 9, 200000, tzinfo=UTC)),
])
def test_envelope_sent_and_delivered_become_events_of_their_own_keyed_by_envelope(
    registry: SchemaRegistry, event: str, event_type: str, instant: str, at: datetime
) -> None:
    ce = to_event(on_the_way(event), registry=registry, source=SOURCE)
    assert ce is not None
    data = validate_event(ce, registry)
    assert (ce.get_type(), ce.get_subject(), ce.get_time()) == (event_type, ENVELOPE_ID, at)
    assert ce.get_extension("partitionkey") == "project:ACME-2025-014"
    assert data == {
        "envelope_id": ENVELOPE_ID, "project_code": "ACME-2025-014", "document_class": "sow",
        "document_name": "SOW ACME-2025-014.pdf", instant: at,
        "signers": [
            {"name": "Anna Schmidt", "email": "a.schmidt@acme.example", "role": "client_signatory", "signed_at": None},
            {"name": "Peter Weber", "email": "p.weber@firm.example", "role": "engagement_partner", "signed_at": None},
        ],
    }
    retry = on_the_way(event) | {"retryCount": 3, "generatedDateTime": "2025-03-15T09:27:01Z"}
    again = to_event(retry, registry=registry, source=SOURCE)
    assert again is not None and again.get_id() == ce.get_id()  # a Connect retry is the same event


def test_sent_delivered_and_completed_of_one_envelope_are_three_events(registry: SchemaRegistry) -> None:
    events = [to_event(document, registry=registry, source=SOURCE)
              for document in (on_the_way("envelope-sent"), on_the_way("envelope-delivered"), PAYLOAD)]
    assert [e.get_type() for e in events if e is not None] == [
        "esign.envelope.sent.v1", "esign.envelope.delivered.v1", "esign.envelope.completed.v1"]
    assert len({e.get_id() for e in events if e is not None}) == 3


@pytest.mark.parametrize(("document", "path"), [
    ({**on_the_way("envelope-sent"), "data": {**on_the_way("envelope-sent")["data"], "envelopeSummary": {
        k: v for k, v in on_the_way("envelope-sent")["data"]["envelopeSummary"].items() if k != "sentDateTime"}}},
     "data.envelopeSummary.sentDateTime"),
    (on_the_way("envelope-sent") | {"data": {"envelopeId": ENVELOPE_ID}}, "data.envelopeSummary"),
    ({**on_the_way("envelope-delivered"), "data": {**on_the_way("envelope-delivered")["data"], "envelopeSummary": {
        k: v for k, v in on_the_way("envelope-delivered")["data"]["envelopeSummary"].items()
        if k != "deliveredDateTime"}}}, "data.envelopeSummary.deliveredDateTime"),
])
def test_a_sent_or_delivered_message_missing_what_it_needs_names_the_field(
    registry: SchemaRegistry, document: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == path


def test_a_sent_envelope_without_a_project_code_is_refused_naming_the_custom_field(registry: SchemaRegistry) -> None:
    document = on_the_way("envelope-sent")
    fields = document["data"]["envelopeSummary"]["customFields"]["textCustomFields"]
    fields[:] = [field for field in fields if field["name"] != "project_code"]
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == f"{FIELDS}[name=project_code]"


@pytest.mark.parametrize("event", ["recipient-completed", "recipient-delivered", "envelope-voided",
                                   "envelope-declined"])
def test_other_connect_events_are_acknowledged_without_an_event(registry: SchemaRegistry, event: str) -> None:
    assert to_event(copy.deepcopy(PAYLOAD) | {"event": event}, registry=registry, source=SOURCE) is None


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({k: v for k, v in PAYLOAD.items() if k != "event"}, "event"),
        ({k: v for k, v in PAYLOAD.items() if k != "data"}, "data"),
        (payload(completedDateTime=None), "data.envelopeSummary.completedDateTime"),
        (payload(completedDateTime="14/03/2025 09:26"), "data.envelopeSummary.completedDateTime"),
        (payload(status="sent"), "data.envelopeSummary.status"),
        (payload(recipients={"signers": []}), "data.envelopeSummary.recipients.signers"),
        (payload(customFields={}), "data.envelopeSummary.customFields.textCustomFields"),
        (without_field("project_code"), "data.envelopeSummary.customFields.textCustomFields[name=project_code]"),
        (without_field("document_class"), "data.envelopeSummary.customFields.textCustomFields[name=document_class]"),
        (without_field("contract_currency"),
         "data.envelopeSummary.customFields.textCustomFields[name=contract_currency]"),
    ],
)
def test_a_missing_or_malformed_field_is_named_by_its_json_path(
    registry: SchemaRegistry, document: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == path


def test_a_signer_without_an_email_is_named_by_index(registry: SchemaRegistry) -> None:
    document = payload()
    del document["data"]["envelopeSummary"]["recipients"]["signers"][1]["email"]
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == "data.envelopeSummary.recipients.signers[1].email"


def test_an_unknown_document_class_is_named_by_its_custom_field(registry: SchemaRegistry) -> None:
    document = payload()
    for field in document["data"]["envelopeSummary"]["customFields"]["textCustomFields"]:
        if field["name"] == "document_class":
            field["value"] = "Brochure"
    with pytest.raises(SchemaViolation) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == "data.envelopeSummary.customFields.textCustomFields[name=document_class]"


def with_fields(document: dict[str, Any], **values: str) -> dict[str, Any]:
    """``document`` with text custom fields set (``milestone_1`` names the field ``milestone.1``)."""
    fields = document["data"]["envelopeSummary"]["customFields"]["textCustomFields"]
    for key, value in values.items():
        name = key.replace("_", ".") if key.startswith("milestone_") else key
        for field in fields:
            if field["name"] == name:
                field["value"] = value
                break
        else:
            fields.append({"fieldId": str(10731800 + len(fields)), "name": name, "show": "false",
                           "required": "false", "value": value})
    return document


def test_milestone_fields_become_ordered_milestones_in_minor_units(registry: SchemaRegistry) -> None:
    document = with_fields(payload(), milestone_2="Phase 3 handover;4,000.00", milestone_10="Retention release;500;",
                           milestone_1=" Phase 2 build ; 12,000.50 ; 2027-03-31 ")
    event = to_event(document, registry=registry, source=SOURCE)
    assert event is not None
    assert validate_event(event, registry)["milestones"] == [
        {"name": "Phase 2 build", "amount": {"amount_minor": 1_200_050, "currency": "EUR"},
         "due_date": date(2027, 3, 31)},
        {"name": "Phase 3 handover", "amount": {"amount_minor": 400_000, "currency": "EUR"}, "due_date": None},
        {"name": "Retention release", "amount": {"amount_minor": 50_000, "currency": "EUR"}, "due_date": None},
    ]


def test_an_envelope_without_milestone_fields_has_no_milestones(registry: SchemaRegistry) -> None:
    document = with_fields(payload(), milestone="Phase 2;1;", **{"milestone.x": "Phase 3;1;"})
    event = to_event(document, registry=registry, source=SOURCE)
    assert event is not None
    assert validate_event(event, registry)["milestones"] == []


def test_an_empty_milestone_field_is_ignored(registry: SchemaRegistry) -> None:
    event = to_event(with_fields(payload(), milestone_1="  ", milestone_2="Phase 2;100;"), registry=registry,
                     source=SOURCE)
    assert event is not None
    assert [m["name"] for m in validate_event(event, registry)["milestones"]] == ["Phase 2"]


def test_milestones_use_the_minor_unit_of_the_contract_currency(registry: SchemaRegistry) -> None:
    document = with_fields(payload(), contract_value="1,500,000", contract_currency="jpy",
                           milestone_1="Kickoff;500,000;2027-01-15", milestone_2="Go-live;1,000,000")
    event = to_event(document, registry=registry, source=SOURCE)
    assert event is not None
    data = validate_event(event, registry)
    assert data["value"] == {"amount_minor": 1_500_000, "currency": "JPY"}
    assert [(m["name"], m["amount"]) for m in data["milestones"]] == [
        ("Kickoff", {"amount_minor": 500_000, "currency": "JPY"}),
        ("Go-live", {"amount_minor": 1_000_000, "currency": "JPY"})]


def test_milestones_without_a_contract_currency_name_the_missing_field(registry: SchemaRegistry) -> None:
    document = without_field("contract_value")
    document = with_fields(document, milestone_1="Phase 2 build;12,000.00;2027-03-31")
    fields = document["data"]["envelopeSummary"]["customFields"]["textCustomFields"]
    fields[:] = [field for field in fields if field["name"] != "contract_currency"]
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == "data.envelopeSummary.customFields.textCustomFields[name=contract_currency]"
    assert "milestones" in str(caught.value)


@pytest.mark.parametrize("text", [
    "Phase 2 build",  # no amount
    ";12,000.00;2027-03-31",  # no name
    "Phase 2 build;12,000.00;2027-03-31;extra",
    "Phase 2 build;twelve thousand;2027-03-31",
    "Phase 2 build;12,000.005;2027-03-31",  # more decimals than the euro has
    "Phase 2 build;12,000.00;31/03/2027",
])
def test_a_bad_milestone_names_its_custom_field(registry: SchemaRegistry, text: str) -> None:
    document = with_fields(payload(), milestone_1="Phase 1;1,000.00;", milestone_2=text)
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == "data.envelopeSummary.customFields.textCustomFields[name=milestone.2]"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"event": ' + b"[" * 5000 + b"]" * 5000 + b"}", JsonTooComplex),
        (b'{"event": "envelope-completed", "retryCount": ' + b"9" * 5000 + b"}", JsonTooComplex),
        (BODY.replace(b'"event": "envelope-completed"',
                      b'"event": "envelope-completed", "event": "envelope-voided"', 1), MalformedJson),
        (BODY.replace(ENVELOPE_ID.encode(), b"\\ud800", 1), MalformedJson),
    ],
)
def test_a_hostile_body_is_refused_by_the_strict_json_reader(body: bytes, error: type[Exception]) -> None:
    assert body != BODY
    with pytest.raises(error):
        parse(body)


def envelope_with(**data_changes: Any) -> dict[str, Any]:
    document = payload()
    document["data"].update(data_changes)
    return document


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (envelope_with(envelopeId="4d7e\r\n1a52"), "data.envelopeId"),
        (with_fields(payload(), project_code="ACME\x00-2025"), f"{FIELDS}[name=project_code]"),
        (payload(completedDateTime="0001-01-01T00:00:00+01:00"), "data.envelopeSummary.completedDateTime"),
        (payload(completedDateTime="2025-W11-5T09:26:53Z"), "data.envelopeSummary.completedDateTime"),
        (payload(completedDateTime="2025-03-14T09:26Z"), "data.envelopeSummary.completedDateTime"),
        (with_fields(payload(), contract_value="1e999999999"), f"{FIELDS}[name=contract_value]"),
        (with_fields(payload(), milestone_1="Phase 2;1e999999999;"), f"{FIELDS}[name=milestone.1]"),
    ],
)
def test_a_field_that_would_crash_later_is_refused_naming_it(
    registry: SchemaRegistry, document: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == path


def test_a_signing_instant_outside_what_avro_can_read_back_is_refused(registry: SchemaRegistry) -> None:
    document = payload()
    document["data"]["envelopeSummary"]["recipients"]["signers"][0]["signedDateTime"] = "9999-12-31T23:30:00-01:00"
    with pytest.raises(InvalidEvent) as caught:
        to_event(document, registry=registry, source=SOURCE)
    assert caught.value.field == "data.envelopeSummary.recipients.signers[0].signedDateTime"
