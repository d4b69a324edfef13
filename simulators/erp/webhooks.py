"""The ERP simulator's outbound webhooks: signed structured CloudEvents posted from an outbox thread.

Like an ERP's posting script, every project or client change, and every drafted invoice
(``erp.invoice.drafted.v1``, subject the invoice number, ``milestone`` the milestone's name), becomes
one CloudEvent (structured mode, ``application/cloudevents+json``) whose ``data`` uses the hub's Avro
JSON form (dates as days since 1970-01-01, timestamps as epoch milliseconds). It is signed with
Standard Webhooks and posted by one background thread, first in the order of the changes, so an API
call never waits for it. As an ERP's integration queue does, an event that is not acknowledged is
retried until it is, each on its own schedule: network errors, 408, 429 and 5xx are retried with
exponential backoff (``Retry-After`` honoured), at most an hour apart, for a day after its first attempt;
any other 4xx stops at once. Every event has an entry in the delivery log.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from simulators.kit.clock import Clock
from simulators.kit.outbox import DAY_S, HOUR_S, DeliveryConfig, OutboundRequest, retry_after_s
from simulators.kit.outbox import Outbox as KitOutbox

_EPOCH = date(1970, 1, 1)
_RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookConfig(DeliveryConfig):
    """Where and how the simulator posts its events (and, from :class:`DeliveryConfig`, how it retries)."""

    #: The hub ingress events endpoint, e.g. ``http://127.0.0.1:8080/v1/events``.
    url: str
    #: Standard Webhooks secret (``whsec_<base64>``) the hub knows for this source.
    secret: str
    #: The CloudEvents ``source`` the ERP claims.
    source: str = "erp-sim://acme-psa/prod"
    #: Retries grow to an hour apart and go on for a day: an ERP's queue keeps an unacknowledged event
    #: that long before it marks it failed for an administrator to resend.
    max_backoff_s: float = field(default=HOUR_S, kw_only=True)
    horizon_s: float = field(default=DAY_S, kw_only=True)


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 timestamp (``Z`` allowed) as an aware datetime (UTC when no offset is given)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_ms(value: str) -> int:
    """An ISO timestamp as epoch milliseconds (Avro ``timestamp-millis``)."""
    return int(parse_timestamp(value).timestamp() * 1000)


def epoch_days(value: str | None) -> int | None:
    """An ISO date as days since 1970-01-01 (Avro ``date``)."""
    return None if value is None else (date.fromisoformat(value) - _EPOCH).days


def project_data(project: dict[str, Any]) -> dict[str, Any]:
    """A project record in the Avro JSON form of ``hub.erp.ProjectCreated``/``ProjectUpdated``."""
    value = project.get("value")
    return {
        "project_code": project["code"],
        "client_id": project["client_id"],
        "name": project["name"],
        "engagement_type": project["engagement_type"],
        "practice": project["practice"],
        "region": project["region"],
        "country": project["country"],
        "partner": project["partner"],
        "billing_model": project["billing_model"],
        "status": project["status"],
        "value": None if value is None else {"amount_minor": value["amount_minor"], "currency": value["currency"]},
        "start_date": epoch_days(project.get("start_date")),
        "end_date": epoch_days(project.get("end_date")),
        "conflicted_groups": list(project.get("conflicted_groups", [])),
        "updated_at": epoch_ms(project["updated_at"]),
    }


def period_bounds(period: str) -> tuple[date, date]:
    """The first and last day of a ``YYYY-MM`` billing period."""
    year, month = (int(part) for part in period.split("-"))
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def invoice_data(invoice: dict[str, Any], *, milestone: str | None) -> dict[str, Any]:
    """A draft invoice in the Avro JSON form of ``hub.erp.InvoiceDrafted``; ``milestone`` is the milestone's name."""
    start, end = period_bounds(invoice["period"])
    return {
        "invoice_number": invoice["number"],
        "project_code": invoice["project_code"],
        "amount": {"amount_minor": invoice["amount"]["amount_minor"], "currency": invoice["amount"]["currency"]},
        "period_start": (start - _EPOCH).days,
        "period_end": (end - _EPOCH).days,
        "milestone": milestone,
        "bills": [{"document_class": b["document_class"], "reference": b["reference"]}
                  for b in invoice.get("bills") or []],
        "drafted_at": epoch_ms(invoice["drafted_at"]),
    }


def client_data(client: dict[str, Any]) -> dict[str, Any]:
    """A client record in the Avro JSON form of ``hub.erp.ClientUpserted``."""
    return {
        "client_id": client["id"],
        "name": client["name"],
        "country": client["country"],
        "status": client["status"],
        "industry": client.get("industry"),
        "parent_client_id": client.get("parent_client_id"),
        "billing_currency": client.get("billing_currency"),
        "updated_at": epoch_ms(client["updated_at"]),
    }


def project_event(project: dict[str, Any], *, created: bool, source: str) -> dict[str, Any]:
    """The structured CloudEvent announcing a project's creation or its new state."""
    return {
        "specversion": "1.0",
        "type": "erp.project.created.v1" if created else "erp.project.updated.v1",
        "source": source,
        "id": f"{project['code']}:v{project['version']}",
        "time": project["updated_at"],
        "subject": project["code"],
        "partitionkey": f"project:{project['code']}",
        "sequence": f"{project['version']:020d}",
        "datacontenttype": "application/json",
        "data": project_data(project),
    }


def client_event(client: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The structured CloudEvent announcing a client's new state."""
    return {
        "specversion": "1.0",
        "type": "erp.client.upserted.v1",
        "source": source,
        "id": f"client:{client['id']}:v{client['version']}",
        "time": client["updated_at"],
        "subject": client["id"],
        "partitionkey": f"client:{client['id']}",
        "sequence": f"{client['version']:020d}",
        "datacontenttype": "application/json",
        "data": client_data(client),
    }


def invoice_event(invoice: dict[str, Any], *, milestone: str | None, source: str) -> dict[str, Any]:
    """The structured CloudEvent announcing a drafted invoice (ordered with its project's events)."""
    return {
        "specversion": "1.0",
        "type": "erp.invoice.drafted.v1",
        "source": source,
        "id": f"invoice:{invoice['number']}:drafted",
        "time": invoice["drafted_at"],
        "subject": invoice["number"],
        "partitionkey": f"project:{invoice['project_code']}",
        "datacontenttype": "application/json",
        "data": invoice_data(invoice, milestone=milestone),
    }


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUSES or status >= 500


class Outbox(KitOutbox):
    """Posts queued events from one daemon thread, each retried until acknowledged, and keeps the delivery log."""

    def __init__(self, config: WebhookConfig, *, transport: httpx.BaseTransport | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(config, thread_name="erp-sim-webhooks", transport=transport, clock=clock)
        self.config = config
        self._signer = Webhook(config.secret)

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for delivery; returns at once."""
        self._enqueue(event, {"event_id": event["id"], "type": event["type"], "subject": event.get("subject")})

    def _request(self, event: dict[str, Any], attempt: int) -> OutboundRequest:
        body = json.dumps(event, separators=(",", ":"))
        sent_at = datetime.now(UTC)
        headers = {
            "content-type": "application/cloudevents+json; charset=utf-8",
            "webhook-id": event["id"],
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._signer.sign(event["id"], sent_at, body),
        }
        return OutboundRequest("POST", self.config.url, headers, body.encode())

    def _final(self, status: int) -> bool:
        return not _retryable(status)

    def _asked_delay_s(self, response: httpx.Response) -> float | None:
        return retry_after_s(response) if _retryable(response.status_code) else None
