"""Requests the HTTP server refuses before the app sees them, answered as problem+json like every other error.

uvicorn answers a request its parser refuses with a plain-text 400 ("Invalid HTTP request received.").
The protocol classes here answer the same refusals as ``application/problem+json`` (RFC 9457), with
``Connection: close``, whichever parser reads the request (httptools by default, h11 on request):

- ``urn:hub:problem:invalid-header`` (400): a bad request line, a missing Host, a non-numeric or conflicting
  Content-Length, a control character (bare CR, NUL, ...) in a header, a malformed header line, a bad chunk size.
  httptools accepts an HTTP/1.1 request without Host and one with two: :class:`HttpToolsProblemProtocol`
  refuses both once the headers are complete, as h11 does (RFC 9112 section 3.2);
- ``urn:hub:problem:headers-too-large`` (431): more than ``Config.h11_max_incomplete_event_size`` bytes
  (``MAX_HEAD_BYTES``, 16 KiB) of a request line and headers that have not ended yet. h11 counts what it holds;
  httptools 0.9 sets no limit at all, so :class:`HttpToolsProblemProtocol` counts the bytes each read adds to a
  head still open after it (a head that ends within the read that crosses the limit is accepted, as h11 does).
  One difference is left: the bytes of a pipelined request's head that arrive in the same read as the end of the
  request before it are not counted (at most one read, 256 KiB), so such a head can grow that much larger
  before the 431;
- ``urn:hub:problem:unsupported-transfer-encoding`` (501): a Transfer-Encoding other than one ``chunked``.
  httptools lets some through (``gzip, chunked``: :class:`HttpToolsProblemProtocol` checks them once the headers
  are complete) and refuses the rest itself with a generic error, told apart by its reason (see below).

Two refusals stay httptools' own (400 ``invalid-header``), where h11 is more lenient; both are allowed by
RFC 9112 section 6.3 and close a request-smuggling path, so they are kept on purpose:

- two equal Content-Length headers (``Content-Length: 2`` twice): h11 merges them, httptools refuses them
  (a recipient MAY treat a repeated Content-Length as one or reject it as invalid);
- Content-Length together with Transfer-Encoding: h11 lets Transfer-Encoding win (or answers 501 for a coding
  other than chunked), httptools refuses the message (a server MAY reject such a request; it "ought to be
  handled as an error").

A refusal that comes after the app has begun answering the same request (a body that turns malformed after the
router's 404) only closes the connection: nothing may follow that answer. httptools, unlike h11, reads pipelined
requests ahead: a refusal there while an earlier request still awaits its answer lets that answer go out, then
closes, so an accepted event's 202 is never dropped for the malformed request behind it.

The protocol classes depend on semi-internal parts of uvicorn and httptools (checked against uvicorn 0.54.0 and
httptools 0.9.0; ``tests/test_server.py`` and ``tests/test_ingress_http_errors.py`` fail if they change).
Exactly this:

1. ``H11Protocol`` (``uvicorn.protocols.http.h11_impl``) and ``HttpToolsProtocol``
   (``uvicorn.protocols.http.httptools_impl``) call ``self.send_400_response(msg)`` for every request their
   parser refuses, only from inside the ``except`` clause that caught the parser's error
   (``h11.RemoteProtocolError``, ``httptools.HttpParserError``), so ``sys.exception()`` is that error while the
   method runs; they send nothing on that connection afterwards.
2. Instance attributes of both: ``transport`` (the connection's ``asyncio.Transport``),
   ``server_state.default_headers`` (the ``Date`` and ``Server`` header pairs), ``config`` (the
   ``uvicorn.Config``; ``h11_max_incomplete_event_size`` read by both classes) and ``cycle`` (``None`` or the
   latest request's ``RequestResponseCycle``, whose ``response_started``, ``response_complete``, ``disconnected``
   and, for httptools, ``keep_alive`` and ``scope`` uvicorn's own ``send`` and ``receive`` honour).
   h11 only: ``conn`` (the ``h11.Connection``; ``our_state`` is public h11 API). httptools only: ``scope``, a new
   dict for each message begun, and ``headers``, the list of (lower-cased name, value) pairs of the message
   being read, which ``on_header`` appends to.
3. ``HttpToolsProtocol`` handles each read in ``data_received`` (feeding it to the parser; a parser error is
   answered through ``send_400_response`` before it returns) and is the parser's callback object:
   ``on_headers_complete`` and ``on_message_complete``, overridden here, call the parent's (the first one only
   when the head is accepted); ``parser`` is the ``httptools.HttpRequestParser`` (``get_http_version`` is
   public httptools API). httptools
   (public API) raises ``HttpParserCallbackError`` from ``feed_data`` when a callback raises, with the
   callback's exception as its ``__context__``: that is how ``on_headers_complete`` hands over a 501.
4. The reasons llhttp (inside httptools) gives for the Transfer-Encoding values it refuses itself:
   ``Empty Transfer-Encoding``, ``Request has invalid `Transfer-Encoding` `` and
   ``Invalid `Transfer-Encoding` header value`` (``str()`` of the ``HttpParserError``).
5. ``uvicorn.Config(http=<protocol class>)`` (public) instantiating the class for each connection.

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
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.ingress.problems import PROBLEM_JSON, Kind, Problem

__all__ = ["H11ProblemProtocol", "HttpToolsProblemProtocol", "Parser", "problem_protocol", "refusal",
           "refusal_bytes"]

#: The HTTP/1.1 parsers uvicorn can use.
Parser = Literal["h11", "httptools"]

#: llhttp's reasons for the Transfer-Encoding values it refuses itself (h11 answers each with 501).
_TRANSFER_ENCODING_REASONS = frozenset({
    "Empty Transfer-Encoding", "Request has invalid `Transfer-Encoding`", "Invalid `Transfer-Encoding` header value",
})


class _Cycle(Protocol):
    """What uvicorn's ``RequestResponseCycle`` (both parsers) offers that an early answer needs."""

    response_started: bool
    response_complete: bool
    disconnected: bool


