"""The transactional outbox: the events a state change implies are written in the same transaction as the
change, then published by whoever gets there first.

- the actor, right after its commit (:meth:`hub.actor.Emitting.flush`),
- the actor's re-run: a worker killed between the commit and the publish leaves its message
  unacknowledged; the redelivery (same message id) finds nothing to change, but flushes what that
  message left pending,
- the relay (:class:`OutboxRelay`, run every few seconds by every worker process), for what stayed
  pending longer than a grace period (a message dead-lettered after the commit, say).

A pending event may be published twice (two of them race, or one dies between the publish and the
mark): its subscribers' idempotency keys (actor, source, event id) make the second copy a duplicate.
Each pending event keeps its origin (the message that wrote it, its journey and trace), so what the
relay publishes continues the same business journey and trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db import Database, metadata
from hub.events import CloudEvent, from_message_body, to_message_body
from observability.logging import get_logger
from observability.tracing import attached_context

if TYPE_CHECKING:
    from hub.actor import Emitter

log = get_logger(__name__)

outbox_table = sa.Table(
    "outbox", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("event_type", sa.String(256), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Column("origin_message_id", sa.String(64)),
    sa.Column("root_id", sa.String(256)),
    sa.Column("trace_context", sa.JSON()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Origin:
    """Where a pending event comes from: the message being handled when it was written (None outside
    one), its business journey and its trace context."""

    message_id: str | None = None
    root_id: str | None = None
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """An event to publish once the transaction that implies it commits."""

    event: CloudEvent
    origin: Origin


@dataclass(frozen=True)
class Pending:
    """An event written to the outbox and not yet published."""

    seq: int
    event: CloudEvent
    origin: Origin


class _Parent:
    """What the dispatcher reads of a parent message: its id and its journey."""

    def __init__(self, origin: Origin) -> None:
        self.message_id = origin.message_id
        self.options = {"hub_event": {"root_id": origin.root_id}} if origin.root_id else {}


class Outbox(Protocol):
    """Pending events: read them, mark them published."""

    def pending(self, *, origin: str | None = None, older_than_s: float = 0.0, limit: int = 100) -> list[Pending]:
        """Pending events, oldest first: those ``origin`` wrote (None: any), written at least
        ``older_than_s`` ago."""
        ...

    def mark_published(self, seq: int) -> None:
        """Mark one pending event published."""
        ...


def publish_pending(outbox: Outbox, emitter: Emitter, *, origin: str | None = None, older_than_s: float = 0.0,
                    limit: int = 100) -> int:
    """Publish pending events in order (each continuing its origin's journey and trace), marking each once
    its publish is confirmed; returns how many. A failed publish stops the batch (it stays pending)."""
    published = 0
    for item in outbox.pending(origin=origin, older_than_s=older_than_s, limit=limit):
        with attached_context(item.origin.trace_context):
            emitter.dispatch(item.event, parent=_Parent(item.origin))
        outbox.mark_published(item.seq)
        published += 1
    return published


def write_outgoing(connection: Connection, outgoing: Sequence[Outgoing], *, now: datetime | None = None) -> None:
    """Add ``outgoing`` to the outbox inside the caller's transaction (a store's, beside its state change)."""
    if not outgoing:
        return
    at = now or datetime.now(UTC)
    connection.execute(outbox_table.insert(), [
        {"event_id": item.event.get_id(), "event_type": item.event.get_type(), "body": to_message_body(item.event),
         "origin_message_id": item.origin.message_id, "root_id": item.origin.root_id,
         "trace_context": item.origin.trace_context or None, "created_at": at} for item in outgoing])


class SqlOutbox:
    """:class:`Outbox` in the hub's database (the ``outbox`` table)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def pending(self, *, origin: str | None = None, older_than_s: float = 0.0, limit: int = 100) -> list[Pending]:
        """See :meth:`Outbox.pending`."""
        query = sa.select(outbox_table).where(outbox_table.c.published_at.is_(None)).order_by(outbox_table.c.seq)
        if origin is not None:
            query = query.where(outbox_table.c.origin_message_id == origin)
        if older_than_s > 0:
            query = query.where(outbox_table.c.created_at <= datetime.now(UTC) - timedelta(seconds=older_than_s))
        with self._db.begin() as connection:
            rows = connection.execute(query.limit(limit)).mappings().all()
        return [Pending(seq=int(row["seq"]), event=from_message_body(row["body"]),
                        origin=Origin(message_id=row["origin_message_id"], root_id=row["root_id"],
                                      trace_context=dict(row["trace_context"] or {}))) for row in rows]

    def mark_published(self, seq: int) -> None:
        """See :meth:`Outbox.mark_published`."""
        with self._db.begin() as connection:
            connection.execute(outbox_table.update().where(outbox_table.c.seq == seq)
                               .values(published_at=datetime.now(UTC)))

    def prune(self, *, older_than: timedelta) -> int:
        """Delete events published more than ``older_than`` ago; returns how many."""
        with self._db.begin() as connection:
            result = connection.execute(outbox_table.delete().where(
                outbox_table.c.published_at < datetime.now(UTC) - older_than))
        return int(result.rowcount or 0)

    def count_pending(self) -> int:
        """How many events wait to be published."""
        with self._db.begin() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(outbox_table)
                                          .where(outbox_table.c.published_at.is_(None))).scalar_one())


class MemoryOutbox:
    """:class:`Outbox` in a list, for unit tests (a fake store adds to it where the real one writes the table)."""

    def __init__(self) -> None:
        self.items: list[tuple[Pending, bool]] = []

    def add(self, outgoing: Sequence[Outgoing]) -> None:
        """What :func:`write_outgoing` does, in memory."""
        for item in outgoing:
            self.items.append((Pending(seq=len(self.items) + 1, event=item.event, origin=item.origin), False))

    def pending(self, *, origin: str | None = None, older_than_s: float = 0.0, limit: int = 100) -> list[Pending]:
        """See :meth:`Outbox.pending` (ages are not kept here)."""
        return [p for p, done in self.items if not done and (origin is None or p.origin.message_id == origin)][:limit]

    def mark_published(self, seq: int) -> None:
        """See :meth:`Outbox.mark_published`."""
        self.items = [(p, done or p.seq == seq) for p, done in self.items]


class OutboxRelay:
    """Publishes what stayed pending longer than ``grace_s`` (its writer died or gave up) and prunes what was
    published more than ``keep`` ago; a worker runs :meth:`run_once` every few seconds."""

    def __init__(self, outbox: SqlOutbox, emitter: Emitter, *, grace_s: float = 30.0,
                 keep: timedelta = timedelta(days=7)) -> None:
        self.outbox, self.emitter = outbox, emitter
        self.grace_s, self.keep = grace_s, keep

    def run_once(self) -> int:
        """One pass: publish what is overdue and prune; returns how many were published."""
        published = 0
        while True:
            batch = publish_pending(self.outbox, self.emitter, older_than_s=self.grace_s)
            published += batch
            if batch < 100:
                break
        if published:
            log.warning("outbox relay published events their writer left pending", published=published)
        self.outbox.prune(older_than=self.keep)
        return published
