"""Each store's fake keeps the contract of its real store: the same calls give the same answers.

Actor unit tests run on the in-memory fakes (``tests/test_actors_unit.py``); these tests run every
contract against both, a Redis store on the real server and a SQL store on PostgreSQL and SQLite, so a
fake cannot drift into a kinder store than the one the workers use.

Past 400 lines on purpose: every store's contract, and that of the database the SQL stores share, on the same
parametrised fixtures.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.exc

import actors
from actors.document_intake import RedisIntakeStore
from actors.document_intake.store import IntakeStore, MemoryIntakeStore
from actors.invoice_readiness import SqlReadinessStore
from actors.invoice_readiness.facts import ProjectFacts, ProjectMeta, Verdict, fold
from actors.invoice_readiness.logic import (
    DocumentStateChanged,
    EnvelopeChanged,
    Event,
    HoldReason,
    InvoiceDrafted,
    Readiness,
    RetentionApplied,
)
from actors.invoice_readiness.store import MemoryReadinessStore, ReadinessStore
from actors.master_data import SqlMasterDataStore
from actors.master_data.model import CanonicalState, FieldState
from actors.master_data.store import MasterDataStore, MemoryMasterDataStore
from actors.provisioning import RedisProvisioningStore
from actors.provisioning.store import MemoryProvisioningStore, ProvisioningStore
from hub.db import Database, connect_database, drop_schema, upgrade
from hub.events import make_event
from hub.outbox import Origin, Outgoing
from hub.registry import SchemaRegistry
from hub.store import Locks, MemoryLocks, RedisLocks
from tests.conftest import DATABASE_URL

KINDS = ["redis", "memory"]
REGISTRY = SchemaRegistry.load()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis()
    yield connection
    connection.close()


def _either(request: pytest.FixtureRequest, real: Callable[[], Any], fake: Callable[[], Any]) -> Any:
    """The Redis store (on the real server, under this test's prefix) or its in-memory fake."""
    return real() if request.param == "redis" else fake()


@pytest.fixture(params=KINDS)
def locks(request: pytest.FixtureRequest, client: redis.Redis, prefix: str) -> Locks:
    return _either(request, lambda: RedisLocks(client, prefix=prefix), MemoryLocks)


@pytest.fixture(params=KINDS)
def provisioning(request: pytest.FixtureRequest, client: redis.Redis, prefix: str) -> ProvisioningStore:
    return _either(
        request, lambda: RedisProvisioningStore(client, prefix=prefix), MemoryProvisioningStore)


@pytest.fixture(params=["sql", "memory"])
def master_data(request: pytest.FixtureRequest, database: Database) -> MasterDataStore:
    """The SQL store (on PostgreSQL and on SQLite, as ``database`` gives) or its in-memory fake."""
    return SqlMasterDataStore(database) if request.param == "sql" else MemoryMasterDataStore()


@pytest.fixture(params=KINDS)
def intake(request: pytest.FixtureRequest, client: redis.Redis, prefix: str) -> IntakeStore:
    return _either(request, lambda: RedisIntakeStore(client, prefix=prefix), MemoryIntakeStore)


@pytest.fixture(params=["sql", "memory"])
def readiness(request: pytest.FixtureRequest, database: Database) -> ReadinessStore:
    """The SQL store (on PostgreSQL and on SQLite, as ``database`` gives) or its in-memory fake."""
    return SqlReadinessStore(database) if request.param == "sql" else MemoryReadinessStore()


# -- locks --------------------------------------------------------------------------------------------


def test_a_lease_is_held_by_one_token_until_that_token_gives_it_back(locks: Locks) -> None:
    token = locks.acquire("project:P1", ttl_ms=10_000)
    assert token is not None
    assert locks.acquire("project:P1", ttl_ms=10_000) is None
    assert locks.ttl_ms("project:P1") > 0
    assert locks.acquire("project:P2", ttl_ms=10_000) is not None  # another name, another lease
    locks.release("project:P1", "not-the-token")
    assert locks.acquire("project:P1", ttl_ms=10_000) is None
    locks.release("project:P1", token)
    assert locks.ttl_ms("project:P1") == 0


def test_a_stale_token_cannot_give_back_the_lease_taken_again(locks: Locks) -> None:
    stale = locks.acquire("project:P1", ttl_ms=10_000)
    assert stale is not None
    locks.release("project:P1", stale)
    fresh = locks.acquire("project:P1", ttl_ms=10_000)
    assert fresh is not None and fresh != stale
    locks.release("project:P1", stale)
    assert locks.acquire("project:P1", ttl_ms=10_000) is None
    assert locks.ttl_ms("project:P1") > 0


# -- provisioning ---------------------------------------------------------------------------------------


def test_the_first_sighting_of_a_project_is_kept(provisioning: ProvisioningStore) -> None:
    assert provisioning.first_seen("ENG-1", 1_000) == 1_000
    assert provisioning.first_seen("ENG-1", 2_000) == 1_000
    assert provisioning.first_seen("ENG-2", 3_000) == 3_000


def test_the_last_announcement_of_a_workspace_is_remembered(provisioning: ProvisioningStore) -> None:
    assert provisioning.announced("ENG-1") is None
    provisioning.mark_announced("ENG-1", "digest-1")
    assert provisioning.announced("ENG-1") == "digest-1"
    provisioning.mark_announced("ENG-1", "digest-2")
    assert provisioning.announced("ENG-1") == "digest-2"
    assert provisioning.announced("ENG-2") is None


# -- master data ----------------------------------------------------------------------------------------


def _client_state(name: str, version: str) -> CanonicalState:
    return CanonicalState(entity="client", canonical_id="client_1", fields={
        "name": FieldState(value=name, version=version, system="erp"),
        "country": FieldState(value="DE", version=version, system="erp"),
    })


def test_a_canonical_record_reads_back_as_saved_and_a_later_save_replaces_it(master_data: MasterDataStore) -> None:
    assert master_data.load("client_1") is None
    master_data.save(_client_state("ACME", "0001"))
    assert master_data.load("client_1") == _client_state("ACME", "0001")
    master_data.save(_client_state("ACME Corp", "0002"))
    assert master_data.load("client_1") == _client_state("ACME Corp", "0002")


def _project_state(canonical_id: str, client_id: str) -> CanonicalState:
    return CanonicalState(entity="project", canonical_id=canonical_id, fields={
        "client_id": FieldState(value=client_id, version="0001", system="erp")})


def test_a_clients_projects_are_those_whose_record_names_it_sorted(master_data: MasterDataStore) -> None:
    assert master_data.projects_of("client_1") == []
    for project in ("project_b", "project_a", "project_b"):
        master_data.save(_project_state(project, "client_1"))
    master_data.save(_project_state("project_c", "client_2"))
    assert master_data.projects_of("client_1") == ["project_a", "project_b"]
    master_data.save(_project_state("project_b", "client_2"))  # moved to another client
    assert master_data.projects_of("client_1") == ["project_a"]
    assert master_data.projects_of("client_2") == ["project_b", "project_c"]


def test_ignored_updates_are_counted_per_system(master_data: MasterDataStore) -> None:
    assert master_data.ignored("sharepoint") == 0
    master_data.count_ignored("sharepoint", 2)
    master_data.count_ignored("sharepoint", 1)
    master_data.count_ignored("erp", 5)
    assert master_data.ignored("sharepoint") == 3 and master_data.ignored("erp") == 5


def _announcement(event_id: str, message_id: str | None = "m-1") -> Outgoing:
    event = make_event(REGISTRY, type="hub.client.changed.v1", source="hub://master-data", id=event_id,
                       subject="client_1", data={
                           "canonical_id": "client_1", "name": "ACME", "country": "DE", "status": "active",
                           "industry": None, "parent_canonical_id": None, "changed_fields": ["name"],
                           "source_system": "erp", "source_version": "0001",
                           "changed_at": datetime(2027, 1, 1, tzinfo=UTC)})
    return Outgoing(event, Origin(message_id=message_id, root_id="root-1",
                                  trace_context={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}))


def test_a_save_puts_its_announcements_in_the_outbox(master_data: MasterDataStore) -> None:
    master_data.save(_client_state("ACME", "0001"), announce=[_announcement("e-1")])
    [pending] = master_data.outbox.pending()
    assert pending.event.get_id() == "e-1" and pending.event.get_type() == "hub.client.changed.v1"
    assert pending.origin == Origin(message_id="m-1", root_id="root-1",
                                    trace_context={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
    assert pending.event.get_data() == _announcement("e-1").event.get_data()
    assert master_data.outbox.pending(origin="m-2") == []
    master_data.outbox.mark_published(pending.seq)
    assert master_data.outbox.pending() == []


def test_a_save_whose_announcement_cannot_be_written_keeps_nothing(database: Database) -> None:
    store = SqlMasterDataStore(database)
    store.save(_client_state("ACME", "0001"))
    good = _announcement("e-1")
    # The second of two announcements is refused by the outbox table (no event type): the whole save goes.
    unwritable = Outgoing(make_event(REGISTRY, type="hub.client.changed.v1", source="hub://master-data", id="e-2",
                                     data=REGISTRY.decode("hub.client.changed.v1", good.event.get_data())),
                          good.origin)
    unwritable.event.get_attributes()["type"] = None  # type: ignore[index]
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.save(_client_state("ACME Corp", "0002"), announce=[good, unwritable])
    assert store.load("client_1") == _client_state("ACME", "0001")  # the record did not change either
    assert store.outbox.pending() == []


# -- document intake ------------------------------------------------------------------------------------


def test_the_delta_token_is_kept_per_drive(intake: IntakeStore) -> None:
    assert intake.delta_token("drive-1") is None
    intake.save_delta_token("drive-1", "token-a")
    intake.save_delta_token("drive-1", "token-b")
    assert intake.delta_token("drive-1") == "token-b"
    assert intake.delta_token("drive-2") is None


def test_the_changed_mark_coalesces_notifications_and_is_taken_once(intake: IntakeStore) -> None:
    assert not intake.changed("drive-1") and not intake.take_changed("drive-1")
    intake.mark_changed("drive-1")
    intake.mark_changed("drive-1")
    assert intake.changed("drive-1") and intake.changed("drive-1")  # looking does not take it
    assert not intake.changed("drive-2")
    assert intake.take_changed("drive-1")
    assert not intake.take_changed("drive-1") and not intake.changed("drive-1")


def test_the_last_news_is_kept_per_drive_item_and_event_type(intake: IntakeStore) -> None:
    assert intake.last_news("drive-1", "item-1", "dms.document.state_changed.v1") is None
    intake.remember_news("drive-1", "item-1", "dms.document.state_changed.v1", "sig-1")
    intake.remember_news("drive-1", "item-1", "dms.document.state_changed.v1", "sig-2")
    assert intake.last_news("drive-1", "item-1", "dms.document.state_changed.v1") == "sig-2"
    assert intake.last_news("drive-1", "item-1", "dms.document.retention_applied.v1") is None
    assert intake.last_news("drive-1", "item-2", "dms.document.state_changed.v1") is None
    assert intake.last_news("drive-2", "item-1", "dms.document.state_changed.v1") is None


# -- invoice readiness ----------------------------------------------------------------------------------

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
META = ProjectMeta(engagement_type="engineering", region="ME", country="AE", client_id="GULF")


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes, milliseconds=123)


DRAFTED = InvoiceDrafted("INV-1", "P1", _at(0), "M1")
APPROVED = DocumentStateChanged("D-1", "P1", "deliverable", "approved", _at(1), "M1", None)
LABELLED = RetentionApplied("D-1", "P1", "ME-Deliverable-10y", "ME", _at(2))
SIGNED = EnvelopeChanged("ENV-1", "P1", "sow", _at(3))


def test_unknown_projects_and_invoices_have_no_facts(readiness: ReadinessStore) -> None:
    assert _seen(readiness.load("P1")) == _folded([], None)
    assert readiness.meta("P1") is None
    assert readiness.project_of("INV-1") is None
    assert readiness.verdict("INV-1") is None


def _folded(events: list[Event], meta: ProjectMeta | None, code: str = "P1") -> tuple[Any, ...]:
    facts = ProjectFacts(code, meta)
    for event in events:
        facts, _ = fold(facts, event)
    return _seen(facts)


def _seen(facts: ProjectFacts) -> tuple[Any, ...]:
    """What the gate reads of a project's facts: its meta, its drafts, its documents, labels and envelopes."""
    return facts.project_code, facts.meta, dict(facts.drafts), facts.base()


def test_facts_stored_in_two_writes_load_as_the_project_folded(readiness: ReadinessStore) -> None:
    readiness.store("P1", [DRAFTED, APPROVED], META)
    readiness.store("P1", [LABELLED, SIGNED], None)
    assert _seen(readiness.load("P1")) == _folded([DRAFTED, APPROVED, LABELLED, SIGNED], META)
    assert readiness.meta("P1") == META
    assert readiness.project_of("INV-1") == "P1"
    assert _seen(readiness.load("P2")) == _folded([], None, "P2")


def test_a_replace_forgets_the_facts_written_before(readiness: ReadinessStore) -> None:
    readiness.store("P1", [DRAFTED, APPROVED, LABELLED], META)
    readiness.replace("P1", [DRAFTED], None)
    assert _seen(readiness.load("P1")) == _folded([DRAFTED], None)
    assert readiness.meta("P1") is None


def test_the_last_verdict_of_an_invoice_is_kept(readiness: ReadinessStore) -> None:
    held = Verdict(Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "D-2")]), 1)
    ready = Verdict(Readiness("ready"), 2)
    readiness.store("P1", [], None, verdicts={"INV-1": held})
    assert readiness.verdict("INV-1") == held
    readiness.store("P1", [], None, verdicts={"INV-1": ready})
    assert readiness.verdict("INV-1") == ready
    assert readiness.verdict("INV-2") is None


