"""The outbox: a state change and the events it implies are written together, and published by the
writer, its re-run or the relay, in the writer's journey and trace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from hub.actor import RecordingEmitter
from hub.db import Database, connect_database, upgrade
from hub.errors import BrokerUnavailable, StoreUnavailable
from hub.events import make_event
from hub.outbox import Origin, OutboxRelay, Outgoing, SqlOutbox, publish_pending, write_outgoing
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from simulators.sandbox import ERP_SOURCE
from tests.conftest import DATABASE_URL, start_crash_worker
from tests.support.rabbit import wait_until

REGISTRY = SchemaRegistry.load()
TRACEPARENT = f"00-{'a' * 32}-{'b' * 16}-01"


def _outgoing(event_id: str, *, message_id: str | None = "m-1") -> Outgoing:
    event = make_event(REGISTRY, type="hub.client.changed.v1", source="hub://master-data", id=event_id,
                       subject="client_1", data={
                           "canonical_id": "client_1", "name": "ACME", "country": "DE", "status": "active",
                           "industry": None, "parent_canonical_id": None, "changed_fields": ["name"],
                           "source_system": "erp", "source_version": "0001",
                           "changed_at": datetime(2027, 1, 1, tzinfo=UTC)})
    return Outgoing(event, Origin(message_id=message_id, root_id="root-1", trace_context={"traceparent": TRACEPARENT}))


def _write(database: Database, *outgoing: Outgoing) -> None:
    with database.begin() as connection:
        write_outgoing(connection, outgoing)


class Recording(RecordingEmitter):
    """Keeps the parent each event was published under, and can refuse the n-th publish."""

    def __init__(self, refuse: int | None = None) -> None:
        super().__init__()
        self.parents: list[Any] = []
        self.refuse = refuse

    def dispatch(self, event: Any, *, parent: Any | None = None) -> list[Any]:
        if self.refuse is not None and len(self.events) == self.refuse:
            raise BrokerUnavailable("publish not confirmed")
        self.parents.append(parent)
        return super().dispatch(event, parent=parent)


def test_pending_events_are_published_in_order_in_their_writers_journey_and_marked(database: Database) -> None:
    _write(database, _outgoing("e-1"), _outgoing("e-2", message_id="m-2"), _outgoing("e-3"))
    outbox, emitter = SqlOutbox(database), Recording()
    assert publish_pending(outbox, emitter, origin="m-1") == 2
    assert [e.get_id() for e in emitter.events] == ["e-1", "e-3"]
    assert emitter.parents[0].message_id == "m-1"
    assert emitter.parents[0].options == {"hub_event": {"root_id": "root-1"}}
    assert [p.event.get_id() for p in outbox.pending()] == ["e-2"]
    assert publish_pending(outbox, emitter) == 1 and outbox.count_pending() == 0


def test_a_publish_that_is_not_confirmed_stops_the_batch_and_leaves_the_rest_pending(database: Database) -> None:
    _write(database, _outgoing("e-1"), _outgoing("e-2"), _outgoing("e-3"))
    outbox = SqlOutbox(database)
    with pytest.raises(BrokerUnavailable):
        publish_pending(outbox, Recording(refuse=1))
    assert [p.event.get_id() for p in outbox.pending()] == ["e-2", "e-3"]


def test_the_relay_publishes_only_what_waited_longer_than_its_grace(database: Database) -> None:
    _write(database, _outgoing("e-1"))
    outbox, emitter = SqlOutbox(database), Recording()
    assert OutboxRelay(outbox, emitter, grace_s=3_600).run_once() == 0  # its writer may still publish it
    assert OutboxRelay(outbox, emitter, grace_s=0.001).run_once() == 1
    assert [e.get_id() for e in emitter.events] == ["e-1"] and outbox.count_pending() == 0


def test_the_relay_continues_the_writers_trace(database: Database, app: Runtime) -> None:
    """Through the real dispatcher: the message it enqueues carries the trace context the writer had."""
    _write(database, _outgoing("e-1"))
    published = OutboxRelay(SqlOutbox(database), app.dispatcher, grace_s=0.001).run_once()
    assert published == 1
    [hop] = [h for h in app.flight.hops("root-1") if h.outcome == "published"]
    assert hop.trace_id == "a" * 32 and hop.parent_message_id == "m-1"


@pytest.fixture
def crash_worker(prefix: str) -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)


@pytest.mark.integration
def test_a_worker_killed_between_saving_a_change_and_announcing_it_announces_it_once_restarted(
        prefix: str, app: Runtime, crash_worker: list[Any]) -> None:
    client_id = f"C-{prefix}"
    app.redis.set(f"{prefix}:crash:after_save", "1")
    event = make_event(app.registry, type="erp.client.upserted.v1", source=ERP_SOURCE, id=f"{client_id}:v1",
                       subject=client_id, sequence=f"{1:020d}",
                       data={"client_id": client_id, "name": f"{client_id} Corp", "country": "DE", "status": "active",
                             "updated_at": datetime(2027, 1, 1, tzinfo=UTC)})
    with app.subscription("hub.client.changed.v1") as receive:
        crash_worker.append(first := start_crash_worker(prefix))
        app.dispatcher.dispatch(event)
        assert first.wait(timeout=60) == -9, "the worker should have died after the save"
        assert SqlOutbox(app.db).count_pending() == 1  # the change is saved, its announcement is not out
        # The dead worker's merge lock runs out (its 30 s, cut short here).
        assert app.redis.delete(*app.redis.keys(f"{prefix}:lock:mdm:*")) == 1
        crash_worker.append(start_crash_worker(prefix))
        names: list[str] = []

        def announced() -> bool:
            delivery = receive(1.0)
            if delivery is not None:
                names.append(app.registry.decode("hub.client.changed.v1", delivery.body)["name"])
            return f"{client_id} Corp" in names

        assert wait_until(announced, timeout=60)
    # The redelivered message announced it (not the relay, whose grace is longer than this test).
    assert any(h.actor == "master_data" and h.outcome == "ok" for h in app.flight.hops(event.get_id()))
    assert wait_until(lambda: SqlOutbox(app.db).count_pending() == 0, timeout=30)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_database_whose_tables_are_not_created_yet_is_unavailable_not_an_error(kind: str, prefix: str,
                                                                                 tmp_path: Any) -> None:
    """Before any migration ran (a fresh database, the ingress up before the first worker), the stores
    answer StoreUnavailable (retried, 503 at the edge), not a programming error (500)."""
    url = DATABASE_URL if kind == "postgresql" else f"sqlite:///{tmp_path}/fresh.sqlite3"
    database = connect_database(url, prefix=prefix, embedded=False)
    try:
        with pytest.raises(StoreUnavailable, match="database unavailable"):
            SqlOutbox(database).count_pending()
    finally:
        database.close()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_an_upgrade_says_once_what_it_applied_and_nothing_when_there_was_nothing_to_apply(
        kind: str, prefix: str, tmp_path: Any) -> None:
    """Alembic's own lines (a dozen per upgrade) stay below DEBUG; the hub says once which revisions it
    applied, and a process starting on an up-to-date database says nothing."""
    url = DATABASE_URL if kind == "postgresql" else f"sqlite:///{tmp_path}/fresh.sqlite3"
    database = connect_database(url, prefix=prefix, embedded=False)
    try:
        with capture_logs() as first:
            upgrade(database, [])
        with capture_logs() as second:
            upgrade(database, [])
    finally:
        database.close()
    said = [line for line in first if line["event"] == "database tables upgraded"]
    assert len(said) == 1 and {"hub_0001", "hub_0002"} <= set(said[0]["applied"]), first
    assert "hub_0001" not in said[0]["revisions"]  # the version table keeps each branch's newest
    assert not [line for line in second if line["event"] == "database tables upgraded"], second
