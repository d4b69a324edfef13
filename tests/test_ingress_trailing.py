"""With trailing writes (what ``hub serve`` runs) a request is one Redis round trip under load: its settle and its
publishes' flight-record hops go first in the next request's admission pipeline, alone once no request comes, and at
shutdown; on the real Redis (fakeredis where Redis must forget its scripts)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from hub.batching import HeldWrites, TrailingWrites
from hub.ingress.admission import Admission
from hub.ingress.auth import QuotaGate, RedisReplayGuard
from hub.ingress.outcomes import OutcomeStore
from tests.test_ingress_admission import batch, counting_ingress, event
from tests.test_ingress_app import bearer, sdk_event, structured
from tests.test_ingress_quotas import caller

pytestmark = pytest.mark.integration


def test_with_trailing_writes_a_request_is_one_round_trip_carrying_the_settles_of_those_before_it(
        prefix: str, tmp_path: Path) -> None:
    with counting_ingress(prefix, tmp_path, trailing=True) as (log, creds, post, ingress, loop):
        headers, body = structured(sdk_event("evt-warm-up"))
        assert post(body, {**headers, **bearer(creds)}).status_code == 202  # loads the admission script
        headers, body = structured(sdk_event("evt-loads-settle"))
        assert post(body, {**headers, **bearer(creds)}).status_code == 202  # the first settle: loads its script
        log.clear()

        headers, first = structured(sdk_event("evt-first"))
        answer = post(first, {**headers, **bearer(creds)})
        assert answer.status_code == 202, answer.text
        assert log == ["EVALSHA EVALSHA", "publish"]  # the previous request's settle, then this admission
        log.clear()
        headers, body = batch(*(f"evt-batch-{n}" for n in range(10)))
        assert post(body, {**headers, **bearer(creds)}).status_code == 202
        assert log == ["EVALSHA EVALSHA"] + ["publish"] * 10
        log.clear()
        # A re-send of the event whose settle is still held: the settle goes first, so it is a re-send.
        answer = post(first, {**headers, **bearer(creds)} | {"content-type": "application/cloudevents+json"})
        assert answer.status_code == 202 and answer.json()["accepted"][0]["resent"] is True
        assert log == ["EVALSHA EVALSHA"]
        store = ingress.outcomes
        assert store.trailing is not None and store.trailing.pending == 0  # a re-send settles nothing
        log.clear()
        headers, last = structured(sdk_event("evt-last"))
        assert post(last, {**headers, **bearer(creds)}).status_code == 202
        assert store.trailing.pending == 1
        loop.run_until_complete(store.close())  # what the server's shutdown does: the held settle is sent
        assert log == ["EVALSHA", "publish", "EVALSHA"] and store.trailing.pending == 0
    with counting_ingress(prefix, tmp_path, trailing=True) as (log, creds, post, _, _):
        answer = post(last, {**headers, **bearer(creds)})  # another process: the outcome is in Redis
        assert answer.status_code == 202 and answer.json()["accepted"][0]["resent"] is True


def test_held_writes_go_alone_when_no_request_comes() -> None:
    key = f"t:trailing:{uuid.uuid4().hex}"
    answered: list[Any] = []

    async def scenario() -> None:
        client = redis.asyncio.Redis()
        trailing = TrailingWrites(client, trail_s=0.01)
        held = HeldWrites()
        held.write(lambda pipe: pipe.set(key, "sent", ex=60), answered.append)
        trailing.hold(held)
        assert held.pending == 0 and trailing.pending == 1
        while not answered:  # the signal: the write's answer
            await asyncio.sleep(0.005)
        await trailing.close()
        await client.aclose()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 10))
        assert answered == [True]
        assert redis.Redis().get(key) == b"sent"
    finally:
        redis.Redis().delete(key)


def test_a_held_settle_that_redis_forgot_the_script_of_is_sent_again_alone() -> None:
    """Redis restarted empty between a request and the next (on fakeredis: a script flush on the shared server would
    reach other tests' scripts): both scripts are unknown in the pipeline; the admission runs alone, which loads it,
    and so does the settle, and the first event's outcome is recorded."""
    source = caller(quota="100/minute")

    async def run() -> tuple[str, list[str]]:
        client = fakeredis.FakeAsyncRedis()
        outcomes = OutcomeStore(client, prefix="t", trailing=TrailingWrites(client, trail_s=3600))
        gate = Admission(client, quotas=QuotaGate(client, key_prefix="t"),
                         replay_guard=RedisReplayGuard(client, key_prefix="t"), outcomes=outcomes)
        first = event("e1")
        admitted = await gate.admit(source, [first])
        await outcomes.settle([(first, admitted.claims[0], {"id": "e1", "status": "accepted"})])
        assert outcomes.trailing is not None and outcomes.trailing.pending == 1
        await client.script_flush()
        second = await gate.admit(source, [event("e2")])
        await outcomes.close()
        again = await gate.admit(source, [first])
        return again.claims[0].verdict, [c.verdict for c in second.claims]

    resent, second = asyncio.run(run())
    assert second == ["new"]
    assert resent == "resend"
