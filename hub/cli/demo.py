"""``hub demo``: the end-to-end demo on the simulators (real servers when they answer, embedded otherwise)."""

from __future__ import annotations

import functools
import signal
import sys
import tempfile
import threading
from pathlib import Path

import click

from connectors.settings import GraphSettings
from hub.cli.common import log_for_operator, pass_settings
from hub.cli.compose import build_app, build_ingress
from hub.settings import Settings

#: How long the simulated Entra ID and DocuSign tokens live in the demo: short, so the hub renews them on the way.
DEMO_TOKEN_LIFETIME_S = 5.0


@click.command()
@click.option("--keep", is_flag=True, help="Keep the hub (ingress, console, workers) and the simulators running "
                                           "after the scenario, until Ctrl-C.")
@pass_settings
def demo(settings: Settings, keep: bool) -> None:
    """Run the end-to-end demo (real servers when they answer, the embedded mode otherwise); it ends with the
    operator console's address and the metrics the run produced."""
    from actors import load_policy
    from hub.cli.scenario import run_demo
    from simulators.sandbox import SignIn, running_sandbox

    log_for_operator(settings)
    policy = load_policy(settings.policy_file)
    groups = policy.security_groups.known_groups or []
    # The simulated tenant publishes every retention label the policy applies; the hub signs in, tokens expiring.
    sandbox = functools.partial(running_sandbox, labels=sorted(policy.retention.all_labels()),
                                sign_in=SignIn(token_lifetime_s=DEMO_TOKEN_LIFETIME_S))
    with tempfile.TemporaryDirectory(prefix="hub-demo-") as folder:
        code = run_demo(settings, build_app=build_app, build_ingress=build_ingress, running_sandbox=sandbox,
                        directory_groups=groups, subscribe=_subscribe_documents, echo=click.echo,
                        linger=_until_interrupted if keep else None, operators_file=Path(folder) / "operators.yaml")
    sys.exit(code)


def _until_interrupted() -> None:
    """Wait for Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        return


def _subscribe_documents(settings: GraphSettings, notification_url: str, client_state: str) -> None:
    """Subscribe the ingress's Graph webhook to the workspaces drive (document intake)."""
    from actors.document_intake.subscription import ensure_subscription
    from connectors.sharepoint.client import GraphClient

    graph = GraphClient.from_settings(settings)
    try:
        ensure_subscription(graph, notification_url, client_state)
    finally:
        graph.close()
