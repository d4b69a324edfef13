"""The native webhook adapters the ingress serves at ``/v1/webhooks/<vendor>/<source id>``.

Each wraps a vendor's pure ``inbound`` module: verify with the source's vendor keys, translate into
our events. The CloudEvents ``source`` of a vendor event is ``<vendor>://<source id>``; the
source's ``sources`` list in the sources file must allow it. Each also names its vendor, the model of a
source's block of its keys and its part of the OpenAPI document, all taken from the ``inbound`` module:
the composition root composes the blocks into the sources model (:func:`vendor_blocks`) and mounts the
adapters (:func:`adapters`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from connectors.box import inbound as box
from connectors.docusign import inbound as docusign
from connectors.sharepoint import inbound as graph
from connectors.signatures import load_json_object
from hub.errors import AuthenticationFailed
from hub.ingress.openapi import VendorWebhook
from hub.ingress.sources import SourceConfig
from hub.ingress.webhooks import WebhookAdapter, WebhookReply, WebhookRequest
from hub.registry import SchemaRegistry


def _not_configured(vendor: str, source: SourceConfig) -> AuthenticationFailed:
    return AuthenticationFailed(f"source {source.id!r} takes no {vendor} webhooks")


class _Adapter:
    """What every adapter here declares, and the schema registry its events are made with."""

    vendor: ClassVar[str]
    keys: ClassVar[type[BaseModel]]
    document: ClassVar[VendorWebhook]

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry


class DocuSignConnect(_Adapter):
    """DocuSign Connect: HMAC of the raw body in ``X-DocuSign-Signature-N``."""

    vendor = "docusign"
    keys = docusign.DocuSignKeys
    document = docusign.WEBHOOK

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Verify, then translate ``envelope-completed`` (other events are acknowledged, not published)."""
        block = source.vendor_block(self.vendor, docusign.DocuSignKeys)
        if block is None:
            raise _not_configured(self.vendor, source)
        docusign.verify(request.body, request.headers, [key.get_secret_value() for key in block.hmac_keys])
        event = docusign.to_event(docusign.parse(request.body), registry=self.registry,
                                  source=f"docusign://{source.id}")
        return WebhookReply(events=[event] if event is not None else [])


class GraphNotifications(_Adapter):
    """Microsoft Graph change notifications: the validationToken handshake, then clientState checks."""

    vendor = "graph"
    keys = graph.GraphStates
    document = graph.WEBHOOK

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Echo a validation token, or verify every notification's clientState and translate them."""
        block = source.vendor_block(self.vendor, graph.GraphStates)
        if block is None:
            raise _not_configured(self.vendor, source)
        token = graph.validation_token(request.query)
        if token is not None:
            return WebhookReply(text=token)
        expected = [state.get_secret_value() for state in block.client_states]
        notifications = graph.parse_notifications(request.body)
        for notification in notifications:
            graph.check_client_state(notification, expected)
        return WebhookReply(events=[
            graph.to_event(n, registry=self.registry, source=f"graph://{source.id}", received_at=request.now)
            for n in notifications
        ], contents=[graph.content_digest(n) for n in notifications])


class BoxWebhooks(_Adapter):
    """Box webhooks v2: two signatures over body and delivery timestamp."""

    vendor = "box"
    keys = box.BoxKeys
    document = box.WEBHOOK

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Verify (either key, at most 10 minutes old) and translate."""
        block = source.vendor_block(self.vendor, box.BoxKeys)
        if block is None:
            raise _not_configured(self.vendor, source)
        secondary = block.secondary_key.get_secret_value() if block.secondary_key else None
        box.verify(request.body, request.headers, primary_key=block.primary_key.get_secret_value(),
                   secondary_key=secondary, now=request.now)
        payload = load_json_object(request.body)
        return WebhookReply(events=[box.to_event(payload, registry=self.registry, source=f"box://{source.id}")])


_ADAPTERS: tuple[type[DocuSignConnect | GraphNotifications | BoxWebhooks], ...] = (
    DocuSignConnect, GraphNotifications, BoxWebhooks)


def vendor_blocks() -> dict[str, type[BaseModel]]:
    """Each adapter's block of keys in a source, by vendor: what the composition root adds to the sources model."""
    return {adapter.vendor: adapter.keys for adapter in _ADAPTERS}


def adapters(registry: SchemaRegistry) -> dict[str, WebhookAdapter]:
    """Every native webhook adapter, by vendor path segment."""
    found: list[WebhookAdapter] = [adapter(registry) for adapter in _ADAPTERS]
    return {adapter.vendor: adapter for adapter in found}
