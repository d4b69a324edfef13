"""Document intake's Graph subscription: the workspaces drive's change notifications to the ingress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.sharepoint.client import GraphClient, Subscription

__all__ = ["ensure_subscription"]


def ensure_subscription(graph: GraphClient, notification_url: str, client_state: str, *,
                        lifetime: timedelta = timedelta(days=2)) -> Subscription:
    """Subscribe ``notification_url`` (the ingress's Graph webhook) to changes of the workspaces drive, or
    renew the subscription it has; run it again before the expiry (Graph drive subscriptions last days)."""
    resource = f"drives/{graph.drive_id}/root"
    expiration = datetime.now(UTC) + lifetime
    for subscription in graph.subscriptions():
        if subscription.resource == resource and subscription.notification_url == notification_url:
            return graph.renew_subscription(subscription.id, expiration)
    return graph.create_subscription(resource, notification_url, client_state, expiration)
