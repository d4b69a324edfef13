"""Admitting an event request in one Redis round trip: replay guard, quota and every event's claim.

The ingress asks Redis once per request before it publishes (:meth:`Admission.admit`, one ``EVALSHA`` of
:data:`_ADMIT`). The settles of requests finished since (:meth:`OutcomeStore.settle` for all of a request's
published events, with their flight-record hops) go first in the same pipeline when the outcome store holds them
(``trailing``, what ``hub serve`` runs): one round trip per request under load. A failed publish's release
(:meth:`OutcomeStore.release`) is a round trip of its own, at once. The script, atomic in Redis, does in this order:

1. the replay guard, for a signed webhook: its (source, webhook id) is remembered with the body's SHA-256
   (``SET NX`` semantics, :class:`~hub.ingress.auth.RedisReplayGuard`'s key and TTL); the same id with
   another body stops the script there (401, nothing counted nor claimed);
2. the source's quota, with one slot per event, all or none (:data:`~hub.ingress.auth.MOVING_WINDOW_LUA`,
   the key and list :class:`~hub.ingress.auth.QuotaGate` uses, so queries and events share one window);
   over the quota the script stops there (429, nothing claimed);
3. each event's claim (``SET NX GET`` semantics, :class:`~hub.ingress.outcomes.OutcomeStore`'s keys and
   claim TTL), answering per event the value found, if any.

An event whose claim another in-flight request holds (same content, no outcome yet) is then retried
alone with :meth:`OutcomeStore.claim`, which waits for that request's outcome as before. Scripts are
replicated by their effects (Redis 5 and later), so the quota's ``TIME`` is allowed: one clock for every
ingress process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio
import redis.exceptions

from hub.errors import StoreUnavailable
from hub.events import CloudEvent
from hub.ingress.auth import (
    MOVING_WINDOW_LUA,
    AuthenticatedSource,
    QuotaDecision,
    QuotaGate,
    RedisReplayGuard,
    replay_verdict,
)
from hub.ingress.outcomes import Claim, OutcomeStore

__all__ = ["Admission", "Admitted"]

# KEYS: [the replay guard's key,] the source's quota window, then each event's key.
# ARGV[1] '1' when KEYS[1] is the replay guard's key ('0' otherwise), ARGV[2] the body's SHA-256,
# ARGV[3] the replay TTL s, ARGV[4] the quota's amount, ARGV[5] its window s, ARGV[6] the claim TTL ms,
# then each event's claim value.
# Answers {replay verdict ('new', 'resend', '' without a webhook), allowed, remaining, retry_after_ms,
# then per event the value found ('' when this request claimed it)}, or {'conflict'} alone.
_ADMIT = MOVING_WINDOW_LUA + """
local first, verdict = 1, ''
if ARGV[1] == '1' then
  local previous = redis.call('GET', KEYS[1])
  if not previous then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    verdict = 'new'
  elseif previous == ARGV[2] then
    verdict = 'resend'
  else
    return {'conflict'}
  end
  first = 2
end
local events = #KEYS - first
local quota = moving_window(KEYS[first], tonumber(ARGV[4]), tonumber(ARGV[5]), events)
local answer = {verdict, quota[1], quota[2], quota[3]}
if quota[1] == 0 then return answer end
for i = 1, events do
  local key = KEYS[first + i]
  local previous = redis.call('GET', key)
  if previous then
    answer[4 + i] = previous
  else
    redis.call('SET', key, ARGV[6 + i], 'PX', ARGV[6])
    answer[4 + i] = ''
  end
end
return answer
"""


@dataclass(frozen=True)
class Admitted:
    """What Redis answered for a request: its quota decision and, when allowed, each event's claim."""

    caller: AuthenticatedSource
    quota: QuotaDecision
    #: Per event, in order; empty when the quota refused the request.
    claims: list[Claim]


class Admission:
    """The one script call admitting an event request, on the keys of the ingress's quota gate, replay guard
    and outcome store (all on ``client``)."""

    def __init__(self, client: redis.asyncio.Redis, *, quotas: QuotaGate, replay_guard: RedisReplayGuard,
                 outcomes: OutcomeStore) -> None:
        self._quotas = quotas
        self._replay = replay_guard
        self._outcomes = outcomes
        self._client = client
        self._admit = client.register_script(_ADMIT)

    async def admit(self, caller: AuthenticatedSource, events: Sequence[CloudEvent],
                    contents: Sequence[str] | None = None) -> Admitted:
        """Check a signed webhook's replay, charge the quota one slot per event and claim each event.

        ``contents``: per event, what its sends are compared by instead of the event (see
        :meth:`OutcomeStore.claim`). Raises ``AuthenticationFailed`` when the webhook id came before with
        another body, ``StoreUnavailable`` when Redis does not answer, and ``ResendInFlight`` when another
        request holding an event's claim does not settle in time (the claims taken are released first).
        """
        if not events:
            raise ValueError("nothing to admit")
        signed = caller.webhook_id is not None and caller.body_sha256 is not None
        keys = [self._replay.key(caller.id, caller.webhook_id or "")] if signed else []
        keys.append(self._quotas.key(caller))
        values = [self._outcomes.claim_value(event, contents[n] if contents else None)
                  for n, event in enumerate(events)]
        keys += [self._outcomes.key(event) for event in events]
        item = caller.source.rate_limit
        args: list[str | int] = ["1" if signed else "0", caller.body_sha256 or "", self._replay.ttl_s,
                                 item.amount, item.get_expiry(), self._outcomes.claim_ttl_ms]
        args += [mine for _, mine in values]
        try:
            trailing = self._outcomes.trailing.take() if self._outcomes.trailing is not None else None
            if trailing is not None and trailing.pending:
                # Earlier requests' settles first, so a copy of an event they settled is answered as a re-send.
                answer = await trailing.send_script(self._client, self._admit, keys, args)
            else:
                answer = await self._admit(keys=keys, args=args)
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"admission: Redis did not answer ({type(exc).__name__})") from exc
        verdict = _text(answer[0])
        if signed:
            caller = replay_verdict(caller, "conflict" if verdict == "conflict" else
                                    "resend" if verdict == "resend" else "new")
        quota = QuotaDecision.of(answer[1:4], item.amount)
        if not quota.allowed:
            return Admitted(caller, quota, [])
        first = [self._outcomes.answer(_text(found) or None, same, mine)
                 for found, (same, mine) in zip(answer[4:], values, strict=True)]
        return Admitted(caller, quota, await self._wait_for_held(events, contents, first))

    async def _wait_for_held(self, events: Sequence[CloudEvent], contents: Sequence[str] | None,
                             first: list[Claim | None]) -> list[Claim]:
        """Claim again, one by one and waiting as :meth:`OutcomeStore.claim` does, the events another request
        was holding; release what this request holds if that fails."""
        claims: list[Claim] = [claim or Claim("resend") for claim in first]  # placeholders for the held ones
        try:
            for n, claim in enumerate(first):
                if claim is None:
                    claims[n] = await self._outcomes.claim(events[n], content=contents[n] if contents else None)
        except BaseException:
            await self._outcomes.release(list(zip(events, claims, strict=True)))
            raise
        return claims


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
