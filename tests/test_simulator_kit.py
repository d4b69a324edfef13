"""The simulators' kit on its own, over real HTTP: ``Idempotency-Key`` replays of a write route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from hub.ingress.server import serve_in_thread
from simulators.kit.app import ErrorDialect, simulator_app
from simulators.kit.errors import SimError
from simulators.kit.faults import FaultInjector
from simulators.kit.idempotency import IdempotencyKeys, Written


class Note(BaseModel):
    """What the toy service writes."""

    text: str
    pinned: bool = False


def _render(exc: SimError) -> JSONResponse:
    return JSONResponse({"code": exc.code}, status_code=exc.status, headers=exc.headers or None)


def _invalid(exc: Any) -> SimError:
    return SimError(422, "invalid", "invalid")


def toy_service(writes: list[dict[str, Any]]) -> FastAPI:
    """A service whose writes append to ``writes``; ``text == "refuse"`` is refused with 409."""
    keys = IdempotencyKeys(reused=lambda: SimError(422, "key_reused", "another request had this key"))
    api = APIRouter()

    @api.post("/notes", status_code=201)
    @keys.replayable
    def create_note(body: Note) -> Written:
        if body.text == "refuse":
            raise SimError(409, "refused", "not now")
        writes.append(body.model_dump())
        return Written(201, {"id": len(writes), **body.model_dump()}, {"location": f"/notes/{len(writes)}"})

    @api.patch("/notes/{note_id}")
    @keys.replayable
    def patch_note(note_id: int, body: Note, request: Request) -> Written:
        writes.append({"id": note_id, "by": request.headers.get("x-user")})
        return Written(200, {"id": note_id, **body.model_dump()})

    return simulator_app("toy", api=api, dialect=ErrorDialect(render=_render, invalid=_invalid),
                         faults=FaultInjector(), resets=(keys.reset,))


@pytest.fixture
def service() -> Iterator[tuple[httpx.Client, list[dict[str, Any]]]]:
    writes: list[dict[str, Any]] = []
    with serve_in_thread(toy_service(writes)) as url, httpx.Client(base_url=url) as client:
        yield client, writes


def test_a_write_without_a_key_runs_every_time(service: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, writes = service
    assert [client.post("/notes", json={"text": "a"}).status_code for _ in range(2)] == [201, 201]
    assert len(writes) == 2


def test_the_same_key_and_body_replay_the_first_answer_without_writing_again(
        service: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, writes = service
    first = client.post("/notes", json={"text": "a", "pinned": True}, headers={"idempotency-key": "k1"})
    # The same fields in another order and spacing are the same body.
    again = client.post("/notes", content=b'{ "pinned": true,  "text": "a" }',
                        headers={"idempotency-key": "k1", "content-type": "application/json"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() == {"id": 1, "text": "a", "pinned": True}
    assert again.headers["location"] == first.headers["location"] == "/notes/1"
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert len(writes) == 1


def test_the_same_key_with_another_body_or_path_is_refused(service: tuple[httpx.Client, list[dict[str, Any]]]
                                                           ) -> None:
    client, writes = service
    assert client.patch("/notes/1", json={"text": "a"}, headers={"idempotency-key": "k2"}).status_code == 200
    other_body = client.patch("/notes/1", json={"text": "b"}, headers={"idempotency-key": "k2"})
    other_path = client.patch("/notes/2", json={"text": "a"}, headers={"idempotency-key": "k2"})
    other_method = client.post("/notes", json={"text": "a"}, headers={"idempotency-key": "k2"})
    assert [r.status_code for r in (other_body, other_path, other_method)] == [422, 422, 422]
    assert {r.json()["code"] for r in (other_body, other_path, other_method)} == {"key_reused"}
    assert len(writes) == 1


def test_a_handler_may_read_the_request_itself(service: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, writes = service
    client.patch("/notes/7", json={"text": "a"}, headers={"idempotency-key": "k3", "x-user": "dana"})
    assert writes == [{"id": 7, "by": "dana"}]


def test_a_refused_write_keeps_nothing_so_its_key_can_be_used_again(
        service: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, writes = service
    refused = client.post("/notes", json={"text": "refuse"}, headers={"idempotency-key": "k4"})
    assert (refused.status_code, refused.json()["code"]) == (409, "refused")
    assert client.post("/notes", json={"text": "a"}, headers={"idempotency-key": "k4"}).status_code == 201
    assert len(writes) == 1


def test_a_reset_forgets_every_key(service: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, writes = service
    client.post("/notes", json={"text": "a"}, headers={"idempotency-key": "k5"})
    assert client.post("/_sim/reset").json() == {"reset": True}
    again = client.post("/notes", json={"text": "a"}, headers={"idempotency-key": "k5"})
    assert "idempotent-replayed" not in again.headers
    assert len(writes) == 2


def test_a_replayable_write_needs_exactly_one_body_model() -> None:
    keys = IdempotencyKeys(reused=lambda: SimError(422, "key_reused", "reused"))

    def no_body(note_id: int) -> Written:
        return Written(200, {})

    def two_bodies(first: Note, second: Note) -> Written:
        return Written(200, {})

    for write in (no_body, two_bodies):
        with pytest.raises(TypeError, match="exactly one pydantic body"):
            keys.replayable(write)
