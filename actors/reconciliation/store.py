"""Reconciliation's records in the hub's database: each run (its scope, checkpoint, counts and outcome) and each
difference it found, with what was done about it. A firm keeps these: they are the evidence that the systems
agreed, or of what was repaired and who was told.

A finding is recorded once per run (its class, subject and field): a run resumed after a crash finds the same
differences again, and only those not recorded yet are acted on, so no repair is requested twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import sqlalchemy as sa

from actors.reconciliation.compare import Finding
from hub.db import Database, metadata, upsert

#: What became of a finding: only reported (a dry run), a repair requested of an actor, routed to its owner as an
#: exception, or both (a hard stop: repaired at once and reported).
Action = Literal["reported", "repair_requested", "routed", "repaired_and_routed"]
RunStatus = Literal["running", "completed", "failed"]

runs = sa.Table(
    "reconciliation_runs", metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True)),
    sa.Column("repair", sa.Boolean(), nullable=False),
    sa.Column("checkpoint", sa.JSON(), nullable=False),
    sa.Column("counts", sa.JSON(), nullable=False),
    sa.Column("compared", sa.Integer(), nullable=False),
    sa.Column("repaired", sa.Integer(), nullable=False),
    sa.Column("routed", sa.Integer(), nullable=False),
    sa.Column("pages", sa.Integer(), nullable=False),
    sa.Column("detail", sa.Text()),
)
findings_table = sa.Table(
    "reconciliation_findings", metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("finding_key", sa.String(600), primary_key=True),
    sa.Column("code", sa.String(8), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("field", sa.String(256), nullable=False),
    sa.Column("expected", sa.Text()),
    sa.Column("actual", sa.Text()),
    sa.Column("authority", sa.String(128), nullable=False),
    sa.Column("project_code", sa.String(256)),
    sa.Column("action", sa.String(24), nullable=False),
    sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
)
state_table = sa.Table(
    "reconciliation_state", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON(), nullable=False),
)
box_retention_table = sa.Table(
    "reconciliation_box_retention", metadata,
    sa.Column("folder_id", sa.String(64), primary_key=True),
    sa.Column("policies", sa.JSON(), nullable=False),
)


@dataclass
class Run:
    """One reconciliation run as recorded."""

    run_id: str
    started_at: datetime
    scope: tuple[str, ...]
    repair: bool
    since: datetime | None = None
    status: RunStatus = "running"
    finished_at: datetime | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    compared: int = 0
    repaired: int = 0
    routed: int = 0
    pages: int = 0
    detail: str | None = None

    @property
    def duration_ms(self) -> int:
        """From start to finish (to now while it runs)."""
        end = self.finished_at or datetime.now(UTC)
        return max(int((end - self.started_at).total_seconds() * 1000), 0)

    def as_dict(self) -> dict[str, Any]:
        """The run as JSON-ready data (``hub reconcile show --output json``, the console)."""
        return {"run_id": self.run_id, "status": self.status, "scope": list(self.scope), "repair": self.repair,
                "since": self.since.isoformat() if self.since else None, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "duration_ms": self.duration_ms, "compared": self.compared, "counts": dict(sorted(self.counts.items())),
                "repaired": self.repaired, "routed": self.routed, "pages": self.pages, "detail": self.detail}


@dataclass(frozen=True)
class Recorded:
    """A finding as recorded, with what was done about it."""

    finding: Finding
    action: Action
    found_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        f = self.finding
        return {"code": f.code, "subject": f.subject, "field": f.field, "expected": f.expected, "actual": f.actual,
                "authority": f.authority, "project_code": f.project_code, "action": self.action,
                "found_at": self.found_at.isoformat()}


class ReconciliationStore(Protocol):
    """Where runs and their findings are kept."""

    def start(self, run: Run) -> None:
        """Record a new run."""

    def save(self, run: Run) -> None:
        """Record a run's progress (checkpoint, counts) or its end."""

    def unfinished(self) -> Run | None:
        """The newest run that did not end (a crash), to resume."""

    def run(self, run_id: str | None = None) -> Run | None:
        """A run by id, or the newest one."""

    def runs(self, *, limit: int = 20) -> list[Run]:
        """The newest runs first."""

    def fresh(self, run_id: str, findings: Sequence[Finding]) -> list[Finding]:
        """Those of ``findings`` not recorded for this run yet (only those are acted on)."""

    def record(self, run_id: str, findings: Sequence[tuple[Finding, Action]], at: datetime) -> None:
        """Record findings with what was done about them."""

    def findings(self, run_id: str, *, code: str | None = None, limit: int | None = None) -> Iterator[Recorded]:
        """A run's findings, by class then subject."""

    def get_state(self, name: str) -> Any:
        """A value kept between runs (the platforms' change cursors), or None."""

    def set_state(self, name: str, value: Any) -> None:
        """Keep a value between runs."""

    def box_retention(self) -> dict[str, list[str]]:
        """Box's retention assignments as the last completed run read them: folder id -> policy names."""

    def keep_box_retention(self, index: Mapping[str, Sequence[str]]) -> None:
        """Keep Box's retention assignments as this run read them."""


