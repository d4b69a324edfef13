"""The ingress asks Redis once per request: the admission script (replay guard, quota, every event's claim) before
it publishes, with the settles of the requests finished since (or, without trailing writes, once before and once
after), on the real Redis; and the script's semantics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import redis
import redis.asyncio
from cloudevents.core.formats.json import JSONFormat
from opentelemetry import trace

from connectors.webhooks import adapters
from hub.batching import TrailingWrites
from hub.cli.scenario import acme_engagement
from hub.dispatch import RoutingTable
from hub.errors import AuthenticationFailed, StoreUnavailable
from hub.events import CloudEvent, make_event
from hub.ingress.admission import Admission, Admitted
from hub.ingress.app import Ingress, create_app
from hub.ingress.auth import AuthenticatedSource, QuotaGate, RedisReplayGuard
from hub.ingress.outcomes import OutcomeStore, ResendInFlight
from hub.ingress.publisher import AsyncEventPublisher
from hub.registry import SchemaRegistry
from hub.runtime import Runtime
from observability.flight import AsyncRedisFlightRecord, Writes
from tests.support.ingress import Credentials, load, signed_headers, write_sources
from tests.test_ingress_app import bearer, sdk_event, structured
from tests.test_ingress_quotas import caller

pytestmark = pytest.mark.integration
REGISTRY = SchemaRegistry.load()
SOURCE = "erp-sim://acme-psa/prod"


# -- round trips, counted on the client the app uses


class CountingRedis(redis.asyncio.Redis):
    """A client that notes the name of every command it sends in ``log``, a pipeline's as one entry."""

    log: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.log.append(str(args[0]).upper())
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        log = self.log

        class Counted(redis.asyncio.client.Pipeline):  # type: ignore[type-arg]
            async def execute(self, raise_on_error: bool = True) -> Any:
                log.append(" ".join(str(args[0]).upper() for args, _ in self.command_stack))
                return await super().execute(raise_on_error=raise_on_error)

        return Counted(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class RecordingPublisher:
    """Confirms at once, noting each publish in the same log as the Redis commands."""

    ready = True

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def publish(self, event: CloudEvent, *, root_id: str | None = None,
                      writes: Writes | None = None) -> list[str]:
        self.log.append("publish")
        return ["fanout"]


@contextlib.contextmanager
def counting_ingress(prefix: str, tmp_path: Path, *, trailing: bool = False
                     ) -> Iterator[tuple[list[str], Credentials, Any, Ingress, asyncio.AbstractEventLoop]]:
    """(log, credentials, post, ingress, loop): an in-process ingress on the real Redis whose Redis commands and
    publishes are logged; ``post(body, headers)`` sends one request. With ``trailing``, settles wait for the next
    request's round trip (never alone: no timer fires between two requests of a test)."""
    path, creds = write_sources(tmp_path)
    log: list[str] = []
    client = CountingRedis()
    client.log = log
    outcomes = OutcomeStore(client, prefix=prefix, trailing=TrailingWrites(client, trail_s=3600) if trailing else None)
    ingress = Ingress(registry=REGISTRY, sources=load(path), publisher=RecordingPublisher(log),
                      quotas=QuotaGate(client, key_prefix=prefix),
                      replay_guard=RedisReplayGuard(client, key_prefix=prefix),
                      outcomes=outcomes, redis=client, adapters=adapters(REGISTRY),
                      tracer=trace.NoOpTracer(), key_prefix=prefix)
    app = create_app(ingress)
    loop = asyncio.new_event_loop()  # one loop for every request: the client's connections belong to it

    def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
        async def run() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as http:
                return await http.post("/v1/events", content=body, headers=headers)

        return loop.run_until_complete(run())

    try:
        yield log, creds, post, ingress, loop
    finally:
        loop.run_until_complete(outcomes.close())
        loop.run_until_complete(client.aclose())
        loop.close()


@pytest.fixture
def counted(prefix: str, tmp_path: Path) -> Iterator[tuple[list[str], Credentials, Any]]:
    """(log, credentials, post) of :func:`counting_ingress`, each settle a round trip of its own."""
    with counting_ingress(prefix, tmp_path) as (log, creds, post, _, _):
        yield log, creds, post


def batch(*ids: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps([json.loads(JSONFormat().write(sdk_event(i))) for i in ids]).encode()
    return {"content-type": "application/cloudevents-batch+json"}, body


def test_one_round_trip_before_the_publish_and_one_after(counted: tuple[list[str], Credentials, Any]) -> None:
    log, creds, post = counted
    headers, body = structured(sdk_event("evt-warm-up"))
    assert post(body, {**headers, **bearer(creds)}).status_code == 202  # loads the scripts (SCRIPT LOAD)
    log.clear()

    headers, body = structured(sdk_event("evt-single"))
    answer = post(body, {**headers, **bearer(creds)})
    assert answer.status_code == 202, answer.text
    assert log == ["EVALSHA", "publish", "EVALSHA"]
    assert answer.headers["ratelimit-remaining"] == "998"

    log.clear()
    headers, body = structured(sdk_event("evt-signed"))
    answer = post(body, {**headers, **signed_headers(creds.webhook_secrets[0], body)})
    assert answer.status_code == 202, answer.text
    assert log == ["EVALSHA", "publish", "EVALSHA"]  # the replay guard is in the same script

    log.clear()
    headers, body = batch(*(f"evt-batch-{n}" for n in range(10)))
    answer = post(body, {**headers, **bearer(creds)})
    assert answer.status_code == 202, answer.text
    assert log == ["EVALSHA"] + ["publish"] * 10 + ["EVALSHA"]
    assert answer.headers["ratelimit-remaining"] == "987"

    log.clear()
    answer = post(body, {**headers, **bearer(creds)})  # the same batch again: resends, nothing to settle
    assert answer.status_code == 202 and all(a["resent"] for a in answer.json()["accepted"])
    assert log == ["EVALSHA"]


def test_the_hops_of_an_events_publishes_go_with_its_settle_and_the_next_admission_in_one_round_trip(
        app: Runtime, prefix: str, tmp_path: Path) -> None:
    """The real publisher, to three subscribers on the real RabbitMQ, with the trailing writes ``hub serve`` runs: the
    three flight-record hops and the settle go with the next request's admission, one pipeline (they were a round
    trip each, then one after the confirms)."""
    path, creds = write_sources(tmp_path)
    routes = RoutingTable({"erp.project.created.v1": ("fanout", "provisioning", "master_data")})
    log: list[str] = []

    async def scenario() -> tuple[int, list[str]]:
        client = CountingRedis()
        client.log = log
        publisher = AsyncEventPublisher(
            amqp_url=app.settings.amqp_url, routes=routes,
            queues={actor: app.broker.get_actor(actor).queue_name for actor in routes.actors()},
            delivery_limit=app.settings.delivery_limit,
            flight=AsyncRedisFlightRecord(client, prefix=app.queue_prefix, ttl_s=600))
        outcomes = OutcomeStore(client, prefix=prefix, trailing=TrailingWrites(client, trail_s=3600))
        ingress = Ingress(registry=REGISTRY, sources=load(path), publisher=publisher,
                          quotas=QuotaGate(client, key_prefix=prefix),
                          replay_guard=RedisReplayGuard(client, key_prefix=prefix),
                          outcomes=outcomes, redis=client, adapters=adapters(REGISTRY),
                          tracer=trace.NoOpTracer(), key_prefix=prefix)
        await publisher.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ingress)),
                                         base_url="http://ingress") as http:
                # The first two load the scripts; the settle of the third goes with the fourth's admission.
                for event_id in ("evt-warm-up", "evt-warm-up-2", "evt-hops", "evt-next"):
                    log.clear()
                    headers, body = structured(sdk_event(event_id))
                    answer = await http.post("/v1/events", content=body, headers={**headers, **bearer(creds)})
            return answer.status_code, log
        finally:
            await publisher.close()
            await outcomes.close()
            await client.aclose()

    status, sent = asyncio.run(scenario())
    assert status == 202
    # The fourth request's round trip; then, at shutdown, its own hops and settle.
    assert sent == ["RPUSH EXPIRE RPUSH EXPIRE RPUSH EXPIRE EVALSHA EVALSHA",
                    "RPUSH EXPIRE RPUSH EXPIRE RPUSH EXPIRE EVALSHA"]
    hops = app.flight.hops("evt-hops")
    assert sorted(h.actor for h in hops if h.outcome == "published") == ["fanout", "master_data", "provisioning"]


