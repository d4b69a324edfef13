"""One Box call under the shared HTTP policy: the API host's ``/2.0`` or the upload host's, a JSON, raw or
multipart body, with or without the bearer token, and Box's error body read into :mod:`connectors.box.errors`;
and collections followed page by page (marker or offset paging)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

import httpx

from connectors.box.errors import box_error
from connectors.http import RETRYABLE_STATUS, Http
from hub.errors import UpstreamRejected

__all__ = ["MAX_PAGES", "BoxApi"]

#: 4xx answers whose Box error body this module reads itself (the rest are retried by ``Http``).
_READ_ERRORS = frozenset(range(400, 500)) - RETRYABLE_STATUS
#: A bound on pages read in one call, against a service that keeps answering a next page.
MAX_PAGES = 10_000


class _Body:
    """``Http.client`` for one call: sends ``content``, form ``data`` or multipart ``files``, or (``anonymous``)
    no bearer token (a pre-authenticated download URL must not get it), under the shared policy."""

    def __init__(self, client: httpx.Client, *, content: bytes | None, data: Mapping[str, str] | None,
                 files: Mapping[str, Any] | None, anonymous: bool) -> None:
        self._client = client
        self._content, self._data, self._files = content, data, files
        self._anonymous = anonymous

    def request(self, method: str, url: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        request = self._client.build_request(method, url, params=params, headers=headers, json=json,
                                             content=self._content, data=self._data, files=self._files)
        if self._anonymous:
            request.headers.pop("Authorization", None)
        return self._client.send(request, auth=None if self._anonymous else httpx.USE_CLIENT_DEFAULT)


class BoxApi:
    """Box's two hosts behind one :class:`Http`: ``http.client`` has the API host as base URL and the
    sign-in as auth; ``upload_url`` is the upload host with its ``/api`` prefix."""

    def __init__(self, http: Http, *, upload_url: str) -> None:
        self.http = http
        self.upload_url = upload_url.rstrip("/")

    def url(self, path: str, *, upload: bool = False) -> str:
        """``path`` below ``/2.0`` of the API host (or the upload host); an absolute URL is kept."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.upload_url}/2.0/{path}" if upload else f"/2.0/{path}"

    def send(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, content: bytes | None = None,
             data: Mapping[str, str] | None = None, files: Mapping[str, Any] | None = None,
             accept: frozenset[int] = frozenset(), retry_safe: bool = False, upload: bool = False,
             anonymous: bool = False, shown: str | None = None) -> httpx.Response:
        """One call; a 4xx outside ``accept`` raises Box's error (:func:`connectors.box.errors.box_error`).

        ``retry_safe``: a POST whose repeat is harmless (it ends in a conflict this client reads), retried in the
        call like a GET. ``shown``: the path as errors name it (a pre-authenticated URL is not shown)."""
        http = self.http
        if content is not None or data is not None or files is not None or anonymous:
            http = copy.copy(self.http)  # shares the retry policy, the breaker and the tracer
            http.client = cast(httpx.Client, _Body(self.http.client, content=content, data=data, files=files,
                                                   anonymous=anonymous))
        response = http.request(method, self.url(path, upload=upload), json=json, params=params, headers=headers,
                                ok_statuses=_READ_ERRORS | accept, retry_safe=retry_safe)
        if response.is_success or response.status_code in accept:
            return response
        raise box_error(response, f"{method} {shown or path.split('?')[0]}")

    def by_marker(self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = 1000,
                  marker_param: bool = False) -> list[dict[str, Any]]:
        """Every entry of a collection paged by marker (``limit``, ``marker`` and ``next_marker``); with
        ``marker_param`` the first request asks for marker paging (``usemarker=true``)."""
        query: dict[str, Any] = {**(params or {}), "limit": limit}
        if marker_param:
            query["usemarker"] = "true"
        entries: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            body = self.send("GET", path, params=query).json()
            entries.extend(body.get("entries") or [])
            marker = body.get("next_marker")
            if not marker:
                return entries
            query["marker"] = marker
        raise UpstreamRejected(f"box: more than {MAX_PAGES} pages at {path}")

    def by_offset(self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = 1000
                  ) -> list[dict[str, Any]]:
        """Every entry of a collection paged by offset (``offset``, ``limit``, ``total_count``)."""
        query: dict[str, Any] = {**(params or {}), "limit": limit, "offset": 0}
        entries: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            body = self.send("GET", path, params=query).json()
            page = body.get("entries") or []
            entries.extend(page)
            total = int(body.get("total_count") or 0)
            if not page or len(entries) >= total:
                return entries
            query["offset"] = int(body.get("offset") or query["offset"]) + len(page)
        raise UpstreamRejected(f"box: more than {MAX_PAGES} pages at {path}")
