"""What the Box simulator knows at start: the app's credentials and enterprise, its groups and retention
policies, the upload limits, the webhook signature keys and delivery knobs, and faults."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from simulators.kit.faults import FaultPlan

_PRACTICES = ("Strategy", "Operations", "Litigation", "Corporate", "Infrastructure", "CloudOps", "Legal",
              "Engineering", "ManagedServices", "Finance", "Knowledge", "Records", "QA", "Service-Desk",
              "Contractors")

#: The enterprise's managed groups: every practice (and back-office function) in every region, plus owners.
DEFAULT_GROUPS: tuple[str, ...] = (
    *(f"{practice}-{region}" for practice, region in itertools.product(_PRACTICES, ("NA", "EU", "ME", "APAC"))),
    "Finance", "PMO", "Records-Management", "Platform-Team",
)

_REGION_POLICIES = {
    "NA": ("Engagement-7y", "Contract-10y", "Legal-Matter-10y", "Deliverable-7y", "Service-5y"),
    "EU": ("Engagement-7y", "Contract-10y", "Legal-Matter-10y", "Deliverable-7y", "Service-6y"),
    "ME": ("Engagement-10y", "Contract-15y", "Legal-Matter-10y", "Deliverable-10y", "Service-10y"),
    "APAC": ("Engagement-7y", "Contract-10y", "Legal-Matter-10y", "Deliverable-7y", "Service-7y"),
}

#: The retention policies a records administrator made in Box Governance, named as the hub's policy names them.
DEFAULT_RETENTION_POLICIES: tuple[str, ...] = (
    *(f"{region}-{suffix}" for region, suffixes in _REGION_POLICIES.items() for suffix in suffixes),
    "DE-Engagement-10y", "DE-Contract-10y", "FR-Contract-10y", "Client-GLOBEX-Matter-25y",
)

#: Box's smallest file accepted by an upload session (smaller ones are uploaded whole).
MIN_SESSION_FILE_SIZE = 20 * 1024 * 1024
#: The part size Box hands out for files below 500 MB.
DEFAULT_PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class BoxSimConfig:
    """The simulated enterprise and app (a Box Platform app with Client Credentials Grant)."""

    client_id: str = "box-sim-client-id"
    client_secret: str = "box-sim-client-secret"  # noqa: S105 - the simulator's well-known default
    enterprise_id: str = "1164695563"
    #: How long an access token lives (Box's live about an hour).
    token_lifetime_s: float = 3_600.0
    groups: tuple[str, ...] = DEFAULT_GROUPS
    retention_policies: tuple[str, ...] = DEFAULT_RETENTION_POLICIES
    #: Upload sessions refuse smaller files (``file_size_too_small``); a test lowers it to upload in parts.
    min_session_file_size: int = MIN_SESSION_FILE_SIZE
    part_size: int = DEFAULT_PART_SIZE
    #: Download requests of a new version answered 202 with ``Retry-After: 1`` before its content is ready (Box
    #: answers so right after an upload); 0: ready at once.
    downloads_not_ready: int = 0
    #: Default page size of item listings (Box's is 100, at most 1000).
    page_size: int = 100
    #: The app's webhook signature keys (Developer Console, "Webhooks", "Manage signature keys").
    primary_key: str = "box-sim-primary-signature-key"
    secondary_key: str | None = "box-sim-secondary-signature-key"
    #: Hosts whose plain-http webhook address is accepted: a test exception only (Box takes https on 443 only).
    http_webhook_hosts: frozenset[str] = frozenset()
    #: Webhook retries: the first after ``webhook_backoff_s`` (doubling), up to 12 retries over 2 hours, as Box.
    webhook_backoff_s: float = 0.2
    webhook_max_backoff_s: float = 30 * 60.0
    webhook_horizon_s: float = 2 * 3_600.0
    webhook_attempts: int = 13
    webhook_timeout_s: float = 30.0
    faults: FaultPlan = field(default_factory=FaultPlan)
