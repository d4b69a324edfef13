"""Microsoft Graph client for SharePoint workspaces: idempotent "ensure" operations on one drive.

Graph takes no ``Idempotency-Key``, and a POST that timed out may still have committed (a "ghost"
success). So every write here is made safe to repeat, in any order of partial failure, by looking
before writing:

- :meth:`GraphClient.ensure_folder` looks the path up first, creates only missing segments, one by
  one, with ``conflictBehavior: fail``, and reads a 409 ``nameAlreadyExists`` as "someone (perhaps
  our own earlier, lost attempt) created it": it looks it up again.
- :meth:`GraphClient.ensure_grant` lists the item's permissions and invites only when the group lacks
  the role; :meth:`GraphClient.ensure_retention_label` and :meth:`GraphClient.ensure_fields` read
  before they PATCH, and PATCH only what differs.

Failures follow the hub's error tree through :class:`connectors.http.Http`: 5xx, 429 and timeouts
are ``UpstreamUnavailable`` (retryable, with ``retry_after``); other 4xx are ``UpstreamRejected``
carrying Graph's error code, and a 404 is :class:`ItemNotFound`. GET and DELETE are retried briefly
inside a call; POST and PATCH never are: the actor's retry re-runs the whole ensure, which looks first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field

from connectors.http import RETRYABLE_STATUS, CircuitBreaker, Http, RetryPolicy
from hub.errors import UpstreamRejected, UpstreamUnavailable

if TYPE_CHECKING:
    from hub.settings import Settings

__all__ = ["DriveItem", "GraphClient", "Identity", "ItemNotFound", "Permission", "RetentionLabel",
           "Subscription"]

Role = Literal["read", "write"]
#: Characters SharePoint refuses in a folder name (``:`` would also break path addressing).
_INVALID_NAME_CHARS = frozenset('"*:<>?/\\|')
#: 4xx answers whose Graph error body this module reads itself (the rest are retried by ``Http``).
_READ_ERRORS = frozenset(range(400, 500)) - RETRYABLE_STATUS
_MAX_PAGES = 10_000


class ItemNotFound(UpstreamRejected):
    """Graph answered 404 (``itemNotFound``): no such item, permission or drive."""


class _Model(BaseModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, extra="ignore", frozen=True)


class ItemReference(_Model):
    """``parentReference``: where an item sits."""

    drive_id: str | None = Field(default=None, alias="driveId")
    id: str | None = None
    path: str | None = None


class FolderFacet(_Model):
    """The ``folder`` facet: present on folders only."""

    child_count: int = Field(default=0, alias="childCount")


class DriveItem(_Model):
    """A Graph ``driveItem`` (the subset the hub reads)."""

    id: str
    name: str
    e_tag: str | None = Field(default=None, alias="eTag")
    web_url: str | None = Field(default=None, alias="webUrl")
    created: datetime | None = Field(default=None, alias="createdDateTime")
    modified: datetime | None = Field(default=None, alias="lastModifiedDateTime")
    parent_reference: ItemReference | None = Field(default=None, alias="parentReference")
    folder: FolderFacet | None = None

    @property
    def is_folder(self) -> bool:
        """Whether the item has the ``folder`` facet."""
        return self.folder is not None

    @property
    def path(self) -> str | None:
        """The item's path below the drive root (``ACME/Contracts``), when ``parentReference.path`` says."""
        parent = self.parent_reference.path if self.parent_reference else None
        if parent is None:
            return None if self.parent_reference and self.parent_reference.id else ""
        below = parent.partition("root:")[2].strip("/")
        return f"{below}/{self.name}" if below else self.name


class Identity(_Model):
    """A Graph ``identity``: id, display name, mail address."""

    id: str | None = None
    display_name: str | None = Field(default=None, alias="displayName")
    email: str | None = None


class IdentitySet(_Model):
    """A ``sharePointIdentitySet``: who a permission is granted to."""

    group: Identity | None = None
    site_group: Identity | None = Field(default=None, alias="siteGroup")
    user: Identity | None = None


