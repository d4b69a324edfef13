"""Serving the ingress with uvicorn: ``hub serve`` in the foreground, the demo, tests and benchmarks in a thread.

Both use :func:`server_config`, so protocol-level errors are answered the same way everywhere
(:mod:`hub.ingress.protocol`). A server whose URL others must know before it starts (the simulators post to the
ingress) gets a socket bound beforehand with :func:`bound_socket`; the port is never released between being
chosen and being served, so no other process can take it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn

from hub.connectivity import ServerLink
from hub.ingress.protocol import Parser, problem_protocol

#: Most bytes of request line and headers buffered before the ingress answers 431 (h11's own default).
MAX_HEAD_BYTES = 16 * 1024


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 0, parser: Parser = "h11",
                  tls: tuple[str, str] | None = None) -> uvicorn.Config:
    """The uvicorn configuration of every ingress: problem+json protocol errors, logging left to the hub.

    ``parser``: h11, a dependency of uvicorn; ``httptools`` needs that package (see :mod:`hub.ingress.protocol`).
    ``tls``: serve https with this (certificate file, key file), both PEM.
    """
    certfile, keyfile = tls or (None, None)
    return uvicorn.Config(app, host=host, port=port, http=problem_protocol(parser),
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, lifespan="on",
                          log_config=None, access_log=False, ssl_certfile=certfile, ssl_keyfile=keyfile)


def run_server(app: Any, *, host: str, port: int, links: Sequence[ServerLink] = ()) -> None:
    """Serve ``app`` on ``host:port`` in this (main) thread until SIGINT or SIGTERM; exit 3 if it cannot start.

    ``links``: the process's links to its servers; when one refuses the credentials for good, the server
    shuts down gracefully and :class:`~hub.errors.CredentialsRefused` is raised.
    """
    server = uvicorn.Server(server_config(app, host=host, port=port))

    def shut_down() -> None:
        server.should_exit = True  # read by uvicorn's main loop, which then shuts down as on SIGTERM

    for link in links:
        link.on_refused(shut_down)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled, once it has shut down
        server.run()
    refused = next((link.refused for link in links if link.refused is not None), None)
    if refused is not None:
        raise refused
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE, as ``uvicorn.run`` exits


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket listening on ``host`` and a port the kernel picked; hand it to :func:`serve_in_thread`.

    Connections made before the server starts wait in the socket's backlog.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only when the socket
    # says it is TCP (proto 0 does not), and without it every answer waits out a 40 ms delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def socket_url(sock: socket.socket) -> str:
    """The ``http://host:port`` base URL of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that signals when its start-up is over (``uvicorn.Server.startup``), however it ended."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_over.set()


@contextlib.contextmanager
def serve_in_thread(app: Any, *, sock: socket.socket | None = None, parser: Parser = "h11",
                    start_timeout_s: float = 20.0, tls: tuple[str, str] | None = None) -> Iterator[str]:
    """Run ``app`` on uvicorn in a daemon thread while the block runs; yields its base URL.

    ``sock``: a listening socket from :func:`bound_socket`, which the server takes over and closes; by default
    one on 127.0.0.1. ``tls``: serve https with this (certificate file, key file); the URL is then ``https://``.
    """
    sock = sock if sock is not None else bound_socket()
    url = socket_url(sock)
    if tls is not None:
        url = "https" + url.removeprefix("http")
    server = _Server(server_config(app, parser=parser, tls=tls))

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit:
            pass  # uvicorn's way of saying it could not start: ``started`` stays False
        finally:
            server.startup_over.set()  # a start that failed before ``startup`` (loading the app)

    thread = threading.Thread(target=run, name="hub-ingress", daemon=True)
    try:
        thread.start()
        if not server.startup_over.wait(start_timeout_s) or not server.started:
            raise RuntimeError("the ingress did not start")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
