"""Accepted (source, id) pairs: a re-send gets the first outcome back and is not published again.

Accepting an event takes one atomic step before anything is published: a *claim* on its (source, id)
(``SET NX GET``). Of several identical deliveries arriving at the same instant exactly one claims and
publishes; the others wait for its outcome and answer it as a re-send, so ``202`` still means durable
for each of them. A publish that fails releases the claim (the sender's retry, or a waiting copy,
claims again); a claim left by a crashed ingress expires after :data:`CLAIM_TTL_MS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio

from hub.errors import BrokerUnavailable, StoreUnavailable
from hub.events import CloudEvent

#: How long an accepted event id is remembered (senders retry for hours, not weeks).
OUTCOME_TTL_S = 7 * 86_400
#: How long a claim lives without its publish settling (longer than any confirm wait).
CLAIM_TTL_MS = 30_000
#: How long a copy waits for another request's publish of the same event to settle.
WAIT_FOR_CLAIM_S = 10.0

Verdict = Literal["new", "resend", "conflict"]

# KEYS[1] the event's key; ARGV[1] the claim's value, ARGV[2] the settled value, ARGV[3] ttl s.
_SETTLE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
# KEYS[1] the event's key; ARGV[1] the claim's value.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ResendInFlight(BrokerUnavailable):
    """Another request has been publishing the same event for too long: the sender should try again."""


@dataclass(frozen=True)
class Claim:
    """What the store answered for an event: ``new`` (this request claimed it and must publish, then
    :meth:`OutcomeStore.settle` or :meth:`OutcomeStore.release`), ``resend`` (accepted before, with its
    outcome) or ``conflict`` (the id was accepted with other content)."""

    verdict: Verdict
    outcome: dict[str, Any] | None = None
    held: str | None = None  # the claim's stored value, when this request holds it
    digest: str = ""  # what the sends of this id are compared by


#: Attributes that do not make two sends of one id different events: identity, framing, the send's own
#: time and trace (a sender's retry may carry a new ``traceparent``).
_NOT_CONTENT = frozenset({"specversion", "id", "source", "time", "datacontenttype", "dataschema", "traceparent"})


def digest(event: CloudEvent) -> str:
    """What makes two sends of one id the same event: type, subject, extensions and the Avro data."""
    data = event.get_data()
    extensions = sorted(f"{name}={value}" for name, value in event.get_attributes().items()
                        if name not in _NOT_CONTENT and name not in ("type", "subject"))
    parts = [event.get_type().encode(), (event.get_subject() or "").encode(), *(e.encode() for e in extensions),
             data if isinstance(data, bytes) else b""]
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()


class OutcomeStore:
    """Claims and accepted events' outcomes in Redis, keyed by a hash of (source, id)."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, ttl_s: int = OUTCOME_TTL_S,
                 claim_ttl_ms: int = CLAIM_TTL_MS, wait_s: float = WAIT_FOR_CLAIM_S) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._claim_ttl_ms = claim_ttl_ms
        self._wait_s = wait_s
        self._settle = client.register_script(_SETTLE)
        self._release = client.register_script(_RELEASE)

    def _key(self, event: CloudEvent) -> str:
        ident = hashlib.sha256(f"{event.get_source()}\x00{event.get_id()}".encode()).hexdigest()[:40]
        return f"{self._prefix}:ingress:accepted:{ident}"

    async def claim(self, event: CloudEvent, *, content: str | None = None) -> Claim:
        """Claim the event for publishing, or say it was accepted before (same or other content).

        ``content``: the digest of the vendor content the event was made from, compared instead of the event's
        own (:func:`digest`) when the event carries what the hub added on receipt.

        While another request holds the claim of the same content, wait (up to ``wait_s``) for its
        outcome: accepted (a re-send), or released (claim again). Raises ``StoreUnavailable`` when
        Redis does not answer and :class:`ResendInFlight` when the other request does not settle.
        """
        same = content or digest(event)
        mine = json.dumps({"digest": same, "claim": secrets.token_hex(8)})
        key = self._key(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        pause = 0.005
        while True:
            try:
                previous = await self._client.set(key, mine, nx=True, get=True, px=self._claim_ttl_ms)
            except redis.RedisError as exc:
                raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None
            if previous is None:
                return Claim("new", held=mine, digest=same)
            stored = json.loads(previous)
            if stored.get("digest") != same:
                return Claim("conflict", stored.get("outcome"), digest=same)
            if "outcome" in stored:
                return Claim("resend", stored["outcome"], digest=same)
            if loop.time() >= deadline:
                raise ResendInFlight("the same event is being accepted by another request; send it again",
                                     retry_after=1)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def settle(self, event: CloudEvent, claim: Claim, outcome: dict[str, Any]) -> None:
        """Record the outcome of a published event whose claim this request holds."""
        accepted = json.dumps({"digest": claim.digest or digest(event), "outcome": outcome})
        try:
            await self._settle(keys=[self._key(event)], args=[claim.held or "", accepted, self._ttl_s])
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None

    async def release(self, event: CloudEvent, claim: Claim) -> None:
        """Give a claim back after its publish failed, so the next delivery publishes again."""
        # On a Redis error the claim expires after claim_ttl_ms: the sender's retry then publishes.
        with contextlib.suppress(redis.RedisError):
            await self._release(keys=[self._key(event)], args=[claim.held or ""])
