"""The provisioning plan: the four scenarios, ethical walls, and reconcile steps that converge."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import load_policy
from hub.errors import InvalidEvent
from hub.policy import Role
from hub.registry import SchemaRegistry
from hub.workspace import (
    ApplyLabel,
    EnsureFolder,
    GrantAccess,
    Project,
    RevokeGrant,
    Step,
    WallSet,
    WorkspacePlan,
    WorkspaceState,
    plan_workspace,
    reconcile,
    revocations,
    safe_grants,
    supersedes,
    walls_for,
)

ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy(ROOT / "actors" / "default_policy.yaml")
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def project(**overrides: Any) -> Project:
    """ACME's Strategy engagement in Germany, changed by ``overrides``."""
    fields: dict[str, Any] = {
        "project_code": "ACME-2025-001", "client_id": "ACME", "name": "Market entry strategy",
        "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
        "partner": "p.weber@firm.example", "status": "active", "updated_at": T0,
    }
    return Project(**{**fields, **overrides})


def apply(state: WorkspaceState, step: Step) -> WorkspaceState:
    """What the document platform does with one step (a simulator independent of reconcile)."""
    folders, grants = set(state.folders), dict(state.grants)
    labels, metadata = dict(state.labels), dict(state.metadata)
    lower = {f.casefold() for f in folders}
    if isinstance(step, RevokeGrant):
        del grants[step.group]  # the step names the grant as the platform reported it
    elif isinstance(step, EnsureFolder):
        parent = step.path.rpartition("/")[0]
        assert not parent or parent.casefold() in lower, f"parent of {step.path} missing"
        folders.add(step.path)
    elif isinstance(step, GrantAccess):
        grants = {g: r for g, r in grants.items() if g.casefold() != step.group.casefold()}
        grants[step.group] = step.role
    elif isinstance(step, ApplyLabel):
        assert step.path.casefold() in lower, f"label on missing folder {step.path}"
        labels = {p: v for p, v in labels.items() if p.casefold() != step.path.casefold()}
        labels[step.path] = step.label
    else:
        assert step.path.casefold() in lower
        metadata.update(step.fields)
    return WorkspaceState(folders=frozenset(folders), grants=grants, labels=labels, metadata=metadata)


def run(state: WorkspaceState, plan: WorkspacePlan) -> WorkspaceState:
    for step in reconcile(state, plan):
        state = apply(state, step)
    return state


def normal(state: WorkspaceState) -> tuple[Any, ...]:
    """The state with names compared as the platform compares them (ignoring case)."""
    return (frozenset(f.casefold() for f in state.folders), {g.casefold(): r for g, r in state.grants.items()},
            {p.casefold(): v for p, v in state.labels.items()}, dict(state.metadata))


def test_the_consulting_engagement_for_acme_gets_its_eu_workspace() -> None:
    plan = plan_workspace(project(), POLICY)
    base = "Engagements/ACME/ACME-2025-001"
    assert plan.path == base
    assert plan.folders == tuple(f"{base}/{name}" for name in
                                 ("Contracts", "SOWs", "Deliverables", "Correspondence", "Invoices"))
    assert dict(plan.grants) == {"Strategy-EU": "write", "Finance-EU": "read"}
    assert plan.denied == frozenset() and plan.unknown_groups == frozenset()
    assert plan.label == "DE-Engagement-10y"  # the country overrides the region
    assert dict(plan.folder_labels) == {f"{base}/Contracts": "DE-Contract-10y", f"{base}/SOWs": "DE-Contract-10y",
                                        f"{base}/Deliverables": "EU-Deliverable-7y"}
    assert dict(plan.metadata) == {
        "ProjectCode": "ACME-2025-001", "ClientId": "ACME", "ProjectName": "Market entry strategy",
        "EngagementType": "consulting", "Practice": "Strategy", "Region": "EU", "Country": "DE",
        "ResponsiblePartner": "p.weber@firm.example", "SourceSystem": "ERP", "SearchKey": "ACME/ACME-2025-001"}


