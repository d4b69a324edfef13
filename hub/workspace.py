"""The workspace a project must have under the policy, and the steps still missing: pure functions, no I/O.

Two patterns read it: provisioning turns the ERP event into a :class:`Project`, asks :func:`plan_workspace`
for the target, reads the workspace's current state through its connectors, and executes :func:`reconcile`'s
steps in order (re-running is harmless: a finished workspace reconciles to no steps at all); reconciliation
compares every workspace with its plan in bulk and asks provisioning to repair what differs.

Ethical walls: a :class:`WorkspacePlan` can never grant a walled group (checked when it is built),
and :func:`reconcile` puts every revocation before any other step, so a conflict added by a later
update removes the earlier grant before anything else happens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal, get_args

from hub.errors import InvalidEvent
from hub.policy import (
    ENGAGEMENT_TYPES,
    PROJECT_FIELDS,
    REGIONS,
    WORKSPACES_ROOT,
    DocumentClass,
    EngagementType,
    Policy,
    Region,
    Role,
    fill,
    placeholders,
    valid_segment,
)

ProjectStatus = Literal["planned", "active", "on_hold", "closed", "cancelled"]
#: Why a grant is revoked: a wall forbids it, or the plan no longer lists the group.
RevokeReason = Literal["wall", "not_in_plan"]
_STATUSES: tuple[ProjectStatus, ...] = get_args(ProjectStatus)


@dataclass(frozen=True)
class Project:
    """The fields of an ``erp.project.created.v1`` / ``updated.v1`` event that provisioning uses."""

    project_code: str
    client_id: str
    name: str
    engagement_type: EngagementType
    practice: str
    region: Region
    country: str
    partner: str
    status: ProjectStatus = "active"
    conflicted_groups: frozenset[str] = frozenset()
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("engagement_type", ENGAGEMENT_TYPES), ("region", REGIONS), ("status", _STATUSES)):
            if getattr(self, name) not in allowed:
                raise InvalidEvent(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}", field=name)
        for name in ("project_code", "client_id", "practice", "country"):
            if not getattr(self, name).strip():
                raise InvalidEvent(f"{name} is empty", field=name)
        if self.updated_at is not None and self.updated_at.tzinfo is None:
            raise InvalidEvent("updated_at must be timezone-aware", field="updated_at")
        object.__setattr__(self, "conflicted_groups", frozenset(self.conflicted_groups))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Project:
        """Build from a decoded Avro record (``updated_at`` as an aware datetime or epoch milliseconds)."""
        missing = [name for name in PROJECT_FIELDS if name not in record]
        if missing:
            raise InvalidEvent(f"project record lacks {', '.join(missing)}", field=missing[0])
        wrong = [name for name in PROJECT_FIELDS if not isinstance(record[name], str)]
        if wrong:
            raise InvalidEvent(f"project field {wrong[0]} is not a string", field=wrong[0])
        groups = record.get("conflicted_groups") or []
        if not isinstance(groups, list | tuple | set | frozenset) or not all(isinstance(g, str) for g in groups):
            raise InvalidEvent("conflicted_groups must be a list of strings", field="conflicted_groups")
        stamp = record.get("updated_at")
        if isinstance(stamp, int) and not isinstance(stamp, bool):
            stamp = datetime.fromtimestamp(stamp / 1000, tz=UTC)
        if stamp is not None and not (isinstance(stamp, datetime) and stamp.tzinfo is not None):
            raise InvalidEvent("updated_at must be epoch milliseconds or an aware datetime", field="updated_at")
        return cls(**{name: record[name] for name in PROJECT_FIELDS},
                   conflicted_groups=frozenset(groups), updated_at=stamp)

    def values(self) -> dict[str, str]:
        """The template values: each project field by name."""
        return {name: str(getattr(self, name)) for name in PROJECT_FIELDS}


def supersedes(incoming: Project, applied: datetime | None) -> bool:
    """Whether ``incoming`` should be applied over the version last applied (stored by the actor).

    Older versions are skipped so that a late, replayed or duplicated event never regresses the
    workspace (nor re-grants a group a newer version walled); the same version is applied again,
    which is harmless.
    """
    return applied is None or incoming.updated_at is None or incoming.updated_at >= applied


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.strip().casefold().split("*")))


def _key(name: str) -> str:
    """Group names and paths compare case-insensitively, as in Entra ID and SharePoint."""
    return name.strip().casefold()


@dataclass(frozen=True)
class WallSet:
    """Group patterns behind an ethical wall (``*`` is a wildcard; matching ignores case)."""

    patterns: tuple[str, ...] = ()

    def blocks(self, group: str) -> bool:
        """Whether the wall forbids granting ``group``."""
        return any(_pattern(p).fullmatch(_key(group)) for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)


def walls_for(project: Project, policy: Policy) -> WallSet:
    """The policy's ``never_grant`` patterns for the project plus its own ``conflicted_groups``."""
    policy_patterns = policy.ethical_walls.patterns_for(project.engagement_type, project.practice)
    return WallSet(tuple(dict.fromkeys((*policy_patterns, *sorted(project.conflicted_groups)))))


