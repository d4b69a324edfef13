"""Master-data sync: clients and projects keep one canonical record, each field owned by one system.

Source records are mapped by the declarative rules (``actors/default_mapping.yaml``), identified
through the crosswalk, and merged field by field (``actors.master_data_logic.merge``: authority and
source versions, so out-of-order and duplicate updates never regress a field). Changed fields are
pushed to the other systems (the client's name onto its workspaces' metadata) and announced as
``hub.client.changed.v1`` / ``hub.project.changed.v1`` on the topic exchange.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.errors import Retry
from dramatiq.middleware import CurrentMessage

from actors.master_data_logic import (
    CanonicalState,
    SourceUpdate,
    etag_version,
    merge,
    taxonomy_violations,
    to_model,
)
from connectors.sharepoint.client import GraphClient
from hub.crosswalk import RedisCrosswalk
from hub.errors import NEVER_RETRIED
from hub.events import CloudEvent, extension, from_message_body, make_event, validate_event
from hub.mapping import MappingFailed, MappingRules, apply_mapping
from hub.runtime import Runtime
from hub.store import RedisLocks, guarded
from observability.logging import get_logger

ACTOR_NAME = "master_data"
SOURCE = "hub://master-data"
TRIGGERS = ("erp.client.upserted.v1", "erp.project.created.v1", "erp.project.updated.v1",
            "dms.workspace.provisioned.v1", "dms.change.notified.v1")
log = get_logger(__name__)


def version_of(event: CloudEvent) -> str:
    """The source version: the ``sequence`` extension, else the event time in zero-padded milliseconds."""
    sequence = extension(event, "sequence")
    if sequence:
        return sequence
    moment = event.get_time() or datetime.now(UTC)
    return f"{int(moment.timestamp() * 1000):020d}"


def register(runtime: Runtime, *, rules: MappingRules, graph: GraphClient, crosswalk: RedisCrosswalk,
             max_attempts: int) -> Any:
    """Declare the master-data actor."""
    prefix, client = runtime.queue_prefix, runtime.redis
    locks = RedisLocks(client, prefix=prefix)

    def state_key(cid: str) -> str:
        return f"{prefix}:mdm:state:{cid}"

    def load(cid: str) -> CanonicalState | None:
        raw: Any = guarded(lambda: client.get(state_key(cid)))
        return None if raw is None else CanonicalState.model_validate_json(raw)

    @dramatiq.actor(broker=runtime.broker, actor_name=ACTOR_NAME, queue_name=f"{prefix}.{ACTOR_NAME}",
                    throws=NEVER_RETRIED, max_retries=max(max_attempts - 1, 0), on_dead_letter="exceptions")
    def master_data(event_body: dict[str, Any]) -> None:
        """Merge one source record into the canonical one; push and announce what changed."""
        event = from_message_body(event_body)
        record = validate_event(event, runtime.registry)
        if event.get_type() == "dms.workspace.provisioned.v1":
            project = crosswalk.canonical("project", "erp", str(record["project_code"]))
            crosswalk.link(project, "project", "sharepoint", str(record["workspace_id"]))
            _push_client_name_to_workspace(project)
            return
        if event.get_type() == "dms.change.notified.v1":
            _document_platform_change(event, record)
            return
        system = rules.system_for(event.get_source())
        if system is None:
            raise MappingFailed(f"no mapping rules for source {event.get_source()!r}", field="source")
        mapped = apply_mapping(rules, system, event.get_type(), record, lookup=crosswalk.canonical)
        cid = crosswalk.canonical(mapped.entity, mapped.key_system, mapped.key)
        token = locks.acquire(f"mdm:{cid}", ttl_ms=30_000)
        if token is None:
            raise Retry(f"{cid} is being merged by another worker", delay=200)
        try:
            result = merge(load(cid), SourceUpdate.of(mapped, canonical_id=cid, version=version_of(event)),
                           authority=rules.authority)
            guarded(lambda: client.set(state_key(cid), result.state.model_dump_json()))
        finally:
            locks.release(f"mdm:{cid}", token)
        if result.ignored:
            _count_ignored(system, len(result.ignored))
        values = result.state.values()
        if mapped.entity == "project" and values.get("client_id"):
            guarded(lambda: client.sadd(f"{prefix}:mdm:projects-of:{values['client_id']}", cid))
        if not result.changed:
            return
        if mapped.entity == "client" and "name" in result.changed:
            members: Any = guarded(lambda: client.smembers(f"{prefix}:mdm:projects-of:{cid}"))
            for project in sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members):
                _push_client_name_to_workspace(project)
        if mapped.entity == "project" and "client_id" in result.changed:
            _push_client_name_to_workspace(cid)
        _announce(mapped.entity, result.state, result.changed, system, version_of(event))

    def _document_platform_change(event: CloudEvent, record: dict[str, Any]) -> None:
        """A workspace's metadata changed on the platform: check its taxonomy, merge what it owns, and put
        back what it does not (the ERP owns client and project fields)."""
        item = record.get("resource_id")
        if record.get("platform") != "sharepoint" or not item:
            return
        fields = graph.fields(str(item))
        if fields.get("DocumentClass"):
            return  # a classified document, not a workspace: document intake reads it
        version = etag_version(str(fields.get("@odata.etag") or "")) if fields.get("@odata.etag") else \
            version_of(event)
        for event_type in ("workspace.project", "workspace.client"):
            needed = ("ProjectCode",) if event_type == "workspace.project" else ("ClientId", "ClientName")
            if not all(fields.get(name) for name in needed):
                continue
            mapped = apply_mapping(rules, "sharepoint", event_type, fields, lookup=crosswalk.canonical)
            violations = taxonomy_violations(mapped.fields, rules.taxonomy)
            if violations:
                _raise_taxonomy(event, str(item), [v.message for v in violations])
            cid = crosswalk.canonical(mapped.entity, mapped.key_system, mapped.key)
            if mapped.entity == "project":
                crosswalk.link(cid, "project", "sharepoint", str(item))
            result = merge(load(cid), SourceUpdate.of(mapped, canonical_id=cid, version=version),
                           authority=rules.authority)
            if result.ignored:
                _count_ignored("sharepoint", len(result.ignored))
            if result.drift and mapped.entity == "client":
                project = crosswalk.resolve("project", "sharepoint", str(item))
                if project:
                    _push_client_name_to_workspace(project)  # the platform's copy drifted: put it back

    def _count_ignored(system: str, count: int) -> None:
        """Non-authoritative field updates, counted per sending system (``<prefix>:mdm:ignored``)."""
        guarded(lambda: client.hincrby(f"{prefix}:mdm:ignored", system, count))

    def _raise_taxonomy(event: CloudEvent, item: str, problems: list[str]) -> None:
        data: dict[str, Any] = {
            "exception_id": f"taxonomy:{item}:{event.get_id()}", "owner": "records_management",
            "kind": "master_data.taxonomy", "severity": "medium", "subject": item,
            "detail": "; ".join(problems)[:2000], "project": None, "event_id": event.get_id(),
            "event_type": event.get_type(), "raised_at": datetime.now(UTC),
        }
        raised = make_event(runtime.registry, type="hub.exception.raised.v1", source=SOURCE,
                            id=data["exception_id"], subject=item, data=data)
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(raised, parent=CurrentMessage.get_current_message())

    def _push_client_name_to_workspace(project: str) -> None:
        workspace = crosswalk.identities(project).get("sharepoint")
        state = load(project)
        client_id = state.values().get("client_id") if state else None
        client_state = load(str(client_id)) if client_id else None
        name = client_state.values().get("name") if client_state else None
        if workspace and name:
            graph.ensure_fields(workspace, {"ClientName": str(name)})

    def _announce(entity: str, state: CanonicalState, changed: tuple[str, ...], system: str, version: str) -> None:
        model = to_model(state)
        if model is None:  # not every required field is known yet: nothing complete to announce
            return
        values = state.values()
        now = datetime.now(UTC)
        if entity == "client":
            event_type = "hub.client.changed.v1"
            data: dict[str, Any] = {"canonical_id": state.canonical_id, "name": values["name"],
                                    "country": values["country"], "status": values["status"],
                                    "industry": values.get("industry"),
                                    "parent_canonical_id": values.get("parent_client_id")}
        elif entity == "project":
            event_type = "hub.project.changed.v1"
            data = {"canonical_id": state.canonical_id, "client_canonical_id": values["client_id"],
                    **{k: values[k] for k in ("project_code", "name", "engagement_type", "practice", "region",
                                              "country", "partner", "status")}}
        else:
            return
        data.update(changed_fields=list(changed), source_system=system, source_version=version, changed_at=now)
        changed_event = make_event(runtime.registry, type=event_type, source=SOURCE,
                                   id=f"{state.canonical_id}:{system}:{version}", subject=state.canonical_id,
                                   data=data, partitionkey=f"{entity}:{state.canonical_id}", sequence=version)
        assert runtime.dispatcher is not None
        runtime.dispatcher.dispatch(changed_event, parent=CurrentMessage.get_current_message())

    return master_data
