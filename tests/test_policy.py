"""The policy file: the example loads; every error names the file, the line and the field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, get_args

import pytest

import actors
from actors import load_policy
from hub import policy as policy_module
from hub.errors import ConfigurationError
from hub.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "actors" / "default_policy.yaml"

GOOD = """\
version: 1
folders:
  consulting: [Contracts, {path: SOWs, document_class: sow}]
  legal: [Engagement Letters]
  engineering: [Drawings]
  managed_services: [Service Reports]
security_groups:
  templates:
    - {group: "{practice}-{region}", role: write}
  per_engagement_type:
    consulting:
      - {group: "Finance-{region}", role: read}
retention:
  regions:
    NA: {workspace: NA-7y}
    EU: {workspace: EU-7y, classes: {sow: EU-Contract-10y}}
    ME: {workspace: ME-10y}
    APAC: {workspace: APAC-7y}
  countries:
    DE: {workspace: DE-10y}
metadata:
  ProjectCode: project_code
  Source: {literal: ERP}
workflows:
  provisioning: {mode: queue_and_retry, max_attempts: 12, owner: platform_team}
  document_intake: {mode: queue_and_retry, max_attempts: 8, owner: records_management}
  invoice_readiness: {mode: queue_and_retry, max_attempts: 12, owner: finance}
  master_data_sync: {mode: queue_and_retry, max_attempts: 12, owner: pmo}
  retention_update: {mode: queue_and_retry, max_attempts: 8, owner: records_management}
  billing_release: {mode: hard_stop, max_attempts: 1, owner: finance}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_policy(write(tmp_path, text))
    return str(caught.value)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def symbols(schema: str) -> tuple[str, ...]:
    data: dict[str, Any] = json.loads((ROOT / "schemas" / f"{schema}.avsc").read_text(encoding="utf-8"))
    return tuple(data["symbols"])


def test_the_example_policy_loads_and_covers_the_four_scenarios() -> None:
    policy = load_policy(EXAMPLE)
    assert [f.path for f in policy.folders_for("consulting")] == [
        "Contracts", "SOWs", "Deliverables", "Correspondence", "Invoices"]
    assert "Service Reports" in [f.path for f in policy.folders_for("managed_services")]
    assert "Drawings" in [f.path for f in policy.folders_for("engineering")]
    assert "Engagement Letters" in [f.path for f in policy.folders_for("legal")]
    assert policy.workflow("billing_release").mode == "hard_stop"
    assert policy.workflow("provisioning").owner == "platform_team"
    assert policy.ethical_walls.patterns_for("legal", "LITIGATION") == ("Contractors-*", "Knowledge-*")
    assert policy.ethical_walls.patterns_for("consulting", "Litigation") == ()


def test_the_policy_enumerations_match_the_avro_schemas() -> None:
    assert get_args(policy_module.EngagementType) == symbols("hub.common.EngagementType")
    assert get_args(policy_module.Region) == symbols("hub.common.Region")
    assert get_args(policy_module.DocumentClass) == symbols("hub.common.DocumentClass")
    assert get_args(policy_module.ExceptionOwner) == symbols("hub.common.ExceptionOwner")


def test_retention_prefers_client_then_country_then_region(tmp_path: Path) -> None:
    retention = load_policy(EXAMPLE).retention
    def label(**kw: Any) -> str:
        where: dict[str, Any] = {"region": "EU", "country": "DE", "client_id": "ACME", "engagement_type": "consulting"}
        return retention.label_for(**{**where, **kw})
    assert label() == "DE-Engagement-10y"
    assert label(document_class="sow") == "DE-Contract-10y"
    assert label(document_class="deliverable") == "EU-Deliverable-7y"
    assert label(country="fr") == "EU-Engagement-7y"
    assert label(country="FR", document_class="contract") == "FR-Contract-10y"
    assert label(client_id="GLOBEX", engagement_type="legal") == "Client-GLOBEX-Matter-25y"
    assert label(client_id="GLOBEX", engagement_type="legal", document_class="sow") == "DE-Contract-10y"
    assert label(client_id="GLOBEX") == "DE-Engagement-10y"  # client overrides are for legal matters
    # a class labelled nowhere takes the workspace's label
    assert load_policy(write(tmp_path, GOOD)).retention.label_for(
        region="NA", country="US", client_id="X", engagement_type="consulting", document_class="sow") == "NA-7y"


def test_a_country_code_that_yaml_1_1_reads_as_false_stays_a_string(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD.replace("    DE: {workspace: DE-10y}", "    NO: {workspace: NO-10y}")))
    assert "NO" in policy.retention.countries


def test_an_unknown_key_names_its_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("  countries:\n", "  countires:\n")
    message = error_of(tmp_path, text)
    assert str(tmp_path / "policy.yaml") in message
    assert f"line {line_of(text, 'countires')}, field retention.countires: Extra inputs are not permitted" in message


def test_a_bad_workflow_mode_names_its_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("{mode: queue_and_retry, max_attempts: 12, owner: pmo}",
                        "{mode: retry_forever, max_attempts: 12, owner: pmo}")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'retry_forever')}, field workflows.master_data_sync.mode:" in message
    assert "'queue_and_retry' or 'hard_stop'" in message


