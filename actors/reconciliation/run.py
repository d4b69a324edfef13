"""A reconciliation run: compare the systems of record, classify every difference, repair what is safe through
the actors, route the rest to its owner, and keep the report.

Phases, each resumable: the ERP's projects planned into a local spill (:mod:`actors.reconciliation.spill`); every
workspace read from the platform (SharePoint's, then Box's when the policy keeps projects there:
:mod:`actors.reconciliation.box`) and compared with its plan, a top-level folder at a time; projects left without
a workspace; the crosswalk against both; the readiness facts; the platform's change subscription. A run holds a
Redis lock (one run at a time, renewed while it works) and checkpoints in the hub's database; a run that dies is
resumed by the next one, which skips what was compared and requests no repair twice (each finding is recorded once
per run, and each repair request has an id made of the run and the project, so even a request sent just before
the crash is a duplicate the actor skips).

Repairs are ``hub.reconciliation.repair_requested.v1`` events: provisioning, the readiness gate and document
intake handle them as they handle the events of their pattern (idempotent, traced, in the flight record). A walled
group found on a workspace is repaired at once, asked or not, and reported to risk: the wall is a hard stop.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from actors.reconciliation.attempt import Attempt
from actors.reconciliation.contract import (
    LOCK,
    SCOPES,
    CanonicalCheck,
    Progress,
    ProjectLinks,
    ReadinessCheck,
    ReconciliationBusy,
    RenewableLocks,
)
from actors.reconciliation.store import ReconciliationStore, Run
from connectors.box.platform import BoxPlatform
from connectors.erp.client import ErpClient
from connectors.sharepoint.client import GraphClient
from hub.actor import Emitting
from hub.errors import HubError, InvalidEvent
from hub.policy import WORKSPACES_ROOT, Policy
from observability.logging import get_logger

log = get_logger(__name__)


@dataclass
class Reconciler:
    """Runs reconciliation over injected connectors and stores (see the module docstring)."""

    policy: Policy
    erp: ErpClient
    graph: GraphClient
    crosswalk: ProjectLinks
    store: ReconciliationStore
    locks: RenewableLocks
    #: A new :class:`Emitting` as this pattern (repair requests, exceptions, the completion event).
    out: Callable[[], Emitting]
    readiness: ReadinessCheck | None = None
    #: Master data's records against the ERP's; None: not compared.
    canonical: CanonicalCheck | None = None
    #: The ingress's Graph webhook URL; None: the hub keeps no subscription, none is checked.
    notification_url: str | None = None
    spill_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "hub-reconcile")
    root: str = WORKSPACES_ROOT
    page_size: int = 1000
    lock_ttl_ms: int = 60_000
    #: Platform reads in flight at once (top-level folders read side by side).
    concurrency: int = 4
    #: Findings acted on and recorded together (or every two seconds, whichever comes first).
    flush_every: int = 500
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: The workspaces the policy keeps on Box, read beside SharePoint's (None: the policy keeps none there).
    box: BoxPlatform | None = None

    def close(self) -> None:
        """Close the connectors' clients it was given."""
        self.erp.close()
        self.graph.close()
        if self.box is not None:
            self.box.client.close()

    def run(self, *, scope: Sequence[str] = SCOPES, since: datetime | None = None, repair: bool = False,
            fresh: bool = False, progress: Progress | None = None) -> Run:
        """One run (or the resumption of one that died; ``fresh``: abandon it and start anew). Raises
        :class:`ReconciliationBusy` when another run holds the lock."""
        unknown = sorted(set(scope) - set(SCOPES))
        if unknown:
            raise InvalidEvent(f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}", field="scope")
        token = self.locks.acquire(LOCK, ttl_ms=self.lock_ttl_ms)
        if token is None:
            left = self.locks.ttl_ms(LOCK) // 1000
            raise ReconciliationBusy(f"another reconciliation run is in progress (its lock lives {left} s more)")
        lost = threading.Event()
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(token, stop, lost), daemon=True,
                                     name="reconciliation-lock")
        heartbeat.start()
        try:
            run = self._resume_or_start(scope, since, repair, fresh)
            Attempt(self, run, progress or (lambda *_: None), lost).execute()
            return run
        finally:
            stop.set()
            heartbeat.join(timeout=5)
            self.locks.release(LOCK, token)

    def _heartbeat(self, token: str, stop: threading.Event, lost: threading.Event) -> None:
        while not stop.wait(self.lock_ttl_ms / 3000):
            try:
                if not self.locks.extend(LOCK, token, ttl_ms=self.lock_ttl_ms):
                    lost.set()
                    return
            except HubError:
                log.warning("the reconciliation lock could not be renewed; trying again")

    def _resume_or_start(self, scope: Sequence[str], since: datetime | None, repair: bool, fresh: bool) -> Run:
        previous = self.store.unfinished()
        if previous is not None and fresh:
            previous.status, previous.finished_at = "failed", self.clock()
            previous.detail = "abandoned: a fresh run was asked for"
            self.store.save(previous)
            previous = None
        if previous is not None:
            log.info("resuming the reconciliation run that did not finish", run_id=previous.run_id,
                     phase=previous.checkpoint.get("phase"))
            return previous
        run = Run(run_id=str(uuid.uuid4()), started_at=self.clock(), scope=tuple(s for s in SCOPES if s in scope),
                  repair=repair, since=since)
        self.store.start(run)
        return run


