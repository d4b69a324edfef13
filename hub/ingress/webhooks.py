"""What a native webhook adapter is to the ingress; the adapters live in ``connectors/``.

An adapter contributes, besides the translation itself, its vendor's name (the path segment
``/v1/webhooks/<vendor>/<source id>`` and the name of the source's block of keys), the model of that
block (composed into the sources model by the composition root) and how its webhooks look in the
OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from hub.events import CloudEvent
from hub.ingress.openapi import VendorWebhook
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
    text: str | None = None  # answered 200 text/plain instead of publishing (a subscription handshake)
    #: For each event, a digest of what the vendor sent for it, when the event also carries what the hub added
    #: (the moment it received it): a re-delivery of the same vendor content is then a resend, not a conflict.
    #: Empty: the events are compared as they are (:func:`hub.ingress.outcomes.digest`).
    contents: list[str] = field(default_factory=list)


class WebhookAdapter(Protocol):
    """Verifies a vendor's request with the source's vendor keys and translates it into our events."""

    @property
    def vendor(self) -> str:
        """The path segment of its webhooks and the name of a source's block of its keys."""
        ...

    @property
    def keys(self) -> type[BaseModel]:
        """The model of that block (:meth:`SourceConfig.vendor_block` reads it)."""
        ...

    @property
    def document(self) -> VendorWebhook:
        """How its webhooks look in the OpenAPI document."""
        ...

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Verify (raise ``AuthenticationFailed``) and translate (raise ``InvalidEvent``)."""
        ...
