"""Master-data sync: clients and projects keep one canonical record, each field owned by one system.

Source records are mapped by the declarative rules (``actors/master_data/default_mapping.yaml``),
identified through the crosswalk, and merged field by field (:func:`actors.master_data.model.merge`: authority and
source versions, so out-of-order and duplicate updates never regress a field). Changed fields are
pushed to the other systems (the client's name onto its workspaces' metadata) and announced as
``hub.client.changed.v1`` / ``hub.project.changed.v1`` on the topic exchange. The push goes to each workspace the
crosswalk links the project to, on its own platform (SharePoint or Box, :class:`connectors.platform.Platforms`).

A document platform's change notification is not trusted to name the item (Graph's driveItem notifications carry
only ``resourceData["@odata.type"]``): master data reads the changes of the platform of that name since its own
cursor (:meth:`connectors.platform.DocumentPlatform.changes`: SharePoint's drive ``delta``, Box's event stream) and
checks every changed workspace folder's metadata against the taxonomy (the mapping rules of the system of the
platform's name), putting back what the platform does not own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from actors.master_data.cursor import DeltaCursor, MemoryDeltaCursor
from actors.master_data.mapping import MappingFailed, MappingRules, apply_mapping
from actors.master_data.model import (
    CanonicalState,
    SourceUpdate,
    etag_version,
    merge,
    taxonomy_violations,
    to_model,
)
from actors.master_data.store import MasterDataStore
from connectors.erp.client import ErpClient, client_record, project_record, sequence_of
from connectors.platform import DocumentPlatform, ItemGone, Platforms, changes_key
from hub.actor import ActorContext, ActorSpec
from hub.crosswalk import CrosswalkStore
from hub.errors import ConfigurationError
from hub.events import CloudEvent, extension
from hub.outbox import Outgoing
from hub.store import Locks, holding
from observability.logging import get_logger
from observability.metrics import SYNC_LAG

#: Client and project events from the ERP, provisioned workspaces and the document platform's changes; one
#: merge per canonical record at a time (a merge takes well under a second: the lock's lifetime only bounds
#: how long a worker that dies merging keeps the record locked).
#: Reconciliation found a canonical record missing or behind the ERP: merged again from the ERP's record.
REPAIR_REQUESTED = "hub.reconciliation.repair_requested.v1"
SPEC = ActorSpec(name="master_data", triggers=(
    "erp.client.upserted.v1", "erp.project.created.v1", "erp.project.updated.v1", "dms.workspace.provisioned.v1",
    "dms.change.notified.v1", REPAIR_REQUESTED), workflow="master_data_sync", lock_ttl_ms=30_000)
log = get_logger(__name__)


def version_of(event: CloudEvent) -> str:
    """The source version: the ``sequence`` extension, else the event time in zero-padded milliseconds."""
    sequence = extension(event, "sequence")
    if sequence:
        return sequence
    moment = event.get_time() or datetime.now(UTC)
    return f"{int(moment.timestamp() * 1000):020d}"


class MasterData:
    """Merges source records into canonical ones; pushes and announces what changed."""

    def __init__(self, *, spec: ActorSpec = SPEC, rules: MappingRules, platforms: Platforms,
                 crosswalk: CrosswalkStore, locks: Locks, store: MasterDataStore,
                 cursor: DeltaCursor | None = None, erp: ErpClient | None = None) -> None:
        """``platforms``: where workspaces are pushed to and their changes read back; ``erp``: where a repair reads
        the ERP's record now."""
        self.spec = spec
        #: Where a repair reads the ERP's record now (None: repairs are not this process's to make).
        self.erp = erp
        self.rules, self.platforms, self.crosswalk, self.locks, self.store = rules, platforms, crosswalk, locks, store
        self.cursor: DeltaCursor = cursor if cursor is not None else MemoryDeltaCursor()

    def handle(self, context: ActorContext) -> None:
        """Merge one source record into the canonical one; push and announce what changed."""
        event, record = context.event, context.data
        if event.get_type() == "dms.workspace.provisioned.v1":
            project = self.crosswalk.canonical("project", "erp", str(record["project_code"]))
            workspace = str(record["workspace_id"])
            linked = self.crosswalk.identities(project)
            if workspace not in {linked.get(platform.name) for platform in self.platforms}:
                # Provisioning links the workspace under its platform first; one announced without it is the
                # default platform's (the announcements of a hub before Box).
                self.crosswalk.link(project, "project", self.platforms.default.name, workspace)
            self._push_client_name_to_workspace(project)
            return
        if event.get_type() == "dms.change.notified.v1":
            self._document_platform_change(context)
            return
        if event.get_type() == REPAIR_REQUESTED:
            self._repair(context)
            return
        system = self.rules.system_for(event.get_source())
        if system is None:
            raise MappingFailed(f"no mapping rules for source {event.get_source()!r}", field="source")
        self._merge(context, system, event.get_type(), record, version_of(event), event.get_time())

    def _repair(self, context: ActorContext) -> None:
        """Reconciliation found a canonical record missing or behind the ERP: merge the ERP's record as it is now,
        at its version (an older one changes nothing)."""
        data = context.data
        if self.spec.name not in data["actors"]:
            return  # another actor's repair
        if self.erp is None:
            raise ConfigurationError("master data was given no ERP client to repair from")
        subject = str(data["subject"])
        if subject.startswith("client:"):
            client = self.erp.get_client(subject.removeprefix("client:"))
            self._merge(context, "erp", "erp.client.upserted.v1", client_record(client), sequence_of(client.version),
                        None)
        elif data.get("project_code"):
            project = self.erp.get_project(str(data["project_code"]))
            self._merge(context, "erp", "erp.project.updated.v1", project_record(project),
                        sequence_of(project.version), None)

    def _merge(self, context: ActorContext, system: str, event_type: str, record: Mapping[str, Any], version: str,
               changed_at: datetime | None) -> None:
        """Merge one source record into the canonical one; push and announce what changed."""
        mapped = apply_mapping(self.rules, system, event_type, record, lookup=self.crosswalk.canonical)
        cid = self.crosswalk.canonical(mapped.entity, mapped.key_system, mapped.key)
        with holding(self.locks, f"mdm:{cid}", ttl_ms=self.spec.lock_ms,
                     busy=f"{cid} is being merged by another worker"):
            result = merge(self.store.load(cid), SourceUpdate.of(mapped, canonical_id=cid, version=version),
                           authority=self.rules.authority)
            # The pushes come before the save: one that fails leaves the change unsaved, so the retry
            # merges it again and pushes again (they only write what differs). After the save, a re-run
            # sees nothing changed.
            if mapped.entity == "client" and "name" in result.changed:
                for project in self.store.projects_of(cid):
                    self._push_client_name_to_workspace(project, client=result.state)
            if mapped.entity == "project" and "client_id" in result.changed:
                self._push_client_name_to_workspace(cid, project=result.state)
            announcement = self._announcement(context, mapped.entity, result.state, result.changed, system,
                                              version) if result.changed else None
            # The record and its announcement in one transaction (the outbox): no change goes unannounced.
            self.store.save(result.state, announce=[announcement] if announcement else [])
            if result.changed and changed_at is not None:
                SYNC_LAG.labels(mapped.entity).observe(max((context.now() - changed_at).total_seconds(), 0.0))
        if result.ignored:
            self.store.count_ignored(system, len(result.ignored))
        # Publish what this message wrote to the outbox: now, or on its re-run if the worker dies first.
        context.flush(self.store.outbox)

    def _document_platform_change(self, context: ActorContext) -> None:
        """Something changed on the document platform the notification names: read what changed there since the
        last read, and check each changed folder once (a workspace's metadata).

        One reader per change stream (SharePoint: per drive) at a time: a notification that finds it being read
        waits for the lock and then reads again from where that read stopped, so no change goes unread."""
        name = str(context.data.get("platform"))
        if name not in self.platforms:
            return
        platform = self.platforms.named(name)
        key = changes_key(platform)
        with holding(self.locks, f"mdm-delta:{key}", ttl_ms=self.spec.lock_ms,
                     busy=f"the changes of {key} are being read by another worker"):
            page = platform.changes(self.cursor.token(key))
            folders = dict.fromkeys(c.id for c in page.items if c.kind == "folder" and not c.deleted)
            checked = sum(self._workspace_change(platform, folder, context) for folder in folders)
            self.cursor.save(key, page.cursor)
        log.info("workspace changes read", platform=platform.name, stream=key, items=len(page.items),
                 workspaces=checked)

    def _workspace_change(self, platform: DocumentPlatform, item: str, context: ActorContext) -> int:
        """A folder changed: check its taxonomy, merge what it owns, and put back what it does not (the ERP
        owns client and project fields). Returns 1 when the folder is a workspace."""
        event = context.event
        system = platform.name  # the mapping rules and the crosswalk's system of the platform's workspaces
        try:
            fields = platform.metadata(item)
        except ItemGone:
            return 0  # deleted since the changes were read: the next read reports it
        if fields.get("DocumentClass"):
            return 0  # a classified document, not a workspace: document intake reads it
        version = etag_version(str(fields.get("@odata.etag") or "")) if fields.get("@odata.etag") else \
            version_of(event)
        workspace = 0
        for event_type in ("workspace.project", "workspace.client"):
            needed = ("ProjectCode",) if event_type == "workspace.project" else ("ClientId", "ClientName")
            if not all(fields.get(name) for name in needed):
                continue
            workspace = 1
            mapped = apply_mapping(self.rules, system, event_type, fields, lookup=self.crosswalk.canonical)
            violations = taxonomy_violations(mapped.fields, self.rules.taxonomy)
            if violations:
                context.raise_exception("records_management", kind="master_data.taxonomy",
                                        id=f"taxonomy:{item}:{version}", subject=item,
                                        detail="; ".join(v.message for v in violations))
            cid = self.crosswalk.canonical(mapped.entity, mapped.key_system, mapped.key)
            if mapped.entity == "project":
                self.crosswalk.link(cid, "project", system, item)
            result = merge(self.store.load(cid), SourceUpdate.of(mapped, canonical_id=cid, version=version),
                           authority=self.rules.authority)
            if result.ignored:
                self.store.count_ignored(system, len(result.ignored))
            if result.drift and mapped.entity == "client":
                project = self.crosswalk.resolve("project", system, item)
                if project:
                    self._push_client_name_to_workspace(project)  # the platform's copy drifted: put it back
        return workspace

    def _push_client_name_to_workspace(self, project_id: str, *, client: CanonicalState | None = None,
                                       project: CanonicalState | None = None) -> None:
        """Put the client's name on the project's workspace, on each platform the crosswalk links it on; ``client``,
        ``project``: records merged and not saved yet (else read from the store)."""
        linked = self.crosswalk.identities(project_id)
        workspaces = [(platform, linked[platform.name]) for platform in self.platforms if linked.get(platform.name)]
        if not workspaces:
            return
        state = project or self.store.load(project_id)
        client_id = state.values().get("client_id") if state else None
        if client is None or client.canonical_id != client_id:
            client = self.store.load(str(client_id)) if client_id else None
        name = client.values().get("name") if client else None
        if name:
            for platform, workspace in workspaces:
                platform.set_metadata(workspace, {"ClientName": str(name)})

    def _announcement(self, context: ActorContext, entity: str, state: CanonicalState, changed: tuple[str, ...],
                      system: str, version: str) -> Outgoing | None:
        """``hub.client.changed.v1`` / ``hub.project.changed.v1`` for a change, once the record is complete."""
        model = to_model(state)
        if model is None:  # not every required field is known yet: nothing complete to announce
            return None
        values = state.values()
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
            return None
        data.update(changed_fields=list(changed), source_system=system, source_version=version,
                    changed_at=context.now())
        return context.outgoing(event_type, data, id=f"{state.canonical_id}:{system}:{version}",
                                subject=state.canonical_id, partitionkey=f"{entity}:{state.canonical_id}",
                                sequence=version)
