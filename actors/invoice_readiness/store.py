"""Where the invoice-readiness gate keeps its facts and the verdicts it emitted: the hub's database.

- ``readiness_projects``: each project the gate has facts of, with its meta (engagement type and
  jurisdiction; NULL until an invoice of the project is known),
- ``readiness_facts``: the winning event of each fact of a project, named by
  :func:`actors.invoice_readiness.facts.field_of` (``inv:<number>``, ``doc:<id>``, ``ret:<id>``, ``env:<id>``),
- ``readiness_invoices``: which project an invoice belongs to,
- ``readiness_verdicts``: the verdict last emitted per invoice, with its transition sequence.

A write stores facts, the verdicts they changed and the ``hub.invoice.readiness_changed.v1`` events
announcing them (in the outbox, :mod:`hub.outbox`) in one transaction, so a worker killed before its
publish leaves the events pending, never a verdict saved and untold. The facts come from the systems of
record (the ERP, the document platform): ``hub readiness rebuild`` writes them again from there.

The actor, ``hub readiness`` and the hard-stop endpoint (:mod:`actors.invoice_readiness.router`) use
:class:`SqlReadinessStore`; :class:`MemoryReadinessStore` is the fake for unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from actors.invoice_readiness.facts import (
    ProjectFacts,
    ProjectMeta,
    Verdict,
    dump_event,
    event_of,
    event_record,
    field_of,
    project_facts,
    stored_facts,
)
from actors.invoice_readiness.logic import Event, HoldReason, InvoiceDrafted
from hub.db import Database, metadata, upsert
from hub.outbox import MemoryOutbox, Outbox, Outgoing, SqlOutbox, write_outgoing

#: This store's migrations (Alembic), run by ``hub db upgrade`` and at start.
MIGRATIONS = Path(__file__).with_name("migrations")

readiness_projects = sa.Table(
    "readiness_projects", metadata,
    sa.Column("project_code", sa.String(256), primary_key=True),
    # The meta: all four set, or all NULL (no invoice of the project known yet).
    sa.Column("engagement_type", sa.String(64)),
    sa.Column("region", sa.String(64)),
    sa.Column("country", sa.String(64)),
    sa.Column("client_id", sa.String(256)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
readiness_facts = sa.Table(
    "readiness_facts", metadata,
    sa.Column("project_code", sa.String(256), sa.ForeignKey("readiness_projects.project_code"), primary_key=True),
    sa.Column("fact", sa.String(300), primary_key=True),
    sa.Column("record", sa.JSON(), nullable=False),
)
readiness_invoices = sa.Table(
    "readiness_invoices", metadata,
    sa.Column("invoice_number", sa.String(256), primary_key=True),
    sa.Column("project_code", sa.String(256), nullable=False),
)
readiness_verdicts = sa.Table(
    "readiness_verdicts", metadata,
    sa.Column("invoice_number", sa.String(256), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("reasons", sa.JSON(), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)
_META = ("engagement_type", "region", "country", "client_id")


@dataclass(frozen=True)
class HeldInvoice:
    """An invoice the gate holds: its verdict's reasons, and since when the verdict stands."""

    invoice_number: str
    project_code: str | None
    reasons: tuple[HoldReason, ...]
    #: When the gate last changed its verdict on the invoice (to this set of reasons).
    since: datetime

    @property
    def codes(self) -> tuple[str, ...]:
        """Its hold codes, each once, sorted."""
        return tuple(sorted({reason.code for reason in self.reasons}))

    @property
    def owners(self) -> tuple[str, ...]:
        """Who takes the next steps, each once, sorted."""
        return tuple(sorted({reason.owner for reason in self.reasons if reason.owner}))


class ReadinessStore(Protocol):
    """The gate's facts, the verdicts it emitted, and the outbox its writes add their events to."""

    @property
    def outbox(self) -> Outbox:
        """Where :meth:`store` and :meth:`replace` write the events they are given."""
        ...

    def load(self, code: str) -> ProjectFacts:
        """The project's facts as stored."""
        ...

    def meta(self, code: str) -> ProjectMeta | None:
        """The project's stored meta (None: no invoice of it is known to the gate)."""
        ...

    def facts_of_invoice(self, number: str) -> tuple[str | None, ProjectFacts]:
        """The invoice's project and that project's facts, read together (no project, no facts: the gate
        has not seen the invoice drafted)."""
        ...

    def store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None, *,
              verdicts: Mapping[str, Verdict] | None = None, announce: Sequence[Outgoing] = ()) -> None:
        """Add facts (and the meta, when given) to the project's, keep ``verdicts`` as the last emitted per
        invoice and add ``announce`` to the outbox: in one transaction."""
        ...

    def replace(self, code: str, events: Iterable[Event], meta: ProjectMeta | None, *,
                verdicts: Mapping[str, Verdict] | None = None, announce: Sequence[Outgoing] = ()) -> None:
        """As :meth:`store`, forgetting the project's facts first (a rebuild)."""
        ...

    def project_of(self, number: str) -> str | None:
        """The project an invoice belongs to, if the gate has seen it drafted."""
        ...

    def verdict(self, number: str) -> Verdict | None:
        """The verdict last emitted for an invoice."""
        ...

    def held(self) -> list[HeldInvoice]:
        """Every invoice whose last verdict holds it, the longest held first."""
        ...

    def statuses(self) -> dict[str, int]:
        """How many invoices each last verdict (``held``, ``ready``) stands for."""
        ...


