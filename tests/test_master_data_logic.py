"""Master data: field authority, version ordering (any order, any duplicates), taxonomy, canonical model."""

from __future__ import annotations

import json
from functools import reduce
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.master_data.mapping import MappingFailed, apply_mapping
from actors.master_data.model import (
    BillingModel,
    CanonicalClient,
    CanonicalState,
    ClientStatus,
    EngagementType,
    FieldState,
    MergeResult,
    ProjectStatus,
    SourceUpdate,
    etag_version,
    load_master_data_mapping,
    merge,
    sequence_of,
    taxonomy_terms,
    taxonomy_violations,
    to_model,
)
from hub.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
RULES = load_master_data_mapping()
AUTHORITY = RULES.authority


def symbols(schema: str) -> tuple[str, ...]:
    data: dict[str, Any] = json.loads((ROOT / "schemas" / f"{schema}.avsc").read_text(encoding="utf-8"))
    return tuple(data["symbols"])


def update(system: str, version: int, entity: str = "client", canonical_id: str = "client_1",
           **fields: Any) -> SourceUpdate:
    return SourceUpdate(system=system, entity=entity, canonical_id=canonical_id, fields=fields,
                        version=sequence_of(version))


def fold(updates: list[SourceUpdate], authority: Any = AUTHORITY) -> CanonicalState | None:
    return reduce(lambda state, u: merge(state, u, authority=authority).state, updates, None)


# -- authority and ordering -------------------------------------------------------------------------


def test_a_first_update_takes_every_authoritative_field() -> None:
    result = merge(None, update("erp", 1, name="ACME GmbH", country="DE", status="active"), authority=AUTHORITY)
    assert result.changed == ("country", "name", "status")
    assert result.ignored == result.stale == ()
    assert result.state.fields["name"] == FieldState(value="ACME GmbH", version=sequence_of(1), system="erp")


def test_a_non_authoritative_update_is_ignored_and_counted() -> None:
    state = fold([update("erp", 3, name="ACME GmbH", country="DE")])
    result = merge(state, update("sharepoint", 9, name="Acme Corp", country="DE"), authority=AUTHORITY)
    assert result.state == state
    assert result.ignored == ("country", "name") and len(result.ignored) == 2
    assert result.drift == ("name",)  # the workspace shows a wrong client name: push the ERP's back
    assert result.changed == ()


def test_a_newer_version_changes_the_field_and_an_older_one_never_regresses_it() -> None:
    state = fold([update("erp", 1, name="ACME"), update("erp", 5, name="ACME GmbH")])
    assert state is not None and state.values() == {"name": "ACME GmbH"}
    late = merge(state, update("erp", 4, name="ACME AG", country="DE"), authority=AUTHORITY)
    assert late.stale == ("name",) and late.changed == ("country",)
    assert late.state.values() == {"name": "ACME GmbH", "country": "DE"}


def test_the_same_version_again_is_a_no_op() -> None:
    first = merge(None, update("erp", 2, name="ACME"), authority=AUTHORITY)
    again = merge(first.state, update("erp", 2, name="ACME"), authority=AUTHORITY)
    assert again == MergeResult(state=first.state)


def test_a_newer_version_with_the_same_value_is_stored_but_not_reported_as_changed() -> None:
    result = merge(fold([update("erp", 2, name="ACME")]), update("erp", 3, name="ACME"), authority=AUTHORITY)
    assert result.changed == () and result.state.fields["name"].version == sequence_of(3)


def test_a_field_stored_from_a_former_authority_is_replaced_by_the_new_one() -> None:
    before = fold([update("sharepoint", 90, name="ACME")], authority={"client": {"name": "sharepoint"}})
    result = merge(before, update("erp", 1, name="ACME GmbH"), authority=AUTHORITY)
    assert result.changed == ("name",) and result.state.fields["name"].system == "erp"


def test_an_update_of_another_entity_cannot_be_merged() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        merge(fold([update("erp", 1, name="A")]), update("erp", 2, canonical_id="client_2", name="B"),
              authority=AUTHORITY)


