"""``hub worker`` at start: the policy's retention labels checked against the ones the simulated tenant
publishes (and Box's enterprise, when the policy keeps projects there), raised to records management over the real
broker; a tenant that hides its labels or a Graph that does not answer leaves the worker consuming. Real RabbitMQ,
Redis, PostgreSQL and HTTP."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors import DEFAULT_POLICY, load_policy
from hub.cli.compose import build_app
from hub.cli.scenario import sandbox_connections
from hub.ingress.server import serve_in_thread
from hub.runtime import Runtime
from hub.settings import Settings
from hub.workers import run_worker
from simulators.kit.faults import FaultPlan
from simulators.sandbox import Sandbox, running_sandbox
from tests.conftest import hub_settings
from tests.support.rabbit import wait_until

pytestmark = pytest.mark.integration

LABELS = sorted(load_policy().retention.all_labels())


@contextmanager
def sandbox(labels: list[str] | None, graph_faults: FaultPlan | None = None) -> Iterator[Sandbox]:
    """The simulated systems, the tenant publishing ``labels`` (``None``: it refuses the app the list)."""
    with running_sandbox(serve=serve_in_thread, ingress_events_url=None, webhook_secret="unused",
                         labels=labels, graph_faults=graph_faults) as systems:
        yield systems


@contextmanager
def hub_worker(runtime: Runtime) -> Iterator[threading.Thread]:
    """``hub worker`` as its command runs it (``run_worker``, which closes the runtime), in a thread, until the
    block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(runtime,), kwargs={"threads": 2, "stop": stop},
                              name="test-hub-worker", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=60)


def runtime_on(systems: Sandbox, settings: Settings) -> Runtime:
    """The hub as ``hub worker`` builds it, on the simulated systems."""
    return build_app(settings, connections=sandbox_connections(systems), embedded=False, migrate=False)


def unpublished(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    """The start check's warnings naming unpublished labels."""
    return [line for line in logs if line["event"] == "the tenant does not publish retention labels the policy applies"]


def sharepoint_only(folder: Path) -> Path:
    """The default policy without its Box rule: every workspace on SharePoint."""
    text, rules = re.subn(r"  rules:\n    - \{platform: box[^\n]*\n", "  rules: []\n",
                          DEFAULT_POLICY.read_text(encoding="utf-8"))
    assert rules == 1
    (folder / "policy.yaml").write_text(text, encoding="utf-8")
    return folder / "policy.yaml"


def test_a_starting_worker_raises_each_label_the_tenant_does_not_publish_as_the_same_case_at_every_start(
        prefix: str, tmp_path: Path) -> None:
    settings = hub_settings(prefix, policy_file=sharepoint_only(tmp_path))
    with sandbox([label for label in LABELS if label != "DE-Engagement-10y"]) as systems, capture_logs() as logs:
        runtime = runtime_on(systems, settings)
        with runtime.subscription("hub.exception.raised.v1") as receive, hub_worker(runtime):
            alert = receive(30.0)
        assert alert is not None
        data = runtime.registry.decode("hub.exception.raised.v1", alert.body)
        assert (data["owner"], data["kind"], data["subject"]) == (
            "records_management", "provisioning.retention_label_unpublished", "DE-Engagement-10y")
        assert data["project"] is None and data["event_id"] is None
        restarted = runtime_on(systems, settings)

        def published() -> list[str]:
            hops = restarted.flight.hops(data["exception_id"])
            return sorted(hop.actor for hop in hops if hop.outcome == "published")

        assert published() == ["exception_inbox", "fanout"]  # on the topic, and kept in the inbox
        with hub_worker(restarted):  # a restart raises the same case (the same event id) again
            assert wait_until(lambda: published() == ["exception_inbox", "exception_inbox", "fanout", "fanout"],
                              timeout=30)
    [warning, again] = unpublished(logs)
    assert warning["labels"] == again["labels"] == ["DE-Engagement-10y"]
    assert systems.graph_token not in str(warning)


def test_with_matters_on_box_each_platform_missing_a_label_raises_its_own_case(prefix: str) -> None:
    """The default policy keeps Corporate matters on Box: SharePoint's tenant and Box's enterprise are each
    checked, and each one lacking the label is its own case."""
    with sandbox([label for label in LABELS if label != "DE-Engagement-10y"]) as systems, capture_logs() as logs:
        runtime = runtime_on(systems, hub_settings(prefix))
        cases: dict[str, str] = {}
        with runtime.subscription("hub.exception.raised.v1") as receive, hub_worker(runtime):
            while len(cases) < 2:
                alert = receive(30.0)
                assert alert is not None
                data = runtime.registry.decode("hub.exception.raised.v1", alert.body)
                assert (data["kind"], data["subject"]) == ("provisioning.retention_label_unpublished",
                                                           "DE-Engagement-10y")
                cases[data["exception_id"]] = data["detail"]
    assert sorted("(box)" in detail for detail in cases.values()) == [False, True]
    assert sorted(str(line["platform"]) for line in unpublished(logs)) == ["box", "sharepoint"]


@pytest.mark.parametrize(("labels", "faults", "said"), [
    (None, None, "retention labels not checked at start: the tenant does not let the app list them (403)"),
    (LABELS, FaultPlan(outage=True, retry_after_s=0),
     "retention labels not checked at start: the tenant's labels could not be read"),
])
def test_a_worker_whose_tenant_hides_its_labels_or_whose_graph_is_down_says_so_and_keeps_consuming(
        prefix: str, labels: list[str] | None, faults: FaultPlan | None, said: str) -> None:
    with sandbox(labels, faults) as systems, capture_logs() as logs, \
            hub_worker(runtime_on(systems, hub_settings(prefix))) as worker:
        assert wait_until(lambda: any(line["event"] == said for line in logs), timeout=30)
        assert worker.is_alive()  # still consuming
    assert not unpublished(logs)
