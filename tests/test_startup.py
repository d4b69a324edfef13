"""`hub serve` and `hub worker` started while RabbitMQ and Redis are down: they say which server did not
answer, refuse events (503) instead of accepting them into memory, and work once the servers answer."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.topics import exchange_name, rabbit_subscription
from tests.conftest import ROOT, worker_env
from tests.support.ingress import write_sources
from tests.support.netproxy import TcpProxy
from tests.support.rabbit import AMQP_URL, wait_until
from tests.test_ingress_app import bearer, sdk_event, structured

pytestmark = pytest.mark.integration


class Process:
    """A hub command in a subprocess, its stderr collected line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], *, stdout: Any = subprocess.DEVNULL) -> None:
        self.popen = subprocess.Popen([sys.executable, "-m", "hub", *args], env=env, cwd=ROOT,
                                      stdout=stdout, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        self.popen.stderr.close()
        self.popen.wait()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first stderr line matching ``pattern``, waiting for it to be written."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((m for line in self.lines if (m := regex.search(line))), None)
                or self.popen.poll() is not None, timeout)
        match = next((m for line in self.lines if (m := regex.search(line))), None)
        assert found and match, f"no line matching {pattern!r}:\n{''.join(self.lines)}"
        return match

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=60)


@contextmanager
def hub_process(args: list[str], env: dict[str, str], *, stdout: Any = subprocess.DEVNULL) -> Iterator[Process]:
    process = Process(args, env, stdout=stdout)
    try:
        yield process
    finally:
        if process.popen.poll() is None:
            process.popen.kill()
        process.popen.wait(timeout=30)


def test_serve_and_worker_wait_for_servers_that_start_later_and_never_accept_into_memory(
    prefix: str, tmp_path: Path
) -> None:
    rabbit = TcpProxy(("127.0.0.1", 5672), up=False)
    cache = TcpProxy(("127.0.0.1", 6379), up=False)
    database = TcpProxy(("127.0.0.1", 5432), up=False)
    path, creds = write_sources(tmp_path)
    amqp_url = f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F"
    env = worker_env(prefix, HUB_EMBEDDED="auto", HUB_AMQP_URL=amqp_url,
                     HUB_REDIS_URL=f"redis://127.0.0.1:{cache.port}/0", HUB_SOURCES_FILE=str(path),
                     HUB_HTTP_BIND="127.0.0.1:0", HUB_LOG_LEVEL="INFO", HUB_LOG_FORMAT="json",
                     HUB_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{database.port}/hub_test")
    headers, body = structured(sdk_event("evt-late-servers"))
    try:
        with hub_process(["serve"], env) as serve, hub_process(["worker", "--threads", "2"], env) as worker:
            port = int(serve.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
            url = f"http://127.0.0.1:{port}"
            serve.wait_for(rf"RabbitMQ does not answer at amqp://\*\*\*@127\.0\.0\.1:{rabbit.port}/")
            worker.wait_for(rf"RabbitMQ does not answer at amqp://\*\*\*@127\.0\.0\.1:{rabbit.port}/")
            worker.wait_for(rf"Redis does not answer at redis://127\.0\.0\.1:{cache.port}/0")
            worker.wait_for(rf"PostgreSQL does not answer at postgresql\+psycopg://\*\*\*@127\.0\.0\.1:{database.port}/")
            serve.wait_for(rf"Redis does not answer at redis://127\.0\.0\.1:{cache.port}/0")
            assert "EMBEDDED" not in "".join(serve.lines + worker.lines)
            assert "guest:guest" not in "".join(serve.lines + worker.lines)
            assert httpx.get(f"{url}/readyz").status_code == 503
            refused = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)}, timeout=30)
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")

            with rabbit_subscription(AMQP_URL, "erp.project.created.v1", exchange=exchange_name(prefix)) as receive:
                rabbit.restore()
                cache.restore()
                database.restore()
                assert wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=60)
                accepted = httpx.post(f"{url}/v1/events", content=body, headers={**headers, **bearer(creds)},
                                      timeout=30)
                assert accepted.status_code == 202, accepted.text
                worker.wait_for("RabbitMQ, Redis and the database answer; starting the consumers")
                delivery = None
                for _ in range(20):
                    delivery = receive(5.0)
                    if delivery is None or delivery.event().get_id() == "evt-late-servers":
                        break
                assert delivery is not None and delivery.event().get_id() == "evt-late-servers"
            # uvicorn shuts down gracefully, then re-raises the signal it caught: exit by SIGTERM.
            assert serve.stop() in (0, -signal.SIGTERM)
            serve.wait_for("Application shutdown complete")
            assert worker.stop() == 0
            for line in serve.lines + worker.lines:
                if line.startswith("{"):
                    json.loads(line)  # every log line stays one JSON object
    finally:
        rabbit.close()
        cache.close()
        database.close()
