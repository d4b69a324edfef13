"""Shared fixtures: each test gets its own queue/key prefix on the real RabbitMQ and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import sqlalchemy
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import actors
from chaos.servers import PrivateRabbit
from hub.cli.compose import build_app
from hub.db import Database, connect_database, ensure_database, schema_name, upgrade
from hub.runtime import Runtime
from hub.settings import Settings, load_settings
from observability.logging import configure_logging
from observability.tracing import configure_tracing
from tests.support.rabbit import delete_queues, private_rabbit_node

ROOT = Path(__file__).resolve().parent.parent
#: The tests' database on the local PostgreSQL; each test's tables live in the schema of its prefix.
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/hub_test"


#: The user property in which each test of tests/test_convergence.py reports the delivery orders it tried (a report
#: reaches the main process under pytest-xdist too), and their count per scenario in this session, for the summary.
ORDERS_TRIED = "convergence_orders_tried"
_TRIED: dict[str, int] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--convergence-examples", type=int, default=2, metavar="N",
                     help="delivery orders tried per scenario by tests/test_convergence.py (default 2, a fixed "
                          "sequence; more are drawn at random, as `make converge` does)")


def configure_test_logging() -> None:
    """Every test process logs as a server does, to whatever stderr is at the time (never to stdout: a worker's thread
    logging while a test reads a command's JSON output would be read as that output)."""
    configure_logging(fmt="console", level="INFO")


def pytest_configure(config: pytest.Config) -> None:
    configure_test_logging()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == ORDERS_TRIED:
            scenario = report.nodeid.rsplit("[", 1)[-1].rstrip("]")
            _TRIED[scenario] = _TRIED.get(scenario, 0) + int(str(value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _TRIED:
        each = ", ".join(f"{name} {count}" for name, count in sorted(_TRIED.items()))
        terminalreporter.write_line(f"convergence: {sum(_TRIED.values())} delivery orders tried besides the "
                                    f"in-order runs ({each})")


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(autouse=True)
def sigterm_unwinds_the_test() -> None:
    """SIGTERM (a CI timeout, ``kill``) unwinds the running test as Ctrl-C does, so its ``finally`` blocks and
    fixtures stop what it started: by default the process ends at once and leaves the test's subprocesses and
    private servers running. Set again before each test: a command run in-process may have set its own."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(scope="session", autouse=True)
def test_database() -> None:
    """The tests' PostgreSQL database exists (created on first use)."""
    ensure_database(DATABASE_URL)


def drop_test_schema(prefix: str) -> None:
    """Remove the PostgreSQL schema of a test's prefix and its tables."""
    engine = sqlalchemy.create_engine(DATABASE_URL, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema_name(prefix)}" CASCADE'))
    finally:
        engine.dispose()


@contextmanager
def own_prefix() -> Iterator[str]:
    """A queue, Redis key and database schema prefix of its own while the block runs; its queues, keys and
    tables are removed afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        delete_queues(name)
        client = redis.Redis()
        keys = list(client.scan_iter(f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        drop_test_schema(name)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A queue, Redis key and database schema prefix of this test alone; its queues, keys and tables are
    removed afterwards."""
    with own_prefix() as name:
        yield name


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, prefix: str, tmp_path: Path) -> Iterator[Database]:
    """The hub's database with every table, on the real PostgreSQL (this test's schema) and on SQLite (the
    embedded mode's)."""
    url = DATABASE_URL if request.param == "postgresql" else f"sqlite:///{tmp_path}/hub.sqlite3"
    db = connect_database(url, prefix=prefix, embedded=False)
    upgrade(db, actors.MIGRATIONS)
    yield db
    db.close()


def hub_settings(prefix: str, **overrides: object) -> Settings:
    """Settings for the real servers with fast retries and short leases."""
    values: dict[str, object] = {
        "queue_prefix": prefix,
        "database_url": DATABASE_URL,
        "embedded": "off",
        "lease_ttl_ms": 1_000,
        "min_backoff_ms": 100,
        "max_backoff_ms": 2_000,
        "delivery_limit": 2,
        "log_format": "console",
        "metrics_bind": "127.0.0.1:0",  # a worker's /metrics on a free port: tests run side by side
        "scheduler": "off",  # the scheduled jobs run only where a test starts them
    }
    values.update(overrides)
    return load_settings(**values)





@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A private tracer provider recording spans in memory."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider made by the hub's own ``configure_tracing`` with the in-memory exporter."""
    provider, exporter = configure_tracing(exporter="memory", otlp_endpoint=None, service_name="test",
                                           set_global=False)
    assert exporter is not None
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def app(prefix: str, spans: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[Runtime]:
    """The hub wired on the real RabbitMQ and Redis."""
    runtime = build_app(hub_settings(prefix), embedded=False, tracer_provider=spans[0], span_exporter=spans[1])
    yield runtime
    runtime.close()


def worker_env(prefix: str, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess using this test's prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({
        "HUB_QUEUE_PREFIX": prefix,
        "HUB_DATABASE_URL": DATABASE_URL,
        "HUB_EMBEDDED": "off",
        "HUB_LEASE_TTL_MS": "1000",
        "HUB_MIN_BACKOFF_MS": "100",
        "HUB_MAX_BACKOFF_MS": "2000",
        "HUB_DELIVERY_LIMIT": "2",
        "HUB_METRICS_BIND": "127.0.0.1:0",
        "HUB_SCHEDULER": "off",
        "HUB_LOG_FORMAT": "console",
        "HUB_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def start_crash_worker(prefix: str, *args: str) -> subprocess.Popen[bytes]:
    """Start ``tests/support/crash_worker.py`` (with ``args``) in its own process (so SIGKILL kills only it)."""
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "crash_worker.py"), *args],
                            env=worker_env(prefix), cwd=ROOT)


@pytest.fixture
def private_rabbit() -> Iterator[PrivateRabbit]:
    """A private RabbitMQ node (about ten seconds to boot), stopped and removed afterwards: a memory alarm blocks
    every publishing connection of a node, and the shared broker on 5672 serves other test runs at the same time."""
    with private_rabbit_node() as node:
        yield node