def test_an_invoice_is_read_with_its_projects_facts(readiness: ReadinessStore) -> None:
    assert readiness.facts_of_invoice("INV-1") == (None, ProjectFacts(""))
    readiness.store("P1", [DRAFTED, APPROVED], META)
    readiness.store("P2", [InvoiceDrafted("INV-2", "P2", _at(5))], None)
    code, facts = readiness.facts_of_invoice("INV-1")
    assert code == "P1" and _seen(facts) == _folded([DRAFTED, APPROVED], META)
    assert readiness.facts_of_invoice("INV-3") == (None, ProjectFacts(""))


def test_a_replace_keeps_the_verdicts_emitted_and_the_invoices_it_keeps(readiness: ReadinessStore) -> None:
    held = Verdict(Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "D-1")]), 3)
    readiness.store("P1", [DRAFTED, APPROVED], META, verdicts={"INV-1": held})
    readiness.replace("P1", [DRAFTED, LABELLED], META)
    assert readiness.verdict("INV-1") == held  # a rebuild compares with what was told, and goes on counting
    assert readiness.project_of("INV-1") == "P1"
    assert _seen(readiness.load("P1")) == _folded([DRAFTED, LABELLED], META)


def _verdict_changed(number: str, seq: int, message_id: str | None = "m-1") -> Outgoing:
    event = make_event(REGISTRY, type="hub.invoice.readiness_changed.v1", source="hub://invoice-readiness",
                       id=f"{number}:{seq}", subject=number, data={
                           "invoice_number": number, "project_code": "P1", "status": "ready", "hold_reasons": [],
                           "changed_at": T0})
    return Outgoing(event, Origin(message_id=message_id, root_id="root-1",
                                  trace_context={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}))


