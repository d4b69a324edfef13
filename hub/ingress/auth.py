"""Who is calling: API keys and Standard Webhooks signatures, with replay protection in Redis.

Two schemes, chosen by the headers present (never both in one request):

* ``Authorization: Bearer <key>``: the key's SHA-256 is looked up among the sources' API keys.
* ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (https://www.standardwebhooks.com):
  HMAC-SHA256 of ``{id}.{timestamp}.{body}`` with any of the source's secrets (rotation); the
  header may carry several ``v1,<base64>`` signatures. The timestamp must lie within five minutes
  of this host's clock; the id must not come back with a different body (:class:`ReplayGuard`). The
  reference ``standardwebhooks`` library verifies the signatures and the timestamp.

Finding the source of a signed webhook: with a ``source_hint`` (a path segment such as
``/webhooks/{source_id}``, or the ``webhook-source`` header) only that source's secrets are tried;
without one every source's secrets are, each costing one HMAC pass over the body (measured on a
2-core machine: about 4 µs per secret for 1 KiB, 0.65 ms per secret for 1 MiB, on the event loop), so a
deployment with many sources or large bodies should route webhooks with a hint.

Failure messages say what kind of check failed, never which secret was tried nor what was expected.

:func:`verify` checks the credentials alone (no Redis); :func:`authenticate` adds the replay check. The
event routes use :func:`verify` and fold the replay check into their one admission script
(:mod:`hub.ingress.admission`), which uses the same keys as :class:`RedisReplayGuard`.

Once known, a caller is held to its source's ``quota`` (``"100/minute"``) by :class:`QuotaGate`: one
moving window per source in Redis, so N ingress processes together admit at most the quota, not N times
it. The moving window is exact (no burst at window edges) and keeps one timestamp per admitted event, up
to the quota's amount, in one Redis list per source: the key layout and algorithm of the ``limits``
library's moving window (``{prefix}:quota:LIMITER/{source}/{amount}/{multiples}/{unit}``, newest first),
in the hub's own Lua (:data:`MOVING_WINDOW_LUA`) so the admission script can run it in the same round trip.
The window's clock is Redis's (``TIME`` inside the script): one clock for every ingress process.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hub.errors import AuthenticationFailed, StoreUnavailable
from hub.ingress.sources import SourceConfig, SourceRegistry
from observability.logging import get_logger

__all__ = [
    "MOVING_WINDOW_LUA", "REPLAY_TTL_S", "TOLERANCE", "AuthenticatedSource", "QuotaDecision", "QuotaGate",
    "RedisReplayGuard", "ReplayGuard", "ReplayVerdict", "authenticate", "check_replay", "replay_verdict",
    "verify",
]

log = get_logger(__name__)

#: How far a webhook timestamp may lie from this host's clock, either way (the Standard Webhooks library's).
TOLERANCE = timedelta(minutes=5)
#: How long a webhook id is remembered: longer than the whole window a timestamp can be accepted in.
REPLAY_TTL_S = 600
#: At most this many signatures in one ``webhook-signature`` header (several only while rotating).
MAX_SIGNATURES = 8

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v1,[A-Za-z0-9+/]{4,512}={0,2}")
_WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

ReplayVerdict = Literal["new", "resend", "conflict"]


@dataclass(frozen=True)
class AuthenticatedSource:
    """A caller whose credentials verified."""

    source: SourceConfig
    scheme: Literal["api_key", "standard_webhooks"]
    #: The ``webhook-id`` of a signed webhook.
    webhook_id: str | None = None
    #: True when this webhook id and body passed authentication before: the sender is retrying. Only
    #: informational: that attempt may have been refused afterwards (quota), so never skip on it alone.
    resend: bool = False
    #: The SHA-256 (hex) of a signed webhook's body: what its replay check compares.
    body_sha256: str | None = None

    @property
    def id(self) -> str:
        """The source id."""
        return self.source.id


class ReplayGuard(Protocol):
    """Remembers each (source, webhook id) with the SHA-256 of its body."""

    async def check(self, source_id: str, webhook_id: str, body_sha256: str) -> ReplayVerdict:
        """``new`` the first time, ``resend`` for the same body again, ``conflict`` for another body.

        Raises ``StoreUnavailable`` when the store cannot answer: the check is never skipped.
        """
        ...


class RedisReplayGuard:
    """:class:`ReplayGuard` on Redis: one atomic ``SET key digest NX GET EX ttl`` per webhook.

    Takes a ``redis.asyncio.Redis`` (the embedded mode passes ``fakeredis.FakeAsyncRedis``); the
    caller owns the client and closes it.
    """

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "hub", ttl_s: int = REPLAY_TTL_S) -> None:
        self._client = client
        self._prefix = f"{key_prefix}:ingress:webhook-id"
        self.ttl_s = ttl_s

    def key(self, source_id: str, webhook_id: str) -> str:
        """The Redis key remembering one webhook id of one source."""
        # Hashing the id bounds the key length whatever the sender put in the header.
        return f"{self._prefix}:{source_id}:{hashlib.sha256(webhook_id.encode()).hexdigest()}"

    async def check(self, source_id: str, webhook_id: str, body_sha256: str) -> ReplayVerdict:
        """See :meth:`ReplayGuard.check`."""
        key = self.key(source_id, webhook_id)
        try:
            # NX with GET (Redis 7): sets when absent and returns the previous value, in one step.
            previous = await self._client.set(key, body_sha256, nx=True, get=True, ex=self.ttl_s)
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"replay guard: Redis did not answer ({type(exc).__name__})") from exc
        if previous is None:
            return "new"
        if isinstance(previous, bytes):
            previous = previous.decode()
        return "resend" if hmac.compare_digest(str(previous), body_sha256) else "conflict"


def _authenticate_api_key(authorization: str, sources: SourceRegistry) -> AuthenticatedSource:
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed("unsupported Authorization scheme: use Bearer")
    source = sources.by_api_key(key.strip())
    if source is None:
        raise AuthenticationFailed("unknown API key")
    return AuthenticatedSource(source=source, scheme="api_key")


def _candidates(sources: SourceRegistry, hint: str | None) -> list[SourceConfig]:
    if hint is None:
        return [s for s in sources if s.webhook_keys]
    source = sources.get(hint)
    return [source] if source is not None else []


def _verify_signature(headers: Mapping[str, str], body: bytes, *, sources: SourceRegistry,
                      hint: str | None) -> SourceConfig:
    """The source one of whose secrets signed the request, verified by the reference ``standardwebhooks``
    library (HMAC-SHA256 of ``{id}.{timestamp}.{body}``, several ``v1,`` signatures, five minutes of
    tolerance against this host's clock). The headers are checked first: the library does not expect
    hostile input (a signature without a comma, or invalid base64, would raise something else)."""
    msg_id, timestamp, signature = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    if not msg_id or len(msg_id) > 256:
        raise AuthenticationFailed("invalid webhook-id")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthenticationFailed("invalid webhook-timestamp: expected integer Unix seconds")
    listed = signature.split()
    if len(listed) > MAX_SIGNATURES:
        raise AuthenticationFailed(f"too many signatures in webhook-signature (at most {MAX_SIGNATURES})")
    # Entries of other versions or shapes are skipped (another entry may match), as the spec says.
    entries = [entry for entry in listed if _SIGNATURE.fullmatch(entry)]
    if not entries:
        raise AuthenticationFailed("signature does not verify")
    presented = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": " ".join(entries)}
    stale = False
    for source in _candidates(sources, hint):
        for key in source.webhook_keys:
            try:
                Webhook(key).verify(body, presented, json_parse=False)
            except WebhookVerificationError as exc:
                stale = stale or "timestamp" in str(exc)
                continue
            except ValueError:  # a body that is not UTF-8 (the library decodes it): not signed JSON
                raise AuthenticationFailed("signature does not verify") from None
            return source
    if stale:
        raise AuthenticationFailed("timestamp outside the 5 minute tolerance")
    raise AuthenticationFailed("signature does not verify")


def verify(headers: Mapping[str, str], body: bytes, *, sources: SourceRegistry,
           source_hint: str | None = None) -> AuthenticatedSource:
    """Identify the caller from its headers (any case) and the raw body, or raise ``AuthenticationFailed``;
    a signed webhook's replay check is left to the caller (its ``body_sha256`` is set).

    ``source_hint`` (or a ``webhook-source`` header) restricts a signed webhook to one source's secrets.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook = [name for name in _WEBHOOK_HEADERS if lowered.get(name)]
    authorization = lowered.get("authorization", "").strip()
    if webhook and authorization:
        raise AuthenticationFailed("send either an Authorization header or webhook signature headers, not both")
    if authorization:
        return _authenticate_api_key(authorization, sources)
    if not webhook:
        raise AuthenticationFailed("missing credentials")
    if len(webhook) < len(_WEBHOOK_HEADERS):
        raise AuthenticationFailed("incomplete signature headers: need " + ", ".join(_WEBHOOK_HEADERS))
    header_hint = lowered.get("webhook-source") or None
    if source_hint is not None and header_hint is not None and header_hint != source_hint:
        raise AuthenticationFailed("webhook-source does not match the addressed source")
    source = _verify_signature(lowered, body, sources=sources, hint=source_hint or header_hint)
    return AuthenticatedSource(source=source, scheme="standard_webhooks", webhook_id=lowered["webhook-id"],
                               body_sha256=hashlib.sha256(body).hexdigest())


def replay_verdict(caller: AuthenticatedSource, verdict: ReplayVerdict) -> AuthenticatedSource:
    """``caller`` once its replay check answered ``verdict``: ``AuthenticationFailed`` for a conflict."""
    if verdict == "conflict":
        log.warning("webhook id replayed with a different body", source_id=caller.id)
        raise AuthenticationFailed("webhook-id already used with a different body")
    return AuthenticatedSource(source=caller.source, scheme=caller.scheme, webhook_id=caller.webhook_id,
                               resend=verdict == "resend", body_sha256=caller.body_sha256)


async def check_replay(caller: AuthenticatedSource, replay_guard: ReplayGuard) -> AuthenticatedSource:
    """Ask ``replay_guard`` about a signed webhook (an API key caller is returned as it is)."""
    if caller.webhook_id is None or caller.body_sha256 is None:
        return caller
    return replay_verdict(caller, await replay_guard.check(caller.id, caller.webhook_id, caller.body_sha256))


async def authenticate(
    headers: Mapping[str, str],
    body: bytes,
    *,
    sources: SourceRegistry,
    replay_guard: ReplayGuard,
    source_hint: str | None = None,
) -> AuthenticatedSource:
    """:func:`verify`, then the replay check of a signed webhook (``AuthenticationFailed`` when its id came
    with another body). Raises ``StoreUnavailable`` when the replay guard cannot answer.
    """
    return await check_replay(verify(headers, body, sources=sources, source_hint=source_hint), replay_guard)


# -- quotas

#: The moving window in Lua, for scripts that include it: ``moving_window(key, amount, window_s, cost)``
#: answers ``{allowed (1/0), remaining, retry_after_ms}`` and, when allowed, records ``cost`` timestamps.
#: The key holds the admitted events' timestamps, newest first, at most ``amount`` of them (``limits``'
#: layout); an event may pass when the entry ``amount - cost`` places back is older than the window. The
#: clock is Redis's ``TIME`` (scripts are replicated by their effects on Redis 5 and later).
MOVING_WINDOW_LUA = """
local function window_count(key, start)
  -- entries within the window: the list is newest first, so binary-search the last one at or after start
  local low, high, found = 0, redis.call('LLEN', key) - 1, -1
  while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('LINDEX', key, mid))
    if value and value >= start then found = mid; low = mid + 1 else high = mid - 1 end
  end
  return found + 1
end

local function moving_window(key, amount, window, cost)
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local start = now - window
  if cost > amount then
    return {0, amount - window_count(key, start), window * 1000}
  end
  local blocking = redis.call('LINDEX', key, amount - cost)
  if blocking and tonumber(blocking) >= start then
    return {0, amount - window_count(key, start), math.ceil((tonumber(blocking) - start) * 1000)}
  end
  local stamps, stamp = {}, string.format('%.6f', now)
  for i = 1, cost do stamps[i] = stamp end
  redis.call('LPUSH', key, unpack(stamps))
  redis.call('LTRIM', key, 0, amount - 1)
  redis.call('EXPIRE', key, window)
  return {1, amount - window_count(key, start), 0}
end
"""

# KEYS[1] the source's window; ARGV[1] the quota's amount, ARGV[2] its window in seconds, ARGV[3] the cost.
_HIT = MOVING_WINDOW_LUA + """
return moving_window(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""


@dataclass(frozen=True)
class QuotaDecision:
    """Whether a request fits its source's quota, with what the app puts in ``Retry-After`` and ``RateLimit``."""

    allowed: bool
    #: Seconds until the request would fit (0 when allowed): for a batch, until ``cost`` slots are free.
    retry_after_s: int
    #: Events still admitted in the current window after this request.
    remaining: int
    #: The quota's amount per window.
    limit: int

    @classmethod
    def of(cls, answer: Sequence[int], limit: int) -> QuotaDecision:
        """The decision :data:`MOVING_WINDOW_LUA` answered (``allowed, remaining, retry_after_ms``)."""
        allowed, remaining, retry_after_ms = (int(value) for value in answer)
        return cls(allowed=bool(allowed), retry_after_s=0 if allowed else max(1, math.ceil(retry_after_ms / 1000)),
                   remaining=max(0, remaining), limit=limit)


class QuotaGate:
    """Admits or refuses requests against per-source quotas kept in Redis: one script call per request.

    Takes a ``redis.asyncio.Redis`` (the embedded mode can pass ``fakeredis.FakeAsyncRedis``);
    :meth:`from_url` builds and owns one instead.
    """

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "hub") -> None:
        self._client = client
        self._prefix = f"{key_prefix}:quota"
        self._hit = client.register_script(_HIT)
        self._owned = False

    @classmethod
    def from_url(cls, redis_url: str, *, key_prefix: str = "hub", timeout_s: float = 2.0) -> QuotaGate:
        """A gate on its own client for ``redis_url`` (``redis://``); close it with :meth:`aclose`."""
        # One quick retry, not redis-py's default three with backoff (~4 s): an outage answers 503 fast.
        client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              retry=Retry(NoBackoff(), 1))
        gate = cls(client, key_prefix=key_prefix)
        gate._owned = True
        return gate

    async def aclose(self) -> None:
        """Close the Redis client if this gate created it."""
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> QuotaGate:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def key(self, source: AuthenticatedSource) -> str:
        """The Redis list holding the source's window (the ``limits`` library's key for the same quota)."""
        return f"{self._prefix}:{source.source.rate_limit.key_for(source.id)}"

    async def hit(self, source: AuthenticatedSource, cost: int = 1) -> QuotaDecision:
        """Count ``cost`` events (one per event of a batch) against the source's quota, all or none.

        A ``cost`` above the quota's amount can never pass: refused with a whole window to wait; the
        app should refuse such batches as too large before asking. Raises ``StoreUnavailable`` when
        Redis does not answer.
        """
        if cost < 1:
            raise ValueError("cost must be at least 1")
        item = source.source.rate_limit
        try:
            answer = await self._hit(keys=[self.key(source)], args=[item.amount, item.get_expiry(), cost])
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"quota: Redis did not answer ({type(exc).__name__})") from exc
        return QuotaDecision.of(answer, item.amount)
