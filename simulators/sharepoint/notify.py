"""The Graph simulator's outbound HTTP: the ``validationToken`` handshake and change-notification delivery.

As Graph does: on subscription creation it POSTs ``?validationToken=<token>`` (``text/plain``) to the
notification URL (https only) and requires, within 10 s, 200 ``text/plain`` with the decoded token as the
body. A driveItem notification says only that something in the drive changed: its ``resourceData`` is
``{"@odata.type": "#Microsoft.Graph.DriveItem"}``, no item id; the subscriber reads the drive's ``delta``.
Notifications are POSTed as JSON from a background thread, first in the order of the changes; as Graph
does, one that is not acknowledged (an answer other than 2xx, or none within the timeout) is retried with
exponential backoff, each on its own, for up to 4 hours after its first attempt, then dropped and counted
as failed.
"""

from __future__ import annotations

import secrets
import ssl
from typing import Any

import httpx

from simulators.kit import http
from simulators.kit.clock import Clock
from simulators.kit.outbox import HOUR_S, DeliveryConfig, OutboundRequest, Outbox


def _trust(ca_file: str | None) -> ssl.SSLContext:
    """What https endpoints' certificates are checked against: ``ca_file``, else certifi's authorities."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else http.trusted_authorities(trust_env=False)


def validate_endpoint(url: str, *, timeout_s: float, verify: str | None = None) -> str | None:
    """Perform the handshake against ``url``; ``None`` when it passed, else why it failed. ``verify``: the CA
    bundle an https endpoint's certificate must chain to (None: the system's)."""
    token = f"Validation: {secrets.token_urlsafe(24)}"  # Graph's tokens also contain spaces and colons
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False, verify=_trust(verify)) as client:
            response = client.post(url, params={"validationToken": token},
                                   headers={"Content-Type": "text/plain; charset=utf-8"})
    except httpx.HTTPError as exc:
        return f"the validation request failed: {type(exc).__name__}"
    if response.status_code != 200:
        return f"the endpoint answered {response.status_code} to the validation request"
    if not response.headers.get("content-type", "").startswith("text/plain"):
        return "the validation response is not text/plain"
    if response.text != token:
        return "the validation response does not echo the validation token"
    return None


#: Graph retries a notification for up to 4 hours, then drops it.
GRAPH_HORIZON_S = 4 * HOUR_S


class Notifier(Outbox):
    """Delivers change notifications from one daemon thread, each retried on Graph's schedule; the delivery log
    keeps the latest 200 finished ones."""

    def __init__(self, *, backoff_s: float = 0.2, max_backoff_s: float = 30 * 60.0,
                 horizon_s: float = GRAPH_HORIZON_S, timeout_s: float = 3.0, clock: Clock | None = None,
                 transport: httpx.BaseTransport | None = None, verify: str | None = None) -> None:
        delivery = DeliveryConfig(backoff_s=backoff_s, max_backoff_s=max_backoff_s, horizon_s=horizon_s,
                                  timeout_s=timeout_s)
        if transport is None and verify is not None:  # https endpoints whose certificate chains to ``verify``
            transport = httpx.HTTPTransport(verify=_trust(verify))
        super().__init__(delivery, thread_name="graph-sim-notifier", transport=transport, clock=clock, keep=200,
                         trust_env=False)

    def submit(self, url: str, body: dict[str, Any]) -> None:
        """Queue one notification POST (never blocks on the network)."""
        self._enqueue({"url": url, "body": body},
                      {"url": url, "subscriptions": [n.get("subscriptionId") for n in body.get("value", [])]})

    def stats(self) -> dict[str, Any]:
        """Counters and the latest deliveries."""
        log = self.deliveries()
        states = [entry["state"] for entry in log]
        return {"delivered": states.count("delivered"), "failed": states.count("failed"),
                "pending": states.count("pending"), "attempted": sum(entry["attempts"] for entry in log),
                "log": log}

    def _request(self, item: dict[str, Any], attempt: int) -> OutboundRequest:
        sent = httpx.Request("POST", item["url"], json=item["body"])  # Graph's JSON, as httpx writes it
        return OutboundRequest("POST", item["url"], {"content-type": sent.headers["content-type"]}, sent.content)
