"""State the hub keeps in Redis: idempotency claims (two-phase, fenced) and dead-letter reasons.

Every family has a Protocol and a Redis implementation; the embedded mode runs the same Redis
implementation on an in-process Redis (fakeredis), so the Lua scripts are the one code path.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from hub.errors import StoreUnavailable

T = TypeVar("T")


class ClaimState(enum.Enum):
    """Outcome of trying to claim a message for processing."""

    CLAIMED = "claimed"  # this worker holds the lease; run the actor
    DONE = "done"  # an earlier delivery completed: skip as duplicate
    HELD = "held"  # another worker holds a live lease: retry later


@dataclass(frozen=True)
class Claim:
    """The answer of :meth:`IdempotencyStore.claim`."""

    state: ClaimState
    token: int = 0  # fencing token of the lease (CLAIMED), or of the holder (HELD)
    ttl_ms: int = 0  # remaining lease time (HELD)


class IdempotencyStore(Protocol):
    """Two-phase idempotency claims: an in-progress lease with a fencing token, then ``done``."""

    def claim(self, key: str, *, lease_ms: int) -> Claim:
        """Take the lease on ``key`` unless it is done or leased elsewhere."""
        ...

    def complete(self, key: str, token: int, *, done_ttl_s: int) -> bool:
        """Mark ``key`` done if this token still holds the lease (or nobody does); False when fenced off."""
        ...

    def release(self, key: str, token: int) -> bool:
        """Drop the lease if this token still holds it, so a retry can claim at once."""
        ...

    def renew(self, key: str, token: int, *, lease_ms: int) -> bool:
        """Extend a lease still held by this token."""
        ...


# KEYS[1] claim key, KEYS[2] fencing counter; ARGV[1] lease ms.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 5) == 'done:' then return {'done', tonumber(string.sub(v, 6)), 0} end
  return {'held', tonumber(string.sub(v, 7)), redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], 'lease:' .. token, 'PX', ARGV[1])
return {'claimed', token, tonumber(ARGV[1])}
"""
# KEYS[1] claim key; ARGV[1] token, ARGV[2] done ttl s.
_COMPLETE = """
local v = redis.call('GET', KEYS[1])
if v == false or v == 'lease:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'EX', ARGV[2])
  return 1
end
if v == 'done:' .. ARGV[1] then return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def guarded(call: Callable[[], T]) -> T:
    """Run a Redis call, turning any connection or server failure into :class:`StoreUnavailable`."""
    try:
        return call()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None


class RedisIdempotencyStore:
    """:class:`IdempotencyStore` on Redis, each step one atomic Lua script."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub") -> None:
        self._client = client
        self._fence = f"{prefix}:idem:fence"
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def claim(self, key: str, *, lease_ms: int) -> Claim:
        """Take the lease on ``key`` unless it is done or leased elsewhere."""
        state, token, ttl = guarded(lambda: self._claim(keys=[key, self._fence], args=[lease_ms]))
        name = state.decode() if isinstance(state, bytes) else str(state)
        return Claim(ClaimState(name), int(token or 0), max(int(ttl or 0), 0))

    def complete(self, key: str, token: int, *, done_ttl_s: int) -> bool:
        """Mark ``key`` done if this token still holds the lease (or nobody does)."""
        return bool(guarded(lambda: self._complete(keys=[key], args=[token, done_ttl_s])))

    def release(self, key: str, token: int) -> bool:
        """Drop the lease if this token still holds it."""
        return bool(guarded(lambda: self._release(keys=[key], args=[token])))

    def renew(self, key: str, token: int, *, lease_ms: int) -> bool:
        """Extend a lease still held by this token."""
        return bool(guarded(lambda: self._renew(keys=[key], args=[token, lease_ms])))


class DeadLetterReasons:
    """Why a message was dead-lettered, kept (without expiry) until the dead letter is handled."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub") -> None:
        self._client = client
        self._key = f"{prefix}:dlq:reasons"

    def record(self, message_id: str, reason: dict[str, Any]) -> None:
        """Remember the reason of one dead letter."""
        guarded(lambda: self._client.hset(self._key, message_id, json.dumps(reason)))

    def get(self, message_id: str) -> dict[str, Any] | None:
        """The recorded reason, or None."""
        raw: Any = guarded(lambda: self._client.hget(self._key, message_id))
        return None if raw is None else dict(json.loads(raw))

    def forget(self, message_id: str) -> None:
        """Drop the reason once the dead letter is handled."""
        guarded(lambda: self._client.hdel(self._key, message_id))


def connect_redis(url: str, *, embedded: bool, server: Any = None) -> redis.Redis:
    """A Redis client for ``url``, or an in-process Redis (fakeredis ``server``) in embedded mode."""
    if embedded:
        import fakeredis

        client: redis.Redis = fakeredis.FakeRedis(server=server or fakeredis.FakeServer())
        return client
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)


def connect_async_redis(url: str, *, embedded: bool, server: Any = None) -> redis.asyncio.Redis:
    """The asyncio client for the ingress: one attempt per call, so an outage answers 503 at once."""
    if embedded:
        import fakeredis

        fake: redis.asyncio.Redis = fakeredis.FakeAsyncRedis(server=server or fakeredis.FakeServer())
        return fake
    return redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                        retry=Retry(NoBackoff(), 1))


_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Locks(Protocol):
    """Short leases that serialise work on one entity across workers (e.g. one project's workspace)."""

    def acquire(self, name: str, *, ttl_ms: int) -> str | None:
        """A token when the lease on ``name`` was free, else None."""
        ...

    def release(self, name: str, token: str) -> None:
        """Give the lease back if this token still holds it."""
        ...

    def ttl_ms(self, name: str) -> int:
        """Milliseconds left on the lease (0 when free)."""
        ...


class MemoryLocks:
    """:class:`Locks` in a dict, for unit tests of actors (leases never expire here)."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}

    def acquire(self, name: str, *, ttl_ms: int) -> str | None:
        """See :meth:`Locks.acquire`."""
        if name in self.held:
            return None
        self.held[name] = token = f"token-{len(self.held) + 1}"
        return token

    def release(self, name: str, token: str) -> None:
        """See :meth:`Locks.release`."""
        if self.held.get(name) == token:
            del self.held[name]

    def ttl_ms(self, name: str) -> int:
        """See :meth:`Locks.ttl_ms`."""
        return 1_000 if name in self.held else 0


class RedisLocks:
    """:class:`Locks` in Redis: ``SET NX PX`` to take, a compare-and-delete script to give back."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub") -> None:
        self._client = client
        self._prefix = prefix
        self._release = client.register_script(_LOCK_RELEASE)

    def acquire(self, name: str, *, ttl_ms: int) -> str | None:
        """A token when the lease on ``name`` was free, else None."""
        import uuid

        token = uuid.uuid4().hex
        taken = guarded(lambda: self._client.set(f"{self._prefix}:lock:{name}", token, nx=True, px=ttl_ms))
        return token if taken else None

    def release(self, name: str, token: str) -> None:
        """Give the lease back if this token still holds it."""
        guarded(lambda: self._release(keys=[f"{self._prefix}:lock:{name}"], args=[token]))

    def ttl_ms(self, name: str) -> int:
        """Milliseconds left on the lease (0 when free)."""
        left: Any = guarded(lambda: self._client.pttl(f"{self._prefix}:lock:{name}"))
        return max(int(left), 0)
