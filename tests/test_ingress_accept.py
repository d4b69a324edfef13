"""202 means durable on every path: concurrent re-sends publish once, a failed publish leaves nothing claimed,
and readiness follows the broker's confirms, not only its connection."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hub.cli.compose import build_app
from tests.conftest import hub_settings
from tests.support.ingress import load, serving, write_sources
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import queue_depth, wait_until
from tests.test_ingress_app import assert_accepted_once_ready, assert_problem, bearer, sdk_event, structured

pytestmark = pytest.mark.integration


def test_eight_identical_deliveries_at_the_same_instant_publish_once(prefix: str, tmp_path: Path) -> None:
    path, creds = write_sources(tmp_path)
    runtime = build_app(hub_settings(prefix), embedded=False)
    headers, body = structured(sdk_event("evt-burst"))
    start = threading.Barrier(8)

    def deliver(client: httpx.Client) -> httpx.Response:
        start.wait()
        return client.post("/v1/events", content=body, headers={**headers, **bearer(creds)}, timeout=30)

    try:
        with serving(runtime, load(path)) as url:
            clients = [httpx.Client(base_url=url) for _ in range(8)]
            try:
                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(deliver, clients))
            finally:
                for client in clients:
                    client.close()
        assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
        outcomes = [a.json()["accepted"][0] for a in answers]
        assert sum(1 for o in outcomes if not o.get("resent")) == 1
        assert all(o["id"] == "evt-burst" for o in outcomes)
        assert queue_depth(runtime.broker.get_actor("fanout").queue_name) == 1
    finally:
        runtime.close()


def test_stalled_confirms_make_the_ingress_unready_and_a_refused_event_can_be_sent_again(
    prefix: str, tmp_path: Path
) -> None:
    proxy = TcpProxy(("127.0.0.1", 5672))
    path, creds = write_sources(tmp_path)
    runtime = build_app(hub_settings(prefix, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"),
                        embedded=False)
    headers, body = structured(sdk_event("evt-stalled"))
    try:
        with serving(runtime, load(path)) as url:
            assert wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=30)
            proxy.pause()  # the connection stays open; no confirm comes back
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(httpx.post, f"{url}/v1/events", content=body,
                                      headers={**headers, **bearer(creds)}, timeout=30)
                assert wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 503, timeout=30)
                assert not pending.done(), "readiness must turn before the stalled publish gives up"
                refused = pending.result()
            assert_problem(refused, 503, "unavailable")
            proxy.resume()
            assert_accepted_once_ready(url, body, {**headers, **bearer(creds)})
    finally:
        runtime.close()
        proxy.close()


def test_a_resend_is_the_same_event_only_with_the_same_extensions_whatever_its_trace(
    prefix: str, tmp_path: Path
) -> None:
    path, creds = write_sources(tmp_path)
    runtime = build_app(hub_settings(prefix), embedded=False)

    def send(url: str, **attributes: str) -> httpx.Response:
        headers, body = structured(sdk_event("evt-ext", sequence="00000000000000000001", **attributes))
        return httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)}, timeout=30)

    try:
        with serving(runtime, load(path)) as url:
            assert send(url, region="eu").status_code == 202
            retried = send(url, region="eu", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            assert retried.status_code == 202 and retried.json()["accepted"][0]["resent"] is True
            assert_problem(send(url, region="us"), 409, "id-conflict")
            assert_problem(send(url), 409, "id-conflict")
        assert queue_depth(runtime.broker.get_actor("fanout").queue_name) == 1
    finally:
        runtime.close()


def test_the_ingress_records_a_published_hop_per_subscriber_as_the_dispatcher_does(
    prefix: str, tmp_path: Path
) -> None:
    path, creds = write_sources(tmp_path)
    runtime = build_app(hub_settings(prefix), embedded=False)
    headers, body = structured(sdk_event("evt-hops"))
    try:
        with serving(runtime, load(path)) as url:
            accepted = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)}, timeout=30)
        assert accepted.status_code == 202, accepted.text
        hops = runtime.flight.hops("evt-hops")
        subscribers = runtime.dispatcher.routes.subscribers("erp.project.created.v1")
        assert sorted(h.actor for h in hops) == sorted(subscribers)
        assert {h.outcome for h in hops} == {"published"} and len({h.message_id for h in hops}) == len(hops)
        assert len({h.trace_id for h in hops}) == 1 and hops[0].trace_id is not None  # the request's trace
    finally:
        runtime.close()
