"""Provisioning on Box (the Box simulator over real HTTP): a matter the policy puts on Box gets its folder tree,
the workspace metadata template's instance, group collaborations (viewer for read, editor for write), its
retention policies and its ethical walls; the ERP learns its Box link and the crosswalk links it under ``box``;
while the same hub keeps other projects on SharePoint; master data pushes the client's name onto the Box
workspace. The ethical-wall property of SharePoint holds on Box."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors
from actors.master_data import DEFAULT_MAPPING, MasterData, MemoryMasterDataStore, load_master_data_mapping
from actors.provisioning import MemoryProvisioningStore, Provisioning
from actors.provisioning.actor import execute, read_state
from connectors.box.client import BoxClient
from connectors.box.platform import BoxPlatform
from connectors.platform import Platforms
from connectors.settings import BoxSettings
from connectors.sharepoint.platform import GraphPlatform
from hub.actor import RecordingEmitter
from hub.crosswalk import SqlCrosswalk
from hub.store import MemoryLocks
from hub.workspace import Project, governs, plan_workspace, reconcile, walls_for
from simulators.box.config import DEFAULT_GROUPS
from tests.support.box import BoxSim, running_box
from tests.support.fakes import FakeErp, FakeGraph
from tests.test_actors_unit import REGISTRY, SPECS, context, crosswalk, erp_project, project_event

__all__ = ["crosswalk"]  # the fixture, imported for this module's tests

POLICY = actors.load_policy()
#: Groups of the enterprise the policy does not know: someone may make them collaborators by hand.
OTHERS = ("Audit-Committee", "Outside-Counsel")
MATTER = "Engagements/GLOBEX/MAT-7"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[BoxSim]:
    with running_box(groups=(*DEFAULT_GROUPS, *OTHERS)) as running:
        yield running


@pytest.fixture
def box(sim: BoxSim) -> Iterator[BoxClient]:
    sim.admin.post("/reset").raise_for_status()
    client = BoxClient.from_settings(BoxSettings(url=sim.url, upload_url=f"{sim.url}/api"))
    yield client
    client.close()


def hub_platforms(box: BoxClient, graph: FakeGraph) -> Platforms:
    """SharePoint (a fake) and Box (the simulator), chosen as the example policy says."""
    return Platforms([GraphPlatform(graph), BoxPlatform(box)], choose=actors.platform_rules(POLICY).platform_for)


def provisioning(erp: FakeErp, platforms: Platforms, crosswalk: SqlCrosswalk) -> Provisioning:
    return Provisioning(spec=SPECS["provisioning"], policy=POLICY, erp=erp, platforms=platforms, crosswalk=crosswalk,
                        locks=MemoryLocks(), store=MemoryProvisioningStore())


def corporate_matter(**fields: Any) -> Any:
    return erp_project("MAT-7", client_id="GLOBEX", engagement_type="legal", practice="Corporate", region="EU",
                       country="FR", billing_model="time_and_materials", **fields)


def collaborators(sim: BoxSim, path: str) -> dict[str, str]:
    """Group name -> Box role of the folder's own collaborations."""
    state = sim.state()
    folder = state["items"][path]["id"]
    return {c["accessible_by"]["name"]: c["role"] for c in state["collaborations"] if c["item"]["id"] == folder}


