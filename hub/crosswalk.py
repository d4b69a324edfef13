"""The crosswalk: which ids in which systems are the same entity, under a canonical id the hub mints.

A record a firm cannot lose, so it lives in the hub's database (:mod:`hub.db`; SQLite in the embedded mode):

- ``crosswalk_ids``: every canonical id ever minted, its entity kind (``client``, ``project``...) and the
  id it resolves to now (itself until a merge retires it; every merge repoints what resolved to the
  merged id, so resolving is one lookup),
- ``crosswalk_identities``: each ``(system, system id, entity)`` and the live canonical id it belongs to,
  one of them per system and canonical id the primary, the others aliases a merge brought,
- ``crosswalk_lineage``: the merges and splits each id took part in, oldest first.

A canonical id is minted once, the first time a system id is seen: of two workers seeing it at once, one
inserts it and the other reads it back (:func:`hub.db.insert_new`). It is never reused: a merge retires
the merged id (it keeps resolving to the survivor) and a split mints a new one. Links, merges and splits
decide from what they read, so they run one at a time per entity kind (:meth:`Database.begin_exclusive`),
each in one transaction.

400 lines on purpose: one store, its three tables and every query on them, merges and splits included, in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db import Database, insert_new, metadata
from hub.errors import PermanentError

LineageKind = Literal["merged_from", "merged_into", "split_from", "split_to"]

crosswalk_ids = sa.Table(
    "crosswalk_ids", metadata,
    sa.Column("canonical_id", sa.String(128), primary_key=True),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("resolves_to", sa.String(128), nullable=False, index=True),
    sa.Column("minted_at", sa.DateTime(timezone=True), nullable=False),
)
crosswalk_identities = sa.Table(
    "crosswalk_identities", metadata,
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("system_id", sa.String(512), primary_key=True),
    sa.Column("entity", sa.String(64), primary_key=True),
    sa.Column("canonical_id", sa.String(128), sa.ForeignKey("crosswalk_ids.canonical_id"), nullable=False,
              index=True),
    sa.Column("is_primary", sa.Boolean(), nullable=False),
)
crosswalk_lineage = sa.Table(
    "crosswalk_lineage", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("canonical_id", sa.String(128), sa.ForeignKey("crosswalk_ids.canonical_id"), nullable=False,
              index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("other", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("identities", sa.JSON(), nullable=False),
)
#: Short names for the queries below.
_ids, _identities, _lineage = crosswalk_ids, crosswalk_identities, crosswalk_lineage
#: The columns of an identity, its key.
_KEY = ("system", "system_id", "entity")


class CrosswalkError(PermanentError):
    """A link, merge or split the crosswalk cannot perform (unknown id, wrong entity, id owned elsewhere)."""


class Identity(NamedTuple):
    """One system's id of an entity."""

    system: str
    system_id: str

    def __str__(self) -> str:
        return f"{self.system}:{self.system_id}"


@dataclass(frozen=True)
class LineageEntry:
    """One merge or split an id took part in.

    ``other`` is the id on the far side: for ``merged_from`` the id merged into this one, for
    ``merged_into`` the survivor, for ``split_to`` the id minted by the split, for ``split_from``
    the id it was split from. ``identities`` are the system ids that moved.
    """

    kind: LineageKind
    other: str
    reason: str
    at: datetime
    identities: tuple[Identity, ...]


class CrosswalkStore(Protocol):
    """Canonical ids and the identities behind them."""

    def canonical(self, entity: str, system: str, system_id: str) -> str:
        """The canonical id of ``system_id`` in ``system``, minted on first sight."""
        ...

    def link(self, canonical_id: str, entity: str, system: str, system_id: str) -> None:
        """Record that ``system_id`` in ``system`` is ``canonical_id``."""
        ...

    def resolve(self, entity: str, system: str, system_id: str) -> str | None:
        """The canonical id, if known."""
        ...

    def identities(self, canonical_id: str) -> dict[str, str]:
        """Every system's (primary) id of the entity."""
        ...