def _run_of(row: Any) -> Run:
    return Run(run_id=row.run_id, started_at=_utc(row.started_at), scope=tuple(row.scope.split(",")),
               repair=row.repair, since=_utc(row.since) if row.since else None, status=row.status,
               finished_at=_utc(row.finished_at) if row.finished_at else None, checkpoint=dict(row.checkpoint),
               counts={k: int(v) for k, v in row.counts.items()}, compared=row.compared, repaired=row.repaired,
               routed=row.routed, pages=row.pages, detail=row.detail)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite keeps no offset


def _values(run: Run) -> dict[str, Any]:
    return {"run_id": run.run_id, "started_at": run.started_at, "finished_at": run.finished_at, "status": run.status,
            "scope": ",".join(run.scope), "since": run.since, "repair": run.repair, "checkpoint": run.checkpoint,
            "counts": run.counts, "compared": run.compared, "repaired": run.repaired, "routed": run.routed,
            "pages": run.pages, "detail": run.detail}


class SqlReconciliationStore:
    """Runs and findings in the hub's database (PostgreSQL; SQLite in the embedded mode)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, run: Run) -> None:
        """Record a new run."""
        with self.db.begin() as connection:
            connection.execute(runs.insert().values(**_values(run)))

    def save(self, run: Run) -> None:
        """Record a run's progress or its end."""
        with self.db.begin() as connection:
            connection.execute(runs.update().where(runs.c.run_id == run.run_id).values(**_values(run)))

    def unfinished(self) -> Run | None:
        """The newest run still marked running."""
        with self.db.begin() as connection:
            row = connection.execute(runs.select().where(runs.c.status == "running")
                                     .order_by(runs.c.started_at.desc()).limit(1)).first()
        return _run_of(row) if row else None

    def run(self, run_id: str | None = None) -> Run | None:
        """A run by id (a unique prefix will do), or the newest one."""
        query = runs.select().order_by(runs.c.started_at.desc()).limit(2)
        if run_id is not None:
            query = query.where(runs.c.run_id.startswith(run_id, autoescape=True))
        with self.db.begin() as connection:
            rows = connection.execute(query).all()
        if run_id is not None and len(rows) > 1 and rows[0].run_id != run_id:
            return None  # an ambiguous prefix names no run
        return _run_of(rows[0]) if rows else None

    def runs(self, *, limit: int = 20) -> list[Run]:
        """The newest runs first."""
        with self.db.begin() as connection:
            rows = connection.execute(runs.select().order_by(runs.c.started_at.desc()).limit(limit)).all()
        return [_run_of(row) for row in rows]

    def fresh(self, run_id: str, findings: Sequence[Finding]) -> list[Finding]:
        """Those of ``findings`` not recorded for this run yet."""
        keys = list({f.key[:600] for f in findings})
        known: set[str] = set()
        with self.db.begin() as connection:
            for start in range(0, len(keys), 500):
                known |= set(connection.execute(sa.select(findings_table.c.finding_key).where(
                    findings_table.c.run_id == run_id,
                    findings_table.c.finding_key.in_(keys[start:start + 500]))).scalars())
        return [f for f in findings if f.key[:600] not in known]

    def record(self, run_id: str, findings: Sequence[tuple[Finding, Action]], at: datetime) -> None:
        """Record findings (fresh ones: see :meth:`fresh`) with what was done, in one transaction."""
        rows = {f.key[:600]: {"run_id": run_id, "finding_key": f.key[:600], "code": f.code,
                              "subject": f.subject[:256], "field": f.field[:256], "expected": f.expected,
                              "actual": f.actual, "authority": f.authority[:128], "project_code": f.project_code,
                              "action": action, "found_at": at} for f, action in findings}
        if rows:
            with self.db.begin() as connection:
                connection.execute(findings_table.insert(), list(rows.values()))

    def findings(self, run_id: str, *, code: str | None = None, limit: int | None = None) -> Iterator[Recorded]:
        """A run's findings, by class then subject (read in pages: a run may hold many)."""
        after: tuple[str, str] = ("", "")
        left = limit
        while left is None or left > 0:
            page = 1000 if left is None else min(left, 1000)
            query = (findings_table.select().where(findings_table.c.run_id == run_id)
                     .where(sa.tuple_(findings_table.c.code, findings_table.c.finding_key) > sa.tuple_(*after))
                     .order_by(findings_table.c.code, findings_table.c.finding_key).limit(page))
            if code is not None:
                query = query.where(findings_table.c.code == code)
            with self.db.begin() as connection:
                rows = connection.execute(query).all()
            for row in rows:
                yield Recorded(Finding(row.code, row.subject, row.field, row.expected, row.actual, row.authority,
                                       row.project_code), row.action, _utc(row.found_at))
            if len(rows) < page:
                return
            after = (rows[-1].code, rows[-1].finding_key)
            if left is not None:
                left -= len(rows)

    def get_state(self, name: str) -> Any:
        """A value kept between runs, or None."""
        with self.db.begin() as connection:
            row = connection.execute(sa.select(state_table.c.value).where(state_table.c.name == name)).first()
        return row.value if row else None

    def set_state(self, name: str, value: Any) -> None:
        """Keep a value between runs."""
        with self.db.begin() as connection:
            upsert(connection, state_table, {"name": name, "value": value}, keys=["name"])

    def box_retention(self) -> dict[str, list[str]]:
        """Box's retention assignments as the last completed run read them: folder id -> policy names."""
        with self.db.begin() as connection:
            rows = connection.execute(sa.select(box_retention_table)).all()
        return {row.folder_id: list(row.policies) for row in rows}

    def keep_box_retention(self, index: Mapping[str, Sequence[str]]) -> None:
        """Keep Box's retention assignments as this run read them, in one transaction: only the folders whose
        policies changed are written."""
        kept = self.box_retention()
        changed = [{"folder_id": folder, "policies": sorted(names)} for folder, names in index.items()
                   if kept.get(folder) != sorted(names)]
        stale = [folder for folder in kept if folder not in index] + [row["folder_id"] for row in changed]
        with self.db.begin() as connection:
            for start in range(0, len(stale), 500):
                connection.execute(box_retention_table.delete().where(
                    box_retention_table.c.folder_id.in_(stale[start:start + 500])))
            if changed:
                connection.execute(box_retention_table.insert(), changed)


def counts_of(findings: Iterable[Finding], into: Mapping[str, int] | None = None) -> dict[str, int]:
    """Counts per class code, added to ``into``."""
    counts = dict(into or {})
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    return counts
