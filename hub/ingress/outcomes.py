"""Accepted (source, id) pairs: a re-send gets the first outcome back and is not published again.

Accepting an event takes one atomic step before anything is published: a *claim* on its (source, id)
(``SET NX GET`` semantics). Of several identical deliveries arriving at the same instant exactly one
claims and publishes; the others wait for its outcome and answer it as a re-send, so ``202`` still means
durable for each of them. A publish that fails releases the claim (the sender's retry, or a waiting copy,
claims again); a claim left by a crashed ingress expires after :data:`CLAIM_TTL_MS`.

The ingress claims all the events of a request in its one admission script
(:mod:`hub.ingress.admission`, with :meth:`OutcomeStore.claim_value` and :meth:`OutcomeStore.answer`);
:meth:`OutcomeStore.claim` claims one event alone, and is what an event held by another request is
retried with while it waits. Settling and releasing take one script call for all the events of a request; with
``trailing`` (what ``hub serve`` runs), a settle needs no round trip of its own: it is held and goes with the next
request's admission (:class:`hub.batching.TrailingWrites`), or alone a few milliseconds later when none comes. The
response does not wait for it: the publishes are confirmed by then, and a copy of the event waits for the outcome
as it waits for any request still publishing. An ingress killed in between leaves the claims to expire, as one
killed before its settle always did: a re-send after that is published again, and the consumers' idempotency
absorbs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio
from redis.commands.core import AsyncScript

from hub.batching import Answer, HeldWrites, TrailingWrites
from hub.errors import BrokerUnavailable, StoreUnavailable
from hub.events import CloudEvent
from observability.logging import get_logger

log = get_logger(__name__)

#: How long an accepted event id is remembered (senders retry for hours, not weeks).
OUTCOME_TTL_S = 7 * 86_400
#: How long a claim lives without its publish settling (longer than any confirm wait).
CLAIM_TTL_MS = 30_000
#: How long a copy waits for another request's publish of the same event to settle.
WAIT_FOR_CLAIM_S = 10.0

Verdict = Literal["new", "resend", "conflict"]

# KEYS the events' keys; ARGV[1] ttl s, then per event the claim's value and the settled value.
_SETTLE = """
local settled = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[2 * i] then
    redis.call('SET', key, ARGV[2 * i + 1], 'EX', ARGV[1])
    settled = settled + 1
  end