def test_a_request_refused_before_its_admission_asks_the_replay_guard_alone(
    counted: tuple[list[str], Credentials, Any]
) -> None:
    log, creds, post = counted
    headers, body = structured(sdk_event("evt-r1"))
    first = signed_headers(creds.webhook_secrets[0], body, msg_id="msg_fixed")
    assert post(body, {**headers, **first}).status_code == 202
    log.clear()
    # Not a CloudEvent, and the webhook id reused: authentication's 401 comes first, as before.
    broken = b'{"not": "an event"}'
    answer = post(broken, {"content-type": "application/cloudevents+json",
                           **signed_headers(creds.webhook_secrets[0], broken, msg_id="msg_fixed")})
    assert answer.status_code == 401, answer.text
    assert log == ["SET"]
    # A fresh id with the broken body: 400, and the id is remembered with that body.
    log.clear()
    answer = post(broken, {"content-type": "application/cloudevents+json",
                           **signed_headers(creds.webhook_secrets[0], broken, msg_id="msg_broken")})
    assert answer.status_code == 400 and log == ["SET"]
    answer = post(body, {**headers, **signed_headers(creds.webhook_secrets[0], body, msg_id="msg_broken")})
    assert answer.status_code == 401


# -- the script's semantics, on the real Redis


def event(event_id: str, subject: str = "ENG-ACME-0001") -> CloudEvent:
    return make_event(REGISTRY, type="erp.project.created.v1", source=SOURCE, data=acme_engagement(),
                      subject=subject, id=event_id)