def governs(policy: Policy, walls: WallSet, group: str) -> bool:
    """Whether provisioning manages ``group``'s grants on a workspace: one a wall forbids, or one the policy
    can grant: one of ``known_groups`` when the policy lists them (it grants no other), else a group some
    rule's template can make (each placeholder a wildcard). Any other grant (the site's owners, a group
    someone added by hand) is never changed."""
    if walls.blocks(group):
        return True
    known = policy.security_groups.known_groups
    if known is not None:
        return _key(group) in {_key(g) for g in known}
    rules = (*policy.security_groups.templates,
             *(rule for rules in policy.security_groups.per_engagement_type.values() for rule in rules))
    return any(_pattern(re.sub(r"\{[^}]*\}", "*", rule.group)).fullmatch(_key(group)) for rule in rules)


def safe_grants(desired: Mapping[str, Role], walls: WallSet) -> dict[str, Role]:
    """``desired`` without every group the walls forbid."""
    return {group: role for group, role in desired.items() if not walls.blocks(group)}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class WorkspacePlan:
    """What a project's workspace must look like once provisioned."""

    path: str
    #: Full folder paths, parents before children; the workspace folder itself is ``path``.
    folders: tuple[str, ...]
    grants: Mapping[str, Role]
    #: Groups the policy would grant but a wall forbids.
    denied: frozenset[str]
    walls: WallSet
    #: Retention label of the workspace folder.
    label: str
    #: Retention labels of folders bound to a document class, by full path.
    folder_labels: Mapping[str, str]
    metadata: Mapping[str, str]
    #: Groups the policy derives but ``known_groups`` does not list: not granted; an exception for the owner.
    unknown_groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        walled = sorted(group for group in self.grants if self.walls.blocks(group))
        if walled:
            raise ValueError(f"a plan may not grant walled groups: {', '.join(walled)}")
        for name in ("grants", "folder_labels", "metadata"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def all_folders(self) -> tuple[str, ...]:
        """Every folder to ensure, parents first: the root's folders, the workspace, its folders."""
        parts = self.path.split("/")
        return (*("/".join(parts[:depth]) for depth in range(1, len(parts))), self.path, *self.folders)

    @property
    def labels(self) -> dict[str, str]:
        """Every retention label by full path, the workspace's first."""
        return {self.path: self.label, **self.folder_labels}


def _stronger(a: Role | None, b: Role) -> Role:
    return "write" if "write" in (a, b) else "read"


def retention_label(project: Project, policy: Policy, document_class: DocumentClass | None = None) -> str:
    """The retention label of the project's workspace, or of one of its document classes."""
    return policy.retention.label_for(region=project.region, country=project.country, client_id=project.client_id,
                                      engagement_type=project.engagement_type, document_class=document_class)


def _folders(project: Project, policy: Policy, path: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """Full folder paths (implicit parents added, parents first) and labels of class-bound folders."""
    folders: dict[str, str] = {}
    labels: dict[str, str] = {}
    for spec in policy.folders_for(project.engagement_type):
        parts = spec.path.split("/")
        for depth in range(1, len(parts) + 1):
            full = f"{path}/{'/'.join(parts[:depth])}"
            folders.setdefault(_key(full), full)
        if spec.document_class is not None:
            labels[folders[_key(f"{path}/{spec.path}")]] = retention_label(project, policy, spec.document_class)
    return tuple(folders.values()), labels


def _desired_grants(project: Project, policy: Policy) -> tuple[dict[str, Role], set[str]]:
    """The groups the policy derives for the project (the stronger role wins), and unknown ones."""
    desired: dict[str, Role] = {}
    unknown: set[str] = set()
    values = project.values()
    for rule in policy.group_rules_for(project.engagement_type):
        group = fill(rule.group, values)
        if not policy.security_groups.is_known(group):
            unknown.add(group)
            continue
        same = next((g for g in desired if _key(g) == _key(group)), group)
        desired[same] = _stronger(desired.get(same), rule.role)
    return desired, unknown


def workspace_path(project: Project, policy: Policy, *, root: str = WORKSPACES_ROOT) -> str:
    """Where the project's workspace must be (the path of :func:`plan_workspace`'s plan, without the rest of it).

    Raises ``InvalidEvent`` when a project value used in the path is not a safe folder name.
    """
    if root.strip("/") and not all(valid_segment(part) for part in root.strip("/").split("/")):
        raise ValueError(f"root {root!r} is not a folder path")
    values = project.values()
    for name in sorted(placeholders(policy.workspace.path)):
        if not valid_segment(values[name]):
            raise InvalidEvent(f"{name} {values[name]!r} cannot be used as a folder name", field=name)
    return policy.workspace_path(values, root=root)


def plan_workspace(project: Project, policy: Policy, *, root: str = WORKSPACES_ROOT) -> WorkspacePlan:
    """The workspace the policy asks for ``project``, below ``root`` of the document library.

    Raises ``InvalidEvent`` when a project value used in the workspace path is not a safe folder name.
    """
    path = workspace_path(project, policy, root=root)
    values = project.values()
    folders, folder_labels = _folders(project, policy, path)
    desired, unknown = _desired_grants(project, policy)
    walls = walls_for(project, policy)
    grants = safe_grants(desired, walls)
    return WorkspacePlan(
        path=path,
        folders=folders,
        grants=grants,
        denied=frozenset(desired) - frozenset(grants),
        walls=walls,
        label=retention_label(project, policy),
        folder_labels=folder_labels,
        metadata={name: source.value(values) for name, source in policy.metadata.items()},
        unknown_groups=frozenset(unknown),
    )


@dataclass(frozen=True)
class WorkspaceState:
    """What the document platform holds now (read by the actor before reconciling)."""

    #: Full paths of the plan's folders that exist (``WorkspacePlan.all_folders``); others may be omitted.
    folders: frozenset[str] = frozenset()
    grants: Mapping[str, Role] = field(default_factory=dict)
    #: Retention labels by full path (workspace folder and subfolders).
    labels: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = [_key(group) for group in self.grants]
        if len(keys) != len(set(keys)):
            raise ValueError("grants name one group twice (group names ignore case)")
        object.__setattr__(self, "folders", frozenset(self.folders))
        for name in ("grants", "labels", "metadata"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @classmethod
    def of(cls, plan: WorkspacePlan) -> WorkspaceState:
        """The state a finished plan leaves (as the embedded platform stub would hold it)."""
        return cls(folders=frozenset(plan.all_folders), grants=plan.grants, labels=plan.labels,
                   metadata=plan.metadata)


@dataclass(frozen=True)
class RevokeGrant:
    """Remove ``group``'s access to the workspace."""

    group: str
    reason: RevokeReason


@dataclass(frozen=True)
class EnsureFolder:
    """Create the folder at ``path`` unless it exists (its parent exists by then)."""

    path: str


@dataclass(frozen=True)
class GrantAccess:
    """Give ``group`` exactly ``role`` on the workspace (replacing another role it holds)."""

    group: str
    role: Role


@dataclass(frozen=True)
class ApplyLabel:
    """Apply retention ``label`` to the folder at ``path``."""

    path: str
    label: str


@dataclass(frozen=True)
class SetFields:
    """Set these metadata ``fields`` of the workspace folder at ``path`` (other fields stay)."""

    path: str
    fields: tuple[tuple[str, str], ...]


Step = RevokeGrant | EnsureFolder | GrantAccess | ApplyLabel | SetFields


def revocations(current_grants: Mapping[str, Role], plan: WorkspacePlan) -> set[str]:
    """Groups granted now that must lose access: walled ones and those the plan no longer grants."""
    planned = {_key(group) for group in plan.grants}
    return {group for group in current_grants if plan.walls.blocks(group) or _key(group) not in planned}


def reconcile(current: WorkspaceState, plan: WorkspacePlan) -> list[Step]:
    """The ordered steps still needed to turn ``current`` into ``plan``; empty when done.

    Order: revocations (walled groups first), folders (parents first, from the root's folders down),
    grants, retention labels, metadata. Folders and metadata fields the plan does not name are left alone.
    """
    steps: list[Step] = []
    revoked = revocations(current.grants, plan)
    steps += [RevokeGrant(g, "wall") for g in sorted(revoked) if plan.walls.blocks(g)]
    steps += [RevokeGrant(g, "not_in_plan") for g in sorted(revoked) if not plan.walls.blocks(g)]
    existing = {_key(path) for path in current.folders}
    steps += [EnsureFolder(path) for path in plan.all_folders if _key(path) not in existing]
    held = {_key(group): role for group, role in current.grants.items()}
    steps += [GrantAccess(g, role) for g, role in sorted(plan.grants.items()) if held.get(_key(g)) != role]
    labels = {_key(path): label for path, label in current.labels.items()}
    steps += [ApplyLabel(path, label) for path, label in plan.labels.items() if labels.get(_key(path)) != label]
    fields = tuple(sorted((k, v) for k, v in plan.metadata.items() if current.metadata.get(k) != v))
    if fields:
        steps.append(SetFields(plan.path, fields))
    return steps
