"""Which matter an event is about, and whether it is behind an ethical wall, for the fan-out.

The ERP's project events say it (``engagement_type`` of a type the policy walls, or ``conflicted_groups``);
the hub's own project and engagement announcements say it when the engagement type is walled. The fan-out
remembers each matter's verdict (:class:`MatterWalls`, in the hub's database: a record the firm cannot lose,
or a Redis restart would hold every event of a matter until its next project event), a wall for good: a matter
once walled is never shown in full outside the wall again, whatever arrives later. Any other event about a
matter (its project code in the data) waits until the matter's verdict is known, so the order events arrive in
cannot leak one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from hub.db import Database, metadata, upsert_statement
from hub.policy import EthicalWalls

__all__ = ["MIGRATIONS", "MatterWalls", "MemoryMatterWalls", "SqlMatterWalls", "matter_of", "verdict"]

#: The fan-out's migrations (Alembic branch ``fanout``).
MIGRATIONS = Path(__file__).with_name("migrations")

matter_walls = sa.Table(
    "matter_walls", metadata,
    sa.Column("matter", sa.String(128), primary_key=True),
    sa.Column("walled", sa.Boolean(), nullable=False),
    sa.Column("learnt_at", sa.DateTime(timezone=True), nullable=False),
)

#: Types whose data carries the whole verdict: engagement type and conflicted groups.
_FULL_VERDICT = frozenset({"erp.project.created.v1", "erp.project.updated.v1"})
#: Types whose data carries the engagement type only: they can wall a matter, never clear it.
_WALLING_ONLY = frozenset({"hub.project.changed.v1", "hub.engagement.activated.v1"})


def matter_of(data: Mapping[str, Any]) -> str | None:
    """The matter (project code) an event is about, or None for one about no matter (a client, a notification)."""
    for name in ("project_code", "project"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def verdict(event_type: str, data: Mapping[str, Any], walls: EthicalWalls) -> bool | None:
    """Whether this event says its matter is walled (True), not walled (False), or says nothing (None)."""
    walled_type = str(data.get("engagement_type", "")) in walls.applies_to
    if event_type in _FULL_VERDICT:
        return walled_type or bool(data.get("conflicted_groups"))
    if event_type in _WALLING_ONLY and walled_type:
        return True
    return None


class MatterWalls(Protocol):
    """Each matter's verdict as the fan-out learnt it."""

    def walled(self, matter: str) -> bool | None:
        """True behind a wall, False in the open, None not known yet."""
        ...

    def learn(self, matter: str, walled: bool) -> bool:
        """Record a verdict; the matter's verdict now (a wall is never taken down)."""
        ...


class SqlMatterWalls:
    """:class:`MatterWalls` in the hub's database (``matter_walls``). A wall is never taken down, so the walls
    this process has seen are remembered and read again without a query (an open verdict can still change)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen_walled: set[str] = set()
        # Built once: the fan-out learns a verdict from every project event it takes.
        self._learning = upsert_statement(
            db.dialect, matter_walls,
            {"matter": sa.bindparam("matter"), "walled": sa.bindparam("walled"),
             "learnt_at": sa.bindparam("learnt_at")},
            keys=["matter"], update=lambda refused: {
                "walled": sa.or_(matter_walls.c.walled, refused.walled),
                "learnt_at": sa.case((sa.and_(refused.walled, sa.not_(matter_walls.c.walled)), refused.learnt_at),
                                     else_=matter_walls.c.learnt_at)},
            returning=matter_walls.c.walled)

    def walled(self, matter: str) -> bool | None:
        """See :meth:`MatterWalls.walled`."""
        if matter in self._seen_walled:
            return True
        with self._db.autocommit() as connection:
            found = _verdict(connection, matter)
        return self._remember(matter, found)

    def learn(self, matter: str, walled: bool) -> bool:
        """See :meth:`MatterWalls.learn`: a wall overwrites an open verdict, never the other way round."""
        if matter in self._seen_walled:
            return True  # already walled for good: nothing this verdict could change
        # One statement, committed by itself (one round trip): the verdict stored and read back with RETURNING.
        with self._db.autocommit() as connection:
            found = connection.execute(self._learning, {"matter": matter, "walled": walled,
                                                        "learnt_at": datetime.now(UTC)}).scalar_one()
        return bool(self._remember(matter, bool(found)))

    def _remember(self, matter: str, found: bool | None) -> bool | None:
        if found:
            self._seen_walled.add(matter)
        return found


def _verdict(connection: sa.Connection, matter: str) -> bool | None:
    found = connection.execute(sa.select(matter_walls.c.walled).where(matter_walls.c.matter == matter)).scalar()
    return None if found is None else bool(found)


class MemoryMatterWalls:
    """:class:`MatterWalls` in memory, for unit tests."""

    def __init__(self) -> None:
        self.verdicts: dict[str, bool] = {}

    def walled(self, matter: str) -> bool | None:
        """See :meth:`MatterWalls.walled`."""
        return self.verdicts.get(matter)

    def learn(self, matter: str, walled: bool) -> bool:
        """See :meth:`MatterWalls.learn`."""
        self.verdicts[matter] = self.verdicts.get(matter, False) or walled
        return self.verdicts[matter]
