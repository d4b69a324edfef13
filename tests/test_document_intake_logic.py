"""Document intake, decided: a SharePoint file's list-item columns and retention label become the
document's state and retention events (pure; no Graph, no Redis)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from connectors.sharepoint.client import DriveItem, RetentionLabel
from connectors.sharepoint.documents import DocumentView, document_events
from hub.errors import InvalidEvent
from hub.events import make_event, validate_event
from hub.policy import DOCUMENT_CLASSES as CLASSES
from hub.policy import DOCUMENT_STATES
from hub.registry import SchemaRegistry

DRIVE = "b!Jt1n3xU5hE2r0Q8k4mZ7aA"
ITEM_ID = "01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K"
MODIFIED = datetime(2027, 2, 1, 10, 15, 30, 123000, tzinfo=UTC)
LABELLED = datetime(2027, 2, 1, 10, 16, tzinfo=UTC)
STATE_CHANGED = "dms.document.state_changed.v1"
RETENTION_APPLIED = "dms.document.retention_applied.v1"

#: A driveItem as Graph answers it (delta or GET /items/{id}).
ITEM_JSON: dict[str, Any] = {
    "@odata.etag": "\"{6F0D1C2B-3A4E-4F5A-9B8C-7D6E5F4A3B2C},4\"",
    "id": ITEM_ID,
    "name": "Change Order 7.docx",
    "eTag": "\"{6F0D1C2B-3A4E-4F5A-9B8C-7D6E5F4A3B2C},4\"",
    "cTag": "\"c:{6F0D1C2B-3A4E-4F5A-9B8C-7D6E5F4A3B2C},6\"",
    "webUrl": "https://contoso.sharepoint.com/sites/Engagements/Shared%20Documents/ACME/P1/Change%20Order%207.docx",
    "createdDateTime": "2027-01-28T08:00:00Z",
    "lastModifiedDateTime": "2027-02-01T10:15:30.123Z",
    "size": 48213,
    "parentReference": {"driveType": "documentLibrary", "driveId": DRIVE, "id": "01BYE5RZ2KQ"},
    "file": {"mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             "hashes": {"quickXorHash": "dGhpcyBpcyBub3QgYSBoYXNo"}},
}
FIELDS: dict[str, Any] = {
    "@odata.etag": "\"6f0d1c2b-3a4e-4f5a-9b8c-7d6e5f4a3b2c,6\"",
    "Title": "Change Order 7",
    "DocumentClass": "Change Order",
    "DocumentState": "approved",
    "ProjectCode": "ENG-ACME-0001",
    "Reference": "CO-7",
    "Milestone": "M2",
    "InvoiceNumber": "INV-2027-0042",
    "ContractValue": "12,000.50",
    "ContractCurrency": "EUR",
    "Milestones": "Phase 2 build;8,000.50;2027-03-31\n\nPhase 3 handover; 4,000 \n",
}
LABEL: dict[str, Any] = {"name": "EU-Contract-10y", "isLabelAppliedExplicitly": True,
                         "labelAppliedDateTime": "2027-02-01T10:16:00Z"}


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def view(fields: dict[str, Any] | None = None, *, label: dict[str, Any] | None = LABEL,
         item: dict[str, Any] | None = None, **changes: Any) -> DocumentView:
    columns = {**(FIELDS if fields is None else fields), **changes}
    columns = {k: v for k, v in columns.items() if v is not None}
    return DocumentView(DRIVE, DriveItem.model_validate(ITEM_JSON if item is None else item), columns,
                        None if label is None else RetentionLabel.model_validate(label))


def events_of(document: DocumentView, region: str | None = "EU") -> dict[str, dict[str, Any]]:
    events = document_events(document, region=region)
    assert len({event_type for event_type, _ in events}) == len(events)
    return dict(events)


def error_of(document: DocumentView) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        document_events(document, region="EU")
    return caught.value


def encodes(registry: SchemaRegistry, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Every event is valid under the real schemas, and decodes back to what was built."""
    for event_type, data in events:
        registry.encode(event_type, data)
        event = make_event(registry, type=event_type, source="hub://document-intake", data=data,
                           subject=data["document_id"], partitionkey=f"project:{data['project_code']}")
        decoded = validate_event(event, registry)
        assert decoded["document_id"] == data["document_id"]
        assert decoded["project_code"] == data["project_code"]


def test_a_classified_file_becomes_its_state_event() -> None:
    data = events_of(view())[STATE_CHANGED]
    assert data == {
        "document_id": ITEM_ID, "drive_id": DRIVE, "item_id": ITEM_ID, "project_code": "ENG-ACME-0001",
        "document_class": "change_order", "state": "approved", "previous_state": None,
        "name": "Change Order 7.docx", "url": ITEM_JSON["webUrl"], "reference": "CO-7", "milestone": "M2",
        "invoice_number": "INV-2027-0042", "changed_at": MODIFIED,
        "value": {"amount_minor": 1_200_050, "currency": "EUR"},
        "milestones": [
            {"name": "Phase 2 build", "amount": {"amount_minor": 800_050, "currency": "EUR"},
             "due_date": date(2027, 3, 31)},
            {"name": "Phase 3 handover", "amount": {"amount_minor": 400_000, "currency": "EUR"}, "due_date": None},
        ],
    }