def test_a_new_workspace_is_built_in_order_and_a_second_run_has_nothing_to_do() -> None:
    plan = plan_workspace(project(), POLICY, root="Clients")
    steps = reconcile(WorkspaceState(), plan)
    assert steps[:3] == [EnsureFolder("Clients"), EnsureFolder("Clients/ACME"), EnsureFolder(plan.path)]
    kinds = [type(s).__name__ for s in steps]
    assert kinds == sorted(kinds, key=["EnsureFolder", "GrantAccess", "ApplyLabel", "SetFields"].index)
    done = run(WorkspaceState(), plan)
    assert done == WorkspaceState.of(plan)
    assert reconcile(done, plan) == []


def test_a_country_without_an_override_takes_its_regions_label() -> None:
    assert plan_workspace(project(country="NL"), POLICY).label == "EU-Engagement-7y"


def test_a_project_is_built_from_a_decoded_erp_event() -> None:
    registry = SchemaRegistry.load()
    record = {"project_code": "ACME-2025-001", "client_id": "ACME", "name": "Market entry strategy",
              "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
              "partner": "p.weber@firm.example", "billing_model": "fixed_fee", "status": "planned",
              "conflicted_groups": ["Finance-EU"], "updated_at": T0}
    for event_type in ("erp.project.created.v1", "erp.project.updated.v1"):
        decoded = registry.decode(event_type, registry.encode(event_type, record))
        assert Project.from_record(decoded) == project(status="planned", conflicted_groups=frozenset({"Finance-EU"}))
    millis = {**record, "updated_at": int(T0.timestamp() * 1000)}
    assert Project.from_record(millis).updated_at == T0


def test_a_bad_project_record_is_an_invalid_event_naming_the_field() -> None:
    with pytest.raises(InvalidEvent) as caught:
        Project.from_record({"project_code": "X"})
    assert caught.value.field == "client_id"
    with pytest.raises(InvalidEvent) as caught:
        project(region="LATAM")
    assert caught.value.field == "region"
    with pytest.raises(InvalidEvent) as caught:
        plan_workspace(project(project_code="../../HR"), POLICY)
    assert caught.value.field == "project_code"


def test_a_legal_matter_never_grants_its_conflicted_group_nor_a_never_grant_pattern() -> None:
    matter = project(project_code="M-4711", client_id="GLOBEX", engagement_type="legal", practice="Litigation",
                     country="FR", conflicted_groups=frozenset({"FINANCE-eu"}))
    plan = plan_workspace(matter, POLICY)
    assert dict(plan.grants) == {"Litigation-EU": "write", "Records-EU": "read"}
    assert plan.denied == {"Finance-EU", "Knowledge-EU"}  # the ERP's conflict, and never_grant 'Knowledge-*'
    assert plan.walls.blocks("finance-EU") and plan.walls.blocks("Knowledge-APAC")
    assert plan.label == "Client-GLOBEX-Matter-25y"  # client-specific retention
    assert plan.folder_labels[f"{plan.path}/Engagement Letters"] == "Client-GLOBEX-Matter-25y"
    assert plan.folders.index(f"{plan.path}/Pleadings") < plan.folders.index(f"{plan.path}/Pleadings/Drafts")
    assert "Finance-EU" not in normal(run(WorkspaceState(), plan))[1]


def test_an_update_adding_a_conflict_revokes_the_earlier_grant_before_anything_else() -> None:
    first = plan_workspace(project(engagement_type="legal", practice="Corporate"), POLICY)
    provisioned = run(WorkspaceState(), first)
    assert provisioned.grants["Knowledge-EU"] == "read"  # no never_grant rule for Corporate
    later = plan_workspace(project(engagement_type="legal", practice="Corporate", name="Renamed",
                                   conflicted_groups=frozenset({"knowledge-*"})), POLICY)
    assert revocations(provisioned.grants, later) == {"Knowledge-EU"}
    steps = reconcile(provisioned, later)
    assert steps[0] == RevokeGrant("Knowledge-EU", "wall")
    assert "knowledge-eu" not in normal(run(provisioned, later))[1]


