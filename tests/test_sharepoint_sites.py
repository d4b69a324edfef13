"""The hub's Graph client against a tenant as strict as SharePoint (the simulator over real HTTP): the
library found from the site's URL and its name, groups found by name and granted by object id, columns
created before fields, retention labels checked against the published ones; and provisioning on
SharePoint's permission inheritance: it changes only the grants the policy governs, never the site's own
groups nor a grant someone else made, and never leaves a walled group a grant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from actors import load_policy
from actors.provisioning.actor import execute, read_state
from connectors.settings import GraphSettings
from connectors.sharepoint.client import GraphClient, GroupNotFound, LabelNotPublished
from connectors.sharepoint.platform import GraphPlatform
from hub.errors import UpstreamRejected
from hub.ingress.server import serve_in_thread
from hub.workspace import Project, governs, plan_workspace, reconcile, walls_for
from simulators.sharepoint import SimulatorConfig, create_app

TOKEN = "sites-test-token"
SITE_URL = "https://contoso.sharepoint.example/sites/Engagements"
POLICY = load_policy(Path(__file__).resolve().parent.parent / "actors" / "default_policy.yaml")
#: Groups of the directory the policy does not know: someone may grant them by hand.
OTHERS = ("Audit-Committee", "O'Brien & Partners")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    """Site Engagements with libraries Workspaces and Archive, the site's own groups, the policy's groups and
    two others in the directory, SharePoint's columns only, and the policy's labels but one published."""
    labels = POLICY.retention.all_labels() - {"Client-GLOBEX-Matter-25y"}
    config = SimulatorConfig(token=TOKEN, web_host="https://contoso.sharepoint.example", site="Engagements",
                             drives=("Workspaces", "Archive"), retention_labels=frozenset(labels),
                             groups=(*(POLICY.security_groups.known_groups or []), *OTHERS))
    with serve_in_thread(create_app(config)) as url:
        yield url


@pytest.fixture
def graph(sim: str) -> Iterator[GraphClient]:
    """The hub's client, configured as a firm would: a site URL and a library name; a tenant reset first."""
    httpx.post(f"{sim}/_sim/reset").raise_for_status()
    client = GraphClient.from_settings(settings_for(sim))
    yield client
    client.close()


def settings_for(sim: str, **overrides: Any) -> GraphSettings:
    """Settings pointing at the simulator's site and its Workspaces library."""
    return GraphSettings(**{"url": f"{sim}/v1.0", "token": SecretStr(TOKEN), "site_url": SITE_URL,
                            "library": "Workspaces", **overrides})


def calls(sim: str) -> dict[str, int]:
    """The simulator's count of authorised calls per route."""
    counted: dict[str, int] = httpx.get(f"{sim}/_sim/requests").json()["calls"]
    return counted


def principals(graph: GraphClient, item_id: str) -> dict[str, tuple[list[str], bool]]:
    """Who holds the item, by display name: (roles, inherited)."""
    return {p.principals()[0].display_name or "": (p.roles, p.inherited_from is not None)
            for p in graph.grants(item_id)}


def test_the_library_is_found_from_the_site_url_and_its_name_once_per_client(sim: str, graph: GraphClient) -> None:
    drive_id = graph.drive_id
    assert drive_id.startswith("b!")
    state = httpx.get(f"{sim}/_sim/state").json()
    assert state["site"]["drives"][drive_id] == "Workspaces"
    graph.ensure_folder("ACME/Contracts")
    graph.ensure_folder("ACME/SOWs")
    assert calls(sim)["GET /sites/{reference:path}"] == 2  # the site by path, then its drives: once each
    archive = GraphClient.from_settings(settings_for(sim, library="archive"))  # names compare as SharePoint's
    assert archive.drive_id != drive_id and state["site"]["drives"][archive.drive_id] == "Archive"
    archive.close()


def test_an_unknown_site_or_library_is_a_permanent_error_naming_what_there_is(sim: str) -> None:
    missing = GraphClient.from_settings(settings_for(sim, library="Workspaces-Old"))
    with pytest.raises(UpstreamRejected, match="named 'Workspaces-Old' \\(it has: Archive, Workspaces\\)"):
        missing.ensure_folder("ACME")
    elsewhere = GraphClient.from_settings(settings_for(sim, site_url="https://contoso.sharepoint.example/sites/Nope"))
    with pytest.raises(UpstreamRejected, match="itemNotFound"):
        _ = elsewhere.drive_id
    for client in (missing, elsewhere):
        client.close()


def test_a_drive_id_setting_overrides_the_lookup(sim: str, graph: GraphClient) -> None:
    pinned = GraphClient.from_settings(settings_for(sim, drive_id=graph.drive_id, library="not looked up"))
    before = calls(sim).get("GET /sites/{reference:path}", 0)
    assert pinned.ensure_folder("Pinned").id
    assert calls(sim).get("GET /sites/{reference:path}", 0) == before
    pinned.close()


