"""``Idempotency-Key`` replays for a simulator's write routes, as payment and ERP APIs offer them.

A write route's handler returns what it wrote as :class:`Written`; decorated with
:meth:`IdempotencyKeys.replayable` (below the route decorator), it runs at most once per key::

    keys = IdempotencyKeys(reused=lambda: SimError(422, "idempotency_key_reused", "..."))

    @api.post("/clients", status_code=201)
    @keys.replayable
    def create_client(body: ClientIn) -> Written:
        return Written(201, state.create_client(body))

Without the header the handler simply runs. With it, the first 2xx answer is kept under the key; the same
key with the same method, path and body (its validated fields, as sent) replays that answer with
``Idempotent-Replayed: true``; the same key with anything else raises ``reused()``. A refused write
(:class:`~simulators.kit.errors.SimError`) keeps nothing, so it may be retried with the same key.

The handler is a plain function run on the event loop under the keys' lock, so two requests with one key
never both write. Its body parameter is its one pydantic model; a ``Request`` parameter is optional.
"""

from __future__ import annotations

import inspect
import json
import threading
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from simulators.kit.errors import SimError

__all__ = ["IdempotencyKeys", "Written"]

#: The name of the request parameter added to a handler that has none.
_REQUEST = "idempotency_request"


@dataclass(frozen=True)
class Written:
    """A write's answer: status, JSON content and headers (what a replay answers again)."""

    status: int
    content: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self, **extra_headers: str) -> JSONResponse:
        """The answer as a JSON response."""
        return JSONResponse(self.content, status_code=self.status, headers={**self.headers, **extra_headers})


class IdempotencyKeys:
    """The answers of one simulator's writes made with an ``Idempotency-Key``, for replay."""

    def __init__(self, *, reused: Callable[[], SimError]) -> None:
        self._reused = reused
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[str, Written]] = {}

    def reset(self) -> None:
        """Forget every key."""
        with self._lock:
            self._answers.clear()

    def __len__(self) -> int:
        """How many keys are kept."""
        with self._lock:
            return len(self._answers)

    def replayable(self, write: Callable[..., Written]) -> Callable[..., Awaitable[JSONResponse]]:
        """``write`` as a route handler that honours ``Idempotency-Key`` (see the module's docstring)."""
        hints = typing.get_type_hints(write)
        parameters = [p.replace(annotation=hints.get(p.name, p.annotation))
                      for p in inspect.signature(write).parameters.values()]
        bodies = [p.name for p in parameters if isinstance(p.annotation, type) and issubclass(p.annotation, BaseModel)]
        if len(bodies) != 1:
            raise TypeError(f"{write.__qualname__}: a replayable write takes exactly one pydantic body")
        body_name = bodies[0]
        request_name = next((p.name for p in parameters if p.annotation is Request), None)
        if request_name is None:
            parameters.append(inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request))

        async def handler(**arguments: Any) -> JSONResponse:
            request: Request = arguments[request_name or _REQUEST]
            if request_name is None:
                del arguments[_REQUEST]
            key = request.headers.get("idempotency-key")
            if not key:
                return write(**arguments).response()
            body: BaseModel = arguments[body_name]
            fingerprint = (f"{request.method} {request.url.path} "
                           f"{json.dumps(body.model_dump(mode='json', exclude_unset=True), sort_keys=True)}")
            return self._once(key, fingerprint, lambda: write(**arguments))

        handler.__name__, handler.__qualname__, handler.__doc__ = write.__name__, write.__qualname__, write.__doc__
        handler.__signature__ = inspect.Signature(parameters, return_annotation=JSONResponse)  # type: ignore[attr-defined]
        return handler

    def _once(self, key: str, fingerprint: str, write: Callable[[], Written]) -> JSONResponse:
        with self._lock:
            seen = self._answers.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    raise self._reused()
                return seen[1].response(**{"idempotent-replayed": "true"})
            written = write()
            if 200 <= written.status < 300:
                self._answers[key] = (fingerprint, written)
        return written.response()
