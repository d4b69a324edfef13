"""Declarative mapping: both ERP shapes and the document platform map; every transform; errors name the line."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from actors.master_data.mapping import (
    CanonicalSchema,
    LookupFn,
    MappedRecord,
    MappingFailed,
    MappingRules,
    apply_mapping,
    load_mapping,
)
from actors.master_data.model import load_master_data_mapping
from hub.errors import ConfigurationError, PermanentError
from hub.registry import SchemaRegistry
from simulators.erp.models import ClientIn, ProjectIn
from simulators.erp.state import ErpState
from simulators.erp.webhooks import client_data, project_data

RULES = load_master_data_mapping()

#: The crosswalk as the actor would see it, as a plain dict behind the injected lookup function.
XREF = {
    ("client", "erp", "ACME"): "client_acme",
    ("client", "erp", "ACME-HOLDING"): "client_holding",
    ("client", "netsuite", "1234"): "client_acme",
    ("client", "netsuite", "99"): "client_holding",
    ("project", "erp", "ACME-2025-001"): "project_acme1",
}


def lookup(entity: str, system: str, system_id: str) -> str | None:
    return XREF.get((entity, system, system_id))


def mapped(system: str, event_type: str, record: dict[str, Any], rules: MappingRules = RULES,
           using: LookupFn = lookup) -> MappedRecord:
    return apply_mapping(rules, system, event_type, record, lookup=using)


def failure(system: str, event_type: str, record: dict[str, Any], rules: MappingRules = RULES) -> MappingFailed:
    with pytest.raises(MappingFailed) as caught:
        mapped(system, event_type, record, rules)
    return caught.value


def as_decoded(event_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as the actor gets it: Avro-encoded by the ingress, decoded by the actor."""
    registry = SchemaRegistry.load()
    return registry.decode(event_type, registry.encode(event_type, record))


def erp() -> ErpState:
    state = ErpState(clock=lambda: datetime(2025, 3, 1, 9, 0, tzinfo=UTC))
    state.create_client(ClientIn(id="ACME-HOLDING", name="ACME Holding", country="DE"))
    state.create_client(ClientIn(id="ACME", name="ACME GmbH", country="DE", industry="Manufacturing",
                                 parent_client_id="ACME-HOLDING"))
    state.create_project(ProjectIn(code="ACME-2025-001", client_id="ACME", name="Market entry strategy",
                                   engagement_type="consulting", practice="Strategy", region="EU", country="DE",
                                   partner="p.weber@firm.example", billing_model="fixed_fee",
                                   start_date=date(2025, 4, 1)))
    return state


NETSUITE_CUSTOMER: dict[str, Any] = {
    "id": "1234", "entityid": "CUST-ACME", "companyname": "ACME GmbH", "subsidiary_country": "DE",
    "custentity_status": "13", "custentity_industry": "Manufacturing", "parent": "99", "datecreated": "03/15/2021",
}
NETSUITE_JOB: dict[str, Any] = {
    "id": "812", "entityid": "ACME-2025-002", "companyname": "Plant audit", "parent": "1234", "jobtype": "3",
    "custentity_practice": "Infrastructure", "custentity_region": "2", "subsidiary_country": "AT",
    "projectmanager": {"firstname": "Petra", "lastname": "Weber"}, "jobbillingtype": "TM", "entitystatus": "2",
    "startdate": "05/01/2025",
}


# -- the ERP simulator ------------------------------------------------------------------------------


def test_an_erp_simulator_client_event_maps_to_the_canonical_client() -> None:
    record = as_decoded("erp.client.upserted.v1", client_data(erp().client("ACME")))
    result = mapped("erp", "erp.client.upserted.v1", record)
    assert (result.entity, result.key_system, result.key) == ("client", "erp", "ACME")
    assert dict(result.fields) == {"name": "ACME GmbH", "country": "DE", "status": "active",
                                   "industry": "Manufacturing", "parent_client_id": "client_holding"}


def test_an_erp_client_without_parent_or_industry_maps_them_to_null() -> None:
    record = as_decoded("erp.client.upserted.v1", client_data(erp().client("ACME-HOLDING")))
    fields = mapped("erp", "erp.client.upserted.v1", record).fields
    assert fields["industry"] is None and fields["parent_client_id"] is None


