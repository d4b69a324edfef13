"""``hub documents``: document intake's subscriptions to the document platforms' change notifications (Graph's
on the workspaces drive, Box's webhook on the workspaces' folder)."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta

import click

from hub.cli.common import Config, log_for_operator, log_for_server, pass_config


@click.group()
def documents() -> None:
    """Document intake: the document platforms' change notifications."""


@documents.command("subscribe-box")
@click.argument("address")
@pass_config
def documents_subscribe_box(config: Config, address: str) -> None:
    """Have Box notify ADDRESS (the ingress's https /v1/webhooks/box/<source id>) of uploads, files put in the
    trash and metadata changes below the workspaces' folder (a webhook V2, kept when it exists and given the
    triggers it lacks; Box's do not expire). The ingress source lists the app's two signature keys under box."""
    from connectors.box.client import BoxClient
    from connectors.box.platform import BoxPlatform
    from hub.policy import WORKSPACES_ROOT

    log_for_operator(config.settings)
    box = BoxPlatform(BoxClient.from_settings(config.connections.box))
    try:
        folder = box.ensure_folder(WORKSPACES_ROOT)
        webhook = box.subscribe(folder.id, address)
    finally:
        box.client.close()
    click.echo(f"webhook {webhook} on folder {folder.id} ({WORKSPACES_ROOT})")


@documents.command("subscribe")
@click.argument("notification_url")
@click.option("--keep", is_flag=True, help="Keep running: renew the subscription before each expiry until SIGTERM.")
@click.option("--lifetime-minutes", type=click.IntRange(1, 42_300), default=2 * 24 * 60, show_default=True,
              help="How long each subscription or renewal lasts (Graph's drive maximum: 42300).")
@pass_config
def documents_subscribe(config: Config, notification_url: str, keep: bool, lifetime_minutes: int) -> None:
    """Subscribe NOTIFICATION_URL (the ingress's https /v1/webhooks/graph/<source id>) to changes of the
    workspaces drive, or renew the subscription it has. Drive subscriptions expire: run it with --keep (it
    renews a third of the lifetime before each expiry), or run it again well within the lifetime.

    The clientState is HUB_GRAPH_CLIENT_STATE; the ingress source must list it under graph.client_states.
    """
    from actors.document_intake.subscription import SubscriptionKeeper
    from connectors.sharepoint.client import GraphClient

    (log_for_server if keep else log_for_operator)(config.settings)  # --keep runs as a server: INFO
    state = config.connections.graph.client_state
    if state is None or not state.get_secret_value():
        raise click.UsageError("set HUB_GRAPH_CLIENT_STATE: Graph echoes it so the ingress can check each notification")
    graph = GraphClient.from_settings(config.connections.graph)
    keeper = SubscriptionKeeper(graph, notification_url, state.get_secret_value(),
                                lifetime=timedelta(minutes=lifetime_minutes))
    try:
        if keep:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            keeper.run(stop)
            return
        subscription = keeper.renew()
    finally:
        graph.close()
    click.echo(f"subscription {subscription.id} on {subscription.resource} until {subscription.expiration.isoformat()}")
