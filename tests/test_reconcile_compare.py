"""Reconciliation's semantic diff of one workspace: each class of difference found alone with its code, walled
grants first, and agreement with provisioning: a workspace shows a difference it would repair exactly when
provisioning has steps left for it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.reconciliation.classes import BY_CODE, CLASSES, drift_class
from actors.reconciliation.compare import ROOT, Finding, WorkspaceSeen, compare_workspace
from hub.workspace import WorkspacePlan, WorkspaceState, governs, plan_workspace, reconcile
from tests.test_provisioning_plan import POLICY, project

LEGAL = project(project_code="LAW-2025-007", client_id="GLOBEX", engagement_type="legal", practice="Litigation",
                conflicted_groups=frozenset({"Team-Tax-Advisory"}))


def seen_as_planned(plan: WorkspacePlan, **changes: Any) -> WorkspaceSeen:
    """The workspace a finished provisioning leaves, with ``changes``."""
    done = WorkspaceSeen(path=plan.path, item_id="ITEM-1", folders=frozenset(plan.folders), grants=dict(plan.grants),
                         labels=dict(plan.labels), metadata=dict(plan.metadata))
    return replace(done, **changes)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_a_provisioned_workspace_shows_no_difference() -> None:
    plan = plan_workspace(project(), POLICY)
    assert compare_workspace(plan, seen_as_planned(plan), POLICY, "ACME-2025-001") == []


def test_a_missing_folder_is_found_alone_and_its_label_is_not_reported_twice() -> None:
    plan = plan_workspace(project(), POLICY)
    gone = next(path for path in plan.folder_labels)
    seen = seen_as_planned(plan, folders=frozenset(plan.folders) - {gone},
                           labels={p: label for p, label in plan.labels.items() if p != gone})
    findings = compare_workspace(plan, seen, POLICY, "ACME-2025-001")
    assert codes(findings) == ["RC103"]
    assert findings[0].field == gone[len(plan.path) + 1:] and findings[0].actual is None


def test_metadata_drift_names_the_field_both_values_and_the_erp_field_that_owns_it() -> None:
    plan = plan_workspace(project(), POLICY)
    name, value = next((n, v) for n, v in plan.metadata.items() if POLICY.metadata[n].field is not None)
    seen = seen_as_planned(plan, metadata={**plan.metadata, name: "edited by hand"})
    [finding] = compare_workspace(plan, seen, POLICY, "ACME-2025-001")
    assert (finding.code, finding.field, finding.expected, finding.actual) == ("RC201", name, value, "edited by hand")
    assert finding.authority == f"erp:{POLICY.metadata[name].field}"


def test_a_missing_grant_and_a_wrong_role_are_missing_grants() -> None:
    plan = plan_workspace(project(), POLICY)
    group, role = sorted(plan.grants.items())[0]
    gone = compare_workspace(plan, seen_as_planned(plan, grants={g: r for g, r in plan.grants.items() if g != group}),
                             POLICY, "C")
    assert [(f.code, f.field, f.expected, f.actual) for f in gone] == [("RC301", group, role, None)]
    other = "read" if role == "write" else "write"
    wrong = compare_workspace(plan, seen_as_planned(plan, grants={**plan.grants, group: other}), POLICY, "C")
    assert [(f.code, f.expected, f.actual) for f in wrong] == [("RC301", role, other)]


def test_an_extra_grant_is_governed_or_unmanaged_and_a_walled_one_comes_first() -> None:
    plan = plan_workspace(LEGAL, POLICY)
    assert plan.walls.blocks("Team-Tax-Advisory")
    governed = next(g for g in POLICY.security_groups.known_groups or () if g not in plan.grants
                    and not plan.walls.blocks(g))
    grants = {**plan.grants, "team-tax-advisory": "read", governed: "read", "Hand-Picked-Reviewers": "write"}
    findings = compare_workspace(plan, seen_as_planned(plan, grants=grants), POLICY, "LAW-2025-007")
    assert codes(findings)[0] == "RC304" and sorted(codes(findings)) == ["RC302", "RC303", "RC304"]
    walled = findings[0]
    assert (walled.field, walled.actual, walled.authority) == ("team-tax-advisory", "read", "policy:ethical_walls")
    assert BY_CODE["RC304"].hard_stop and BY_CODE["RC304"].owner == "risk"


def test_a_label_differing_on_the_workspace_or_a_folder_is_label_drift() -> None:
    plan = plan_workspace(project(), POLICY)
    folder, label = next(iter(plan.folder_labels.items()))
    labels = {**plan.labels, plan.path: "Wrong-Label"}
    del labels[folder]
    findings = compare_workspace(plan, seen_as_planned(plan, labels=labels), POLICY, "C")
    assert sorted((f.code, f.field, f.expected, f.actual) for f in findings) == sorted([
        ("RC401", ROOT, plan.label, "Wrong-Label"), ("RC401", folder[len(plan.path) + 1:], label, None)])


def test_paths_and_group_names_compare_without_case() -> None:
    plan = plan_workspace(project(), POLICY)
    seen = seen_as_planned(plan, folders=frozenset(p.upper() for p in plan.folders),
                           grants={g.lower(): r for g, r in plan.grants.items()},
                           labels={p.lower(): label for p, label in plan.labels.items()})
    assert compare_workspace(plan, seen, POLICY, "C") == []


def test_every_class_has_a_unique_stable_code_and_an_owner() -> None:
    assert len({c.code for c in CLASSES}) == len({c.name for c in CLASSES}) == len(CLASSES)
    assert drift_class("walled_grant") is drift_class("rc304") is BY_CODE["RC304"]
    assert not drift_class("RC102").safe and drift_class("RC102").owner == "records_management"
    with pytest.raises(KeyError, match="RC101"):
        drift_class("nothing")


_groups = st.sampled_from(sorted({*(POLICY.security_groups.known_groups or ()), "Team-Tax-Advisory",
                                  "Hand-Picked-Reviewers"}))


@settings(max_examples=150, deadline=None)
@given(grants=st.dictionaries(_groups, st.sampled_from(["read", "write"]), max_size=6),
       drop_folders=st.sets(st.integers(min_value=0, max_value=8), max_size=3),
       drop_labels=st.sets(st.integers(min_value=0, max_value=8), max_size=3),
       edit_field=st.booleans(), legal=st.booleans())
def test_a_repairable_difference_is_found_exactly_when_provisioning_has_steps_left(
        grants: dict[str, str], drop_folders: set[int], drop_labels: set[int], edit_field: bool, legal: bool) -> None:
    plan = plan_workspace(LEGAL if legal else project(), POLICY)
    folders = frozenset(p for i, p in enumerate(plan.folders) if i not in drop_folders)
    labels = {p: label for i, (p, label) in enumerate(plan.labels.items()) if i not in drop_labels}
    metadata = dict(plan.metadata)
    if edit_field:
        metadata[sorted(metadata)[0]] = "changed"
    unique = {g.casefold(): (g, r) for g, r in grants.items()}
    seen = WorkspaceSeen(path=plan.path, item_id="I", folders=folders, grants=dict(unique.values()), labels=labels,
                         metadata=metadata)
    findings = compare_workspace(plan, seen, POLICY, "C")
    state = WorkspaceState(folders=folders | {p for p in plan.all_folders if p not in plan.folders},
                           grants={g: r for g, r in seen.grants.items() if governs(POLICY, plan.walls, g)},
                           labels=labels, metadata=metadata)
    steps = reconcile(state, plan)
    repairable = [f for f in findings if BY_CODE[f.code].repairer == "provisioning"]
    assert bool(repairable) == bool(steps)
    assert all(f.code == "RC303" for f in findings if f not in repairable)
