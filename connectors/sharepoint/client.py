"""Microsoft Graph client for SharePoint workspaces: idempotent "ensure" operations on one drive.

Found by name, granted by id: the drive is the document library named ``library`` of the site at
``site_url`` (``GET /sites/{hostname}:/{path}``, then ``GET /sites/{site-id}/drives``), unless a drive id is
given; groups are looked up by display name (``GET /groups?$filter=displayName eq '...'``, a quote in the
name doubled) or mail address, and invited by object id. Each id is looked up once per client (one per
process) and kept.

Past 400 lines on purpose: one client for the one Graph subset the hub uses; split by resource it would
scatter the look-before-write rule below across modules.

Graph takes no ``Idempotency-Key``, and a POST that timed out may still have committed (a "ghost"
success). So every write here is made safe to repeat, in any order of partial failure, by looking
before writing:

- :meth:`GraphClient.ensure_folder` looks the path up first, creates only missing segments, one by
  one, with ``conflictBehavior: fail``, and reads a 409 ``nameAlreadyExists`` as "someone (perhaps
  our own earlier, lost attempt) created it": it looks it up again.
- :meth:`GraphClient.ensure_grant` lists the item's permissions and invites only when the group lacks
  the role; :meth:`GraphClient.ensure_retention_label` and :meth:`GraphClient.ensure_fields` read
  before they PATCH, and PATCH only what differs.
- :meth:`GraphClient.upload` PUTs by path (:meth:`GraphClient.upload_into` below the folder's id), replacing a
  file of that name: a repeat leaves the same item.
  Above 4 MB it opens an upload session and PUTs 320 KiB-multiple fragments to its pre-authenticated URL.

:meth:`GraphClient.delta` reads changes across all pages; a 410 is :class:`DeltaTokenExpired` (start
over with no token). Track delta items by id: SharePoint leaves ``parentReference.path`` out of them.

Failures follow the hub's error tree through :class:`connectors.http.Http`: 5xx, 429 and timeouts
are ``UpstreamUnavailable`` (retryable, with ``retry_after``); other 4xx are ``UpstreamRejected``
carrying Graph's error code, and a 404 is :class:`ItemNotFound`. GET, PUT and DELETE are retried
briefly inside a call; POST and PATCH only where a repeat is harmless: otherwise the actor's retry
re-runs the whole ensure, which looks first.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import quote, unquote

import httpx
from opentelemetry import trace

from connectors.auth import BearerAuth, entra_auth
from connectors.http import RETRYABLE_STATUS, CircuitBreaker, Http, RetryPolicy, json_of, outbound_client
from connectors.platform import ItemGone, RetentionNotPublished
from connectors.sharepoint.batch import BatchRequest, BatchResponse, run_batches
from connectors.sharepoint.models import (
    ColumnDefinition,
    DeltaResult,
    DirectoryGroup,
    Drive,
    DriveItem,
    FileFacet,
    FolderFacet,
    Identity,
    IdentitySet,
    ItemReference,
    Permission,
    RetentionLabel,
    Site,
    Subscription,
)
from hub.errors import UpstreamRejected, UpstreamUnavailable

if TYPE_CHECKING:
    from connectors.settings import GraphSettings

__all__ = ["BatchRequest", "BatchResponse", "ColumnDefinition", "DeltaResult", "DeltaTokenExpired", "DirectoryGroup",
           "Drive", "DriveItem", "FileFacet",
           "FolderFacet", "GraphClient", "GroupNotFound", "Identity", "IdentitySet", "ItemNotFound", "ItemReference",
           "LabelNotPublished", "Permission", "RetentionLabel", "Site", "Subscription"]

Role = Literal["read", "write"]
#: Characters SharePoint refuses in a folder name (``:`` would also break path addressing).
_INVALID_NAME_CHARS = frozenset('"*:<>?/\\|')
#: 4xx answers whose Graph error body this module reads itself (the rest are retried by ``Http``).
_READ_ERRORS = frozenset(range(400, 500)) - RETRYABLE_STATUS
_MAX_PAGES = 10_000
#: Graph's largest simple upload (a PUT of the whole content); larger files go through an upload session.
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
#: Graph's fragment unit for upload sessions, and the fragment size used (10 units: 3.125 MiB).
FRAGMENT_UNIT = 320 * 1024
UPLOAD_FRAGMENT = 10 * FRAGMENT_UNIT


class ItemNotFound(ItemGone):
    """Graph answered 404 (``itemNotFound``): no such item, permission or drive."""


class GroupNotFound(UpstreamRejected):
    """No directory group has the name (or mail address) a grant names: it cannot be granted."""


class LabelNotPublished(RetentionNotPublished):
    """SharePoint refused a retention label (400): the tenant does not publish it to the site."""


class DeltaTokenExpired(UpstreamRejected):
    """Graph answered 410 to ``delta`` (``resyncRequired``): the token is no longer valid; start over
    with no token (a full enumeration) and reconcile."""


class _RawBody:
    """``Http.client`` for one call: sends ``content`` raw, or (``anonymous``) without the bearer token
    (a pre-authenticated download URL must not get it), under the shared retry/breaker/tracing policy."""

    def __init__(self, client: httpx.Client, *, content: bytes | None, anonymous: bool) -> None:
        self._client = client
        self._content = content
        self._anonymous = anonymous

    def request(self, method: str, url: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        request = self._client.build_request(method, url, params=params, headers=headers, json=json,
                                             content=self._content)
        if self._anonymous:
            request.headers.pop("Authorization", None)
        return self._client.send(request, auth=None if self._anonymous else httpx.USE_CLIENT_DEFAULT)


def _segments(path: str) -> list[str]:
    """The folder names of ``path``; refuses names SharePoint would refuse (a permanent error)."""
    names = [s for s in path.split("/") if s]
    for name in names:
        if not _valid_name(name):
            raise UpstreamRejected(f"graph: invalid SharePoint folder name {name!r} in {path!r}")
    return names


def _file_name(name: str) -> str:
    """``name`` when SharePoint takes it as a file's name; refused (a permanent error) otherwise."""
    if not _valid_name(name):
        raise UpstreamRejected(f"graph: invalid SharePoint file name {name!r}")
    return name


