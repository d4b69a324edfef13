"""Property: whatever an authenticated client sends, the ingress answers 2xx or a 4xx problem, never
a 5xx, and publishes nothing that is not a valid event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.runtime import Runtime
from tests.support.ingress import Credentials, load, serving, write_sources
from tests.support.rabbit import queue_depth

pytestmark = pytest.mark.integration

CONTENT_TYPES = ["application/cloudevents+json", "application/cloudevents-batch+json", "application/json",
                 "application/avro", "text/plain", "", "application/cloudevents+json; charset=utf-8"]
ATTRIBUTES = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
              "data", "data_base64", "partitionkey", "traceparent", "x"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
events = st.dictionaries(st.sampled_from(ATTRIBUTES), json_values, max_size=10)
bodies = st.one_of(
    st.binary(max_size=300),
    events.map(lambda e: json.dumps(e).encode()),
    st.lists(events, max_size=3).map(lambda e: json.dumps(e).encode()),
)
ce_headers = st.dictionaries(
    st.sampled_from(["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time", "ce-x"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30), max_size=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Credentials, Runtime]]:
    import uuid

    from hub.cli import build_app
    from tests.conftest import hub_settings
    from tests.support.rabbit import delete_queues

    prefix = f"t{uuid.uuid4().hex[:10]}"
    path, creds = write_sources(Path(tmp_path_factory.mktemp("fuzz")), quota="100000/minute")
    runtime = build_app(hub_settings(prefix), embedded=False)
    try:
        with serving(runtime, load(path)) as url:
            yield url, creds, runtime
    finally:
        runtime.close()
        delete_queues(prefix)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES), extra=ce_headers)
def test_no_input_produces_a_5xx_or_publishes_anything(
    server: tuple[str, Credentials, Runtime], body: bytes, content_type: str, extra: dict[str, Any]
) -> None:
    url, creds, runtime = server
    headers = {"authorization": f"Bearer {creds.api_key}", "content-type": content_type, **extra}
    queue = runtime.broker.get_actor("fanout").queue_name
    before = queue_depth(queue)
    response = httpx.post(f"{url}/v1/events", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code != 202:
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["type"].startswith("urn:hub:problem:") and problem["status"] == response.status_code
    published = len(response.json()["accepted"]) if response.status_code == 202 else 0
    assert queue_depth(queue) == before + published
