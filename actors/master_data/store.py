"""Master data's own state: the canonical record of each entity (a system of record, in the hub's
database), which projects belong to a client (to push a client's new name onto its workspaces), and the
count of ignored non-authoritative updates.

A save writes the record and the announcements its change implies to the outbox in one transaction
(:mod:`hub.outbox`), so a worker killed between the two cannot leave a change unannounced.
:class:`MemoryMasterDataStore` is the fake for unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from actors.master_data.model import CanonicalState
from hub.db import Database, metadata, upsert
from hub.outbox import MemoryOutbox, Outbox, Outgoing, SqlOutbox, write_outgoing

#: This store's migrations (Alembic), run by ``hub db upgrade`` and at start.
MIGRATIONS = Path(__file__).with_name("migrations")

canonical_records = sa.Table(
    "canonical_records", metadata,
    sa.Column("canonical_id", sa.String(128), primary_key=True),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("client_id", sa.String(128), index=True),  # a project's client, for projects_of
    sa.Column("state", sa.JSON(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
ignored_updates = sa.Table(
    "ignored_updates", metadata,
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
)


class MasterDataStore(Protocol):
    """Canonical records, their relations, and the outbox their saves write to."""

    @property
    def outbox(self) -> Outbox:
        """Where :meth:`save` writes the announcements."""
        ...

    def load(self, canonical_id: str) -> CanonicalState | None:
        """The canonical record, if any."""
        ...

    def load_many(self, canonical_ids: Sequence[str]) -> dict[str, CanonicalState]:
        """The canonical records of these ids that exist (a reconciliation reads them a page at a time)."""
        ...

    def save(self, state: CanonicalState, *, announce: Sequence[Outgoing] = ()) -> None:
        """Store the canonical record and add ``announce`` to the outbox, in one transaction."""
        ...

    def projects_of(self, client_id: str) -> list[str]:
        """The ids of the projects whose record names this client, sorted."""
        ...

    def count_ignored(self, system: str, count: int) -> None:
        """Count updates ignored because ``system`` is not authoritative for their fields."""
        ...

    def ignored(self, system: str) -> int:
        """How many updates from ``system`` were ignored."""
        ...


def _client_of(state: CanonicalState) -> str | None:
    client = state.values().get("client_id") if state.entity == "project" else None
    return str(client) if client else None


class SqlMasterDataStore:
    """:class:`MasterDataStore` in the hub's database (``canonical_records``, ``ignored_updates``, ``outbox``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._outbox = SqlOutbox(db)

    @property
    def outbox(self) -> Outbox:
        """See :attr:`MasterDataStore.outbox`."""
        return self._outbox

    def load(self, canonical_id: str) -> CanonicalState | None:
        """See :meth:`MasterDataStore.load`."""
        with self._db.begin() as connection:
            raw = connection.execute(sa.select(canonical_records.c.state)
                                     .where(canonical_records.c.canonical_id == canonical_id)).scalar()
        return None if raw is None else CanonicalState.model_validate(raw)

    def load_many(self, canonical_ids: Sequence[str]) -> dict[str, CanonicalState]:
        """See :meth:`MasterDataStore.load_many`."""
        if not canonical_ids:
            return {}
        with self._db.begin() as connection:
            rows = connection.execute(sa.select(canonical_records.c.canonical_id, canonical_records.c.state)
                                      .where(canonical_records.c.canonical_id.in_(list(canonical_ids)))).all()
        return {str(cid): CanonicalState.model_validate(raw) for cid, raw in rows}

    def save(self, state: CanonicalState, *, announce: Sequence[Outgoing] = ()) -> None:
        """See :meth:`MasterDataStore.save`."""
        with self._db.begin() as connection:
            upsert(connection, canonical_records, {
                "canonical_id": state.canonical_id, "entity": state.entity, "client_id": _client_of(state),
                "state": state.model_dump(mode="json"), "updated_at": datetime.now(UTC)}, keys=["canonical_id"])
            write_outgoing(connection, announce)

    def projects_of(self, client_id: str) -> list[str]:
        """See :meth:`MasterDataStore.projects_of`."""
        with self._db.begin() as connection:
            rows = connection.execute(sa.select(canonical_records.c.canonical_id)
                                      .where(canonical_records.c.client_id == client_id)
                                      .order_by(canonical_records.c.canonical_id)).scalars().all()
        return [str(row) for row in rows]

    def count_ignored(self, system: str, count: int) -> None:
        """See :meth:`MasterDataStore.count_ignored`."""
        with self._db.begin() as connection:
            upsert(connection, ignored_updates, {"system": system, "count": count}, keys=["system"],
                   update=lambda excluded: {"count": ignored_updates.c.count + excluded.count})

    def ignored(self, system: str) -> int:
        """See :meth:`MasterDataStore.ignored`."""
        with self._db.begin() as connection:
            count = connection.execute(sa.select(ignored_updates.c.count)
                                       .where(ignored_updates.c.system == system)).scalar()
        return int(count or 0)


class MemoryMasterDataStore:
    """:class:`MasterDataStore` in dicts, for unit tests."""

    def __init__(self) -> None:
        self.states: dict[str, CanonicalState] = {}
        self.counts: dict[str, int] = {}
        self.memory_outbox = MemoryOutbox()

    @property
    def outbox(self) -> Outbox:
        """See :attr:`MasterDataStore.outbox`."""
        return self.memory_outbox

    def load(self, canonical_id: str) -> CanonicalState | None:
        """See :meth:`MasterDataStore.load`."""
        return self.states.get(canonical_id)

    def load_many(self, canonical_ids: Sequence[str]) -> dict[str, CanonicalState]:
        """See :meth:`MasterDataStore.load_many`."""
        return {cid: self.states[cid] for cid in canonical_ids if cid in self.states}

    def save(self, state: CanonicalState, *, announce: Sequence[Outgoing] = ()) -> None:
        """See :meth:`MasterDataStore.save`."""
        self.states[state.canonical_id] = state
        self.memory_outbox.add(announce)

    def projects_of(self, client_id: str) -> list[str]:
        """See :meth:`MasterDataStore.projects_of`."""
        return sorted(cid for cid, state in self.states.items() if _client_of(state) == client_id)

    def count_ignored(self, system: str, count: int) -> None:
        """See :meth:`MasterDataStore.count_ignored`."""
        self.counts[system] = self.counts.get(system, 0) + count

    def ignored(self, system: str) -> int:
        """See :meth:`MasterDataStore.ignored`."""
        return self.counts.get(system, 0)
