"""Backward compatibility of the schemas against the released snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub.compat import Incompatibility, check_backward, main, release
from hub.errors import SchemaError
from hub.registry import SchemaRegistry

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture
def current(tmp_path: Path) -> Path:
    """A writable copy of the current schemas."""
    return copy_avsc(SCHEMAS, tmp_path / "current")


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A writable copy of the released snapshot."""
    return copy_avsc(SCHEMAS / "released", tmp_path / "released")


def copy_avsc(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.glob("*.avsc"):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def edit(directory: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / f"{name}.avsc"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def bump(schema: dict[str, Any]) -> None:
    schema["hub.version"] += 1


def add_field(field: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(schema: dict[str, Any]) -> None:
        schema["fields"].append(field)
        bump(schema)

    return change


def reasons(problems: list[Incompatibility]) -> list[tuple[str, str | None]]:
    return [(problem.name, problem.event_type) for problem in problems]


def test_the_working_schemas_are_backward_compatible_with_the_committed_snapshot() -> None:
    assert check_backward(SCHEMAS, SCHEMAS / "released") == []


def test_the_committed_snapshot_holds_every_event_type() -> None:
    snapshot = SchemaRegistry.load(SCHEMAS / "released")
    assert set(snapshot.event_types) <= set(SchemaRegistry.load(SCHEMAS).event_types)
    assert "hub.invoice.readiness_changed.v1" in snapshot.event_types


def test_an_identical_snapshot_passes(current: Path, released: Path) -> None:
    assert check_backward(current, released) == []


def test_adding_an_optional_field_with_a_default_and_a_version_bump_passes(
    current: Path, released: Path
) -> None:
    field = {"name": "purchase_order", "type": ["null", "string"], "default": None}
    edit(current, "hub.erp.InvoiceDrafted", add_field(field))
    assert check_backward(current, released) == []
    released_version = SchemaRegistry.load(released).for_type("erp.invoice.drafted.v1").version
    assert SchemaRegistry.load(current).for_type("erp.invoice.drafted.v1").dataschema.endswith(
        f"/erp.invoice.drafted.v1/{released_version + 1}")


def test_adding_a_required_field_without_a_default_fails(current: Path, released: Path) -> None:
    edit(current, "hub.erp.InvoiceDrafted", add_field({"name": "purchase_order", "type": "string"}))
    [problem] = check_backward(current, released)
    assert (problem.name, problem.event_type) == ("hub.erp.InvoiceDrafted", "erp.invoice.drafted.v1")
    assert "reader_field_missing_default_value" in problem.reason
    assert "purchase_order" in problem.reason


def test_changing_a_field_type_incompatibly_fails(current: Path, released: Path) -> None:
    def to_string(schema: dict[str, Any]) -> None:
        schema["fields"][4]["type"] = "string"  # provisioning_ms: a string reader cannot read a long
        bump(schema)

    edit(current, "hub.dms.WorkspaceProvisioned", to_string)
    [problem] = check_backward(current, released)
    assert problem.event_type == "dms.workspace.provisioned.v1"
    assert "type_mismatch" in problem.reason


def test_promoting_a_field_type_passes(current: Path, released: Path) -> None:
    def to_double(schema: dict[str, Any]) -> None:
        schema["fields"][4]["type"] = "double"  # Avro promotes long to double on read
        bump(schema)

    edit(current, "hub.dms.WorkspaceProvisioned", to_double)
    assert check_backward(current, released) == []


def test_removing_an_event_type_fails(current: Path, released: Path) -> None:
    (current / "hub.hub.ExceptionRaised.avsc").unlink()
    problems = check_backward(current, released)
    assert reasons(problems) == [("hub.hub.ExceptionRaised", "hub.exception.raised.v1")]
    assert "removed" in problems[0].reason


def test_removing_a_shared_type_fails(current: Path, released: Path) -> None:
    (current / "hub.common.Severity.avsc").unlink()
    edit(current, "hub.hub.ExceptionRaised", lambda s: s["fields"].pop(3))
    problems = check_backward(current, released)
    assert ("hub.common.Severity", None) in reasons(problems)


def test_a_change_without_a_version_bump_fails(current: Path, released: Path) -> None:
    field = {"name": "purchase_order", "type": ["null", "string"], "default": None}
    edit(current, "hub.erp.InvoiceDrafted", lambda s: s["fields"].append(field))
    [problem] = check_backward(current, released)
    assert problem.event_type == "erp.invoice.drafted.v1"
    assert "changed without a version bump" in problem.reason


def test_a_changed_shared_type_needs_a_bump_of_every_event_using_it(current: Path, released: Path) -> None:
    edit(current, "hub.common.DocumentClass", lambda s: s["symbols"].append("nda"))
    unbumped = check_backward(current, released)
    using = [
        ("hub.dms.DocumentStateChanged", "dms.document.state_changed.v1"),
        ("hub.erp.InvoiceDrafted", "erp.invoice.drafted.v1"),  # through hub.common.BilledArtefact
        ("hub.esign.EnvelopeCompleted", "esign.envelope.completed.v1"),
        ("hub.esign.EnvelopeDelivered", "esign.envelope.delivered.v1"),
        ("hub.esign.EnvelopeSent", "esign.envelope.sent.v1"),
        ("hub.hub.EngagementActivated", "hub.engagement.activated.v1"),
    ]
    assert sorted(reasons(unbumped)) == using
    for name, _ in using:
        edit(current, name, bump)
    assert check_backward(current, released) == []


def test_removing_an_enum_symbol_fails(current: Path, released: Path) -> None:
    edit(current, "hub.common.ReadinessStatus", lambda s: s["symbols"].remove("held"))
    edit(current, "hub.hub.InvoiceReadinessChanged", bump)
    [problem] = check_backward(current, released)
    assert problem.event_type == "hub.invoice.readiness_changed.v1"
    assert "missing_enum_symbols" in problem.reason


def test_a_version_going_backwards_fails(current: Path, released: Path) -> None:
    edit(released, "hub.erp.ClientUpserted", bump)
    [problem] = check_backward(current, released)
    assert problem.reason == "hub.version went back from 2 to 1"


def test_a_new_major_version_is_a_new_type_and_needs_no_check(current: Path, released: Path) -> None:
    v2 = json.loads((current / "hub.erp.ProjectCreated.avsc").read_text())
    v2.update({"name": "ProjectCreatedV2", "hub.eventType": "erp.project.created.v2"})
    v2["fields"] = [field for field in v2["fields"] if field["name"] != "partner"]
    v2["fields"].append({"name": "partners", "type": {"type": "array", "items": "string"}})
    (current / "hub.erp.ProjectCreatedV2.avsc").write_text(json.dumps(v2))
    assert check_backward(current, released) == []
    assert "erp.project.created.v2" in SchemaRegistry.load(current).event_types


def test_a_missing_snapshot_directory_is_an_error(current: Path, tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="does not exist"):
        check_backward(current, tmp_path / "relased")


def test_release_writes_a_snapshot_that_then_passes(current: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "first-release"
    names = release(current, snapshot)
    assert names == sorted(SchemaRegistry.load(current).raw_schemas())
    assert sorted(path.name for path in snapshot.iterdir()) == [f"{name}.avsc" for name in names]
    assert (snapshot / "hub.common.Money.avsc").read_bytes() == (
        current / "hub.common.Money.avsc"
    ).read_bytes()
    assert check_backward(current, snapshot) == []


def test_release_after_a_compatible_change_moves_the_snapshot_on(current: Path, released: Path) -> None:
    field = {"name": "purchase_order", "type": ["null", "string"], "default": None}
    before = SchemaRegistry.load(released).for_type("erp.invoice.drafted.v1").version
    edit(current, "hub.erp.InvoiceDrafted", add_field(field))
    release(current, released)
    assert SchemaRegistry.load(released).for_type("erp.invoice.drafted.v1").version == before + 1
    assert check_backward(current, released) == []


def test_release_records_the_new_revision_beside_the_old_ones_which_it_never_rewrites(
    current: Path, released: Path
) -> None:
    history = current / "history" / "erp.invoice.drafted.v1"
    history.mkdir(parents=True)
    old = SchemaRegistry.load(released)
    old_version = old.for_type("erp.invoice.drafted.v1").version
    (history / f"{old_version}.avsc").write_text(json.dumps(old.resolved("hub.erp.InvoiceDrafted")))
    before = (history / f"{old_version}.avsc").read_bytes()
    edit(current, "hub.erp.InvoiceDrafted", add_field({"name": "purchase_order", "type": ["null", "string"],
                                                       "default": None}))
    release(current, released)
    assert sorted(path.name for path in history.iterdir()) == [f"{old_version}.avsc", f"{old_version + 1}.avsc"]
    assert (history / f"{old_version}.avsc").read_bytes() == before
    written = json.loads((history / f"{old_version + 1}.avsc").read_text())
    assert written == SchemaRegistry.load(current).resolved("hub.erp.InvoiceDrafted")


def test_the_committed_history_holds_the_released_revision_of_every_event_type() -> None:
    snapshot = SchemaRegistry.load(SCHEMAS / "released")
    for event_type in snapshot.event_types:
        schema = snapshot.for_type(event_type)
        recorded = SCHEMAS / "history" / event_type / f"{schema.version}.avsc"
        assert json.loads(recorded.read_text()) == snapshot.resolved(schema.name), event_type


def test_release_refuses_incompatible_schemas_unless_forced(current: Path, released: Path) -> None:
    (current / "hub.hub.ExceptionRaised.avsc").unlink()
    with pytest.raises(SchemaError, match=r"refusing to release.*hub\.exception\.raised\.v1"):
        release(current, released)
    assert (released / "hub.hub.ExceptionRaised.avsc").exists()
    release(current, released, force=True)
    assert not (released / "hub.hub.ExceptionRaised.avsc").exists()
    assert check_backward(current, released) == []


def test_the_command_line_exits_non_zero_on_an_incompatibility(
    current: Path, released: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--schemas", str(current), "--released", str(released)]) == 0
    (current / "hub.hub.ExceptionRaised.avsc").unlink()
    assert main(["--schemas", str(current), "--released", str(released)]) == 1
    assert "hub.exception.raised.v1 (hub.hub.ExceptionRaised): event type removed" in capsys.readouterr().out
