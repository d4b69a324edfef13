"""What a native webhook adapter is to the ingress; the adapters live in ``connectors/``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from hub.events import CloudEvent
from hub.ingress.sources import SourceConfig


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of a vendor's HTTP request an adapter may use."""

    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes
    now: datetime


@dataclass(frozen=True)
class WebhookReply:
    """What the adapter made of it: events to publish, or a plain-text answer (a handshake)."""

    events: list[CloudEvent] = field(default_factory=list)
    text: str | None = None  # answered 200 text/plain instead of publishing (e.g. Graph validationToken)


class WebhookAdapter(Protocol):
    """Verifies a vendor's request with the source's vendor keys and translates it into our events."""

    vendor: str

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Verify (raise ``AuthenticationFailed``) and translate (raise ``InvalidEvent``)."""
        ...
