"""Ethical walls on the bus: a walled matter's events reach ``hub.events`` only redacted, and in full only the
restricted exchange, whatever order the events arrive in."""

from __future__ import annotations

import io
from collections import deque
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from click.testing import CliRunner
from fastavro import parse_schema, schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st

import actors.fanout
from actors import DEFAULT_POLICY
from actors.fanout import FanOut
from actors.fanout.actor import BusWall
from actors.fanout.walls import MatterWalls, MemoryMatterWalls, SqlMatterWalls
from hub.actor import unit_context
from hub.asyncapi import example_datum
from hub.cli import main
from hub.cli.compose import build_app
from hub.db import Database
from hub.errors import ConfigurationError, NotYet
from hub.events import CloudEvent, make_event
from hub.policy import EthicalWalls
from hub.redaction import Redactions
from hub.registry import SchemaRegistry
from hub.topics import Delivery, MemoryTopicBus
from hub.workers import running_worker
from tests.conftest import hub_settings
from tests.support.rabbit import AMQP_URL

REGISTRY = SchemaRegistry.load()
PROTECTED = {
    "erp.project.created.v1": ["name", "client_id", "partner", "value", "conflicted_groups"],
    "erp.project.updated.v1": ["name", "client_id", "partner", "value", "conflicted_groups"],
    "hub.project.changed.v1": ["name", "client_canonical_id", "partner"],
    "dms.document.state_changed.v1": ["name", "url", "reference", "value", "milestones"],
    "esign.envelope.completed.v1": ["document_name", "signers", "value", "milestones"],
    "erp.invoice.drafted.v1": ["amount", "bills"],
    "hub.invoice.readiness_changed.v1": ["hold_reasons"],
    "hub.engagement.activated.v1": ["value", "document_ref", "billing_codes"],
}
WALLS = EthicalWalls.model_validate({"applies_to": ["legal"], "on_the_bus": {
    "restricted_exchange": "events.walled", "protected_fields": PROTECTED}})
#: Matter -> (engagement type, conflicted groups, walled?)
MATTERS = {"MAT-LEGAL-1": ("legal", [], True), "ENG-CONFLICT-2": ("consulting", ["Knowledge-EU"], True),
           "ENG-OPEN-3": ("consulting", [], False)}


def event(event_type: str, matter: str | None, number: int, **fields: Any) -> CloudEvent:
    data = example_datum(REGISTRY.resolved(REGISTRY.for_type(event_type).name))
    data.update(fields)
    if matter is not None:
        data["project_code"] = matter
    return make_event(REGISTRY, type=event_type, source="erp-sim://acme-psa/prod", id=f"{event_type}-{number}",
                      subject=matter, data=data)


def business() -> list[CloudEvent]:
    """Each matter's project event, documents, envelope, invoice and verdicts; a client event about no matter."""
    made = [event("erp.client.upserted.v1", None, 0)]
    for number, (matter, (kind, conflicted, _)) in enumerate(MATTERS.items()):
        made += [
            event("erp.project.created.v1", matter, number, engagement_type=kind, conflicted_groups=conflicted),
            event("hub.project.changed.v1", matter, number, engagement_type=kind),
            event("dms.document.state_changed.v1", matter, number),
            event("esign.envelope.completed.v1", matter, number),
            event("erp.invoice.drafted.v1", matter, number),
            event("hub.invoice.readiness_changed.v1", matter, number),
            event("dms.workspace.provisioned.v1", matter, number),  # no protected field: in full everywhere
        ]
    return made


def fan_out(events: list[CloudEvent], matters: MemoryMatterWalls | None = None,
            ) -> tuple[list[Delivery], list[Delivery]]:
    """Every event through the fan-out in the order given, a waiting one (NotYet) retried after the others, as
    the retry queue does; what reached the open exchange and the restricted one."""
    open_bus, restricted = MemoryTopicBus(exchange="hub.events"), MemoryTopicBus(exchange="hub.events.walled")
    seen_open: list[Delivery] = []
    seen_restricted: list[Delivery] = []
    open_bus.subscribe("#", seen_open.append)
    restricted.subscribe("#", seen_restricted.append)
    fanout = FanOut(open_bus, wall=BusWall(WALLS, Redactions(REGISTRY, PROTECTED), matters or MemoryMatterWalls(),
                                           restricted))
    waiting = deque(events)
    budget = len(events) ** 2 + 10
    while waiting and budget:
        budget -= 1
        item = waiting.popleft()
        data = REGISTRY.decode(item.get_type(), bytes(item.get_data() or b""))
        try:
            fanout.handle(unit_context(actors.fanout.SPEC, REGISTRY, item, data))
        except NotYet:
            waiting.append(item)
    assert not waiting, "events still waiting with every matter's project event handled"
    return seen_open, seen_restricted


