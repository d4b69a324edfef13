"""RFC 9457 problem details: one stable ``type`` URI per error kind, used for every error response."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from hub.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    HubError,
    InvalidEvent,
    JsonTooComplex,
    MalformedJson,
    NotAuthorized,
    SchemaViolation,
    StoreUnavailable,
    UnknownEventType,
)

#: Media type of every error body.
PROBLEM_JSON = "application/problem+json"
_TYPE_PREFIX = "urn:hub:problem:"


class Kind(enum.Enum):
    """Error kinds: (status, title). The ``type`` URI is ``urn:hub:problem:<value name>``."""

    MALFORMED_JSON = (400, "Body is not valid JSON")
    JSON_TOO_COMPLEX = (400, "JSON nesting or number size beyond the limits")
    INVALID_HEADER = (400, "A header or the request framing is not valid")
    DUPLICATE_HEADER = (400, "A ce- header appears more than once")
    INVALID_CLOUDEVENT = (400, "Not a valid CloudEvent")
    MISSING_ATTRIBUTE = (400, "A required CloudEvents attribute is missing")
    UNSUPPORTED_SPECVERSION = (400, "Unsupported CloudEvents specversion")
    INVALID_BATCH = (400, "Not a valid CloudEvents batch")
    INVALID_PARAMETER = (400, "A path or query parameter is not valid")
    UNAUTHENTICATED = (401, "Authentication failed")
    FORBIDDEN = (403, "Not allowed for this source")
    NOT_FOUND = (404, "No such resource")
    METHOD_NOT_ALLOWED = (405, "Method not allowed")
    ID_CONFLICT = (409, "Event id reused with different content")
    PAYLOAD_TOO_LARGE = (413, "Request body too large")
    UNSUPPORTED_MEDIA_TYPE = (415, "Unsupported content type")
    UNKNOWN_EVENT_TYPE = (422, "Unknown event type")
    SCHEMA_VIOLATION = (422, "Event data does not match its schema")
    RATE_LIMITED = (429, "Quota exceeded")
    UNAVAILABLE = (503, "Temporarily unavailable; retry later")
    INTERNAL = (500, "Internal error")
    HEADERS_TOO_LARGE = (431, "Request header fields too large")
    UNSUPPORTED_TRANSFER_ENCODING = (501, "Transfer-Encoding not implemented")

    @property
    def status(self) -> int:
        """HTTP status of this kind."""
        return int(self.value[0])

    @property
    def title(self) -> str:
        """Short human title."""
        return str(self.value[1])

    @property
    def uri(self) -> str:
        """The stable ``type`` URI."""
        return _TYPE_PREFIX + self.name.lower().replace("_", "-")


@dataclass(eq=False)
class Problem(Exception):
    """An error answer; raised anywhere in the ingress, rendered by the app's handler."""

    kind: Kind
    detail: str
    field: str | None = None
    retry_after_s: int | None = None
    errors: list[dict[str, Any]] = dc_field(default_factory=list)  # per-event errors of a batch

    def __str__(self) -> str:
        return f"{self.kind.name}: {self.detail}"

    def body(self, *, instance: str | None = None) -> dict[str, Any]:
        """The problem+json document."""
        doc: dict[str, Any] = {"type": self.kind.uri, "title": self.kind.title, "status": self.kind.status,
                               "detail": self.detail}
        if instance:
            doc["instance"] = instance
        if self.field:
            doc["field"] = self.field
        if self.errors:
            doc["errors"] = self.errors
        return doc

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After``)."""
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


def from_error(error: HubError, *, retry_after_s: int = 5) -> Problem:
    """Map the hub's error tree onto problem kinds."""
    if isinstance(error, MalformedJson):
        return Problem(Kind.MALFORMED_JSON, str(error), field=error.field)
    if isinstance(error, JsonTooComplex):
        return Problem(Kind.JSON_TOO_COMPLEX, str(error), field=error.field)
    if isinstance(error, UnknownEventType):
        return Problem(Kind.UNKNOWN_EVENT_TYPE, str(error), field=error.field or "type")
    if isinstance(error, SchemaViolation):
        return Problem(Kind.SCHEMA_VIOLATION, str(error), field=_data_path(error.field))
    if isinstance(error, InvalidEvent):
        return Problem(Kind.INVALID_CLOUDEVENT, str(error), field=error.field)
    if isinstance(error, AuthenticationFailed):
        return Problem(Kind.UNAUTHENTICATED, str(error))
    if isinstance(error, NotAuthorized):
        return Problem(Kind.FORBIDDEN, str(error))
    if isinstance(error, BrokerUnavailable | StoreUnavailable):
        wait = int(error.retry_after) if error.retry_after else retry_after_s
        return Problem(Kind.UNAVAILABLE, "the event was not accepted; send it again later", retry_after_s=wait)
    return Problem(Kind.INVALID_CLOUDEVENT, str(error))


def _data_path(path: str | None) -> str:
    if not path:
        return "data"
    return path if path == "data" or path.startswith(("data.", "data[")) else f"data.{path}"