def test_groups_are_granted_by_object_id_found_once_by_name_and_inheritance_keeps_the_site_groups(
        sim: str) -> None:
    httpx.post(f"{sim}/_sim/reset").raise_for_status()
    sent: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [sent.append]})
    graph = GraphClient.from_settings(settings_for(sim), client=http)
    folder = graph.ensure_folder("Matter-1")
    assert all(inherited for _, inherited in principals(graph, folder.id).values())
    granted = graph.ensure_grant(folder.id, "O'Brien & Partners", "read")
    assert graph.ensure_grant(folder.id, "o'brien & partners", "read").id == granted.id
    graph.ensure_grant(folder.id, "Finance-EU", "write")
    filters = [r.url.params.get("$filter") for r in sent if r.url.path.endswith("/groups")]
    assert filters == ["displayName eq 'O''Brien & Partners'", "displayName eq 'Finance-EU'"]  # once per group
    invites = [json.loads(r.content) for r in sent if r.url.path.endswith("/invite")]
    assert [i["recipients"] for i in invites] == [[{"objectId": graph.group_id("O'Brien & Partners")}],
                                                  [{"objectId": graph.group_id("Finance-EU")}]]
    held = principals(graph, folder.id)
    assert held == {"Engagements Owners": (["owner"], False), "Engagements Members": (["write"], False),
                    "Engagements Visitors": (["read"], False), "O'Brien & Partners": (["read"], False),
                    "Finance-EU": (["write"], False)}
    assert graph.revoke_grant(folder.id, "Finance-EU") == 1
    assert "Finance-EU" not in principals(graph, folder.id) and "Engagements Owners" in principals(graph, folder.id)
    with pytest.raises(GroupNotFound, match="no directory groups have the displayName 'Nobody-XX'"):
        graph.ensure_grant(folder.id, "Nobody-XX", "read")
    graph.close()


def test_columns_are_created_once_before_fields_and_a_field_without_one_is_refused(
        sim: str, graph: GraphClient) -> None:
    folder = graph.ensure_folder("ENG-7")
    with pytest.raises(UpstreamRejected, match="Field 'ProjectCode' is not recognized"):
        graph.ensure_fields(folder.id, {"ProjectCode": "ENG-7"})
    assert graph.ensure_columns(["ProjectCode", "Region", "Title"]) == ["ProjectCode", "Region"]
    assert graph.ensure_columns(["Region", "ProjectCode"]) == []
    assert calls(sim)["POST /sites/{reference:path}"] == 2
    assert graph.ensure_fields(folder.id, {"ProjectCode": "ENG-7", "Region": "EU"})["Region"] == "EU"
    other = GraphClient.from_settings(settings_for(sim))  # another process: finds them, creates nothing
    assert other.ensure_columns(["ProjectCode"]) == []
    assert calls(sim)["POST /sites/{reference:path}"] == 2
    other.close()


def test_labels_are_checked_against_the_published_ones_and_an_unpublished_one_is_refused(
        sim: str, graph: GraphClient) -> None:
    published = graph.published_labels()
    assert published is not None and "DE-Engagement-10y" in published
    assert "Client-GLOBEX-Matter-25y" not in published
    folder = graph.ensure_folder("Labelled")
    assert graph.ensure_retention_label(folder.id, "DE-Engagement-10y").name == "DE-Engagement-10y"
    with pytest.raises(LabelNotPublished, match="Client-GLOBEX-Matter-25y"):
        graph.ensure_retention_label(folder.id, "Client-GLOBEX-Matter-25y")
    with serve_in_thread(create_app(SimulatorConfig(token=TOKEN))) as url:  # labels the app may not list
        unlisted = GraphClient.from_settings(GraphSettings(url=f"{url}/v1.0", token=SecretStr(TOKEN)))
        assert unlisted.published_labels() is None
        unlisted.close()


# -- provisioning on the inheritance model ---------------------------------------------------------------

def matter(n: int, conflicted: frozenset[str], practice: str) -> Project:
    """Version ``n`` of a legal matter in the EU."""
    return Project(project_code="MAT-1", client_id="INITECH", name=f"v{n}", engagement_type="legal",
                   practice=practice, region="EU", country="FR", partner="a.b@firm.example",
                   conflicted_groups=conflicted, updated_at=T0 + timedelta(minutes=n))


GROUPS = ["Litigation-EU", "Corporate-EU", "Finance-EU", "Knowledge-EU", "Records-EU", "Contractors-EU"]
versions = st.lists(st.tuples(st.frozensets(st.sampled_from(GROUPS), max_size=3),
                              st.sampled_from(["Litigation", "Corporate"])), min_size=1, max_size=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(history=versions, by_hand=st.sets(st.sampled_from([*OTHERS, "Knowledge-EU", "Litigation-EU"]), max_size=3))
def test_provisioning_on_inherited_permissions_changes_only_the_governed_grants_and_never_leaves_a_walled_one(
        sim: str, history: list[tuple[frozenset[str], str]], by_hand: set[str]) -> None:
    httpx.post(f"{sim}/_sim/reset").raise_for_status()
    graph = GraphClient.from_settings(settings_for(sim))
    try:
        first = plan_workspace(matter(0, *history[0]), POLICY)
        workspace = graph.ensure_folder(first.path).id
        for group in sorted(by_hand):  # someone grants groups by hand before the hub runs
            graph.ensure_grant(workspace, group, "read")
        for n, (conflicted, practice) in enumerate(history):
            project = matter(n, conflicted, practice)
            plan = plan_workspace(project, POLICY)
            state, ids = read_state(GraphPlatform(graph), plan, lambda group, p=plan: governs(POLICY, p.walls, group))
            for step in reconcile(state, plan):
                execute(GraphPlatform(graph), plan, step, ids)
            held = principals(graph, workspace)
            walls = walls_for(project, POLICY)
            assert not any(walls.blocks(group) for group in held), held
            assert {g: roles for g, (roles, _) in held.items() if governs(POLICY, walls, g)} == {
                g: [role] for g, role in plan.grants.items()}
            # The site's own groups stay (copied as the item's own once a grant broke inheritance; inherited when
            # every group the policy grants is walled and nothing was granted).
            assert held["Engagements Owners"][0] == ["owner"] and held["Engagements Members"][0] == ["write"]
            assert {g for g in OTHERS if g in held} == {g for g in OTHERS if g in by_hand}  # not ours: kept
            again, _ = read_state(GraphPlatform(graph), plan, lambda group, p=plan: governs(POLICY, p.walls, group))
            assert reconcile(again, plan) == []
    finally:
        graph.close()
