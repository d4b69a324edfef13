"""The simulated systems side by side, for the demo and the integration tests: the ERP simulator
(posting signed CloudEvents to the hub's ingress) and the SharePoint/Graph simulator, each on its own
loopback port, served from background threads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.erp.simulator import ErpSimConfig
from connectors.erp.simulator import create_app as erp_app
from connectors.erp.simulator_webhooks import WebhookConfig
from connectors.faults import FaultPlan
from connectors.sharepoint.simulator import DEFAULT_GROUPS, SimulatorConfig
from connectors.sharepoint.simulator import create_app as graph_app
from hub.ingress.server import serve_in_thread
from hub.settings import Settings

#: The CloudEvents source the simulated ERP claims.
ERP_SOURCE = "erp-sim://acme-psa/prod"


@dataclass(frozen=True)
class Sandbox:
    """Where the simulators listen, and their admin views."""

    erp_url: str
    graph_url: str  # ends in /v1.0, as Microsoft Graph's base URL
    erp_token: str
    graph_token: str
    drive_id: str

    def settings(self, base: Settings) -> Settings:
        """``base`` pointed at these simulators."""
        return base.model_copy(update={"erp_url": self.erp_url, "graph_url": self.graph_url,
                                       "graph_drive_id": self.drive_id})

    def erp_state(self) -> dict[str, Any]:
        """The ERP simulator's records."""
        state: dict[str, Any] = httpx.get(f"{self.erp_url}/_sim/state", timeout=10).json()
        return state

    def graph_state(self) -> dict[str, Any]:
        """The SharePoint simulator's drives, items, permissions, labels and fields."""
        state: dict[str, Any] = httpx.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/state", timeout=10).json()
        return state

    def graph_requests(self) -> dict[str, Any]:
        """Counts of committed creates, invites and calls (no duplicates is provable from these)."""
        counts: dict[str, Any] = httpx.get(f"{self.graph_url.removesuffix('/v1.0')}/_sim/requests",
                                           timeout=10).json()
        return counts

    def set_graph_faults(self, plan: FaultPlan) -> None:
        """Change the SharePoint simulator's faults mid-run."""
        httpx.put(f"{self.graph_url.removesuffix('/v1.0')}/_sim/faults", json=plan.to_json(), timeout=10)

    def flush_erp_webhooks(self, timeout_s: float = 20.0) -> None:
        """Wait until the ERP simulator delivered every webhook."""
        httpx.post(f"{self.erp_url}/_sim/deliveries/flush", params={"timeout_s": timeout_s}, timeout=timeout_s + 5)

    def erp(self) -> httpx.Client:
        """An HTTP client on the ERP simulator's API (as an ERP user's tool would be)."""
        return httpx.Client(base_url=f"{self.erp_url}/api/v1", timeout=10,
                            headers={"authorization": f"Bearer {self.erp_token}"})


@contextmanager
def running_sandbox(
    *,
    ingress_events_url: str,
    webhook_secret: str,
    groups: Sequence[str] = (),
    erp_faults: FaultPlan | None = None,
    graph_faults: FaultPlan | None = None,
    erp_token: str = "erp-sim-token",  # noqa: S107 - the simulators' well-known defaults
    graph_token: str = "graph-sim-token",  # noqa: S107
    drive_id: str = "workspaces",
) -> Iterator[Sandbox]:
    """Serve both simulators while the block runs; the ERP posts its events to ``ingress_events_url``."""
    webhook = WebhookConfig(url=ingress_events_url, secret=webhook_secret, source=ERP_SOURCE, backoff_s=0.2)
    erp = erp_app(ErpSimConfig(token=erp_token, faults=erp_faults or FaultPlan(), webhook=webhook))
    directory = tuple(dict.fromkeys([*groups, *DEFAULT_GROUPS]))
    graph = graph_app(SimulatorConfig(token=graph_token, drives=(drive_id,), groups=directory,
                                      faults=graph_faults or FaultPlan()))
    with ExitStack() as stack:
        erp_url = stack.enter_context(serve_in_thread(erp))
        graph_url = stack.enter_context(serve_in_thread(graph))
        yield Sandbox(erp_url=erp_url, graph_url=f"{graph_url}/v1.0", erp_token=erp_token,
                      graph_token=graph_token, drive_id=drive_id)
