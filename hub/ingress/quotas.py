"""Per-source quotas shared by every ingress process, on ``limits`` with a Redis moving window.

Each source's ``quota`` (``"100/minute"``) is one moving window in Redis, so N ingress processes
together admit at most the quota, not N times it. The moving window is exact (no burst at window
edges) and keeps one timestamp per admitted event, up to the quota's amount, in one Redis list per
source. Window arithmetic uses each process's clock: keep the ingress hosts NTP-synchronised.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from hub.errors import StoreUnavailable
from hub.ingress.auth import AuthenticatedSource

__all__ = ["QuotaDecision", "QuotaGate"]


@dataclass(frozen=True)
class QuotaDecision:
    """Whether a request fits its source's quota, with what the app puts in ``Retry-After`` and ``RateLimit``."""

    allowed: bool
    #: Seconds until a slot frees (0 when allowed). For ``cost`` > 1 a lower bound: the first slot.
    retry_after_s: int
    #: Events still admitted in the current window after this request.
    remaining: int
    #: The quota's amount per window.
    limit: int


class QuotaGate:
    """Admits or refuses requests against per-source quotas kept in Redis.

    Takes a ``redis.asyncio.Redis`` whose connection pool ``limits`` shares (the embedded mode can
    pass ``fakeredis.FakeAsyncRedis``); :meth:`from_url` builds and owns one instead.
    """

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "hub") -> None:
        # limits builds its own client on the given pool; the uri is then parsed for nothing else.
        options: dict[str, Any] = {"connection_pool": client.connection_pool}
        storage = RedisStorage("async+redis://", implementation="redispy", key_prefix=f"{key_prefix}:quota",
                               **options)
        self._limiter = MovingWindowRateLimiter(storage)
        self._client = client
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
            allowed = await self._limiter.hit(item, source.id, cost=cost)
            stats = await self._limiter.get_window_stats(item, source.id)
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"quota: Redis did not answer ({type(exc).__name__})") from exc
        remaining = max(0, stats.remaining)
        if allowed:
            return QuotaDecision(allowed=True, retry_after_s=0, remaining=remaining, limit=item.amount)
        wait = item.get_expiry() if cost > item.amount else max(1, math.ceil(stats.reset_time - time.time()))
        return QuotaDecision(allowed=False, retry_after_s=wait, remaining=remaining, limit=item.amount)