def test_consulting_honours_conflicted_groups_but_not_the_legal_never_grant_rules() -> None:
    plan = plan_workspace(project(practice="Litigation", conflicted_groups=frozenset({"Finance-*"})), POLICY)
    assert dict(plan.grants) == {"Litigation-EU": "write"}
    assert walls_for(project(practice="Litigation"), POLICY) == WallSet()


def test_the_engineering_project_in_the_middle_east_carries_the_me_retention_labels() -> None:
    plan = plan_workspace(project(project_code="ENG-88", client_id="NEOM-CO", engagement_type="engineering",
                                  practice="Infrastructure", region="ME", country="SA"), POLICY)
    assert plan.label == "ME-Engagement-10y"
    assert plan.folder_labels[f"{plan.path}/Deliverables"] == "ME-Deliverable-10y"
    assert plan.folder_labels[f"{plan.path}/Approvals"] == "ME-Service-10y"
    assert f"{plan.path}/Drawings" in plan.folders
    assert dict(plan.grants) == {"Infrastructure-ME": "write", "Finance-ME": "read", "QA-ME": "read"}


def test_the_managed_services_contract_gets_its_service_folders_and_desk_group() -> None:
    plan = plan_workspace(project(project_code="MS-2025-12", client_id="INITECH", engagement_type="managed_services",
                                  practice="CloudOps", region="NA", country="US"), POLICY)
    assert [f.rpartition("/")[2] for f in plan.folders] == [
        "Contracts", "Service Reports", "Customer Approvals", "Change Records", "Invoices"]
    assert plan.folder_labels[f"{plan.path}/Change Records"] == "NA-Service-5y"
    assert dict(plan.grants) == {"CloudOps-NA": "write", "Finance-NA": "read", "Service-Desk-NA": "write"}


def test_a_derived_group_missing_from_known_groups_is_reported_not_granted() -> None:
    plan = plan_workspace(project(practice="Tax"), POLICY)
    assert plan.unknown_groups == {"Tax-EU"}
    assert dict(plan.grants) == {"Finance-EU": "read"}


def test_wall_patterns_ignore_case_and_treat_only_the_star_as_special() -> None:
    walls = WallSet(("M&A (EU)*", "Finance.EU"))
    assert walls.blocks("m&a (eu) deal team") and walls.blocks("FINANCE.eu")
    assert not walls.blocks("FinanceXEU") and not walls.blocks("M&A EU")
    desired: dict[str, Role] = {"Finance.EU": "read", "Strategy-EU": "write"}
    assert safe_grants(desired, walls) == {"Strategy-EU": "write"}


def test_a_plan_that_grants_a_walled_group_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="walled groups: Finance-EU"):
        WorkspacePlan(path="E/A/P", folders=(), grants={"Finance-EU": "read"}, denied=frozenset(),
                      walls=WallSet(("finance-*",)), label="L", folder_labels={}, metadata={})


def test_an_older_version_never_supersedes_a_newer_one() -> None:
    assert supersedes(project(), None)
    assert supersedes(project(updated_at=T0), T0)  # a replay is applied again, harmlessly
    assert not supersedes(project(updated_at=T0), T0 + timedelta(seconds=1))


# --- property: any order of versions, any starting state, interrupted runs ----------------------------

PRACTICES = ["Strategy", "Litigation", "Corporate", "Infrastructure", "CloudOps", "Tax"]
TEAMS = ["Finance", "Knowledge", "Records", "QA", "Service-Desk", "Contractors"]
GROUPS = [f"{p}-{r}" for p in PRACTICES + TEAMS for r in ("NA", "EU", "ME", "APAC")] + ["Everyone"]
PATTERNS = ["Finance-*", "*-EU", "knowledge-*", "*desk*"]
cased = st.sampled_from(GROUPS).flatmap(lambda g: st.sampled_from([g, g.upper(), g.lower()]))


