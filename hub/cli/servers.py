"""``hub serve`` and ``hub worker``: the long-running processes. They use the real servers unless
HUB_EMBEDDED=on, and wait for them rather than fall back to memory."""

from __future__ import annotations

import os
import queue
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
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Ingress processes sharing HUB_HTTP_BIND's port (SO_REUSEPORT: the kernel spreads connections "
                   "over them); quotas, the replay guard and outcomes are shared through Redis. Not with "
                   "HUB_EMBEDDED=on.")
@click.option("--reuse-port", is_flag=True, hidden=True,
              help="Bind HUB_HTTP_BIND with SO_REUSEPORT: one of the processes of --workers.")
@pass_config
def serve(config: Config, workers: int, reuse_port: bool) -> None:
    """Run the HTTP ingress on HUB_HTTP_BIND (sources from HUB_SOURCES_FILE).

    Answers /readyz and every event with 503 until RabbitMQ and Redis answer (never falls back to the
    embedded mode unless HUB_EMBEDDED=on); stops (exit 1) when one refuses the credentials a few times in
    a row; exit 3 when it cannot start (the port is taken). With --workers N, N such processes share the
    port; when one stops, the others are stopped too, and the exit code is the first one's.
    """
    from hub.cli.compose import sources_from_settings
    from hub.ingress.server import reuse_port_socket, run_server

    settings = config.settings
    if workers > 1 and embedded_requested(settings):
        raise click.UsageError("--workers needs the real RabbitMQ and Redis: with HUB_EMBEDDED=on each process "
                               "would keep its own quotas, replay guard and outcomes in memory")
    log_for_server(settings)
    host, _, port = settings.http_bind.rpartition(":")
    host = host.strip("[]")
    if workers > 1:
        sys.exit(_serve_workers(host=host, port=int(port), workers=workers))
    sock = None
    if reuse_port:
        try:
            sock = reuse_port_socket(host, int(port))
        except OSError as error:
            click.echo(f"hub serve: cannot listen on {settings.http_bind}: {error}", err=True)
            sys.exit(3)
    sources = sources_from_settings(settings, environ())
    runtime = build_app(settings, embedded=embedded_requested(settings), connections=config.connections,
                        migrate=False)
    click.echo(f"hub serve: {mode(runtime)}, {len(sources)} source(s), http://{settings.http_bind.rpartition(':')[0]}"
               f":{port}, pid {os.getpid()}", err=True)
    stop = threading.Event()
    if not runtime.embedded:  # the embedded database was made up to date when it was built
        threading.Thread(target=_upgrade_when_the_database_answers, args=(runtime, stop), daemon=True,
                         name="hub-db-upgrade").start()
    try:
        run_server(build_ingress(runtime, sources=sources), host=host, port=int(port), links=runtime.links, sock=sock)
    finally:
        stop.set()


def _serve_workers(*, host: str, port: int, workers: int) -> int:
    """``hub serve --workers N``: hold the port, start N ``hub serve --reuse-port`` processes on it (writing their
    metrics to one multiprocess folder, so each one's /metrics counts them all), and wait for them.

    SIGTERM and SIGINT are passed on to every process, which shut down gracefully; this one then ends as a single
    ``hub serve`` would (by SIGTERM, or 0 after SIGINT). When a process stops on its own (credentials refused:
    1; it could not start: 3), the others are stopped and its exit code is this one's.
    """
    from prometheus_client.multiprocess import mark_process_dead

    from hub.exposition import metrics_folder
    from hub.ingress.server import reserve_port

    try:
        holder = reserve_port(host, port)  # port 0: every process must bind the one the kernel picks here
    except OSError as error:
        click.echo(f"hub serve: cannot listen on {host}:{port}: {error}", err=True)
        return 3
    port = holder.getsockname()[1]
    folder, made = metrics_folder(environ().get("PROMETHEUS_MULTIPROC_DIR"))
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    env = {**environ(), "HUB_HTTP_BIND": bind, "PROMETHEUS_MULTIPROC_DIR": folder}
    click.echo(f"hub serve: {workers} workers on http://{bind}, pid {os.getpid()}", err=True)
    # A process group of their own: Ctrl-C reaches them once, passed on from here (a second SIGINT would make
    # uvicorn skip the graceful shutdown).
    children = [subprocess.Popen([sys.executable, "-m", "hub", "serve", "--reuse-port"], env=env, process_group=0)
                for _ in range(workers)]
    ended: queue.Queue[subprocess.Popen[bytes]] = queue.Queue()

    def watch(child: subprocess.Popen[bytes]) -> None:
        child.wait()
        ended.put(child)

    for child in children:
        threading.Thread(target=watch, args=(child,), daemon=True, name=f"hub-serve-{child.pid}").start()
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        first = ended.get()
        if not received:
            code = first.returncode
            click.echo(f"hub serve: process {first.pid} stopped (exit code {code}); stopping the others", err=True)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
            mark_process_dead(child.pid, folder)  # type: ignore[no-untyped-call]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
        if made:
            shutil.rmtree(folder, ignore_errors=True)
    if not received:
        return code if code >= 0 else 128 - code
    if signal.SIGTERM in received:
        signal.raise_signal(signal.SIGTERM)  # as uvicorn does once it has shut down: exit by SIGTERM
    return max((child.returncode for child in children if child.returncode > 0), default=0)


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
