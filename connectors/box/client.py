"""Box client for workspaces: idempotent "ensure" operations on the enterprise's folders, on the shared
:class:`connectors.http.Http` policy, signed in with the Client Credentials Grant (:mod:`connectors.box.auth`).

On httpx, not the official SDK (``boxsdk`` 10.x, the generated ``box_sdk_gen``): the SDK brings its own HTTP
stack (``requests``) with its own retries (five attempts, its own backoff) and token refresh, which would sit
under or beside the hub's: a second retry loop multiplying attempts, no circuit breaker, no CLIENT span per
attempt, no way to hand the actor a ``Retry-After`` too long to wait in a worker thread. The subset the hub
uses is small and documented; the SDK is kept as the proof of the simulator instead (tests/test_box_sdk.py
drives every call this client makes through it).

Box has no paths and takes no ``Idempotency-Key``; writes are made safe to repeat by reading Box's answers:

- :meth:`BoxClient.create_folder` reads 409 ``item_name_in_use`` as "it exists" and returns the folder named
  in ``context_info.conflicts``, so :meth:`BoxClient.ensure_folder` posts each segment of a path once, with no
  lookup first, and a lost answer costs nothing.
- :meth:`BoxClient.ensure_collaboration` lists the folder's collaborations, adds only when the group lacks
  the role, changes a role in place (``PUT``) and drops duplicates; a 400 ``user_already_collaborator`` is read
  by listing again. :meth:`BoxClient.ensure_metadata` creates the instance or patches (JSON Patch) only what
  differs; :meth:`BoxClient.ensure_retention` assigns a policy only when the folder lacks it.
- :meth:`BoxClient.upload` replaces the content of a file of that name with a new version
  (:mod:`connectors.box.files`), in an upload session above ``chunked_upload_threshold``.

Changes come from the event stream (``GET /events``, ``changes`` or ``admin_logs_streaming``) and webhooks V2
(signatures verified by :mod:`connectors.box.inbound`). Errors: :mod:`connectors.box.errors`.

The :class:`connectors.platform.DocumentPlatform` methods (``ensure_folder``, ``set_metadata``, ``grant``,
``revoke``, ``apply_retention``, ``upload``, ``download``, ``changes``, ``subscribe``, ``unsubscribe``)
correspond to GraphClient's ``ensure_folder``, ``ensure_columns`` + ``ensure_fields``, ``ensure_grant``,
``revoke_grant``, ``ensure_retention_label``, ``upload``, ``download``, ``delta``, ``create_subscription`` and
``delete_subscription`` (the table is in :mod:`connectors.platform`).

400 lines on purpose: one client of Box's API; its models, errors, sign-in, files and events are already
modules of their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

import httpx
from opentelemetry import trace

from connectors.auth import BearerAuth
from connectors.box.api import BoxApi
from connectors.box.auth import box_auth
from connectors.box.errors import (
    AlreadyCollaborator,
    BoxNotFound,
    BoxRejected,
    GroupNotFound,
    ItemNameInUse,
    RetentionConflict,
    RetentionPolicyNotFound,
)
from connectors.box.files import BoxFiles
from connectors.box.models import (
    BoxCollaboration,
    BoxEvent,
    BoxFile,
    BoxFolder,
    BoxGroup,
    BoxItem,
    BoxWebhook,
    EventPage,
    MetadataTemplate,
    RetentionAssignment,
    RetentionPolicy,
)
from connectors.http import CircuitBreaker, Http, RetryPolicy, outbound_client
from connectors.platform import ChangedItem, ChangePage, Role
from connectors.settings import BoxSettings
from hub.errors import UpstreamRejected

__all__ = ["WORKSPACE_TRIGGERS", "BoxClient", "BoxRole"]

BoxRole = Literal["viewer", "editor"]
#: Where a metadata instance is: on a folder or a file.
ItemKind = Literal["folders", "files"]
#: The triggers a workspace subscription asks for.
WORKSPACE_TRIGGERS: tuple[str, ...] = ("FILE.UPLOADED", "FILE.TRASHED", "METADATA_INSTANCE.CREATED",
                                      "METADATA_INSTANCE.UPDATED")
_ROLES: dict[str, BoxRole] = {"read": "viewer", "write": "editor"}
_DELETIONS = frozenset({"ITEM_TRASH", "DELETE"})


class BoxClient:
    """The enterprise's Box through the shared HTTP policy; groups, policies and the metadata template are
    looked up once per client."""

    def __init__(self, api: BoxApi, *, root_folder_id: str = "0", template_key: str = "hubWorkspace",
                 chunked_upload_threshold: int = 50 * 1024 * 1024, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        self.api = api
        self.root_folder_id = root_folder_id
        self.template_key = template_key
        self.files = BoxFiles(api, threshold=chunked_upload_threshold, sleep=sleep)
        self._groups: dict[str, BoxGroup] = {}
        self._policies: dict[str, RetentionPolicy] = {}
        self._template: MetadataTemplate | None = None

    @classmethod
    def from_settings(cls, settings: BoxSettings, *, client: httpx.Client | None = None,
                      sign_in_client: httpx.Client | None = None, retry: RetryPolicy | None = None,
                      breaker: CircuitBreaker | None = None, sleep: Callable[[float], None] = time.sleep,
                      tracer_provider: trace.TracerProvider | None = None) -> BoxClient:
        """A client for the enterprise ``settings.enterprise_id`` at ``settings.url``, signing in with the app's
        client credentials. Without ``client`` one is made (connect 2 s, read 10 s); an injected one keeps its
        transport and timeouts and gets the base URL and the sign-in."""
        auth = box_auth(settings, client=sign_in_client)
        if client is None:
            client = outbound_client(timeout=httpx.Timeout(10.0, connect=2.0))
        client.base_url = httpx.URL(settings.url)
        client.auth = auth
        http = Http(client, target="box", retry=retry, breaker=breaker, sleep=sleep, tracer_provider=tracer_provider)
        return cls(BoxApi(http, upload_url=settings.upload_url), root_folder_id=settings.root_folder_id,
                   template_key=settings.metadata_template,
                   chunked_upload_threshold=settings.chunked_upload_threshold, sleep=sleep)

    def close(self) -> None:
        """Close the underlying ``httpx.Client`` (and the sign-in's)."""
        if isinstance(self.api.http.client.auth, BearerAuth):
            self.api.http.client.auth.close()
        self.api.http.client.close()

    # -- folders ------------------------------------------------------------------------------

    def get_folder(self, folder_id: str) -> BoxFolder:
        """A folder by id (``0``: the root); ``BoxNotFound`` when there is none."""
        return BoxFolder.model_validate(self.api.send("GET", f"folders/{folder_id}").json())

    def items(self, folder_id: str, *, page_size: int = 1000, by_marker: bool = True) -> list[BoxItem]:
        """Every item in a folder, by marker paging (or offset paging), all pages read."""
        if by_marker:
            entries = self.api.by_marker(f"folders/{folder_id}/items", limit=page_size, marker_param=True)
        else:
            entries = self.api.by_offset(f"folders/{folder_id}/items", limit=page_size)
        return [BoxItem.model_validate(e) for e in entries]

    def create_folder(self, parent_id: str, name: str) -> BoxFolder:
        """The folder ``name`` in ``parent_id``: created, or (409 ``item_name_in_use``) the one that exists."""
        try:
            response = self.api.send("POST", "folders", json={"name": name, "parent": {"id": parent_id}},
                                     retry_safe=True)  # a repeat ends in the conflict read below
        except ItemNameInUse as exc:
            existing = next((c for c in exc.conflicts if c.get("id")), None)
            if existing is None or existing.get("type") != "folder":
                raise UpstreamRejected(f"box: {name!r} in folder {parent_id} exists but is not a folder") from None
            return BoxFolder.model_validate(existing)
        return BoxFolder.model_validate(response.json())

    def ensure_folder(self, path: str) -> BoxFolder:
        """The folder at ``path`` below the workspaces' root folder, each segment created when missing."""
        names = [n for n in path.split("/") if n]
        folder = BoxFolder(id=self.root_folder_id)
        for name in names:
            folder = self.create_folder(folder.id, name)
        return folder if names else self.get_folder(self.root_folder_id)

    # -- groups and collaborations ------------------------------------------------------------

    def find_group(self, name: str) -> BoxGroup:
        """The enterprise group called ``name`` (``GET /groups?filter_term=``), looked up once;
        :class:`GroupNotFound` when none or several have the name."""
        key = name.casefold()
        if key not in self._groups:
            entries = self.api.by_offset("groups", {"filter_term": name})
            found = [g for g in (BoxGroup.model_validate(e) for e in entries) if g.name.casefold() == key]
            if len(found) != 1:
                raise GroupNotFound(f"box: {len(found) or 'no'} groups are called {name!r}, so it cannot be granted",
                                    status=404, code="not_found")
            self._groups[key] = found[0]
        return self._groups[key]

    def collaborations(self, folder_id: str) -> list[BoxCollaboration]:
        """Every collaboration on the folder itself (not the inherited ones)."""
        entries = self.api.by_marker(f"folders/{folder_id}/collaborations", limit=100)
        return [BoxCollaboration.model_validate(e) for e in entries]

    def add_collaboration(self, folder_id: str, group_id: str, role: BoxRole) -> BoxCollaboration:
        """Make the group with id ``group_id`` a collaborator on the folder (``AlreadyCollaborator`` when it is)."""
        body = {"item": {"type": "folder", "id": folder_id}, "accessible_by": {"type": "group", "id": group_id},
                "role": role}
        response = self.api.send("POST", "collaborations", json=body, params={"notify": "false"}, retry_safe=True)
        return BoxCollaboration.model_validate(response.json())

    def update_collaboration(self, collaboration_id: str, role: BoxRole) -> BoxCollaboration:
        """Change a collaboration's role."""
        response = self.api.send("PUT", f"collaborations/{collaboration_id}", json={"role": role})
        return BoxCollaboration.model_validate(response.json())

    def remove_collaboration(self, collaboration_id: str) -> None:
        """Remove a collaboration (one already gone is fine)."""
        self.api.send("DELETE", f"collaborations/{collaboration_id}", accept=frozenset({404}))

    def ensure_collaboration(self, folder_id: str, group: str, role: BoxRole) -> BoxCollaboration:
        """Leave the group (by name) with exactly one collaboration on the folder, of exactly ``role``."""
        if role not in ("viewer", "editor"):
            raise ValueError(f"role must be 'viewer' or 'editor', not {role!r}")
        group_id = self.find_group(group).id
        own = [c for c in self.collaborations(folder_id) if c.grants_group(group_id)]
        keep = next((c for c in own if c.role == role), None)
        if keep is None and own:
            keep = self.update_collaboration(own[0].id, role)
        if keep is None:
            try:
                keep = self.add_collaboration(folder_id, group_id, role)
            except AlreadyCollaborator:  # an earlier answer was lost, or another worker: read it back once
                own = [c for c in self.collaborations(folder_id) if c.grants_group(group_id)]
                if not own:
                    raise
                keep = own[0] if own[0].role == role else self.update_collaboration(own[0].id, role)
        for extra in own:
            if extra.id != keep.id:
                self.remove_collaboration(extra.id)
        return keep

    def revoke_group(self, folder_id: str, group: str) -> int:
        """Remove every collaboration of the group (by name) on the folder; returns how many there were."""
        group_id = self.find_group(group).id
        own = [c for c in self.collaborations(folder_id) if c.grants_group(group_id)]
        for collaboration in own:
            self.remove_collaboration(collaboration.id)
        return len(own)

    # -- metadata -----------------------------------------------------------------------------

    def get_template(self, key: str | None = None) -> MetadataTemplate | None:
        """The enterprise metadata template ``key`` (default: the workspace template), or None."""
        response = self.api.send("GET", f"metadata_templates/enterprise/{key or self.template_key}/schema",
                                 accept=frozenset({404}))
        return None if response.status_code == 404 else MetadataTemplate.model_validate(response.json())

    def ensure_template(self, fields: Collection[str], *, display_name: str = "Hub workspace") -> MetadataTemplate:
        """The workspace template with (at least) a string field per key of ``fields``: created when missing,
        missing fields added (``addField``)."""
        template = self._template if self._template is not None else self.get_template()
        if template is None:
            body = {"scope": "enterprise", "templateKey": self.template_key, "displayName": display_name,
                    "fields": [_string_field(k) for k in fields]}
            response = self.api.send("POST", "metadata_templates/schema", json=body, retry_safe=True,
                                     accept=frozenset({400, 409}))
            template = self.get_template() if not response.is_success else MetadataTemplate.model_validate(
                response.json())
            if template is None:
                raise BoxRejected(f"box: the metadata template {self.template_key!r} cannot be created "
                                  f"({response.status_code})", status=response.status_code)
        missing = [k for k in dict.fromkeys(fields) if k not in template.keys]
        if missing and self._template is not None:  # the kept copy may be stale: someone may have added them
            template = self.get_template() or template
            missing = [k for k in missing if k not in template.keys]
        if missing:
            operations = [{"op": "addField", "data": _string_field(k)} for k in missing]
            response = self.api.send("PUT", f"metadata_templates/enterprise/{self.template_key}/schema",
                                     json=operations, accept=frozenset({400}))
            # 400: a field of that key exists (added meanwhile by another process or a person): read it back
            fresh = self.get_template() if response.status_code == 400 else MetadataTemplate.model_validate(
                response.json())
            if fresh is None or not set(missing) <= fresh.keys:
                raise BoxRejected(f"box: the fields {', '.join(missing)} cannot be added to the metadata template "
                                  f"{self.template_key!r} ({response.status_code})", status=response.status_code)
            template = fresh
        self._template = template
        return template

    def get_metadata(self, folder_id: str, *, kind: ItemKind = "folders") -> dict[str, Any] | None:
        """The workspace template's instance on the folder (or file) (with Box's ``$`` keys), or None."""
        response = self.api.send("GET", self._instance(folder_id, kind), accept=frozenset({404}))
        return None if response.status_code == 404 else dict(response.json())

    def ensure_metadata(self, folder_id: str, values: Mapping[str, str], *, kind: ItemKind = "folders"
                        ) -> dict[str, Any]:
        """Leave the folder's (or file's) workspace metadata with ``values``: the instance created, or patched
        where it differs (JSON Patch ``add``/``replace``); returns the instance."""
        if self._template is None or not set(values) <= self._template.keys:
            self.ensure_template(values)
        current = self.get_metadata(folder_id, kind=kind)
        if current is None:
            response = self.api.send("POST", self._instance(folder_id, kind), json=dict(values), retry_safe=True,
                                     accept=frozenset({409}))
            if response.is_success:
                return dict(response.json())
            current = self.get_metadata(folder_id, kind=kind) or {}  # 409 tuple_already_exists: made meanwhile
        patch = [{"op": "replace" if k in current else "add", "path": f"/{k}", "value": v}
                 for k, v in values.items() if current.get(k) != v]
        if not patch:
            return current
        response = self.api.send("PUT", self._instance(folder_id, kind), content=json.dumps(patch).encode(),
                                 headers={"content-type": "application/json-patch+json"})
        return dict(response.json())

    def _instance(self, item_id: str, kind: ItemKind) -> str:
        return f"{kind}/{item_id}/metadata/enterprise/{self.template_key}"

    # -- retention ----------------------------------------------------------------------------

    def retention_policies(self, name_prefix: str | None = None) -> list[RetentionPolicy]:
        """The enterprise's retention policies (whose name starts with ``name_prefix``)."""
        params = {"policy_name": name_prefix} if name_prefix else None
        return [RetentionPolicy.model_validate(e) for e in self.api.by_marker("retention_policies", params)]

    def find_retention_policy(self, name: str) -> RetentionPolicy:
        """The retention policy called ``name``, looked up once; :class:`RetentionPolicyNotFound` otherwise."""
        if name not in self._policies:
            found = [p for p in self.retention_policies(name) if p.policy_name == name]
            if len(found) != 1:
                raise RetentionPolicyNotFound(f"box: {len(found) or 'no'} retention policies are called {name!r}",
                                              status=404, code="not_found")
            self._policies[name] = found[0]
        return self._policies[name]

    def retention_assignments(self, policy_id: str) -> list[RetentionAssignment]:
        """The policy's assignments to folders."""
        entries = self.api.by_marker(f"retention_policies/{policy_id}/assignments", {"type": "folder"})
        return [RetentionAssignment.model_validate(e) for e in entries]

    def assign_retention(self, policy_id: str, folder_id: str) -> RetentionAssignment:
        """Assign the policy to the folder; :class:`RetentionConflict` when Box refuses it (409)."""
        body = {"policy_id": policy_id, "assign_to": {"type": "folder", "id": folder_id}}
        response = self.api.send("POST", "retention_policy_assignments", json=body, retry_safe=True,
                                 accept=frozenset({409}))
        if response.status_code == 409:
            existing = self._assignment(policy_id, folder_id)
            if existing is not None:  # our own earlier attempt, whose answer was lost
                return existing
            raise RetentionConflict(f"box: policy {policy_id} cannot be assigned to folder {folder_id}: a policy "
                                    f"at least as long is assigned to it", status=409, code="conflict")
        return RetentionAssignment.model_validate(response.json())

    def ensure_retention(self, folder_id: str, policy_name: str) -> RetentionAssignment:
        """Leave the folder under the policy called ``policy_name`` (assigned only when it is not yet)."""
        policy = self.find_retention_policy(policy_name)
        return self._assignment(policy.id, folder_id) or self.assign_retention(policy.id, folder_id)

    def _assignment(self, policy_id: str, folder_id: str) -> RetentionAssignment | None:
        return next((a for a in self.retention_assignments(policy_id)
                     if a.assigned_to is not None and a.assigned_to.id == folder_id), None)

    # -- files --------------------------------------------------------------------------------

    def get_file(self, file_id: str) -> BoxFile:
        """A file by id."""
        return self.files.get_file(file_id)

    def upload(self, folder_id: str, name: str, content: bytes) -> BoxFile:
        """Store ``content`` as ``name`` in the folder (a new version when the name is taken; chunked above the
        threshold)."""
        return self.files.upload(folder_id, name, content)

    def download(self, file_id: str) -> bytes:
        """A file's content."""
        return self.files.download(file_id)

    def delete_file(self, file_id: str) -> None:
        """Move the file to the trash (a file already gone is fine)."""
        self.files.delete(file_id)

    # -- events and webhooks ------------------------------------------------------------------

    def events(self, stream_position: str | None, *, stream_type: str = "changes", limit: int = 500) -> EventPage:
        """One chunk of the event stream from ``stream_position`` (``now``: the head; None: the start)."""
        params = {"stream_type": stream_type, "stream_position": stream_position or "0", "limit": limit}
        return EventPage.model_validate(self.api.send("GET", "events", params=params).json())

    def read_events(self, stream_position: str | None, *, stream_type: str = "changes"
                    ) -> tuple[list[BoxEvent], str]:
        """Every event after ``stream_position`` up to the head, and the position to read from next time."""
        events: list[BoxEvent] = []
        position = stream_position or "0"
        for _ in range(10_000):
            page = self.events(position, stream_type=stream_type)
            events.extend(page.entries)
            if page.chunk_size == 0 or page.next_stream_position == position:
                return events, page.next_stream_position
            position = page.next_stream_position
        raise UpstreamRejected("box: the event stream did not reach its head in 10000 chunks")

    def create_webhook(self, target_id: str, address: str, triggers: Sequence[str], *,
                       target_type: Literal["folder", "file"] = "folder") -> BoxWebhook:
        """A webhook V2 on the target; when one for that target and address exists (409), that one, given the
        triggers it lacks (``PUT /webhooks/{id}``: a hub that asks for more than an earlier version did)."""
        body = {"target": {"type": target_type, "id": target_id}, "address": address, "triggers": list(triggers)}
        response = self.api.send("POST", "webhooks", json=body, retry_safe=True, accept=frozenset({409}))
        if response.status_code != 409:
            return BoxWebhook.model_validate(response.json())
        for hook in self.webhooks():
            if hook.target.get("id") == target_id:
                full = self.get_webhook(hook.id)
                if full.address != address:
                    continue
                if set(triggers) <= set(full.triggers):
                    return full
                wanted = list(dict.fromkeys([*full.triggers, *triggers]))
                return BoxWebhook.model_validate(self.api.send("PUT", f"webhooks/{hook.id}", json={
                    "triggers": wanted}, retry_safe=True).json())
        raise BoxRejected(f"box: a webhook on {target_type} {target_id} conflicts but cannot be found",
                          status=409, code="conflict")

    def webhooks(self) -> list[BoxWebhook]:
        """Every webhook of the app (``id`` and ``target`` only, as Box lists them)."""
        return [BoxWebhook.model_validate(e) for e in self.api.by_marker("webhooks", limit=200)]

    def get_webhook(self, webhook_id: str) -> BoxWebhook:
        """One webhook with its address and triggers."""
        return BoxWebhook.model_validate(self.api.send("GET", f"webhooks/{webhook_id}").json())

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook (one already gone is fine)."""
        self.api.send("DELETE", f"webhooks/{webhook_id}", accept=frozenset({404}))

    # -- connectors.platform.DocumentPlatform -------------------------------------------------

    def set_metadata(self, item_id: str, values: Mapping[str, str]) -> Mapping[str, Any]:
        """:meth:`ensure_metadata` (GraphClient: ``ensure_columns`` and ``ensure_fields``)."""
        return self.ensure_metadata(item_id, values)

    def grant(self, item_id: str, group: str, role: Role) -> None:
        """:meth:`ensure_collaboration` as ``viewer`` (read) or ``editor`` (write) (GraphClient: ``ensure_grant``)."""
        if role not in _ROLES:
            raise ValueError(f"role must be 'read' or 'write', not {role!r}")
        self.ensure_collaboration(item_id, group, _ROLES[role])

    def revoke(self, item_id: str, group: str) -> int:
        """:meth:`revoke_group` (GraphClient: ``revoke_grant``)."""
        return self.revoke_group(item_id, group)

    def apply_retention(self, item_id: str, policy: str) -> None:
        """:meth:`ensure_retention` (GraphClient: ``ensure_retention_label``)."""
        self.ensure_retention(item_id, policy)

    def changes(self, cursor: str | None) -> ChangePage:
        """The ``changes`` stream since ``cursor`` (None: from the start), one entry per event about a folder or
        file (GraphClient: ``delta``)."""
        events, position = self.read_events(cursor)
        items = []
        for event in events:
            item, parents = event.item, event.parents
            if item is not None and item.type in ("folder", "file"):
                deleted = event.event_type in _DELETIONS
                items.append(ChangedItem(id=item.id, kind="folder" if item.type == "folder" else "file",
                                         name=item.name, change=event.event_type, deleted=deleted,
                                         parents=None if deleted or parents is None else _pairs(parents),
                                         parent_id=event.parent_id))
        return ChangePage(items=items, cursor=position)

    def path_of(self, item_id: str, kind: Literal["folder", "file"] = "folder") -> tuple[tuple[str, str], ...] | None:
        """The folders from the enterprise's top (``0``) down to the item, itself last, as (id, name); None when
        there is no such item or it is in the trash."""
        try:
            found: BoxFolder | BoxFile = self.get_folder(item_id) if kind == "folder" else self.get_file(item_id)
        except BoxNotFound:
            return None
        if found.item_status != "active" or found.path_collection is None:
            return None
        return (*_pairs(found.path_collection.entries), (found.id, found.name))

    def subscribe(self, folder_id: str, address: str) -> str:
        """A webhook V2 on the folder for uploads, files put in the trash and metadata changes (GraphClient:
        ``create_subscription``)."""
        return self.create_webhook(folder_id, address, WORKSPACE_TRIGGERS).id

    def unsubscribe(self, subscription_id: str) -> None:
        """:meth:`delete_webhook` (GraphClient: ``delete_subscription``)."""
        self.delete_webhook(subscription_id)


def _pairs(folders: Sequence[BoxItem]) -> tuple[tuple[str, str], ...]:
    return tuple((folder.id, folder.name) for folder in folders)


def _string_field(key: str) -> dict[str, str]:
    return {"type": "string", "key": key, "displayName": key}

