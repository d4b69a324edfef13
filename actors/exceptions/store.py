"""The exception inbox: every case raised to an owner, kept in the hub's database until someone resolves it.

- ``exception_cases``: one row per case, named by what went wrong and where (its kind and business key): the
  owner, the latest evidence, first and last seen, how often it was raised, and its state (``open``,
  ``acknowledged``, ``resolved``) with who changed it, when and why;
- ``exception_occurrences``: each raise of a case (its ``exception_id``, so a raise delivered twice counts once)
  and, for a dead letter, the actor and message to replay when the case is resolved with a retry.

The same case raised again is one entry, counted; raised again after it was resolved, it opens again.
:class:`SqlExceptionInbox` is used by the actors, ``hub exceptions``, the API and the console;
:class:`MemoryExceptionInbox` is the fake for unit tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

import sqlalchemy as sa

from hub.db import Database, insert_new, metadata

#: This store's migrations (Alembic), run by ``hub db upgrade`` and at start.
MIGRATIONS = Path(__file__).with_name("migrations")
#: A case's state.
State = Literal["open", "acknowledged", "resolved"]
STATES: tuple[State, ...] = ("open", "acknowledged", "resolved")
_NAMESPACE = uuid.UUID("0e7f3c52-9b1d-4b8e-a5e3-6d2c8f1a4b70")

exception_cases = sa.Table(
    "exception_cases", metadata,
    sa.Column("case_id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("project_code", sa.String(256)),
    sa.Column("event_id", sa.String(256)),
    sa.Column("event_type", sa.String(200)),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("occurrences", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state_by", sa.String(128)),
    sa.Column("note", sa.Text()),
    sa.Index("exception_cases_state_owner", "state", "owner", "first_seen"),
)
exception_occurrences = sa.Table(
    "exception_occurrences", metadata,
    sa.Column("exception_id", sa.String(256), primary_key=True),
    sa.Column("case_id", sa.String(36), nullable=False, index=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128)),
    sa.Column("message_id", sa.String(128)),
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
)


def case_id(kind: str, subject: str) -> str:
    """The id of the case of ``kind`` about ``subject``: the same wherever and however often it is raised."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}\x00{subject}"))


@dataclass(frozen=True)
class Raised:
    """One raise of a case, as ``hub.exception.raised.v1`` says it; ``actor`` and ``message_id`` name the dead
    letter behind it, if any."""

    exception_id: str
    owner: str
    kind: str
    subject: str
    severity: str
    detail: str
    at: datetime
    project_code: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    actor: str | None = None
    message_id: str | None = None

    @property
    def case_id(self) -> str:
        """The case it is a raise of."""
        return case_id(self.kind, self.subject)


@dataclass(frozen=True)
class Case:
    """One entry of the inbox."""

    case_id: str
    owner: str
    kind: str
    subject: str
    severity: str
    detail: str
    project_code: str | None
    event_id: str | None
    event_type: str | None
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    state: State
    state_at: datetime
    state_by: str | None = None
    note: str | None = None
    #: The dead letters behind it not replayed yet: (actor, message id).
    dead_letters: tuple[tuple[str, str], ...] = field(default=())

    def age(self, now: datetime) -> timedelta:
        """How long since it was first seen."""
        return now - self.first_seen

    def as_dict(self) -> dict[str, object]:
        """As the CLI's ``--output json`` and the API answer it."""
        return {"id": self.case_id, "owner": self.owner, "kind": self.kind, "subject": self.subject,
                "severity": self.severity, "detail": self.detail, "project_code": self.project_code,
                "event_id": self.event_id, "event_type": self.event_type,
                "first_seen": self.first_seen.isoformat(), "last_seen": self.last_seen.isoformat(),
                "occurrences": self.occurrences, "state": self.state, "state_at": self.state_at.isoformat(),
                "state_by": self.state_by, "note": self.note,
                "dead_letters": [{"actor": actor, "message_id": message} for actor, message in self.dead_letters]}


def _aware(moment: datetime) -> datetime:
    """A stored time as UTC (SQLite gives it back naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UnknownCase(LookupError):
    """No case has this id (or the prefix names none, or several)."""


class ExceptionInbox(Protocol):
    """The cases raised to owners and their states."""

    def record(self, raised: Raised) -> Case:
        """Add one raise (a raise already recorded changes nothing); returns its case."""
        ...

    def cases(self, *, owner: str | None = None, states: Sequence[State] = ("open", "acknowledged"),
              seen_before: datetime | None = None, limit: int = 500) -> list[Case]:
        """Cases in ``states`` (of ``owner``; first seen before ``seen_before``), the oldest first."""
        ...

    def case(self, case_id: str) -> Case:
        """One case by its id, or by a prefix of it naming one case (:class:`UnknownCase` otherwise)."""
        ...

    def change(self, case_id: str, state: State, *, by: str, note: str | None = None,
               at: datetime | None = None) -> Case:
        """Set a case's state (saying who, and why)."""
        ...

    def replayed(self, case_id: str, message_ids: Sequence[str], *, at: datetime | None = None) -> None:
        """Note that these dead letters of the case were replayed."""
        ...