def fields_of(delivery: Delivery) -> dict[str, Any]:
    """The data of a delivery, decoded with the schema its dataschema names (the redacted one or the full)."""
    event_type = delivery.routing_key
    body = delivery.event().get_data()
    assert isinstance(body, bytes)
    dataschema = str(delivery.headers["ce-dataschema"])
    if dataschema.endswith("/redacted"):
        schema = Redactions(REGISTRY, PROTECTED).schema(event_type)[1]
    else:
        assert REGISTRY.for_type(event_type).is_named_by(dataschema)
        schema = REGISTRY.resolved(REGISTRY.for_type(event_type).name)
    record = schemaless_reader(io.BytesIO(body), parse_schema(schema), None)
    assert isinstance(record, dict)
    return record


@settings(max_examples=60, deadline=None)
@given(st.permutations(business()), st.lists(st.integers(min_value=0, max_value=21), max_size=6))
def test_no_event_on_hub_events_carries_a_protected_field_of_a_walled_matter_whatever_the_order(
    order: list[CloudEvent], copies: list[int]
) -> None:
    events = order + [order[index] for index in copies]  # redeliveries too
    seen_open, seen_restricted = fan_out(events)
    assert len(seen_open) == len(events)
    for delivery in seen_open:
        matter = delivery.headers.get("ce-subject")
        walled = matter in MATTERS and MATTERS[str(matter)][2]
        record = fields_of(delivery)
        if walled and delivery.routing_key in PROTECTED:
            assert not set(PROTECTED[delivery.routing_key]) & set(record), delivery.routing_key
            assert delivery.headers["ce-redacted"] == "true"
        else:
            assert "ce-redacted" not in delivery.headers
            assert set(record) == {f["name"] for f in REGISTRY.resolved(
                REGISTRY.for_type(delivery.routing_key).name)["fields"]}
    walled_ids = sorted(e.get_id() for e in events if e.get_subject() in MATTERS and MATTERS[str(e.get_subject())][2]
                        and e.get_type() in PROTECTED)
    assert sorted(d.headers["ce-id"] for d in seen_restricted) == walled_ids
    for delivery in seen_restricted:  # in full there
        assert "ce-redacted" not in delivery.headers
        assert set(fields_of(delivery)) >= set(PROTECTED[delivery.routing_key])


def test_a_wall_added_later_redacts_every_event_after_it_and_is_never_taken_down() -> None:
    matters = MemoryMatterWalls()
    before = event("dms.document.state_changed.v1", "ENG-OPEN-3", 1)
    created = event("erp.project.created.v1", "ENG-OPEN-3", 1, engagement_type="consulting", conflicted_groups=[])
    walled = event("erp.project.updated.v1", "ENG-OPEN-3", 2, engagement_type="consulting",
                   conflicted_groups=["Knowledge-EU"])
    cleared = event("erp.project.updated.v1", "ENG-OPEN-3", 3, engagement_type="consulting", conflicted_groups=[])
    after = event("dms.document.state_changed.v1", "ENG-OPEN-3", 4)
    seen_open, _ = fan_out([created, before, walled, cleared, after], matters)
    redacted = [d.headers["ce-id"] for d in seen_open if d.headers.get("ce-redacted") == "true"]
    assert redacted == [walled.get_id(), cleared.get_id(), after.get_id()]


def test_a_protected_field_the_schema_does_not_have_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match=r"erp\.invoice\.drafted\.v1 has no field amout"):
        Redactions(REGISTRY, {"erp.invoice.drafted.v1": ["amout"]})


def test_the_redacted_schema_is_a_declared_variant_without_the_protected_fields() -> None:
    dataschema, schema = Redactions(REGISTRY, PROTECTED).schema("erp.project.created.v1")
    assert dataschema == REGISTRY.for_type("erp.project.created.v1").dataschema + "/redacted"
    assert schema["name"] == "hub.erp.ProjectCreatedRedacted" and schema["hub.redacts"] == "erp.project.created.v1"
    assert not {f["name"] for f in schema["fields"]} & set(PROTECTED["erp.project.created.v1"])
    parse_schema(schema)  # self-contained: the named types of the removed fields are defined where still used


# -- on the real servers: the worker's fan-out, a consumer outside the wall and one inside ---------------------