class Permission(_Model):
    """A Graph ``permission`` on a driveItem."""

    id: str
    roles: list[str] = Field(default_factory=list)
    granted_to_v2: IdentitySet | None = Field(default=None, alias="grantedToV2")
    granted_to_identities_v2: list[IdentitySet] = Field(default_factory=list, alias="grantedToIdentitiesV2")
    inherited_from: ItemReference | None = Field(default=None, alias="inheritedFrom")

    def principals(self) -> list[Identity]:
        """Every identity the permission is granted to (groups, site groups and users), once each."""
        sets = ([self.granted_to_v2] if self.granted_to_v2 else []) + self.granted_to_identities_v2
        seen: dict[tuple[str | None, str | None, str | None], Identity] = {}
        for identity_set in sets:
            for identity in (identity_set.group, identity_set.site_group, identity_set.user):
                if identity is not None:
                    seen.setdefault((identity.id, identity.display_name, identity.email), identity)
        return list(seen.values())

    def grants_only(self, group: str) -> bool:
        """Whether this is a direct permission of ``group`` alone (matched by name, mail or object id)."""
        wanted = group.casefold()
        principals = self.principals()
        return self.inherited_from is None and bool(principals) and all(
            wanted in {(v or "").casefold() for v in (p.display_name, p.email, p.id)} for p in principals)


class RetentionLabel(_Model):
    """A Graph ``itemRetentionLabel``."""

    name: str | None = None
    is_label_applied_explicitly: bool | None = Field(default=None, alias="isLabelAppliedExplicitly")
    label_applied: datetime | None = Field(default=None, alias="labelAppliedDateTime")


class Subscription(_Model):
    """A Graph change-notification ``subscription``."""

    id: str
    resource: str
    change_type: str = Field(alias="changeType")
    notification_url: str = Field(alias="notificationUrl")
    expiration: datetime = Field(alias="expirationDateTime")
    client_state: str | None = Field(default=None, alias="clientState")


def _segments(path: str) -> list[str]:
    """The folder names of ``path``; refuses names SharePoint would refuse (a permanent error)."""
    names = [s for s in path.split("/") if s]
    for name in names:
        if name != name.strip() or name.endswith(".") or any(c in _INVALID_NAME_CHARS for c in name):
            raise UpstreamRejected(f"graph: invalid SharePoint folder name {name!r} in {path!r}")
    return names


def _recipient(group: str) -> dict[str, str]:
    """A ``driveRecipient`` for a group given by mail address, object id or name (alias)."""
    if "@" in group:
        return {"email": group}
    try:
        uuid.UUID(group)
    except ValueError:
        return {"alias": group}
    return {"objectId": group}


