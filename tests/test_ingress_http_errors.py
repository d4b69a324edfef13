"""Requests the HTTP server refuses before the app sees them answer problem+json, over raw sockets against the
served ingress (real RabbitMQ and Redis): ``hub.ingress.protocol``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest

from hub.cli.compose import build_ingress
from hub.ingress.problems import PROBLEM_JSON, Kind
from hub.ingress.protocol import Parser, refusal, refusal_bytes
from hub.ingress.server import MAX_HEAD_BYTES, serve_in_thread
from hub.runtime import Runtime
from tests.support.ingress import Credentials, load, write_sources
from tests.support.rabbit import queue_depth

EVENTS = b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nContent-Type: application/cloudevents+json\r\n"


@dataclass
class Answer:
    """One HTTP/1.1 response read off the wire, and what followed it."""

    status: int
    headers: dict[str, str]
    body: bytes
    rest: bytes = field(repr=False)


@dataclass
class Served:
    """The served ingress: its URL, the sources' credentials and the runtime."""

    url: str
    creds: Credentials
    runtime: Runtime

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def fanout_depth(self) -> int:
        return queue_depth(self.runtime.broker.get_actor("fanout").queue_name)


def read_to_end(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset after its answer included)."""
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while data := conn.recv(65536):
            answer += data
    return answer


def exchange(served: Served, request: bytes) -> bytes:
    """Send ``request``, close our sending side, and read until the server closes."""
    with socket.create_connection(served.address, timeout=20) as conn:
        with contextlib.suppress(OSError):  # it may answer and close (or reset) before reading it all
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
        return read_to_end(conn)


def parse(raw: bytes) -> Answer:
    head, separator, after = raw.partition(b"\r\n\r\n")
    assert separator, f"no complete response: {raw!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    return Answer(int(status_line.split()[1]), headers, after[:length], after[length:])


def assert_problem(raw: bytes, status: int, kind: Kind) -> dict[str, Any]:
    """``raw`` is exactly one problem+json answer of ``kind`` that closes the connection."""
    answer = parse(raw)
    assert answer.status == status == kind.status, raw
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["connection"] == "close"
    assert answer.rest == b""
    body: dict[str, Any] = json.loads(answer.body)
    assert body["type"] == f"urn:hub:problem:{kind.name.lower().replace('_', '-')}"
    assert body["status"] == status and body["title"] == kind.title and body["detail"]
    return body


#: Both parsers, the default (httptools) first: every answer below is the same with either, but where noted.
PARSERS: list[Parser] = ["httptools", "h11"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> Parser:
    value: Parser = request.param
    return value


@contextlib.contextmanager
def served_ingress(runtime: Runtime, directory: Path, parser: Parser = "httptools") -> Iterator[Served]:
    path, creds = write_sources(directory)
    with serve_in_thread(build_ingress(runtime, sources=load(path)), parser=parser) as url:
        yield Served(url, creds, runtime)


@pytest.fixture
def ingress(app: Runtime, tmp_path: Path, parser: Parser) -> Iterator[Served]:
    """The served ingress, once with each parser."""
    with served_ingress(app, tmp_path, parser) as served:
        yield served


# -- refused by either parser: 400 invalid-header -------------------------------------------------
MALFORMED = {
    "a non-numeric Content-Length": EVENTS + b"Content-Length: 2x\r\n\r\n{}",
    "two different Content-Length headers": EVENTS + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ",
    "a bare CR in a header value": EVENTS + b"Ce-Id: a\rb\r\nContent-Length: 2\r\n\r\n{}",
    "a NUL in a header value": EVENTS + b"Ce-Id: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "a NUL in a header name": EVENTS + b"Ce-\x00Id: a\r\nContent-Length: 2\r\n\r\n{}",
    "two Host headers": b"GET /healthz HTTP/1.1\r\nHost: hub\r\nHost: other\r\n\r\n",
    "an invalid request line": b"POST /v1/events HTTP/1.1 extra\r\nHost: hub\r\n\r\n",
    "a bad chunk size": EVENTS + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "a TLS handshake on the plain port": bytes.fromhex("16030100f5010000f10303") + bytes(64),
}


@pytest.mark.integration
@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_request_the_http_parser_refuses_answers_400_problem_json_and_the_server_carries_on(
    app: Runtime, tmp_path: Path, parser: Parser, request_bytes: bytes
) -> None:
    with served_ingress(app, tmp_path, parser) as served:
        assert_problem(exchange(served, request_bytes), 400, Kind.INVALID_HEADER)
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        assert served.fanout_depth() == 0


# -- the same answers from both parsers (``ingress`` is served once with each) ----------------------
@pytest.mark.integration
def test_a_request_without_host_answers_400_problem_json(ingress: Served) -> None:
    assert_problem(exchange(ingress, b"GET /healthz HTTP/1.1\r\n\r\n"), 400, Kind.INVALID_HEADER)


@pytest.mark.integration
def test_an_http_1_0_request_without_host_is_answered(ingress: Served) -> None:
    answer = parse(exchange(ingress, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert answer.status == 200 and json.loads(answer.body) == {"status": "ok"}


@pytest.mark.integration
def test_request_headers_over_the_limit_answer_431_problem_json(ingress: Served) -> None:
    # h11 counts what it holds of a head that has not ended yet: a longer line still coming ...
    unfinished = EVENTS + b"X-Long: " + b"a" * MAX_HEAD_BYTES
    body = assert_problem(exchange(ingress, unfinished), 431, Kind.HEADERS_TOO_LARGE)
    assert str(MAX_HEAD_BYTES) in body["detail"]
    # ... or a header section too long to arrive in one read (asyncio reads at most 256 KiB at a time).
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"b" * 1000) for i in range(300))
    assert_problem(exchange(ingress, EVENTS + many + b"Content-Length: 2\r\n\r\n{}"), 431, Kind.HEADERS_TOO_LARGE)


@pytest.mark.integration
def test_a_head_over_the_limit_that_ends_within_the_read_is_accepted_like_h11_does(ingress: Served) -> None:
    # h11 refuses only a head it holds unfinished: one that arrives whole in one read goes to the app (here: 401).
    request = EVENTS + b"X-Long: " + b"c" * (MAX_HEAD_BYTES + 100) + b"\r\nContent-Length: 2\r\n\r\n{}"
    with socket.create_connection(ingress.address, timeout=20) as conn:
        conn.sendall(request)  # loopback: one read on the server's side (well under its 64 KiB reads)
        answer = parse(read_to_end(conn))
    assert answer.status == 401 and json.loads(answer.body)["type"] == "urn:hub:problem:unauthenticated"


@pytest.mark.integration
def test_a_head_that_grows_over_the_limit_on_a_kept_alive_connection_answers_431(ingress: Served) -> None:
    auth_free = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
    with socket.create_connection(ingress.address, timeout=20) as conn:
        conn.sendall(auth_free)
        raw = b""
        while b"}" not in raw:  # the first request's answer: the connection is kept alive
            data = conn.recv(65536)
            assert data, raw
            raw += data
        assert parse(raw).status == 200
        conn.sendall(EVENTS)
        for _ in range(3):  # the second head, in reads of 8 KiB: the third crosses the limit
            with contextlib.suppress(OSError):
                conn.sendall(b"X-Part: " + b"d" * 8192 + b"\r\n")
        assert_problem(read_to_end(conn), 431, Kind.HEADERS_TOO_LARGE)


UNSUPPORTED_CODINGS = {
    "gzip then chunked": b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "identity then chunked": b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
    "gzip alone": b"Transfer-Encoding: gzip\r\n\r\n",
    "chunked twice in one header": b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "two Transfer-Encoding headers": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "an empty Transfer-Encoding": b"Transfer-Encoding: \r\n\r\n",
}


@pytest.mark.integration
@pytest.mark.parametrize("codings", list(UNSUPPORTED_CODINGS.values()), ids=list(UNSUPPORTED_CODINGS))
def test_a_transfer_coding_other_than_chunked_answers_501_problem_json(ingress: Served, codings: bytes) -> None:
    assert_problem(exchange(ingress, EVENTS + codings), 501, Kind.UNSUPPORTED_TRANSFER_ENCODING)
    assert ingress.fanout_depth() == 0


@pytest.mark.integration
def test_a_chunked_body_in_any_letter_case_reaches_the_app(ingress: Served) -> None:
    answer = parse(exchange(ingress, EVENTS + b"Transfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
    assert answer.status == 401 and json.loads(answer.body)["type"] == "urn:hub:problem:unauthenticated"


# -- where the parsers differ on purpose (RFC 9112 section 6.3 allows both; see hub.ingress.protocol) -------
TWO_EQUAL_LENGTHS = EVENTS + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
LENGTH_AND_CHUNKED = EVENTS + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"


@pytest.mark.integration
@pytest.mark.parametrize("request_bytes", [TWO_EQUAL_LENGTHS, LENGTH_AND_CHUNKED],
                         ids=["two equal Content-Length headers", "Content-Length and chunked"])
def test_httptools_refuses_ambiguous_framing_that_h11_lets_through(
    app: Runtime, tmp_path: Path, request_bytes: bytes
) -> None:
    with served_ingress(app, tmp_path, "httptools") as served:
        assert_problem(exchange(served, request_bytes), 400, Kind.INVALID_HEADER)
    with served_ingress(app, tmp_path, "h11") as served:
        # h11 merges identical lengths and lets chunked win; the app then answers (here: no credentials).
        answer = parse(exchange(served, request_bytes))
    assert answer.status == 401 and answer.headers["content-type"] == PROBLEM_JSON
    assert json.loads(answer.body)["type"] == "urn:hub:problem:unauthenticated"


@pytest.mark.integration
def test_a_body_shorter_than_its_content_length_then_close_gets_no_answer_and_nothing_is_published(
    ingress: Served
) -> None:
    auth = f"Authorization: Bearer {ingress.creds.api_key}\r\n".encode()
    request = EVENTS + auth + b"Content-Length: 400\r\n\r\n" + b'{"specversion": "1.0", "id": "short-1"'
    assert exchange(ingress, request) == b""  # the client has closed: there is nobody left to answer
    assert ingress.fanout_depth() == 0
    assert httpx.get(f"{ingress.url}/healthz").status_code == 200


@pytest.mark.integration
def test_a_connection_closed_before_its_request_line_gets_no_answer(ingress: Served) -> None:
    assert exchange(ingress, b"") == b""
    assert exchange(ingress, b"POST /v1/ev") == b""


@pytest.mark.integration
def test_with_h11_a_malformed_request_after_a_valid_one_on_the_same_connection_is_answered_after_it(
    app: Runtime, tmp_path: Path
) -> None:
    with served_ingress(app, tmp_path, "h11") as served:
        raw = exchange(served, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n" + b"NOT-HTTP\r\n\r\n")
    first = parse(raw)
    assert first.status == 200 and json.loads(first.body) == {"status": "ok"}
    assert_problem(first.rest, 400, Kind.INVALID_HEADER)


@pytest.mark.integration
def test_with_httptools_a_malformed_request_behind_a_valid_one_lets_the_valid_answer_out_then_closes(
    app: Runtime, tmp_path: Path
) -> None:
    # httptools parses the second request before the first is answered; the first answer must not be lost.
    with served_ingress(app, tmp_path, "httptools") as served:
        raw = exchange(served, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n" + b"NOT-HTTP\r\n\r\n")
    first = parse(raw)
    assert first.status == 200 and json.loads(first.body) == {"status": "ok"}
    assert first.rest == b""


@pytest.mark.integration
def test_a_body_that_turns_malformed_after_the_app_answered_closes_the_connection_without_a_second_answer(
    ingress: Served
) -> None:
    with socket.create_connection(ingress.address, timeout=20) as conn:
        conn.sendall(b"POST /v1/nothing HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n")
        raw = b""
        while b"}" not in raw:  # the router's 404 does not wait for the body
            data = conn.recv(65536)
            assert data, raw
            raw += data
        assert parse(raw).status == 404
        conn.sendall(b"zz\r\n")
        assert read_to_end(conn) == b""


@pytest.mark.integration
def test_the_app_answers_problem_json_for_a_non_numeric_content_length_that_reaches_it(
    app: Runtime, tmp_path: Path
) -> None:
    # No HTTP parser lets one through (both refuse it, see above); the app's own check stays for other servers.
    path, creds = write_sources(tmp_path)
    ingress_app = build_ingress(app, sources=load(path))

    async def call() -> httpx.Response:
        async with ingress_app.router.lifespan_context(ingress_app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=ingress_app), base_url="http://hub") as client:
            return await client.post("/v1/events", content=b"{}", headers={
                "content-type": "application/cloudevents+json", "content-length": "2x",
                "authorization": f"Bearer {creds.api_key}"})

    response = asyncio.run(call())
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == "urn:hub:problem:invalid-header"
    assert response.json()["field"] == "content-length"


# -- the answer itself -----------------------------------------------------------------------------
def test_a_refusal_never_repeats_what_the_parser_quoted_from_the_request() -> None:
    quoted = h11.RemoteProtocolError("Illegal header value b'Bearer s3cret\\x00'")
    problem = refusal(quoted)
    assert problem.kind is Kind.INVALID_HEADER
    assert "s3cret" not in problem.detail and b"s3cret" not in refusal_bytes(problem)


def test_the_parser_s_status_hint_picks_the_problem_kind() -> None:
    assert refusal(h11.RemoteProtocolError("Receive buffer too long", error_status_hint=431)).kind \
        is Kind.HEADERS_TOO_LARGE
    assert refusal(h11.RemoteProtocolError("chunked only", error_status_hint=501)).kind \
        is Kind.UNSUPPORTED_TRANSFER_ENCODING
    assert refusal(None).kind is Kind.INVALID_HEADER


def test_a_refusal_is_one_complete_response_that_closes_the_connection() -> None:
    raw = refusal_bytes(refusal(None), default_headers=[(b"server", b"hub")])
    answer = parse(raw)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n") and answer.rest == b""
    assert answer.headers == {"server": "hub", "content-type": PROBLEM_JSON,
                              "content-length": str(len(answer.body)), "connection": "close"}
