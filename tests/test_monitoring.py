"""The dashboards and alerts in the repository: the Grafana dashboard and the Prometheus rules parse, every metric
they name is one the hub exports, and the compose file runs Prometheus (scraping the ingress and every worker)
and Grafana (the dashboard provisioned) under the ``monitoring`` profile."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from observability import metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "hub.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
_NAME = re.compile(r"\bhub_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported() -> set[str]:
    """Every metric name the hub exports, as Prometheus sees it (a counter with ``_total``, a histogram's series)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(f"{value._name}_total")
        elif isinstance(value, Histogram):
            names.update(f"{value._name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        elif isinstance(value, Gauge):
            names.add(value._name)
        elif isinstance(value, str) and value.startswith("hub_"):
            names.add(value)  # a gauge a scrape collector exports
    return names


def dashboard_queries() -> list[str]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_name_is_exported_by_the_hub() -> None:
    named = {name for query in dashboard_queries() + [rule["expr"] for rule in alert_rules()]
             for name in _NAME.findall(query)}
    assert named, "no hub metric named"
    assert sorted(named - exported()) == []


def test_the_alerts_cover_what_an_operator_must_hear_of() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for alert in ("HubDeadLettersGrowing", "HubCircuitBreakerOpen", "HubInvoiceHeldTooLong",
                  "HubGraphSubscriptionExpiring", "HubExceptionsUnacknowledged"):
        assert alert in rules
        assert rules[alert]["labels"]["severity"] in {"warning", "critical"}
        assert rules[alert]["annotations"]["summary"]


def test_the_dashboard_is_one_grafana_dashboard_on_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "hub-overview" and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])} \
        == {uid}


@pytest.fixture
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_prometheus_and_grafana_run_under_the_monitoring_profile_with_their_files_mounted(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["hub-ingress"]["static_configs"][0]["targets"] == ["ingress:8080"]
    assert jobs["hub-worker"]["dns_sd_configs"][0]["port"] == 9191
    assert services["worker"]["environment"]["HUB_METRICS_BIND"] == "0.0.0.0:9191"
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]
