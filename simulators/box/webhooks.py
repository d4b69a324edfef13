"""Box webhooks V2 as the simulator sends them, signed as Box signs them.

The body is a ``webhook_event`` (``id`` kept across retries, ``created_at``, ``trigger``, ``webhook``,
``created_by``, ``source``: the item, ``additional_info``). Each attempt gets a new ``BOX-DELIVERY-ID`` and
``BOX-DELIVERY-TIMESTAMP`` (RFC 3339), and both signatures: base64(HMAC-SHA256(key, body bytes + timestamp
bytes)) under the app's primary key (``BOX-SIGNATURE-PRIMARY``) and secondary key
(``BOX-SIGNATURE-SECONDARY``), with ``BOX-SIGNATURE-VERSION: 1`` and ``BOX-SIGNATURE-ALGORITHM: HmacSHA256``.

Delivery fails when the address does not answer 2xx within 30 seconds; Box then retries it, up to 12 times
over 2 hours (``BoxSimConfig.webhook_*``), each delivery on its own schedule.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from simulators.box.config import BoxSimConfig
from simulators.box.model import Json, User, box_time
from simulators.kit.clock import Clock
from simulators.kit.outbox import DeliveryConfig, OutboundRequest, Outbox

__all__ = ["WebhookOutbox", "box_signature", "webhook_event"]


def box_signature(key: str, body: bytes, timestamp: str) -> str:
    """A ``BOX-SIGNATURE-*`` value: base64 HMAC-SHA256 of the body bytes followed by the timestamp's."""
    digest = hmac.new(key.encode("utf-8"), body + timestamp.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def webhook_event(webhook_id: str, trigger: str, source: Json, created_by: User) -> Json:
    """The payload of one delivery."""
    return {"type": "webhook_event", "id": str(uuid.uuid4()), "created_at": box_time(), "trigger": trigger,
            "webhook": {"id": webhook_id, "type": "webhook"}, "created_by": created_by.mini(), "source": source,
            "additional_info": []}


class WebhookOutbox(Outbox):
    """Posts webhook deliveries from one daemon thread on Box's retry schedule and keeps the delivery log (the
    latest 500 finished ones)."""

    def __init__(self, config: BoxSimConfig, *, clock: Clock | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        delivery = DeliveryConfig(backoff_s=config.webhook_backoff_s, max_backoff_s=config.webhook_max_backoff_s,
                                  horizon_s=config.webhook_horizon_s, attempts=config.webhook_attempts,
                                  timeout_s=config.webhook_timeout_s)
        super().__init__(delivery, thread_name="box-sim-webhooks", transport=transport, clock=clock, keep=500,
                         trust_env=False)
        self.config = config

    def enqueue(self, address: str, payload: Json) -> None:
        """Queue one delivery of ``payload`` to ``address``; returns at once."""
        self._enqueue({"address": address, "body": json.dumps(payload, separators=(",", ":")).encode()},
                      {"address": address, "trigger": payload["trigger"], "webhook_id": payload["webhook"]["id"],
                       "id": payload["id"], "source": payload["source"].get("id")})

    def _request(self, item: dict[str, Any], attempt: int) -> OutboundRequest:
        body: bytes = item["body"]
        timestamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        headers = {"content-type": "application/json; charset=UTF-8", "box-delivery-id": str(uuid.uuid4()),
                   "box-delivery-timestamp": timestamp, "box-signature-version": "1",
                   "box-signature-algorithm": "HmacSHA256",
                   "box-signature-primary": box_signature(self.config.primary_key, body, timestamp)}
        if self.config.secondary_key:
            headers["box-signature-secondary"] = box_signature(self.config.secondary_key, body, timestamp)
        return OutboundRequest("POST", item["address"], headers, body)
