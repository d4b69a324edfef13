"""What reconciliation can find: each class of difference with its stable code, whether it is safe to repair
through the actors, who owns it when it is not, and how serious it is.

The codes are a contract: reports, exceptions, metrics and ``hub.reconciliation.completed.v1`` name them, and
operators' runbooks key on them. A code is never reused for another meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: Who repairs a class automatically (the actor handling the repair request), or None: it is routed.
Repairer = Literal["provisioning", "invoice_readiness", "document_intake", "master_data"]
Owner = Literal["finance", "pmo", "records_management", "platform_team", "risk"]
Severity = Literal["low", "medium", "high", "critical"]


@dataclass(frozen=True)
class DriftClass:
    """One class of difference between the systems of record."""

    code: str
    name: str
    summary: str
    severity: Severity
    #: The actor that repairs it when asked (``--repair``); None: routed to ``owner`` as an exception.
    repairer: Repairer | None
    owner: Owner
    #: Repaired at once, asked or not, and reported: an ethical wall is a hard stop.
    hard_stop: bool = False

    @property
    def safe(self) -> bool:
        """Whether the actors repair it (``--repair``, or always for a hard stop)."""
        return self.repairer is not None


CLASSES: tuple[DriftClass, ...] = (
    DriftClass("RC101", "workspace_missing", "an ERP project has no workspace", "high", "provisioning", "pmo"),
    DriftClass("RC102", "workspace_orphan", "a workspace names no ERP project", "medium", None, "records_management"),
    DriftClass("RC103", "folder_missing", "a folder the policy asks for is missing from a workspace", "medium",
               "provisioning", "records_management"),
    DriftClass("RC201", "metadata_drift", "a workspace field differs from its authority", "medium", "provisioning",
               "records_management"),
    DriftClass("RC301", "grant_missing", "a group the policy grants lacks its access", "high", "provisioning", "pmo"),
    DriftClass("RC302", "grant_extra", "a group the policy governs holds access it should not", "high", "provisioning",
               "risk"),
    DriftClass("RC303", "grant_unmanaged", "a group the policy does not manage was granted by hand", "medium", None,
               "risk"),
    DriftClass("RC304", "walled_grant", "a group behind an ethical wall holds access", "critical", "provisioning",
               "risk", hard_stop=True),
    DriftClass("RC401", "label_drift", "a retention label differs from the policy's", "high", "provisioning",
               "records_management"),
    DriftClass("RC501", "crosswalk_missing", "an ERP record has no canonical id", "medium", "provisioning",
               "platform_team"),
    DriftClass("RC502", "crosswalk_stale", "a canonical id names an ERP record that no longer exists", "medium", None,
               "platform_team"),
    DriftClass("RC503", "crosswalk_link_drift", "the crosswalk links a project to another workspace", "medium",
               "provisioning", "platform_team"),
    DriftClass("RC504", "canonical_missing", "an ERP record known to the crosswalk has no canonical record", "medium",
               "master_data", "platform_team"),
    DriftClass("RC505", "canonical_drift", "a canonical record differs from the ERP, which owns the field", "medium",
               "master_data", "platform_team"),
    DriftClass("RC601", "readiness_stale", "readiness facts differ from the documents they come from", "high",
               "invoice_readiness", "finance"),
    DriftClass("RC701", "subscription_missing", "the document platform's change subscription is missing", "high",
               "document_intake", "platform_team"),
    DriftClass("RC702", "subscription_expiring", "the change subscription expires within a day", "medium",
               "document_intake", "platform_team"),
)
BY_CODE: dict[str, DriftClass] = {c.code: c for c in CLASSES}
BY_NAME: dict[str, DriftClass] = {c.name: c for c in CLASSES}


def drift_class(code_or_name: str) -> DriftClass:
    """The class with this code (``RC304``) or name (``walled_grant``); KeyError names the known ones."""
    found = BY_CODE.get(code_or_name.upper()) or BY_NAME.get(code_or_name)
    if found is None:
        raise KeyError(f"unknown difference class {code_or_name!r}; known: {', '.join(BY_CODE)}")
    return found


def counts_table(counts: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """(code, class name, count) for every class, in code order: a report's summary table."""
    return [(code, cls.name, int(counts.get(code, 0))) for code, cls in BY_CODE.items()]
