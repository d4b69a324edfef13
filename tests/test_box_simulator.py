"""The Box simulator's own fidelity where neither the hub's client nor the SDK goes on its own: an expired or
missing token, Box's upload rules, its error body on faults and unknown routes, a folder put in the trash, the
changes stream naming the folder of each change reconciliation reads, the request log and the admin reset."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

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


#: Box's own token lifetime (an hour); a test busy on a loaded machine must not see its token expire midway.
TOKEN_LIFETIME_S = 3600.0


@pytest.fixture
def sim() -> Iterator[BoxSim]:
    with running_box(token_lifetime_s=TOKEN_LIFETIME_S) as running:
        yield running


@pytest.fixture
def api(sim: BoxSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {sign_in(sim)}"}) as client:
        yield client


def assert_box_error(response: httpx.Response, status: int, code: str) -> None:
    body = response.json()
    assert (response.status_code, body["type"], body["status"], body["code"]) == (status, "error", status, code)
    assert body["request_id"] and body["message"]


def test_a_missing_or_expired_token_is_answered_401_with_boxs_challenge_and_no_body() -> None:
    with running_box(token_lifetime_s=1.0) as sim, \
            httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {sign_in(sim)}"}) as api:
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
    assert sim.admin.get("/requests").json()["calls"] == {}
    assert api.get("/2.0/folders/0").status_code == 401


def changes(api: httpx.Client, since: int, stream_type: str = "changes") -> list[dict[str, Any]]:
    """The events after ``since`` on a stream."""
    page = api.get("/2.0/events", params={"stream_type": stream_type, "stream_position": str(since)})
    entries: list[dict[str, Any]] = page.json()["entries"]
    return entries


def test_a_folder_goes_to_the_trash_with_its_items_and_the_event_stream_shows_it_as_box_does(
        api: httpx.Client) -> None:
    acme = api.post("/2.0/folders", json={"name": "ACME", "parent": {"id": "0"}}).json()
    inner = api.post("/2.0/folders", json={"name": "Matters", "parent": {"id": acme["id"]}}).json()
    head = api.get("/2.0/events", params={"stream_type": "changes", "stream_position": "now"}).json()
    assert_box_error(api.delete(f"/2.0/folders/{acme['id']}"), 400, "folder_not_empty")
    assert_box_error(api.delete(f"/2.0/folders/{acme['id']}", params={"recursive": "true"},
                                headers={"if-match": "7"}), 412, "precondition_failed")
    assert_box_error(api.delete("/2.0/folders/0", params={"recursive": "true"}), 403,
                     "access_denied_insufficient_permissions")
    trashed = api.delete(f"/2.0/folders/{acme['id']}", params={"recursive": "true"}, headers={"if-match": "0"})
    assert trashed.status_code == 204
    for gone in (acme, inner):
        assert_box_error(api.get(f"/2.0/folders/{gone['id']}"), 404, "not_found")
    assert api.get("/2.0/folders/0/items").json()["entries"] == []
    [event] = changes(api, head["next_stream_position"])
    source = event["source"]
    assert (event["event_type"], source["id"], source["item_status"]) == ("ITEM_TRASH", acme["id"], "trashed")
    # Box renders a trashed item from the trash: its path is the trash, its parent the folder it was in.
    assert source["path_collection"] == {"total_count": 1, "entries": [
        {"type": "folder", "id": "1", "sequence_id": None, "etag": None, "name": "Trash"}]}
    assert source["parent"]["id"] == "0" and source["trashed_at"] and source["purged_at"]
    assert [e["event_type"] for e in changes(api, head["next_stream_position"], "admin_logs_streaming")] == \
        ["DELETE"]


def test_the_changes_stream_names_the_folder_of_a_collaboration_and_of_its_metadata(api: httpx.Client) -> None:
    acme = api.post("/2.0/folders", json={"name": "ACME", "parent": {"id": "0"}}).json()
    group = api.get("/2.0/groups").json()["entries"][0]
    assert api.post("/2.0/metadata_templates/schema", json={
        "scope": "enterprise", "templateKey": "hubWorkspace", "displayName": "Hub workspace",
        "fields": [{"type": "string", "key": "ProjectName", "displayName": "ProjectName"}]}).status_code == 201
    head = api.get("/2.0/events", params={"stream_type": "changes", "stream_position": "now"}).json()
    instance = f"/2.0/folders/{acme['id']}/metadata/enterprise/hubWorkspace"
    assert api.post(instance, json={"ProjectName": "Atlas"}).status_code == 201
    patch = json.dumps([{"op": "replace", "path": "/ProjectName", "value": "by hand"}]).encode()
    assert api.put(instance, content=patch, headers={"content-type": "application/json-patch+json"}).is_success
    added = api.post("/2.0/collaborations", json={"item": {"type": "folder", "id": acme["id"]},
                                                  "accessible_by": {"type": "group", "id": group["id"]},
                                                  "role": "editor"}).json()
    assert api.delete(f"/2.0/collaborations/{added['id']}").status_code == 204
    seen = [(e["event_type"], e["source"]["type"], e["source"]["id"])
            for e in changes(api, head["next_stream_position"])]
    kinds = ("METADATA_INSTANCE_CREATE", "METADATA_INSTANCE_UPDATE", "COLLAB_ADD_COLLABORATOR",
             "COLLAB_REMOVE_COLLABORATOR")
    assert seen == [(kind, "folder", acme["id"]) for kind in kinds]
    assert [e["event_type"] for e in changes(api, head["next_stream_position"], "admin_logs_streaming")] == [
        "METADATA_INSTANCE_CREATE", "METADATA_INSTANCE_UPDATE", "COLLABORATION_INVITE", "COLLABORATION_REMOVE"]


def test_the_request_log_counts_each_authorised_call_by_method_and_path(sim: BoxSim, api: httpx.Client) -> None:
    api.get("/2.0/folders/0")
    api.get("/2.0/folders/0")
    api.get("/2.0/folders/0/items", params={"limit": 5})
    assert httpx.get(f"{sim.url}/2.0/folders/0").status_code == 401  # refused: not counted
    assert sim.admin.get("/requests").json()["calls"] == {"GET /2.0/folders/0": 2, "GET /2.0/folders/0/items": 1}