@pytest.mark.parametrize("event_type", ["erp.project.created.v1", "erp.project.updated.v1"])
def test_an_erp_simulator_project_event_maps_with_its_client_looked_up(event_type: str) -> None:
    record = as_decoded(event_type, project_data(erp().project("ACME-2025-001")))
    result = mapped("erp", event_type, record)
    assert (result.entity, result.key) == ("project", "ACME-2025-001")
    assert dict(result.fields) == {
        "project_code": "ACME-2025-001", "client_id": "client_acme", "name": "Market entry strategy",
        "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
        "partner": "p.weber@firm.example", "billing_model": "fixed_fee", "status": "planned",
        "start_date": "2025-04-01", "end_date": None}


def test_the_erp_sources_belong_to_the_erp_and_unknown_sources_to_no_system() -> None:
    assert RULES.system_for("erp-sim://acme-psa/prod") == "erp"
    assert RULES.system_for("https://erp.acme.example/prod") == "netsuite"
    assert RULES.system_for("https://sim.sharepoint.example/sites/x") == "sharepoint"
    assert RULES.system_for("https://elsewhere.example/") is None


def test_an_erp_value_outside_the_canonical_enum_fails_with_its_path() -> None:
    record = {**project_data(erp().project("ACME-2025-001")), "status": "archived"}
    error = failure("erp", "erp.project.updated.v1", record)
    assert error.field == "data.status" and "archived" in str(error)
    assert isinstance(error, PermanentError)


# -- a NetSuite-style ERP ---------------------------------------------------------------------------


def test_a_netsuite_customer_maps_codes_dates_and_its_parent() -> None:
    result = mapped("netsuite", "customer", NETSUITE_CUSTOMER)
    assert (result.entity, result.key_system, result.key) == ("client", "netsuite", "1234")
    assert dict(result.fields) == {"name": "ACME GmbH", "country": "DE", "status": "active",
                                   "industry": "Manufacturing", "parent_client_id": "client_holding",
                                   "created_on": "2021-03-15"}


def test_an_optional_field_the_record_lacks_is_left_out_and_a_null_one_is_null() -> None:
    absent = {k: v for k, v in NETSUITE_CUSTOMER.items() if k not in ("parent", "custentity_industry")}
    assert {"parent_client_id", "industry"}.isdisjoint(mapped("netsuite", "customer", absent).fields)
    nulls = {**NETSUITE_CUSTOMER, "parent": None, "custentity_industry": None}
    fields = mapped("netsuite", "customer", nulls).fields
    assert fields["parent_client_id"] is None and fields["industry"] is None


def test_a_netsuite_job_maps_nested_names_into_one_partner() -> None:
    result = mapped("netsuite", "job", NETSUITE_JOB)
    assert dict(result.fields) == {
        "project_code": "ACME-2025-002", "client_id": "client_acme", "name": "Plant audit",
        "engagement_type": "engineering", "practice": "Infrastructure", "region": "EU", "country": "AT",
        "partner": "Petra Weber", "billing_model": "time_and_materials", "status": "active",
        "start_date": "2025-05-01"}


def test_an_unknown_enum_code_fails_with_the_field_path() -> None:
    error = failure("netsuite", "customer", {**NETSUITE_CUSTOMER, "custentity_status": "42"})
    assert error.field == "data.custentity_status"
    assert "'42' is not one of 13, 16, 6" in str(error)


def test_an_integer_enum_code_is_matched_as_text() -> None:
    assert mapped("netsuite", "customer", {**NETSUITE_CUSTOMER, "custentity_status": 16}).fields["status"] == "inactive"


def test_a_date_in_the_wrong_format_fails_with_the_field_path() -> None:
    error = failure("netsuite", "customer", {**NETSUITE_CUSTOMER, "datecreated": "2021-03-15"})
    assert error.field == "data.datecreated" and "%m/%d/%Y" in str(error)


