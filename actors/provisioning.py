"""ERP-triggered provisioning: a project, engagement or matter in the ERP gets its workspace on the
document platform, exactly as the policy says, and the ERP learns where it is.

Every run reconciles the workspace to the ERP's *current* record (read, not taken from the event),
one project at a time (a Redis lease per project code), so event order, duplicates, replays and
concurrent updates all end in the same workspace, and an ethical wall added by a later update
revokes what an earlier version granted. The decision is the pure ``actors.provisioning_plan``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.errors import Retry
from dramatiq.middleware import CurrentMessage

from actors.provisioning_plan import (
    ApplyLabel,
    EnsureFolder,
    GrantAccess,
    Project,
    RevokeGrant,
    SetFields,
    Step,
    WorkspacePlan,
    WorkspaceState,
    plan_workspace,
    reconcile,
)
from connectors.erp.client import ErpClient
from connectors.erp.client import Project as ErpProject
from connectors.sharepoint.client import GraphClient
from hub.crosswalk import CrosswalkStore
from hub.errors import NEVER_RETRIED
from hub.events import from_message_body, make_event, validate_event
from hub.idempotency import side_effect_key
from hub.policy import Policy
from hub.runtime import Runtime
from hub.store import RedisLocks, guarded
from observability.logging import get_logger

ACTOR_NAME = "provisioning"
SOURCE = "hub://provisioning"
#: Event types that trigger a reconciliation of the project's workspace.
TRIGGERS = ("erp.project.created.v1", "erp.project.updated.v1")
_LOCK_TTL_MS = 60_000
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


def read_state(graph: GraphClient, plan: WorkspacePlan) -> tuple[WorkspaceState, dict[str, str]]:
    """What the platform holds now for the plan's folders, grants, labels and metadata."""
    ids: dict[str, str] = {}
    for path in plan.all_folders:
        item = graph.get_by_path(path)
        if item is not None:
            ids[path] = item.id
    workspace = ids.get(plan.path)
    grants: dict[str, Any] = {}
    labels: dict[str, str] = {}
    metadata: dict[str, str] = {}
    if workspace is not None:
        for permission in graph.grants(workspace):
            principals = permission.principals()
            if permission.inherited_from is None and len(principals) == 1 and permission.roles:
                name = principals[0].display_name or principals[0].email or principals[0].id
                if name and permission.roles[0] in ("read", "write"):
                    grants[name] = permission.roles[0]
        fields = graph.fields(workspace)
        metadata = {k: str(v) for k, v in fields.items() if k in plan.metadata}
    for path in plan.labels:
        if path in ids:
            name = graph.retention_label(ids[path]).name
            if name:
                labels[path] = name
    return WorkspaceState(folders=frozenset(ids), grants=grants, labels=labels, metadata=metadata), ids


def execute(graph: GraphClient, plan: WorkspacePlan, step: Step, ids: dict[str, str]) -> None:
    """Carry out one idempotent step (each one is safe to repeat after any partial failure)."""
    if isinstance(step, EnsureFolder):
        ids[step.path] = graph.ensure_folder(step.path).id
        return
    workspace = ids.get(plan.path) or graph.ensure_folder(plan.path).id
    if isinstance(step, RevokeGrant):
        graph.revoke_grant(workspace, step.group)
    elif isinstance(step, GrantAccess):
        if plan.walls.blocks(step.group):  # the plan cannot hold one; this guard makes it impossible here too
            raise AssertionError(f"refusing to grant walled group {step.group!r}")
        graph.ensure_grant(workspace, step.group, step.role)
    elif isinstance(step, ApplyLabel):
        target = ids.get(step.path) or graph.ensure_folder(step.path).id
        graph.ensure_retention_label(target, step.label)
    elif isinstance(step, SetFields):
        graph.ensure_fields(workspace, dict(step.fields))


def plan_digest(plan: WorkspacePlan) -> str:
    """A stable fingerprint of what the workspace must hold."""
    parts = [plan.path, *plan.folders, *sorted(f"{g}={r}" for g, r in plan.grants.items()),
             *sorted(f"{p}={label}" for p, label in plan.labels.items()),
             *sorted(f"{k}={v}" for k, v in plan.metadata.items())]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def provisioned_record(plan: WorkspacePlan, project: Project, *, workspace_id: str, url: str, drive_id: str,
                       provisioning_ms: int, now: datetime) -> dict[str, Any]:
    """The ``dms.workspace.provisioned.v1`` data."""
    return {
        "project_code": project.project_code, "workspace_id": workspace_id, "drive_id": drive_id, "url": url,
        "provisioning_ms": provisioning_ms, "folders": list(plan.folders), "groups": sorted(plan.grants),
        "retention_label": plan.label, "provisioned_at": now,
    }


