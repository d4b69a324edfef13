"""Settings: one object, HUB_ prefix, failing at start with the name of the bad setting."""

from __future__ import annotations

import pytest

from hub.errors import ConfigurationError
from hub.settings import load_settings


def test_defaults_point_at_the_local_servers() -> None:
    settings = load_settings({})
    assert settings.amqp_url.startswith("amqp://")
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.embedded == "auto"


def test_an_unknown_hub_variable_fails_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="HUB_AMQP_ULR"):
        load_settings({"HUB_AMQP_ULR": "amqp://x"})


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
def test_an_invalid_value_fails_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: value})


def test_variables_of_other_programs_are_ignored() -> None:
    settings = load_settings({"PATH": "/usr/bin", "HUBBLE": "x", "HUB_HTTP_BIND": "0.0.0.0:9000"})
    assert settings.http_bind == "0.0.0.0:9000"


def test_the_otlp_exporter_without_an_endpoint_fails_naming_the_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="HUB_OTLP_ENDPOINT"):
        load_settings({"HUB_TRACE_EXPORTER": "otlp"})
