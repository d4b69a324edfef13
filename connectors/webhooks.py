"""The native webhook adapters the ingress serves at ``/v1/webhooks/<vendor>/<source id>``.

Each wraps a vendor's pure ``inbound`` module: verify with the source's vendor keys, translate into
our events. The CloudEvents ``source`` of a vendor event is ``<vendor>://<source id>``; the
source's ``sources`` list in the sources file must allow it.
"""

from __future__ import annotations

from connectors.box import inbound as box
from connectors.docusign import inbound as docusign
from connectors.sharepoint import inbound as graph
from connectors.signatures import load_json_object
from hub.errors import AuthenticationFailed
from hub.ingress.sources import SourceConfig
from hub.ingress.webhooks import WebhookAdapter, WebhookReply, WebhookRequest
from hub.registry import SchemaRegistry


def _not_configured(vendor: str, source: SourceConfig) -> AuthenticationFailed:
    return AuthenticationFailed(f"source {source.id!r} takes no {vendor} webhooks")


class DocuSignConnect:
    """DocuSign Connect: HMAC of the raw body in ``X-DocuSign-Signature-N``."""

    vendor = "docusign"

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Verify, then translate ``envelope-completed`` (other events are acknowledged, not published)."""
        if source.docusign is None:
            raise _not_configured(self.vendor, source)
        docusign.verify(request.body, request.headers,
                        [key.get_secret_value() for key in source.docusign.hmac_keys])
        event = docusign.to_event(docusign.parse(request.body), registry=self.registry,
                                  source=f"docusign://{source.id}")
        return WebhookReply(events=[event] if event is not None else [])


class GraphNotifications:
    """Microsoft Graph change notifications: the validationToken handshake, then clientState checks."""

    vendor = "graph"

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Echo a validation token, or verify every notification's clientState and translate them."""
        if source.graph is None:
            raise _not_configured(self.vendor, source)
        token = graph.validation_token(request.query)
        if token is not None:
            return WebhookReply(text=token)
        expected = [state.get_secret_value() for state in source.graph.client_states]
        notifications = graph.parse_notifications(request.body)
        for notification in notifications:
            graph.check_client_state(notification, expected)
        return WebhookReply(events=[
            graph.to_event(n, registry=self.registry, source=f"graph://{source.id}", received_at=request.now)
            for n in notifications
        ])


class BoxWebhooks:
    """Box webhooks v2: two signatures over body and delivery timestamp."""

    vendor = "box"

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def handle(self, request: WebhookRequest, source: SourceConfig) -> WebhookReply:
        """Verify (either key, at most 10 minutes old) and translate."""
        if source.box is None:
            raise _not_configured(self.vendor, source)
        secondary = source.box.secondary_key.get_secret_value() if source.box.secondary_key else None
        box.verify(request.body, request.headers, primary_key=source.box.primary_key.get_secret_value(),
                   secondary_key=secondary, now=request.now)
        payload = load_json_object(request.body)
        return WebhookReply(events=[box.to_event(payload, registry=self.registry, source=f"box://{source.id}")])


def adapters(registry: SchemaRegistry) -> dict[str, WebhookAdapter]:
    """Every native webhook adapter, by vendor path segment."""
    found: list[WebhookAdapter] = [DocuSignConnect(registry), GraphNotifications(registry), BoxWebhooks(registry)]
    return {adapter.vendor: adapter for adapter in found}
