"""Reconciliation on Box against the real servers and the simulators: the matters the policy keeps on Box are read
from Box (beside SharePoint's engagements) in the shape the SharePoint reader gives, each difference found with its
code, the walled collaborator removed at once, the rest repaired through provisioning until a second run finds
nothing; an orphan Box folder goes to records management; Box's projects are neither missing on SharePoint nor
drifted in the crosswalk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from actors.exceptions import SqlExceptionInbox
from actors.reconciliation import Reconciler, Run, SqlReconciliationStore
from hub.cli.compose import reconciler
from tests.conftest import hub_settings
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.test_reconciliation import provisioned

pytestmark = pytest.mark.integration

CLEAN, FIELD, LABEL, GRANT, WALL = (f"MAT-BOX-{n:04d}" for n in range(1, 6))
ENGAGEMENT = "ENG-SP-0001"
ORPHAN = "Engagements/GLOBEX/MAT-BOX-9999"


def matter(code: str) -> dict[str, Any]:
    """A Corporate legal matter: the example policy keeps it on Box."""
    return acme_project(code=code, client_id="GLOBEX", name=f"Globex matter {code}", engagement_type="legal",
                        practice="Corporate", region="NA", country="US", billing_model="retainer")


def found(scenario: Scenario, run: Run) -> dict[str, set[str]]:
    by: dict[str, set[str]] = {}
    for recorded in SqlReconciliationStore(scenario.runtime.db).findings(run.run_id):
        by.setdefault(recorded.finding.subject, set()).add(recorded.finding.code)
    return by


@pytest.fixture
def drifted(prefix: str) -> Iterator[tuple[Scenario, list[Reconciler]]]:
    """Box matters each carrying one difference made by hand in Box (one none), an engagement on SharePoint, and
    a Box folder no project owns."""
    made: list[Reconciler] = []
    with running_scenario(hub_settings(prefix)) as scenario:
        scenario.create_client("GLOBEX", "Globex", "US")
        scenario.create_client("ACME", "ACME Corp", "DE")
        for code in (CLEAN, FIELD, LABEL, GRANT, WALL):
            scenario.create_project(**matter(code))
        scenario.create_project(**acme_project(code=ENGAGEMENT))
        provisioned(scenario, CLEAN, FIELD, LABEL, GRANT, WALL, ENGAGEMENT)
        _inject(scenario)
        try:
            yield scenario, made
        finally:
            for job in made:
                job.close()


def _inject(scenario: Scenario) -> None:
    state = scenario.sandbox.box_state()
    ids = {code: state["items"][f"Engagements/GLOBEX/{code}"]["id"] for code in (FIELD, LABEL, GRANT, WALL)}
    with scenario.sandbox.box() as box:
        box.put(f"/folders/{ids[FIELD]}/metadata/enterprise/hubWorkspace",
                headers={"content-type": "application/json-patch+json"},
                content=json.dumps([{"op": "replace", "path": "/ProjectName", "value": "renamed by hand"}]).encode(),
                ).raise_for_status()
        [assignment] = [a for a in state["assignments"] if a["assigned_to"]["id"] == ids[LABEL]]
        box.delete(f"/retention_policy_assignments/{assignment['id']}").raise_for_status()
        [collaboration] = [c for c in state["collaborations"] if c["item"]["id"] == ids[GRANT]
                           and c["accessible_by"]["name"] == "Finance-NA"]
        box.delete(f"/collaborations/{collaboration['id']}").raise_for_status()
        walled = box.get("/groups", params={"filter_term": "Contractors-NA"}).json()["entries"][0]
        box.post("/collaborations", params={"notify": "false"}, json={
            "item": {"type": "folder", "id": ids[WALL]}, "accessible_by": {"type": "group", "id": walled["id"]},
            "role": "editor"}).raise_for_status()
        globex = state["items"]["Engagements/GLOBEX"]["id"]
        box.post("/folders", json={"name": "MAT-BOX-9999", "parent": {"id": globex}}).raise_for_status()


def test_box_matters_are_reconciled_from_box_and_repaired_through_provisioning(
        drifted: tuple[Scenario, list[Reconciler]]) -> None:
    scenario, made = drifted
    assert scenario.connections is not None

    def job() -> Reconciler:
        made.append(reconciler(scenario.runtime, scenario.connections))  # type: ignore[arg-type]
        return made[-1]

    first = job().run(scope=("workspaces", "crosswalk"))
    by = found(scenario, first)
    assert by == {FIELD: {"RC201"}, LABEL: {"RC401"}, GRANT: {"RC301"}, WALL: {"RC304"}, ORPHAN: {"RC102"}}, by
    assert first.compared == 6  # five matters on Box, one engagement on SharePoint
    # The wall is a hard stop, repaired at once even in a dry run.
    assert wait_until(lambda: "Contractors-NA" not in (scenario.box_folder(f"Engagements/GLOBEX/{WALL}") or {})
                      .get("collaborations", {"Contractors-NA": ""}), timeout=60)
    repaired = job().run(scope=("workspaces", "crosswalk"), repair=True)
    assert repaired.repair

    def only_the_orphan_left() -> bool:
        return found(scenario, job().run(scope=("workspaces", "crosswalk"))) == {ORPHAN: {"RC102"}}

    assert wait_until(only_the_orphan_left, timeout=120, interval=2.0)
    folder = scenario.box_folder(f"Engagements/GLOBEX/{LABEL}")
    assert folder is not None and folder["retention"] == ["Client-GLOBEX-Matter-25y"]
    inbox = SqlExceptionInbox(scenario.runtime.db)
    kinds = {(c.owner, c.kind, c.subject) for c in inbox.cases()}
    assert ("records_management", "reconciliation.workspace_orphan", ORPHAN) in kinds
    assert ("risk", "reconciliation.walled_grant", WALL) in kinds
