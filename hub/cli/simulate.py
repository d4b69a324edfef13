"""``hub simulate``: a simulated ERP, SharePoint (Microsoft Graph subset) or DocuSign account for local use."""

from __future__ import annotations

import click

from hub.cli.common import log_for_server, pass_settings
from hub.settings import Settings, environ


def _secret(name: str, what: str) -> str:
    value = environ().get(name)
    if not value:
        raise click.ClickException(f"set {name} to {what}")
    return value


@click.command()
@click.argument("system", type=click.Choice(["erp", "sharepoint", "docusign"]))
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (keep it on loopback).")
@click.option("--port", type=int, help="Port (default: erp 8091, sharepoint 8092, docusign 8093).")
@click.option("--webhook-url", help="erp: the hub ingress events URL to post signed CloudEvents to; "
                                    "docusign: the ingress's /v1/webhooks/docusign/<source id> for Connect.")
@click.option("--webhook-secret-env", default=None,
              help="Environment variable holding the webhook secret: the Standard Webhooks secret (whsec_...) "
                   "for erp (default ERP_SIM_WEBHOOK_SECRET), the Connect HMAC key for docusign "
                   "(default DOCUSIGN_SIM_HMAC_KEY).")
@click.option("--readiness-url", help="erp: the hub's /v1/invoices/{number}/readiness, asked before finalising "
                                      "(API key from $ERP_SIM_READINESS_KEY).")
@pass_settings
def simulate(settings: Settings, system: str, host: str, port: int | None, webhook_url: str | None,
             webhook_secret_env: str | None, readiness_url: str | None) -> None:
    """Run a simulated ERP, SharePoint (Microsoft Graph subset) or DocuSign account as an HTTP service."""
    log_for_server(settings)
    if system == "docusign":
        from connectors.docusign.simulator import ConnectConfig, DocuSignSimConfig
        from connectors.docusign.simulator import run as run_docusign

        connect = None
        if webhook_url:
            key = _secret(webhook_secret_env or "DOCUSIGN_SIM_HMAC_KEY", "the Connect HMAC key the hub knows")
            connect = ConnectConfig(url=webhook_url, hmac_key=key)
        run_docusign(host, port or 8093, DocuSignSimConfig(token=settings.docusign_token.get_secret_value(),
                                                           connect=connect))
    elif system == "erp":
        from connectors.erp.simulator import ErpSimConfig, ReadinessGate
        from connectors.erp.simulator import run as run_erp
        from connectors.erp.simulator_webhooks import WebhookConfig

        webhook = gate = None
        if webhook_url:
            secret = _secret(webhook_secret_env or "ERP_SIM_WEBHOOK_SECRET", "the webhook secret the hub knows")
            webhook = WebhookConfig(url=webhook_url, secret=secret)
        if readiness_url:
            api_key = _secret("ERP_SIM_READINESS_KEY", "the ERP's API key for the hard-stop check")
            gate = ReadinessGate(url_template=readiness_url, api_key=api_key)
        run_erp(host, port or 8091, ErpSimConfig(token=settings.erp_token.get_secret_value(), webhook=webhook,
                                                 readiness=gate))
    else:
        from actors import DEFAULT_POLICY
        from connectors.sharepoint.simulator import DEFAULT_GROUPS, SimulatorConfig
        from connectors.sharepoint.simulator import run as run_graph
        from hub.policy import load_policy

        known = load_policy(settings.policy_file or DEFAULT_POLICY).security_groups.known_groups or []
        run_graph(host, port or 8092, SimulatorConfig(token=settings.graph_token.get_secret_value(),
                                                      drives=(settings.graph_drive_id,),
                                                      groups=tuple(dict.fromkeys([*known, *DEFAULT_GROUPS]))))
