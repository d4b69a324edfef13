"""Actors as declared components: each one's logic runs on fakes of its dependencies (the crosswalk on a
SQLite file, as the embedded mode keeps it; Microsoft Graph, the ERP and DocuSign as :mod:`tests.support.fakes`),
without a broker, Redis or HTTP; the routing table is derived from the declarations.

Past 400 lines on purpose: every actor's cases on the same fakes, side by side, so a change to the actor helper
shows in one file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

import actors
from actors.document_intake import DocumentIntake, MemoryIntakeStore
from actors.document_workflow import DocumentPolicy, DocumentWorkflow
from actors.exceptions import ExceptionRouter
from actors.fanout import FanOut
from actors.invoice_readiness import InvoiceReadiness, MemoryReadinessStore, ReadinessGate, ReadinessRules
from actors.invoice_readiness.facts import ProjectMeta
from actors.master_data import DEFAULT_MAPPING, MasterData, MemoryMasterDataStore, load_master_data_mapping
from actors.provisioning import MemoryProvisioningStore, Provisioning
from actors.provisioning.actor import execute
from connectors.erp.client import ErpClient, Money
from connectors.erp.client import Project as ErpProject
from connectors.platform import Platforms
from connectors.settings import ErpSettings, GraphSettings
from connectors.sharepoint.client import GraphClient
from connectors.sharepoint.platform import GraphPlatform
from hub.actor import ALL_TYPES, ActorSpec, DeadLetter, Emitting, RecordingEmitter, unit_context
from hub.crosswalk import SqlCrosswalk
from hub.db import connect_database, upgrade
from hub.dispatch import RoutingTable
from hub.errors import BrokerUnavailable, EntityLocked, HardStop, NotYet
from hub.events import make_event
from hub.registry import SchemaRegistry
from hub.store import MemoryLocks
from hub.topics import Delivery, MemoryTopicBus
from hub.workspace import GrantAccess, Project, plan_workspace
from tests.support.fakes import FakeDocuSign, FakeErp, FakeGraph

REGISTRY = SchemaRegistry.load()
POLICY = actors.load_policy()
T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def context(spec: ActorSpec, event_type: str, data: dict[str, Any], emitter: RecordingEmitter, *,
            source: str = "erp-sim://acme-psa/prod", **attrs: Any) -> Any:
    event = make_event(REGISTRY, type=event_type, source=source, data=data, **attrs)
    return unit_context(spec, REGISTRY, event, REGISTRY.decode(event_type, event.get_data()), emitter=emitter,
                        clock=lambda: T)


def erp(projects: dict[str, dict[str, Any]]) -> ErpClient:
    """An ERP client on a transport answering GET /projects/{code} from ``projects``."""
    def answer(request: httpx.Request) -> httpx.Response:
        code = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET" and code in projects:
            return httpx.Response(200, json=projects[code])
        return httpx.Response(404, json={"error": "not_found"})

    settings = ErpSettings(url="http://erp.test/api/v1")
    return ErpClient.from_settings(settings, client=httpx.Client(transport=httpx.MockTransport(answer)))


@pytest.fixture
def crosswalk() -> Iterator[SqlCrosswalk]:
    """The crosswalk on the embedded mode's SQLite database."""
    db = connect_database("", prefix="t", embedded=True)
    upgrade(db, [])
    yield SqlCrosswalk(db)
    db.close()


def project_record(code: str, **fields: Any) -> dict[str, Any]:
    return {"code": code, "client_id": "ACME", "name": "Depot design", "engagement_type": "engineering",
            "practice": "Infrastructure", "region": "ME", "country": "SA", "partner": "p@example.com",
            "billing_model": "milestone", "status": "active", "version": 1, "updated_at": T.isoformat(), **fields}


def test_the_routing_table_is_derived_from_the_declarations() -> None:
    table = RoutingTable.of(actors.SPECS)
    assert table.subscribers("erp.project.created.v1") == ("provisioning", "master_data", "fanout")
    assert table.subscribers("erp.invoice.drafted.v1") == ("invoice_readiness", "fanout")
    assert table.subscribers("hub.project.changed.v1") == ("fanout",)
    assert table.as_dict()[ALL_TYPES] == ("fanout",)
    assert "exceptions" not in table.actors()  # told of dead letters, triggered by no event type


def test_the_policy_gives_each_actor_its_workflows_attempts_mode_and_owner() -> None:
    specs = actors.with_workflows(POLICY)
    provisioning = POLICY.workflow("provisioning")
    assert (specs["provisioning"].max_attempts, specs["provisioning"].owner) == (provisioning.max_attempts,
                                                                                 provisioning.owner)
    assert specs["provisioning"].max_retries == provisioning.max_attempts - 1
    assert specs["fanout"].max_retries is None and specs["exceptions"].dead_letters_to is None
    hard = specs["provisioning"].with_workflow(mode="hard_stop", max_attempts=1, owner="finance")
    assert hard.max_retries == 0 and hard.source == "hub://provisioning"


def test_the_fan_out_publishes_the_event_it_is_given_with_a_stable_message_id() -> None:
    bus = MemoryTopicBus()
    received: list[Delivery] = []
    bus.subscribe("erp.#", received.append)
    emitter = RecordingEmitter()
    ctx = context(actors.fanout.SPEC, "erp.invoice.drafted.v1", {
        "invoice_number": "INV-1", "project_code": "P1", "amount": {"amount_minor": 100, "currency": "EUR"},
        "period_start": date(2027, 3, 1), "period_end": date(2027, 3, 31), "milestone": None, "drafted_at": T},
        emitter, id="evt-1")
    FanOut(bus).handle(ctx)
    FanOut(bus).handle(ctx)
    assert [d.event().get_id() for d in received] == ["evt-1", "evt-1"]
    assert received[0].message_id == received[1].message_id  # a redelivery is recognisable downstream
    assert emitter.events == []