class _Refused(httptools.HttpParserError):
    """A refusal of the hub's own on top of httptools', with the status h11 gives the same request."""

    def __init__(self, message: str, *, error_status_hint: int) -> None:
        super().__init__(message)
        self.error_status_hint = error_status_hint


def _status_hint(error: BaseException | None) -> int:
    """The status the refusal ``error`` calls for: h11's hint, one of ours, or llhttp's reason."""
    for candidate in (error, error.__context__ if error is not None else None):  # a callback's error: its context
        hint = getattr(candidate, "error_status_hint", None)
        if isinstance(hint, int):
            return hint
    if isinstance(error, httptools.HttpParserError) and str(error) in _TRANSFER_ENCODING_REASONS:
        return Kind.UNSUPPORTED_TRANSFER_ENCODING.status
    return Kind.INVALID_HEADER.status


def refusal(error: BaseException | None, *, head_limit: int | None = None) -> Problem:
    """The problem answering a parser's refusal (``error``: the exception uvicorn caught, if known).

    The detail never quotes the parser's message: h11 repeats the offending header there, credentials included.
    """
    hint = _status_hint(error)
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


class HttpToolsProblemProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering what httptools refuses as problem+json, and refusing what h11
    refuses and httptools does not (an oversize head: 431; a transfer coding other than chunked: 501)."""

    # The bytes of the head being read (request line and headers); None while its body is read.
    _head_bytes: int | None = 0
    # Whether a message ended during the current read: the head begun after it is not counted in that read.
    _ended_in_read = False

    def data_received(self, data: bytes) -> None:
        """Feed ``data`` to the parser; answer 431 when a head still open after it has grown past the limit."""
        self._ended_in_read = False
        super().data_received(data)
        if self._head_bytes is None or self._ended_in_read or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        limit = self.config.h11_max_incomplete_event_size
        if limit is not None and self._head_bytes > limit:
            self._refuse(refusal(_Refused("head too long", error_status_hint=Kind.HEADERS_TOO_LARGE.status),
                                 head_limit=limit))

    def on_headers_complete(self) -> None:
        """Begin the request as uvicorn does, unless h11 would refuse its head: not exactly one Host (none is
        allowed before HTTP/1.1): 400; a Transfer-Encoding other than one ``chunked``: 501."""
        self._head_bytes = None
        hosts = sum(1 for name, _ in self.headers if name == b"host")
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise _Refused("not exactly one Host header", error_status_hint=Kind.INVALID_HEADER.status)
        codings = [value for name, value in self.headers if name == b"transfer-encoding"]
        if codings and (len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
            raise _Refused("unsupported transfer coding",  # answered by send_400_response, as h11's refusal
                           error_status_hint=Kind.UNSUPPORTED_TRANSFER_ENCODING.status)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """End the request as uvicorn does; the next head begins."""
        super().on_message_complete()
        self._head_bytes = 0
        self._ended_in_read = True

    def send_400_response(self, msg: str) -> None:
        """Answer the refusal uvicorn is handling (``msg``, its plain-text message, is not used)."""
        self._refuse(refusal(sys.exception(), head_limit=self.config.h11_max_incomplete_event_size))

    def _refuse(self, problem: Problem) -> None:
        cycle = self.cycle
        refused_has_cycle = cycle is not None and cycle.scope is self.scope  # each message gets a new scope
        if cycle is not None and not refused_has_cycle and not cycle.response_complete:
            # An earlier pipelined request still awaits its answer: let it go out, then close.
            cycle.keep_alive = False
            return
        if refused_has_cycle and cycle.response_started:
            self.transport.close()  # nothing may follow the app's answer to this very request
            return
        _answer(self.transport, problem, self.server_state.default_headers,
                pending=cycle if refused_has_cycle else None)


def problem_protocol(parser: Parser = "httptools") -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``.

    Named explicitly rather than uvicorn's ``auto``, so the answers never depend on which packages happen to be
    installed; both classes give the same answers but for the two httptools refusals described above.
    """
    return H11ProblemProtocol if parser == "h11" else HttpToolsProblemProtocol