def test_a_missing_or_null_required_field_fails_with_its_path() -> None:
    missing = {k: v for k, v in NETSUITE_CUSTOMER.items() if k != "companyname"}
    assert failure("netsuite", "customer", missing).field == "data.companyname"
    error = failure("netsuite", "customer", {**NETSUITE_CUSTOMER, "subsidiary_country": None})
    assert error.field == "data.subsidiary_country" and "null" in str(error)


def test_a_record_without_its_id_fails_at_the_key() -> None:
    record = {k: v for k, v in NETSUITE_CUSTOMER.items() if k != "id"}
    assert failure("netsuite", "customer", record).field == "data.id"


def test_an_unresolvable_lookup_fails_with_the_field_path() -> None:
    error = failure("netsuite", "job", {**NETSUITE_JOB, "parent": "777"})
    assert error.field == "data.parent" and "no canonical client for netsuite id '777'" in str(error)


def test_a_record_type_without_rules_fails_rather_than_crashing() -> None:
    assert failure("netsuite", "vendor", {"id": "1"}).field == "type"
    assert failure("box", "customer", NETSUITE_CUSTOMER).field == "type"


# -- the document platform --------------------------------------------------------------------------


def test_workspace_fields_map_to_the_client_and_the_project_they_name_by_their_erp_ids() -> None:
    fields = {"@odata.etag": '"{ABC},4"', "id": "7", "ClientId": "ACME", "ClientName": "Acme Corp",
              "ProjectCode": "ACME-2025-001", "ProjectName": "Market entry", "Practice": "Strategy", "Region": "EU"}
    client = mapped("sharepoint", "workspace.client", fields)
    assert (client.entity, client.system, client.key_system, client.key) == ("client", "sharepoint", "erp", "ACME")
    assert dict(client.fields) == {"name": "Acme Corp"}
    project = mapped("sharepoint", "workspace.project", fields)
    assert (project.key_system, project.key) == ("erp", "ACME-2025-001")
    assert dict(project.fields) == {"name": "Market entry", "practice": "Strategy", "region": "EU"}


def test_a_documents_class_maps_and_its_project_is_looked_up_by_the_erp_code() -> None:
    fields = {"id": "42", "FileLeafRef": "SOW.pdf", "DocumentClass": "sow", "ProjectCode": "ACME-2025-001"}
    result = mapped("sharepoint", "document", fields)
    assert (result.entity, result.key_system, result.key) == ("document", "sharepoint", "42")
    assert dict(result.fields) == {"name": "SOW.pdf", "document_class": "sow", "project_id": "project_acme1"}


# -- each transform on its own ----------------------------------------------------------------------

SCHEMA = CanonicalSchema(
    entities={"thing": {"label": None, "colour": frozenset({"red", "blue"}), "day": None, "days": None,
                        "owner": None},
              "person": {"name": None}},
    taxonomy=frozenset({"colour"}))

