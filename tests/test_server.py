"""Serving the ingress: sockets bound before the server starts, ``hub serve``, and the uvicorn internals relied on."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import errno
import importlib.util
import inspect
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.ingress.protocol import H11ProblemProtocol, HttpToolsProblemProtocol, Parser
from hub.ingress.server import Loop, bound_socket, serve_in_thread, server_config, socket_url
from tests.conftest import ROOT, worker_env
from tests.support.ingress import write_sources


def ping_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def read_to_end(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while data := conn.recv(65536):
            answer += data
    return answer


def test_a_bound_socket_keeps_its_port_until_the_server_takes_it_and_is_closed_after() -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    with socket.socket() as rival, pytest.raises(OSError) as taken:
        rival.bind(("127.0.0.1", port))
    assert taken.value.errno == errno.EADDRINUSE
    with serve_in_thread(ping_app(), sock=sock) as url:
        assert url == socket_url(sock) == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/ping").json() == {"pong": "yes"}
    assert sock.fileno() == -1


def test_a_connection_made_before_the_server_starts_is_answered_once_it_runs() -> None:
    sock = bound_socket()
    with socket.create_connection(sock.getsockname()[:2], timeout=20) as early:
        early.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        with serve_in_thread(ping_app(), sock=sock):
            answer = read_to_end(early)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"pong":"yes"}')


def test_serve_in_thread_raises_when_the_app_cannot_start_and_closes_the_socket() -> None:
    @contextlib.asynccontextmanager
    async def failing(_: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("the app cannot start")
        yield

    sock = bound_socket()
    with pytest.raises(RuntimeError, match="did not start"), serve_in_thread(FastAPI(lifespan=failing), sock=sock):
        pass
    assert sock.fileno() == -1


def test_hub_serve_answers_what_the_http_parser_refuses_as_problem_json(tmp_path: Path) -> None:
    sources, _ = write_sources(tmp_path)
    env = worker_env("tserve", HUB_EMBEDDED="on", HUB_HTTP_BIND="127.0.0.1:0", HUB_SOURCES_FILE=str(sources),
                     HUB_LOG_LEVEL="INFO", HUB_LOG_FORMAT="json")
    with subprocess.Popen([sys.executable, "-m", "hub", "serve"], env=env, cwd=ROOT, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stderr is not None
        try:
            port, seen = None, []
            while port is None:  # uvicorn names the port it bound (port 0: the kernel's pick)
                line = proc.stderr.readline()
                assert line, "hub serve stopped before it listened:\n" + "".join(seen)
                seen.append(line)
                if found := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line):
                    port = int(found.group(1))
            with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
                conn.sendall(b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                answer = read_to_end(conn)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 "), answer
            assert b"\r\ncontent-type: application/problem+json\r\n" in head
            assert json.loads(body)["type"] == "urn:hub:problem:invalid-header"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _send_400_calls(module: str) -> list[str | None]:
    """Each ``self.send_400_response(...)`` call in a uvicorn module: the exception its ``except`` clause catches
    (``None``: not inside an ``except`` clause). Read from the source."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    found: list[str | None] = []

    class Finder(ast.NodeVisitor):
        def __init__(self) -> None:
            self.handlers: list[str] = []  # the exceptions caught by the enclosing except clauses, innermost last

        def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
            self.handlers = [*self.handlers, ast.unparse(node.type) if node.type else ""]
            self.generic_visit(node)
            self.handlers = self.handlers[:-1]

        def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
            outer, self.handlers = self.handlers, []  # a function body does not run inside the enclosing handler
            self.generic_visit(node)
            self.handlers = outer

        def visit_Call(self, node: ast.Call) -> None:
            if ast.unparse(node.func) == "self.send_400_response":
                found.append(self.handlers[-1] if self.handlers else None)
            self.generic_visit(node)

    Finder().visit(ast.parse(Path(spec.origin).read_text()))
    return found


@pytest.mark.parametrize(("module", "parser_error"), [
    ("uvicorn.protocols.http.h11_impl", "h11.RemoteProtocolError"),
    ("uvicorn.protocols.http.httptools_impl", "httptools.HttpParserError"),
])
def test_uvicorn_answers_every_parser_refusal_through_send_400_response_inside_its_except_clause(
    module: str, parser_error: str
) -> None:
    # hub.ingress.protocol overrides send_400_response and reads the refusal from sys.exception().
    assert _send_400_calls(module) == [parser_error]


@pytest.mark.parametrize(("uvicorn_class", "ours"), [(H11Protocol, H11ProblemProtocol),
                                                     (HttpToolsProtocol, HttpToolsProblemProtocol)])
def test_the_protocols_override_the_method_uvicorn_answers_refusals_with(uvicorn_class: type, ours: type) -> None:
    assert list(inspect.signature(uvicorn_class.send_400_response).parameters) == ["self", "msg"]
    assert "send_400_response" in vars(ours)


def test_the_httptools_protocol_overrides_the_parser_callbacks_uvicorn_defines() -> None:
    # HttpToolsProblemProtocol counts the head's bytes per read and checks Host and Transfer-Encoding once the
    # headers are complete (hub.ingress.protocol, point 3); uvicorn keeps the message's headers in self.headers.
    for name, parameters in {"data_received": ["self", "data"], "on_headers_complete": ["self"],
                             "on_message_complete": ["self"]}.items():
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == parameters
        assert name in vars(HttpToolsProtocol) and name in vars(HttpToolsProblemProtocol)
    assert "self.headers.append((name, value))" in inspect.getsource(HttpToolsProtocol.on_header)
    assert "self.headers = []" in inspect.getsource(HttpToolsProtocol.on_message_begin)


def loop_app() -> FastAPI:
    app = FastAPI()

    @app.get("/loop")
    async def loop() -> dict[str, str]:
        return {"loop": type(asyncio.get_running_loop()).__module__.split(".")[0]}

    return app


def test_the_ingress_runs_httptools_on_uvloop_by_default() -> None:
    config = server_config(loop_app())
    assert config.http is HttpToolsProblemProtocol and config.loop == "uvloop"
    with serve_in_thread(loop_app()) as url:
        assert httpx.get(f"{url}/loop").json() == {"loop": "uvloop"}


@pytest.mark.parametrize(("parser", "loop", "module"), [("h11", "asyncio", "asyncio"), ("h11", "uvloop", "uvloop"),
                                                        ("httptools", "asyncio", "asyncio")])
def test_h11_and_the_asyncio_loop_stay_selectable(parser: Parser, loop: Loop, module: str) -> None:
    expected = H11ProblemProtocol if parser == "h11" else HttpToolsProblemProtocol
    assert server_config(loop_app(), parser=parser, loop=loop).http is expected
    with serve_in_thread(loop_app(), parser=parser, loop=loop) as url:
        assert httpx.get(f"{url}/loop").json() == {"loop": module}


def test_a_bound_socket_is_tcp_so_asyncio_turns_off_nagle_on_every_connection() -> None:
    # asyncio sets TCP_NODELAY on an accepted connection only when the listening socket's proto says TCP;
    # without it each answer written in two parts waits for the client's delayed ACK (about 40 ms).
    import socket

    from hub.ingress.server import bound_socket

    with bound_socket() as sock:
        assert sock.proto == socket.IPPROTO_TCP