def test_a_write_puts_its_announcements_in_the_outbox(readiness: ReadinessStore) -> None:
    ready = Verdict(Readiness("ready"), 1)
    readiness.store("P1", [DRAFTED], META, verdicts={"INV-1": ready}, announce=[_verdict_changed("INV-1", 1)])
    readiness.replace("P1", [DRAFTED], META, verdicts={"INV-1": Verdict(Readiness("ready"), 2)},
                      announce=[_verdict_changed("INV-1", 2, message_id=None)])
    first, second = readiness.outbox.pending()
    assert (first.event.get_id(), second.event.get_id()) == ("INV-1:1", "INV-1:2")
    assert first.origin == Origin(message_id="m-1", root_id="root-1",
                                  trace_context={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
    assert first.event.get_data() == _verdict_changed("INV-1", 1).event.get_data()
    assert [p.event.get_id() for p in readiness.outbox.pending(origin="m-1")] == ["INV-1:1"]
    readiness.outbox.mark_published(first.seq)
    assert [p.event.get_id() for p in readiness.outbox.pending()] == ["INV-1:2"]


def test_a_write_whose_announcement_cannot_be_written_keeps_nothing(database: Database) -> None:
    store = SqlReadinessStore(database)
    held = Verdict(Readiness.of([HoldReason("DELIVERABLE_NOT_APPROVED", "D-1")]), 1)
    store.store("P1", [DRAFTED], META, verdicts={"INV-1": held})
    unwritable = _verdict_changed("INV-1", 2)
    unwritable.event.get_attributes()["type"] = None  # type: ignore[index]  # refused by the outbox table
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.store("P1", [APPROVED, LABELLED], None, verdicts={"INV-1": Verdict(Readiness("ready"), 2)},
                    announce=[unwritable])
    assert _seen(store.load("P1")) == _folded([DRAFTED], META)  # neither the facts nor the verdict changed
    assert store.verdict("INV-1") == held and store.outbox.pending() == []
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        store.replace("P1", [], None, announce=[unwritable])
    assert _seen(store.load("P1")) == _folded([DRAFTED], META)  # a failed rebuild forgets nothing


def test_each_hub_keeps_its_readiness_facts_apart(database: Database, prefix: str) -> None:
    if database.schema is None:
        pytest.skip("SQLite: one hub per file")
    other = connect_database(DATABASE_URL, prefix=f"{prefix}_other", embedded=False)
    try:
        upgrade(other, actors.MIGRATIONS)
        SqlReadinessStore(database).store("P1", [DRAFTED], META)
        assert SqlReadinessStore(other).project_of("INV-1") is None
        assert _seen(SqlReadinessStore(other).load("P1")) == _folded([], None)
    finally:
        drop_schema(other)
        other.close()


def test_a_transaction_still_running_when_the_database_closes_closes_its_connection_as_it_ends(
        database: Database) -> None:
    """A worker thread finishing its message while the process shuts down: its connection is closed once its
    transaction commits, not left open in the disposed pool for the garbage collector; so is that of a
    transaction after the close (a read once the runtime closed)."""
    inside, release, raw = threading.Event(), threading.Event(), []

    def finish_a_message() -> None:
        with database.begin() as connection:
            raw.append(connection.connection.dbapi_connection)
            inside.set()
            release.wait(30)
            connection.execute(sa.text("SELECT 1"))

    thread = threading.Thread(target=finish_a_message)
    thread.start()
    assert inside.wait(30)
    database.close()
    release.set()
    thread.join(30)
    assert not thread.is_alive()
    with database.begin() as connection:
        assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        raw.append(connection.connection.dbapi_connection)
    for closed in raw:
        with pytest.raises((psycopg.OperationalError, sqlite3.ProgrammingError), match="closed"):
            closed.cursor()
