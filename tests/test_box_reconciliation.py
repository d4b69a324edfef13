"""Reconciliation on Box against the real servers and the simulators: the matters the policy keeps on Box are read
from Box (beside SharePoint's engagements) in the shape the SharePoint reader gives, each difference found with its
code, the walled collaborator removed at once, the rest repaired through provisioning until a second run finds
nothing; an orphan Box folder goes to records management; Box's projects are neither missing on SharePoint nor
drifted in the crosswalk. An incremental run reads Box's changes since the cursor the last completed run kept (its
event stream, and its retention assignments against those that run read): what was changed by hand in Box is found,
what was not changed is not read, and the cursor moves only when a run completes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from actors.exceptions import SqlExceptionInbox
from actors.reconciliation import Reconciler, Run, SqlReconciliationStore
from actors.reconciliation.contract import BOX_CURSOR
from actors.reconciliation.store import state_table
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


def folder_id(scenario: Scenario, code: str) -> str:
    """The Box folder of a GLOBEX matter."""
    found: str = scenario.sandbox.box_state()["items"][f"Engagements/GLOBEX/{code}"]["id"]
    return found


def rename_by_hand(box: httpx.Client, folder: str) -> None:
    box.put(f"/folders/{folder}/metadata/enterprise/hubWorkspace",
            headers={"content-type": "application/json-patch+json"},
            content=json.dumps([{"op": "replace", "path": "/ProjectName", "value": "renamed by hand"}]).encode(),
            ).raise_for_status()


def unassign_retention(box: httpx.Client, state: dict[str, Any], folder: str) -> None:
    [assignment] = [a for a in state["assignments"] if a["assigned_to"]["id"] == folder]
    box.delete(f"/retention_policy_assignments/{assignment['id']}").raise_for_status()


def collaborate_walled(box: httpx.Client, folder: str) -> None:
    walled = box.get("/groups", params={"filter_term": "Contractors-NA"}).json()["entries"][0]
    box.post("/collaborations", params={"notify": "false"}, json={
        "item": {"type": "folder", "id": folder}, "accessible_by": {"type": "group", "id": walled["id"]},
        "role": "editor"}).raise_for_status()


def _inject(scenario: Scenario) -> None:
    state = scenario.sandbox.box_state()
    ids = {code: folder_id(scenario, code) for code in (FIELD, LABEL, GRANT, WALL)}
    with scenario.sandbox.box() as box:
        rename_by_hand(box, ids[FIELD])
        unassign_retention(box, state, ids[LABEL])
        [collaboration] = [c for c in state["collaborations"] if c["item"]["id"] == ids[GRANT]
                           and c["accessible_by"]["name"] == "Finance-NA"]
        box.delete(f"/collaborations/{collaboration['id']}").raise_for_status()
        collaborate_walled(box, ids[WALL])
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


QUIET, WALLED, EDITED, UNLABELLED, TRASHED = (f"MAT-BOX-{n:04d}" for n in range(11, 16))


class _Crash(Exception):
    """The run dies here (as a worker killed mid-run would, with the lock given back)."""


@pytest.fixture
def reconciled(prefix: str) -> Iterator[tuple[Scenario, Callable[[], Reconciler]]]:
    """Box matters as provisioning made them, and a full run that found nothing (its cursors kept)."""
    made: list[Reconciler] = []
    with running_scenario(hub_settings(prefix)) as scenario:
        assert scenario.connections is not None

        def job() -> Reconciler:
            made.append(reconciler(scenario.runtime, scenario.connections))  # type: ignore[arg-type]
            return made[-1]

        scenario.create_client("GLOBEX", "Globex", "US")
        for code in (QUIET, WALLED, EDITED, UNLABELLED, TRASHED):
            scenario.create_project(**matter(code))
        provisioned(scenario, QUIET, WALLED, EDITED, UNLABELLED, TRASHED)
        try:
            full = job().run(scope=("workspaces",))
            assert (found(scenario, full), full.compared) == ({}, 5)
            yield scenario, job
        finally:
            for made_job in made:
                made_job.close()


def test_a_walled_group_collaborated_by_hand_in_box_is_found_by_the_next_incremental_run_and_removed_at_once(
        reconciled: tuple[Scenario, Callable[[], Reconciler]]) -> None:
    scenario, job = reconciled
    since = datetime.now(UTC)
    with scenario.sandbox.box() as box:
        collaborate_walled(box, folder_id(scenario, WALLED))
    incremental = job().run(scope=("workspaces",), since=since)
    assert incremental.since == since and incremental.compared == 1
    assert found(scenario, incremental) == {WALLED: {"RC304"}}
    assert wait_until(lambda: "Contractors-NA" not in (scenario.box_folder(f"Engagements/GLOBEX/{WALLED}") or {})
                      .get("collaborations", {"Contractors-NA": ""}), timeout=60)


def test_metadata_edited_a_retention_policy_removed_and_a_workspace_trashed_in_box_are_found_incrementally(
        reconciled: tuple[Scenario, Callable[[], Reconciler]]) -> None:
    scenario, job = reconciled
    since = datetime.now(UTC)
    state = scenario.sandbox.box_state()
    with scenario.sandbox.box() as box:
        rename_by_hand(box, folder_id(scenario, EDITED))
        unassign_retention(box, state, folder_id(scenario, UNLABELLED))  # Box reports no event for this one
        box.delete(f"/folders/{folder_id(scenario, TRASHED)}", params={"recursive": "true"}).raise_for_status()
    incremental = job().run(scope=("workspaces",), since=since)
    assert found(scenario, incremental) == {EDITED: {"RC201"}, UNLABELLED: {"RC401"}, TRASHED: {"RC101"}}
    assert incremental.compared == 2  # the trashed one is missing, not compared


def test_a_workspace_not_changed_in_box_since_the_cursor_is_not_read_by_an_incremental_run(
        reconciled: tuple[Scenario, Callable[[], Reconciler]]) -> None:
    scenario, job = reconciled

    def calls() -> dict[str, int]:
        counted: dict[str, int] = httpx.get(f"{scenario.sandbox.box_url}/_sim/requests", timeout=10).json()["calls"]
        return counted

    quiet, edited = folder_id(scenario, QUIET), folder_id(scenario, EDITED)
    before = calls()
    assert before.get(f"GET /2.0/folders/{quiet}/collaborations")  # the full run read it
    since = datetime.now(UTC)
    with scenario.sandbox.box() as box:
        rename_by_hand(box, edited)
    incremental = job().run(scope=("workspaces",), since=since)
    read = [call for call, count in calls().items() if count > before.get(call, 0)]
    assert f"GET /2.0/folders/{edited}/collaborations" in read and incremental.compared == 1
    assert [call for call in read if quiet in call.split("/")] == []


def test_the_box_cursor_is_kept_only_when_a_run_completes_and_a_crashed_run_skips_no_change(
        reconciled: tuple[Scenario, Callable[[], Reconciler]]) -> None:
    scenario, job = reconciled
    store = SqlReconciliationStore(scenario.runtime.db)
    assert store.get_state(BOX_CURSOR) is not None
    with scenario.runtime.db.begin() as connection:  # as before the hub read Box's changes
        connection.execute(state_table.delete().where(state_table.c.name == BOX_CURSOR))
    everything = job().run(scope=("workspaces",), since=datetime.now(UTC))
    assert everything.since is None and everything.compared == 5  # no Box cursor: it read them all
    kept = store.get_state(BOX_CURSOR)
    assert kept is not None
    since = datetime.now(UTC)
    with scenario.sandbox.box() as box:
        collaborate_walled(box, folder_id(scenario, WALLED))

    def die_once_the_changes_are_read(phase: str, done: int, total: int | None) -> None:
        if phase == "erp":
            raise _Crash()

    with pytest.raises(_Crash):
        job().run(scope=("workspaces",), since=since, progress=die_once_the_changes_are_read)
    died = store.unfinished()
    assert died is not None and store.get_state(BOX_CURSOR) == kept
    resumed = job().run(scope=("workspaces",), since=since)
    assert resumed.run_id == died.run_id and resumed.status == "completed"
    assert found(scenario, resumed) == {WALLED: {"RC304"}}  # read again from the kept cursor: nothing skipped
    assert int(store.get_state(BOX_CURSOR)) > int(kept)