class MergingCrosswalk(CrosswalkStore, Protocol):
    """A crosswalk that also merges and splits entities and keeps their lineage."""

    def merge(self, entity: str, survivor_id: str, merged_id: str, *, reason: str, at: datetime) -> None:
        """Fold ``merged_id`` into ``survivor_id``."""
        ...

    def split(self, entity: str, canonical_id: str, system: str, system_id: str, *, reason: str,
              at: datetime) -> str:
        """Move one system id out to a newly minted canonical id, returned."""
        ...

    def resolve_canonical(self, canonical_id: str) -> str | None:
        """The live canonical id ``canonical_id`` stands for now, following merges."""
        ...

    def all_identities(self, canonical_id: str) -> list[Identity]:
        """Every system id of the entity, aliases from merges included."""
        ...

    def lineage(self, canonical_id: str) -> list[LineageEntry]:
        """The merges and splits ``canonical_id`` took part in, oldest first."""
        ...


class SqlCrosswalk:
    """:class:`MergingCrosswalk` in the hub's database (``crosswalk_ids``, ``crosswalk_identities``,
    ``crosswalk_lineage``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def canonical(self, entity: str, system: str, system_id: str) -> str:
        """The canonical id of ``system_id`` in ``system``, minted on first sight."""
        found = self.resolve(entity, system, system_id)
        if found is not None:
            return found
        fresh = _mint_id(entity)
        with self._db.begin() as connection:
            _insert_id(connection, fresh, entity)
            if insert_new(connection, _identities, _identity_row(entity, system, system_id, fresh), keys=_KEY):
                return fresh
            # Another worker minted it first (we waited for its commit): its id stands, ours was never seen.
            connection.execute(_ids.delete().where(_ids.c.canonical_id == fresh))
            owner = _owner(connection, entity, system, system_id)
        if owner is None:  # not expected: identities are moved, never deleted
            raise RuntimeError(f"crosswalk lost {entity}:{system}:{system_id} while minting it")
        return owner

    def link(self, canonical_id: str, entity: str, system: str, system_id: str) -> None:
        """Record that ``system_id`` in ``system`` is ``canonical_id`` (its survivor, if merged).

        The id becomes the entity's primary id in ``system``; an id linked elsewhere before moves here.
        Raises :class:`CrosswalkError` for a canonical id the crosswalk never minted or of another kind.
        """
        if self._linked(canonical_id, entity, system, system_id):
            return  # the usual case (a re-run, a workspace seen again): no lock taken
        with self._db.begin_exclusive(_lock(entity)) as connection:
            target = _live(connection, canonical_id, entity)
            previous = _owner(connection, entity, system, system_id)
            # Mints take no lock: one may be inserting this very identity now; then it is the previous owner.
            if previous is None and not insert_new(connection, _identities,
                                                   _identity_row(entity, system, system_id, target, primary=False),
                                                   keys=_KEY):
                previous = _owner(connection, entity, system, system_id)
            if previous is not None and previous != target:
                connection.execute(_identities.update().where(*_key(entity, system, system_id))
                                   .values(canonical_id=target, is_primary=False))
                _refill_primary(connection, previous, system)
            connection.execute(_identities.update().where(
                _identities.c.canonical_id == target, _identities.c.system == system, _identities.c.is_primary,
            ).values(is_primary=False))
            connection.execute(_identities.update().where(*_key(entity, system, system_id)).values(is_primary=True))

    def resolve(self, entity: str, system: str, system_id: str) -> str | None:
        """The live canonical id of ``system_id`` in ``system``, if known (one lookup)."""
        with self._db.begin() as connection:
            return _owner(connection, entity, system, system_id)

    def lookup(self, system: str, system_id: str) -> dict[str, str]:
        """Entity kind to live canonical id of ``system_id`` in ``system``, for every kind it is known as."""
        with self._db.begin() as connection:
            rows = connection.execute(sa.select(_identities.c.entity, _identities.c.canonical_id).where(
                _identities.c.system == system, _identities.c.system_id == system_id)).all()
        return {str(entity): str(canonical_id) for entity, canonical_id in rows}

    def resolve_many(self, entity: str, system: str, system_ids: list[str]) -> dict[str, str]:
        """The live canonical id of each of ``system_ids`` the crosswalk knows, in one query."""
        if not system_ids:
            return {}
        with self._db.begin() as connection:
            rows = connection.execute(sa.select(_identities.c.system_id, _ids.c.resolves_to).join(
                _ids, _ids.c.canonical_id == _identities.c.canonical_id).where(
                _identities.c.entity == entity, _identities.c.system == system,
                _identities.c.system_id.in_(system_ids))).all()
        return {str(system_id): str(canonical) for system_id, canonical in rows}

    def iter_links(self, entity: str, system: str, *, to: str | None = None, page_size: int = 1000
                   ) -> Iterator[tuple[str, str, str | None]]:
        """Every id of ``entity`` in ``system`` in id order, with its canonical id and (``to``) the entity's primary
        id in another system or None: read in pages, for a reconciliation of every record."""
        other = _identities.alias("other")
        columns = [_identities.c.system_id, _identities.c.canonical_id,
                   other.c.system_id.label("linked") if to is not None else sa.null().label("linked")]
        query = sa.select(*columns).where(_identities.c.entity == entity, _identities.c.system == system)
        if to is not None:
            query = query.select_from(_identities.outerjoin(other, sa.and_(
                other.c.canonical_id == _identities.c.canonical_id, other.c.system == to, other.c.is_primary)))
        after: str | None = None
        while True:
            page = query if after is None else query.where(_identities.c.system_id > after)
            with self._db.begin() as connection:
                rows = connection.execute(page.order_by(_identities.c.system_id).limit(page_size)).all()
            for row in rows:
                yield str(row.system_id), str(row.canonical_id), None if row.linked is None else str(row.linked)
            if len(rows) < page_size:
                return
            after = str(rows[-1].system_id)

    def resolve_canonical(self, canonical_id: str) -> str | None:
        """The live canonical id ``canonical_id`` stands for now, following merges (one lookup), or None."""
        with self._db.begin() as connection:
            found = connection.execute(sa.select(_ids.c.resolves_to)
                                       .where(_ids.c.canonical_id == canonical_id)).scalar()
        return None if found is None else str(found)

    def identities(self, canonical_id: str) -> dict[str, str]:
        """System to primary id of the entity, following merges (empty when unknown).

        After a merge the survivor's own ids stay primary; a system only the merged id knew is added.
        Ids that lost that contest are aliases, listed by :meth:`all_identities`.
        """
        return {identity.system: identity.system_id for identity, primary in self._members(canonical_id) if primary}

    def all_identities(self, canonical_id: str) -> list[Identity]:
        """Every system id of the entity, following merges, aliases included (sorted; empty when unknown)."""
        return [identity for identity, _ in self._members(canonical_id)]

    def entity(self, canonical_id: str) -> str | None:
        """The entity kind of a canonical id, if known."""
        with self._db.begin() as connection:
            found = connection.execute(sa.select(_ids.c.entity).where(_ids.c.canonical_id == canonical_id)).scalar()
        return None if found is None else str(found)

    def merge(self, entity: str, survivor_id: str, merged_id: str, *, reason: str, at: datetime) -> None:
        """Fold ``merged_id`` into ``survivor_id``: its system ids resolve to the survivor from now on.

        ``merged_id`` stays resolvable through :meth:`resolve_canonical`; both ids record the merge in
        their lineage. Either id may itself have been merged before: the live ids are merged. Merging
        two ids that already stand for the same entity does nothing. Raises :class:`CrosswalkError`
        for an unknown id or one of another entity kind.
        """
        when = _utc(at)
        with self._db.begin_exclusive(_lock(entity)) as connection:
            survivor, merged = _live(connection, survivor_id, entity), _live(connection, merged_id, entity)
            if survivor == merged:
                return
            moved = tuple(identity for identity, _ in _members_of(connection, merged))
            # The survivor's primaries stay; the merged id's stay primary only in systems the survivor lacks.
            survivor_systems = sa.select(_identities.c.system).where(
                _identities.c.canonical_id == survivor, _identities.c.is_primary)
            connection.execute(_identities.update().where(
                _identities.c.canonical_id == merged, _identities.c.system.in_(survivor_systems),
            ).values(is_primary=False))
            connection.execute(_identities.update().where(_identities.c.canonical_id == merged)
                               .values(canonical_id=survivor))
            connection.execute(_ids.update().where(_ids.c.resolves_to == merged).values(resolves_to=survivor))
            _note(connection, survivor, "merged_from", merged, reason, when, moved)
            _note(connection, merged, "merged_into", survivor, reason, when, moved)

    def split(self, entity: str, canonical_id: str, system: str, system_id: str, *, reason: str,
              at: datetime) -> str:
        """Move ``system_id`` in ``system`` out of ``canonical_id`` to a newly minted canonical id.

        Both ids record the split in their lineage. Raises :class:`CrosswalkError` when the id is
        unknown, of another entity kind, or ``system_id`` does not belong to it.
        """
        when = _utc(at)
        fresh = _mint_id(entity)
        with self._db.begin_exclusive(_lock(entity)) as connection:
            live = _live(connection, canonical_id, entity)
            owner = _owner(connection, entity, system, system_id)
            if owner != live:
                belongs = f"belongs to {owner!r}" if owner else "is not in the crosswalk"
                raise CrosswalkError(f"{system}:{system_id} is not an identity of {live!r}: it {belongs}")
            _insert_id(connection, fresh, entity)
            connection.execute(_identities.update().where(*_key(entity, system, system_id))
                               .values(canonical_id=fresh, is_primary=True))
            _refill_primary(connection, live, system)
            moved = (Identity(system, system_id),)
            _note(connection, live, "split_to", fresh, reason, when, moved)
            _note(connection, fresh, "split_from", live, reason, when, moved)
        return fresh

    def lineage(self, canonical_id: str) -> list[LineageEntry]:
        """The merges and splits this very id took part in, oldest first (not those of its survivor)."""
        with self._db.begin() as connection:
            rows = connection.execute(sa.select(_lineage).where(_lineage.c.canonical_id == canonical_id)
                                      .order_by(_lineage.c.seq)).mappings().all()
        return [LineageEntry(kind=cast(LineageKind, row["kind"]), other=row["other"], reason=row["reason"],
                             at=_utc(row["at"], stored=True),
                             identities=tuple(Identity(i["system"], i["system_id"]) for i in row["identities"]))
                for row in rows]

    def _linked(self, canonical_id: str, entity: str, system: str, system_id: str) -> bool:
        """Whether ``system_id`` already is the primary id in ``system`` of what ``canonical_id`` resolves to."""
        with self._db.begin() as connection:
            primary = connection.execute(
                sa.select(_identities.c.is_primary)
                .join(_ids, _ids.c.resolves_to == _identities.c.canonical_id)
                .where(_ids.c.canonical_id == canonical_id, _ids.c.entity == entity, *_key(entity, system, system_id))
            ).scalar()
        return bool(primary)

    def _members(self, canonical_id: str) -> list[tuple[Identity, bool]]:
        """Every identity of what ``canonical_id`` resolves to, with whether it is primary: one statement,
        so a merge is seen whole or not at all."""
        with self._db.begin() as connection:
            rows = connection.execute(
                sa.select(_identities.c.system, _identities.c.system_id, _identities.c.is_primary)
                .join(_ids, _ids.c.resolves_to == _identities.c.canonical_id)
                .where(_ids.c.canonical_id == canonical_id)
                .order_by(_identities.c.system, _identities.c.system_id)).all()
        return [(Identity(str(system), str(system_id)), bool(primary)) for system, system_id, primary in rows]


def _lock(entity: str) -> str:
    """What links, merges and splits of one entity kind take turns on."""
    return f"crosswalk:{entity}"


def _key(entity: str, system: str, system_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (_identities.c.system == system, _identities.c.system_id == system_id, _identities.c.entity == entity)


def _identity_row(entity: str, system: str, system_id: str, canonical_id: str, *,
                  primary: bool = True) -> dict[str, Any]:
    return {"system": system, "system_id": system_id, "entity": entity, "canonical_id": canonical_id,
            "is_primary": primary}


def _insert_id(connection: Connection, canonical_id: str, entity: str) -> None:
    connection.execute(_ids.insert().values(canonical_id=canonical_id, entity=entity, resolves_to=canonical_id,
                                            minted_at=datetime.now(UTC)))


def _owner(connection: Connection, entity: str, system: str, system_id: str) -> str | None:
    """The live canonical id an identity belongs to, if any."""
    found = connection.execute(sa.select(_identities.c.canonical_id).where(*_key(entity, system, system_id))).scalar()
    return None if found is None else str(found)


def _live(connection: Connection, canonical_id: str, entity: str) -> str:
    """The live id ``canonical_id`` resolves to; :class:`CrosswalkError` if unknown or of another kind."""
    row = connection.execute(sa.select(_ids.c.resolves_to, _ids.c.entity)
                             .where(_ids.c.canonical_id == canonical_id)).first()
    if row is None:
        raise CrosswalkError(f"unknown canonical id {canonical_id!r}")
    if row.entity != entity:
        raise CrosswalkError(f"canonical id {row.resolves_to!r} is a {row.entity}, not a {entity}")
    return str(row.resolves_to)


def _members_of(connection: Connection, canonical_id: str) -> list[tuple[Identity, bool]]:
    rows = connection.execute(sa.select(_identities.c.system, _identities.c.system_id, _identities.c.is_primary)
                              .where(_identities.c.canonical_id == canonical_id)
                              .order_by(_identities.c.system, _identities.c.system_id)).all()
    return [(Identity(str(system), str(system_id)), bool(primary)) for system, system_id, primary in rows]


def _refill_primary(connection: Connection, canonical_id: str, system: str) -> None:
    """After an identity left ``canonical_id``: if it was the primary in ``system``, the first remaining
    alias there takes its place."""
    in_system = (_identities.c.canonical_id == canonical_id, _identities.c.system == system)
    if connection.execute(sa.select(_identities.c.system_id).where(*in_system, _identities.c.is_primary)).first():
        return
    first = connection.execute(sa.select(_identities.c.system_id, _identities.c.entity).where(*in_system)
                               .order_by(_identities.c.system_id).limit(1)).first()
    if first is not None:
        connection.execute(_identities.update().where(*_key(first.entity, system, first.system_id))
                           .values(is_primary=True))


def _note(connection: Connection, canonical_id: str, kind: LineageKind, other: str, reason: str, at: datetime,
          moved: tuple[Identity, ...]) -> None:
    connection.execute(_lineage.insert().values(
        canonical_id=canonical_id, kind=kind, other=other, reason=reason, at=at,
        identities=[{"system": i.system, "system_id": i.system_id} for i in moved]))


def _mint_id(entity: str) -> str:
    return f"{entity}_{uuid.uuid4().hex[:20]}"


def _utc(at: datetime, *, stored: bool = False) -> datetime:
    """``at`` in UTC. SQLite hands back what it stored without its zone (it was UTC); a caller's naive time
    is refused, since its zone is unknown."""
    if at.tzinfo is None:
        if stored:
            return at.replace(tzinfo=UTC)
        raise ValueError("lineage times must be timezone-aware")
    return at.astimezone(UTC)
