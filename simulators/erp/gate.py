"""The ERP simulator's invoice-readiness gate: before finalising, ask an outside service whether it may.

Configured with :class:`ReadinessGate` (``ErpSimConfig.readiness``). ``POST /invoices/{number}/finalize``
then first sends ``GET <url_template with {number} URL-quoted>`` with ``Authorization: Bearer <api_key>``
and reads the answer with :func:`ask`:

* 200, a JSON object with ``"status": "ready"``: the invoice may be finalised;
* 200, a JSON object with ``"status": "held"``: it may not; ``hold_reasons`` (a list, default empty)
  says why;
* anything else (another status, a body that is not such an object, a timeout, a refused
  connection): the gate is unavailable, and the invoice is not finalised (fail closed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from simulators.kit import http

__all__ = ["GateAnswer", "ReadinessGate", "ask"]

GateOutcome = Literal["ready", "held", "unavailable"]


@dataclass(frozen=True)
class ReadinessGate:
    """Where the simulated ERP asks whether an invoice may be finalised."""

    #: The readiness URL; ``{number}`` is replaced by the URL-quoted invoice number, e.g.
    #: ``http://127.0.0.1:8080/v1/invoices/{number}/readiness``.
    url_template: str
    #: Sent as ``Authorization: Bearer <api_key>``.
    api_key: str
    #: Timeout of the whole call; a gate slower than this is unavailable.
    timeout_s: float = 5.0

    def url(self, number: str) -> str:
        """The readiness URL of one invoice."""
        return self.url_template.replace("{number}", quote(number, safe=""))


@dataclass(frozen=True)
class GateAnswer:
    """What the gate said about one invoice."""

    outcome: GateOutcome
    #: The gate's ``hold_reasons`` when ``held``; empty otherwise.
    hold_reasons: list[Any] = field(default_factory=list)
    #: The HTTP status of the answer; ``None`` when there was none.
    http_status: int | None = None
    #: Why the gate is ``unavailable``; ``None`` otherwise.
    error: str | None = None


def _read(response: httpx.Response) -> GateAnswer:
    status = response.status_code
    if status != 200:
        return GateAnswer("unavailable", http_status=status, error=f"the gate answered {status}")
    try:
        body = response.json()
    except ValueError:
        return GateAnswer("unavailable", http_status=status, error="the gate's answer is not JSON")
    verdict = body.get("status") if isinstance(body, dict) else None
    if verdict == "ready":
        return GateAnswer("ready", http_status=status)
    reasons = body.get("hold_reasons", []) if isinstance(body, dict) else None
    if verdict == "held" and isinstance(reasons, list):
        return GateAnswer("held", list(reasons), http_status=status)
    return GateAnswer("unavailable", http_status=status, error="the gate's answer has no ready/held status")


async def ask(gate: ReadinessGate, number: str, *, transport: httpx.AsyncBaseTransport | None = None
              ) -> GateAnswer:
    """Ask the gate about invoice ``number``; never raises for a failed call (it is ``unavailable``)."""
    headers = {"authorization": f"Bearer {gate.api_key}", "accept": "application/json"}
    try:
        async with asyncio.timeout(gate.timeout_s), http.async_client(
                timeout=gate.timeout_s, transport=transport, follow_redirects=False) as client:
            response = await client.get(gate.url(number), headers=headers)
    except TimeoutError:
        return GateAnswer("unavailable", error=f"the gate did not answer within {gate.timeout_s:g} s")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return GateAnswer("unavailable", error=f"{type(exc).__name__}: {exc}")
    return _read(response)
