"""Per-source quotas on the real Redis: one limit shared by every ingress process."""

from __future__ import annotations

import asyncio

import pytest
import redis

from hub.errors import StoreUnavailable
from hub.ingress.auth import AuthenticatedSource, QuotaDecision, QuotaGate
from hub.ingress.sources import SourceConfig


def caller(source_id: str = "erp-acme", quota: str = "5/minute") -> AuthenticatedSource:
    config = SourceConfig.model_validate({
        "id": source_id, "description": source_id, "sources": ["/erp"], "event_types": ["com.acme.*"],
        "credentials": [{"scheme": "api_key", "sha256": "ab" * 32}], "quota": quota,
    })
    return AuthenticatedSource(source=config, scheme="api_key")


def test_two_ingress_processes_share_one_quota(prefix: str) -> None:
    source = caller()

    async def run() -> list[QuotaDecision]:
        async with QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix) as first, \
                QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix) as second:
            gates = [first, second, first, second, first, second, first]
            return [await gate.hit(source) for gate in gates]

    decisions = asyncio.run(run())
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert decisions[0] == QuotaDecision(allowed=True, retry_after_s=0, remaining=4, limit=5)
    refused = decisions[5]
    assert refused.limit == 5 and refused.remaining == 0
    assert 0 < refused.retry_after_s <= 60
    with redis.Redis() as client:
        assert len(list(client.scan_iter(f"{prefix}:quota:*"))) == 1  # one window in Redis, not one per process


def test_each_source_has_its_own_quota(prefix: str) -> None:
    async def run() -> list[bool]:
        async with QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix) as gate:
            return [(await gate.hit(caller("erp-acme", "1/minute"))).allowed,
                    (await gate.hit(caller("docs", "1/minute"))).allowed,
                    (await gate.hit(caller("erp-acme", "1/minute"))).allowed]

    assert asyncio.run(run()) == [True, True, False]


def test_a_batch_counts_each_event_all_or_none(prefix: str) -> None:
    source = caller(quota="10/minute")

    async def run() -> list[QuotaDecision]:
        async with QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix) as gate:
            return [await gate.hit(source, cost=7), await gate.hit(source, cost=4), await gate.hit(source, cost=3)]

    batch, too_many, rest = asyncio.run(run())
    assert (batch.allowed, batch.remaining) == (True, 3)
    assert (too_many.allowed, too_many.remaining) == (False, 3)  # refused whole: nothing counted
    assert (rest.allowed, rest.remaining) == (True, 0)


def test_a_batch_larger_than_the_quota_is_refused_with_a_whole_window_to_wait(prefix: str) -> None:
    async def run() -> QuotaDecision:
        async with QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix) as gate:
            return await gate.hit(caller(quota="5/minute"), cost=6)

    decision = asyncio.run(run())
    assert (decision.allowed, decision.retry_after_s, decision.remaining) == (False, 60, 5)


def test_a_gate_on_a_client_the_app_owns_shares_the_same_window(prefix: str) -> None:
    import redis.asyncio

    source = caller(quota="2/minute")

    async def run() -> list[bool]:
        client = redis.asyncio.Redis()
        try:
            async with QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix) as owned:
                shared = QuotaGate(client, key_prefix=prefix)
                results = [(await owned.hit(source)).allowed, (await shared.hit(source)).allowed,
                           (await shared.hit(source)).allowed]
                await shared.aclose()  # leaves the app's client open
                await client.ping()
                return results
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [True, True, False]


def test_redis_down_makes_the_quota_unavailable() -> None:
    async def run() -> QuotaDecision:
        async with QuotaGate.from_url("redis://127.0.0.1:1/0", key_prefix="unreachable") as gate:
            return await gate.hit(caller())

    with pytest.raises(StoreUnavailable):
        asyncio.run(run())


def test_a_cost_below_one_is_a_programming_error() -> None:
    async def run() -> QuotaDecision:
        async with QuotaGate.from_url("redis://127.0.0.1:6379/0", key_prefix="unused") as gate:
            return await gate.hit(caller(), cost=0)

    with pytest.raises(ValueError, match="cost must be at least 1"):
        asyncio.run(run())