def admission(client: redis.asyncio.Redis, prefix: str, *, wait_s: float = 10.0) -> Admission:
    return Admission(client, quotas=QuotaGate(client, key_prefix=prefix),
                     replay_guard=RedisReplayGuard(client, key_prefix=prefix),
                     outcomes=OutcomeStore(client, prefix=prefix, wait_s=wait_s))


def claimed(prefix: str) -> int:
    with redis.Redis() as client:
        return len(list(client.scan_iter(f"{prefix}:ingress:accepted:*")))


def signed(source: AuthenticatedSource, webhook_id: str, body: bytes) -> AuthenticatedSource:
    return replace(source, scheme="standard_webhooks", webhook_id=webhook_id,
                   body_sha256=hashlib.sha256(body).hexdigest())


def test_two_ingress_processes_share_one_quota_all_or_nothing(prefix: str) -> None:
    source = caller(quota="5/minute")

    async def run() -> list[Admitted]:
        first, second = redis.asyncio.Redis(), redis.asyncio.Redis()
        try:
            one, two = admission(first, prefix), admission(second, prefix)
            return [await one.admit(source, [event("a1"), event("a2"), event("a3")]),
                    await two.admit(source, [event("b1"), event("b2"), event("b3")]),  # 3 > 2 left: none
                    await two.admit(source, [event("b1"), event("b2")]),
                    await one.admit(source, [event("c1")])]
        finally:
            await first.aclose()
            await second.aclose()

    three, refused, two, over = asyncio.run(run())
    assert (three.quota.allowed, three.quota.remaining, [c.verdict for c in three.claims]) == (True, 2, ["new"] * 3)
    assert (refused.quota.allowed, refused.quota.remaining, refused.claims) == (False, 2, [])
    assert 1 <= refused.quota.retry_after_s <= 60
    assert (two.quota.allowed, two.quota.remaining) == (True, 0)
    assert (over.quota.allowed, over.claims) == (False, [])
    assert claimed(prefix) == 5  # the refused requests claimed nothing


def test_events_and_queries_share_one_window(prefix: str) -> None:
    source = caller(quota="3/minute")

    async def run() -> tuple[Admitted, list[bool]]:
        client = redis.asyncio.Redis()
        try:
            admitted = await admission(client, prefix).admit(source, [event("q1"), event("q2")])
            gate = QuotaGate(client, key_prefix=prefix)
            return admitted, [(await gate.hit(source)).allowed, (await gate.hit(source)).allowed]
        finally:
            await client.aclose()

    admitted, queries = asyncio.run(run())
    assert admitted.quota.remaining == 1 and queries == [True, False]