def test_the_canonical_state_survives_a_json_round_trip() -> None:
    state = fold([update("erp", 1, name="ACME", industry=None, parent_client_id="client_0")])
    assert state is not None
    assert CanonicalState.model_validate_json(state.model_dump_json()) == state


# -- property: order and duplicates do not matter ---------------------------------------------------

FIELDS = ("name", "practice", "region", "status", "document_class")
#: Both systems own some fields and send some they do not own.
OWNERS = {"project": {"name": "erp", "practice": "erp", "status": "erp", "region": "sharepoint",
                      "document_class": "sharepoint"}}


@st.composite
def histories(draw: st.DrawFn) -> list[SourceUpdate]:
    """Each system's updates in its own version order, interleaved: an ordered stream."""
    per_system = []
    for system in ("erp", "sharepoint"):
        versions = sorted(draw(st.sets(st.integers(0, 10_000), max_size=6)))
        per_system.append([
            update(system, v, entity="project", canonical_id="project_1",
                   **draw(st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(["a", "b", "c", None]))))
            for v in versions])
    erp, sharepoint = per_system
    picks = draw(st.permutations([0] * len(erp) + [1] * len(sharepoint)))
    queues = [iter(erp), iter(sharepoint)]
    return [next(queues[p]) for p in picks]


def latest(stream: list[SourceUpdate]) -> dict[str, Any]:
    """The expected record, computed independently: each field from its owner's newest update sending it."""
    expected: dict[str, Any] = {}
    for name in FIELDS:
        sent = [u for u in stream if u.system == OWNERS["project"][name] and name in u.fields]
        if sent:
            expected[name] = max(sent, key=lambda u: u.version).fields[name]
    return expected


@settings(max_examples=300, deadline=None)
@given(data=st.data(), stream=histories())
def test_any_order_with_duplicates_gives_the_record_of_the_ordered_stream(data: st.DataObject,
                                                                          stream: list[SourceUpdate]) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(stream), max_size=6)) if stream else []
    shuffled = data.draw(st.permutations(stream + duplicates))
    ordered = fold(stream, OWNERS)
    assert fold(shuffled, OWNERS) == ordered
    assert (ordered.values() if ordered else {}) == latest(stream)


@given(stream=histories())
def test_every_non_authoritative_field_sent_is_counted_as_ignored(stream: list[SourceUpdate]) -> None:
    state: CanonicalState | None = None
    ignored = 0
    for u in stream:
        result = merge(state, u, authority=OWNERS)
        state, ignored = result.state, ignored + len(result.ignored)
    assert ignored == sum(1 for u in stream for name in u.fields if OWNERS["project"][name] != u.system)


# -- the canonical model and the default mapping ----------------------------------------------------


def test_the_canonical_enums_are_the_avro_ones() -> None:
    assert get_args(ClientStatus) == symbols("hub.common.ClientStatus")
    assert get_args(ProjectStatus) == symbols("hub.common.ProjectStatus")
    assert get_args(EngagementType) == symbols("hub.common.EngagementType")
    assert get_args(BillingModel) == symbols("hub.common.BillingModel")


def test_the_default_taxonomy_covers_the_avro_regions_and_document_classes() -> None:
    assert tuple(RULES.taxonomy["region"]) == symbols("hub.common.Region")
    assert tuple(RULES.taxonomy["document_class"]) == symbols("hub.common.DocumentClass")
    terms = taxonomy_terms(RULES.taxonomy)
    assert {t.kind for t in terms} == {"practice", "region", "document_class"}
    assert next(t.label for t in terms if (t.kind, t.value) == ("region", "APAC")) == "Asia-Pacific"


def test_the_default_authority_gives_names_to_the_erp_and_document_classes_to_sharepoint() -> None:
    assert AUTHORITY["client"]["name"] == "erp" and AUTHORITY["client"]["industry"] == "erp"
    assert AUTHORITY["project"]["practice"] == "erp"
    assert AUTHORITY["document"]["document_class"] == "sharepoint"


