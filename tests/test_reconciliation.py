"""Batch reconciliation against the real servers and the simulators: each class of difference injected alone and
found with its code, a walled grant removed at once (dry run or not), repairs through the actors converging (a
second run finds nothing to repair), unsafe differences routed to their owners, one run at a time, a crashed run
resumed without repeating a repair, and an incremental run comparing only what changed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from actors.exceptions import SqlExceptionInbox
from actors.reconciliation import REPAIR_REQUESTED, Reconciler, ReconciliationBusy, Run, SqlReconciliationStore
from actors.reconciliation.contract import LOCK
from actors.reconciliation.metrics import ReconciliationGauges
from connectors.sharepoint.client import GraphClient
from hub.actor import Emitting
from hub.cli import main
from hub.cli.compose import reconciler
from hub.crosswalk import SqlCrosswalk, crosswalk_identities
from hub.events import CloudEvent
from hub.store import RedisLocks
from hub.workspace import Project, plan_workspace
from tests.conftest import hub_settings, worker_env
from tests.support.rabbit import wait_until
from tests.support.scenario import Scenario, acme_project, running_scenario
from tests.support.signals import erp_events_settled, journeys, settled

pytestmark = pytest.mark.integration

CLEAN, FIELD, LABEL, FOLDER, GRANT, EXTRA, GONE, XW_MISSING, XW_LINK = (
    f"ENG-RC-{n:04d}" for n in range(1, 10))
MATTER = "LAW-RC-0010"
ORPHAN = "Engagements/ACME/ENG-RC-9999"


class Counting:
    """The dispatcher, counting what reconciliation sends (to tell a repeated repair request)."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher, self.sent = dispatcher, []

    def dispatch(self, event: CloudEvent, *, parent: Any | None = None) -> list[Any]:
        self.sent.append((event.get_type(), event.get_id()))
        return list(self.dispatcher.dispatch(event, parent=parent))


_MADE: list[Reconciler] = []


@pytest.fixture(autouse=True)
def _close_reconcilers() -> Iterator[None]:
    yield
    while _MADE:
        _MADE.pop().close()


def job(scenario: Scenario, *, emitter: Any | None = None) -> Reconciler:
    """Reconciliation over the scenario's hub (its actors repair through the scenario's workers); closed after the
    test."""
    assert scenario.connections is not None
    made = reconciler(scenario.runtime, scenario.connections)
    _MADE.append(made)
    if emitter is not None:
        import actors

        made.out = lambda: Emitting(spec=actors.reconciliation.SPEC, registry=scenario.runtime.registry,
                                    emitter=emitter)
    return made


def found(scenario: Scenario, run: Run) -> dict[str, set[str]]:
    """Each subject's class codes as the run recorded them."""
    by: dict[str, set[str]] = {}
    for recorded in SqlReconciliationStore(scenario.runtime.db).findings(run.run_id):
        by.setdefault(recorded.finding.subject, set()).add(recorded.finding.code)
    return by


def provisioned(scenario: Scenario, *codes: str) -> None:
    assert wait_until(lambda: all(scenario.erp_project(c).get("custom_fields", {}).get("workspace_status")
                                  == "provisioned" for c in codes), timeout=90)
    quiet(scenario, *codes)


def quiet(scenario: Scenario, *codes: str) -> None:
    """Wait until the hub has finished with everything it was sent: the ERP's events about ``codes`` (its echoes of
    the hub's own writes included) and every journey started so far (the platform's change notifications)."""
    def idle() -> bool:
        roots = journeys(scenario.runtime)
        return all(erp_events_settled(scenario, code) for code in codes) and all(
            settled(scenario.runtime.flight, root) for root in roots) and journeys(scenario.runtime) == roots

    assert wait_until(idle, timeout=120, interval=0.5)


def plan_of(scenario: Scenario, code: str) -> Any:
    record = scenario.erp_project(code)
    return plan_workspace(Project.from_record({**record, "project_code": code, "updated_at": None,
                                                "conflicted_groups": record.get("conflicted_groups", [])}),
                          scenario.runtime.policy)