def test_a_dead_letter_becomes_an_exception_for_the_owner_of_the_actor_that_gave_up() -> None:
    emitter = RecordingEmitter()
    out = Emitting(spec=actors.exceptions.SPEC, registry=REGISTRY, emitter=emitter, clock=lambda: T)
    message = {"message_id": "m-1", "actor_name": "invoice_readiness",
               "options": {"hub_event": {"id": "evt-9", "type": "erp.invoice.drafted.v1", "subject": "INV-9"}}}
    ExceptionRouter({"invoice_readiness": "finance"}).handle_dead_letter(
        DeadLetter(message=message, why="permanent error", error="InvalidEvent: bad"), out)
    [raised] = emitter.of_type("hub.exception.raised.v1")
    data = REGISTRY.decode("hub.exception.raised.v1", raised.get_data())
    assert (data["owner"], data["kind"], data["subject"], data["event_id"]) == (
        "finance", "invoice_readiness.dead_letter", "INV-9", "evt-9")
    assert raised.get_source() == "hub://exceptions" and data["raised_at"] == T


def test_the_readiness_actor_folds_an_invoice_and_emits_its_verdict_on_fakes() -> None:
    store, locks, emitter = MemoryReadinessStore(), MemoryLocks(), RecordingEmitter()
    gate = ReadinessGate(policy=POLICY, rules=POLICY.section("invoice_readiness", ReadinessRules),
                         erp=erp({"ENG-1": project_record("ENG-1")}), store=store, locks=locks)
    actor = InvoiceReadiness(gate=gate)
    drafted = {"invoice_number": "INV-1", "project_code": "ENG-1", "amount": {"amount_minor": 9_000, "currency": "EUR"},
               "period_start": date(2027, 3, 1), "period_end": date(2027, 3, 31), "milestone": "M1", "drafted_at": T}
    actor.handle(context(actor.spec, "erp.invoice.drafted.v1", drafted, emitter, id="invoice:INV-1"))
    [verdict] = emitter.of_type("hub.invoice.readiness_changed.v1")
    data = REGISTRY.decode(verdict.get_type(), verdict.get_data())
    assert data["status"] == "held" and [r["code"] for r in data["hold_reasons"]] == ["DELIVERABLE_NOT_APPROVED"]
    assert store.project_of("INV-1") == "ENG-1" and locks.held == {}  # the lease was given back
    actor.handle(context(actor.spec, "erp.invoice.drafted.v1", drafted, emitter, id="invoice:INV-1"))
    assert len(emitter.events) == 1  # the same fact again changes no verdict


def test_a_held_project_lock_is_a_wait_for_the_lock_not_a_failure() -> None:
    locks = MemoryLocks()
    gate = ReadinessGate(policy=POLICY, rules=POLICY.section("invoice_readiness", ReadinessRules),
                         erp=erp({}), store=MemoryReadinessStore(), locks=locks)
    locks.acquire("readiness:ENG-1", ttl_ms=1_000)
    drafted = {"invoice_number": "INV-1", "project_code": "ENG-1", "amount": {"amount_minor": 1, "currency": "EUR"},
               "period_start": date(2027, 3, 1), "period_end": date(2027, 3, 31), "milestone": None, "drafted_at": T}
    with pytest.raises(EntityLocked) as raised:
        InvoiceReadiness(gate=gate).handle(context(actors.invoice_readiness.SPEC, "erp.invoice.drafted.v1",
                                                   drafted, RecordingEmitter()))
    assert raised.value.lock == "readiness:ENG-1" and raised.value.ttl_ms == actors.invoice_readiness.SPEC.lock_ms
    assert raised.value.remaining_ms > 0


def test_master_data_mints_a_canonical_client_and_announces_it_on_fakes(crosswalk: SqlCrosswalk) -> None:
    store, emitter = MemoryMasterDataStore(), RecordingEmitter()
    graph = GraphClient.from_settings(GraphSettings(), client=httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(500))))
    actor = MasterData(rules=load_master_data_mapping(DEFAULT_MAPPING), platforms=Platforms([GraphPlatform(graph)]),
                       crosswalk=crosswalk, locks=MemoryLocks(), store=store)
    client = {"client_id": "ACME", "name": "ACME Corp", "country": "DE", "status": "active", "industry": None,
              "parent_client_id": None, "billing_currency": None, "updated_at": T}
    actor.handle(context(actor.spec, "erp.client.upserted.v1", client, emitter, id="c1", sequence="0" * 19 + "1"))
    [changed] = emitter.of_type("hub.client.changed.v1")
    data = REGISTRY.decode(changed.get_type(), changed.get_data())
    assert data["name"] == "ACME Corp" and store.load(data["canonical_id"]) is not None
    assert changed.get_source() == "hub://master-data"
    actor.handle(context(actor.spec, "erp.client.upserted.v1", client, emitter, id="c1", sequence="0" * 19 + "1"))
    assert len(emitter.events) == 1  # nothing changed: nothing announced


