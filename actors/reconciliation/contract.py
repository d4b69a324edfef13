"""What reconciliation names and needs: its declaration and event types, the lock, the scopes, the ids of what it
sends, and the Protocols of the stores and checks it is given."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

from actors.reconciliation.compare import Finding
from connectors.erp.client import Project as ErpProject
from hub.actor import ActorSpec
from hub.errors import HubError

#: Reconciliation emits (repair requests, exceptions, its completion) and handles no event itself.
SPEC = ActorSpec(name="reconciliation", owner="platform_team")
REPAIR_REQUESTED = "hub.reconciliation.repair_requested.v1"
COMPLETED = "hub.reconciliation.completed.v1"
#: What a run can compare.
SCOPES = ("workspaces", "crosswalk", "canonical", "readiness", "subscriptions")
LOCK = "reconciliation"
#: The platform's change cursor, kept between runs for the incremental ones.
CURSOR = "platform_cursor"
#: Box's: the position in its event stream.
BOX_CURSOR = "box_cursor"
_NAMESPACE = uuid.UUID("2c9d4f0e-71b3-4a5e-9c8d-0e6f1a2b3c4d")


class ReconciliationBusy(HubError):
    """Another run holds the reconciliation lock."""


class RenewableLocks(Protocol):
    """Locks a long job keeps by renewing them (:class:`hub.store.RedisLocks`)."""

    def acquire(self, name: str, *, ttl_ms: int) -> str | None:
        """A token when free."""

    def release(self, name: str, token: str) -> None:
        """Give it back."""

    def ttl_ms(self, name: str) -> int:
        """Milliseconds left."""

    def extend(self, name: str, token: str, *, ttl_ms: int) -> bool:
        """Renew it while this token holds it."""


class ProjectLinks(Protocol):
    """The crosswalk as reconciliation reads it (:class:`hub.crosswalk.SqlCrosswalk`)."""

    def iter_links(self, entity: str, system: str, *, to: str | None = None, page_size: int = 1000
                   ) -> Iterator[tuple[str, str, str | None]]:
        """(system id, canonical id, linked id in ``to``), by system id."""

    def resolve(self, entity: str, system: str, system_id: str) -> str | None:
        """The canonical id of a system id, if known."""

    def identities(self, canonical_id: str) -> dict[str, str]:
        """System to primary id."""


class CanonicalCheck(Protocol):
    """Master data's canonical records against the ERP's records (wired by the composition root)."""

    def drift(self, entity: Literal["client", "project"], records: Sequence[Mapping[str, Any]]
              ) -> Iterator[tuple[str, list[tuple[str, str | None, str | None]] | None]]:
        """(ERP id, fields that differ as (field, ERP's value, canonical value)), or (ERP id, None): no record."""


class ReadinessCheck(Protocol):
    """The readiness gate's facts compared with the documents they come from (wired by the composition root)."""

    def stale(self) -> Iterator[tuple[str, str, str]]:
        """(project code, facts derived now, facts stored) for each project whose stored facts are out of date."""

    def platform_of(self, code: str) -> str:
        """The document platform holding the project's workspace (the source of its documents' facts)."""


#: progress(phase, done, total): total None while unknown.
Progress = Callable[[str, int, int | None], None]


def erp_record(project: ErpProject) -> dict[str, Any]:
    """The ERP's project as the plan's input record (JSON-ready)."""
    return {
        "project_code": project.code, "client_id": project.client_id, "name": project.name,
        "engagement_type": project.engagement_type, "practice": project.practice, "region": project.region,
        "country": project.country, "partner": project.partner, "status": project.status,
        "conflicted_groups": list(project.conflicted_groups),
    }


def repair_id(run_id: str, phase: str, subject: str) -> str:
    """A repair request's id: one per run, phase and subject, so a resumed run's request is a duplicate."""
    return str(uuid.uuid5(_NAMESPACE, f"repair:{run_id}:{phase}:{subject}"))


def case_id(finding: Finding) -> str:
    """An exception's id: the same difference found again is the same case."""
    return str(uuid.uuid5(_NAMESPACE, f"case:{finding.key}"))


