"""Graph JSON batching for :meth:`connectors.sharepoint.client.GraphClient.batch`: up to 20 requests per
``POST /$batch``, answered by id in any order.

A sub-request answered 429 or 503 was not carried out, and one answered 504 may not have been: those are sent
again (a 504 only for a method safe to repeat), alone, in a new batch, after the longest ``Retry-After`` among
them (else the shared policy's backoff; a wait past the policy's longest ends the retries), up to the policy's
attempts. What still fails is answered as it is, or (with ``raise_errors``) raised as a direct call raises
it: 404 ``ItemNotFound``, another 4xx ``UpstreamRejected``, 429 and 5xx ``UpstreamUnavailable`` with
``retry_after``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.http import Http
from hub.errors import UpstreamRejected, UpstreamUnavailable

#: Graph's limit of requests in one batch.
BATCH_LIMIT = 20
#: Sub-request answers sent again: not carried out (429, 503) or perhaps not (504).
_AGAIN = frozenset({429, 503, 504})
_REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: ``url`` relative to the version root (``drives/{id}/items/{id}/permissions``)."""

    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def get(cls, url: str) -> BatchRequest:
        """A GET of ``url``."""
        return cls("GET", url)

    def to_json(self, request_id: str) -> dict[str, Any]:
        """The request as a batch body lists it."""
        entry: dict[str, Any] = {"id": request_id, "method": self.method.upper(), "url": "/" + self.url.lstrip("/")}
        headers = dict(self.headers)
        if self.body is not None:
            headers.setdefault("Content-Type", "application/json")
            entry["body"] = self.body
        if headers:
            entry["headers"] = headers
        return entry


@dataclass(frozen=True)
class BatchResponse:
    """One sub-request's answer: status, headers (as Graph names them) and body (JSON, or None)."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the sub-request succeeded (2xx)."""
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """A header's value, its name matched without regard to case."""
        return next((v for k, v in self.headers.items() if k.casefold() == name.casefold()), None)

    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds, when given as a number."""
        value = (self.header("retry-after") or "").strip()
        return float(value) if value.isdigit() else None


def batch_error(request: BatchRequest, response: BatchResponse, *,
                not_found: Callable[[str], Exception] = UpstreamRejected) -> Exception:
    """The hub's error for a failed sub-request, as a direct call would raise it."""
    error = response.body.get("error") if isinstance(response.body, Mapping) else None
    code = str(error.get("code", "unknown")) if isinstance(error, Mapping) else "unknown"
    message = str(error.get("message", "")) if isinstance(error, Mapping) else ""
    text = f"graph: {request.method.upper()} {request.url} answered {response.status} {code}: {message}"
    if response.status == 429 or response.status >= 500:
        asked = response.retry_after()
        return UpstreamUnavailable(text, retry_after=asked or None)
    if response.status == 404:
        return not_found(text)
    return UpstreamRejected(text)


def run_batches(requests: Sequence[BatchRequest], *, post: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
                http: Http, raise_errors: bool = False, not_found: Callable[[str], Exception] = UpstreamRejected
                ) -> list[BatchResponse]:
    """Every request answered, in request order: ``post`` sends one batch body's requests and returns its
    ``responses``; chunks of 20, the throttled ones sent again as the policy allows."""
    answers: dict[int, BatchResponse] = {}
    pending = list(range(len(requests)))
    for attempt in range(1, http.retry.attempts + 1):
        for start in range(0, len(pending), BATCH_LIMIT):
            chunk = pending[start:start + BATCH_LIMIT]
            returned = {str(r.get("id")): r for r in post([requests[i].to_json(str(i)) for i in chunk])}
            for index in chunk:
                raw = returned.get(str(index))
                answers[index] = (BatchResponse(504, {"error": {"code": "missingResponse", "message": "no answer"}})
                                  if raw is None else BatchResponse(int(raw.get("status", 500)), raw.get("body"),
                                                                    dict(raw.get("headers") or {})))
        again = [i for i in pending if answers[i].status in _AGAIN
                 and (answers[i].status != 504 or requests[i].method.upper() in _REPEATABLE)]
        if not again or attempt == http.retry.attempts:
            break
        waits = [w for w in (answers[i].retry_after() for i in again) if w is not None]
        if not http.back_off(attempt, retry_after=max(waits) if waits else None):
            break
        pending = again
    if raise_errors:
        for index, request in enumerate(requests):
            if not answers[index].ok:
                raise batch_error(request, answers[index], not_found=not_found)
    return [answers[i] for i in range(len(requests))]
