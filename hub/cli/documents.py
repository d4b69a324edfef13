"""``hub documents``: document intake's subscription to the document library's change notifications."""

from __future__ import annotations

import click

from hub.cli.common import Config, log_for_operator, pass_config


@click.group()
def documents() -> None:
    """Document intake: the document library's change notifications."""


@documents.command("subscribe")
@click.argument("notification_url")
@pass_config
def documents_subscribe(config: Config, notification_url: str) -> None:
    """Subscribe NOTIFICATION_URL (the ingress's /v1/webhooks/graph/<source id>) to changes of the
    workspaces drive, or renew the subscription it has (run it daily: drive subscriptions expire).

    The clientState is HUB_GRAPH_CLIENT_STATE; the ingress source must list it under graph.client_states.
    """
    from actors.document_intake.subscription import ensure_subscription
    from connectors.sharepoint.client import GraphClient

    log_for_operator(config.settings)
    state = config.connections.graph.client_state
    if state is None or not state.get_secret_value():
        raise click.UsageError("set HUB_GRAPH_CLIENT_STATE: Graph echoes it so the ingress can check each notification")
    graph = GraphClient.from_settings(config.connections.graph)
    try:
        subscription = ensure_subscription(graph, notification_url, state.get_secret_value())
    finally:
        graph.close()
    click.echo(f"subscription {subscription.id} on {subscription.resource} until {subscription.expiration.isoformat()}")
