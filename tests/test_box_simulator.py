"""The Box simulator's own fidelity where neither the hub's client nor the SDK goes on its own: an expired or
missing token, Box's upload rules, its error body on faults and unknown routes, and the admin reset."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.box import PART_SIZE, BoxSim, running_box


def sign_in(sim: BoxSim) -> str:
    """An access token from the simulator's Client Credentials Grant."""
    config = sim.config
    response = httpx.post(f"{sim.url}/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": config.client_id, "client_secret": config.client_secret,
        "box_subject_type": "enterprise", "box_subject_id": config.enterprise_id})
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with running_box(token_lifetime_s=1.0) as running:
        yield running


@pytest.fixture
def api(sim: BoxSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {sign_in(sim)}"}) as client:
        yield client


def assert_box_error(response: httpx.Response, status: int, code: str) -> None:
    body = response.json()
    assert (response.status_code, body["type"], body["status"], body["code"]) == (status, "error", status, code)
    assert body["request_id"] and body["message"]


def test_a_missing_or_expired_token_is_answered_401_with_boxs_challenge_and_no_body(sim: BoxSim,
                                                                                   api: httpx.Client) -> None:
    assert api.get("/2.0/folders/0").status_code == 200
    assert httpx.get(f"{sim.url}/2.0/folders/0").status_code == 401
    time.sleep(1.1)
    expired = api.get("/2.0/folders/0")
    assert expired.status_code == 401 and expired.content == b""
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]


def test_box_refuses_invalid_names_and_an_attributes_part_after_the_file(api: httpx.Client) -> None:
    assert_box_error(api.post("/2.0/folders", json={"name": "a/b", "parent": {"id": "0"}}), 400, "item_name_invalid")
    assert_box_error(api.post("/2.0/folders", json={"name": "ACME", "parent": {"id": "77"}}), 404, "not_found")
    attributes = '{"name": "a.txt", "parent": {"id": "0"}}'
    late = api.post("/api/2.0/files/content", files=[("file", ("a.txt", b"a")), ("attributes", (None, attributes))])
    assert_box_error(late, 400, "metadata_after_file_contents")


def test_upload_parts_must_match_their_digest_and_range_and_a_repeat_is_the_same_part(api: httpx.Client) -> None:
    session = api.post("/api/2.0/files/upload_sessions",
                       json={"folder_id": "0", "file_size": 3 * PART_SIZE, "file_name": "big.bin"}).json()
    url = session["session_endpoints"]["upload_part"]
    chunk = b"x" * PART_SIZE
    digest = "sha=" + base64.b64encode(hashlib.sha1(chunk).digest()).decode()
    first = api.put(url, content=chunk, headers={"digest": digest, "content-range": f"bytes 0-{PART_SIZE - 1}/3072"})
    again = api.put(url, content=chunk, headers={"digest": digest, "content-range": f"bytes 0-{PART_SIZE - 1}/3072"})
    assert first.json() == again.json() and first.json()["part"]["sha1"] == hashlib.sha1(chunk).hexdigest()
    wrong = api.put(url, content=chunk, headers={"digest": "sha=" + base64.b64encode(b"0" * 20).decode(),
                                                 "content-range": f"bytes {PART_SIZE}-{2 * PART_SIZE - 1}/3072"})
    assert_box_error(wrong, 412, "precondition_failed")
    misplaced = api.put(url, content=chunk,
                        headers={"digest": digest, "content-range": f"bytes 10-{PART_SIZE + 9}/3072"})
    assert_box_error(misplaced, 416, "requested_range_not_satisfiable")
    assert api.delete(url).status_code == 204 and api.get(url).status_code == 404


def test_faults_and_unknown_routes_answer_in_boxs_error_shape(sim: BoxSim, api: httpx.Client) -> None:
    assert_box_error(api.get("/2.0/no-such-thing"), 404, "not_found")
    assert_box_error(api.patch("/2.0/folders"), 405, "method_not_allowed")
    sim.faults(outage=True, retry_after_s=7)
    down = api.get("/2.0/folders/0")
    assert_box_error(down, 503, "unavailable")
    assert (down.headers["retry-after"], down.headers["x-sim-fault"]) == ("7", "outage")
    sim.faults(throttle_rate=1.0)
    assert_box_error(api.get("/2.0/folders/0"), 429, "rate_limit_exceeded")


def test_reset_brings_back_an_empty_enterprise_and_forgets_its_tokens(sim: BoxSim, api: httpx.Client) -> None:
    assert api.post("/2.0/folders", json={"name": "ACME", "parent": {"id": "0"}}).status_code == 201
    assert list(sim.state()["items"]) == ["ACME"]
    assert sim.admin.post("/reset").json() == {"reset": True}
    assert sim.state()["items"] == {} and sim.admin.get("/tokens").json()["issued"] == {}
    assert api.get("/2.0/folders/0").status_code == 401