def _meta_columns(meta: ProjectMeta | None) -> dict[str, str | None]:
    return dict.fromkeys(_META) if meta is None else {name: getattr(meta, name) for name in _META}


def _meta_of(row: Any) -> ProjectMeta | None:
    if row is None or row.engagement_type is None:
        return None
    return ProjectMeta(engagement_type=row.engagement_type, region=row.region, country=row.country,
                       client_id=row.client_id)


class SqlReadinessStore:
    """:class:`ReadinessStore` in the hub's database (see the module docstring for the tables)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._outbox = SqlOutbox(db)

    @property
    def outbox(self) -> Outbox:
        """See :attr:`ReadinessStore.outbox`."""
        return self._outbox

    def load(self, code: str) -> ProjectFacts:
        """See :meth:`ReadinessStore.load`."""
        with self._db.begin() as connection:
            return self._load(connection, code)

    def _load(self, connection: Connection, code: str) -> ProjectFacts:
        meta = connection.execute(sa.select(*(readiness_projects.c[name] for name in _META))
                                  .where(readiness_projects.c.project_code == code)).first()
        rows = connection.execute(sa.select(readiness_facts.c.fact, readiness_facts.c.record)
                                  .where(readiness_facts.c.project_code == code)).all()
        return stored_facts(code, _meta_of(meta), (event_of(fact, record) for fact, record in rows))

    def meta(self, code: str) -> ProjectMeta | None:
        """See :meth:`ReadinessStore.meta`."""
        with self._db.begin() as connection:
            return _meta_of(connection.execute(sa.select(*(readiness_projects.c[name] for name in _META))
                                               .where(readiness_projects.c.project_code == code)).first())

    def facts_of_invoice(self, number: str) -> tuple[str | None, ProjectFacts]:
        """See :meth:`ReadinessStore.facts_of_invoice`."""
        with self._db.begin() as connection:
            code = connection.execute(sa.select(readiness_invoices.c.project_code)
                                      .where(readiness_invoices.c.invoice_number == number)).scalar()
            return code, self._load(connection, code) if code else ProjectFacts("")

    def store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None, *,
              verdicts: Mapping[str, Verdict] | None = None, announce: Sequence[Outgoing] = ()) -> None:
        """See :meth:`ReadinessStore.store`."""
        self._write(code, list(events), meta, verdicts or {}, announce, replace=False)

    def replace(self, code: str, events: Iterable[Event], meta: ProjectMeta | None, *,
                verdicts: Mapping[str, Verdict] | None = None, announce: Sequence[Outgoing] = ()) -> None:
        """See :meth:`ReadinessStore.replace`."""
        self._write(code, list(events), meta, verdicts or {}, announce, replace=True)

    def _write(self, code: str, events: list[Event], meta: ProjectMeta | None, verdicts: Mapping[str, Verdict],
               announce: Sequence[Outgoing], *, replace: bool) -> None:
        now = datetime.now(UTC)
        project = {"project_code": code, **_meta_columns(meta), "updated_at": now}
        with self._db.begin() as connection:
            if replace:
                connection.execute(readiness_facts.delete().where(readiness_facts.c.project_code == code))
            if replace or meta is not None:
                upsert(connection, readiness_projects, project, keys=["project_code"])
            else:  # the meta held stays
                upsert(connection, readiness_projects, project, keys=["project_code"],
                       update=lambda excluded: {"updated_at": excluded.updated_at})
            for event in events:
                upsert(connection, readiness_facts, {"project_code": code, "fact": field_of(event),
                                                     "record": event_record(event)}, keys=["project_code", "fact"])
                if isinstance(event, InvoiceDrafted):
                    upsert(connection, readiness_invoices, {"invoice_number": event.invoice_number,
                                                            "project_code": code}, keys=["invoice_number"])
            for number, verdict in verdicts.items():
                upsert(connection, readiness_verdicts, {"invoice_number": number, **verdict.record(),
                                                        "changed_at": now}, keys=["invoice_number"])
            write_outgoing(connection, announce, now=now)

    def project_of(self, number: str) -> str | None:
        """See :meth:`ReadinessStore.project_of`."""
        with self._db.begin() as connection:
            code = connection.execute(sa.select(readiness_invoices.c.project_code)
                                      .where(readiness_invoices.c.invoice_number == number)).scalar()
        return None if code is None else str(code)

    def verdict(self, number: str) -> Verdict | None:
        """See :meth:`ReadinessStore.verdict`."""
        with self._db.begin() as connection:
            row = connection.execute(sa.select(readiness_verdicts.c.status, readiness_verdicts.c.seq,
                                               readiness_verdicts.c.reasons)
                                     .where(readiness_verdicts.c.invoice_number == number)).mappings().first()
        return None if row is None else Verdict.of_record(dict(row))

    def held(self) -> list[HeldInvoice]:
        """See :meth:`ReadinessStore.held`."""
        verdicts = readiness_verdicts
        query = (sa.select(verdicts.c.invoice_number, readiness_invoices.c.project_code, verdicts.c.status,
                           verdicts.c.seq, verdicts.c.reasons, verdicts.c.changed_at)
                 .join(readiness_invoices, readiness_invoices.c.invoice_number == verdicts.c.invoice_number,
                       isouter=True)
                 .where(verdicts.c.status == "held")
                 .order_by(verdicts.c.changed_at, verdicts.c.invoice_number))
        with self._db.begin() as connection:
            rows = connection.execute(query).mappings().all()
        return [HeldInvoice(row["invoice_number"], row["project_code"], Verdict.of_record(dict(row)).readiness.reasons,
                            _aware(row["changed_at"])) for row in rows]

    def statuses(self) -> dict[str, int]:
        """See :meth:`ReadinessStore.statuses`."""
        with self._db.begin() as connection:
            rows = connection.execute(sa.select(readiness_verdicts.c.status, sa.func.count())
                                      .group_by(readiness_verdicts.c.status)).all()
        return {str(status): int(count) for status, count in rows}


def _aware(moment: datetime) -> datetime:
    """A stored time as UTC (SQLite gives it back naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _mapping(events: Iterable[Event], meta: ProjectMeta | None) -> dict[str, str]:
    mapping = {field_of(event): dump_event(event) for event in events}
    if meta is not None:
        mapping["meta"] = json.dumps(asdict(meta), sort_keys=True)
    return mapping


class MemoryReadinessStore:
    """:class:`ReadinessStore` in dicts, for unit tests: each project's facts as JSON by fact name (and its
    ``meta``), as :func:`actors.invoice_readiness.facts.project_facts` reads them."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, str]] = {}
        self.invoices: dict[str, str] = {}
        self.verdicts: dict[str, str] = {}
        self.memory_outbox = MemoryOutbox()

    @property
    def outbox(self) -> Outbox:
        """See :attr:`ReadinessStore.outbox`."""
        return self.memory_outbox

    def load(self, code: str) -> ProjectFacts:
        """See :meth:`ReadinessStore.load`."""
        return project_facts(code, self.projects.get(code, {}))

    def meta(self, code: str) -> ProjectMeta | None:
        """See :meth:`ReadinessStore.meta`."""
        raw = self.projects.get(code, {}).get("meta")
        return None if raw is None else ProjectMeta(**json.loads(raw))

    def facts_of_invoice(self, number: str) -> tuple[str | None, ProjectFacts]:
        """See :meth:`ReadinessStore.facts_of_invoice`."""
        code = self.invoices.get(number)
        return code, self.load(code) if code else ProjectFacts("")

    def store(self, code: str, events: Iterable[Event], meta: ProjectMeta | None, *,
              verdicts: Mapping[str, Verdict] | None = None, announce: Sequence[Outgoing] = ()) -> None:
        """See :meth:`ReadinessStore.store`."""
        listed = list(events)
        self.projects.setdefault(code, {}).update(_mapping(listed, meta))
        self.invoices.update({e.invoice_number: code for e in listed if isinstance(e, InvoiceDrafted)})
        self.verdicts.update({number: verdict.dump() for number, verdict in (verdicts or {}).items()})
        self.memory_outbox.add(announce)

    def replace(self, code: str, events: Iterable[Event], meta: ProjectMeta | None, *,
                verdicts: Mapping[str, Verdict] | None = None, announce: Sequence[Outgoing] = ()) -> None:
        """See :meth:`ReadinessStore.replace`."""
        self.projects.pop(code, None)
        self.store(code, events, meta, verdicts=verdicts, announce=announce)

    def project_of(self, number: str) -> str | None:
        """See :meth:`ReadinessStore.project_of`."""
        return self.invoices.get(number)

    def verdict(self, number: str) -> Verdict | None:
        """See :meth:`ReadinessStore.verdict`."""
        return Verdict.load(self.verdicts.get(number))

    def held(self) -> list[HeldInvoice]:
        """See :meth:`ReadinessStore.held` (the fake keeps no times: each is held since the epoch)."""
        found = [(number, Verdict.load(raw)) for number, raw in sorted(self.verdicts.items())]
        epoch = datetime.fromtimestamp(0, UTC)
        return [HeldInvoice(number, self.invoices.get(number), verdict.readiness.reasons, epoch)
                for number, verdict in found if verdict is not None and verdict.readiness.status == "held"]

    def statuses(self) -> dict[str, int]:
        """See :meth:`ReadinessStore.statuses`."""
        counts: dict[str, int] = {}
        for raw in self.verdicts.values():
            verdict = Verdict.load(raw)
            if verdict is not None:
                counts[verdict.readiness.status] = counts.get(verdict.readiness.status, 0) + 1
        return counts