class FailingOnce(RecordingEmitter):
    """An emitter whose first publish is not confirmed: the worker dies or the broker goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def dispatch(self, event: Any, *, parent: Any | None = None) -> list[Any]:
        if not self.failed:
            self.failed = True
            raise BrokerUnavailable("publish not confirmed")
        return super().dispatch(event, parent=parent)


def test_master_data_announces_a_saved_change_on_the_re_run_when_the_first_publish_was_lost(
    crosswalk: SqlCrosswalk,
) -> None:
    store, emitter = MemoryMasterDataStore(), FailingOnce()
    graph = GraphClient.from_settings(GraphSettings(), client=httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(500))))
    actor = MasterData(rules=load_master_data_mapping(DEFAULT_MAPPING), platforms=Platforms([GraphPlatform(graph)]),
                       crosswalk=crosswalk, locks=MemoryLocks(), store=store)
    client = {"client_id": "ACME", "name": "ACME Corp", "country": "DE", "status": "active", "industry": None,
              "parent_client_id": None, "billing_currency": None, "updated_at": T}
    with pytest.raises(BrokerUnavailable):
        actor.handle(context(actor.spec, "erp.client.upserted.v1", client, emitter, id="c1", sequence="0" * 19 + "1"))
    assert len(store.states) == 1 and emitter.events == []  # the change is saved, its announcement pending
    assert len(store.outbox.pending()) == 1
    actor.handle(context(actor.spec, "erp.client.upserted.v1", client, emitter, id="c1", sequence="0" * 19 + "1"))
    [changed] = emitter.of_type("hub.client.changed.v1")  # the re-run changes nothing, and announces it
    assert REGISTRY.decode(changed.get_type(), changed.get_data())["name"] == "ACME Corp"
    assert store.outbox.pending() == []


def test_readiness_announces_the_verdict_a_project_update_changed_on_the_re_run_when_its_publish_was_lost() -> None:
    projects = {"ENG-1": project_record("ENG-1")}
    store, emitter = MemoryReadinessStore(), FailingOnce()
    gate = ReadinessGate(policy=POLICY, rules=POLICY.section("invoice_readiness", ReadinessRules),
                         erp=erp(projects), store=store, locks=MemoryLocks())
    actor = InvoiceReadiness(gate=gate)
    drafted = {"invoice_number": "INV-1", "project_code": "ENG-1", "amount": {"amount_minor": 9_000, "currency": "EUR"},
               "period_start": date(2027, 3, 1), "period_end": date(2027, 3, 31), "milestone": "M1", "drafted_at": T}
    actor.handle(context(actor.spec, "erp.invoice.drafted.v1", drafted, RecordingEmitter(), id="invoice:INV-1"))
    # The engagement becomes a consulting one in the EU: another checklist, and the update says so.
    projects["ENG-1"] = project_record("ENG-1", engagement_type="consulting", region="EU", country="DE")
    updated = {key: projects["ENG-1"][key] for key in ("client_id", "name", "engagement_type", "practice", "region",
                                                        "country", "partner", "billing_model", "status")}
    updated.update(project_code="ENG-1", value=None, start_date=None, end_date=None, conflicted_groups=[],
                   updated_at=T)
    with pytest.raises(BrokerUnavailable):
        actor.handle(context(actor.spec, "erp.project.updated.v1", updated, emitter, id="project:ENG-1:2"))
    # The new meta is saved; the verdict it changed is not told yet.
    assert emitter.events == [] and store.meta("ENG-1") == ProjectMeta("consulting", "EU", "DE", "ACME")
    # The redelivery finds the meta it states already held: nothing to change, and the verdict is told.
    actor.handle(context(actor.spec, "erp.project.updated.v1", updated, emitter, id="project:ENG-1:2"))
    [changed] = emitter.of_type("hub.invoice.readiness_changed.v1")
    data = REGISTRY.decode(changed.get_type(), changed.get_data())
    assert data["status"] == "held" and [r["code"] for r in data["hold_reasons"]] == ["SOW_NOT_SIGNED"]
    assert store.outbox.pending() == []


def test_granting_a_walled_group_is_a_hard_stop_whatever_the_plan_says() -> None:
    project = Project.from_record({
        "project_code": "MAT-1", "client_id": "GLOBEX", "name": "Matter", "engagement_type": "legal",
        "practice": "Litigation", "region": "EU", "country": "DE", "partner": "p@example.com", "status": "active",
        "conflicted_groups": ["Litigation-EU"], "updated_at": T})
    plan = plan_workspace(project, POLICY)
    graph = GraphClient.from_settings(GraphSettings(), client=httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(500, json={}))))
    with pytest.raises(HardStop, match="ethical wall"):
        execute(GraphPlatform(graph), plan, GrantAccess(group="Litigation-EU", role="write"), {plan.path: "01WS"})
    assert json.dumps(sorted(plan.grants)).count("Litigation-EU") == 0


# -- Provisioning: the ERP's project becomes its workspace (fakes of the ERP and Microsoft Graph) ----------

SPECS = actors.with_workflows(POLICY)
WS = "Engagements/ACME/ENG-1"


def erp_project(code: str, **fields: Any) -> ErpProject:
    """A project as the ERP holds it."""
    return ErpProject.model_validate(project_record(code, **fields))


def project_event(project: ErpProject) -> dict[str, Any]:
    """The ``erp.project.created.v1`` / ``updated.v1`` data of a project."""
    return {"project_code": project.code, "client_id": project.client_id, "name": project.name,
            "engagement_type": project.engagement_type, "practice": project.practice, "region": project.region,
            "country": project.country, "partner": project.partner, "billing_model": project.billing_model,
            "status": project.status, "value": None, "start_date": None, "end_date": None,
            "conflicted_groups": list(project.conflicted_groups), "updated_at": project.updated_at}


def provisioning(erp: FakeErp, graph: FakeGraph, crosswalk: SqlCrosswalk, *, locks: MemoryLocks | None = None,
                 store: MemoryProvisioningStore | None = None) -> Provisioning:
    """The provisioning actor as the policy declares it, on fakes."""
    return Provisioning(spec=SPECS["provisioning"], policy=POLICY, erp=erp, platforms=Platforms([GraphPlatform(graph)]),
                        crosswalk=crosswalk,
                        locks=locks or MemoryLocks(), store=store or MemoryProvisioningStore())


def test_provisioning_builds_the_workspace_the_policy_asks_for_and_tells_the_erp_where_it_is(
    crosswalk: SqlCrosswalk,
) -> None:
    project = erp_project("ENG-1", engagement_type="consulting", practice="Strategy", region="EU", country="DE")
    erp, graph, locks, emitter = FakeErp(project), FakeGraph(), MemoryLocks(), RecordingEmitter()
    actor = provisioning(erp, graph, crosswalk, locks=locks)
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(project), emitter,
                         id="project:ENG-1:1", time=T - timedelta(seconds=3)))
    assert graph.folders() == ["Engagements", "Engagements/ACME", WS, *(f"{WS}/{f}" for f in (
        "Contracts", "SOWs", "Deliverables", "Correspondence", "Invoices"))]
    assert graph.held_grants(WS) == {"Strategy-EU": "write", "Finance-EU": "read"}
    assert [graph.held_label(p) for p in (WS, f"{WS}/Contracts", f"{WS}/Deliverables", f"{WS}/Invoices")] == [
        "DE-Engagement-10y", "DE-Contract-10y", "EU-Deliverable-7y", None]  # the country overrides the region
    fields = graph.held_fields(WS)
    assert (fields["ProjectCode"], fields["SearchKey"], fields["SourceSystem"]) == ("ENG-1", "ACME/ENG-1", "ERP")
    workspace = graph.get_by_path(WS)
    assert workspace is not None and workspace.web_url
    assert erp.writes == [
        ("update_project", "ENG-1", {"custom_fields": {"workspace_status": "provisioning"}}),
        ("update_project", "ENG-1", {"custom_fields": {"workspace_url": workspace.web_url,
                                                       "workspace_status": "provisioned"}})]
    [provisioned] = emitter.events
    data = REGISTRY.decode("dms.workspace.provisioned.v1", provisioned.get_data())
    assert (data["project_code"], data["workspace_id"], data["url"], data["retention_label"]) == (
        "ENG-1", workspace.id, workspace.web_url, "DE-Engagement-10y")
    assert data["groups"] == ["Finance-EU", "Strategy-EU"] and data["provisioning_ms"] == 3_000
    canonical = crosswalk.resolve("project", "erp", "ENG-1")
    assert canonical is not None and crosswalk.resolve("project", "sharepoint", workspace.id) == canonical
    assert provisioned.get_extension("partitionkey") == f"project:{canonical}"
    assert provisioned.get_source() == "hub://provisioning"
    assert locks.held == {}


def test_a_redelivered_or_idle_project_event_finds_the_workspace_done_and_asks_for_nothing(
    crosswalk: SqlCrosswalk,
) -> None:
    project = erp_project("ENG-1", engagement_type="consulting", practice="Strategy", region="EU", country="DE")
    erp, graph, emitter = FakeErp(project), FakeGraph(), RecordingEmitter()
    actor = provisioning(erp, graph, crosswalk)
    created = context(actor.spec, "erp.project.created.v1", project_event(project), emitter, id="project:ENG-1:1")
    actor.handle(created)
    graph.writes.clear()
    erp.writes.clear()
    actor.handle(created)  # the same message again
    actor.handle(context(actor.spec, "erp.project.updated.v1", project_event(erp.get_project("ENG-1")), emitter,
                         id="project:ENG-1:2"))  # an update that changes nothing the workspace shows
    assert graph.writes == [] and erp.writes == []
    assert len(emitter.events) == 1  # the workspace was announced once


def test_a_conflict_added_to_a_matter_revokes_the_walled_group_first_and_never_grants_it(
    crosswalk: SqlCrosswalk,
) -> None:
    matter = erp_project("MAT-1", client_id="GLOBEX", engagement_type="legal", practice="Litigation", region="EU",
                         country="DE", billing_model="time_and_materials")
    erp, graph, emitter = FakeErp(matter), FakeGraph(), RecordingEmitter()
    actor = provisioning(erp, graph, crosswalk)
    workspace = "Engagements/GLOBEX/MAT-1"
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(matter), emitter, id="project:MAT-1:1"))
    # The policy walls precedents (Knowledge-*) off a litigation file: the legal template's Knowledge-EU is left out.
    assert graph.held_grants(workspace) == {"Litigation-EU": "write", "Finance-EU": "read", "Records-EU": "read"}
    graph.grant(workspace, "Knowledge-EU", "read")  # granted by hand on the platform
    erp.projects["MAT-1"] = erp_project("MAT-1", client_id="GLOBEX", engagement_type="legal", practice="Litigation",
                                        region="EU", country="DE", billing_model="time_and_materials",
                                        conflicted_groups=["Finance-EU"], version=2)
    graph.writes.clear()
    actor.handle(context(actor.spec, "erp.project.updated.v1", project_event(erp.get_project("MAT-1")), emitter,
                         id="project:MAT-1:2"))
    assert graph.writes[:2] == [("revoke_grant", workspace, "Finance-EU"), ("revoke_grant", workspace, "Knowledge-EU")]
    assert not [w for w in graph.writes if w[0] == "ensure_grant"]
    assert graph.held_grants(workspace) == {"Litigation-EU": "write", "Records-EU": "read"}
    data = REGISTRY.decode("dms.workspace.provisioned.v1", emitter.events[-1].get_data())
    assert data["groups"] == ["Litigation-EU", "Records-EU"]  # the plan changed: announced again


def test_groups_the_directory_does_not_know_are_left_out_and_raised_to_the_platform_team(
    crosswalk: SqlCrosswalk,
) -> None:
    project = erp_project("ENG-9", engagement_type="consulting", practice="Maritime", region="EU", country="NL")
    erp, graph, emitter = FakeErp(project), FakeGraph(), RecordingEmitter()
    actor = provisioning(erp, graph, crosswalk)
    event = context(actor.spec, "erp.project.created.v1", project_event(project), emitter, id="project:ENG-9:1")
    actor.handle(event)
    [raised] = emitter.of_type("hub.exception.raised.v1")
    data = REGISTRY.decode(raised.get_type(), raised.get_data())
    assert (data["owner"], data["kind"], data["subject"], data["project"]["code"]) == (
        "platform_team", "provisioning.unknown_groups", "ENG-9", "ENG-9")
    assert "Maritime-EU" in data["detail"] and data["event_id"] == "project:ENG-9:1"
    assert graph.held_grants("Engagements/ACME/ENG-9") == {"Finance-EU": "read"}  # provisioned without it
    assert len(emitter.of_type("dms.workspace.provisioned.v1")) == 1
    actor.handle(event)
    assert [e.get_id() for e in emitter.of_type("hub.exception.raised.v1")] == [raised.get_id()] * 2  # one case


def test_provisioning_announces_the_workspace_on_the_re_run_when_the_first_publish_was_lost(
    crosswalk: SqlCrosswalk,
) -> None:
    project = erp_project("ENG-1", engagement_type="consulting", practice="Strategy", region="EU", country="DE")
    erp, graph, store, emitter = FakeErp(project), FakeGraph(), MemoryProvisioningStore(), FailingOnce()
    actor = provisioning(erp, graph, crosswalk, store=store)
    created = context(actor.spec, "erp.project.created.v1", project_event(project), emitter, id="project:ENG-1:1")
    with pytest.raises(BrokerUnavailable):
        actor.handle(created)
    assert store.announced("ENG-1") is None and graph.held_grants(WS)  # built, not announced
    graph.writes.clear()
    actor.handle(created)
    assert graph.writes == [] and len(emitter.of_type("dms.workspace.provisioned.v1")) == 1
    assert store.announced("ENG-1") is not None


def test_a_project_another_worker_is_provisioning_waits_for_its_lock_and_touches_nothing(
    crosswalk: SqlCrosswalk,
) -> None:
    project = erp_project("ENG-1")
    erp, graph, locks = FakeErp(project), FakeGraph(), MemoryLocks()
    locks.acquire("project:ENG-1", ttl_ms=60_000)
    actor = provisioning(erp, graph, crosswalk, locks=locks)
    with pytest.raises(EntityLocked) as raised:
        actor.handle(context(actor.spec, "erp.project.created.v1", project_event(project), RecordingEmitter()))
    assert raised.value.lock == "project:ENG-1" and erp.writes == [] and graph.writes == [] and graph.folders() == []


# -- Document workflow: a signed or approved document updates the ERP and is filed (fakes of the ERP, Graph and
# DocuSign) ------------------------------------------------------------------------------------------------

MATTER = "Engagements/GLOBEX/MAT-1"
SIGNED = T - timedelta(hours=1)


def document_workflow(erp: FakeErp, graph: FakeGraph, docusign: FakeDocuSign,
                      locks: MemoryLocks | None = None) -> DocumentWorkflow:
    """The document-workflow actor with the policy's document rules, on fakes."""
    return DocumentWorkflow(spec=SPECS["document_workflow"], policy=POLICY,
                            rules=POLICY.section(actors.document_workflow.SECTION, DocumentPolicy),
                            erp=erp, platforms=Platforms([GraphPlatform(graph)]), docusign=docusign,
                            locks=locks or MemoryLocks())


