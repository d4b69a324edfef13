"""The hub's one settings object, read from ``HUB_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.errors import ConfigurationError

#: Prefix of every environment variable the hub reads.
ENV_PREFIX = "HUB_"


class Settings(BaseSettings):
    """Everything the hub can be told from outside, validated at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_file=None, case_sensitive=False
    )

    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/%2F", description="RabbitMQ connection URL."
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis connection URL.")
    http_bind: str = Field(default="127.0.0.1:8080",
                           description="host:port the HTTP ingress listens on (port 0: any free port).")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=64 * 1_048_576,
                                description="Largest request body the ingress reads.")
    sources_file: Path | None = Field(default=None, description="YAML file of publishing sources.")
    policy_file: Path | None = Field(default=None, description="YAML policy file.")
    mapping_file: Path | None = Field(default=None, description="YAML master-data mapping rules.")
    erp_url: str = Field(default="http://127.0.0.1:8091",
                         description="Base URL of the ERP API (or its simulator).")
    erp_token: SecretStr = Field(default=SecretStr("erp-sim-token"), description="Bearer token for the ERP API.")
    graph_url: str = Field(default="http://127.0.0.1:8092/v1.0",
                           description="Base URL of Microsoft Graph, or of its simulator.")
    graph_token: SecretStr = Field(default=SecretStr("graph-sim-token"), description="Bearer token for Graph.")
    graph_drive_id: str = Field(default="workspaces", description="Drive (document library) holding workspaces.")
    graph_client_state: SecretStr | None = Field(
        default=None, description="clientState of the hub's Graph change-notification subscription.")
    docusign_url: str = Field(default="http://127.0.0.1:8093",
                              description="Base URL of the DocuSign eSignature API host (without /restapi).")
    docusign_token: SecretStr = Field(default=SecretStr("docusign-sim-token"),
                                      description="OAuth access token for the DocuSign account.")
    docusign_account_id: str = Field(default="acme-firm", description="DocuSign account id holding the envelopes.")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces."
    )
    trace_exporter: Literal["otlp", "console", "memory", "none"] = Field(
        default="none", description="Where spans go; 'otlp' needs otlp_endpoint."
    )
    embedded: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="'on': StubBroker and in-process Redis; 'off': real servers; 'auto': real servers, except "
                    "that the demo falls back to embedded when one does not answer.",
    )
    queue_prefix: str = Field(default="hub", pattern=r"^[a-zA-Z_][a-zA-Z0-9_-]*$",
                              description="Prefix of every queue name and Redis key.")
    lease_ttl_ms: int = Field(default=30_000, ge=1_000, description="Idempotency lease lifetime.")
    done_ttl_s: int = Field(default=30 * 86_400, ge=60, description="How long 'done' marks are kept.")
    flight_ttl_s: int = Field(default=7 * 86_400, ge=60, description="How long flight records are kept.")
    max_retries: int = Field(default=12, ge=0, description="Retries before a message is dead-lettered.")
    min_backoff_ms: int = Field(default=1_000, ge=10, description="First retry delay.")
    max_backoff_ms: int = Field(
        default=15 * 60_000,
        ge=100,
        le=25 * 60_000,
        description="Longest retry delay; kept below RabbitMQ's 30 min consumer_timeout.",
    )
    delivery_limit: int = Field(
        default=5, ge=1, description="Deliveries of one message before it is parked as poison."
    )
    log_format: Literal["json", "console"] = Field(default="json", description="Log line format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Lowest level logged.")

    @model_validator(mode="after")
    def _otlp_needs_endpoint(self) -> Settings:
        if self.trace_exporter == "otlp" and not self.otlp_endpoint:
            raise ValueError("otlp_endpoint is required when trace_exporter is 'otlp'")
        return self

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("http_bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port (port 0: any free port, logged at start)")
        return value


def environ() -> dict[str, str]:
    """The process environment, for the secrets a file or a command names by variable (``secret_env`` in
    the sources file, a simulator's keys): with the settings, the only reads of the environment."""
    import os

    return dict(os.environ)


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings, turning validation failures into one error naming each bad setting.

    Unknown ``HUB_*`` variables are refused too: a typo must not silently fall back to a default.
    """
    import os

    env = dict(os.environ if environ is None else environ)
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}")
    values: dict[str, object] = {
        k[len(ENV_PREFIX):].lower(): v for k, v in env.items() if k.upper().startswith(ENV_PREFIX)
    }
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper() or 'OTLP_ENDPOINT'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