@pytest.fixture
def drifted(prefix: str) -> Iterator[tuple[Scenario, GraphClient]]:
    """A hub whose projects each carry one injected difference (and one project none)."""
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        assert scenario.connections is not None
        scenario.create_client("ACME", "ACME Corp", "DE")
        scenario.create_client("GLOBEX", "Globex Holdings", "GB")
        for code in (CLEAN, FIELD, LABEL, FOLDER, GRANT, EXTRA, GONE, XW_MISSING, XW_LINK):
            scenario.create_project(**acme_project(code=code))
        scenario.create_project(**acme_project(code=MATTER, client_id="GLOBEX", engagement_type="legal",
                                               practice="Litigation", region="EU", country="GB"))
        provisioned(scenario, CLEAN, FIELD, LABEL, FOLDER, GRANT, EXTRA, GONE, XW_MISSING, XW_LINK, MATTER)
        scenario.sandbox.flush_erp_webhooks()
        graph = GraphClient.from_settings(scenario.connections.graph)
        try:
            _inject(scenario, graph)
            quiet(scenario)  # the platform's notifications of the injected changes handled
            yield scenario, graph
        finally:
            graph.close()


def _inject(scenario: Scenario, graph: GraphClient) -> None:
    ws = {code: graph.get_by_path(plan_of(scenario, code).path) for code in
          (FIELD, LABEL, FOLDER, GRANT, EXTRA, GONE, XW_LINK, MATTER)}
    graph.ensure_fields(ws[FIELD].id, {"ProjectName": "renamed by hand"})  # type: ignore[union-attr]
    graph.ensure_retention_label(ws[LABEL].id, "EU-Service-6y")  # type: ignore[union-attr]
    plan = plan_of(scenario, FOLDER)
    folder = graph.get_by_path(plan.folders[0])
    assert folder is not None
    graph.delete_item(folder.id)
    granted = sorted(plan_of(scenario, GRANT).grants)[0]
    graph.revoke_grant(ws[GRANT].id, granted)  # type: ignore[union-attr]
    extra = next(g for g in scenario.runtime.policy.security_groups.known_groups or ()
                 if g not in plan_of(scenario, EXTRA).grants and not g.startswith("Knowledge"))
    graph.ensure_grant(ws[EXTRA].id, extra, "read")  # type: ignore[union-attr]
    graph.delete_item(ws[GONE].id)  # type: ignore[union-attr]
    graph.ensure_grant(ws[MATTER].id, "Knowledge-EU", "write")  # type: ignore[union-attr]  # behind the wall
    scenario.sandbox.make_folders(ORPHAN)
    crosswalk = SqlCrosswalk(scenario.runtime.db)
    with scenario.runtime.db.begin() as connection:
        connection.execute(crosswalk_identities.delete().where(
            crosswalk_identities.c.system == "erp", crosswalk_identities.c.system_id == XW_MISSING))
        connection.execute(crosswalk_identities.update().where(
            crosswalk_identities.c.system == "sharepoint",
            crosswalk_identities.c.system_id == ws[XW_LINK].id).values(system_id="01STALEITEMID"))  # type: ignore
    crosswalk.canonical("project", "erp", "ENG-RC-GONE")  # an ERP project that no longer exists