def planned_matter() -> ErpProject:
    """A litigation matter the ERP holds as planned, for a client whose matters keep their own retention."""
    return erp_project("MAT-1", client_id="GLOBEX", name="Globex v. Initech", engagement_type="legal",
                       practice="Litigation", region="NA", country="US", billing_model="time_and_materials",
                       status="planned")


def envelope_completed(envelope_id: str, project_code: str, document_class: str, **fields: Any) -> dict[str, Any]:
    """The ``esign.envelope.completed.v1`` data of an envelope."""
    return {"envelope_id": envelope_id, "project_code": project_code, "document_class": document_class,
            "document_name": "Engagement letter", "completed_at": SIGNED, "value": None, "start_date": None,
            "end_date": None, "milestones": [],
            "signers": [{"name": "Ann Client", "email": "ann@globex.example", "role": None, "signed_at": SIGNED}],
            **fields}


def document_changed(document_id: str, project_code: str, document_class: str, state: str, *,
                     at: datetime = SIGNED, **fields: Any) -> dict[str, Any]:
    """The ``dms.document.state_changed.v1`` data of a document on the platform."""
    return {"document_id": document_id, "drive_id": "workspaces", "item_id": document_id,
            "project_code": project_code, "document_class": document_class, "state": state,
            "previous_state": None, "name": f"{document_id}.docx", "url": None, "milestone": None,
            "invoice_number": None, "changed_at": at, "value": None, "milestones": [], **fields}


