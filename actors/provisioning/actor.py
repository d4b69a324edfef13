"""ERP-triggered provisioning: a project, engagement or matter in the ERP gets its workspace on the
document platform the policy chooses for it (SharePoint or Box: :class:`connectors.platform.Platforms`), exactly
as the policy says, and the ERP learns where it is; the crosswalk links the project to the workspace under the
platform's name.

Every run reconciles the workspace to the ERP's *current* record (read, not taken from the event),
one project at a time (a Redis lease per project code), so event order, duplicates, replays and
concurrent updates all end in the same workspace, and an ethical wall added by a later update
revokes what an earlier version granted. The decision is the pure :mod:`hub.workspace`.

Only the grants the policy governs are read and changed (:func:`~hub.workspace.governs`): a
new workspace inherits the site's owners, members and visitors, SharePoint turns them into direct grants
at the first invite, and they (like any group someone added by hand) stay. Retention labels (Box: retention
policies) are checked against the ones the platform publishes (when a worker process starts, see
:mod:`actors.provisioning.labels`; once per process and platform when it first provisions; and again before
applying one): a workspace whose label is not published is provisioned without it, and records management gets
an exception.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from actors.provisioning.store import ProvisioningStore
from connectors.erp.client import ErpClient
from connectors.erp.client import Project as ErpProject
from connectors.platform import DocumentPlatform, Platforms, RetentionNotPublished, RetentionRefused
from hub.actor import ActorContext, ActorSpec
from hub.crosswalk import CrosswalkStore
from hub.errors import HardStop
from hub.idempotency import side_effect_key
from hub.policy import Policy
from hub.store import Locks, holding
from hub.workspace import (
    ApplyLabel,
    EnsureFolder,
    GrantAccess,
    Project,
    RevokeGrant,
    SetFields,
    Step,
    WorkspacePlan,
    WorkspaceState,
    governs,
    plan_workspace,
    reconcile,
)
from observability.logging import get_logger
from observability.metrics import PROVISIONING

#: Reconciliation found the workspace differs from its plan (or is missing): the same run, asked for by name.
REPAIR_REQUESTED = "hub.reconciliation.repair_requested.v1"
#: A project created or updated in the ERP: reconcile its workspace, one run per project at a time (a run
#: usually takes a second or two; the lock's lifetime bounds how long a worker that dies provisioning keeps
#: the project locked).
SPEC = ActorSpec(name="provisioning", triggers=("erp.project.created.v1", "erp.project.updated.v1",
                                                REPAIR_REQUESTED), workflow="provisioning", lock_ttl_ms=60_000)
_NAMESPACE = uuid.UUID("0f7c2b9e-3d54-4a8e-b6a1-92c4d0e8f7a3")
log = get_logger(__name__)


def erp_record(project: ErpProject) -> dict[str, Any]:
    """The ERP's project as the plan's input record."""
    return {
        "project_code": project.code, "client_id": project.client_id, "name": project.name,
        "engagement_type": project.engagement_type, "practice": project.practice, "region": project.region,
        "country": project.country, "partner": project.partner, "status": project.status,
        "conflicted_groups": list(project.conflicted_groups), "updated_at": project.updated_at,
    }


def read_state(platform: DocumentPlatform, plan: WorkspacePlan,
               governed: Callable[[str], bool] = lambda _: True) -> tuple[WorkspaceState, dict[str, str]]:
    """What the platform holds now for the plan's folders, grants (of the ``governed`` groups only), labels
    and metadata."""
    ids: dict[str, str] = {}
    for path in plan.all_folders:
        item = platform.find_folder(path)
        if item is not None:
            ids[path] = item.id
    workspace = ids.get(plan.path)
    grants: dict[str, Any] = {}
    labels: dict[str, str] = {}
    metadata: dict[str, str] = {}
    if workspace is not None:
        grants = {group: role for group, role in platform.group_grants(workspace).items() if governed(group)}
        metadata = {k: v for k, v in platform.metadata(workspace).items() if k in plan.metadata}
    for path, label in plan.labels.items():
        if path in ids and platform.has_retention(ids[path], label):
            labels[path] = label
    return WorkspaceState(folders=frozenset(ids), grants=grants, labels=labels, metadata=metadata), ids


def execute(platform: DocumentPlatform, plan: WorkspacePlan, step: Step, ids: dict[str, str]) -> None:
    """Carry out one idempotent step (each one is safe to repeat after any partial failure)."""
    if isinstance(step, EnsureFolder):
        parent, _, name = step.path.rpartition("/")
        # A sub-folder of a folder known to exist: created in it at once, not looked up segment by segment.
        known = ids.get(parent)
        ids[step.path] = (platform.ensure_subfolder(known, name, step.path) if known
                          else platform.ensure_folder(step.path)).id
        return
    workspace = ids.get(plan.path) or platform.ensure_folder(plan.path).id
    if isinstance(step, RevokeGrant):
        platform.revoke(workspace, step.group)
    elif isinstance(step, GrantAccess):
        if plan.walls.blocks(step.group):  # the plan cannot hold one; this guard makes it impossible here too
            raise HardStop(f"refusing to grant walled group {step.group!r}: an ethical wall forbids it")
        platform.grant(workspace, step.group, step.role)
    elif isinstance(step, ApplyLabel):
        target = ids.get(step.path) or platform.ensure_folder(step.path).id
        platform.apply_retention(target, step.label)
    elif isinstance(step, SetFields):
        platform.set_metadata(workspace, dict(step.fields))


def plan_digest(plan: WorkspacePlan, refused: Mapping[str, str] | None = None) -> str:
    """A stable fingerprint of what the workspace must hold (and of the labels the platform refused it)."""
    parts = [plan.path, *plan.folders, *sorted(f"{g}={r}" for g, r in plan.grants.items()),
             *sorted(f"{p}={label}" for p, label in plan.labels.items()),
             *sorted(f"{k}={v}" for k, v in plan.metadata.items()),
             *sorted(f"refused:{p}={label}" for p, label in (refused or {}).items())]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def provisioned_record(plan: WorkspacePlan, project: Project, *, workspace_id: str, url: str, drive_id: str | None,
                       provisioning_ms: int, now: datetime) -> dict[str, Any]:
    """The ``dms.workspace.provisioned.v1`` data."""
    return {
        "project_code": project.project_code, "workspace_id": workspace_id, "drive_id": drive_id, "url": url,
        "provisioning_ms": provisioning_ms, "folders": list(plan.folders), "groups": sorted(plan.grants),
        "retention_label": plan.label, "provisioned_at": now,
    }


class Provisioning:
    """Reconciles a project's workspace with the policy and the ERP's current record."""

    def __init__(self, *, spec: ActorSpec = SPEC, policy: Policy, erp: ErpClient, platforms: Platforms,
                 crosswalk: CrosswalkStore, locks: Locks, store: ProvisioningStore) -> None:
        self.spec = spec
        self.policy, self.erp, self.platforms, self.crosswalk = policy, erp, platforms, crosswalk
        self.locks, self.store = locks, store
        self._labels_checked: set[str] = set()

    def handle(self, context: ActorContext) -> None:
        """One project at a time: a lock per project code; a held lock is an expected wait (EntityLocked)."""
        if context.event.get_type() == REPAIR_REQUESTED and (
                self.spec.name not in context.data["actors"] or not context.data.get("project_code")):
            return  # another actor's repair
        code = str(context.data["project_code"])
        with holding(self.locks, f"project:{code}", ttl_ms=self.spec.lock_ms,
                     busy=f"project {code} is being provisioned by another worker"):
            self._provision(code, context)

    def _provision(self, code: str, context: ActorContext) -> None:
        event = context.event
        first_seen = int((event.get_time() or context.now()).timestamp() * 1000)
        started_ms = self.store.first_seen(code, first_seen)
        current = self.erp.get_project(code)  # the truth now, whatever order the events came in
        project = Project.from_record(erp_record(current))
        plan = plan_workspace(project, self.policy)
        if plan.unknown_groups:
            self._raise_unknown_groups(code, sorted(plan.unknown_groups), context)
        if not current.workspace_url:
            self.erp.update_project(code, {"custom_fields": {"workspace_status": "provisioning"}},
                                    idempotency_key=side_effect_key(event.get_id(), self.spec.name, "erp-status"))
        platform = self.platforms.for_project(project.values())
        self._check_labels(platform)
        state, ids = read_state(platform, plan, lambda group: governs(self.policy, plan.walls, group))
        steps = reconcile(state, plan)
        missing: set[str] = set()
        refused: dict[str, str] = {}  # folder -> the label the platform would not put it under
        for step in steps:
            if isinstance(step, ApplyLabel) and (step.label in missing or not self._published(platform, step.label)):
                missing.add(step.label)
                continue
            try:
                execute(platform, plan, step, ids)
            except RetentionNotPublished:
                if not isinstance(step, ApplyLabel):
                    raise
                missing.add(step.label)
            except RetentionRefused:
                if not isinstance(step, ApplyLabel):
                    raise
                refused[step.path] = step.label
        for label in sorted(missing):
            self._raise_missing_label(code, label, plan, context)
        for path, label in sorted(refused.items()):
            self._raise_refused_label(code, path, label, platform.name, context)
        workspace = platform.ensure_folder(plan.path)
        url = platform.web_url(workspace)
        canonical = self.crosswalk.canonical("project", "erp", code)
        self.crosswalk.link(canonical, "project", platform.name, workspace.id)
        if current.workspace_url != url or current.custom_fields.get("workspace_status") != "provisioned":
            self.erp.update_project(code, {"custom_fields": {"workspace_url": url, "workspace_status": "provisioned"}},
                                    idempotency_key=side_effect_key(event.get_id(), self.spec.name, "erp-link"))
        # A label the platform refused leaves the workspace short of its plan: announced apart from the finished
        # one, so the run that applies it later announces again (the readiness gate reads Box's files again then).
        digest = plan_digest(plan, refused)
        if self.store.announced(code) == digest and not steps:
            return
        now = context.now()
        data = provisioned_record(plan, project, workspace_id=workspace.id, url=url, drive_id=platform.location,
                                  provisioning_ms=max(int(now.timestamp() * 1000) - started_ms, 0), now=now)
        context.emit("dms.workspace.provisioned.v1", data, id=str(uuid.uuid5(_NAMESPACE, f"{code}:{digest}")),
                     subject=code, partitionkey=f"project:{canonical}")
        self.store.mark_announced(code, digest)
        PROVISIONING.observe(data["provisioning_ms"] / 1000)
        log.info("workspace provisioned", project_code=code, platform=platform.name, steps=len(steps),
                 provisioning_ms=data["provisioning_ms"])

    def _check_labels(self, platform: DocumentPlatform) -> None:
        """Once per process and platform: say which of the policy's labels it does not publish (when it can tell)."""
        if platform.name in self._labels_checked:
            return
        published = platform.published_retention()
        self._labels_checked.add(platform.name)
        if published is None:
            log.info("the tenant's retention labels cannot be listed; a label is checked when it is applied",
                     platform=platform.name)
            return
        missing = sorted(self.policy.retention.all_labels() - published)
        if missing:
            log.warning("the tenant does not publish retention labels the policy applies", platform=platform.name,
                        labels=missing)

    def _published(self, platform: DocumentPlatform, label: str) -> bool:
        """Whether the platform publishes ``label`` (read again on a miss: it may have been published since);
        true when the labels cannot be listed (applying it then says)."""
        published = platform.published_retention()
        if published is None or label in published:
            return True
        published = platform.published_retention(refresh=True)
        return published is None or label in published

    def _raise_missing_label(self, code: str, label: str, plan: WorkspacePlan, context: ActorContext) -> None:
        """A label the tenant does not publish: the workspace goes without it, and records management is told."""
        log.warning("retention label not published by the tenant; workspace provisioned without it", label=label)
        context.raise_exception(
            "records_management", kind="provisioning.retention_label_missing",
            id=str(uuid.uuid5(_NAMESPACE, f"label-missing:{code}:{label}")), subject=code,
            detail=f"retention label {label!r} is not published by the tenant; {plan.path} is provisioned without "
                   "it until it is published", project_code=code)

    def _raise_refused_label(self, code: str, path: str, label: str, platform: str, context: ActorContext) -> None:
        """The platform keeps a folder under a retention it will not replace (Box: one at least as long, as when a
        project moves to a jurisdiction keeping records for less time): the rest is provisioned, and records
        management decides (lift the old assignment, or keep it)."""
        log.warning("the platform refused a retention label; the folder keeps the one it has", label=label,
                    platform=platform)
        context.raise_exception(
            "records_management", kind="provisioning.retention_refused",
            id=str(uuid.uuid5(_NAMESPACE, f"label-refused:{code}:{path}:{label}")), subject=code,
            detail=f"{platform} keeps {path} under a retention it will not replace with {label!r} (one at least as "
                   "long is assigned); the rest of the workspace is provisioned", project_code=code)

    def _raise_unknown_groups(self, code: str, groups: list[str], context: ActorContext) -> None:
        """The policy derives groups ``known_groups`` does not list: provisioned without them, and said."""
        log.warning("policy derives groups the directory does not know", groups=groups)
        context.raise_exception(
            self.spec.owner, kind="provisioning.unknown_groups",
            id=str(uuid.uuid5(_NAMESPACE, f"unknown-groups:{code}:{','.join(groups)}")), subject=code,
            detail=f"groups not in the directory, not granted: {', '.join(groups)}", project_code=code)