def test_each_difference_is_found_alone_with_its_code_shown_and_measured_and_the_walled_grant_goes_at_once(
        drifted: tuple[Scenario, GraphClient], prefix: str) -> None:
    scenario, graph = drifted
    counting = Counting(scenario.runtime.dispatcher)
    run = job(scenario, emitter=counting).run(scope=("workspaces", "crosswalk"))
    by = found(scenario, run)
    assert by == {FIELD: {"RC201"}, LABEL: {"RC401"}, FOLDER: {"RC103"}, GRANT: {"RC301"}, EXTRA: {"RC302"},
                  GONE: {"RC101"}, MATTER: {"RC304"}, ORPHAN: {"RC102"}, XW_MISSING: {"RC501"},
                  XW_LINK: {"RC503"}, "ENG-RC-GONE": {"RC502"}}, by
    assert run.status == "completed" and run.compared == 9 and not run.repair
    assert run.counts == {code: 1 for codes in by.values() for code in codes}
    # A dry run repairs nothing but the wall: one repair request (the matter's) and the risk team told.
    repairs = [event_id for kind, event_id in counting.sent if kind == REPAIR_REQUESTED]
    assert len(repairs) == 1 and run.repaired == 1 and run.routed == 1
    matter = plan_of(scenario, MATTER)
    assert wait_until(lambda: not any(p.grants_only("Knowledge-EU") for p in graph.grants(
        graph.get_by_path(matter.path).id)), timeout=60)  # type: ignore[union-attr]
    inbox = SqlExceptionInbox(scenario.runtime.db)
    assert wait_until(lambda: [c.kind for c in inbox.cases(owner="risk")] == ["reconciliation.walled_grant"],
                      timeout=30)
    assert graph.fields(graph.get_by_path(plan_of(scenario, FIELD).path).id)["ProjectName"] == \
        "renamed by hand"  # type: ignore[union-attr]  # not repaired: a dry run
    assert ("hub.reconciliation.completed.v1", run.run_id) in counting.sent
    # The report, shown by the command line, and the metrics give each class.
    shown = CliRunner().invoke(main, ["reconcile", "show", run.run_id[:8], "--class", "walled_grant"],
                               env=worker_env(prefix))
    assert shown.exit_code == 0, shown.output
    assert "RC304" in shown.output and "Knowledge-EU" in shown.output and MATTER in shown.output
    gauges = {(m.name, tuple(sorted(sample.labels.items()))): sample.value
              for m in ReconciliationGauges(SqlReconciliationStore(scenario.runtime.db)).collect()
              for sample in m.samples}
    assert gauges[("hub_reconciliation_differences", (("class", "walled_grant"), ("code", "RC304")))] == 1
    assert gauges[("hub_reconciliation_differences", (("class", "workspace_missing"), ("code", "RC101")))] == 1
    assert gauges[("hub_reconciliation_differences", (("class", "readiness_stale"), ("code", "RC601")))] == 0
    assert ("hub_reconciliation_last_run_timestamp_seconds", ()) in gauges


@pytest.fixture
def bare(prefix: str) -> Iterator[Scenario]:
    """A hub with nothing provisioned yet (a run still has its phases to go through)."""
    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        yield scenario


def test_one_run_at_a_time_and_the_cli_says_so(bare: Scenario, prefix: str) -> None:
    scenario = bare
    locks = RedisLocks(scenario.runtime.redis, prefix=scenario.runtime.queue_prefix)
    started, release = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def hold(phase: str, done: int, total: int | None) -> None:
        started.set()
        release.wait(30)

    worker = threading.Thread(target=lambda: outcome.append(job(scenario).run(scope=("workspaces",),
                                                                                progress=hold)))
    worker.start()
    try:
        assert started.wait(30)
        with pytest.raises(ReconciliationBusy, match="another reconciliation run is in progress"):
            job(scenario).run()
        env = worker_env(prefix, HUB_ERP_URL=scenario.sandbox.erp_url, HUB_GRAPH_URL=scenario.sandbox.graph_url,
                         HUB_GRAPH_DRIVE_ID=scenario.sandbox.drive_id)
        refused = CliRunner().invoke(main, ["reconcile"], env=env)
        assert refused.exit_code != 0 and "another reconciliation run is in progress" in refused.output
    finally:
        release.set()
        worker.join(60)
    assert outcome and outcome[0].status == "completed" and locks.ttl_ms(LOCK) == 0


class _Crash(Exception):
    """The run dies here (as a worker killed mid-run would, with the lock given back)."""


