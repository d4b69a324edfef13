"""A worker's ``/metrics``: a small HTTP server in a daemon thread serving
:func:`observability.metrics.exposition` (the ingress serves its own from its app)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.registry import Collector

from hub.gauges import QueueDepths
from hub.runtime import Runtime
from observability.logging import get_logger
from observability.metrics import CONTENT_TYPE, exposition

log = get_logger(__name__)


class MetricsServer:
    """Serves ``GET /metrics`` on ``bind`` (``host:port``; port 0: any free one) while started: this process's
    metrics, or every process's of the multiprocess folder ``path``, and what ``collectors`` read at the scrape."""

    def __init__(self, bind: str, collectors: Sequence[Collector] = (), *, path: str | None = None) -> None:
        host, _, port = bind.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.collectors, self.path = tuple(collectors), path
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> bool:
        """Listen and serve in a daemon thread; False (one warning) when the address cannot be bound: the worker
        goes on without its ``/metrics``."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exposition(outer.collectors, path=outer.path)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # a scrape every few seconds is not worth a line

        try:
            self._server = ThreadingHTTPServer(self.address, Handler)
        except OSError as exc:
            log.warning("metrics not served: the address cannot be bound", bind=f"{self.address[0]}:{self.address[1]}",
                        reason=str(exc))
            return False
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="hub-metrics", daemon=True).start()
        log.info("metrics served", url=f"http://{self.address[0]}:{self.port}/metrics")
        return True

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def worker_metrics(runtime: Runtime, *, path: str | None = None) -> MetricsServer | None:
    """Start serving a worker's ``/metrics`` on ``HUB_METRICS_BIND`` (none when ``off`` or when it cannot be bound):
    its metrics (every process's of ``path``), the depth of every actor queue, and the actors' own figures."""
    bind = runtime.settings.metrics_bind
    if bind == "off":
        return None
    collectors: list[Collector] = list(runtime.collectors)
    if not runtime.embedded:
        broker = runtime.broker
        collectors.insert(0, QueueDepths(runtime.settings.amqp_url, {
            name: broker.get_actor(name).queue_name for name in broker.get_declared_actors()}))
    server = MetricsServer(bind, collectors, path=path)
    return server if server.start() else None


def metrics_folder(given: str | None) -> tuple[str, bool]:
    """The multiprocess folder of ``hub worker --processes N``: ``given`` (``PROMETHEUS_MULTIPROC_DIR``) emptied of a
    previous run's files, or a new one; and whether it was made here (to remove at the end)."""
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's: prometheus-client wants the folder empty at start
            stale.unlink(missing_ok=True)
        return str(folder), False
    return tempfile.mkdtemp(prefix="hub-metrics-"), True
