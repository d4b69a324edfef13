"""What the hub keeps in Redis besides the patterns' own stores: dead-letter reasons, short locks per
entity, and the clients themselves (the idempotency claims live with their middleware, in
:mod:`hub.idempotency`).

Every family has a Protocol and a Redis implementation; the embedded mode runs the same Redis
implementation on an in-process Redis (fakeredis), so the Lua scripts are the one code path.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import dramatiq.errors
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from hub import errors
from hub.connectivity import ServerLink
from hub.endpoints import SentinelAddress, is_sentinel
from hub.errors import StoreUnavailable

T = TypeVar("T")


def guarded(call: Callable[[], T]) -> T:
    """Run a Redis call, turning any connection or server failure into :class:`StoreUnavailable`."""
    try:
        return call()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None


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


class ReportingRedis(redis.Redis):
    """A Redis client that tells the process's link to Redis of each failure to reach it and of the next
    answer, so an outage is logged once (:mod:`hub.connectivity`) rather than by every caller."""

    def __init__(self, *, connection_pool: redis.ConnectionPool, link: ServerLink) -> None:
        super().__init__(connection_pool=connection_pool)
        self.auto_close_connection_pool = True  # as ``Redis.from_url``: closing the client closes its pool
        self.link = link

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command (scripts included), reporting to the link."""
        try:
            result = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # AuthenticationError is a ConnectionError
            self.link.lost(exc)
            raise
        self.link.succeeded()
        return result


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """Connections to the primary the sentinels name, asked again on every new connection (so a client follows
    a failover); closing the pool closes its connections to the sentinels too."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections, and the sentinels'."""
        super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            sentinel.connection_pool.disconnect()


class _AsyncSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """:class:`_SentinelPool` for the asyncio client."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections, and the sentinels'."""
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.connection_pool.disconnect()


def _pool(url: str, **options: Any) -> redis.ConnectionPool:
    """A pool of connections to the server ``url`` names, or (``redis+sentinel://``) to the primary of the moment."""
    if not is_sentinel(url):
        return redis.ConnectionPool.from_url(url, **options)
    address = SentinelAddress.parse(url)
    sentinels = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels), sentinel_kwargs={k: v for k, v in options.items() if k.startswith("socket_")})
    return _SentinelPool(address.service, sentinels, db=address.db,  # type: ignore[no-untyped-call]
                         username=address.username, password=address.password, **options)


def redis_client(url: str, *, timeout_s: float) -> redis.Redis:
    """A plain client for ``url`` (a server, or the primary the sentinels name) waiting at most ``timeout_s``
    per connection and per reply: for probes and commands."""
    return redis.Redis.from_pool(_pool(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s))


def connect_redis(url: str, *, embedded: bool, server: Any = None, link: ServerLink | None = None) -> redis.Redis:
    """A Redis client for ``url`` (``redis+sentinel://``: the primary the sentinels name, followed through a
    failover), or an in-process Redis (fakeredis ``server``) in embedded mode. ``link``: the process's link to
    Redis, told of every failure and recovery (a server process's)."""
    if embedded:
        import fakeredis

        client: redis.Redis = fakeredis.FakeRedis(server=server or fakeredis.FakeServer())
        return client
    pool = _pool(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
    if link is None:
        return redis.Redis.from_pool(pool)
    return ReportingRedis(connection_pool=pool, link=link)


def connect_async_redis(url: str, *, embedded: bool, server: Any = None, timeout_s: float = 2.0) -> redis.asyncio.Redis:
    """The asyncio client for the ingress: one attempt per call, so an outage answers 503 at once
    (``redis+sentinel://``: the primary the sentinels name, followed through a failover)."""
    if embedded:
        import fakeredis

        fake: redis.asyncio.Redis = fakeredis.FakeAsyncRedis(server=server or fakeredis.FakeServer())
        return fake
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                               "retry": Retry(NoBackoff(), 1)}
    if not is_sentinel(url):
        return redis.asyncio.Redis.from_url(url, **options)
    address = SentinelAddress.parse(url)
    sentinels = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels), sentinel_kwargs={k: v for k, v in options.items() if k.startswith("socket_")})
    pool = _AsyncSentinelPool(address.service, sentinels, db=address.db,  # type: ignore[no-untyped-call]
                              username=address.username, password=address.password, **options)
    return redis.asyncio.Redis.from_pool(pool)


_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: Push a lease's expiry out, only for the token holding it.
_LOCK_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
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
        self._tokens = itertools.count(1)

    def acquire(self, name: str, *, ttl_ms: int) -> str | None:
        """See :meth:`Locks.acquire` (every token is new, as Redis's are, so a stale one frees nothing)."""
        if name in self.held:
            return None
        self.held[name] = token = f"token-{next(self._tokens)}"
        return token

    def release(self, name: str, token: str) -> None:
        """See :meth:`Locks.release`."""
        if self.held.get(name) == token:
            del self.held[name]

    def ttl_ms(self, name: str) -> int:
        """See :meth:`Locks.ttl_ms`."""
        return 1_000 if name in self.held else 0

    def extend(self, name: str, token: str, *, ttl_ms: int) -> bool:
        """See :meth:`RedisLocks.extend`."""
        return self.held.get(name) == token


class RedisLocks:
    """:class:`Locks` in Redis: ``SET NX PX`` to take, a compare-and-delete script to give back."""

    def __init__(self, client: redis.Redis, *, prefix: str = "hub") -> None:
        self._client = client
        self._prefix = prefix
        self._release = client.register_script(_LOCK_RELEASE)
        self._extend = client.register_script(_LOCK_EXTEND)

    def acquire(self, name: str, *, ttl_ms: int) -> str | None:
        """A token when the lease on ``name`` was free, else None."""
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

    def extend(self, name: str, token: str, *, ttl_ms: int) -> bool:
        """Give the lease ``ttl_ms`` more from now if this token still holds it (a long job's heartbeat)."""
        return bool(guarded(lambda: self._extend(keys=[f"{self._prefix}:lock:{name}"], args=[token, ttl_ms])))


class EntityLocked(errors.EntityLocked, dramatiq.errors.Retry):
    """:class:`hub.errors.EntityLocked` (by that name) as a Dramatiq ``Retry`` too, so the worker does not
    log an expected wait as an error with its traceback; ``hub.errors`` itself stays free of Dramatiq (pure
    decision modules import it)."""


@contextmanager
def holding(locks: Locks, name: str, *, ttl_ms: int, busy: str) -> Iterator[str]:
    """Hold the lock on ``name`` (for at most ``ttl_ms``) while the block runs; yields its token.

    A lock another worker holds raises :class:`hub.errors.EntityLocked` saying ``busy`` and how long the
    lock still lives, so the retry waits for the lock rather than spending the message's attempts on it.
    """
    token = locks.acquire(name, ttl_ms=ttl_ms)
    if token is None:
        raise EntityLocked(busy, lock=name, remaining_ms=locks.ttl_ms(name), ttl_ms=ttl_ms)
    try:
        yield token
    finally:
        locks.release(name, token)
