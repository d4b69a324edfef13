"""DocuSign Connect as the simulator sends it: when an envelope is sent, delivered (every signer opened it) or
completed, an ``envelope-sent``, ``envelope-delivered`` or ``envelope-completed`` message (JSON SIM, envelope
summary with recipients, custom fields and documents) is POSTed to ``ConnectConfig.url`` with
``X-DocuSign-Signature-1`` = base64(HMAC-SHA256(hmac_key, raw body)), from one background thread. As in a
Connect configuration, ``ConnectConfig.events`` names the events it subscribes to.

Retries follow Connect's with "Require Acknowledgement" on (the ``requiresAcknowledgement`` setting of a
Connect configuration): any answer but 2xx, and any network error, leaves the message in Connect's
queue; it is retried soon (``backoff_s``), then no sooner than 24 hours after the previous retry, ten
retries at most, so for about nine days. Each message keeps its own schedule, and every retry says its
number in ``retryCount``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from simulators.kit.clock import Clock
from simulators.kit.outbox import DAY_S, DeliveryConfig, OutboundRequest, Outbox

#: The envelope events the simulator's Connect sends, each when the envelope reaches that status.
ENVELOPE_EVENTS: Final = ("envelope-sent", "envelope-delivered", "envelope-completed")
#: The DocuSign user on whose behalf the simulated account sends envelopes (``data.userId``).
SENDER_USER_ID: Final = "5d9a4c3e-7b21-4f0a-9c8e-2f6b1d3a4e5f"


@dataclass(frozen=True)
class ConnectConfig(DeliveryConfig):
    """Where Connect notifications are posted, signed with which key (and, from :class:`DeliveryConfig`,
    how they are retried)."""

    #: The hub's DocuSign webhook endpoint.
    url: str
    #: The Connect HMAC key the hub also knows (used as UTF-8 bytes, as DocuSign does).
    hmac_key: str
    #: The envelope events this configuration subscribes to (a subset of :data:`ENVELOPE_EVENTS`).
    events: frozenset[str] = field(default=frozenset(ENVELOPE_EVENTS), kw_only=True)
    #: After the first retry, Connect retries an unacknowledged message no sooner than this after the last.
    retry_interval_s: float = field(default=DAY_S, kw_only=True)
    #: The first attempt and ten retries.
    attempts: int | None = field(default=11, kw_only=True)
    #: Past the tenth retry (about nine days): the message is given up.
    horizon_s: float = field(default=10 * DAY_S, kw_only=True)

    def wait_s(self, attempt: int) -> float:
        """The first retry comes after ``backoff_s``, every later one ``retry_interval_s`` after the last."""
        return self.backoff_s if attempt == 1 else self.retry_interval_s


def connect_signature(hmac_key: str, body: bytes) -> str:
    """The ``X-DocuSign-Signature-N`` value: base64 HMAC-SHA256 of the raw body under ``hmac_key``."""
    return base64.b64encode(hmac.new(hmac_key.encode("utf-8"), body, hashlib.sha256).digest()).decode()


def connect_message(envelope: dict[str, Any], *, generated_at: str, event: str = "envelope-completed",
                    user_id: str = SENDER_USER_ID) -> dict[str, Any]:
    """The Connect JSON SIM message ``event`` (``envelope-completed`` by default) for ``envelope``, with its
    summary."""
    summary = {key: value for key, value in envelope.items()
               if key not in {"envelopeId", "accountId", "transactionId"} and value is not None}
    documents = [{k: v for k, v in d.items() if k != "documentClass"} for d in envelope["envelopeDocuments"]]
    if not any(d["documentId"] == "certificate" for d in documents):
        documents.append({"documentId": "certificate", "name": "Summary", "type": "summary", "order": "999"})
    summary["envelopeDocuments"] = documents
    return {
        "event": event,
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/{envelope['accountId']}/envelopes/{envelope['envelopeId']}",
        "retryCount": 0,
        "configurationId": 1,
        "generatedDateTime": generated_at,
        "data": {"accountId": envelope["accountId"], "userId": user_id, "envelopeId": envelope["envelopeId"],
                 "envelopeSummary": summary},
    }


class ConnectOutbox(Outbox):
    """Posts queued Connect messages from one daemon thread, each on Connect's retry schedule, and keeps the
    delivery log."""

    def __init__(self, config: ConnectConfig, *, transport: httpx.BaseTransport | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(config, thread_name="docusign-sim-connect", transport=transport, clock=clock)
        self.config = config

    def enqueue(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for delivery; returns at once."""
        self._enqueue(message, {"envelope_id": message["data"]["envelopeId"], "event": message["event"]})

    def _request(self, message: dict[str, Any], attempt: int) -> OutboundRequest:
        # Like Connect, a retry says so in retryCount: the body (and its HMAC) change per attempt.
        body = json.dumps({**message, "retryCount": attempt - 1}, separators=(",", ":")).encode()
        headers = {"content-type": "application/json; charset=utf-8",
                   "x-docusign-signature-1": connect_signature(self.config.hmac_key, body)}
        return OutboundRequest("POST", self.config.url, headers, body)

    def notify(self, envelope: dict[str, Any], *, event: str, generated_at: str) -> None:
        """Queue the ``event`` message for ``envelope`` when the configuration subscribes to ``event``."""
        if event in self.config.events:
            self.enqueue(connect_message(envelope, generated_at=generated_at, event=event))
