"""The hub's settings, read from ``HUB_*`` environment variables by pydantic-settings.

The runtime's own are :class:`Settings`; each connector has its own model (``HUB_ERP_*``, ...) in
``connectors.settings``. The composition root loads them once at start and refuses an unknown
``HUB_*`` variable (:func:`unknown_variables`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.endpoints import SentinelAddress, amqp_urls, is_sentinel
from hub.errors import ConfigurationError

#: Prefix of every environment variable the hub reads.
ENV_PREFIX = "HUB_"
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class Settings(BaseSettings):
    """Everything the hub can be told from outside, validated at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_file=None, case_sensitive=False
    )

    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/%2F",
        description="RabbitMQ connection URL, or several separated by commas (a cluster's nodes, tried in turn).",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis connection URL, or redis+sentinel://host:port[,host:port...]/service[/db] for the primary "
                    "the sentinels name.",
    )
    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/hub",
        description="The database of the records a firm cannot lose (PostgreSQL; created when missing; "
                    "tables in the schema named after HUB_QUEUE_PREFIX). sqlite:///path for a single process.",
    )
    http_bind: str = Field(default="127.0.0.1:8080",
                           description="host:port the HTTP ingress listens on (port 0: any free port).")
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="The ingress's address as consumers reach it: every event's dataschema is a URL under it "
                    "(<public_url>/v1/schemas/<type>/<version>), and the AsyncAPI document names it.",
    )
    events_max_age: str = Field(
        default="7D", pattern=r"^[1-9][0-9]*[YMDhms]$",
        description="How long the history stream of the topic exchange keeps an event (RabbitMQ's x-max-age: "
                    "a number and Y, M, D, h, m or s).",
    )
    events_max_bytes: int = Field(
        default=10 * 1024**3, ge=1_048_576,
        description="The most the history stream keeps on disk, in bytes (x-max-length-bytes); the oldest "
                    "segments go first.",
    )
    metrics_bind: str = Field(default="127.0.0.1:9191",
                              description="host:port a worker serves /metrics on (port 0: any free port; 'off': "
                                          "none); `hub worker --processes N` serves every process's there.")
    operators_file: Path | None = Field(
        default=None, description="YAML file of the console's operators (name, role, SHA-256 of their key); unset: "
                                  "no console.")
    console_secret: SecretStr | None = Field(
        default=None, description="Key signing the console's sessions (unset: a random one per process).")
    trace_ui_url: str | None = Field(
        default=None, description="A trace's page in the tracing UI, with {trace_id} (Jaeger: "
                                  "http://127.0.0.1:16686/trace/{trace_id}); the console links to it.")
    scheduler: Literal["on", "off"] = Field(
        default="on", description="'on': worker processes run the scheduled jobs (each run once across them).")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=64 * 1_048_576,
                                description="Largest request body the ingress reads.")
    sources_file: Path | None = Field(default=None, description="YAML file of publishing sources.")
    policy_file: Path | None = Field(default=None, description="YAML policy file.")
    mapping_file: Path | None = Field(default=None, description="YAML master-data mapping rules.")
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
                              description="Prefix of every queue name and Redis key, and the database schema.")
    lease_ttl_ms: int = Field(default=30_000, ge=1_000, description="Idempotency lease lifetime.")
    lock_ttl_ms: int | None = Field(
        default=None, ge=100,
        description="Lifetime of every actor's entity locks (how long a worker that died holding one blocks its "
                    "entity); unset: each actor's own.",
    )
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
    prerequisite_wait_s: int = Field(
        default=3_600, ge=1,
        description="How long a message waits, with backoff, for a prerequisite that does not exist yet (a "
                    "project's workspace, a project the ERP does not know yet) before it is dead-lettered and "
                    "raised to the actor's owner.",
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

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        """The RabbitMQ URLs of ``amqp_url``, in the order they are tried."""
        return amqp_urls(self.amqp_url)

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls(cls, value: str) -> str:
        amqp_urls(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if is_sentinel(value):
            SentinelAddress.parse(value)
        elif not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "sqlite://", "sqlite+pysqlite://")):
            raise ValueError("must start with postgresql://, postgresql+psycopg:// or sqlite:///")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or value.endswith("/"):
            raise ValueError("must be an http:// or https:// URL without a trailing slash")
        return value
    @field_validator("metrics_bind")
    @classmethod
    def _metrics_bind(cls, value: str) -> str:
        return value if value == "off" else _host_port(value)

    @field_validator("http_bind")
    @classmethod
    def _http_bind(cls, value: str) -> str:
        return _host_port(value)


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be host:port (port 0: any free port, logged at start)")
    return value


def environ() -> dict[str, str]:
    """The process environment, for the secrets a file or a command names by variable (``secret_env`` in
    the sources file, a simulator's keys): with the settings, the only reads of the environment."""
    return dict(os.environ)


#: What a model-wide check of a prefix's settings is about (a connector's names its variables in its message).
_WHOLE = {ENV_PREFIX: "OTLP_ENDPOINT"}


def _describe(exc: ValidationError, prefix: str) -> str:
    """One message naming each bad setting by its variable (never quoting the value: it may be a secret)."""
    problems = "; ".join(
        f"{prefix}{'.'.join(str(p) for p in err['loc']).upper() or _WHOLE.get(prefix, '*')}: {err['msg']}"
        for err in exc.errors()
    )
    return f"invalid settings: {problems}"


def load(model: type[SettingsT], **overrides: object) -> SettingsT:
    """Settings of ``model`` from its ``HUB_*`` variables (pydantic-settings reads them), ``overrides``
    first; a ConfigurationError names each bad variable."""
    try:
        return model.model_validate(overrides)  # the settings sources (environment) fill in the rest
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix") or "")
        raise ConfigurationError(_describe(exc, prefix)) from None


def load_settings(**overrides: object) -> Settings:
    """The hub's settings (see :func:`load`)."""
    return load(Settings, **overrides)


def unknown_variables(*models: type[BaseSettings]) -> list[str]:
    """``HUB_*`` variables of the environment that no settings model reads: a typo must not silently
    fall back to a default. The composition root checks them against every model it uses."""
    known = {f"{str(m.model_config.get('env_prefix') or '').upper()}{name.upper()}"
             for m in models for name in m.model_fields}
    return sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
