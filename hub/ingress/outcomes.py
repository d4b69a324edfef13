"""The first outcome of each accepted (source, id): a re-send gets it back and is not published again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio

from hub.errors import StoreUnavailable
from hub.events import CloudEvent

#: How long an accepted event id is remembered (senders retry for hours, not weeks).
OUTCOME_TTL_S = 7 * 86_400

Verdict = Literal["new", "resend", "conflict"]


@dataclass(frozen=True)
class Seen:
    """What the store knows of an event's (source, id)."""

    verdict: Verdict
    outcome: dict[str, Any] | None = None


def digest(event: CloudEvent) -> str:
    """What makes two sends of one id the same event: type, subject and the Avro data."""
    data = event.get_data()
    parts = [event.get_type().encode(), (event.get_subject() or "").encode(), data if isinstance(data, bytes) else b""]
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()


class OutcomeStore:
    """Accepted events' outcomes in Redis, keyed by a hash of (source, id)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, ttl_s: int = OUTCOME_TTL_S) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def _key(self, event: CloudEvent) -> str:
        ident = hashlib.sha256(f"{event.get_source()}\x00{event.get_id()}".encode()).hexdigest()[:40]
        return f"{self._prefix}:ingress:accepted:{ident}"

    async def seen(self, event: CloudEvent) -> Seen:
        """Whether this (source, id) was accepted before, and with the same content."""
        try:
            raw = await self._client.get(self._key(event))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None
        if raw is None:
            return Seen("new")
        stored = json.loads(raw)
        if stored.get("digest") != digest(event):
            return Seen("conflict", stored.get("outcome"))
        return Seen("resend", stored.get("outcome"))

    async def remember(self, event: CloudEvent, outcome: dict[str, Any]) -> None:
        """Record the outcome of a newly accepted event (the first writer wins)."""
        value = json.dumps({"digest": digest(event), "outcome": outcome})
        try:
            await self._client.set(self._key(event), value, ex=self._ttl_s, nx=True)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None