def test_a_matter_the_policy_puts_on_box_is_provisioned_there_and_the_erp_gets_its_box_link(
        sim: BoxSim, box: BoxClient, crosswalk: SqlCrosswalk) -> None:
    matter, graph, emitter = corporate_matter(), FakeGraph(), RecordingEmitter()
    erp = FakeErp(matter)
    actor = provisioning(erp, hub_platforms(box, graph), crosswalk)
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(matter), emitter, id="p:MAT-7:1"))
    state = sim.state()
    assert [p for p in state["items"] if p.startswith(MATTER)] == [MATTER, *(f"{MATTER}/{f}" for f in (
        "Billing", "Correspondence", "Engagement Letters", "Pleadings", "Pleadings/Drafts", "Pleadings/Filed"))]
    assert graph.folders() == []  # nothing on SharePoint
    assert collaborators(sim, MATTER) == {"Corporate-EU": "editor", "Finance-EU": "viewer", "Knowledge-EU": "viewer",
                                          "Records-EU": "viewer"}
    workspace = state["items"][MATTER]["id"]
    [instance] = [m for m in state["metadata"] if m["item"] == workspace]
    assert (instance["template"], instance["ProjectCode"], instance["SearchKey"], instance["Practice"]) == (
        "hubWorkspace", "MAT-7", "GLOBEX/MAT-7", "Corporate")
    assigned = {(a["assigned_to"]["id"], a["retention_policy"]["policy_name"]) for a in state["assignments"]}
    letters = state["items"][f"{MATTER}/Engagement Letters"]["id"]
    assert assigned == {(workspace, "Client-GLOBEX-Matter-25y"), (letters, "Client-GLOBEX-Matter-25y")}
    url = f"https://app.box.com/folder/{workspace}"
    assert erp.writes[-1] == ("update_project", "MAT-7", {"custom_fields": {"workspace_url": url,
                                                                           "workspace_status": "provisioned"}})
    [event] = emitter.events
    data = REGISTRY.decode("dms.workspace.provisioned.v1", event.get_data())
    assert (data["workspace_id"], data["url"], data["drive_id"]) == (workspace, url, None)
    canonical = crosswalk.resolve("project", "erp", "MAT-7")
    assert canonical is not None and crosswalk.resolve("project", "box", workspace) == canonical
    assert crosswalk.identities(canonical).get("sharepoint") is None


def test_the_same_hub_keeps_other_projects_on_sharepoint(sim: BoxSim, box: BoxClient,
                                                         crosswalk: SqlCrosswalk) -> None:
    litigation = erp_project("MAT-8", client_id="GLOBEX", engagement_type="legal", practice="Litigation",
                             region="EU", country="FR", billing_model="time_and_materials")
    graph, emitter = FakeGraph(), RecordingEmitter()
    actor = provisioning(FakeErp(litigation), hub_platforms(box, graph), crosswalk)
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(litigation), emitter, id="p:MAT-8:1"))
    assert "Engagements/GLOBEX/MAT-8" in graph.folders()
    assert sim.state()["items"] == {}
    canonical = crosswalk.resolve("project", "erp", "MAT-8")
    assert canonical is not None and set(crosswalk.identities(canonical)) == {"erp", "sharepoint"}


def test_provisioning_a_box_matter_again_writes_nothing(sim: BoxSim, box: BoxClient, crosswalk: SqlCrosswalk) -> None:
    matter, emitter = corporate_matter(), RecordingEmitter()
    erp = FakeErp(matter)
    actor = provisioning(erp, hub_platforms(box, FakeGraph()), crosswalk)
    created = context(actor.spec, "erp.project.created.v1", project_event(matter), emitter, id="p:MAT-7:1")
    actor.handle(created)
    events, writes = sim.state()["events"], len(erp.writes)
    actor.handle(created)
    assert sim.state()["events"] == events and len(erp.writes) == writes and len(emitter.events) == 1


def test_a_conflict_added_later_takes_the_walled_group_off_the_box_matter_and_it_is_never_a_collaborator(
        sim: BoxSim, box: BoxClient, crosswalk: SqlCrosswalk) -> None:
    matter, emitter = corporate_matter(), RecordingEmitter()
    erp = FakeErp(matter)
    actor = provisioning(erp, hub_platforms(box, FakeGraph()), crosswalk)
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(matter), emitter, id="p:MAT-7:1"))
    assert "Knowledge-EU" in collaborators(sim, MATTER)
    walled = corporate_matter(conflicted_groups=["Knowledge-EU"], updated_at=(T0 + timedelta(days=1)).isoformat())
    erp.projects["MAT-7"] = walled
    actor.handle(context(actor.spec, "erp.project.updated.v1", project_event(walled), emitter, id="p:MAT-7:2"))
    assert collaborators(sim, MATTER) == {"Corporate-EU": "editor", "Finance-EU": "viewer", "Records-EU": "viewer"}
    removed = [c for c in sim.state()["collaborations"] if c["accessible_by"]["name"] == "Knowledge-EU"]
    assert removed == []


