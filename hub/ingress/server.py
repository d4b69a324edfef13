"""Serving the ingress with uvicorn: ``hub serve`` in the foreground, the demo, tests and benchmarks in a thread.

Both use :func:`server_config`, so protocol-level errors are answered the same way everywhere
(:mod:`hub.ingress.protocol`). A server whose URL others must know before it starts (the simulators post to the
ingress) gets a socket bound beforehand with :func:`bound_socket`; the port is never released between being
chosen and being served, so no other process can take it.

Every server runs uvicorn with the httptools parser and the uvloop event loop by default (h11 and asyncio stay
selectable: ``parser``, ``loop``); both parsers give the same answers (:mod:`hub.ingress.protocol`).
``hub serve --workers N`` runs N processes on one port, each with its own socket bound with ``SO_REUSEPORT``
(:func:`reuse_port_socket`, :func:`reserve_port`): the kernel spreads the connections over them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import uvicorn

from hub.connectivity import ServerLink
from hub.ingress.protocol import Parser, problem_protocol

#: The event loops uvicorn can run on.
Loop = Literal["uvloop", "asyncio"]

_log = logging.getLogger(__name__)

#: Most bytes of a request line and headers not ended yet before the ingress answers 431 (h11's own default;
#: both parsers apply it, see :mod:`hub.ingress.protocol`).
MAX_HEAD_BYTES = 16 * 1024


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 0, parser: Parser = "httptools",
                  loop: Loop = "uvloop", tls: tuple[str, str] | None = None) -> uvicorn.Config:
    """The uvicorn configuration of every ingress: problem+json protocol errors, logging left to the hub.

    ``parser``: httptools (compiled, the default) or h11 (pure Python); the same answers either way, see
    :mod:`hub.ingress.protocol`. ``loop``: uvloop (the default) or asyncio's own.
    ``tls``: serve https with this (certificate file, key file), both PEM.
    """
    certfile, keyfile = tls or (None, None)
    return uvicorn.Config(app, host=host, port=port, http=problem_protocol(parser), loop=loop,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, lifespan="on",
                          log_config=None, access_log=False, ssl_certfile=certfile, ssl_keyfile=keyfile)


def run_server(app: Any, *, host: str, port: int, links: Sequence[ServerLink] = (),
               sock: socket.socket | None = None, parser: Parser = "httptools", loop: Loop = "uvloop") -> None:
    """Serve ``app`` on ``host:port`` in this (main) thread until SIGINT or SIGTERM; exit 3 if it cannot start.

    ``links``: the process's links to its servers; when one refuses the credentials for good, the server
    shuts down gracefully and :class:`~hub.errors.CredentialsRefused` is raised.
    ``sock``: a listening socket to serve instead of binding ``host:port`` (one of ``hub serve --workers``,
    from :func:`reuse_port_socket`); the process logs ``serving <url> in process <pid>`` once it accepts.
    """
    server = _Server(server_config(app, host=host, port=port, parser=parser, loop=loop))

    def shut_down() -> None:
        server.should_exit = True  # read by uvicorn's main loop, which then shuts down as on SIGTERM

    for link in links:
        link.on_refused(shut_down)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled, once it has shut down
        if sock is None:
            server.run()
        else:
            server.run(sockets=[sock])
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


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``: several processes (of the same user) bind the
    same port and the kernel spreads new connections over those that listen.

    ``listen=False``: only hold the port (:func:`reserve_port`); a socket that does not listen gets no connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP named: see bound_socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """Hold ``host:port`` (port 0: one the kernel picks) for the processes of ``hub serve --workers``, which bind
    it with :func:`reuse_port_socket`; raises ``OSError`` when another server has it."""
    return reuse_port_socket(host, port, listen=False)


def socket_url(sock: socket.socket) -> str:
    """The ``http://host:port`` base URL of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that signals when its start-up is over (``uvicorn.Server.startup``), however it ended.

    Given sockets, uvicorn logs nothing once it accepts: this server says so itself.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
            if sockets and self.started and threading.current_thread() is threading.main_thread():
                _log.info("serving %s in process %d", socket_url(sockets[0]), os.getpid())
        finally:
            self.startup_over.set()


@contextlib.contextmanager
def serve_in_thread(app: Any, *, sock: socket.socket | None = None, parser: Parser = "httptools",
                    loop: Loop = "uvloop", start_timeout_s: float = 20.0,
                    tls: tuple[str, str] | None = None) -> Iterator[str]:
    """Run ``app`` on uvicorn in a daemon thread while the block runs; yields its base URL.

    ``sock``: a listening socket from :func:`bound_socket`, which the server takes over and closes; by default
    one on 127.0.0.1. ``tls``: serve https with this (certificate file, key file); the URL is then ``https://``.
    """
    sock = sock if sock is not None else bound_socket()
    url = socket_url(sock)
    if tls is not None:
        url = "https" + url.removeprefix("http")
    server = _Server(server_config(app, parser=parser, loop=loop, tls=tls))

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