def test_the_retention_label_becomes_a_retention_event_in_the_projects_jurisdiction() -> None:
    assert list(events_of(view())) == [STATE_CHANGED, RETENTION_APPLIED]
    assert events_of(view(), region="ME")[RETENTION_APPLIED] == {
        "document_id": ITEM_ID, "project_code": "ENG-ACME-0001", "retention_label": "EU-Contract-10y",
        "jurisdiction": "ME", "country": None, "applied_at": LABELLED,
    }


def test_a_label_without_its_applied_time_takes_the_files_time() -> None:
    data = events_of(view(label={"name": "ME-Deliverable-10y"}))[RETENTION_APPLIED]
    assert data["applied_at"] == MODIFIED and data["retention_label"] == "ME-Deliverable-10y"


@pytest.mark.parametrize(("label", "region"), [
    (None, "EU"),  # no label on the file
    ({"name": None}, "EU"),  # Graph answers an empty itemRetentionLabel
    ({"name": ""}, "EU"),
    (LABEL, None),  # the project's region is not known (not in the ERP)
])
def test_no_retention_event_without_a_label_or_a_jurisdiction(label: dict[str, Any] | None,
                                                              region: str | None) -> None:
    assert list(events_of(view(label=label), region=region)) == [STATE_CHANGED]


@pytest.mark.parametrize(("typed", "expected"), [
    ("Change Order", "change_order"), ("SOW", "sow"), (" engagement letter ", "engagement_letter"),
    ("engagement-letter", "engagement_letter"),
    ("Service Report", "service_report"), ("customer_approval", "customer_approval"),
])
def test_the_class_column_is_read_as_people_type_it(typed: str, expected: str) -> None:
    assert events_of(view(DocumentClass=typed))[STATE_CHANGED]["document_class"] == expected


@pytest.mark.parametrize(("typed", "expected"), [
    ("Signed", "signed"), ("In Review", "in_review"), ("in_review", "in_review"), ("SUPERSEDED", "superseded"),
])
def test_the_state_column_is_read_as_people_type_it(typed: str, expected: str) -> None:
    assert events_of(view(DocumentState=typed))[STATE_CHANGED]["state"] == expected


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_a_file_without_a_state_is_a_draft(missing: str | None) -> None:
    assert events_of(view(DocumentState=missing))[STATE_CHANGED]["state"] == "draft"


def test_optional_columns_may_be_absent() -> None:
    fields = {"DocumentClass": "deliverable", "ProjectCode": "ENG-ACME-0001"}
    data = events_of(view(fields, label=None))[STATE_CHANGED]
    assert (data["state"], data["milestone"], data["invoice_number"], data["value"], data["milestones"]) == (
        "draft", None, None, None, [])


def test_blank_optional_columns_count_as_absent() -> None:
    data = events_of(view(Milestone="  ", InvoiceNumber="", ContractValue=" ", Milestones="",
                          ContractCurrency=""))[STATE_CHANGED]
    assert (data["milestone"], data["invoice_number"], data["value"], data["milestones"]) == (None, None, None, [])


def test_the_currency_is_upper_cased_and_sets_the_minor_unit() -> None:
    data = events_of(view(ContractValue="4,500.125", ContractCurrency="bhd", Milestones=None))[STATE_CHANGED]
    assert data["value"] == {"amount_minor": 4_500_125, "currency": "BHD"}
    data = events_of(view(ContractValue="1,500,000", ContractCurrency="JPY", Milestones="Kickoff;500000;"))[
        STATE_CHANGED]
    assert data["value"] == {"amount_minor": 1_500_000, "currency": "JPY"}
    assert data["milestones"] == [{"name": "Kickoff", "amount": {"amount_minor": 500_000, "currency": "JPY"},
                                   "due_date": None}]


def test_a_numeric_contract_value_column_is_read() -> None:
    assert events_of(view(ContractValue=12000.5))[STATE_CHANGED]["value"] == {"amount_minor": 1_200_050,
                                                                              "currency": "EUR"}


def test_a_file_without_a_modified_time_is_stamped_now() -> None:
    item = {k: v for k, v in ITEM_JSON.items() if k != "lastModifiedDateTime"}
    before = datetime.now(UTC)
    changed_at = events_of(view(item=item))[STATE_CHANGED]["changed_at"]
    assert before <= changed_at <= datetime.now(UTC)


