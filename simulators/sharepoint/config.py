"""What the Graph simulator knows at start: its token, site, document libraries, directory groups, columns,
published retention labels, faults and delivery knobs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from simulators.kit.faults import FaultPlan
from simulators.sharepoint.login import EntraTenant

#: The simulated directory's security groups: every practice in every region, plus back-office owners.
DEFAULT_GROUPS: tuple[str, ...] = (
    *(f"{practice}-{region}" for practice, region in itertools.product(
        ("Strategy", "Legal", "Engineering", "ManagedServices"), ("EU", "NA", "ME", "APAC"))),
    "Finance", "PMO", "Records-Management", "Platform-Team",
)

#: The columns every SharePoint document library has before anyone adds one (internal names).
BUILTIN_COLUMNS: tuple[str, ...] = ("Title", "FileLeafRef", "ContentType", "_ExtendedDescription")


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator knows at start: token, site and libraries, directory, columns, labels, faults and
    delivery knobs.

    The tenant is as strict as SharePoint by default: drive ids are Graph-like (``b!`` and base64), the site's
    owners, members and visitors groups hold every library through inheritance, a list-item field must be a
    column of the library, and (once ``retention_labels`` lists them) only published labels apply. The
    ``None``/``False`` settings exist for tests about one thing at a time, and say what they give up.
    """

    token: str = "graph-sim-token"  # noqa: S105 - the simulator's well-known default, as in the hub's settings
    #: Entra ID sign-in (:mod:`simulators.sharepoint.login`): Graph then takes only the tokens it issued, not
    #: ``token``.
    sign_in: EntraTenant | None = None
    #: The site's document libraries, by name (each is a drive).
    drives: tuple[str, ...] = ("workspaces",)
    #: Drive ids as Graph makes them (``b!`` + base64 of the site and list ids); ``False``: a drive's id is its
    #: name (for tests written against a fixed id).
    graph_ids: bool = True
    groups: tuple[str, ...] = DEFAULT_GROUPS
    #: The site's Owners, Members and Visitors SharePoint groups hold every library (``False``: the site
    #: grants nothing of its own, so an item's permissions are only the ones invited on it).
    site_groups: bool = True
    #: The columns each library has at start; ``None`` accepts any field name (SharePoint never does).
    columns: tuple[str, ...] | None = BUILTIN_COLUMNS
    faults: FaultPlan = field(default_factory=FaultPlan)
    web_host: str = "https://sim.sharepoint.example"
    site: str = "hub"
    group_domain: str = "sim.sharepoint.example"
    tenant_id: str = "6f9c2e1a-0b7d-4c55-9a3e-5d2b8f1e7c40"
    page_size: int = 200
    #: Host name of pre-authenticated download and upload URLs (None: the host the request came to).
    preauth_host: str | None = None
    #: The retention labels the tenant publishes; ``None`` accepts any name, and the label list then answers
    #: 403 as it does to an app without records-management permission.
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