def test_a_repair_run_that_died_is_resumed_without_requesting_a_repair_twice_and_its_repairs_converge(
        drifted: tuple[Scenario, GraphClient]) -> None:
    """One hub for both (each drifted hub provisions ten projects): the run that died and was resumed is the
    repair run whose repairs go through the actors, and what is unsafe to repair goes to its owners."""
    scenario, _ = drifted
    counting = Counting(scenario.runtime.dispatcher)
    calls = {"platform": 0}

    def die_after_the_first_folder(phase: str, done: int, total: int | None) -> None:
        if phase == "platform":
            calls["platform"] += 1
            if calls["platform"] == 1:
                raise _Crash()

    first = job(scenario, emitter=counting)
    first.flush_every = 1  # each top-level folder's differences acted on before the next is read
    with pytest.raises(_Crash):
        first.run(scope=("workspaces", "crosswalk"), repair=True, progress=die_after_the_first_folder)
    store = SqlReconciliationStore(scenario.runtime.db)
    died = store.unfinished()
    assert died is not None and died.checkpoint["phase"] == "platform" and "stopped: _Crash" in (died.detail or "")
    before = [event_id for kind, event_id in counting.sent if kind == REPAIR_REQUESTED]
    assert before  # the first top-level folder's repairs went out before the crash
    resumed = job(scenario, emitter=counting).run(scope=("workspaces",))
    assert resumed.run_id == died.run_id and resumed.status == "completed" and resumed.repair
    sent = [event_id for kind, event_id in counting.sent if kind == REPAIR_REQUESTED]
    assert len(sent) == len(set(sent)), "a repair was requested twice"
    assert set(before) <= set(sent) and len(sent) > len(before)
    assert found(scenario, resumed)[ORPHAN] == {"RC102"}  # the second attempt compared the rest
    assert resumed.routed == 3  # the wall (risk), the orphan and the stale id (routed), over both attempts

    unsafe = {ORPHAN: {"RC102"}, "ENG-RC-GONE": {"RC502"}}

    def only_unsafe_left() -> bool:
        return found(scenario, job(scenario).run(scope=("workspaces", "crosswalk"))) == unsafe

    assert wait_until(only_unsafe_left, timeout=120, interval=2.0)
    inbox = SqlExceptionInbox(scenario.runtime.db)
    kinds = {(c.owner, c.kind, c.subject) for c in inbox.cases()}
    assert ("records_management", "reconciliation.workspace_orphan", ORPHAN) in kinds
    assert ("platform_team", "reconciliation.crosswalk_stale", "ENG-RC-GONE") in kinds


def test_an_incremental_run_compares_only_what_changed_since(drifted: tuple[Scenario, GraphClient]) -> None:
    scenario, graph = drifted
    full = job(scenario).run(scope=("workspaces",))
    assert full.compared == 9
    matter = graph.get_by_path(plan_of(scenario, MATTER).path)
    assert matter is not None
    assert wait_until(lambda: not any(p.grants_only("Knowledge-EU") for p in graph.grants(matter.id)), timeout=60)
    quiet(scenario, MATTER)  # the wall's repair: a change on the platform after the full run's cursor
    since = datetime.now(UTC)
    scenario.sandbox.hold_erp_webhooks()  # the ERP's change stays unannounced: only reconciliation sees it
    try:
        scenario.update_project(CLEAN, name="Renamed in the ERP")
        workspace = graph.get_by_path(plan_of(scenario, LABEL).path)
        assert workspace is not None
        graph.ensure_fields(workspace.id, {"Practice": "edited on the platform"})  # and the platform's
        quiet(scenario)
        incremental = job(scenario).run(scope=("workspaces",), since=since)
    finally:
        scenario.sandbox.release_erp_webhooks()
    assert incremental.since == since and incremental.compared == 3  # CLEAN, LABEL and the repaired MATTER
    assert found(scenario, incremental) == {CLEAN: {"RC201"}, LABEL: {"RC401", "RC201"}}


