"""What the Graph simulator knows at start: its token, drives, directory groups, faults and delivery knobs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from simulators.kit.faults import FaultPlan

#: The simulated directory's security groups: every practice in every region, plus back-office owners.
DEFAULT_GROUPS: tuple[str, ...] = (
    *(f"{practice}-{region}" for practice, region in itertools.product(
        ("Strategy", "Legal", "Engineering", "ManagedServices"), ("EU", "NA", "ME", "APAC"))),
    "Finance", "PMO", "Records-Management", "Platform-Team",
)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator knows at start: token, drives, directory, faults and delivery knobs."""

    token: str = "graph-sim-token"  # noqa: S105 - the simulator's well-known default, as in the hub's settings
    drives: tuple[str, ...] = ("workspaces",)
    groups: tuple[str, ...] = DEFAULT_GROUPS
    faults: FaultPlan = field(default_factory=FaultPlan)
    web_host: str = "https://sim.sharepoint.example"
    site: str = "hub"
    group_domain: str = "sim.sharepoint.example"
    tenant_id: str = "6f9c2e1a-0b7d-4c55-9a3e-5d2b8f1e7c40"
    page_size: int = 200
    #: Host name of pre-authenticated download and upload URLs (None: the host the request came to).
    preauth_host: str | None = None
    #: Known retention labels; ``None`` accepts any name.
    retention_labels: frozenset[str] | None = None
    validation_timeout_s: float = 10.0
    #: The CA bundle (PEM file) the validation handshake and the notifications trust for https endpoints
    #: (None: the system's): a test serving its endpoint with a certificate of its own names it here.
    notify_ca_file: str | None = None
    #: Hosts whose plain-http notificationUrl is accepted: a test exception only, empty by default (Graph
    #: refuses every notificationUrl that is not https).
    http_notification_hosts: frozenset[str] = frozenset()
    #: Change notifications: the first retry's delay (doubling, at most ``notify_max_backoff_s`` apart), for
    #: up to ``notify_horizon_s`` (Graph's 4 hours) after the first attempt.
    notify_backoff_s: float = 0.2
    notify_max_backoff_s: float = 30 * 60.0
    notify_horizon_s: float = 4 * 3_600.0
    notify_timeout_s: float = 3.0
    max_subscription_minutes: int = 42_300
