"""Requests the HTTP server refuses before the app sees them, answered as problem+json like every other error.

uvicorn answers a request its parser refuses with a plain-text 400 ("Invalid HTTP request received.").
The protocol classes here answer the same refusals as ``application/problem+json`` (RFC 9457), with
``Connection: close``:

- ``urn:hub:problem:invalid-header`` (400): a bad request line, a missing Host, a non-numeric or conflicting
  Content-Length, a control character (bare CR, NUL, ...) in a header, a malformed header line, a bad chunk size;
- ``urn:hub:problem:headers-too-large`` (431, h11 only): h11 holds more than ``h11_max_incomplete_event_size``
  bytes of a request line and headers that have not ended yet;
- ``urn:hub:problem:unsupported-transfer-encoding`` (501, h11 only): a Transfer-Encoding other than one ``chunked``.

A refusal that comes after the app has begun answering the same request (a body that turns malformed after the
router's 404) only closes the connection: nothing may follow that answer. httptools, unlike h11, reads pipelined
requests ahead: a refusal there while an earlier request still awaits its answer lets that answer go out, then
closes, so an accepted event's 202 is never dropped for the malformed request behind it.

Overriding ``send_400_response`` depends on a semi-internal part of uvicorn (checked against 0.54.0;
``tests/test_server.py`` and ``tests/test_ingress_http_errors.py`` fail if it changes). Exactly this:

1. ``H11Protocol`` (``uvicorn.protocols.http.h11_impl``) and ``HttpToolsProtocol``
   (``uvicorn.protocols.http.httptools_impl``) call ``self.send_400_response(msg)`` for every request their
   parser refuses, only from inside the ``except`` clause that caught the parser's error
   (``h11.RemoteProtocolError``, ``httptools.HttpParserError``), so ``sys.exception()`` is that error while the
   method runs; they send nothing on that connection afterwards.
2. Instance attributes of both: ``transport`` (the connection's ``asyncio.Transport``),
   ``server_state.default_headers`` (the ``Date`` and ``Server`` header pairs) and ``cycle`` (``None`` or the
   latest request's ``RequestResponseCycle``, whose ``response_started``, ``response_complete``, ``disconnected``
   and, for httptools, ``keep_alive`` and ``scope`` uvicorn's own ``send`` and ``receive`` honour).
   h11 only: ``conn`` (the ``h11.Connection``; ``our_state`` is public h11 API) and
   ``config.h11_max_incomplete_event_size``. httptools only: ``scope``, a new dict for each message begun.
3. ``uvicorn.Config(http=<protocol class>)`` (public) instantiating the class for each connection.

From h11 it uses only public API: ``RemoteProtocolError.error_status_hint`` (431 for an oversize head, 501 for an
unsupported transfer coding, 400 for the rest) and ``Connection.our_state``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from http import HTTPStatus
from typing import Literal, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from hub.ingress.problems import PROBLEM_JSON, Kind, Problem

__all__ = ["H11ProblemProtocol", "Parser", "problem_protocol", "refusal", "refusal_bytes"]

#: The HTTP/1.1 parsers uvicorn can use.
Parser = Literal["h11", "httptools"]


class _Cycle(Protocol):
    """What uvicorn's ``RequestResponseCycle`` (both parsers) offers that an early answer needs."""

    response_started: bool
    response_complete: bool
    disconnected: bool


def refusal(error: BaseException | None, *, head_limit: int | None = None) -> Problem:
    """The problem answering a parser's refusal (``error``: the exception uvicorn caught, if known).

    The detail never quotes the parser's message: h11 repeats the offending header there, credentials included.
    """
    hint = getattr(error, "error_status_hint", 400)
    if hint == Kind.HEADERS_TOO_LARGE.status:
        limit = f" ({head_limit} bytes)" if head_limit else ""
        return Problem(Kind.HEADERS_TOO_LARGE,
                       f"the request line and headers are longer than this server accepts{limit}")
    if hint == Kind.UNSUPPORTED_TRANSFER_ENCODING.status:
        return Problem(Kind.UNSUPPORTED_TRANSFER_ENCODING,
                       "the only Transfer-Encoding accepted is a single 'chunked'")
    return Problem(Kind.INVALID_HEADER, "not a valid HTTP/1.1 request: the request line, a header or the body "
                                        "framing (Content-Length, chunk sizes) is malformed")


def refusal_bytes(problem: Problem, *, default_headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """The whole HTTP/1.1 response for ``problem``, closing the connection."""
    body = json.dumps(problem.body()).encode()
    status = problem.kind.status
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode("ascii")]
    head += [name + b": " + value for name, value in default_headers]
    head += [b"content-type: " + PROBLEM_JSON.encode("ascii"), b"content-length: " + str(len(body)).encode("ascii"),
             b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _answer(transport: asyncio.Transport, problem: Problem, default_headers: Iterable[tuple[bytes, bytes]], *,
            pending: _Cycle | None) -> None:
    """Write ``problem`` and close; ``pending``: the app's cycle of the refused request, whose answer is dropped."""
    if pending is not None:
        pending.disconnected = True  # as if the client had gone: uvicorn's ``send`` then writes nothing
    transport.write(refusal_bytes(problem, default_headers=default_headers))
    transport.close()


class H11ProblemProtocol(H11Protocol):
    """uvicorn's h11 protocol, answering what h11 refuses as problem+json."""

    def send_400_response(self, msg: str) -> None:
        """Answer the refusal uvicorn is handling (``msg``, its plain-text message, is not used)."""
        state = self.conn.our_state
        if state not in (h11.IDLE, h11.SEND_RESPONSE):
            # The app has begun (or finished) its answer to this very request: nothing may follow it.
            self.transport.close()
            return
        problem = refusal(sys.exception(), head_limit=self.config.h11_max_incomplete_event_size)
        _answer(self.transport, problem, self.server_state.default_headers,
                pending=self.cycle if state is h11.SEND_RESPONSE else None)


def _httptools_protocol() -> type[asyncio.Protocol]:
    # Imported on demand: httptools is not a dependency of the project.
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsProblemProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, answering what httptools refuses as problem+json."""

        def send_400_response(self, msg: str) -> None:
            """Answer the refusal uvicorn is handling (``msg``, its plain-text message, is not used)."""
            cycle = self.cycle
            refused_has_cycle = cycle is not None and cycle.scope is self.scope  # each message gets a new scope
            if cycle is not None and not refused_has_cycle and not cycle.response_complete:
                # An earlier pipelined request still awaits its answer: let it go out, then close.
                cycle.keep_alive = False
                return
            if refused_has_cycle and cycle.response_started:
                self.transport.close()  # nothing may follow the app's answer to this very request
                return
            _answer(self.transport, refusal(sys.exception()), self.server_state.default_headers,
                    pending=cycle if refused_has_cycle else None)

    return HttpToolsProblemProtocol


def problem_protocol(parser: Parser = "h11") -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``; ``httptools`` needs the ``httptools`` package.

    Named explicitly rather than uvicorn's ``auto``: installing httptools must not change the answers silently
    (httptools 0.9 sets no limit on the size of request headers, so never answers 431; it refuses two equal
    Content-Length headers, which h11 merges; it answers 400, not 501, for an unknown transfer coding).
    """
    return H11ProblemProtocol if parser == "h11" else _httptools_protocol()