def _valid_name(name: str) -> bool:
    return bool(name) and name == name.strip() and not name.endswith(".") and name not in {".", ".."} \
        and not any(c in _INVALID_NAME_CHARS for c in name)


def _delta_token(link: str) -> str:
    """The token of an ``@odata.deltaLink``: ``...delta?token=X`` or ``...delta(token='X')``."""
    token: str | None = httpx.URL(link).params.get("token")
    if token:
        return token
    match = re.search(r"token='([^']+)'", unquote(link))
    if match is None:
        raise UpstreamRejected(f"graph: the last delta page has no deltaLink with a token: {link!r}")
    return match.group(1)


def _next_expected(status: Mapping[str, Any], total: int, shown: str) -> int:
    """The first byte an upload session expects next (its ``nextExpectedRanges``)."""
    ranges = status.get("nextExpectedRanges") or []
    start = str(ranges[0]).partition("-")[0] if ranges else ""
    if not start.isdigit() or int(start) >= total:
        raise UpstreamRejected(f"graph: {shown} expects no further bytes: {ranges!r}")
    return int(start)


def _is_object_id(group: str) -> bool:
    try:
        uuid.UUID(group)
    except ValueError:
        return False
    return True


def odata_literal(text: str) -> str:
    """``text`` as an OData string literal: in single quotes, a quote inside doubled (``'O''Brien'``)."""
    return "'" + text.replace("'", "''") + "'"


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
    """One drive of Microsoft Graph (SharePoint document library), through the shared HTTP policy; the site,
    the library's drive and list, directory groups, columns and published labels are looked up once."""

    def __init__(self, http: Http, *, drive_id: str | None = None, site_url: str | None = None,
                 library: str | None = None) -> None:
        if drive_id is None and not (site_url and library):
            raise ValueError("a drive id, or a site URL and a library name, is required")
        self.http = http
        self.site_url, self.library = site_url, library
        self._drive_id = drive_id
        self._site_id: str | None = None
        self._list_id: str | None = None
        self._group_ids: dict[str, str] = {}
        self._columns: set[str] | None = None
        self._labels: frozenset[str] | None = None
        self._labels_read = False

    @property
    def drive_id(self) -> str:
        """The library's drive id: as configured, or looked up by the library's name on first use."""
        if self._drive_id is None:
            self._drive_id = self._find_drive()
        return self._drive_id

    @property
    def _drive(self) -> str:
        return f"drives/{quote(self.drive_id, safe='')}"

    @classmethod
    def from_settings(
        cls,
        settings: GraphSettings,
        *,
        client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> GraphClient:
        """A client for the library ``settings.library`` of the site ``settings.site_url`` (or the drive
        ``settings.drive_id``) at ``settings.url``, signing in to Entra ID when the settings say how
        (:func:`connectors.auth.entra_auth`), else with ``settings.token``.

        Without ``client`` one is made (timeouts: connect 2 s, read 5 s). An injected client keeps
        its transport and timeouts; it gets the base URL and bearer token unless it already has them.
        """
        auth = entra_auth(settings)  # signing in to Entra ID, or None: the static token
        headers = {} if auth else {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
        if client is None:
            client = outbound_client(base_url=settings.url, headers=headers, auth=auth,
                                  timeout=httpx.Timeout(5.0, connect=2.0))
        else:
            if not str(client.base_url).strip("/"):
                client.base_url = httpx.URL(settings.url)
            if auth is not None:
                client.auth = auth
            else:
                client.headers.setdefault("Authorization", headers["Authorization"])
        http = Http(client, target="graph", retry=retry, breaker=breaker, sleep=sleep,
                    tracer_provider=tracer_provider)
        return cls(http, drive_id=settings.drive_id, site_url=settings.site_url, library=settings.library)

    def close(self) -> None:
        """Close the underlying ``httpx.Client`` (and the sign-in's)."""
        if isinstance(self.http.client.auth, BearerAuth):
            self.http.client.auth.close()
        self.http.client.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _item_url(self, item_id: str) -> str:
        return f"{self._drive}/items/{quote(item_id, safe='')}"

    def _path_url(self, names: list[str]) -> str:
        if not names:
            return f"{self._drive}/root"
        return f"{self._drive}/root:/" + "/".join(quote(n, safe="") for n in names)

    def _send(self, method: str, url: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              accept: frozenset[int] = frozenset(), retry_safe: bool = False, content: bytes | None = None,
              headers: Mapping[str, str] | None = None, anonymous: bool = False, shown: str | None = None
              ) -> httpx.Response:
        """One call; a 4xx outside ``accept`` raises ``ItemNotFound`` (404) or ``UpstreamRejected``.
        ``content``: a raw body; ``anonymous``: no bearer token; ``shown``: the URL as errors name it."""
        http = self.http
        if content is not None or anonymous:
            http = copy.copy(self.http)  # shares the retry policy, the breaker and the tracer
            http.client = cast(httpx.Client, _RawBody(self.http.client, content=content, anonymous=anonymous))
        response = http.request(method, url, json=json, params=params, headers=headers,
                                ok_statuses=_READ_ERRORS | accept, retry_safe=retry_safe)
        if response.is_success or response.status_code in accept:
            return response
        code, message = _graph_error(response)
        text = f"graph: {method} {shown or url} answered {response.status_code} {code}: {message}"
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
            body = json_of(self._send("GET", next_url, params=params))
            values.extend(body.get("value", []))
            next_url, params = body.get("@odata.nextLink"), None  # the link carries the query
        raise UpstreamRejected(f"graph: more than {_MAX_PAGES} pages at {url}")

    # -- the site, its library and the directory ---------------------------------------------

    def site(self) -> Site:
        """The site at ``site_url`` (``GET /sites/{hostname}:/{server-relative-path}``)."""
        if not self.site_url:
            raise UpstreamRejected("graph: no SharePoint site URL is configured")
        url = httpx.URL(self.site_url)
        path = url.path.strip("/")
        reference = f"sites/{url.host}:/{quote(path)}" if path else f"sites/{url.host}"
        site = Site.model_validate(self._send("GET", reference).json())
        self._site_id = site.id
        return site

    def site_id(self) -> str:
        """The site's id, looked up once."""
        return self._site_id or self.site().id

    def _find_drive(self) -> str:
        drives = [Drive.model_validate(v) for v in self._collect(f"sites/{quote(self.site_id(), safe=',')}/drives")]
        wanted = (self.library or "").casefold()
        found = [d for d in drives if d.name.casefold() == wanted]
        if len(found) != 1:
            names = ", ".join(sorted(d.name for d in drives)) or "none"
            raise UpstreamRejected(f"graph: the site {self.site_url} has {len(found) or 'no'} document libraries "
                                   f"named {self.library!r} (it has: {names})")
        return found[0].id

    def list_id(self) -> str:
        """The id of the library's list (``GET /drives/{drive-id}/list``), looked up once."""
        if self._list_id is None:
            self._list_id = str(self._send("GET", f"{self._drive}/list").json()["id"])
        return self._list_id

    def group_id(self, group: str) -> str:
        """The object id of the directory group named ``group`` (display name or mail address; an object id
        is returned as it is), looked up once; :class:`GroupNotFound` when none or several match."""
        if _is_object_id(group):
            return group
        key = group.casefold()
        if key not in self._group_ids:
            field = "mail" if "@" in group else "displayName"
            # Spaces as %20, as the SDKs send them (a form-encoded "+" is a literal plus to some OData readers).
            clause = quote(f"{field} eq {odata_literal(group)}", safe="'")
            found = [DirectoryGroup.model_validate(v) for v in self._collect(
                f"groups?$filter={clause}&$select=id,displayName,mail")]
            if len(found) != 1:
                raise GroupNotFound(f"graph: invalidRequest: {len(found) or 'no'} directory groups have the "
                                    f"{field} {group!r}, so it cannot be granted")
            self._group_ids[key] = found[0].id
        return self._group_ids[key]

    # -- columns and published retention labels -----------------------------------------------

    def _columns_url(self) -> str:
        return f"sites/{quote(self.site_id(), safe=',')}/lists/{quote(self.list_id(), safe='')}/columns"

    def columns(self) -> list[ColumnDefinition]:
        """The library's columns (``GET /sites/{site-id}/lists/{list-id}/columns``)."""
        return [ColumnDefinition.model_validate(v) for v in self._collect(self._columns_url())]

    def ensure_columns(self, names: Collection[str]) -> list[str]:
        """Create each of ``names`` the library lacks, as a text column; returns those it created.

        SharePoint refuses a list-item field the library has no column for (400 "Field 'X' is not
        recognized"), so metadata is written only after this. The names known to exist are kept, so a
        later call with no new name sends nothing; a create answered 400 or 409 (a duplicate: a lost
        answer of an earlier attempt, or another worker) is checked by listing again.
        """
        wanted = list(dict.fromkeys(names))
        if self._columns is None or any(n.casefold() not in self._columns for n in wanted):
            self._columns = {c.name.casefold() for c in self.columns()}
        created: list[str] = []
        for name in wanted:
            if name.casefold() in self._columns:
                continue
            response = self._send("POST", self._columns_url(), accept=frozenset({400, 409}),
                                  json={"name": name, "displayName": name, "text": {}})
            if response.is_success:
                created.append(name)
            elif name.casefold() not in {c.name.casefold() for c in self.columns()}:
                code, message = _graph_error(response)
                raise UpstreamRejected(f"graph: the column {name!r} cannot be created: {code}: {message}")
            self._columns.add(name.casefold())
        return created

    def published_labels(self, *, refresh: bool = False) -> frozenset[str] | None:
        """The names of the retention labels the tenant publishes, read once (``refresh``: again); None when
        Graph does not let this app read them.

        Route: ``GET /security/labels/retentionLabels`` (Graph v1.0, "List retentionLabels",
        https://learn.microsoft.com/graph/api/security-labelsroot-list-retentionlabel), which needs
        ``RecordsManagement.Read.All``. The page documents it for delegated sign-in only, so an app signed in
        with client credentials may be answered 403: then the labels cannot be checked ahead, and only the
        label PATCH says one is not published (:class:`LabelNotPublished`).
        """
        if refresh or not self._labels_read:
            response = self._send("GET", "security/labels/retentionLabels", accept=frozenset({403}))
            if response.status_code == 403:
                self._labels = None
            else:
                body = response.json()
                values = list(body.get("value", []))
                if body.get("@odata.nextLink"):
                    values += self._collect(str(body["@odata.nextLink"]))
                self._labels = frozenset(str(v.get("displayName")) for v in values if v.get("displayName"))
            self._labels_read = True
        return self._labels

    # -- items --------------------------------------------------------------------------------

    def get_item(self, item_id: str) -> DriveItem:
        """The item by id (``root`` names the drive's root); ``ItemNotFound`` when absent."""
        return DriveItem.model_validate(self._send("GET", self._item_url(item_id)).json())

    def get_by_path(self, path: str) -> DriveItem | None:
        """The item at ``path`` below the drive root (``""`` is the root), or None."""
        response = self._send("GET", self._path_url(_segments(path)), accept=frozenset({404}))
        return None if response.status_code == 404 else DriveItem.model_validate(response.json())

    def delete_item(self, item_id: str) -> None:
        """Delete the item (to the site's recycle bin); one already gone is not an error."""
        self._send("DELETE", self._item_url(item_id), accept=frozenset({404}))

    def children(self, item_id: str = "root", *, page_size: int | None = None) -> list[DriveItem]:
        """Every child of the item, across all pages."""
        params = {"$top": page_size} if page_size else None
        return [DriveItem.model_validate(v) for v in self._collect(f"{self._item_url(item_id)}/children", params)]

    def iter_children(self, item_id: str = "root", *, expand: str | Sequence[str] | None = None,
                      select: str | Sequence[str] | None = None, orderby: str | None = None,
                      page_size: int | None = None) -> Iterator[DriveItem]:
        """The item's children page by page (``page_size``: ``$top``, at most 1,000), following
        ``@odata.nextLink``. ``expand``: ``listItem($expand=fields)`` (:attr:`DriveItem.list_item`) and/or
        ``retentionLabel`` (:attr:`DriveItem.retention_label`); ``select``: the properties wanted;
        ``orderby``: ``name`` or ``name desc``."""
        params: dict[str, Any] = {}
        for name, value in (("$expand", expand), ("$select", select)):
            if value:
                params[name] = value if isinstance(value, str) else ",".join(value)
        if orderby:
            params["$orderby"] = orderby
        if page_size:
            params["$top"] = page_size
        next_url: str | None = f"{self._item_url(item_id)}/children"
        query: Mapping[str, Any] | None = params or None
        for _ in range(_MAX_PAGES):
            if next_url is None:
                return
            body = json_of(self._send("GET", next_url, params=query))
            for value in body.get("value", []):
                yield DriveItem.model_validate(value)
            next_url, query = body.get("@odata.nextLink"), None  # the link carries the query
        raise UpstreamRejected(f"graph: more than {_MAX_PAGES} pages of children of {item_id!r}")

    def item_url(self, item_id: str) -> str:
        """The item's URL relative to the version root (``drives/{drive-id}/items/{item-id}``), for a batch."""
        return self._item_url(item_id)

    def batch(self, requests: Sequence[BatchRequest], *, raise_errors: bool = False) -> list[BatchResponse]:
        """Send ``requests`` as JSON batches of 20 (``POST /$batch``); their answers in request order.

        Sub-requests answered 429 or 503 (and 504, when safe to repeat) are sent again alone, after their
        ``Retry-After``, as the retry policy allows. ``raise_errors``: a sub-request that still failed raises as a
        direct call would (:class:`ItemNotFound`, ``UpstreamRejected``, ``UpstreamUnavailable``); otherwise each
        answer carries its status and body (:attr:`BatchResponse.ok`)."""
        def post(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # The batch itself is repeated on a failure only when every request in it may be.
            safe = all(e["method"] in {"GET", "HEAD", "PUT", "DELETE"} for e in entries)
            answer = json_of(self._send("POST", "$batch", json={"requests": entries}, retry_safe=safe))
            return list(answer.get("responses") or [])

        return run_batches(requests, post=post, http=self.http, raise_errors=raise_errors, not_found=ItemNotFound)

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

    def ensure_child_folder(self, parent_id: str, name: str, path: str) -> DriveItem:
        """The folder ``name`` in the folder ``parent_id`` (whose path is ``path`` without its last segment),
        created when missing; one request when the parent is known. Safe to repeat."""
        item, _ = self._create_folder(parent_id, name, path)
        return self._folder(item, path)

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

    # -- files --------------------------------------------------------------------------------

    def upload(self, folder_path: str, name: str, content: bytes, *,
               content_type: str = "application/octet-stream") -> DriveItem:
        """Store ``content`` as the file ``name`` in the existing folder ``folder_path`` (``""``: the root),
        replacing a file of that name (same item); ``ItemNotFound`` when the folder is missing.

        Past Graph's simple-upload limit (4 MB) the bytes go through an upload session
        (:meth:`upload_large`)."""
        file_name = _file_name(name)
        return self._upload(self._path_url([*_segments(folder_path), file_name]), name, content, content_type)

    def upload_into(self, folder_id: str, name: str, content: bytes, *,
                    content_type: str = "application/octet-stream") -> DriveItem:
        """:meth:`upload` into the folder of id ``folder_id`` (``items/{parent-id}:/{name}:``), with no path to
        look up; ``ItemNotFound`` when the folder is missing."""
        return self._upload(f"{self._item_url(folder_id)}:/{quote(_file_name(name), safe='')}", name, content,
                            content_type)

    def _upload(self, target: str, name: str, content: bytes, content_type: str) -> DriveItem:
        """PUT the bytes to ``target:/content``, or through an upload session past the simple-upload limit."""
        if len(content) > SIMPLE_UPLOAD_LIMIT:
            return self._upload_session(target, name, content, UPLOAD_FRAGMENT)
        # A PUT of the same bytes to the same path is the same as one: retried in the call as any PUT.
        response = self._send("PUT", f"{target}:/content", content=content, headers={"Content-Type": content_type},
                              params={"@microsoft.graph.conflictBehavior": "replace"}, retry_safe=True)
        return DriveItem.model_validate(response.json())

    def upload_large(self, folder_path: str, name: str, content: bytes, *,
                     fragment_size: int = UPLOAD_FRAGMENT) -> DriveItem:
        """Store ``content`` as ``name`` in ``folder_path`` through an upload session: fragments of
        ``fragment_size`` bytes (a multiple of 320 KiB, as Graph requires), each PUT to the session's
        pre-authenticated URL without the bearer token, with its ``Content-Range``; replaces a file of that name.

        A fragment whose answer was lost is not sent twice blindly: the session says which bytes it expects
        next (``nextExpectedRanges``), and the upload goes on from there."""
        return self._upload_session(self._path_url([*_segments(folder_path), name]), name, content, fragment_size)

    def _upload_session(self, target: str, name: str, content: bytes, fragment_size: int) -> DriveItem:
        """:meth:`upload_large` to ``target`` (the new item's path, or its parent's id and its name)."""
        if fragment_size <= 0 or fragment_size % FRAGMENT_UNIT:
            raise ValueError(f"fragment_size must be a positive multiple of {FRAGMENT_UNIT} bytes")
        if not content:
            raise ValueError("an upload session needs at least one byte; upload an empty file with upload()")
        url = f"{target}:/createUploadSession"
        session = self._send("POST", url, json={"item": {"@microsoft.graph.conflictBehavior": "replace"}},
                             retry_safe=True).json()  # a second session left unused expires on its own
        upload_url = str(session.get("uploadUrl") or "")
        if not upload_url:
            raise UpstreamRejected(f"graph: createUploadSession for {name!r} answered no uploadUrl")
        shown = f"the upload session of {name!r}"
        total, offset = len(content), 0
        for _ in range(_MAX_PAGES):
            chunk = content[offset:offset + fragment_size]
            response = self._send("PUT", upload_url, content=chunk, anonymous=True, shown=shown,
                                  accept=frozenset({416}), headers={
                                      "Content-Range": f"bytes {offset}-{offset + len(chunk) - 1}/{total}",
                                      "Content-Type": "application/octet-stream"})
            if response.status_code in (200, 201):
                return DriveItem.model_validate(response.json())
            if response.status_code == 416:  # those bytes already arrived (an answer lost): ask where to go on
                response = self._send("GET", upload_url, anonymous=True, shown=shown)
            offset = _next_expected(response.json(), total, shown)
        raise UpstreamRejected(f"graph: {shown} did not finish")

    def download(self, item_id: str) -> bytes:
        """A file's content. Graph answers 302 to a pre-authenticated URL, which is fetched without
        the bearer token; a folder is ``UpstreamRejected``, an unknown id ``ItemNotFound``."""
        response = self._send("GET", f"{self._item_url(item_id)}/content", accept=frozenset({302}))
        if response.status_code == 302:
            location = response.headers.get("location")
            if not location:
                raise UpstreamUnavailable(f"graph: the download of {item_id!r} redirected nowhere")
            response = self._send("GET", location, anonymous=True, shown=f"the download URL of {item_id!r}")
        return response.content

    # -- changes ------------------------------------------------------------------------------

    def delta(self, token: str | None = None) -> DeltaResult:
        """The drive's changes since ``token`` (None: every item; ``"latest"``: none, only the current
        token), across all pages, with the token for next time. 410: :class:`DeltaTokenExpired`."""
        url = f"{self._drive}/root/delta"
        params: Mapping[str, Any] | None = {"token": token} if token is not None else None
        items: list[DriveItem] = []
        for _ in range(_MAX_PAGES):
            response = self._send("GET", url, params=params, accept=frozenset({410}))
            if response.status_code == 410:
                code, message = _graph_error(response)
                raise DeltaTokenExpired(f"graph: the delta token is no longer valid (410 {code}: {message})")
            body = response.json()
            items.extend(DriveItem.model_validate(v) for v in body.get("value", []))
            if not body.get("@odata.nextLink"):
                return DeltaResult(items=items, token=_delta_token(str(body.get("@odata.deltaLink") or "")))
            url, params = body["@odata.nextLink"], None  # the link carries the query
        raise UpstreamRejected(f"graph: more than {_MAX_PAGES} delta pages")

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
        object_id = self.group_id(group)
        own = [p for p in self.grants(item_id) if p.grants_only(group) or p.grants_only(object_id)]
        keep = next((p for p in own if p.roles == [role]), None)
        if keep is None:
            keep = self._invite(item_id, object_id, role)
        for permission in own:
            if permission.id != keep.id:
                self._delete_permission(item_id, permission.id)
        return keep

    def _invite(self, item_id: str, group: str, role: Role) -> Permission:
        """Invite the group with object id ``group`` (an ``invite`` on an item that inherits its permissions
        makes the inherited ones direct first, as SharePoint does)."""
        body = {"recipients": [{"objectId": group}], "roles": [role], "requireSignIn": True,
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
        object_id = self._group_ids.get(group.casefold())
        own = [p for p in self.grants(item_id) if p.grants_only(group) or (object_id and p.grants_only(object_id))]
        for permission in own:
            self._delete_permission(item_id, permission.id)
        return len(own)

    # -- retention labels and metadata --------------------------------------------------------

    def retention_label(self, item_id: str) -> RetentionLabel:
        """The item's (folder's or file's) retention label (``name`` None when there is none)."""
        response = self._send("GET", f"{self._item_url(item_id)}/retentionLabel", accept=frozenset({404}))
        return RetentionLabel() if response.status_code == 404 else RetentionLabel.model_validate(response.json())

    def ensure_retention_label(self, item_id: str, label: str) -> RetentionLabel:
        """Apply ``label`` unless the item already carries it; :class:`LabelNotPublished` when SharePoint
        refuses it (400)."""
        current = self.retention_label(item_id)
        if current.name == label:
            return current
        response = self._send("PATCH", f"{self._item_url(item_id)}/retentionLabel", json={"name": label},
                              retry_safe=True, accept=frozenset({400}))  # setting a label twice is the same as once
        if response.status_code == 400:
            code, message = _graph_error(response)
            raise LabelNotPublished(f"graph: the retention label {label!r} was refused: 400 {code}: {message}")
        return RetentionLabel.model_validate(response.json())

    def fields(self, item_id: str) -> dict[str, Any]:
        """The item's (folder's or file's) list-item field values (``fieldValueSet``)."""
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