def test_a_replayed_webhook_id_with_another_body_counts_and_claims_nothing(prefix: str) -> None:
    source = caller(quota="5/minute")

    async def run() -> tuple[Admitted, Admitted, int]:
        client = redis.asyncio.Redis()
        try:
            gate = admission(client, prefix)
            first = await gate.admit(signed(source, "msg_1", b"body"), [event("w1")])
            await OutcomeStore(client, prefix=prefix).settle([(event("w1"), first.claims[0], {"id": "w1"})])
            with pytest.raises(AuthenticationFailed, match="different body"):
                await gate.admit(signed(source, "msg_1", b"other body"), [event("w2")])
            again = await gate.admit(signed(source, "msg_1", b"body"), [event("w1")])
            left = (await QuotaGate(client, key_prefix=prefix).hit(source)).remaining
            return first, again, left
        finally:
            await client.aclose()

    first, again, left = asyncio.run(run())
    assert (first.caller.resend, first.quota.remaining, first.claims[0].verdict) == (False, 4, "new")
    # The same body again: a resend for the guard and for the claim, charged like any request.
    assert (again.caller.resend, again.quota.remaining, again.claims[0].verdict) == (True, 3, "resend")
    assert left == 2  # the conflict was not charged
    assert claimed(prefix) == 1


def test_claims_answer_new_resend_and_conflict_and_wait_for_a_held_one(prefix: str) -> None:
    source = caller(quota="100/minute")

    async def run() -> None:
        client = redis.asyncio.Redis()
        try:
            gate, outcomes = admission(client, prefix, wait_s=0.3), OutcomeStore(client, prefix=prefix)
            first = await gate.admit(source, [event("k1"), event("k2")])
            assert [c.verdict for c in first.claims] == ["new", "new"]
            await outcomes.settle([(event("k1"), first.claims[0], {"id": "k1", "status": "accepted"})])
            # k2 is still held by the first request: waited for, then given up (its own k3 released).
            with pytest.raises(ResendInFlight):
                await gate.admit(source, [event("k3"), event("k2")])
            assert claimed(prefix) == 2
            second = await gate.admit(source, [event("k1"), event("k1b"), event("k1", subject="ENG-OTHER")])
            assert [c.verdict for c in second.claims] == ["resend", "new", "conflict"]
            assert second.claims[0].outcome == {"id": "k1", "status": "accepted"}
            await outcomes.release(list(zip([event("k1"), event("k1b")], second.claims, strict=False)))
            assert claimed(prefix) == 2  # k1b released; k1 (settled, not this request's) kept
            # Released meanwhile: the waiting request claims it itself.
            waiting = asyncio.create_task(gate.admit(source, [event("k2")]))
            await asyncio.sleep(0.05)
            await outcomes.release([(event("k2"), first.claims[1])])
            assert [c.verdict for c in (await waiting).claims] == ["new"]
        finally:
            await client.aclose()

    asyncio.run(run())


def test_redis_down_makes_the_admission_unavailable() -> None:
    async def run() -> Admitted:
        client = redis.asyncio.Redis(port=1)
        try:
            return await admission(client, "unreachable").admit(caller(), [event("x")])
        finally:
            await client.aclose()

    with pytest.raises(StoreUnavailable):
        asyncio.run(run())


def test_the_embedded_mode_runs_the_same_script_on_fakeredis() -> None:
    source = caller(quota="2/minute")

    async def run() -> list[Admitted]:
        client = fakeredis.FakeAsyncRedis()
        gate = admission(client, "embedded")
        return [await gate.admit(signed(source, "m", b"b"), [event("e1")]),
                await gate.admit(source, [event("e1"), event("e2")]),
                await gate.admit(source, [event("e2")])]

    first, too_many, second = asyncio.run(run())
    assert [c.verdict for c in first.claims] == ["new"] and first.quota.remaining == 1
    assert not too_many.quota.allowed and too_many.claims == []
    assert [c.verdict for c in second.claims] == ["new"] and second.quota.remaining == 0