SMALL = """\
version: 1
systems:
  src: {sources: ["src://*"]}
  other: {sources: ["other://a"]}
authority:
  thing: {label: src, colour: src, day: src, days: src, owner: src}
  person: {name: other}
taxonomy:
  colour: [red, blue]
rules:
  src:
    thing.v1:
      entity: thing
      key: id
      fields:
        label: {transform: concat, from: [a.first, a.second, a.third], separator: "-", required: false}
        colour: {transform: enum, from: c, map: {R: red, B: blue}, required: false}
        day: {transform: date, from: d, format: "%d.%m.%Y", required: false}
        days: {transform: date, from: e, output: epoch_days, required: false}
        owner: {transform: lookup, from: o, entity: person, system: other, required: false}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def small(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    rules = load_mapping(write(tmp_path, SMALL), SCHEMA)

    def fields(**record: Any) -> dict[str, Any]:
        return dict(apply_mapping(rules, "src", "thing.v1", {"id": 1, **record},
                                  lookup=lambda e, s, i: f"{e}:{s}:{i}").fields)

    return fields


def test_concat_joins_the_given_parts_and_leaves_out_null_or_absent_ones(small: Callable[..., dict[str, Any]]) -> None:
    assert small(a={"first": "x", "second": 2, "third": "z"}) == {"label": "x-2-z"}
    assert small(a={"first": "x", "third": None}) == {"label": "x"}
    assert small(a={"third": None}) == {"label": None}
    assert small() == {}


def test_a_date_is_read_from_text_dates_datetimes_and_epoch_days(small: Callable[..., dict[str, Any]]) -> None:
    assert small(d="03.02.2001") == {"day": "2001-02-03"}
    assert small(e="2001-02-03") == {"days": 11356}
    assert small(e=date(1970, 1, 2)) == {"days": 1}
    late = datetime(2025, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert small(d=late) == {"day": "2025-01-02"}  # read in UTC
    assert small(d=19000) == {"day": "2022-01-08"}


def test_a_lookup_asks_the_named_system_for_the_named_entity(small: Callable[..., dict[str, Any]]) -> None:
    assert small(o="P1") == {"owner": "person:other:P1"}


def test_an_enum_maps_and_the_key_may_be_an_integer(small: Callable[..., dict[str, Any]]) -> None:
    assert small(c="B") == {"colour": "blue"}
    with pytest.raises(MappingFailed) as caught:
        small(c="G")
    assert caught.value.field == "data.c"


# -- validation at start ----------------------------------------------------------------------------


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_mapping(write(tmp_path, text), SCHEMA)
    return str(caught.value)


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("        days: {transform: date", "        weight: {transform: date", "rules.src.thing.v1.fields.weight",
     "unknown thing field 'weight'"),
    ("owner: {transform: lookup", "owner: {transform: translate", "rules.src.thing.v1.fields.owner.transform",
     "'translate'"),
    ("{R: red, B: blue}", "{R: red, B: green}", "rules.src.thing.v1.fields.colour.map.B",
     "'green' is not a valid thing colour"),
    ("map: {R: red, B: blue}", "map: {}", "rules.src.thing.v1.fields.colour.map", "at least 1 item"),
    ('format: "%d.%m.%Y"', 'format: "%d.%m"', "rules.src.thing.v1.fields.day.format", "year, the month"),
    ("entity: person, system: other", "entity: robot, system: other", "rules.src.thing.v1.fields.owner.entity",
     "unknown entity 'robot'"),
    ("entity: person, system: other", "entity: person, system: ghost", "rules.src.thing.v1.fields.owner.system",
     "unknown system 'ghost'"),
    ("      entity: thing", "      entity: gadget", "rules.src.thing.v1.entity", "unknown entity 'gadget'"),
    ("  person: {name: other}", "  person: {name: ghost}", "authority.person.name", "unknown system 'ghost'"),
    ("  person: {name: other}", "  person: {nickname: other}", "authority.person",
     "no authoritative system for person field(s) name"),
    ("  colour: [red, blue]", "  shade: [red, blue]", "taxonomy.shade", "'shade' is not a governed field"),
    ('other: {sources: ["other://a"]}', 'other: {sources: ["src://*"]}', "systems.other.sources[0]",
     "claimed by src"),
])
def test_a_bad_rule_is_refused_naming_the_line_and_the_field(tmp_path: Path, old: str, new: str, field: str,
                                                              message: str) -> None:
    assert SMALL.count(old) == 1
    text = SMALL.replace(old, new)
    error = error_of(tmp_path, text)
    line = line_of(text, new)
    assert f"mapping.yaml, line {line}, field {field}: " in error, error
    assert message in error, error


def test_rules_of_an_undeclared_system_are_refused(tmp_path: Path) -> None:
    text = SMALL + "  ghost:\n    thing.v1: {entity: thing, key: id, fields: {label: a}}\n"
    assert f"line {line_of(text, '  ghost:')}, field rules.ghost: unknown system 'ghost'" in error_of(tmp_path, text)


def test_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    text = SMALL.replace("  other: {sources", "  src: {sources: []}\n  other: {sources")
    assert "line 4: duplicate key 'src'" in error_of(tmp_path, text)


def test_the_default_mapping_maps_every_erp_event_type_and_the_document_platform() -> None:
    rules = RULES.file.rules
    assert set(rules["erp"]) == {"erp.client.upserted.v1", "erp.project.created.v1", "erp.project.updated.v1"}
    assert set(rules["sharepoint"]) == {"workspace.client", "workspace.project", "document"}
    assert set(rules["netsuite"]) == {"customer", "job"}
