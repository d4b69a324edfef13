"""The ERP simulator's records and rules: clients, projects, milestones, invoices, billing codes,
time entries, the log of readiness-gate calls made before finalising invoices, and the count of writes per
record.

Records are kept as JSON-ready dicts (snake_case, ISO dates, ``updated_at`` in UTC with
milliseconds, strictly increasing). Failures are :class:`~simulators.kit.errors.SimError` with the HTTP
status and error code the API answers.

400 lines on purpose: the simulated ERP's records, their indexes and invariants under one lock.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.erp.models import (
    BillingCodeIn,
    ClientIn,
    ClientPatch,
    InvoiceIn,
    MilestoneIn,
    MilestonePatch,
    ProjectIn,
    ProjectPatch,
    TimeEntryIn,
)
from simulators.erp.paging import SortedKeys, decode_key_cursor, decode_update_cursor, encode_cursor
from simulators.erp.webhooks import epoch_ms, parse_timestamp
from simulators.kit.errors import SimError
from simulators.kit.idempotency import IdempotencyKeys


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key_reused() -> SimError:
    return SimError(422, "idempotency_key_reused", "this Idempotency-Key was used for another request")


def _detached(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record safe to hand out: its own dict and containers (nested values are replaced on write,
    never changed in place)."""
    copied = dict(record)
    for name, value in copied.items():
        if isinstance(value, dict):
            copied[name] = dict(value)
        elif isinstance(value, list):
            copied[name] = list(value)
    return copied