def signed_letter_setup() -> tuple[FakeErp, FakeGraph, FakeDocuSign]:
    """The planned matter, its workspace's letters folder, and the completed envelope of its engagement letter."""
    graph, docusign = FakeGraph(), FakeDocuSign()
    graph.add_folder(f"{MATTER}/Engagement Letters")
    docusign.add_envelope("env-1", [("1", "Engagement letter", b"%PDF signed letter")])
    return FakeErp(planned_matter()), graph, docusign


def test_a_signed_engagement_letter_opens_the_matter_in_the_erp_files_the_letter_and_tells_reporting() -> None:
    erp, graph, docusign = signed_letter_setup()
    locks, emitter = MemoryLocks(), RecordingEmitter()
    actor = document_workflow(erp, graph, docusign, locks)
    value = {"amount_minor": 2_500_000, "currency": "USD"}
    actor.handle(context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
        "env-1", "MAT-1", "engagement_letter", value=value, start_date=date(2027, 3, 1)), emitter,
        source="docusign://acme-firm", id="envelope:env-1"))
    as_of = [round(SIGNED.timestamp() * 1000), "env-1"]
    assert erp.writes == [  # the ERP first, in the order of actions whatever order the rule lists them in
        ("update_project", "MAT-1", {"value": value, "start_date": "2027-03-01",
                                     "custom_fields": {"terms_as_of": {"value": as_of, "start_date": as_of}}}),
        ("update_project", "MAT-1", {"status": "active"}),
        ("enable_time_entry", "MAT-1"),
        ("activate_billing_codes", "MAT-1", ("MAT-1-FEES", "MAT-1-DISBURSEMENTS"))]
    filed = f"{MATTER}/Engagement Letters/Engagement letter.pdf"
    assert graph.writes == [
        ("upload", filed),
        ("ensure_fields", filed, {"DocumentClass": "engagement_letter", "DocumentState": "signed",
                                  "ProjectCode": "MAT-1", "EnvelopeId": "env-1", "SignedAt": SIGNED.isoformat()}),
        ("ensure_retention_label", filed, "Client-GLOBEX-Matter-25y")]  # the client's override
    assert docusign.downloads == [("env-1", "1")]  # the signed letter, not DocuSign's certificate
    [activated] = emitter.events
    data = REGISTRY.decode("hub.engagement.activated.v1", activated.get_data())
    assert (data["rule"], data["document_ref"], data["matter_opened"], data["time_entry_enabled"]) == (
        "signed-engagement-letter", "env-1", True, True)
    assert data["billing_codes"] == ["MAT-1-FEES", "MAT-1-DISBURSEMENTS"] and data["notify"] == ["reporting"]
    assert data["value"] == value and data["activated_at"] == T and activated.get_subject() == "MAT-1"
    project = erp.get_project("MAT-1")
    assert project.status == "active" and project.time_entry_enabled and project.billing_codes_active
    assert locks.held == {}