def test_a_state_becomes_its_canonical_model_once_every_required_field_is_known() -> None:
    partial = fold([update("erp", 1, name="ACME GmbH")])
    assert partial is not None and to_model(partial) is None
    full = fold([update("erp", 2, name="ACME GmbH", country="DE", status="active", industry=None)])
    assert full is not None
    assert to_model(full) == CanonicalClient(canonical_id="client_1", name="ACME GmbH", country="DE", status="active")
    bad = fold([update("erp", 3, name="ACME GmbH", country="DE", status="dormant")])
    assert bad is not None
    with pytest.raises(MappingFailed) as caught:
        to_model(bad)
    assert caught.value.field == "status"


def test_versions_are_zero_padded_sequences_and_etags_give_theirs() -> None:
    assert sequence_of(7) == "00000000000000000007"
    assert sequence_of(10) > sequence_of(9)
    assert etag_version('"{01ABC},12"') == sequence_of(12)
    with pytest.raises(ValueError, match="no version"):
        etag_version('"{01ABC}"')


def test_an_erp_rename_wins_and_a_stale_workspace_name_is_drift() -> None:
    """The flow the actor runs: map, merge ERP then SharePoint; only the ERP's client name counts."""
    xref = {("client", "erp", "ACME"): "client_1"}

    def lookup(entity: str, system: str, system_id: str) -> str | None:
        return xref.get((entity, system, system_id))

    erp_record = {"client_id": "ACME", "name": "ACME Group GmbH", "country": "DE", "status": "active",
                  "industry": None, "parent_client_id": None}
    erp = apply_mapping(RULES, "erp", "erp.client.upserted.v1", erp_record, lookup=lookup)
    assert lookup(erp.entity, erp.key_system, erp.key) == "client_1"
    renamed = merge(None, SourceUpdate.of(erp, canonical_id="client_1", version=sequence_of(2)), authority=AUTHORITY)
    workspace = apply_mapping(RULES, "sharepoint", "workspace.client", {"ClientId": "ACME", "ClientName": "ACME GmbH"},
                              lookup=lookup)
    assert lookup(workspace.entity, workspace.key_system, workspace.key) == "client_1"
    result = merge(renamed.state, SourceUpdate.of(workspace, canonical_id="client_1", version=etag_version('"{W},5"')),
                   authority=AUTHORITY)
    assert result.state.values()["name"] == "ACME Group GmbH"
    assert result.ignored == ("name",) and result.drift == ("name",)


# -- taxonomy ---------------------------------------------------------------------------------------


def test_known_taxonomy_values_and_ungoverned_fields_pass() -> None:
    fields = {"practice": "Strategy", "region": "EU", "document_class": "sow", "name": "anything", "partner": None}
    assert taxonomy_violations(fields, RULES.taxonomy) == []


def test_unknown_taxonomy_values_are_violations_for_records_management() -> None:
    violations = taxonomy_violations({"practice": "strategy", "region": "Europe", "document_class": "nda"},
                                     RULES.taxonomy)
    assert [(v.field, v.value, v.suggestion) for v in violations] == [
        ("document_class", "nda", None), ("practice", "strategy", "Strategy"), ("region", "Europe", None)]
    assert "did you mean 'Strategy'?" in violations[1].message
    assert "use one of APAC, EU, ME, NA" in violations[2].message


def test_a_value_that_is_not_text_is_a_violation() -> None:
    assert [v.field for v in taxonomy_violations({"region": 3}, RULES.taxonomy)] == ["region"]


def test_the_default_mapping_refuses_an_enum_code_outside_the_taxonomy(tmp_path: Path) -> None:
    text = (ROOT / "actors" / "master_data" / "default_mapping.yaml").read_text(encoding="utf-8")
    bad = text.replace('"4": APAC}', '"4": LATAM}')
    assert bad != text
    path = tmp_path / "mapping.yaml"
    path.write_text(bad, encoding="utf-8")
    line = next(n for n, t in enumerate(bad.splitlines(), 1) if "LATAM" in t)
    with pytest.raises(ConfigurationError) as caught:
        load_master_data_mapping(path)
    assert f"line {line}, field rules.netsuite.job.fields.region.map.4: 'LATAM'" in str(caught.value)
