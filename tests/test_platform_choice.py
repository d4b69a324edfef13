"""The policy's ``platforms`` section: which document platform holds a project's workspace, validated with errors
naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

import actors
from actors import load_policy
from hub.errors import ConfigurationError
from tests.test_policy import EXAMPLE, GOOD, error_of, line_of, write


def project(**fields: str) -> dict[str, str]:
    return {"engagement_type": "consulting", "practice": "Strategy", "region": "EU", **fields}


def test_a_policy_without_the_section_keeps_every_workspace_on_sharepoint(tmp_path: Path) -> None:
    rules = actors.platform_rules(load_policy(write(tmp_path, GOOD)))
    assert rules.default == "sharepoint" and rules.rules == []
    assert rules.platform_for(project(engagement_type="legal")) == "sharepoint"
    assert rules.in_use() == {"sharepoint"}


def test_the_example_policy_keeps_corporate_matters_on_box_and_everything_else_on_sharepoint() -> None:
    rules = actors.platform_rules(load_policy(EXAMPLE))
    assert rules.platform_for(project(engagement_type="legal", practice="Corporate")) == "box"
    assert rules.platform_for(project(engagement_type="legal", practice="CORPORATE", region="ME")) == "box"
    assert rules.platform_for(project(engagement_type="legal", practice="Litigation")) == "sharepoint"
    assert rules.platform_for(project(practice="Corporate")) == "sharepoint"  # a consulting engagement
    assert rules.in_use() == {"sharepoint", "box"}


def test_the_first_matching_rule_chooses_and_every_criterion_of_a_rule_must_match(tmp_path: Path) -> None:
    text = GOOD + """\
platforms:
  default: box
  rules:
    - {platform: sharepoint, engagement_types: [engineering], regions: [ME]}
    - {platform: box, regions: [ME]}
    - {platform: sharepoint, practices: [strategy]}
"""
    rules = actors.platform_rules(load_policy(write(tmp_path, text)))
    assert rules.platform_for(project(engagement_type="engineering", region="ME")) == "sharepoint"
    assert rules.platform_for(project(engagement_type="engineering", region="EU", practice="QA")) == "box"
    assert rules.platform_for(project(region="ME")) == "box"  # the second rule comes before the third
    assert rules.platform_for(project()) == "sharepoint"


def test_an_unknown_platform_names_its_line_and_field(tmp_path: Path) -> None:
    text = GOOD + "platforms:\n  rules:\n    - {platform: imanage, practices: [Corporate]}\n"
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, 'imanage')}, field platforms.rules[0].platform:" in message
    assert "'sharepoint' or 'box'" in message


def test_a_rule_naming_no_criterion_is_refused(tmp_path: Path) -> None:
    text = GOOD + "platforms:\n  rules:\n    - {platform: box}\n"
    message = error_of(tmp_path, text)
    assert f"line {line_of(text, '{platform: box}')}, field platforms.rules[0]:" in message
    assert "a rule names engagement_types, practices or regions" in message


def test_an_unknown_region_or_engagement_type_in_a_rule_is_refused(tmp_path: Path) -> None:
    assert "field platforms.rules[0].regions[0]:" in error_of(
        tmp_path, GOOD + "platforms:\n  rules:\n    - {platform: box, regions: [LATAM]}\n")
    assert "field platforms.rules[0].engagement_types[0]:" in error_of(
        tmp_path, GOOD + "platforms:\n  rules:\n    - {platform: box, engagement_types: [tax]}\n")
    with pytest.raises(ConfigurationError, match=r"field platforms\.rules\[0\]\.practices"):
        load_policy(write(tmp_path, GOOD + "platforms:\n  rules:\n    - {platform: box, practices: []}\n"))