end
return settled
"""
# KEYS the events' keys; ARGV per event the claim's value.
_RELEASE = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then released = released + redis.call('DEL', key) end
end
return released
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
                 claim_ttl_ms: int = CLAIM_TTL_MS, wait_s: float = WAIT_FOR_CLAIM_S,
                 trailing: TrailingWrites | None = None) -> None:
        """``trailing``: where settles wait for the next request's round trip (see the module docstring); without
        it each settle is a round trip of its own."""
        self._client = client
        #: The settles (and their requests' hops) waiting for the next admission, if they are held.
        self.trailing = trailing
        self._prefix = prefix
        self._ttl_s = ttl_s
        self.claim_ttl_ms = claim_ttl_ms
        self._wait_s = wait_s
        self._settle = client.register_script(_SETTLE)
        self._release = client.register_script(_RELEASE)
        self._again: set[asyncio.Task[None]] = set()

    def key(self, event: CloudEvent) -> str:
        """The Redis key of the event's (source, id)."""
        ident = hashlib.sha256(f"{event.get_source()}\x00{event.get_id()}".encode()).hexdigest()[:40]
        return f"{self._prefix}:ingress:accepted:{ident}"

    @staticmethod
    def claim_value(event: CloudEvent, content: str | None = None) -> tuple[str, str]:
        """``(digest, value)``: what sends of the event are compared by, and a claim of it unique to this
        request (the value stored while it publishes). ``content``: see :meth:`claim`."""
        same = content or digest(event)
        return same, json.dumps({"digest": same, "claim": secrets.token_hex(8)})

    @staticmethod
    def answer(previous: str | bytes | None, same: str, mine: str) -> Claim | None:
        """The claim a ``SET NX GET`` of ``mine`` made when it returned ``previous``; ``None`` when another
        request holds the claim of the same content (wait for its outcome)."""
        if previous is None:
            return Claim("new", held=mine, digest=same)
        stored = json.loads(previous)
        if stored.get("digest") != same:
            return Claim("conflict", stored.get("outcome"), digest=same)
        if "outcome" in stored:
            return Claim("resend", stored["outcome"], digest=same)
        return None

    async def claim(self, event: CloudEvent, *, content: str | None = None) -> Claim:
        """Claim the event for publishing, or say it was accepted before (same or other content).

        ``content``: the digest of the vendor content the event was made from, compared instead of the event's
        own (:func:`digest`) when the event carries what the hub added on receipt.

        While another request holds the claim of the same content, wait (up to ``wait_s``) for its
        outcome: accepted (a re-send), or released (claim again). Raises ``StoreUnavailable`` when
        Redis does not answer and :class:`ResendInFlight` when the other request does not settle.
        """
        same, mine = self.claim_value(event, content)
        key = self.key(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        pause = 0.005
        while True:
            try:
                previous = await self._client.set(key, mine, nx=True, get=True, px=self.claim_ttl_ms)
            except redis.RedisError as exc:
                raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None
            claim = self.answer(previous, same, mine)
            if claim is not None:
                return claim
            if loop.time() >= deadline:
                raise ResendInFlight("the same event is being accepted by another request; send it again",
                                     retry_after=1)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def settle(self, accepted: Sequence[tuple[CloudEvent, Claim, dict[str, Any]]], *,
                     writes: HeldWrites | None = None) -> None:
        """Record the outcomes of published events whose claims this request holds, in one script call, sent with
        the request's held ``writes`` (one round trip for all); with ``trailing``, held for the next request's
        round trip instead, and a failure is logged, not raised."""
        keys = [self.key(event) for event, _, _ in accepted]
        args: list[str | int] = [self._ttl_s]
        for event, claim, outcome in accepted:
            args += [claim.held or "", json.dumps({"digest": claim.digest or digest(event), "outcome": outcome})]
        if self.trailing is not None:
            held = writes or HeldWrites()
            if keys:
                sha = self._settle.sha
                held.write(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args),
                           self._settled([event.get_id() for event, _, _ in accepted], keys, args))
            self.trailing.hold(held)
            return
        try:
            await self._run(self._settle, keys, args, writes)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None

    def _settled(self, event_ids: list[str], keys: list[str], args: list[Any]) -> Answer:
        """What a held settle is told once sent: a script Redis lost (restarted empty) is sent again alone, which
        loads it; a failure leaves the claims to expire (see the module docstring)."""
        async def again() -> None:
            try:
                await self._settle(keys=keys, args=args)
            except redis.RedisError as exc:
                not_recorded(exc)

        def not_recorded(error: BaseException) -> None:
            log.warning("accepted events' outcomes not recorded", event_ids=event_ids, error=type(error).__name__)

        def answer(reply: Any) -> None:
            if isinstance(reply, redis.exceptions.NoScriptError):
                task = asyncio.ensure_future(again())
                self._again.add(task)
                task.add_done_callback(self._again.discard)
            elif isinstance(reply, redis.RedisError | OSError):
                not_recorded(reply)
        return answer

    async def close(self) -> None:
        """Send the held settles, if any, and wait for those under way."""
        if self.trailing is not None:
            await self.trailing.close()
        if self._again:
            await asyncio.gather(*self._again, return_exceptions=True)

    async def release(self, claimed: Sequence[tuple[CloudEvent, Claim]], *, writes: HeldWrites | None = None) -> None:
        """Give claims back after their publish failed (or the request was refused), in one script call (sent with
        the request's held ``writes``), so the next delivery publishes again. Claims this request does not hold
        (``new``) are left alone."""
        held = [(event, claim) for event, claim in claimed if claim.verdict == "new"]
        # On a Redis error the claims expire after claim_ttl_ms: the sender's retry then publishes.
        with contextlib.suppress(redis.RedisError):
            await self._run(self._release, [self.key(event) for event, _ in held], [c.held or "" for _, c in held],
                            writes)

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any], writes: HeldWrites | None) -> None:
        """The script on ``keys`` (none: only the held writes go), in one round trip with the held writes."""
        if writes is None or not writes.pending:
            if keys:
                await script(keys=keys, args=args)
            return
        await writes.send_script(self._client, script, keys, args)
