"""The ingress's trace as `hub serve` exports it: one SERVER span per request, the hub's own, even though the
process sets a global tracer provider (which turns FastAPI's own OpenTelemetry on unless the app says no)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import worker_env
from tests.support.ingress import write_sources
from tests.support.rabbit import wait_until
from tests.test_ingress_app import bearer, sdk_event, structured
from tests.test_startup import hub_process

pytestmark = pytest.mark.integration


def exported(path: Path) -> list[dict[str, Any]]:
    """The spans the console exporter wrote (one JSON document after another)."""
    text, decoder, spans, at = path.read_text(), json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


def trace_of(event_id: str, spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans of the trace in which the event was published (its PRODUCER span names the event)."""
    published = {s["context"]["trace_id"] for s in spans if s["attributes"].get("cloudevents.event_id") == event_id}
    return [s for s in spans if s["context"]["trace_id"] in published]


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def test_a_request_has_one_server_span_the_hubs_with_a_global_tracer_provider(prefix: str, tmp_path: Path) -> None:
    path, creds = write_sources(tmp_path)
    env = worker_env(prefix, HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND="127.0.0.1:0", HUB_TRACE_EXPORTER="console",
                     HUB_LOG_LEVEL="INFO", HUB_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    spans_file = tmp_path / "spans.json"
    with spans_file.open("w") as stdout, hub_process(["serve"], env, stdout=stdout) as serve:
        port = int(serve.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=60)
        for event_id in ("evt-one-server-span", "evt-after-it"):  # the second is handled once the first is over
            headers, body = structured(sdk_event(event_id))
            answer = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)}, timeout=30)
            assert answer.status_code == 202, answer.text
        assert wait_until(lambda: any(s["kind"] == "SpanKind.SERVER" for s in trace_of("evt-after-it",
                                                                                         exported(spans_file))),
                          timeout=30)
        serve.stop()
    spans = exported(spans_file)
    in_trace = trace_of("evt-one-server-span", spans)
    servers = [s["name"] for s in in_trace if s["kind"] == "SpanKind.SERVER"]
    assert servers == ["POST /v1/events"], [(s["name"], s["kind"]) for s in in_trace]
    # FastAPI's own would be a SERVER span of its own trace (the hub's continues the sender's context) for every
    # request, probes included, with spans around its dependencies and endpoint.
    assert not [s["name"] for s in spans if s["name"].startswith("fastapi.")]
    assert [s["name"] for s in spans if s["kind"] == "SpanKind.SERVER"] == ["POST /v1/events"] * 2