def test_a_missing_jurisdiction_is_reported_at_its_parents_line(tmp_path: Path) -> None:
    text = GOOD.replace("    ME: {workspace: ME-10y}\n", "")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, '  regions:')}, field retention.regions.ME: Field required" in message


def test_a_wrong_type_names_its_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("document_intake: {mode: queue_and_retry, max_attempts: 8",
                        "document_intake: {mode: queue_and_retry, max_attempts: '8'")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'document_intake')}, field workflows.document_intake.max_attempts" in message
    assert "valid integer" in message
    text = GOOD.replace("  legal: [Engagement Letters]", "  legal: Engagement Letters")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, '  legal:')}, field folders.legal: Input should be a valid list" in message


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    text = GOOD.replace("role: write", "role: admin").replace("owner: pmo", "owner: nobody")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'admin')}, field security_groups.templates[0].role" in message
    assert f"line {line_of(text, 'nobody')}, field workflows.master_data_sync.owner" in message


def test_a_duplicate_yaml_key_is_refused_rather_than_overwritten(tmp_path: Path) -> None:
    text = GOOD.replace("  Source: {literal: ERP}\n", "  Source: {literal: ERP}\n  ProjectCode: client_id\n")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'ProjectCode: client_id')}: duplicate key 'ProjectCode'" in message


def test_a_hard_stop_workflow_may_not_retry(tmp_path: Path) -> None:
    text = GOOD.replace("mode: hard_stop, max_attempts: 1", "mode: hard_stop, max_attempts: 3")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'billing_release')}, field workflows.billing_release" in message
    assert "max_attempts must be 1" in message


def test_an_unknown_placeholder_in_a_group_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('"{practice}-{region}"', '"{practise}-{region}"')
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'practise')}, field security_groups.templates[0].group" in message
    assert "unknown placeholder {practise}" in message


def test_a_closed_group_template_is_checked_against_known_groups_at_load(tmp_path: Path) -> None:
    text = GOOD.replace("retention:\n", "  known_groups: [Finance-NA, Finance-EU, Finance-APAC]\nretention:\n")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'Finance-{region}')}, field security_groups.per_engagement_type.consulting[0].group" \
        in message
    assert "'Finance-ME' is not in known_groups" in message
    load_policy(write(tmp_path, text.replace("Finance-APAC]", "Finance-APAC, finance-me]")))


def test_unsafe_and_duplicate_folders_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("  engineering: [Drawings]", "  engineering: [Drawings, ../Secrets]")
    assert f"line {line_of(text, 'Secrets')}, field folders.engineering[1]: Value error, bad folder path" \
        in error_of(tmp_path, text)
    text = GOOD.replace("  engineering: [Drawings]", "  engineering: [Drawings, drawings]")
    assert "field folders.engineering[1]: duplicate folder 'drawings'" in error_of(tmp_path, text)
    text = GOOD.replace("{path: SOWs, document_class: sow}", "{path: SOWs, document_class: sow}, {path: sows}")
    assert "field folders.consulting[2].path: duplicate folder 'sows'" in error_of(tmp_path, text)


def test_a_metadata_value_must_name_a_project_field(tmp_path: Path) -> None:
    text = GOOD.replace("ProjectCode: project_code", "ProjectCode: project_id")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'project_id')}, field metadata.ProjectCode: Input should be 'project_code'" in message
    text = GOOD.replace("{literal: ERP}", "{literal: ERP, field: name}")
    assert "exactly one of field, literal or template" in error_of(tmp_path, text)


def test_a_wall_pattern_of_only_wildcards_is_refused(tmp_path: Path) -> None:
    text = GOOD + 'ethical_walls:\n  never_grant:\n    Litigation: ["**"]\n'
    assert f"line {line_of(text, '**')}, field ethical_walls.never_grant.Litigation[0]" in error_of(tmp_path, text)


def test_an_unknown_engagement_type_is_reported_at_its_key(tmp_path: Path) -> None:
    text = GOOD.replace("    consulting:\n      - {group", "    consultancy:\n      - {group")
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'consultancy')}, field security_groups.per_engagement_type.consultancy" in message


def test_empty_broken_and_missing_files_are_configuration_errors(tmp_path: Path) -> None:
    assert "the policy file is empty" in error_of(tmp_path, "# nothing\n")
    assert "line 3" in error_of(tmp_path, "version: 1\nfolders: [unclosed\n")
    with pytest.raises(ConfigurationError, match="cannot read policy file"):
        load_policy(tmp_path / "absent.yaml")
    assert "field (top level): Input should be a valid dictionary" in error_of(tmp_path, "- a list\n")


def test_without_a_policy_file_the_default_one_is_read_and_with_one_that_one(tmp_path: Path) -> None:
    assert load_policy(None) == load_policy(actors.DEFAULT_POLICY)
    loaded = load_policy(write(tmp_path, GOOD))
    assert isinstance(loaded, Policy) and [f.path for f in loaded.folders_for("engineering")] == ["Drawings"]


def test_a_policy_without_an_actors_workflow_is_refused_naming_it(tmp_path: Path) -> None:
    text = GOOD.replace("  master_data_sync:", "  master_data_renamed:")
    assert "master_data_sync" in GOOD
    assert "workflows must list master_data_sync" in error_of(tmp_path, text)