@pytest.mark.parametrize("fields", [
    {},
    {"Title": "Minutes of the kick-off", "ProjectCode": "ENG-ACME-0001"},
    {"DocumentClass": None, "DocumentState": "approved", "ProjectCode": "ENG-ACME-0001"},
    {"DocumentClass": "   ", "DocumentState": "approved"},
])
def test_an_unclassified_file_emits_nothing(fields: dict[str, Any]) -> None:
    document = DocumentView(DRIVE, DriveItem.model_validate(ITEM_JSON), fields, RetentionLabel.model_validate(LABEL))
    assert document_events(document, region="EU") == []


def test_classified_means_a_class_is_named() -> None:
    assert view().classified
    assert not DocumentView(DRIVE, DriveItem.model_validate(ITEM_JSON), {"ProjectCode": "P1"}, None).classified


@pytest.mark.parametrize(("changes", "field"), [
    ({"DocumentClass": "Brochure"}, "DocumentClass"),
    ({"DocumentState": "countersigned"}, "DocumentState"),
    ({"ProjectCode": None}, "ProjectCode"),
    ({"ProjectCode": "  "}, "ProjectCode"),
    ({"ContractCurrency": None}, "ContractCurrency"),
    ({"ContractValue": "twelve thousand"}, "ContractValue"),
    ({"ContractValue": "12,000.505"}, "ContractValue"),  # more decimals than the euro has
    ({"ContractCurrency": "EURO"}, "ContractValue"),  # not an ISO 4217 code
    ({"ContractValue": None, "ContractCurrency": None}, "Milestones"),  # milestones need a currency
    ({"Milestones": "Phase 2 build"}, "Milestones"),  # no amount
    ({"Milestones": "Phase 2;1;2027-03-31;extra"}, "Milestones"),
    ({"Milestones": ";1,000.00;2027-03-31"}, "Milestones"),  # no name
    ({"Milestones": "Phase 2;lots;2027-03-31"}, "Milestones"),
    ({"Milestones": "Phase 2;1,000.00;31/03/2027"}, "Milestones"),
])
def test_a_bad_column_is_named(changes: dict[str, Any], field: str) -> None:
    error = error_of(view(**changes))
    assert error.field == field
    assert str(error)


def test_the_error_names_what_was_typed() -> None:
    assert "'brochure'" in str(error_of(view(DocumentClass="Brochure")))
    assert "Phase 2 build" in str(error_of(view(Milestones="Phase 2 build")))


def test_every_known_class_and_state_is_accepted(registry: SchemaRegistry) -> None:
    for cls in CLASSES:
        for state in DOCUMENT_STATES:
            events = document_events(view(DocumentClass=cls, DocumentState=state), region="APAC")
            assert [event_type for event_type, _ in events] == [STATE_CHANGED, RETENTION_APPLIED]
            assert (events[0][1]["document_class"], events[0][1]["state"]) == (cls, state)
            encodes(registry, events)


def test_every_event_encodes_with_the_real_schemas(registry: SchemaRegistry) -> None:
    cases = [
        view(),
        view(label=None),
        view({"DocumentClass": "deliverable", "ProjectCode": "ENG-ACME-0001"}, label={"name": "ME-Deliverable-10y"}),
        view(ContractValue="4,500.125", ContractCurrency="kwd", Milestones="A;1.5;\nB;2;2027-12-31"),
    ]
    for document in cases:
        for region in ("NA", "EU", "ME", "APAC", None):
            encodes(registry, document_events(document, region=region))


def test_the_state_event_decodes_to_what_was_read(registry: SchemaRegistry) -> None:
    (event_type, data), _ = document_events(view(), region="EU")
    decoded = validate_event(make_event(registry, type=event_type, source="hub://document-intake", data=data),
                             registry)
    assert decoded["changed_at"] == MODIFIED
    assert decoded["value"] == data["value"]
    assert decoded["milestones"] == data["milestones"]
    assert decoded["document_class"] == "change_order" and decoded["state"] == "approved"


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("125,000.00", "EUR", 12_500_000), ("1", "EUR", 100), ("12.345", "KWD", 12_345), ("5000", "JPY", 5000),
    ("99999999999999.99", "EUR", 9_999_999_999_999_999),
])
def test_amounts_are_read_in_minor_units_of_their_currency(amount: str, currency: str, minor: int) -> None:
    from connectors.money import minor_units

    assert minor_units(amount, currency) == minor


@pytest.mark.parametrize(("amount", "currency", "why"), [
    ("1e999999999", "EUR", "too large"), ("100000000000000000", "EUR", "too large"),
    ("1e-999999999", "EUR", "more decimals"), ("0.001", "EUR", "more decimals"), ("1.5", "JPY", "more decimals"),
    ("NaN", "EUR", "not a decimal"), ("Infinity", "EUR", "not a decimal"), ("ten", "EUR", "not a decimal"),
    ("1", "eur", "ISO 4217"),
])
def test_amounts_no_currency_can_hold_are_refused_by_name(amount: str, currency: str, why: str) -> None:
    from connectors.money import minor_units

    with pytest.raises(ValueError, match=why):
        minor_units(amount, currency)