def test_a_redelivered_envelope_changes_nothing_in_the_erp_and_refiles_the_same_file() -> None:
    erp, graph, docusign = signed_letter_setup()
    emitter = RecordingEmitter()
    actor = document_workflow(erp, graph, docusign)
    completed = context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
        "env-1", "MAT-1", "engagement_letter", value={"amount_minor": 2_500_000, "currency": "USD"}), emitter,
        source="docusign://acme-firm", id="envelope:env-1")
    actor.handle(completed)
    filed = graph.get_by_path(f"{MATTER}/Engagement Letters/Engagement letter.pdf")
    erp.writes.clear()
    actor.handle(completed)
    assert erp.writes == []
    again = graph.get_by_path(f"{MATTER}/Engagement Letters/Engagement letter.pdf")
    assert filed is not None and again is not None and again.id == filed.id  # replaced in place, not a copy
    # Filing counts as done on every run, so reporting may be told again: as the same event, which consumers drop.
    assert {e.get_id() for e in emitter.events} == {emitter.events[0].get_id()}


def test_the_filed_copy_coming_back_from_the_platform_reports_nothing_new() -> None:
    erp, graph, docusign = signed_letter_setup()
    emitter = RecordingEmitter()
    actor = document_workflow(erp, graph, docusign)
    actor.handle(context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
        "env-1", "MAT-1", "engagement_letter"), emitter, source="docusign://acme-firm", id="envelope:env-1"))
    erp.writes.clear()
    graph.writes.clear()
    actor.handle(context(actor.spec, "dms.document.state_changed.v1", document_changed(
        "01FILED", "MAT-1", "engagement_letter", "signed"), emitter, source="graph://workspaces"))
    assert erp.writes == [] and graph.writes == [] and len(emitter.events) == 1  # only the first activation


