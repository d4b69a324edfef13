"""The processes of a benchmark run: the ingress (``bench.hubproc``: ``hub serve`` on the measured flow's routes),
hub workers (``hub worker``) and bare workers.

Every process gets a clean environment: no inherited ``HUB_*`` variable, the run's queue prefix, the real
servers (``HUB_EMBEDDED=off``) and warnings-only logs (the hub logs nothing per message at ``INFO`` either).
Their stderr goes to a file in the run's work directory, shown when one fails to start.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pika
import pika.exceptions

from bench.common import AMQP_URL, ROOT, BenchError, free_port, peak_rss_mb
from hub.endpoints import amqp_parameters

#: How long a process may take to be ready (imports, connections, queue declarations).
START_S = 90.0
#: How long a process may take to stop after SIGTERM before it is killed.
STOP_S = 30.0
#: The environment variable holding the benchmark source's webhook secret (``secret_env`` in the file).
SECRET_ENV = "BENCH_WEBHOOK_SECRET"
#: The CloudEvents source the benchmark's ERP claims.
BENCH_SOURCE = "erp-sim://bench/load"
#: How many ports the ingress is started on before giving up (one taken by another process is retried).
BIND_ATTEMPTS = 5
#: What uvicorn logs when it cannot bind its port (asyncio's message: ``os.strerror(EADDRINUSE)``, lower case).
_ADDRESS_IN_USE = os.strerror(errno.EADDRINUSE).lower()


def hub_env(prefix: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a hub process of this run."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("HUB_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({"HUB_QUEUE_PREFIX": prefix, "HUB_EMBEDDED": "off", "HUB_LOG_LEVEL": "WARNING",
                "HUB_TRACE_EXPORTER": "none"})
    env.update(extra or {})
    return env


def new_webhook_secret() -> str:
    """A Standard Webhooks secret (``whsec_`` + base64 of 32 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def write_sources_file(directory: Path, *, quota: str = "100000/10 seconds") -> Path:
    """The run's sources file: one ERP source signing with the secret read from ``$BENCH_WEBHOOK_SECRET``.

    The quota is far above what the run sends (at most about 1,500 events/s), so it is checked on every
    request (the moving window in Redis, as in production) but never refuses; its short window keeps the
    window's Redis list near the size a production quota has, instead of growing with the whole run.
    """
    path = directory / "sources.yaml"
    path.write_text(f"""\
sources:
  - id: erp-bench
    description: the benchmark's simulated ERP
    sources: ["{BENCH_SOURCE}"]
    event_types: ["erp.*"]
    credentials:
      - {{scheme: standard_webhooks, secret_env: {SECRET_ENV}}}
    quota: {quota}
""")
    return path


@dataclass
class Proc:
    """One child process and where its stderr goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The end of its stderr."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def peak_rss_mb(self) -> float | None:
        """Its peak RSS so far (``VmHWM``), in MiB."""
        return peak_rss_mb(self.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_S`."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                print(f"{self.name} (pid {self.pid}) did not stop in {STOP_S:.0f} s; killing it", file=sys.stderr)
                self.popen.kill()
                self.popen.wait(timeout=10)
        self.log_file.close()


def spawn(name: str, command: Sequence[str], env: Mapping[str, str], work_dir: Path) -> Proc:
    """Start ``command`` from the repository root, stderr and stdout to ``<work_dir>/<name>.log``."""
    log_path = work_dir / f"{name}.log"
    log_file = log_path.open("wb")
    popen = subprocess.Popen(list(command), cwd=ROOT, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT)
    return Proc(name, popen, log_path, log_file)


def _failed(proc: Proc, what: str) -> BenchError:
    return BenchError(f"{proc.name} (pid {proc.pid}) {what}; its output ends with:\n{proc.log_tail()}")


# -- the ingress ----------------------------------------------------------------------------------
@dataclass
class Ingress:
    """``python -m hub serve`` on a free port."""

    proc: Proc
    url: str


def start_ingress(prefix: str, work_dir: Path, *, secret: str, sources_file: Path,
                  extra_env: Mapping[str, str] | None = None, command: Sequence[str] | None = None) -> Ingress:
    """Start the ingress (``bench.hubproc ingress``: ``hub serve`` on the measured flow's routing table) and wait
    until ``/readyz`` answers 200 (RabbitMQ and Redis connected).

    The port comes from :func:`free_port`, which another process may take before the ingress binds it (a child
    started with a command line cannot be handed a bound socket): an ingress that exits saying its address is in
    use is started again on another port, up to :data:`BIND_ATTEMPTS` times.
    """
    for _ in range(BIND_ATTEMPTS):
        port = free_port()
        env = hub_env(prefix, {"HUB_SOURCES_FILE": str(sources_file), "HUB_HTTP_BIND": f"127.0.0.1:{port}",
                               SECRET_ENV: secret, **(extra_env or {})})
        proc = spawn("ingress", command or [sys.executable, "-m", "bench.hubproc", "ingress"], env, work_dir)
        url = f"http://127.0.0.1:{port}"
        if _await_ready(proc, url):
            return Ingress(proc, url)
        proc.stop()
    raise _failed(proc, f"found its port taken {BIND_ATTEMPTS} times")


def _await_ready(proc: Proc, url: str) -> bool:
    """Wait until ``url/readyz`` answers 200 (``True``), or the process exits because its port is taken (``False``);
    raise if it fails otherwise or takes longer than :data:`START_S`."""
    deadline = time.monotonic() + START_S
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not proc.alive():
                if _ADDRESS_IN_USE in proc.log_tail(50).lower():
                    return False
                raise _failed(proc, f"exited with {proc.popen.returncode} at start")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return True
            if time.monotonic() > deadline:
                proc.stop()
                raise _failed(proc, f"not ready after {START_S:.0f} s")
            time.sleep(0.1)


# -- workers --------------------------------------------------------------------------------------
def consumer_count(queue: str, *, amqp_url: str = AMQP_URL) -> int:
    """Consumers of ``queue`` (0 when it does not exist yet); ``amqp_url`` may name a cluster's nodes."""
    connection = pika.BlockingConnection(amqp_parameters(amqp_url))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()


def wait_consumers(procs: Sequence[Proc], queue: str, count: int, *, baseline: int = 0,
                   amqp_url: str = AMQP_URL) -> None:
    """Wait until ``queue`` has ``baseline + count`` consumers, failing if a process dies or it takes too long."""
    deadline = time.monotonic() + START_S
    while consumer_count(queue, amqp_url=amqp_url) < baseline + count:
        for proc in procs:
            if not proc.alive():
                raise _failed(proc, f"exited with {proc.popen.returncode} at start")
        if time.monotonic() > deadline:
            raise BenchError(f"{queue}: fewer than {count} consumers after {START_S:.0f} s")
        time.sleep(0.1)


def start_hub_workers(prefix: str, work_dir: Path, processes: int, *, threads: int = 8, tag: str = "worker",
                      extra_env: Mapping[str, str] | None = None, amqp_url: str = AMQP_URL,
                      baseline: int = 0) -> list[Proc]:
    """Start ``processes`` x ``python -m hub worker --threads N``; wait until each consumes ``<prefix>.fanout``
    (beside ``baseline`` consumers already there, on the RabbitMQ of ``amqp_url``, which ``extra_env`` gives the
    workers too when it is not the default)."""
    env = hub_env(prefix, extra_env)
    procs = [spawn(f"{tag}{i}", [sys.executable, "-m", "hub", "worker", "--threads", str(threads)], env, work_dir)
             for i in range(processes)]
    try:
        wait_consumers(procs, f"{prefix}.fanout", processes, baseline=baseline, amqp_url=amqp_url)
    except BaseException:
        stop_all(procs)
        raise
    return procs


def start_noop_workers(prefix: str, work_dir: Path, processes: int, *, threads: int = 8) -> list[Proc]:
    """Start ``processes`` bare Dramatiq workers (``bench/noop_worker.py``); wait until each consumes."""
    from bench.noop_worker import queue_name

    env = hub_env(prefix)
    command = [sys.executable, "-m", "bench.noop_worker", "--prefix", prefix, "--threads", str(threads)]
    procs = [spawn(f"noop{i}", command, env, work_dir) for i in range(processes)]
    try:
        wait_consumers(procs, queue_name(prefix), processes)
    except BaseException:
        stop_all(procs)
        raise
    return procs


def stop_all(procs: Sequence[Proc]) -> None:
    """SIGTERM every process at once, then wait for each (killing the stragglers)."""
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(OSError):
                proc.popen.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.stop()