def _graph_error(response: httpx.Response) -> tuple[str, str]:
    """Graph's ``error.code`` and ``error.message``, tolerating bodies of another shape."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "unknown", response.text[:200]
    if isinstance(error, Mapping):
        return str(error.get("code", "unknown")), str(error.get("message", ""))
    return str(error or "unknown"), ""


class GraphClient:
    """One drive of Microsoft Graph (SharePoint document library), through the shared HTTP policy."""

    def __init__(self, http: Http, *, drive_id: str) -> None:
        self.http = http
        self.drive_id = drive_id
        self._drive = f"drives/{quote(drive_id, safe='')}"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> GraphClient:
        """A client for ``settings.graph_drive_id`` at ``settings.graph_url`` with ``settings.graph_token``.

        Without ``client`` one is made (timeouts: connect 2 s, read 5 s). An injected client keeps
        its transport and timeouts; it gets the base URL and bearer token unless it already has them.
        """
        headers = {"Authorization": f"Bearer {settings.graph_token.get_secret_value()}"}
        if client is None:
            client = httpx.Client(base_url=settings.graph_url, headers=headers,
                                  timeout=httpx.Timeout(5.0, connect=2.0))
        else:
            if not str(client.base_url).strip("/"):
                client.base_url = httpx.URL(settings.graph_url)
            client.headers.setdefault("Authorization", headers["Authorization"])
        http = Http(client, target="graph", retry=retry, breaker=breaker, sleep=sleep,
                    tracer_provider=tracer_provider)
        return cls(http, drive_id=settings.graph_drive_id)

    # -- plumbing -----------------------------------------------------------------------------

    def _item_url(self, item_id: str) -> str:
        return f"{self._drive}/items/{quote(item_id, safe='')}"

    def _path_url(self, names: list[str]) -> str:
        if not names:
            return f"{self._drive}/root"
        return f"{self._drive}/root:/" + "/".join(quote(n, safe="") for n in names)

    def _send(self, method: str, url: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              accept: frozenset[int] = frozenset(), retry_safe: bool = False) -> httpx.Response:
        """One call; a 4xx outside ``accept`` raises ``ItemNotFound`` (404) or ``UpstreamRejected``."""
        response = self.http.request(method, url, json=json, params=params, ok_statuses=_READ_ERRORS,
                                     retry_safe=retry_safe)
        if response.is_success or response.status_code in accept:
            return response
        code, message = _graph_error(response)
        text = f"graph: {method} {url} answered {response.status_code} {code}: {message}"
        if response.status_code == 404:
            raise ItemNotFound(text)
        raise UpstreamRejected(text)

    def _collect(self, url: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every ``value`` entry of a collection, following ``@odata.nextLink`` page after page."""
        values: list[Any] = []
        next_url: str | None = url
        for _ in range(_MAX_PAGES):
            if next_url is None:
                return values
            body = self._send("GET", next_url, params=params).json()
            values.extend(body.get("value", []))
            next_url, params = body.get("@odata.nextLink"), None  # the link carries the query
        raise UpstreamRejected(f"graph: more than {_MAX_PAGES} pages at {url}")

    # -- items --------------------------------------------------------------------------------

    def get_item(self, item_id: str) -> DriveItem:
        """The item by id (``root`` names the drive's root); ``ItemNotFound`` when absent."""
        return DriveItem.model_validate(self._send("GET", self._item_url(item_id)).json())

    def get_by_path(self, path: str) -> DriveItem | None:
        """The item at ``path`` below the drive root (``""`` is the root), or None."""
        response = self._send("GET", self._path_url(_segments(path)), accept=frozenset({404}))
        return None if response.status_code == 404 else DriveItem.model_validate(response.json())

    def children(self, item_id: str = "root", *, page_size: int | None = None) -> list[DriveItem]:
        """Every child of the item, across all pages."""
        params = {"$top": page_size} if page_size else None
        return [DriveItem.model_validate(v) for v in self._collect(f"{self._item_url(item_id)}/children", params)]

    def ensure_folder(self, path: str) -> DriveItem:
        """The folder at ``path``, creating each missing folder on the way; safe to repeat."""
        names = _segments(path)
        found = self.get_by_path(path)
        if found is not None:
            return self._folder(found, path)
        parent = "root"
        item: DriveItem | None = None
        created_above = False
        for depth, name in enumerate(names, start=1):
            here = "/".join(names[:depth])
            # Below a folder we just created nothing can exist yet, and the full path was missing.
            item = None if created_above or depth == len(names) else self.get_by_path(here)
            if item is None:
                item, created_above = self._create_folder(parent, name, here)
            parent = self._folder(item, here).id
        assert item is not None  # the full path was missing, so names is not empty
        return item

    def _create_folder(self, parent_id: str, name: str, path: str) -> tuple[DriveItem, bool]:
        """Create one folder; on 409 return the existing one. Returns (item, created)."""
        body = {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
        # conflictBehavior "fail" makes a repeat harmless: it answers 409 and the folder is looked up.
        response = self._send("POST", f"{self._item_url(parent_id)}/children", json=body,
                              accept=frozenset({409}), retry_safe=True)
        if response.status_code != 409:
            return DriveItem.model_validate(response.json()), True
        existing = self.get_by_path(path)
        if existing is None:  # deleted again in between: let the caller's retry start over
            raise UpstreamUnavailable(f"graph: {path!r} was reported as existing but cannot be found")
        return existing, False

    @staticmethod
    def _folder(item: DriveItem, path: str) -> DriveItem:
        if not item.is_folder:
            raise UpstreamRejected(f"graph: {path!r} exists but is not a folder")
        return item

    # -- permissions --------------------------------------------------------------------------

    def grants(self, item_id: str) -> list[Permission]:
        """Every permission on the item."""
        return [Permission.model_validate(v) for v in self._collect(f"{self._item_url(item_id)}/permissions")]

    def ensure_grant(self, item_id: str, group: str, role: Role) -> Permission:
        """Leave ``group`` with exactly one direct permission on the item, of exactly ``role``.

        Lists first and invites only when no such permission exists; extra or other-role permissions
        of the group (a duplicate from an earlier lost answer, a former role) are then removed. The
        new grant comes before the removals, so a role change never leaves the group without access.
        """
        if role not in ("read", "write"):
            raise ValueError(f"role must be 'read' or 'write', not {role!r}")
        own = [p for p in self.grants(item_id) if p.grants_only(group)]
        keep = next((p for p in own if p.roles == [role]), None)
        if keep is None:
            keep = self._invite(item_id, group, role)
        for permission in own:
            if permission.id != keep.id:
                self._delete_permission(item_id, permission.id)
        return keep

    def _invite(self, item_id: str, group: str, role: Role) -> Permission:
        body = {"recipients": [_recipient(group)], "roles": [role], "requireSignIn": True,
                "sendInvitation": False}
        granted = self._send("POST", f"{self._item_url(item_id)}/invite", json=body).json().get("value", [])
        for value in granted:
            permission = Permission.model_validate(value)
            if permission.grants_only(group):
                return permission
        # Some tenants answer without the permission itself: read it back.
        for permission in self.grants(item_id):
            if permission.grants_only(group) and permission.roles == [role]:
                return permission
        raise UpstreamUnavailable(f"graph: the grant of {role} to {group!r} is not visible yet")

    def _delete_permission(self, item_id: str, permission_id: str) -> None:
        self._send("DELETE", f"{self._item_url(item_id)}/permissions/{quote(permission_id, safe='')}",
                   accept=frozenset({404}))

    def revoke_grant(self, item_id: str, group: str) -> int:
        """Remove every direct permission of ``group`` on the item; returns how many there were."""
        own = [p for p in self.grants(item_id) if p.grants_only(group)]
        for permission in own:
            self._delete_permission(item_id, permission.id)
        return len(own)

    # -- retention labels and metadata --------------------------------------------------------

    def retention_label(self, item_id: str) -> RetentionLabel:
        """The item's retention label (``name`` None when there is none)."""
        response = self._send("GET", f"{self._item_url(item_id)}/retentionLabel", accept=frozenset({404}))
        return RetentionLabel() if response.status_code == 404 else RetentionLabel.model_validate(response.json())

    def ensure_retention_label(self, item_id: str, label: str) -> RetentionLabel:
        """Apply ``label`` unless the item already carries it."""
        current = self.retention_label(item_id)
        if current.name == label:
            return current
        response = self._send("PATCH", f"{self._item_url(item_id)}/retentionLabel", json={"name": label},
                              retry_safe=True)  # setting a label twice is the same as once
        return RetentionLabel.model_validate(response.json())

    def fields(self, item_id: str) -> dict[str, Any]:
        """The item's list-item field values (``fieldValueSet``)."""
        body: dict[str, Any] = self._send("GET", f"{self._item_url(item_id)}/listItem/fields").json()
        return body

    def ensure_fields(self, item_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH only the ``fields`` whose values differ; returns the item's field values."""
        current = self.fields(item_id)
        changed = {k: v for k, v in fields.items() if k not in current or current[k] != v}
        if not changed:
            return current
        body: dict[str, Any] = self._send("PATCH", f"{self._item_url(item_id)}/listItem/fields", retry_safe=True,
                                          json=changed).json()
        return body

    # -- change notifications -----------------------------------------------------------------

    def create_subscription(self, resource: str, notification_url: str, client_state: str,
                            expiration: datetime) -> Subscription:
        """Subscribe ``notification_url`` to ``updated`` changes of ``resource`` (``drives/{id}/root``).

        Graph first validates the endpoint (``validationToken`` echo within 10 s); a failed
        validation is ``UpstreamRejected``. Not idempotent: a lost answer may leave a subscription
        behind, which :meth:`subscriptions` shows.
        """
        if expiration.utcoffset() is None:
            raise ValueError("expiration must be timezone-aware")
        body = {"changeType": "updated", "notificationUrl": notification_url, "resource": resource,
                "expirationDateTime": expiration.isoformat(), "clientState": client_state}
        return Subscription.model_validate(self._send("POST", "subscriptions", json=body).json())

    def subscriptions(self) -> list[Subscription]:
        """Every subscription of this application."""
        return [Subscription.model_validate(v) for v in self._collect("subscriptions")]

    def renew_subscription(self, subscription_id: str, expiration: datetime) -> Subscription:
        """Move a subscription's expiration."""
        if expiration.utcoffset() is None:
            raise ValueError("expiration must be timezone-aware")
        response = self._send("PATCH", f"subscriptions/{quote(subscription_id, safe='')}",
                              json={"expirationDateTime": expiration.isoformat()})
        return Subscription.model_validate(response.json())

    def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription (already gone is fine)."""
        self._send("DELETE", f"subscriptions/{quote(subscription_id, safe='')}", accept=frozenset({404}))
