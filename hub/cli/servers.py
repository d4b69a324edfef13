"""``hub serve`` and ``hub worker``: the long-running processes. They use the real servers unless
HUB_EMBEDDED=on, and wait for them rather than fall back to memory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import click

from hub.cli.common import Config, log_for_server, pass_config
from hub.cli.compose import build_app, build_ingress
from hub.runtime import Runtime, embedded_requested
from hub.settings import environ
from observability.logging import mask_text


def mode(runtime: Runtime) -> str:
    """How the process runs, for its first line (credentials masked)."""
    if runtime.embedded:
        return "EMBEDDED (HUB_EMBEDDED=on: StubBroker, in-process Redis; nothing is persisted)"
    settings = runtime.settings
    return f"RabbitMQ {mask_text(settings.amqp_url)}, Redis {mask_text(settings.redis_url)}"


@click.command()
@click.option("--threads", default=8, show_default=True, help="Worker threads per process.")
@click.option("--processes", default=1, show_default=True, help="Worker processes.")
@click.option("--heartbeat-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Touched every few seconds while RabbitMQ and Redis answer (for a container healthcheck).")
@pass_config
def worker(config: Config, threads: int, processes: int, heartbeat_file: Path | None) -> None:
    """Run the actors: consume every actor queue until SIGTERM or Ctrl-C.

    Waits for RabbitMQ and Redis at start (never falls back to the embedded mode unless HUB_EMBEDDED=on);
    stops (exit 1) when one refuses the credentials a few times in a row.
    """
    if processes > 1:
        sys.exit(_processes(config, threads=threads, processes=processes, heartbeat_file=heartbeat_file))
    from hub.workers import run_worker

    settings = config.settings
    log_for_server(settings)
    runtime = build_app(settings, embedded=embedded_requested(settings), connections=config.connections,
                        migrate=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"hub worker: {mode(runtime)}, {threads} threads, pid {os.getpid()}", err=True)
    run_worker(runtime, threads=threads, stop=stop, heartbeat_file=heartbeat_file)


def _processes(config: Config, *, threads: int, processes: int, heartbeat_file: Path | None) -> int:
    """``hub worker --processes N``: N worker processes writing their metrics to one multiprocess folder
    (``PROMETHEUS_MULTIPROC_DIR``, a fresh one unless set), this one serving them all on ``HUB_METRICS_BIND``."""
    from prometheus_client.multiprocess import mark_process_dead

    from hub.exposition import metrics_folder, worker_metrics

    settings = config.settings
    log_for_server(settings)
    folder, made = metrics_folder(environ().get("PROMETHEUS_MULTIPROC_DIR"))
    env = {**environ(), "PROMETHEUS_MULTIPROC_DIR": folder, "HUB_METRICS_BIND": "off"}
    beat = ["--heartbeat-file", str(heartbeat_file)] if heartbeat_file else []
    children = [
        subprocess.Popen([sys.executable, "-m", "hub", "worker", "--threads", str(threads), *beat],  # noqa: S603
                         env=env)
        for _ in range(processes)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    runtime = build_app(settings, embedded=embedded_requested(settings), connections=config.connections,
                        migrate=False)
    metrics = worker_metrics(runtime, path=folder)
    try:
        codes = []
        for child in children:
            codes.append(child.wait())
            mark_process_dead(child.pid, folder)  # type: ignore[no-untyped-call]
        return max(codes)
    finally:
        if metrics is not None:
            metrics.stop()
        runtime.close()
        if made:
            shutil.rmtree(folder, ignore_errors=True)


@click.command()
@pass_config
def serve(config: Config) -> None:
    """Run the HTTP ingress on HUB_HTTP_BIND (sources from HUB_SOURCES_FILE).

    Answers /readyz and every event with 503 until RabbitMQ and Redis answer (never falls back to the
    embedded mode unless HUB_EMBEDDED=on); stops (exit 1) when one refuses the credentials a few times in
    a row.
    """
    from hub.cli.compose import sources_from_settings
    from hub.ingress.server import run_server

    settings = config.settings
    log_for_server(settings)
    sources = sources_from_settings(settings, environ())
    runtime = build_app(settings, embedded=embedded_requested(settings), connections=config.connections,
                        migrate=False)
    host, _, port = settings.http_bind.rpartition(":")
    click.echo(f"hub serve: {mode(runtime)}, {len(sources)} source(s), http://{host}:{port}", err=True)
    stop = threading.Event()
    if not runtime.embedded:  # the embedded database was made up to date when it was built
        threading.Thread(target=_upgrade_when_the_database_answers, args=(runtime, stop), daemon=True,
                         name="hub-db-upgrade").start()
    try:
        run_server(build_ingress(runtime, sources=sources), host=host.strip("[]"), port=int(port),
                   links=runtime.links)
    finally:
        stop.set()


def _upgrade_when_the_database_answers(runtime: Runtime, stop: threading.Event) -> None:
    """The ingress's queries (the hard-stop check) read the database: bring its tables up to date once it
    answers (until then they answer 503), as a worker does at start."""
    from hub.errors import StoreUnavailable
    from hub.probes import servers_of, wait_for_servers

    while wait_for_servers(servers_of([runtime.database_link]), stop=stop):
        try:
            runtime.upgrade_database()
            return
        except StoreUnavailable:  # lost again between the probe and the migration
            if stop.wait(1.0):
                return