def register(runtime: Runtime, *, policy: Policy, erp: ErpClient, graph: GraphClient,
             crosswalk: CrosswalkStore) -> Any:
    """Declare the provisioning actor."""
    workflow = policy.workflow("provisioning")
    locks = RedisLocks(runtime.redis, prefix=runtime.queue_prefix)
    client = runtime.redis
    prefix = runtime.queue_prefix

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR_NAME, queue_name=f"{prefix}.{ACTOR_NAME}",
                    throws=NEVER_RETRIED, max_retries=max(workflow.max_attempts - 1, 0),
                    on_dead_letter="exceptions")
    def provisioning(event_body: dict[str, Any]) -> None:
        """Reconcile the project's workspace with the policy and the ERP's current record."""
        event = validate_event_body(event_body)
        code = str(event["subject"])
        token = locks.acquire(f"project:{code}", ttl_ms=_LOCK_TTL_MS)
        if token is None:
            # An expected wait, not an error: the holder usually finishes in well under a second (the
            # lease TTL only bounds a dead holder). A Retry is retried with its delay and not logged as a failure.
            raise Retry(f"project {code} is being provisioned by another worker",
                        delay=min(max(locks.ttl_ms(f"project:{code}"), 200), 1_000))
        try:
            _provision(code, event)
        finally:
            locks.release(f"project:{code}", token)

    def validate_event_body(event_body: dict[str, Any]) -> dict[str, Any]:
        event = from_message_body(event_body)
        record = validate_event(event, runtime.registry)
        first_seen = int((event.get_time() or datetime.now(UTC)).timestamp() * 1000)
        return {"id": event.get_id(), "subject": record["project_code"], "first_seen_ms": first_seen}

    def _provision(code: str, event: Mapping[str, Any]) -> None:
        seen_key = f"{prefix}:provisioning:first_seen:{code}"
        guarded(lambda: client.set(seen_key, event["first_seen_ms"], nx=True))
        current = erp.get_project(code)  # the truth now, whatever order the events came in
        project = Project.from_record(erp_record(current))
        plan = plan_workspace(project, policy)
        if plan.unknown_groups:
            _raise_unknown_groups(code, sorted(plan.unknown_groups), event)
        if not current.workspace_url:
            erp.update_project(code, {"custom_fields": {"workspace_status": "provisioning"}},
                               idempotency_key=side_effect_key(str(event["id"]), ACTOR_NAME, "erp-status"))
        state, ids = read_state(graph, plan)
        steps = reconcile(state, plan)
        for step in steps:
            execute(graph, plan, step, ids)
        workspace = graph.ensure_folder(plan.path)
        url = workspace.web_url or ""
        canonical = crosswalk.canonical("project", "erp", code)
        crosswalk.link(canonical, "project", "sharepoint", workspace.id)
        if current.workspace_url != url or current.custom_fields.get("workspace_status") != "provisioned":
            erp.update_project(code, {"custom_fields": {"workspace_url": url, "workspace_status": "provisioned"}},
                               idempotency_key=side_effect_key(str(event["id"]), ACTOR_NAME, "erp-link"))
        digest = plan_digest(plan)
        marker = f"{prefix}:provisioning:done:{code}"
        if guarded(lambda: client.get(marker)) == digest.encode() and not steps:
            return
        raw_seen: Any = guarded(lambda: client.get(seen_key))
        started_ms = int(raw_seen) if raw_seen else int(time.time() * 1000)
        now = datetime.now(UTC)
        data = provisioned_record(plan, project, workspace_id=workspace.id, url=url, drive_id=graph.drive_id,
                                  provisioning_ms=max(int(now.timestamp() * 1000) - started_ms, 0), now=now)
        emitted = make_event(runtime.registry, type="dms.workspace.provisioned.v1", source=SOURCE,
                             id=str(uuid.uuid5(_NAMESPACE, f"{code}:{digest}")), subject=code, data=data,
                             partitionkey=f"project:{canonical}")
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(emitted, parent=CurrentMessage.get_current_message())
        guarded(lambda: client.set(marker, digest))
        log.info("workspace provisioned", project_code=code, steps=len(steps), provisioning_ms=data["provisioning_ms"])

    def _raise_unknown_groups(code: str, groups: list[str], event: Mapping[str, Any]) -> None:
        """The policy derives groups ``known_groups`` does not list: provisioned without them, and said."""
        log.warning("policy derives groups the directory does not know", groups=groups)
        data: dict[str, Any] = {
            "exception_id": str(uuid.uuid5(_NAMESPACE, f"unknown-groups:{code}:{','.join(groups)}")),
            "owner": workflow.owner, "kind": "provisioning.unknown_groups", "severity": "medium",
            "subject": code, "detail": f"groups not in the directory, not granted: {', '.join(groups)}",
            "project": {"code": code, "erp_id": None, "workspace_id": None},
            "event_id": str(event["id"]), "event_type": None, "raised_at": datetime.now(UTC),
        }
        raised = make_event(runtime.registry, type="hub.exception.raised.v1", source=SOURCE,
                            id=data["exception_id"], subject=code, data=data)
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(raised, parent=CurrentMessage.get_current_message())

    return provisioning