@st.composite
def versions(draw: st.DrawFn) -> list[Project]:
    engagement_type = draw(st.sampled_from(["consulting", "legal", "engineering", "managed_services"]))
    count = draw(st.integers(1, 4))
    return [project(engagement_type=engagement_type, practice=draw(st.sampled_from(PRACTICES)),
                    region=draw(st.sampled_from(["NA", "EU", "ME", "APAC"])),
                    country=draw(st.sampled_from(["DE", "FR", "US", "SA", "SG", "NO"])),
                    conflicted_groups=frozenset(draw(st.lists(cased | st.sampled_from(PATTERNS), max_size=4))),
                    name=f"v{n}", updated_at=T0 + timedelta(minutes=n)) for n in range(count)]


@st.composite
def starting_state(draw: st.DrawFn, plan: WorkspacePlan) -> WorkspaceState:
    drawn = draw(st.sets(st.sampled_from(plan.all_folders)))
    folders: set[str] = set()
    for folder in plan.all_folders:  # parents first: a folder exists only below its parent
        if folder in drawn and (folder.rpartition("/")[0] in folders or "/" not in folder):
            folders.add(folder)
    roles: st.SearchStrategy[Role] = st.sampled_from(["read", "write"])
    grants = draw(st.dictionaries(cased, roles, max_size=8))
    unique = {g.casefold(): (g, r) for g, r in grants.items()}
    labels = {f: draw(st.sampled_from(["EU-Engagement-7y", "Old-Label"]))
              for f in folders if f in plan.labels and draw(st.booleans())}
    metadata = {k: draw(st.sampled_from([v, "stale"])) for k, v in plan.metadata.items() if draw(st.booleans())}
    return WorkspaceState(folders=frozenset(folders), grants=dict(unique.values()), labels=labels, metadata=metadata)


def granted_walled(state: Mapping[str, Role], walls: WallSet) -> set[str]:
    return {g for g in state if walls.blocks(g)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_of_versions_converges_to_the_latest_plan_and_never_leaves_a_walled_grant(
        data: st.DataObject) -> None:
    history = data.draw(versions())
    deliveries = data.draw(st.lists(st.sampled_from(history), min_size=1, max_size=8))
    state = data.draw(starting_state(plan_workspace(history[0], POLICY)))
    applied: datetime | None = None
    newest_seen: Project | None = None
    for incoming in deliveries:
        newest_seen = incoming if newest_seen is None else max(newest_seen, incoming, key=lambda v: v.updated_at or T0)
        if not supersedes(incoming, applied):
            continue  # a late, older version is skipped
        plan = plan_workspace(incoming, POLICY)
        crash_after = data.draw(st.none() | st.integers(0, 12))
        while True:  # a crashed run is retried: it reads the state again and reconciles afresh
            before = granted_walled(state.grants, plan.walls)
            steps = reconcile(state, plan)
            for n, step in enumerate(steps):
                if crash_after is not None and n == crash_after:
                    break
                assert not (isinstance(step, GrantAccess) and plan.walls.blocks(step.group))
                state = apply(state, step)
                assert granted_walled(state.grants, plan.walls) <= before  # never a new walled grant
                if n + 1 >= len(before):  # walled grants are the very first to go
                    assert not granted_walled(state.grants, plan.walls)
            else:
                break
            crash_after = None
        applied = incoming.updated_at
        assert not granted_walled(state.grants, plan.walls)
        assert not granted_walled(state.grants, walls_for(newest_seen, POLICY))
        assert reconcile(state, plan) == []  # idempotent: a finished workspace needs nothing
    assert newest_seen is not None
    assert normal(state) == normal(WorkspaceState.of(plan_workspace(newest_seen, POLICY)))
