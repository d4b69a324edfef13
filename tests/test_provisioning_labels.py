"""Provisioning and the tenant's published retention labels: a label the tenant does not publish is left
off the workspace and becomes an exception for records management, not a failed (dead-lettered) run."""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from actors.provisioning import Provisioning
from actors.provisioning.labels import LabelCheck
from connectors.sharepoint.platform import GraphPlatform
from hub.actor import RecordingEmitter
from hub.crosswalk import SqlCrosswalk
from hub.errors import UpstreamUnavailable
from tests.support.fakes import FakeErp, FakeGraph
from tests.test_actors_unit import (
    POLICY,
    REGISTRY,
    SPECS,
    WS,
    T,
    context,
    crosswalk,
    erp_project,
    project_event,
    provisioning,
)

__all__ = ["crosswalk"]  # the fixture, shared with the actors' unit tests


def run(actor: Provisioning, project_code: str, emitter: RecordingEmitter, n: int) -> None:
    """Deliver one ``erp.project.created.v1`` for the project."""
    project = actor.erp.get_project(project_code)
    actor.handle(context(actor.spec, "erp.project.created.v1", project_event(project), emitter,
                         id=f"project:{project_code}:{n}", time=T - timedelta(seconds=3)))


def test_an_unpublished_label_is_left_off_and_raised_for_records_management_once(crosswalk: SqlCrosswalk) -> None:
    project = erp_project("ENG-1", engagement_type="consulting", practice="Strategy", region="EU", country="DE")
    graph = FakeGraph(labels=POLICY.retention.all_labels() - {"DE-Engagement-10y"})
    actor, emitter = provisioning(FakeErp(project), graph, crosswalk), RecordingEmitter()
    run(actor, "ENG-1", emitter, 1)
    assert graph.held_label(WS) is None and graph.held_label(f"{WS}/Contracts") == "DE-Contract-10y"
    assert graph.held_fields(WS)["ProjectCode"] == "ENG-1" and "ProjectCode" in graph.columns
    assert ("ensure_retention_label", WS, "DE-Engagement-10y") not in graph.writes  # checked before, not tried
    types = [e.get_type() for e in emitter.events]
    assert types == ["hub.exception.raised.v1", "dms.workspace.provisioned.v1"]
    raised = REGISTRY.decode("hub.exception.raised.v1", emitter.events[0].get_data())
    assert raised["owner"] == "records_management" and raised["kind"] == "provisioning.retention_label_missing"
    assert "DE-Engagement-10y" in raised["detail"] and raised["subject"] == "ENG-1"
    run(actor, "ENG-1", emitter, 2)  # still unpublished: the same case, by id
    again = [e for e in emitter.events if e.get_type() == "hub.exception.raised.v1"]
    assert len({e.get_id() for e in again}) == 1
    graph.labels = POLICY.retention.all_labels()  # published since: the next run applies it
    run(actor, "ENG-1", emitter, 3)
    assert graph.held_label(WS) == "DE-Engagement-10y"


def test_labels_the_app_cannot_list_are_applied_without_a_check(crosswalk: SqlCrosswalk) -> None:
    project = erp_project("ENG-2", engagement_type="consulting", practice="Strategy", region="EU", country="DE")
    graph = FakeGraph(labels=None)
    actor, emitter = provisioning(FakeErp(project), graph, crosswalk), RecordingEmitter()
    run(actor, "ENG-2", emitter, 1)
    assert graph.held_label("Engagements/ACME/ENG-2") == "DE-Engagement-10y"
    assert [e.get_type() for e in emitter.events] == ["dms.workspace.provisioned.v1"]


class UnreachableGraph(FakeGraph):
    """Graph that does not answer: every read of the published labels fails as the client's retries give up."""

    def published_labels(self, *, refresh: bool = False) -> frozenset[str] | None:
        raise UpstreamUnavailable("graph: GET security/labels/retentionLabels: 503 serviceNotAvailable")


def test_at_start_each_unpublished_label_is_named_once_and_raised_to_records_management_as_the_same_case() -> None:
    graph = FakeGraph(labels=POLICY.retention.all_labels() - {"DE-Engagement-10y", "Client-GLOBEX-Matter-25y"})
    check = LabelCheck(policy=POLICY, platform=GraphPlatform(graph), spec=SPECS["provisioning"])
    emitter = RecordingEmitter()
    with capture_logs() as logs:
        assert check(emitter, REGISTRY) == ["Client-GLOBEX-Matter-25y", "DE-Engagement-10y"]
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert warning["labels"] == ["Client-GLOBEX-Matter-25y", "DE-Engagement-10y"]
    raised = [REGISTRY.decode("hub.exception.raised.v1", e.get_data()) for e in emitter.events]
    assert [(r["owner"], r["kind"], r["subject"]) for r in raised] == [
        ("records_management", "provisioning.retention_label_unpublished", "Client-GLOBEX-Matter-25y"),
        ("records_management", "provisioning.retention_label_unpublished", "DE-Engagement-10y")]
    assert "'DE-Engagement-10y'" in raised[1]["detail"] and raised[1]["event_id"] is None
    first = [e.get_id() for e in emitter.events]
    check(emitter, REGISTRY)  # a restart: the same cases, by id
    assert [e.get_id() for e in emitter.events[2:]] == first and len(set(first)) == 2


def test_at_start_a_tenant_publishing_every_label_or_hiding_them_or_away_raises_nothing() -> None:
    emitter = RecordingEmitter()
    with capture_logs() as logs:
        for graph in (FakeGraph(labels=POLICY.retention.all_labels()), FakeGraph(labels=None), UnreachableGraph()):
            assert LabelCheck(policy=POLICY, platform=GraphPlatform(graph),
                              spec=SPECS["provisioning"])(emitter, REGISTRY) == []
    assert emitter.events == []
    said = [(line["log_level"], line["event"]) for line in logs]
    assert said == [
        ("info", "retention labels not checked at start: the tenant does not let the app list them (403)"),
        ("warning", "retention labels not checked at start: the tenant's labels could not be read")]
