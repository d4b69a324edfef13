"""Document intake's Graph subscription: the workspaces drive's change notifications to the ingress, kept alive.

A Graph subscription on a drive expires (at most 42,300 minutes, about 29 days; the hub asks for two days) and
Graph then stops notifying without a word. :func:`ensure_subscription` creates it or renews the one the hub has;
:class:`SubscriptionKeeper` runs it again before each expiry (``hub documents subscribe --keep``), with the
clock and the wait injected so a test can run the schedule in seconds; :class:`DriveSubscription` is what the
intake actor holds to repair it.

This stays SharePoint's, on the :class:`~connectors.sharepoint.client.GraphClient`, not the
:class:`~connectors.platform.DocumentPlatform`: finding the hub's subscription among the drive's and renewing it
before Graph lets it lapse is Graph's subscription lifecycle, which Box's webhooks (they do not expire) do not
have. The intake reads the changes themselves through the platform.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connectors.sharepoint.client import GraphClient, Subscription
from hub.errors import HubError
from observability.logging import get_logger

__all__ = ["DriveSubscription", "SubscriptionKeeper", "ensure_subscription"]
log = get_logger(__name__)


def ensure_subscription(graph: GraphClient, notification_url: str, client_state: str, *,
                        lifetime: timedelta = timedelta(days=2),
                        now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Subscription:
    """Subscribe ``notification_url`` (the ingress's Graph webhook) to changes of the workspaces drive's root (the
    only driveItem resource SharePoint accepts), or renew the subscription it has, to ``lifetime`` from now."""
    resource = f"drives/{graph.drive_id}/root"
    expiration = now() + lifetime
    for subscription in graph.subscriptions():
        if subscription.resource == resource and subscription.notification_url == notification_url:
            return graph.renew_subscription(subscription.id, expiration)
    return graph.create_subscription(resource, notification_url, client_state, expiration)


@dataclass(frozen=True)
class DriveSubscription:
    """The workspaces drive's change subscription as a worker keeps it: the Graph client, where Graph notifies and
    the client state it sends."""

    graph: GraphClient
    notification_url: str
    client_state: str

    def ensure(self) -> Subscription:
        """:func:`ensure_subscription`: created, or renewed for two days from now."""
        return ensure_subscription(self.graph, self.notification_url, self.client_state)


@dataclass
class SubscriptionKeeper:
    """Keeps the subscription alive: renews it when a third of its lifetime is left, and retries a failed
    renewal every ``retry_s``."""

    graph: GraphClient
    notification_url: str
    client_state: str
    lifetime: timedelta = timedelta(days=2)
    retry_s: float = 60.0
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Each renewal made (the subscription as Graph answered it).
    renewals: list[Subscription] = field(default_factory=list)

    def renew(self) -> Subscription:
        """Create or renew the subscription now."""
        subscription = ensure_subscription(self.graph, self.notification_url, self.client_state,
                                           lifetime=self.lifetime, now=self.now)
        self.renewals.append(subscription)
        log.info("graph subscription renewed", subscription_id=subscription.id,
                 expires=subscription.expiration.isoformat())
        return subscription

    def due_in_s(self, subscription: Subscription) -> float:
        """Seconds from now until the subscription should be renewed (a third of its lifetime before expiry)."""
        return max(0.0, (subscription.expiration - self.lifetime / 3 - self.now()).total_seconds())

    def run(self, stop: threading.Event) -> None:
        """Renew now and then before every expiry until ``stop`` is set."""
        delay = 0.0
        while not stop.wait(delay):
            try:
                delay = self.due_in_s(self.renew())
            except HubError as error:  # Graph or the ingress unreachable, a refused validation: try again soon
                log.warning("graph subscription renewal failed; retrying", error=str(error), retry_s=self.retry_s)
                delay = self.retry_s