def test_stale_readiness_facts_and_a_missing_subscription_are_found_and_repaired(prefix: str) -> None:
    from tests.test_readiness_rebuild import _forget_the_gates_state

    with running_scenario(hub_settings(prefix), documents=True) as scenario:
        assert scenario.connections is not None
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = "ENG-RC-0100"
        scenario.create_project(**acme_project(code=code, engagement_type="engineering", practice="Infrastructure",
                                               region="ME", country="SA", billing_model="milestone"))
        provisioned(scenario, code)
        sandbox = scenario.sandbox
        folder = f"Engagements/ACME/{code}/Deliverables"
        sandbox.put_document(folder, "done.pdf", label="ME-Deliverable-10y", fields={
            "DocumentClass": "deliverable", "DocumentState": "approved", "ProjectCode": code})
        sandbox.draft_invoice(code, number="INV-RC-1", amount_minor=100_000, currency="EUR", period="2027-03")
        def reasons() -> list[str]:
            return sorted(r["code"] for r in scenario.readiness("INV-RC-1").json()["hold_reasons"])

        assert wait_until(lambda: reasons() not in ([], ["INVOICE_NOT_DRAFTED"]), timeout=30)
        before = reasons()
        assert _forget_the_gates_state(scenario.runtime)
        assert reasons() == ["INVOICE_NOT_DRAFTED"]
        graph = GraphClient.from_settings(scenario.connections.graph)
        try:
            for subscription in graph.subscriptions():
                graph.delete_subscription(subscription.id)
            checked = ("readiness", "subscriptions")
            dry = job(scenario).run(scope=checked)
            resource = f"drives/{graph.drive_id}/root"
            assert found(scenario, dry) == {code: {"RC601"}, resource: {"RC701"}}
            assert [r.finding.authority for r in SqlReconciliationStore(scenario.runtime.db).findings(dry.run_id)
                    if r.finding.code == "RC601"] == ["erp+sharepoint"]  # the documents' platform, named
            job(scenario).run(scope=checked, repair=True)
            left: list[Any] = []

            def repaired() -> bool:
                run = job(scenario).run(scope=checked)
                left[:] = [found(scenario, run), [(r.finding.expected, r.finding.actual) for r in
                           SqlReconciliationStore(scenario.runtime.db).findings(run.run_id)]]
                return left[0] == {}

            assert wait_until(repaired, timeout=60, interval=1.0), left
            assert [s.notification_url for s in graph.subscriptions()] == [scenario.graph_webhook_url]
            assert reasons() == before  # its facts are back
            later = job(scenario)  # a day and a half on, the two-day subscription is about to expire
            later.clock = lambda: datetime.now(UTC) + timedelta(hours=36)
            expiring = later.run(scope=("subscriptions",))
            assert found(scenario, expiring) == {resource: {"RC702"}}
        finally:
            graph.close()


def test_canonical_records_behind_the_erp_or_missing_are_found_and_merged_again(prefix: str) -> None:
    from actors.master_data.store import canonical_records

    with running_scenario(hub_settings(prefix)) as scenario:
        scenario.create_client("ACME", "ACME Corp", "DE")
        code = "ENG-RC-0200"
        scenario.create_project(**acme_project(code=code))
        provisioned(scenario, code)
        acme = SqlCrosswalk(scenario.runtime.db).resolve("client", "erp", "ACME")
        assert acme is not None
        scenario.sandbox.hold_erp_webhooks()
        scenario.update_project(code, name="Renamed while its event was lost")
        scenario.sandbox.export_webhooks("erp")  # the ERP's event never reaches the hub
        scenario.sandbox.release_erp_webhooks()
        with scenario.runtime.db.begin() as connection:  # and the client's canonical record is lost
            connection.execute(canonical_records.delete().where(canonical_records.c.canonical_id == acme))
        dry = job(scenario).run(scope=("canonical",))
        assert found(scenario, dry) == {"client:ACME": {"RC504"}, code: {"RC505"}}
        [name] = [r.finding for r in SqlReconciliationStore(scenario.runtime.db).findings(dry.run_id, code="RC505")]
        assert (name.field, name.expected, name.authority) == ("name", "Renamed while its event was lost", "erp")
        job(scenario).run(scope=("canonical",), repair=True)
        assert wait_until(lambda: found(scenario, job(scenario).run(scope=("canonical",))) == {}, timeout=60,
                          interval=1.0)