def test_master_data_pushes_the_clients_name_onto_the_box_workspace_and_again_when_the_erp_renames_it(
        sim: BoxSim, box: BoxClient, crosswalk: SqlCrosswalk) -> None:
    platforms, emitter = hub_platforms(box, FakeGraph()), RecordingEmitter()
    master = MasterData(rules=load_master_data_mapping(DEFAULT_MAPPING), platforms=platforms, crosswalk=crosswalk,
                        locks=MemoryLocks(), store=MemoryMasterDataStore())
    client = {"client_id": "GLOBEX", "name": "Globex Corp", "country": "FR", "status": "active", "industry": None,
              "parent_client_id": None, "billing_currency": None, "updated_at": T0}
    master.handle(context(master.spec, "erp.client.upserted.v1", client, emitter, id="c1", sequence=f"{1:020d}"))
    matter = corporate_matter()
    master.handle(context(master.spec, "erp.project.created.v1", project_event(matter), emitter, id="p1",
                          sequence=f"{1:020d}"))
    actor = provisioning(FakeErp(matter), platforms, crosswalk)
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(matter), emitter, id="p1"))
    [provisioned] = emitter.of_type("dms.workspace.provisioned.v1")
    master.handle(context(master.spec, "dms.workspace.provisioned.v1",
                          REGISTRY.decode(provisioned.get_type(), provisioned.get_data()), emitter, id="w1",
                          source="hub://provisioning"))

    def client_name() -> str:
        workspace = sim.state()["items"][MATTER]["id"]
        [instance] = [m for m in sim.state()["metadata"] if m["item"] == workspace]
        return str(instance.get("ClientName"))

    assert client_name() == "Globex Corp"
    master.handle(context(master.spec, "erp.client.upserted.v1", {**client, "name": "Globex International"},
                          emitter, id="c2", sequence=f"{2:020d}"))
    assert client_name() == "Globex International"


# -- the ethical-wall property, as on SharePoint (tests/test_sharepoint_sites.py) ------------------------------

def matter(n: int, conflicted: frozenset[str], practice: str) -> Project:
    """Version ``n`` of a legal matter in the EU."""
    return Project(project_code="MAT-1", client_id="INITECH", name=f"v{n}", engagement_type="legal",
                   practice=practice, region="EU", country="FR", partner="a.b@firm.example",
                   conflicted_groups=conflicted, updated_at=T0 + timedelta(minutes=n))


GROUPS = ["Litigation-EU", "Corporate-EU", "Finance-EU", "Knowledge-EU", "Records-EU", "Contractors-EU"]
versions = st.lists(st.tuples(st.frozensets(st.sampled_from(GROUPS), max_size=3),
                              st.sampled_from(["Litigation", "Corporate"])), min_size=1, max_size=3)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(history=versions, by_hand=st.sets(st.sampled_from([*OTHERS, "Knowledge-EU", "Contractors-EU"]), max_size=3))
def test_provisioning_on_box_changes_only_the_governed_collaborations_and_never_leaves_a_walled_one(
        sim: BoxSim, history: list[tuple[frozenset[str], str]], by_hand: set[str]) -> None:
    sim.admin.post("/reset").raise_for_status()
    client = BoxClient.from_settings(BoxSettings(url=sim.url, upload_url=f"{sim.url}/api"))
    platform = BoxPlatform(client)
    try:
        first = plan_workspace(matter(0, *history[0]), POLICY)
        workspace = platform.ensure_folder(first.path).id
        for group in sorted(by_hand):  # someone adds collaborators by hand before the hub runs
            platform.grant(workspace, group, "read")
        for n, (conflicted, practice) in enumerate(history):
            project = matter(n, conflicted, practice)
            plan = plan_workspace(project, POLICY)
            state, ids = read_state(platform, plan, lambda group, p=plan: governs(POLICY, p.walls, group))
            for step in reconcile(state, plan):
                execute(platform, plan, step, ids)
            held = platform.group_grants(workspace)
            walls = walls_for(project, POLICY)
            assert not any(walls.blocks(group) for group in held), held
            assert {g: r for g, r in held.items() if governs(POLICY, walls, g)} == dict(plan.grants)
            assert {g for g in OTHERS if g in held} == {g for g in OTHERS if g in by_hand}  # not ours: kept
            again, _ = read_state(platform, plan, lambda group, p=plan: governs(POLICY, p.walls, group))
            assert reconcile(again, plan) == []
    finally:
        client.close()
