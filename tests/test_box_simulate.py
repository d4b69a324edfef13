"""``hub simulate box``: the Box enterprise of ``HUB_BOX_*`` for local use, with the policy's groups and
retention policies, which the hub's Box client signs in to; ``hub documents subscribe-box``: Box's webhook on the
workspaces' folder."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from actors import load_policy
from connectors.box.client import BoxClient
from connectors.settings import BoxSettings
from hub.cli import main
from tests.conftest import worker_env
from tests.support.box import running_box
from tests.support.rabbit import wait_until


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_sim/tokens", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_hub_simulate_box_serves_the_enterprise_the_box_settings_name(prefix: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = worker_env(prefix, HUB_BOX_CLIENT_ID="firm-box-app", HUB_BOX_CLIENT_SECRET="firm-box-secret",
                     HUB_BOX_ENTERPRISE_ID="42")
    process = subprocess.Popen([sys.executable, "-m", "hub", "simulate", "box", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _answers(url), timeout=30)
        box = BoxClient.from_settings(BoxSettings(url=url, upload_url=f"{url}/api", client_id="firm-box-app",
                                                  client_secret=SecretStr("firm-box-secret"), enterprise_id="42"))
        try:
            assert box.find_group("Litigation-NA").name == "Litigation-NA"
            names = {p.policy_name for p in box.retention_policies()}
            assert names == load_policy().retention.all_labels()
        finally:
            box.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_hub_documents_subscribe_box_makes_one_webhook_on_the_workspaces_folder(
        prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_box() as sim:
        for key, value in worker_env(prefix, HUB_BOX_URL=sim.url, HUB_BOX_UPLOAD_URL=f"{sim.url}/api").items():
            monkeypatch.setenv(key, value)
        address = f"{sim.receiver_url.removesuffix('/box')}/v1/webhooks/box/box-sim"
        first = CliRunner().invoke(main, ["documents", "subscribe-box", address])
        again = CliRunner().invoke(main, ["documents", "subscribe-box", address])
        assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
        state = sim.state()
        [hook] = state["webhooks"]
        assert hook["target"] == {"type": "folder", "id": state["items"]["Engagements"]["id"]}
        assert hook["address"] == address and first.output.split()[1] == again.output.split()[1] == hook["id"]
