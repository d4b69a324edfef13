"""Actors as declared components: each one's logic runs on fakes of its dependencies (the crosswalk on a
SQLite file, as the embedded mode keeps it), without a broker or Redis; the routing table is derived from the
declarations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

import actors
from actors.exceptions import ExceptionRouter
from actors.fanout import FanOut
from actors.invoice_readiness import InvoiceReadiness, MemoryReadinessStore, ReadinessGate, ReadinessRules
from actors.invoice_readiness.facts import ProjectMeta
from actors.master_data import DEFAULT_MAPPING, MasterData, MemoryMasterDataStore, load_master_data_mapping
from actors.provisioning.actor import execute
from actors.provisioning.plan import GrantAccess, Project, plan_workspace
from connectors.erp.client import ErpClient
from connectors.settings import ErpSettings, GraphSettings
from connectors.sharepoint.client import GraphClient
from hub.actor import ALL_TYPES, ActorSpec, DeadLetter, Emitting, RecordingEmitter, unit_context
from hub.crosswalk import SqlCrosswalk
from hub.db import connect_database, upgrade
from hub.dispatch import RoutingTable
from hub.errors import BrokerUnavailable, EntityLocked, HardStop
from hub.events import make_event
from hub.registry import SchemaRegistry
from hub.store import MemoryLocks
from hub.topics import Delivery, MemoryTopicBus

REGISTRY = SchemaRegistry.load()
POLICY = actors.load_policy()
T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def context(spec: ActorSpec, event_type: str, data: dict[str, Any], emitter: RecordingEmitter, **attrs: Any) -> Any:
    event = make_event(REGISTRY, type=event_type, source="erp-sim://acme-psa/prod", data=data, **attrs)
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
    actor = MasterData(rules=load_master_data_mapping(DEFAULT_MAPPING), graph=graph,
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
    actor = MasterData(rules=load_master_data_mapping(DEFAULT_MAPPING), graph=graph,
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
        execute(graph, plan, GrantAccess(group="Litigation-EU", role="write"), {plan.path: "01WS"})
    assert json.dumps(sorted(plan.grants)).count("Litigation-EU") == 0