class ErpState:
    """Every record of the simulated ERP behind one lock; methods return copies."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        #: The answers of writes made with an ``Idempotency-Key`` (see :mod:`simulators.kit.idempotency`).
        self.idempotency = IdempotencyKeys(reused=_key_reused)
        self.reset()

    def reset(self) -> None:
        """Forget every record and idempotency key."""
        with self.lock:
            self.clients: dict[str, dict[str, Any]] = {}
            self.projects: dict[str, dict[str, Any]] = {}
            self.milestones: dict[str, list[dict[str, Any]]] = {}
            self.invoices: dict[str, dict[str, Any]] = {}
            self.billing_codes: dict[str, dict[str, dict[str, Any]]] = {}
            self.time_entries: dict[str, list[dict[str, Any]]] = {}
            #: Every call to the readiness gate: ``{"number", "outcome", "http_status", "error", "checked_at"}``.
            self.readiness_checks: list[dict[str, Any]] = []
            #: Write requests carried out per record (``project ENG-1``, ``milestone ENG-1/MS-000001``, ...), and
            #: those that changed it: what the ERP's audit trail would show (an ``Idempotency-Key`` replay is
            #: neither).
            self.writes: Counter[str] = Counter()
            self.changes: Counter[str] = Counter()
            self._last: datetime | None = None
            self._serial = 0
            #: Keys kept in order on every write, so a page costs what it returns (:mod:`simulators.erp.paging`).
            self.client_ids: SortedKeys[str] = SortedKeys()
            self.codes: SortedKeys[str] = SortedKeys()
            self.by_update: SortedKeys[tuple[int, str]] = SortedKeys()
        self.idempotency.reset()  # not under the records' lock: a write takes the keys' lock first

    def _now(self) -> str:
        now = self._clock().astimezone(UTC)
        moment = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last is not None and moment <= self._last:
            moment = self._last + timedelta(milliseconds=1)  # strictly increasing: newer always wins
        self._last = moment
        return _iso(moment)

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self._serial:06d}"

    def _wrote(self, record: str, *, changed: bool = True) -> None:
        """Count a write request carried out on ``record`` (the caller holds the lock)."""
        self.writes[record] += 1
        self.changes[record] += changed

    def write_counts(self) -> dict[str, dict[str, int]]:
        """Write requests carried out per record (``writes``) and those that changed it (``changes``)."""
        with self.lock:
            return {"writes": dict(sorted(self.writes.items())), "changes": dict(sorted(self.changes.items()))}

    def dump(self) -> dict[str, Any]:
        """Everything, for ``GET /_sim/state``."""
        with self.lock:
            return copy.deepcopy({"clients": list(self.clients.values()), "projects": list(self.projects.values()),
                                  "milestones": self.milestones, "invoices": list(self.invoices.values()),
                                  "billing_codes": {k: list(v.values()) for k, v in self.billing_codes.items()},
                                  "time_entries": self.time_entries, "readiness_checks": self.readiness_checks})

    # -- clients ------------------------------------------------------------------------------------

    def client(self, client_id: str) -> dict[str, Any]:
        """One client; 404 when unknown."""
        with self.lock:
            if client_id not in self.clients:
                raise SimError(404, "not_found", f"client {client_id!r} not found")
            return dict(self.clients[client_id])

    def create_client(self, body: ClientIn) -> dict[str, Any]:
        """Create a client; 409 when the id is taken."""
        with self.lock:
            client_id = body.id or self._next_id("C")
            if client_id in self.clients:
                raise SimError(409, "conflict", f"client {client_id!r} exists")
            record = {"id": client_id, **body.model_dump(mode="json", exclude={"id"}), "version": 1,
                      "updated_at": self._now()}
            self.clients[client_id] = record
            self.client_ids.add(client_id)
            self._wrote(f"client {client_id}")
            return dict(record)

    def patch_client(self, client_id: str, patch: ClientPatch) -> tuple[dict[str, Any], bool]:
        """Apply a partial update; returns the record and whether anything changed."""
        with self.lock:
            record = self.clients.get(client_id)
            if record is None:
                raise SimError(404, "not_found", f"client {client_id!r} not found")
            changes = {k: v for k, v in patch.model_dump(mode="json", exclude_unset=True).items() if record.get(k) != v}
            if changes:
                record.update(changes, version=record["version"] + 1, updated_at=self._now())
            self._wrote(f"client {client_id}", changed=bool(changes))
            return dict(record), bool(changes)

    # -- projects -----------------------------------------------------------------------------------

    def project(self, code: str) -> dict[str, Any]:
        """One project; 404 when unknown."""
        with self.lock:
            if code not in self.projects:
                raise SimError(404, "not_found", f"project {code!r} not found")
            return copy.deepcopy(self.projects[code])

    def create_project(self, body: ProjectIn) -> dict[str, Any]:
        """Create a project; 409 when the code is taken, 422 when the client is unknown."""
        with self.lock:
            if body.code in self.projects:
                raise SimError(409, "conflict", f"project {body.code!r} exists")
            if body.client_id not in self.clients:
                raise SimError(422, "unknown_client", f"client {body.client_id!r} does not exist")
            record = {"code": body.code, **body.model_dump(mode="json")}
            record["custom_fields"] = {"workspace_url": None, **record["custom_fields"]}
            record.update(version=1, updated_at=self._now())
            self.projects[body.code] = record
            self.codes.add(body.code)
            self.by_update.add((epoch_ms(record["updated_at"]), body.code))
            self.milestones[body.code], self.billing_codes[body.code], self.time_entries[body.code] = [], {}, []
            self._wrote(f"project {body.code}")
            return copy.deepcopy(record)

    def patch_project(self, code: str, patch: ProjectPatch, *, if_match: int | None
                      ) -> tuple[dict[str, Any], bool]:
        """Apply a partial update (412 when ``if_match`` is not the version); returns record and changed."""
        with self.lock:
            record = self.projects.get(code)
            if record is None:
                raise SimError(404, "not_found", f"project {code!r} not found")
            if if_match is not None and if_match != record["version"]:
                raise SimError(412, "version_mismatch", f"project {code!r} is at version {record['version']}",
                               version=record["version"])
            wanted = patch.model_dump(mode="json", exclude_unset=True)
            if "client_id" in wanted and wanted["client_id"] not in self.clients:
                raise SimError(422, "unknown_client", f"client {wanted['client_id']!r} does not exist")
            if "custom_fields" in wanted:
                wanted["custom_fields"] = {**record["custom_fields"], **(wanted["custom_fields"] or {})}
            changes = {k: v for k, v in wanted.items() if record.get(k) != v}
            if changes:
                self.by_update.discard((epoch_ms(record["updated_at"]), code))
                record.update(copy.deepcopy(changes), version=record["version"] + 1, updated_at=self._now())
                self.by_update.add((epoch_ms(record["updated_at"]), code))
            self._wrote(f"project {code}", changed=bool(changes))
            return copy.deepcopy(record), bool(changes)

    def list_clients(self, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of clients in ``id`` order, and the next cursor."""
        after = None if cursor is None else decode_key_cursor(cursor, "id")
        with self.lock:
            page: list[dict[str, Any]] = []
            for client_id in self.client_ids.scan(after=after):
                if len(page) == limit:
                    return page, encode_cursor(["id", page[-1]["id"]])
                page.append(dict(self.clients[client_id]))
            return page, None

    def list_projects(self, *, status: str | None, updated_since: str | None, limit: int, cursor: str | None,
                      order: str = "updated_at") -> tuple[list[dict[str, Any]], str | None]:
        """One page in (``updated_at``, ``code``) order (``order="code"``: in ``code`` order), ``updated_at >=
        updated_since``; and the next cursor. Each page starts at its cursor in an index kept on write."""
        since = None if updated_since is None else epoch_ms(_checked_timestamp(updated_since))
        with self.lock:
            if order == "code":
                after_code = None if cursor is None else decode_key_cursor(cursor, "code")
                codes: Iterator[str] = self.codes.scan(after=after_code)
            else:
                after = None if cursor is None else decode_update_cursor(cursor)
                start = None if since is None else (since, "")
                codes = (code for _, code in self.by_update.scan(after=after, start=start))
            page: list[dict[str, Any]] = []
            for code in codes:
                project = self.projects[code]
                if (status is not None and project["status"] != status) or (
                        since is not None and order == "code" and epoch_ms(project["updated_at"]) < since):
                    continue
                if len(page) == limit:
                    last = page[-1]
                    position = (["code", last["code"]] if order == "code"
                                else [epoch_ms(last["updated_at"]), last["code"]])
                    return page, encode_cursor(position)
                page.append(_detached(project))
            return page, None

    def insert_bulk(self, clients: list[dict[str, Any]], projects: list[dict[str, Any]]) -> None:
        """Store checked records at once (:mod:`simulators.erp.seed`): no write is counted, no event sent.

        Records without ``updated_at`` get the clock's time, a millisecond apart (strictly increasing as ever);
        later writes are stamped after the newest seeded record."""
        with self.lock:
            start = parse_timestamp(self._now())
            stamped = 0
            millis: dict[str, int] = {}
            for record in (*clients, *projects):
                if record.get("updated_at") is None:
                    moment = start + timedelta(milliseconds=stamped)
                    stamped += 1
                    record["updated_at"] = _iso(moment)
                else:
                    moment = parse_timestamp(record["updated_at"]).astimezone(UTC)
                if "code" in record:
                    millis[record["code"]] = int(moment.timestamp() * 1000)
                if self._last is None or moment > self._last:
                    self._last = moment
            for client in clients:
                self.clients[client["id"]] = client
            self.client_ids.add_many(c["id"] for c in clients)
            for project in projects:
                code = project["code"]
                self.projects[code] = project
                self.milestones[code], self.billing_codes[code], self.time_entries[code] = [], {}, []
            self.codes.add_many(millis)
            self.by_update.add_many((stamp, code) for code, stamp in millis.items())

    # -- milestones, invoices, billing codes --------------------------------------------------------

    def milestones_of(self, code: str) -> list[dict[str, Any]]:
        """The milestones of a project."""
        with self.lock:
            self.project(code)
            return copy.deepcopy(self.milestones[code])

    def add_milestone(self, code: str, body: MilestoneIn) -> dict[str, Any]:
        """Add a milestone to a project."""
        with self.lock:
            self.project(code)
            record = {"id": self._next_id("MS"), "project_code": code, **body.model_dump(mode="json"),
                      "updated_at": self._now()}
            self.milestones[code].append(record)
            self._wrote(f"milestone {code}/{record['id']}")
            return dict(record)

    def patch_milestone(self, code: str, milestone_id: str, patch: MilestonePatch) -> dict[str, Any]:
        """Change a milestone."""
        with self.lock:
            self.project(code)
            for record in self.milestones[code]:
                if record["id"] == milestone_id:
                    wanted = patch.model_dump(mode="json", exclude_unset=True)
                    self._wrote(f"milestone {code}/{milestone_id}",
                                changed=any(record.get(k) != v for k, v in wanted.items()))
                    record.update(wanted, updated_at=self._now())
                    return dict(record)
            raise SimError(404, "not_found", f"milestone {milestone_id!r} of {code!r} not found")

    def _milestone(self, code: str, milestone_id: str | None) -> dict[str, Any]:
        """A milestone's record (the caller holds the lock); empty when none is named."""
        return next((r for r in self.milestones.get(code, []) if r["id"] == milestone_id), {})

    def milestone_name(self, code: str, milestone_id: str) -> str | None:
        """The name of a milestone of a project; ``None`` when the project has no such milestone."""
        with self.lock:
            for record in self.milestones.get(code, []):
                if record["id"] == milestone_id:
                    return str(record["name"])
            return None

    def invoice(self, number: str) -> dict[str, Any]:
        """One invoice; 404 when unknown."""
        with self.lock:
            return copy.deepcopy(self._invoice(number))

    def _invoice(self, number: str) -> dict[str, Any]:
        """The invoice record itself (the caller holds the lock); 404 when unknown."""
        if number not in self.invoices:
            raise SimError(404, "not_found", f"invoice {number!r} not found")
        return self.invoices[number]

    def list_invoices(self, *, project_code: str | None, status: str | None) -> list[dict[str, Any]]:
        """Invoices, optionally of one project or status."""
        with self.lock:
            return [dict(i) for i in self.invoices.values()
                    if (project_code is None or i["project_code"] == project_code)
                    and (status is None or i["status"] == status)]

    def create_invoice(self, body: InvoiceIn) -> dict[str, Any]:
        """Draft an invoice for a project; 422 when ``milestone_id`` is not a milestone of that project."""
        with self.lock:
            self.project(body.project_code)
            if body.milestone_id is not None and self.milestone_name(body.project_code, body.milestone_id) is None:
                raise SimError(422, "unknown_milestone",
                               f"milestone {body.milestone_id!r} of {body.project_code!r} does not exist")
            number = body.number or self._next_id("INV")
            if number in self.invoices:
                raise SimError(409, "conflict", f"invoice {number!r} exists")
            now = self._now()
            record = {**body.model_dump(mode="json"), "number": number, "status": "draft", "drafted_at": now,
                      "updated_at": now}
            # The invoice states what it bills: its milestone's deliverables, then what the draft names.
            milestone = self._milestone(body.project_code, body.milestone_id)
            deliverables = [{"document_class": "deliverable", "reference": title}
                            for title in milestone.get("deliverables") or []]
            record["bills"] = [dict(t) for t in dict.fromkeys(
                tuple(sorted(b.items())) for b in [*deliverables, *record["bills"]])]
            self.invoices[number] = record
            self._wrote(f"invoice {number}")
            return copy.deepcopy(record)

    def finalize_invoice(self, number: str) -> dict[str, Any]:
        """Make a draft invoice final; finalising a final invoice changes nothing."""
        with self.lock:
            record = self._invoice(number)
            self._wrote(f"invoice {number}", changed=record["status"] != "final")
            if record["status"] != "final":
                record.update(status="final", updated_at=self._now())
            return dict(record)

    def record_readiness_check(self, number: str, outcome: str, *, http_status: int | None, error: str | None
                               ) -> dict[str, Any]:
        """Log one call to the readiness gate."""
        with self.lock:
            entry = {"number": number, "outcome": outcome, "http_status": http_status, "error": error,
                     "checked_at": _iso(self._clock())}
            self.readiness_checks.append(entry)
            return dict(entry)

    def billing_codes_of(self, code: str) -> list[dict[str, Any]]:
        """The billing codes of a project."""
        with self.lock:
            self.project(code)
            return [dict(b) for b in self.billing_codes[code].values()]

    def put_billing_code(self, code: str, body: BillingCodeIn) -> tuple[dict[str, Any], bool]:
        """Create a billing code or set its ``active`` flag; returns it and whether it is new."""
        with self.lock:
            self.project(code)
            existing = self.billing_codes[code].get(body.code)
            self._wrote(f"billing_code {code}/{body.code}",
                        changed=existing is None or existing["active"] != body.active)
            if existing is not None:
                if existing["active"] != body.active:
                    existing.update(active=body.active, updated_at=self._now())
                return dict(existing), False
            record = {"code": body.code, "project_code": code, "active": body.active, "updated_at": self._now()}
            self.billing_codes[code][body.code] = record
            return dict(record), True

    # -- time entries -------------------------------------------------------------------------------

    def time_entries_of(self, code: str) -> list[dict[str, Any]]:
        """The time entries booked on a project."""
        with self.lock:
            self.project(code)
            return copy.deepcopy(self.time_entries[code])

    def add_time_entry(self, code: str, body: TimeEntryIn) -> dict[str, Any]:
        """Book time: 409 ``time_entry_disabled`` unless the project takes time, 409 ``billing_code_inactive``
        unless the billing code exists on the project and is active."""
        with self.lock:
            project = self.project(code)
            if not project["time_entry_enabled"]:
                raise SimError(409, "time_entry_disabled", f"project {code!r} is not open for time entry")
            billing_code = self.billing_codes[code].get(body.billing_code)
            if billing_code is None or not billing_code["active"]:
                raise SimError(409, "billing_code_inactive",
                               f"billing code {body.billing_code!r} of {code!r} is missing or inactive")
            record = {"id": self._next_id("TE"), "project_code": code, **body.model_dump(mode="json"),
                      "created_at": self._now()}
            self.time_entries[code].append(record)
            self._wrote(f"time_entry {code}/{record['id']}")
            return dict(record)


def _checked_timestamp(value: str) -> str:
    try:
        parse_timestamp(value)
    except ValueError:
        raise SimError(422, "invalid_parameter", "updated_since must be an ISO 8601 timestamp") from None
    return value
