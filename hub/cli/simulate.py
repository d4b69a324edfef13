"""``hub simulate``: a simulated ERP, SharePoint (Microsoft Graph subset), DocuSign account or Box enterprise for
local use."""

from __future__ import annotations

import click
import httpx

from hub.cli.common import Config, log_for_server, pass_config
from hub.settings import environ


def _secret(name: str, what: str) -> str:
    value = environ().get(name)
    if not value:
        raise click.ClickException(f"set {name} to {what}")
    return value


@click.command()
@click.argument("system", type=click.Choice(["erp", "sharepoint", "docusign", "box"]))
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it on loopback).")
@click.option("--port", type=int, help="Port (default: erp 8091, sharepoint 8092, docusign 8093, box 8094).")
@click.option("--webhook-url", help="erp: the hub ingress events URL to post signed CloudEvents to; "
                                    "docusign: the ingress's /v1/webhooks/docusign/<source id> for Connect.")
@click.option("--webhook-secret-env", default=None,
              help="Environment variable holding the webhook secret: the Standard Webhooks secret (whsec_...) "
                   "for erp (default ERP_SIM_WEBHOOK_SECRET), the Connect HMAC key for docusign "
                   "(default DOCUSIGN_SIM_HMAC_KEY).")
@click.option("--readiness-url", help="erp: the hub's /v1/invoices/{number}/readiness, asked before finalising "
                                      "(API key from $ERP_SIM_READINESS_KEY).")
@pass_config
def simulate(config: Config, system: str, host: str, port: int | None, webhook_url: str | None,
             webhook_secret_env: str | None, readiness_url: str | None) -> None:
    """Run a simulated ERP, SharePoint (Microsoft Graph subset), DocuSign account or Box enterprise as an HTTP
    service."""
    settings, connections = config.settings, config.connections
    log_for_server(settings)
    if system == "box":
        _simulate_box(config, host, port or 8094)
    elif system == "docusign":
        from simulators.docusign import ConnectConfig, DocuSignSimConfig
        from simulators.docusign import run as run_docusign

        connect = None
        if webhook_url:
            key = _secret(webhook_secret_env or "DOCUSIGN_SIM_HMAC_KEY", "the Connect HMAC key the hub knows")
            connect = ConnectConfig(url=webhook_url, hmac_key=key)
        run_docusign(host, port or 8093, DocuSignSimConfig(token=connections.docusign.token.get_secret_value(),
                                                           connect=connect))
    elif system == "erp":
        from simulators.erp import ErpSimConfig, ReadinessGate, WebhookConfig
        from simulators.erp import run as run_erp

        webhook = gate = None
        if webhook_url:
            secret = _secret(webhook_secret_env or "ERP_SIM_WEBHOOK_SECRET", "the webhook secret the hub knows")
            webhook = WebhookConfig(url=webhook_url, secret=secret)
        if readiness_url:
            api_key = _secret("ERP_SIM_READINESS_KEY", "the ERP's API key for the hard-stop check")
            gate = ReadinessGate(url_template=readiness_url, api_key=api_key)
        run_erp(host, port or 8091, ErpSimConfig(token=connections.erp.token.get_secret_value(), webhook=webhook,
                                                 readiness=gate))
    else:
        from actors import load_policy
        from simulators.sandbox import DOCUMENT_COLUMNS
        from simulators.sharepoint import BUILTIN_COLUMNS, DEFAULT_GROUPS, SimulatorConfig
        from simulators.sharepoint import run as run_graph

        policy = load_policy(settings.policy_file)
        known = policy.security_groups.known_groups or []
        graph = connections.graph
        site = httpx.URL(graph.site_url)
        # The site HUB_GRAPH_SITE_URL names (https://host/sites/<name>), its library HUB_GRAPH_LIBRARY, the
        # firm's document columns and every label the policy applies, published.
        run_graph(host, port or 8092, SimulatorConfig(
            token=graph.token.get_secret_value(), drives=(graph.library,),
            web_host=f"{site.scheme}://{site.host}", site=site.path.strip("/").rpartition("/")[2] or "hub",
            groups=tuple(dict.fromkeys([*known, *DEFAULT_GROUPS])), columns=(*BUILTIN_COLUMNS, *DOCUMENT_COLUMNS),
            retention_labels=policy.retention.all_labels(),
            # For local use beside `hub serve` on plain http: notifications may go to loopback over http (Graph
            # itself notifies https URLs only).
            http_notification_hosts=frozenset({"127.0.0.1", "::1", "localhost"})))


def _simulate_box(config: Config, host: str, port: int) -> None:
    """The Box enterprise of ``HUB_BOX_*`` (app, enterprise), with the policy's groups and retention policies; its
    webhooks signed with $BOX_SIM_PRIMARY_KEY and $BOX_SIM_SECONDARY_KEY (the simulator's defaults when unset)."""
    from actors import load_policy
    from simulators.box import DEFAULT_GROUPS, BoxSimConfig
    from simulators.box import run as run_box

    policy = load_policy(config.settings.policy_file)
    box, env = config.connections.box, environ()
    run_box(host, port, BoxSimConfig(
        client_id=box.client_id, client_secret=box.client_secret.get_secret_value(), enterprise_id=box.enterprise_id,
        groups=tuple(dict.fromkeys([*(policy.security_groups.known_groups or []), *DEFAULT_GROUPS])),
        retention_policies=tuple(sorted(policy.retention.all_labels())),
        primary_key=env.get("BOX_SIM_PRIMARY_KEY") or BoxSimConfig.primary_key,
        secondary_key=env.get("BOX_SIM_SECONDARY_KEY") or BoxSimConfig.secondary_key,
        # For local use beside `hub serve` on plain http: webhooks may go to loopback over http (Box's go to https).
        http_webhook_hosts=frozenset({"127.0.0.1", "::1", "localhost"})))
