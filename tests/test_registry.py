"""The schema registry: loading the packaged schemas, encoding and decoding, and loud failures.

Past 400 lines on purpose: the registry's loading, codecs and refusals share their schema fixtures.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from hub.errors import SchemaError, SchemaViolation, UnknownEventType
from hub.registry import SchemaRegistry

T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)

#: Realistic data for every event type, with every optional field filled in.
SAMPLES: dict[str, dict[str, Any]] = {
    "erp.client.upserted.v1": {
        "client_id": "C-10042",
        "name": "ACME Industrie GmbH",
        "country": "DE",
        "status": "active",
        "industry": "Manufacturing",
        "parent_client_id": "C-10000",
        "billing_currency": "EUR",
        "updated_at": T0,
    },
    "erp.project.created.v1": {
        "project_code": "ACME-2025-014",
        "client_id": "C-10042",
        "name": "Operating model redesign",
        "engagement_type": "consulting",
        "practice": "Strategy",
        "region": "EU",
        "country": "DE",
        "partner": "p.weber@firm.example",
        "billing_model": "time_and_materials",
        "status": "active",
        "value": {"amount_minor": 48_000_000, "currency": "EUR"},
        "start_date": date(2025, 4, 1),
        "end_date": date(2025, 9, 30),
        "conflicted_groups": [],
        "updated_at": T0,
    },
    "erp.project.updated.v1": {
        "project_code": "MAT-2025-0311",
        "client_id": "C-20417",
        "name": "Acquisition of Gulf Logistics LLC",
        "engagement_type": "legal",
        "practice": "M&A",
        "region": "ME",
        "country": "AE",
        "partner": "s.haddad@firm.example",
        "billing_model": "retainer",
        "status": "on_hold",
        "value": None,
        "start_date": date(2025, 2, 3),
        "end_date": None,
        "conflicted_groups": ["grp-matter-0288-team", "grp-lateral-hire-2025-07"],
        "updated_at": T0,
    },
    "erp.invoice.drafted.v1": {
        "invoice_number": "INV-2025-00731",
        "project_code": "ENG-ME-2025-007",
        "amount": {"amount_minor": 1_275_000_00, "currency": "AED"},
        "period_start": date(2025, 2, 1),
        "period_end": date(2025, 2, 28),
        "milestone": "M3 Detailed design",
        "bills": [{"document_class": "deliverable", "reference": "M3 Detailed design report"},
                  {"document_class": "change_record", "reference": "CR-0042"}],
        "drafted_at": T0,
    },
    "dms.document.state_changed.v1": {
        "document_id": "doc-8f14e45f",
        "drive_id": "b!Xk2v9T0sQ0uA7wq1_drive",
        "item_id": "01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K",
        "project_code": "ENG-ME-2025-007",
        "document_class": "deliverable",
        "state": "approved",
        "previous_state": "in_review",
        "name": "M3 Detailed design report.pdf",
        "url": "https://firm.sharepoint.com/sites/ENG-ME-2025-007/Deliverables/M3.pdf",
        "reference": "M3 Detailed design report",
        "milestone": "M3 Detailed design",
        "invoice_number": "INV-2025-00731",
        "changed_at": T0,
        "value": None,
        "milestones": [],
    },
    "dms.document.retention_applied.v1": {
        "document_id": "doc-8f14e45f",
        "project_code": "ENG-ME-2025-007",
        "retention_label": "ME-Engineering-10y",
        "jurisdiction": "ME",
        "country": "AE",
        "applied_at": T0,
    },
    "esign.envelope.completed.v1": {
        "envelope_id": "4b5c8e2a-93d1-4f6e-a7b0-2c9d1e3f4a5b",
        "project_code": "ACME-2025-014",
        "document_class": "sow",
        "document_name": "SOW 1 - Operating model redesign.pdf",
        "signers": [
            {"name": "Jürgen Müller", "email": "j.mueller@acme.example", "role": "client", "signed_at": T0},
            {"name": "Petra Weber", "email": "p.weber@firm.example", "role": None, "signed_at": None},
        ],
        "completed_at": T0,
        "value": {"amount_minor": 48_000_000, "currency": "EUR"},
        "start_date": date(2025, 4, 1),
        "end_date": date(2025, 9, 30),
        "milestones": [
            {"name": "Phase 2 build", "amount": {"amount_minor": 5_000_000, "currency": "EUR"},
             "due_date": date(2025, 8, 31)},
            {"name": "Handover", "amount": {"amount_minor": 3_000_000, "currency": "EUR"}, "due_date": None},
        ],
    },
    "esign.envelope.sent.v1": {
        "envelope_id": "4b5c8e2a-93d1-4f6e-a7b0-2c9d1e3f4a5b",
        "project_code": "ACME-2025-014",
        "document_class": "sow",
        "document_name": "SOW 1 - Operating model redesign.pdf",
        "signers": [{"name": "Jürgen Müller", "email": "j.mueller@acme.example", "role": "client", "signed_at": None}],
        "sent_at": T0,
    },
    "esign.envelope.delivered.v1": {
        "envelope_id": "4b5c8e2a-93d1-4f6e-a7b0-2c9d1e3f4a5b",
        "project_code": "ACME-2025-014",
        "document_class": "sow",
        "document_name": None,
        "signers": [{"name": "Jürgen Müller", "email": "j.mueller@acme.example", "role": None, "signed_at": None}],
        "delivered_at": T0,
    },
    "hub.engagement.activated.v1": {
        "project_code": "MAT-GLOBEX-0042",
        "engagement_type": "legal",
        "rule": "signed-engagement-letter",
        "document_class": "engagement_letter",
        "document_ref": "4b5c8e2a-93d1-4f6e-a7b0-2c9d1e3f4a5b",
        "matter_opened": True,
        "time_entry_enabled": True,
        "billing_codes": ["MAT-GLOBEX-0042-FEES", "MAT-GLOBEX-0042-DISBURSEMENTS"],
        "value": None,
        "notify": ["reporting"],
        "activated_at": T0,
    },
    "dms.workspace.provisioned.v1": {
        "project_code": "ACME-2025-014",
        "workspace_id": "firm.sharepoint.com,5a58bb09-1fba-41c1-8125-69da264370a0",
        "drive_id": "b!Xk2v9T0sQ0uA7wq1_drive",
        "url": "https://firm.sharepoint.com/sites/ACME-2025-014",
        "provisioning_ms": 4_180,
        "folders": ["Contracts", "SOWs", "Deliverables", "Correspondence", "Invoices"],
        "groups": ["grp-strategy-eu", "grp-region-eu"],
        "retention_label": "EU-Client-7y",
        "provisioned_at": T0,
    },
    "hub.invoice.readiness_changed.v1": {
        "invoice_number": "INV-2025-00731",
        "project_code": "ENG-ME-2025-007",
        "status": "held",
        "hold_reasons": [
            {"code": "deliverable_not_approved", "artefact": "doc-1c2d", "detail": "M3 drawings in review",
             "name": "M3 drawings.pdf", "owner": "pmo"},
            {"code": "retention_label_missing", "artefact": "doc-8f14e45f", "detail": None, "name": None,
             "owner": "records_management"},
        ],
        "changed_at": T0,
    },
    "hub.exception.raised.v1": {
        "exception_id": "exc-2025-000193",
        "owner": "records_management",
        "kind": "orphan_workspace",
        "severity": "medium",
        "subject": "OLD-2019-044",
        "detail": "Workspace has no project in the ERP",
        "project": {"code": "OLD-2019-044", "erp_id": None, "workspace_id": "site-77c1"},
        "event_id": None,
        "event_type": None,
        "raised_at": T0,
    },
    "hub.reconciliation.completed.v1": {
        "run_id": "5c1f0f9e-0a51-4c1e-93c8-4ad0a93bd6de", "scope": ["workspaces", "crosswalk"], "incremental": False,
        "since": None, "repair": True, "started_at": T0, "finished_at": T0, "duration_ms": 21_400, "compared": 9_870,
        "counts": {"RC101": 12, "RC304": 1}, "repaired": 13, "routed": 1,
    },
    "hub.reconciliation.repair_requested.v1": {
        "run_id": "5c1f0f9e-0a51-4c1e-93c8-4ad0a93bd6de", "subject": "LAW-2025-007", "project_code": "LAW-2025-007",
        "actors": ["provisioning"], "codes": ["RC201", "RC304"], "requested_at": T0,
    },
}

NAMES = {
    "dms.change.notified.v1": "hub.dms.ChangeNotified",
    "dms.document.retention_applied.v1": "hub.dms.DocumentRetentionApplied",
    "dms.document.state_changed.v1": "hub.dms.DocumentStateChanged",
    "dms.workspace.provisioned.v1": "hub.dms.WorkspaceProvisioned",
    "erp.client.upserted.v1": "hub.erp.ClientUpserted",
    "erp.invoice.drafted.v1": "hub.erp.InvoiceDrafted",
    "erp.project.created.v1": "hub.erp.ProjectCreated",
    "erp.project.updated.v1": "hub.erp.ProjectUpdated",
    "esign.envelope.completed.v1": "hub.esign.EnvelopeCompleted",
    "esign.envelope.delivered.v1": "hub.esign.EnvelopeDelivered",
    "esign.envelope.sent.v1": "hub.esign.EnvelopeSent",
    "hub.client.changed.v1": "hub.hub.ClientChanged",
    "hub.engagement.activated.v1": "hub.hub.EngagementActivated",
    "hub.exception.raised.v1": "hub.hub.ExceptionRaised",
    "hub.invoice.readiness_changed.v1": "hub.hub.InvoiceReadinessChanged",
    "hub.project.changed.v1": "hub.hub.ProjectChanged",
    "hub.reconciliation.completed.v1": "hub.hub.ReconciliationCompleted",
    "hub.reconciliation.repair_requested.v1": "hub.hub.RepairRequested",
}


#: Event types whose schema changed (compatibly) since its first release.
VERSIONS = {"dms.document.state_changed.v1": 3, "erp.invoice.drafted.v1": 2, "esign.envelope.completed.v1": 2,
            "hub.invoice.readiness_changed.v1": 2, "hub.exception.raised.v1": 2}


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    """A writable copy of the packaged schemas (without the released snapshot)."""
    directory = tmp_path / "schemas"
    directory.mkdir()
    for entry in files("schemas").iterdir():
        if entry.name.endswith(".avsc"):
            (directory / entry.name).write_bytes(entry.read_bytes())
    return directory


def edit(directory: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / f"{name}.avsc"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def sample(event_type: str, **changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(SAMPLES[event_type])
    record.update(changes)
    return record


def test_the_packaged_schemas_load_with_every_event_type_and_its_avro_name(registry: SchemaRegistry) -> None:
    assert registry.event_types == sorted(NAMES)
    for event_type, name in NAMES.items():
        schema = registry.for_type(event_type)
        assert (schema.event_type, schema.name, schema.version) == (event_type, name, VERSIONS.get(event_type, 1))


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_every_event_type_round_trips_realistic_data(registry: SchemaRegistry, event_type: str) -> None:
    payload = registry.encode(event_type, SAMPLES[event_type])
    assert registry.decode(event_type, payload) == SAMPLES[event_type]


def test_optional_fields_may_be_left_out_and_decode_as_their_defaults(registry: SchemaRegistry) -> None:
    record = sample("erp.project.created.v1")
    for optional in ("value", "start_date", "end_date", "conflicted_groups"):
        del record[optional]
    decoded = registry.decode("erp.project.created.v1", registry.encode("erp.project.created.v1", record))
    assert decoded == record | {"value": None, "start_date": None, "end_date": None, "conflicted_groups": []}


def test_timestamps_may_be_given_as_epoch_milliseconds(registry: SchemaRegistry) -> None:
    millis = int(T0.timestamp() * 1000)
    record = sample("dms.document.retention_applied.v1", applied_at=millis)
    decoded = registry.decode(
        "dms.document.retention_applied.v1", registry.encode("dms.document.retention_applied.v1", record)
    )
    assert decoded["applied_at"] == T0


def test_non_ascii_text_round_trips_as_utf8(registry: SchemaRegistry) -> None:
    record = sample("erp.client.upserted.v1", name="Müller & Söhne 株式会社 شركة الخليج", country="AE")
    payload = registry.encode("erp.client.upserted.v1", record)
    assert "株式会社".encode() in payload
    assert registry.decode("erp.client.upserted.v1", payload)["name"] == record["name"]


def test_data_whose_avro_bytes_are_valid_utf8_still_decodes_from_bytes(registry: SchemaRegistry) -> None:
    record = {"code": "X", "erp_id": None, "workspace_id": None}
    exception = sample("hub.exception.raised.v1", project=record, raised_at=0x20)
    payload = registry.encode("hub.exception.raised.v1", exception)
    payload.decode("utf-8")  # the kind of payload a JSON CloudEvents reader would hand over as str
    assert registry.decode("hub.exception.raised.v1", payload)["project"] == record


def test_shared_types_from_other_files_are_inlined_and_enforced(registry: SchemaRegistry) -> None:
    resolved = json.dumps(registry.resolved("hub.erp.ProjectCreated"))
    assert '"name": "hub.common.Money"' in resolved
    assert '"name": "hub.common.EngagementType"' in resolved
    with pytest.raises(SchemaViolation) as caught:
        registry.encode(
            "erp.project.created.v1", sample("erp.project.created.v1", engagement_type="accounting")
        )
    assert caught.value.field == "engagement_type"


def test_a_type_used_twice_in_one_event_is_defined_once(registry: SchemaRegistry) -> None:
    resolved = json.dumps(registry.resolved("hub.dms.DocumentStateChanged"))
    assert resolved.count('"name": "hub.common.DocumentState"') == 1
    record = sample("dms.document.state_changed.v1", state="signed", previous_state="approved")
    assert (
        registry.decode(
            "dms.document.state_changed.v1", registry.encode("dms.document.state_changed.v1", record)
        )
        == record
    )


@pytest.mark.parametrize(
    ("event_type", "changes", "field"),
    [
        (
            "hub.invoice.readiness_changed.v1",
            {"hold_reasons": [{"code": "ok"}, {"code": 42, "artefact": None, "detail": None}]},
            "hold_reasons[1].code",
        ),
        (
            "esign.envelope.completed.v1",
            {"signers": [{"name": "A", "email": "a@x", "signed_at": "yesterday"}]},
            "signers[0].signed_at",
        ),
        (
            "erp.project.created.v1",
            {"value": {"amount_minor": "48000000", "currency": "EUR"}},
            "value.amount_minor",
        ),
        (
            "erp.project.created.v1",
            {"value": {"amount_minor": 2**63, "currency": "EUR"}},
            "value.amount_minor",
        ),
        ("erp.project.created.v1", {"region": "LATAM"}, "region"),
        ("erp.project.created.v1", {"start_date": datetime(2025, 4, 1, tzinfo=UTC)}, "start_date"),
        ("erp.project.created.v1", {"conflicted_groups": ["grp-a", None]}, "conflicted_groups[1]"),
        ("erp.client.upserted.v1", {"updated_at": datetime(2025, 3, 14, 9, 26)}, "updated_at"),
        ("erp.client.upserted.v1", {"name": "broken \udcff"}, "name"),
        ("erp.client.upserted.v1", {"status": True}, "status"),
        ("erp.client.upserted.v1", {"industy": "Retail"}, "industy"),
        ("dms.workspace.provisioned.v1", {"provisioning_ms": 4.2}, "provisioning_ms"),
    ],
)
def test_a_schema_violation_names_the_failing_field_path(
    registry: SchemaRegistry, event_type: str, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(SchemaViolation) as caught:
        registry.encode(event_type, sample(event_type, **changes))
    assert caught.value.field == field
    assert field in str(caught.value)


def test_a_missing_required_field_is_named(registry: SchemaRegistry) -> None:
    record = sample("erp.invoice.drafted.v1")
    del record["amount"]
    with pytest.raises(SchemaViolation, match="required field is missing") as caught:
        registry.encode("erp.invoice.drafted.v1", record)
    assert caught.value.field == "amount"


def test_data_that_is_not_a_record_is_a_violation(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaViolation, match="expected record, got list") as caught:
        registry.encode("erp.invoice.drafted.v1", ["INV-1"])  # type: ignore[arg-type]
    assert caught.value.field is None


@pytest.mark.parametrize(
    "mangle",
    [lambda payload: payload[:-3], lambda payload: payload + b"\x00", lambda payload: b"\xff" * 12],
    ids=["truncated", "trailing bytes", "garbage"],
)
def test_bad_bytes_raise_schema_violation(registry: SchemaRegistry, mangle: Callable[[bytes], bytes]) -> None:
    payload = registry.encode("erp.invoice.drafted.v1", SAMPLES["erp.invoice.drafted.v1"])
    with pytest.raises(SchemaViolation) as caught:
        registry.decode("erp.invoice.drafted.v1", mangle(payload))
    assert caught.value.field == "data"


def test_an_unknown_event_type_raises_unknown_event_type(registry: SchemaRegistry) -> None:
    for call in (
        lambda: registry.for_type("erp.project.deleted.v1"),
        lambda: registry.encode("erp.project.created.v9", {}),
        lambda: registry.decode("crm.lead.created.v1", b""),
    ):
        with pytest.raises(UnknownEventType) as caught:
            call()
        assert caught.value.field == "type"


def test_dataschema_is_the_url_the_ingress_serves_the_revision_at(registry: SchemaRegistry) -> None:
    schema = registry.for_type("erp.project.created.v1")
    assert schema.dataschema == "http://127.0.0.1:8080/v1/schemas/erp.project.created.v1/1"
    assert SchemaRegistry.load().for_type("erp.project.created.v1").dataschema == schema.dataschema
    moved = SchemaRegistry.load(schema_base_url="https://hub.example-firm.com/v1/schemas/")
    assert moved.for_type("erp.project.created.v1").dataschema == (
        "https://hub.example-firm.com/v1/schemas/erp.project.created.v1/1")


@pytest.mark.parametrize(("dataschema", "named"), [
    ("http://127.0.0.1:8080/v1/schemas/erp.project.created.v1/1", True),
    ("https://hub.example-firm.com/v1/schemas/erp.project.created.v1/1", True),  # an ingress that moved
    ("urn:hub:schema:hub.erp.ProjectCreated:1", True),  # events written before dataschema was a URL
    ("http://127.0.0.1:8080/v1/schemas/erp.project.created.v1/2", False),
    ("http://127.0.0.1:8080/v1/schemas/erp.project.updated.v1/1", False),
    ("ftp://127.0.0.1/v1/schemas/erp.project.created.v1/1", False),
    ("urn:hub:schema:hub.erp.ProjectCreated:2", False),
])
def test_a_revision_is_named_by_its_url_under_any_ingress_or_its_former_urn(
    registry: SchemaRegistry, dataschema: str, named: bool
) -> None:
    assert registry.for_type("erp.project.created.v1").is_named_by(dataschema) is named


def test_raw_schemas_hold_every_file_by_full_name_and_cannot_change_the_registry(
    registry: SchemaRegistry,
) -> None:
    raw = registry.raw_schemas()
    assert raw["hub.common.Money"]["fields"][0]["name"] == "amount_minor"
    assert raw["hub.erp.ProjectCreated"]["hub.eventType"] == "erp.project.created.v1"
    raw["hub.common.Money"]["fields"].clear()
    assert registry.raw_schemas()["hub.common.Money"]["fields"]


def test_a_copied_schema_directory_loads_like_the_packaged_one(
    schema_dir: Path, registry: SchemaRegistry
) -> None:
    assert SchemaRegistry.load(schema_dir).raw_schemas() == registry.raw_schemas()


def test_a_broken_schema_file_fails_loading_with_its_file_name(schema_dir: Path) -> None:
    (schema_dir / "hub.erp.InvoiceDrafted.avsc").write_text('{"type": "record", "name": ')
    with pytest.raises(SchemaError, match=r"hub\.erp\.InvoiceDrafted\.avsc: invalid JSON"):
        SchemaRegistry.load(schema_dir)


def test_an_unresolvable_reference_fails_loading_with_its_file_name(schema_dir: Path) -> None:
    edit(schema_dir, "hub.erp.InvoiceDrafted", lambda s: s["fields"][2].update(type="hub.common.Amount"))
    with pytest.raises(
        SchemaError, match=r"hub\.erp\.InvoiceDrafted\.avsc: unresolvable .*hub\.common\.Amount"
    ):
        SchemaRegistry.load(schema_dir)


def test_a_missing_shared_type_file_fails_loading(schema_dir: Path) -> None:
    (schema_dir / "hub.common.HoldReason.avsc").unlink()
    with pytest.raises(
        SchemaError, match=r"hub\.hub\.InvoiceReadinessChanged\.avsc: .*hub\.common\.HoldReason"
    ):
        SchemaRegistry.load(schema_dir)


def test_two_schemas_claiming_one_event_type_fail_loading(schema_dir: Path) -> None:
    edit(
        schema_dir, "hub.erp.ProjectUpdated", lambda s: s.update({"hub.eventType": "erp.project.created.v1"})
    )
    with pytest.raises(
        SchemaError, match=r"ProjectUpdated\.avsc: .*already claimed by hub\.erp\.ProjectCreated\.avsc"
    ):
        SchemaRegistry.load(schema_dir)


def test_a_type_redefined_inline_fails_loading_as_a_duplicate(schema_dir: Path) -> None:
    money = json.loads((schema_dir / "hub.common.Money.avsc").read_text())
    edit(schema_dir, "hub.erp.InvoiceDrafted", lambda s: s["fields"][2].update(type=money))
    with pytest.raises(SchemaError, match=r"InvoiceDrafted\.avsc: defines 'Money' inline"):
        SchemaRegistry.load(schema_dir)


def test_a_file_named_after_another_type_fails_loading(schema_dir: Path) -> None:
    (schema_dir / "hub.common.Money.avsc").rename(schema_dir / "hub.common.Amount.avsc")
    with pytest.raises(SchemaError, match=r"hub\.common\.Amount\.avsc: defines hub\.common\.Money"):
        SchemaRegistry.load(schema_dir)


@pytest.mark.parametrize("event_type", ["erp.project.created", "ERP.project.created.v1", "erp.project.v1", 7])
def test_a_malformed_event_type_fails_loading(schema_dir: Path, event_type: object) -> None:
    edit(schema_dir, "hub.erp.ProjectCreated", lambda s: s.update({"hub.eventType": event_type}))
    with pytest.raises(SchemaError, match=r"ProjectCreated\.avsc: hub\.eventType"):
        SchemaRegistry.load(schema_dir)


@pytest.mark.parametrize("version", [0, "1", None, True])
def test_an_event_without_a_positive_revision_fails_loading(schema_dir: Path, version: object) -> None:
    edit(schema_dir, "hub.erp.ProjectCreated", lambda s: s.update({"hub.version": version}))
    with pytest.raises(SchemaError, match=r"ProjectCreated\.avsc: hub\.version"):
        SchemaRegistry.load(schema_dir)


def test_an_invalid_default_fails_loading_with_its_file_name(schema_dir: Path) -> None:
    edit(schema_dir, "hub.common.Signer", lambda s: s["fields"][0].update(default=7))
    with pytest.raises(SchemaError, match=r"hub\.common\.Signer\.avsc: not a valid Avro schema"):
        SchemaRegistry.load(schema_dir)


def test_a_missing_schema_directory_fails_loading(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema directory"):
        SchemaRegistry.load(tmp_path / "nowhere")


MOMENTS = {
    "type": "record", "name": "Moments", "namespace": "hub.test",
    "hub.eventType": "test.moment.recorded.v1", "hub.version": 1,
    "fields": [
        {"name": "millis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "int", "logicalType": "time-millis"}, "default": 0},
        {"name": "history", "type": {"type": "array", "items": {"type": "long", "logicalType": "timestamp-millis"}},
         "default": []},
        {"name": "deadlines", "type": {"type": "map", "values": {"type": "int", "logicalType": "date"}},
         "default": {}},
        {"name": "closed", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": None},
    ],
}
FIRST_MS, LAST_MS = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59.999Z
FIRST_DAY, LAST_DAY = -719_162, 2_932_896  # 0001-01-01, 9999-12-31 in days since 1970-01-01


@pytest.fixture(scope="module")
def moments(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    directory = tmp_path_factory.mktemp("moments")
    (directory / "hub.test.Moments.avsc").write_text(json.dumps(MOMENTS))
    return SchemaRegistry.load(directory)


def moment(**changes: Any) -> dict[str, Any]:
    return {"millis": 0, "micros": 0, "day": 0} | changes


def test_the_extreme_values_avro_can_read_back_round_trip(moments: SchemaRegistry) -> None:
    record = moment(millis=LAST_MS, micros=FIRST_MS * 1000, day=LAST_DAY, at=86_399_999,
                    history=[FIRST_MS, LAST_MS], deadlines={"first": FIRST_DAY}, closed=LAST_MS * 1000 + 999)
    decoded = moments.decode("test.moment.recorded.v1", moments.encode("test.moment.recorded.v1", record))
    assert decoded["millis"] == datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert decoded["micros"] == datetime(1, 1, 1, tzinfo=UTC)
    assert decoded["deadlines"] == {"first": date(1, 1, 1)}
    assert decoded["closed"] == datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"millis": LAST_MS + 1}, "millis"),
        ({"millis": FIRST_MS - 1}, "millis"),
        ({"micros": (LAST_MS + 1) * 1000}, "micros"),
        ({"micros": FIRST_MS * 1000 - 1}, "micros"),
        ({"day": LAST_DAY + 1}, "day"),
        ({"day": FIRST_DAY - 1}, "day"),
        ({"at": 86_400_000}, "at"),
        ({"at": -1}, "at"),
        ({"history": [0, LAST_MS + 1]}, "history[1]"),
        ({"deadlines": {"ok": 0, "late": LAST_DAY + 1}}, "deadlines['late']"),
        ({"closed": (LAST_MS + 1) * 1000}, "closed"),
        ({"millis": datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))}, "millis"),
        ({"history": [datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))]}, "history[0]"),
    ],
)
def test_a_value_the_avro_reader_could_not_read_back_is_refused_when_encoding(
    moments: SchemaRegistry, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(SchemaViolation, match="out of range") as caught:
        moments.encode("test.moment.recorded.v1", moment(**changes))
    assert caught.value.field == field


def test_an_out_of_range_timestamp_in_a_packaged_schema_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaViolation) as caught:
        registry.encode("erp.client.upserted.v1", sample("erp.client.upserted.v1", updated_at=LAST_MS + 1))
    assert caught.value.field == "updated_at"