def test_a_sow_still_in_review_enables_nothing() -> None:
    erp, graph, docusign, locks = FakeErp(erp_project("ENG-1", engagement_type="consulting")), FakeGraph(), \
        FakeDocuSign(), MemoryLocks()
    emitter = RecordingEmitter()
    document_workflow(erp, graph, docusign, locks).handle(context(
        SPECS["document_workflow"], "dms.document.state_changed.v1",
        document_changed("01SOW", "ENG-1", "sow", "in_review", value={"amount_minor": 100, "currency": "EUR"}),
        emitter, source="graph://workspaces"))
    assert erp.writes == [] and graph.writes == [] and emitter.events == []
    assert not erp.get_project("ENG-1").time_entry_enabled


def test_an_older_change_order_arriving_late_never_overwrites_the_newer_ones_terms_or_milestones() -> None:
    erp = FakeErp(erp_project("ENG-1", engagement_type="engineering", value={"amount_minor": 1, "currency": "EUR"}))
    emitter = RecordingEmitter()
    actor = document_workflow(erp, FakeGraph(), FakeDocuSign())

    def change_order(ref: str, at: datetime, amount: int) -> Any:
        money = {"amount_minor": amount, "currency": "EUR"}
        return context(actor.spec, "dms.document.state_changed.v1", document_changed(
            ref, "ENG-1", "change_order", "approved", at=at, value=money,
            milestones=[{"name": "Phase 2", "amount": money, "due_date": date(2027, 6, 30)}]),
            emitter, source="graph://workspaces", id=f"doc:{ref}")

    actor.handle(change_order("01CO-2", T, 12_000_00))
    assert erp.get_project("ENG-1").value == Money(amount_minor=12_000_00, currency="EUR")
    assert [m.amount.amount_minor for m in erp.milestone_rows["ENG-1"]] == [12_000_00]
    erp.writes.clear()
    actor.handle(change_order("01CO-1", T - timedelta(days=1), 8_000_00))  # signed earlier, delivered later
    assert erp.writes == [] and erp.get_project("ENG-1").value == Money(amount_minor=12_000_00, currency="EUR")
    assert [m.amount.amount_minor for m in erp.milestone_rows["ENG-1"]] == [12_000_00]
    assert emitter.events == []  # the change-order rule does not tell reporting


def test_a_document_for_a_project_the_erp_does_not_know_yet_waits_for_it() -> None:
    """Sources deliver in any order: the ERP may create the project after the envelope completes (a project that
    never comes is raised to the owner at the horizon: tests/test_document_order.py)."""
    erp, graph, docusign = FakeErp(), FakeGraph(), FakeDocuSign()
    actor = document_workflow(erp, graph, docusign)
    with pytest.raises(NotYet, match="project MAT-404 is not known to the ERP yet") as waiting:
        actor.handle(context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
            "env-9", "MAT-404", "engagement_letter"), RecordingEmitter(), source="docusign://acme-firm"))
    assert waiting.value.prerequisite == "erp_project"
    assert erp.writes == [] and graph.writes == [] and docusign.downloads == []


def test_a_project_another_worker_is_updating_makes_the_workflow_wait_for_its_lock() -> None:
    erp, graph, docusign = signed_letter_setup()
    locks = MemoryLocks()
    locks.acquire("project:MAT-1", ttl_ms=60_000)
    actor = document_workflow(erp, graph, docusign, locks)
    with pytest.raises(EntityLocked) as raised:
        actor.handle(context(actor.spec, "esign.envelope.completed.v1", envelope_completed(
            "env-1", "MAT-1", "engagement_letter"), RecordingEmitter(), source="docusign://acme-firm"))
    assert raised.value.lock == "project:MAT-1" and erp.writes == [] and graph.writes == []


# -- Document intake: the drive's change notifications become document events (fakes of Graph and the ERP) ------

SOWS = f"{WS}/SOWs"


def intake(graph: FakeGraph, store: MemoryIntakeStore, locks: MemoryLocks | None = None) -> DocumentIntake:
    """The intake actor reading ``graph``'s drive; the ERP knows ENG-1, in the EU."""
    erp = FakeErp(erp_project("ENG-1", engagement_type="consulting", region="EU", country="DE"))
    return DocumentIntake(spec=SPECS["document_intake"], platforms=Platforms([GraphPlatform(graph)]), erp=erp,
                          locks=locks or MemoryLocks(), store=store)


def notified(actor: DocumentIntake, emitter: RecordingEmitter, platform: str = "sharepoint") -> Any:
    """A ``dms.change.notified.v1`` for the workspaces drive."""
    return context(actor.spec, "dms.change.notified.v1", {
        "platform": platform, "change_type": "updated", "resource": "drives/workspaces/root", "resource_id": None,
        "subscription_id": "sub-1", "tenant_id": None, "notified_at": T}, emitter, source="graph://workspaces")


def decoded(emitter: RecordingEmitter, event_type: str) -> list[dict[str, Any]]:
    """The data of the recorded events of one type, decoded with the registry."""
    return [REGISTRY.decode(event_type, event.get_data()) for event in emitter.of_type(event_type)]


