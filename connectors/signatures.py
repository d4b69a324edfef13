"""Helpers the inbound webhook adapters share: signatures, payload fields, instants and event ids.

Every signature comparison goes through :func:`hmac.compare_digest` on bytes, so neither the time
taken nor an error message tells a caller how close a forged signature came; nothing here puts a
secret, an expected signature or a payload value into an error message.

Bodies are read with the ingress's strict JSON (:func:`hub.ingress.binding.loads`: depth, integer length,
duplicate keys, lone surrogates), instants as RFC 3339 (:mod:`hub.rfc3339`), and a vendor field
that becomes an event attribute (an id, a subject) must be a CloudEvents String
(:func:`attribute_text`): whatever a vendor sends, the answer is a 4xx, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from hub import rfc3339
from hub.errors import InvalidEvent
from hub.events import valid_string
from hub.ingress.binding import loads

__all__ = [
    "any_match",
    "attribute_text",
    "get_header",
    "hmac_sha256",
    "load_json_object",
    "optional_text",
    "parse_instant",
    "require_object",
    "require_text",
    "stable_id",
]

# Fixed namespace of the hub's derived event ids; changing it would change every derived id.
_ID_NAMESPACE = uuid.UUID("5b0c1e52-0f4d-4c1e-9a55-6d1b0e7c2a41")


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` whatever its case, or None."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def hmac_sha256(key: str, *parts: bytes) -> bytes:
    """Raw HMAC-SHA256 digest of ``parts`` concatenated, keyed with the UTF-8 bytes of ``key``."""
    mac = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _decode(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters in the header
        return None


def any_match(signatures: Iterable[str], digests: Iterable[bytes]) -> bool:
    """Whether any base64 signature equals any raw digest, compared in constant time."""
    decoded = [candidate for candidate in map(_decode, signatures) if candidate is not None]
    expected = list(digests)
    # Every pair is compared (no early exit), so the time taken does not say which key matched.
    results = [hmac.compare_digest(candidate, digest) for candidate in decoded for digest in expected]
    return any(results)


def load_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a strict JSON object (:func:`hub.ingress.binding.loads`); InvalidEvent otherwise.

    The JSON errors are :class:`~hub.errors.MalformedJson` and :class:`~hub.errors.JsonTooComplex`,
    which the ingress answers as malformed-json and json-too-complex; no message quotes the body.
    """
    document = loads(body)
    if not isinstance(document, dict):
        raise InvalidEvent(f"body must be a JSON object, got {type(document).__name__}")
    return document


def require_object(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    """The JSON object at ``parent[key]``; InvalidEvent naming ``path`` when missing or not an object."""
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{path} must be a JSON object", field=path)
    return value


def optional_text(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    """The string (or integer id, as text) at ``parent[key]``; None when absent, null or empty."""
    value = parent.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # some vendors' older payloads send numeric ids
    if not isinstance(value, str):
        raise InvalidEvent(f"{path} must be a string, got {type(value).__name__}", field=path)
    return value


def require_text(parent: Mapping[str, Any], key: str, path: str) -> str:
    """The non-empty string at ``parent[key]``; InvalidEvent naming ``path`` otherwise."""
    value = optional_text(parent, key, path)
    if value is None:
        raise InvalidEvent(f"{path} is required", field=path)
    return value


def attribute_text(value: str, path: str) -> str:
    """``value`` when it may become an event attribute (a CloudEvents String); InvalidEvent naming ``path``."""
    if not valid_string(value):
        raise InvalidEvent(f"{path} holds a control character, surrogate or noncharacter", field=path)
    return value


def parse_instant(text: str, path: str) -> datetime:
    """An RFC 3339 timestamp (with its offset, within years 1 to 9999); InvalidEvent naming ``path`` otherwise."""
    try:
        # DocuSign's seven fractional digits are truncated to microseconds.
        return rfc3339.parse(text)
    except ValueError:
        raise InvalidEvent(f"{path} is not an RFC 3339 timestamp", field=path) from None


def stable_id(*parts: str) -> str:
    """A UUID derived from ``parts`` alone, so the same notification always gets the same event id."""
    # The unit separator does not occur in the ids and timestamps joined here: joins stay unambiguous.
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))
