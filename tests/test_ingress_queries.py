"""Queries contributed as routers: the guard's order (authenticate, may ask, the route's own check, quota),
fail-closed answers, and an ingress that mounts no router. In-process ASGI over the real Redis."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from standardwebhooks.webhooks import Webhook

from connectors.webhooks import adapters
from hub.errors import StoreUnavailable
from hub.events import CloudEvent
from hub.ingress.app import Ingress, create_app
from hub.ingress.auth import QuotaGate, RedisReplayGuard
from hub.ingress.outcomes import OutcomeStore
from hub.ingress.problems import Kind, Problem
from hub.ingress.queries import QueryGuard
from hub.ingress.sources import SourceRegistry, source_model
from hub.registry import SchemaRegistry
from observability.flight import Writes

pytestmark = pytest.mark.integration

ASKER_KEY = "key-of-the-source-that-may-ask"
OTHER_KEY = "key-of-a-source-that-may-not"
SECRET = "whsec_c2VjcmV0LW9mLXRoZS10ZXN0LXNvdXJjZS0wMDE="
Answer = Callable[[str], Awaitable[Mapping[str, Any]]]


class _NoPublisher:
    ready = False

    async def publish(self, event: CloudEvent, *, root_id: str | None = None,
                      writes: Writes | None = None) -> list[str]:
        raise AssertionError("a query publishes nothing")


def sources(quota: str) -> SourceRegistry:
    model = source_model(queries=["echo"])

    def source(source_id: str, credentials: list[dict[str, str]], queries: list[str]) -> Any:
        return model.model_validate({"id": source_id, "description": source_id, "sources": ["x"],
                                     "event_types": ["x"], "quota": quota, "queries": queries,
                                     "credentials": credentials})

    return SourceRegistry([
        source("asker", [{"scheme": "api_key", "sha256": hashlib.sha256(ASKER_KEY.encode()).hexdigest()},
                         {"scheme": "standard_webhooks", "secret": SECRET}], ["echo"]),
        source("other", [{"scheme": "api_key", "sha256": hashlib.sha256(OTHER_KEY.encode()).hexdigest()}], []),
    ])


def echo_router(guard: QueryGuard, answer: Answer) -> APIRouter:
    """A query of a package the ingress knows nothing about: ``GET /v1/echo/{word}`` (letters only)."""
    router = APIRouter()

    @router.get("/v1/echo/{word}")
    async def echo(word: str, request: Request) -> JSONResponse:
        async with guard.asking(request, "echo", route="GET /v1/echo/{word}") as question:
            if not word.isalpha():
                raise Problem(Kind.INVALID_PARAMETER, "letters only")
            return await question.answer(lambda: answer(word), unavailable="no echo now")

    return router


async def _echo(word: str) -> Mapping[str, Any]:
    return {"echo": word}


def ask(prefix: str, requests: list[tuple[str, dict[str, str]]], *, quota: str = "2/minute",
        answer: Answer = _echo, mount: bool = True) -> list[httpx.Response]:
    """Send ``requests`` (path, headers) in order to an ingress with the echo query mounted (or none)."""

    async def run() -> list[httpx.Response]:
        client = redis.asyncio.Redis()
        registry = SchemaRegistry.load()
        ingress = Ingress(registry=registry, sources=sources(quota), publisher=_NoPublisher(),
                          quotas=QuotaGate(client, key_prefix=prefix),
                          replay_guard=RedisReplayGuard(client, key_prefix=prefix),
                          outcomes=OutcomeStore(client, prefix=prefix), redis=client, adapters=adapters(registry),
                          tracer=trace.NoOpTracer(), unavailable_retry_after_s=7)
        routers = [echo_router(QueryGuard(ingress), answer)] if mount else []
        app = create_app(ingress, routers=routers)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as http:
                return [await http.get(path, headers=headers) for path, headers in requests]
        finally:
            await client.aclose()

    return asyncio.run(run())


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    kind: str = response.json()["type"]
    return kind


def test_refused_questions_do_not_charge_the_quota_and_answers_say_what_is_left(prefix: str) -> None:
    answers = ask(prefix, [
        ("/v1/echo/hello", {}),
        ("/v1/echo/hello", bearer("not-a-key")),
        ("/v1/echo/hello", bearer(OTHER_KEY)),
        ("/v1/echo/hello1", bearer(ASKER_KEY)),
        ("/v1/echo/hello", bearer(ASKER_KEY)),
        ("/v1/echo/again", bearer(ASKER_KEY)),
        ("/v1/echo/over", bearer(ASKER_KEY)),
        ("/v1/echo/over1", bearer(ASKER_KEY)),  # over the quota, the parameter is still checked first
    ])
    assert [a.status_code for a in answers] == [401, 401, 403, 400, 200, 200, 429, 400]
    assert [problem_type(a) for a in answers[:4]] == [Kind.UNAUTHENTICATED.uri, Kind.UNAUTHENTICATED.uri,
                                                     Kind.FORBIDDEN.uri, Kind.INVALID_PARAMETER.uri]
    first, second, over = answers[4:7]
    assert first.json() == {"echo": "hello"} and first.headers["cache-control"] == "no-store"
    assert [(a.headers["ratelimit-limit"], a.headers["ratelimit-remaining"]) for a in (first, second)] == [
        ("2", "1"), ("2", "0")]
    assert problem_type(over) == Kind.RATE_LIMITED.uri and int(over.headers["retry-after"]) >= 1


def test_a_signed_request_may_not_ask_even_when_its_source_may(prefix: str) -> None:
    now = datetime.now(UTC)
    signed = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
              "webhook-signature": Webhook(SECRET).sign("msg_1", now, ""), "webhook-source": "asker"}
    [answer] = ask(prefix, [("/v1/echo/hello", signed)])
    assert answer.status_code == 403 and problem_type(answer) == Kind.FORBIDDEN.uri


@pytest.mark.parametrize("failure", [StoreUnavailable("facts store down"), redis.ConnectionError("refused")])
def test_an_answer_that_cannot_be_read_fails_closed_with_retry_after(prefix: str, failure: Exception) -> None:
    async def broken(word: str) -> Mapping[str, Any]:
        raise failure

    [answer] = ask(prefix, [("/v1/echo/hello", bearer(ASKER_KEY))], answer=broken)
    assert answer.status_code == 503 and problem_type(answer) == Kind.UNAVAILABLE.uri
    assert answer.json()["detail"] == "no echo now" and answer.headers["retry-after"] == "7"


def test_an_ingress_that_mounts_no_query_router_answers_its_path_404_like_any_unknown_path(prefix: str) -> None:
    answers = ask(prefix, [("/v1/echo/hello", bearer(ASKER_KEY)),
                           ("/v1/invoices/INV-1/readiness", bearer(ASKER_KEY))], mount=False)
    assert [(a.status_code, problem_type(a)) for a in answers] == [(404, Kind.NOT_FOUND.uri)] * 2