def _case(row: sa.RowMapping, letters: Sequence[tuple[str, str]] = ()) -> Case:
    aware = _aware
    return Case(case_id=row["case_id"], owner=row["owner"], kind=row["kind"], subject=row["subject"],
                severity=row["severity"], detail=row["detail"], project_code=row["project_code"],
                event_id=row["event_id"], event_type=row["event_type"], first_seen=aware(row["first_seen"]),
                last_seen=aware(row["last_seen"]), occurrences=int(row["occurrences"]), state=row["state"],
                state_at=aware(row["state_at"]), state_by=row["state_by"], note=row["note"],
                dead_letters=tuple(letters))


class SqlExceptionInbox:
    """:class:`ExceptionInbox` in the hub's database (see the module docstring for the tables)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, raised: Raised) -> Case:
        """See :meth:`ExceptionInbox.record`."""
        key, cases = raised.case_id, exception_cases
        with self._db.begin() as connection:
            new = insert_new(connection, exception_occurrences, {
                "exception_id": raised.exception_id, "case_id": key, "seen_at": raised.at,
                "actor": raised.actor, "message_id": raised.message_id}, keys=["exception_id"])
            evidence = {"owner": raised.owner, "severity": raised.severity, "detail": raised.detail,
                        "project_code": raised.project_code, "event_id": raised.event_id,
                        "event_type": raised.event_type}
            # Of two raises of a new case at once, one inserts it and the other waits, then counts itself.
            if new and not insert_new(connection, cases, {
                    "case_id": key, "kind": raised.kind, "subject": raised.subject, **evidence,
                    "first_seen": raised.at, "last_seen": raised.at, "occurrences": 1, "state": "open",
                    "state_at": raised.at}, keys=["case_id"]):
                row = connection.execute(sa.select(cases.c.state, cases.c.first_seen, cases.c.last_seen)
                                         .where(cases.c.case_id == key).with_for_update()).one()
                reopened = {"state": "open", "state_at": raised.at, "state_by": None, "note": "raised again"} \
                    if row.state == "resolved" else {}
                connection.execute(cases.update().where(cases.c.case_id == key).values(
                    **evidence, last_seen=max(_aware(row.last_seen), raised.at),
                    first_seen=min(_aware(row.first_seen), raised.at), occurrences=cases.c.occurrences + 1,
                    **reopened))
            return self._one(connection, key)

    def cases(self, *, owner: str | None = None, states: Sequence[State] = ("open", "acknowledged"),
              seen_before: datetime | None = None, limit: int = 500) -> list[Case]:
        """See :meth:`ExceptionInbox.cases`."""
        query = sa.select(exception_cases).where(exception_cases.c.state.in_(list(states)))
        if owner is not None:
            query = query.where(exception_cases.c.owner == owner)
        if seen_before is not None:
            query = query.where(exception_cases.c.first_seen <= seen_before)
        query = query.order_by(exception_cases.c.first_seen, exception_cases.c.case_id).limit(limit)
        with self._db.begin() as connection:
            rows = connection.execute(query).mappings().all()
            letters = self._letters(connection, [row["case_id"] for row in rows])
        return [_case(row, letters.get(row["case_id"], ())) for row in rows]

    def case(self, case_id: str) -> Case:
        """See :meth:`ExceptionInbox.case`."""
        with self._db.begin() as connection:
            return self._one(connection, case_id, prefix=True)

    def change(self, case_id: str, state: State, *, by: str, note: str | None = None,
               at: datetime | None = None) -> Case:
        """See :meth:`ExceptionInbox.change`."""
        with self._db.begin() as connection:
            key = self._one(connection, case_id, prefix=True).case_id
            connection.execute(exception_cases.update().where(exception_cases.c.case_id == key).values(
                state=state, state_at=at or datetime.now(UTC), state_by=by[:128], note=note))
            return self._one(connection, key)

    def replayed(self, case_id: str, message_ids: Sequence[str], *, at: datetime | None = None) -> None:
        """See :meth:`ExceptionInbox.replayed`."""
        occurrences = exception_occurrences
        with self._db.begin() as connection:
            connection.execute(occurrences.update().where(occurrences.c.case_id == case_id,
                                                          occurrences.c.message_id.in_(list(message_ids)))
                               .values(replayed_at=at or datetime.now(UTC)))

    def _one(self, connection: sa.Connection, key: str, *, prefix: bool = False) -> Case:
        column = exception_cases.c.case_id
        condition: sa.ColumnElement[bool]
        if prefix and len(key) < 36:
            if len(key) < 6:
                raise UnknownCase(f"case id {key!r}: give at least 6 characters")
            condition = column.like(f"{key.replace('%', '').replace('_', '')}%")
        else:
            condition = column == key
        rows = connection.execute(sa.select(exception_cases).where(condition).limit(2)).mappings().all()
        if len(rows) != 1:
            raise UnknownCase(f"no case {key!r}" if not rows else f"case id {key!r} names several cases")
        letters = self._letters(connection, [rows[0]["case_id"]])
        return _case(rows[0], letters.get(rows[0]["case_id"], ()))

    @staticmethod
    def _letters(connection: sa.Connection, keys: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        occurrences = exception_occurrences
        if not keys:
            return {}
        rows = connection.execute(sa.select(occurrences.c.case_id, occurrences.c.actor, occurrences.c.message_id)
                                  .where(occurrences.c.case_id.in_(list(keys)), occurrences.c.message_id.is_not(None),
                                         occurrences.c.replayed_at.is_(None))
                                  .order_by(occurrences.c.seen_at)).all()
        found: dict[str, list[tuple[str, str]]] = {}
        for key, actor, message in rows:
            found.setdefault(key, []).append((str(actor), str(message)))
        return found


class MemoryExceptionInbox:
    """:class:`ExceptionInbox` in dicts, for unit tests."""

    def __init__(self) -> None:
        self.by_id: dict[str, Case] = {}
        self.seen: dict[str, Raised] = {}
        self.replays: set[str] = set()

    def record(self, raised: Raised) -> Case:
        """See :meth:`ExceptionInbox.record`."""
        key = raised.case_id
        if raised.exception_id not in self.seen:
            self.seen[raised.exception_id] = raised
            old = self.by_id.get(key)
            if old is None:
                self.by_id[key] = Case(key, raised.owner, raised.kind, raised.subject, raised.severity, raised.detail,
                                       raised.project_code, raised.event_id, raised.event_type, raised.at, raised.at,
                                       1, "open", raised.at)
            else:
                state = {"state": "open", "state_at": raised.at, "state_by": None, "note": "raised again"} \
                    if old.state == "resolved" else {}
                self.by_id[key] = replace(old, owner=raised.owner, severity=raised.severity, detail=raised.detail,
                                          last_seen=max(old.last_seen, raised.at), occurrences=old.occurrences + 1,
                                          **state)  # type: ignore[arg-type]
        return self.case(key)

    def cases(self, *, owner: str | None = None, states: Sequence[State] = ("open", "acknowledged"),
              seen_before: datetime | None = None, limit: int = 500) -> list[Case]:
        """See :meth:`ExceptionInbox.cases`."""
        found = [self.case(c.case_id) for c in self.by_id.values() if c.state in states
                 and (owner is None or c.owner == owner) and (seen_before is None or c.first_seen <= seen_before)]
        return sorted(found, key=lambda c: (c.first_seen, c.case_id))[:limit]

    def case(self, case_id: str) -> Case:
        """See :meth:`ExceptionInbox.case`."""
        matches = [c for key, c in self.by_id.items() if key.startswith(case_id) and len(case_id) >= 6]
        if len(matches) != 1:
            raise UnknownCase(f"no case {case_id!r}")
        letters = tuple((r.actor, r.message_id) for r in self.seen.values()
                        if r.case_id == matches[0].case_id and r.actor and r.message_id
                        and r.message_id not in self.replays)
        return replace(matches[0], dead_letters=letters)

    def change(self, case_id: str, state: State, *, by: str, note: str | None = None,
               at: datetime | None = None) -> Case:
        """See :meth:`ExceptionInbox.change`."""
        old = self.case(case_id)
        self.by_id[old.case_id] = replace(old, state=state, state_at=at or datetime.now(UTC), state_by=by, note=note)
        return self.case(old.case_id)

    def replayed(self, case_id: str, message_ids: Sequence[str], *, at: datetime | None = None) -> None:
        """See :meth:`ExceptionInbox.replayed`."""
        self.replays.update(message_ids)
