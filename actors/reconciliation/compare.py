"""The semantic diff of one workspace against its plan, and the findings it yields: pure functions, no I/O.

A workspace is compared as provisioning would converge it (:mod:`hub.workspace`): its folders, each metadata
field against the authority the policy names for it, its direct group grants (a walled group first: the hard
stop), and the retention label of the workspace and of each folder bound to a document class. Grants of groups the
policy does not govern (a site's own groups, inherited access) are not read as drift, except a directory group
someone granted by hand, which is reported for risk to decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hub.policy import Policy
from hub.workspace import WorkspacePlan, governs

#: The workspace folder itself, as a finding's field names it.
ROOT = "."


def key(name: str) -> str:
    """Paths and group names compare case-insensitively, as in SharePoint and Entra ID."""
    return name.strip().casefold()


@dataclass(frozen=True)
class Finding:
    """One difference: its class code, the business key it concerns, the field, both sides' values and the
    authority whose value is expected."""

    code: str
    subject: str
    field: str = ""
    #: The authority's value (None: nothing should be there).
    expected: str | None = None
    #: What the other side holds (None: nothing is there).
    actual: str | None = None
    authority: str = ""
    project_code: str | None = None

    @property
    def key(self) -> str:
        """Unique within a run: the class, the subject and the field."""
        return f"{self.code}:{self.subject}:{self.field}"


@dataclass(frozen=True)
class WorkspaceSeen:
    """What the document platform holds for one workspace folder."""

    path: str
    item_id: str
    #: Full paths of the folders found below the workspace (any depth read).
    folders: frozenset[str] = frozenset()
    #: Direct grants of directory groups: group -> role (site groups and inherited access left out).
    grants: Mapping[str, str] = field(default_factory=dict)
    #: Retention labels by full path (the workspace's own under its path).
    labels: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


def _relative(path: str, workspace: str) -> str:
    return ROOT if key(path) == key(workspace) else path[len(workspace) + 1:]


def authority(policy: Policy, name: str) -> str:
    """Who owns a workspace field's value: the ERP's project field it copies, or the policy itself."""
    source = policy.metadata.get(name)
    if source is None:
        return "policy"
    return f"erp:{source.field}" if source.field is not None else "policy"


def compare_workspace(plan: WorkspacePlan, seen: WorkspaceSeen, policy: Policy, code: str) -> list[Finding]:
    """Every difference between the workspace the plan asks for and the one seen, walled grants first."""
    findings: list[Finding] = []
    planned = {key(group): (group, role) for group, role in plan.grants.items()}
    held = {key(group): (group, role) for group, role in seen.grants.items()}
    findings += [Finding("RC304", code, group, None, role, "policy:ethical_walls", code)
                 for _, (group, role) in sorted(held.items()) if plan.walls.blocks(group)]
    for group_key, (group, role) in sorted(held.items()):
        if plan.walls.blocks(group) or group_key in planned:
            continue
        elif governs(policy, plan.walls, group):
            findings.append(Finding("RC302", code, group, None, role, "policy:security_groups", code))
        else:
            findings.append(Finding("RC303", code, group, None, role, "none", code))
    for group_key, (group, role) in sorted(planned.items()):
        actual = held.get(group_key, (group, None))[1]
        if actual != role:
            findings.append(Finding("RC301", code, group, role, actual, "policy:security_groups", code))
    present = {key(path) for path in seen.folders} | {key(seen.path)}
    missing = {key(path) for path in plan.folders if key(path) not in present}
    findings += [Finding("RC103", code, _relative(path, plan.path), "folder", None, "policy:folders", code)
                 for path in plan.folders if key(path) in missing]
    labels = {key(path): label for path, label in seen.labels.items()}
    for path, label in plan.labels.items():
        if key(path) in missing:
            continue  # the folder's absence is the finding; provisioning labels it when it creates it
        actual_label = labels.get(key(path))
        if actual_label != label:
            findings.append(Finding("RC401", code, _relative(path, plan.path), label, actual_label,
                                    "policy:retention", code))
    for name, value in sorted(plan.metadata.items()):
        actual_value = seen.metadata.get(name)
        if actual_value != value:
            findings.append(Finding("RC201", code, name, value, actual_value, authority(policy, name), code))
    return findings