def test_document_intake_emits_the_state_and_retention_label_of_each_classified_file_that_changed() -> None:
    graph, store, locks, emitter = FakeGraph(), MemoryIntakeStore(), MemoryLocks(), RecordingEmitter()
    sow = graph.add_file(SOWS, "SOW.pdf", label="DE-Contract-10y", fields={
        "DocumentClass": "SOW", "DocumentState": "Signed", "ProjectCode": "ENG-1", "ContractValue": "40,000.00",
        "ContractCurrency": "EUR"})
    graph.add_file(f"{WS}/Correspondence", "letter.pdf", fields={"Title": "A letter"})  # not a hub document
    actor = intake(graph, store, locks)
    actor.handle(notified(actor, emitter))
    [state] = decoded(emitter, "dms.document.state_changed.v1")
    assert (state["document_id"], state["project_code"], state["document_class"], state["state"]) == (
        sow, "ENG-1", "sow", "signed")
    assert state["value"] == {"amount_minor": 4_000_000, "currency": "EUR"}
    [retention] = decoded(emitter, "dms.document.retention_applied.v1")
    assert (retention["document_id"], retention["retention_label"], retention["jurisdiction"]) == (
        sow, "DE-Contract-10y", "EU")  # the project's region, from the ERP
    assert {(e.get_subject(), e.get_extension("partitionkey")) for e in emitter.events} == {(sow, "project:ENG-1")}
    assert store.delta_token("workspaces") is not None and not store.changed("workspaces") and locks.held == {}


def test_a_replayed_notification_or_a_lost_delta_token_tells_no_document_news_twice() -> None:
    graph, store, emitter = FakeGraph(), MemoryIntakeStore(), RecordingEmitter()
    sow = graph.add_file(SOWS, "SOW.pdf", label="DE-Contract-10y",
                         fields={"DocumentClass": "sow", "DocumentState": "in_review", "ProjectCode": "ENG-1"})
    actor = intake(graph, store)
    actor.handle(notified(actor, emitter))
    assert len(emitter.events) == 2
    actor.handle(notified(actor, emitter))  # nothing changed since the last read
    graph.expire_delta_tokens()
    actor.handle(notified(actor, emitter))  # the whole drive read again
    assert graph.delta_reads == 4 and len(emitter.events) == 2  # 410 on the stale token, then a full read
    graph.set_fields(sow, {"DocumentState": "approved"})
    actor.handle(notified(actor, emitter))
    assert [d["state"] for d in decoded(emitter, "dms.document.state_changed.v1")] == ["in_review", "approved"]
    assert len(emitter.of_type("dms.document.retention_applied.v1")) == 1  # the label did not change


def test_a_classified_file_with_unreadable_columns_is_raised_to_records_management_once_per_version() -> None:
    graph, store, emitter = FakeGraph(), MemoryIntakeStore(), RecordingEmitter()
    sow = graph.add_file(SOWS, "SOW.pdf", fields={"DocumentClass": "sow", "DocumentState": "final",
                                                  "ProjectCode": "ENG-1"})
    actor = intake(graph, store)
    actor.handle(notified(actor, emitter))
    [raised] = emitter.events
    data = REGISTRY.decode(raised.get_type(), raised.get_data())
    assert (raised.get_type(), data["owner"], data["kind"], data["subject"]) == (
        "hub.exception.raised.v1", "records_management", "document_intake.unreadable_columns", sow)
    assert "SOW.pdf" in data["detail"] and "DocumentState" in data["detail"]
    graph.expire_delta_tokens()
    actor.handle(notified(actor, emitter))  # the same version read again: the same case
    assert [e.get_id() for e in emitter.events] == [raised.get_id()] * 2
    graph.set_fields(sow, {"DocumentState": "approved"})  # records management fixes the column
    actor.handle(notified(actor, emitter))
    assert [d["state"] for d in decoded(emitter, "dms.document.state_changed.v1")] == ["approved"]


def test_a_hub_document_deleted_on_the_platform_is_withdrawn_as_superseded() -> None:
    graph, store, emitter = FakeGraph(), MemoryIntakeStore(), RecordingEmitter()
    sow = graph.add_file(SOWS, "SOW.pdf", fields={"DocumentClass": "sow", "DocumentState": "signed",
                                                  "ProjectCode": "ENG-1"})
    letter = graph.add_file(f"{WS}/Correspondence", "letter.pdf")
    actor = intake(graph, store)
    actor.handle(notified(actor, emitter))
    graph.delete(sow)
    graph.delete(letter)  # never a hub document: nothing to withdraw
    actor.handle(notified(actor, emitter))
    actor.handle(notified(actor, emitter))
    signed, withdrawn = decoded(emitter, "dms.document.state_changed.v1")
    assert signed["state"] == "signed"
    assert (withdrawn["document_id"], withdrawn["state"], withdrawn["previous_state"]) == (sow, "superseded", "signed")
    assert withdrawn["project_code"] == "ENG-1" and withdrawn["name"] is None and len(emitter.events) == 2


def test_a_notification_finding_the_drive_being_read_leaves_its_mark_for_the_reader() -> None:
    graph, store, locks, emitter = FakeGraph(), MemoryIntakeStore(), MemoryLocks(), RecordingEmitter()
    graph.add_file(SOWS, "SOW.pdf", fields={"DocumentClass": "sow", "DocumentState": "signed", "ProjectCode": "ENG-1"})
    actor = intake(graph, store, locks)
    reader = locks.acquire("intake:workspaces", ttl_ms=60_000)  # another worker reads the drive
    actor.handle(notified(actor, emitter))
    assert graph.delta_reads == 0 and emitter.events == [] and store.changed("workspaces")
    assert reader is not None
    locks.release("intake:workspaces", reader)
    actor.handle(notified(actor, emitter, platform="box"))  # another platform's notification is not for intake
    assert graph.delta_reads == 0
    actor.handle(notified(actor, emitter))
    assert graph.delta_reads == 1 and len(emitter.events) == 1 and not store.changed("workspaces")
