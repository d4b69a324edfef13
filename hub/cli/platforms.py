"""The document platforms of the composition root: SharePoint always, Box when the policy's ``platforms`` section
can choose it, and the choice per project."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.box.platform import BoxPlatform
    from connectors.platform import Platforms
    from connectors.sharepoint.client import GraphClient
    from hub.cli.compose import Connections
    from hub.policy import Policy

__all__ = ["box_of", "document_platforms"]


def document_platforms(policy: Policy, connections: Connections, *, graph: GraphClient
                       ) -> tuple[Platforms, tuple[Callable[[], None], ...]]:
    """The document platforms the policy's ``platforms`` section can choose (SharePoint through ``graph``; Box
    from ``HUB_BOX_*`` when a rule or the default names it), the choice per project, and the closers of the
    clients made here."""
    from actors import platform_rules
    from connectors.box.client import BoxClient
    from connectors.box.platform import BoxPlatform
    from connectors.platform import DocumentPlatform, Platforms
    from connectors.sharepoint.platform import GraphPlatform

    rules = platform_rules(policy)
    state = connections.graph.client_state
    made: list[DocumentPlatform] = [GraphPlatform(graph, client_state=state.get_secret_value() if state else None)]
    closers: list[Callable[[], None]] = []
    if "box" in rules.in_use():
        box = BoxClient.from_settings(connections.box)
        made.append(BoxPlatform(box, web=str(connections.box.web_url)))
        closers.append(box.close)
    if rules.default == "box":
        made.reverse()
    return Platforms(made, choose=rules.platform_for), tuple(closers)


def box_of(platforms: Platforms) -> BoxPlatform | None:
    """The Box platform among ``platforms`` (reconciliation reads Box's workspaces with it), or None."""
    from connectors.box.platform import BoxPlatform

    return next((platform for platform in platforms if isinstance(platform, BoxPlatform)), None)