def walls_policy(directory: Path) -> Path:
    """The default policy with walls on the bus."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["ethical_walls"]["on_the_bus"] = {"restricted_exchange": "events.walled", "protected_fields": PROTECTED}
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


def received(queue: str, count: int) -> list[tuple[Any, bytes]]:
    """The next ``count`` messages of ``queue``, each waited for (acknowledged)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        found = []
        for method, properties, body in channel.consume(queue, inactivity_timeout=30):
            assert method is not None, f"{queue}: {len(found)} of {count} messages came"
            channel.basic_ack(method.delivery_tag)
            found.append((properties, body))
            if len(found) == count:
                break
        channel.cancel()
        return found
    finally:
        connection.close()


@pytest.mark.integration
def test_the_worker_keeps_a_walled_matter_off_hub_events_and_gives_it_in_full_to_the_restricted_exchange(
    prefix: str, tmp_path: Path, spans: Any
) -> None:
    policy = walls_policy(tmp_path)
    env = {"HUB_QUEUE_PREFIX": prefix, "HUB_POLICY_FILE": str(policy), "HUB_LOG_LEVEL": "WARNING"}
    for name, extra in (("outside", []), ("inside", ["--restricted"])):
        added = CliRunner().invoke(main, ["consumers", "add", name, "--bind", "#", *extra], env=env)
        assert added.exit_code == 0, added.output
    runtime = build_app(hub_settings(prefix, policy_file=policy), embedded=False, only={"fanout"},
                        tracer_provider=spans[0], span_exporter=spans[1])
    legal = "MAT-LEGAL-1"
    document = event("dms.document.state_changed.v1", legal, 7, name="Privileged memo.pdf")
    created = event("erp.project.created.v1", legal, 7, engagement_type="legal", conflicted_groups=[],
                    name="Confidential matter")
    open_document = event("dms.document.state_changed.v1", "ENG-OPEN-3", 8)
    open_created = event("erp.project.created.v1", "ENG-OPEN-3", 8, engagement_type="consulting",
                         conflicted_groups=[])
    try:
        with running_worker(runtime, threads=2):
            for item in (document, open_document, created, open_created):  # documents before their projects
                runtime.dispatcher.dispatch(item)
            outside = received(f"{prefix}.consumer.outside", 4)
            inside = received(f"{prefix}.consumer.inside", 2)
    finally:
        runtime.close()
    by_id = {properties.headers["ce-id"]: (properties, body) for properties, body in outside}
    for walled in (document, created):
        properties, body = by_id[walled.get_id()]
        assert properties.headers["ce-redacted"] == "true"
        assert properties.headers["ce-dataschema"].endswith("/redacted")
        assert b"Privileged memo" not in body and b"Confidential matter" not in body
    for open_item in (open_document, open_created):
        properties, body = by_id[open_item.get_id()]
        assert "ce-redacted" not in properties.headers and body == open_item.get_data()
    assert sorted(p.headers["ce-id"] for p, _ in inside) == sorted([document.get_id(), created.get_id()])
    assert {p.headers["ce-id"]: body for p, body in inside}[document.get_id()] == document.get_data()


@pytest.fixture(params=["sql", "memory"])
def matter_walls(request: pytest.FixtureRequest, database: Database) -> MatterWalls:
    """The verdicts in the hub's database (PostgreSQL and SQLite, as ``database`` gives) or in memory."""
    return SqlMatterWalls(database) if request.param == "sql" else MemoryMatterWalls()


def test_a_matter_s_verdict_is_kept_and_a_wall_is_never_taken_down(matter_walls: MatterWalls) -> None:
    assert matter_walls.walled("MAT-1") is None
    matter_walls.learn("MAT-1", False)
    assert matter_walls.walled("MAT-1") is False
    assert matter_walls.learn("MAT-1", True) is True  # a conflict recorded later walls the matter
    # An older event, or a later one without the conflict: the wall stays.
    assert matter_walls.learn("MAT-1", False) is True
    assert matter_walls.walled("MAT-1") is True
    matter_walls.learn("ENG-2", True)
    assert matter_walls.walled("ENG-2") is True and matter_walls.walled("ENG-3") is None


def test_the_verdicts_outlive_the_process_that_learnt_them(database: Database) -> None:
    """They are records of the hub's database: another process (or this one after Redis lost its data) reads
    the wall learnt before."""
    SqlMatterWalls(database).learn("MAT-1", True)
    assert SqlMatterWalls(database).walled("MAT-1") is True
    assert SqlMatterWalls(database).learn("MAT-1", False) is True  # another process's wall stands too
