"""Settings: the hub's and each connector's, from HUB_* variables, failing at start naming the bad one."""

from __future__ import annotations

import pytest

from hub.cli.common import Config
from hub.errors import ConfigurationError
from hub.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HUB_* variable of the machine running the tests leaks in."""
    import os

    for name in [k for k in os.environ if k.upper().startswith("HUB_")]:
        monkeypatch.delenv(name)


def test_defaults_point_at_the_local_servers() -> None:
    config = Config.load()
    assert config.settings.amqp_url.startswith("amqp://")
    assert config.settings.redis_url == "redis://127.0.0.1:6379/0"
    assert config.settings.embedded == "auto"
    assert config.connections.erp.url == "http://127.0.0.1:8091"
    assert config.connections.graph.library == "workspaces" and config.connections.graph.drive_id is None


def test_an_unknown_hub_variable_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_AMQP_ULR", "amqp://x")
    with pytest.raises(ConfigurationError, match="HUB_AMQP_ULR"):
        Config.load()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HUB_AMQP_URL", "http://127.0.0.1:5672"),
        ("HUB_REDIS_URL", "127.0.0.1:6379"),
        ("HUB_HTTP_BIND", "no-port"),
        ("HUB_EMBEDDED", "sometimes"),
        ("HUB_LEASE_TTL_MS", "ten"),
        ("HUB_MAX_BACKOFF_MS", str(60 * 60_000)),
    ],
)
def test_an_invalid_value_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


def test_variables_of_other_programs_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("HUBBLE", "x")
    monkeypatch.setenv("HUB_HTTP_BIND", "0.0.0.0:9000")
    assert Config.load().settings.http_bind == "0.0.0.0:9000"


def test_the_otlp_exporter_without_an_endpoint_fails_naming_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TRACE_EXPORTER", "otlp")
    with pytest.raises(ConfigurationError, match="HUB_OTLP_ENDPOINT"):
        load_settings()


def test_each_connector_reads_its_own_variables_and_hides_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ERP_URL", "https://erp.example.com/api/v1")
    monkeypatch.setenv("HUB_ERP_TOKEN", "erp-secret-value")
    monkeypatch.setenv("HUB_GRAPH_CLIENT_STATE", "graph-secret-state")
    config = Config.load()
    assert config.connections.erp.url == "https://erp.example.com/api/v1"
    assert config.connections.erp.token.get_secret_value() == "erp-secret-value"
    assert "erp-secret-value" not in repr(config) and "graph-secret-state" not in repr(config)


@pytest.mark.parametrize(("name", "value"), [("HUB_ERP_URL", "ftp://erp.example.com"),
                                           ("HUB_GRAPH_DRIVE_ID", ""), ("HUB_DOCUSIGN_URL", "docusign")])
def test_a_bad_connector_value_names_its_variable_not_its_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name) as caught:
        Config.load()
    assert value not in str(caught.value) or not value


def test_an_unknown_connector_variable_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ERP_ULR", "https://erp.example.com")
    with pytest.raises(ConfigurationError, match="HUB_ERP_ULR"):
        Config.load()
