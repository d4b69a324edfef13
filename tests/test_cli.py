"""The ``hub`` command: demo (embedded and real), trace, schemas check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.demo import project_created
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.conftest import worker_env
from tests.support.rabbit import wait_until


def _run_hub(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_demo_runs_embedded_when_no_server_answers(prefix: str) -> None:
    env = worker_env(prefix, HUB_EMBEDDED="auto", HUB_AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F",
                     HUB_REDIS_URL="redis://127.0.0.1:1/0")
    result = _run_hub(["demo"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode: EMBEDDED" in result.stdout
    assert "workspace provisioned in" in result.stdout
    assert "retention label DE-Engagement-10y" in result.stdout
    assert "demo OK" in result.stdout


@pytest.mark.integration
def test_the_demo_uses_the_real_servers_when_they_answer(prefix: str) -> None:
    result = _run_hub(["demo"], worker_env(prefix, HUB_EMBEDDED="auto"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode: real servers" in result.stdout
    assert "provisioning  erp.project.created.v1" in result.stdout and "demo OK" in result.stdout
    assert "a forged copy was refused: HTTP 401" in result.stdout


@pytest.mark.integration
def test_hub_trace_prints_the_journey_of_an_event(
    app: Runtime, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.dispatcher is not None
    event = project_created(app.registry)
    with running_worker(app, threads=1):
        app.dispatcher.dispatch(event)
        assert wait_until(lambda: any(h.outcome == "ok" for h in app.flight.hops(event.get_id())))
    for key, value in worker_env(prefix).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["trace", event.get_id()])
    assert result.exit_code == 0, result.output
    assert f"journey {event.get_id()}" in result.output
    assert "fanout" in result.output and "#1 ok" in result.output
    missing = CliRunner().invoke(main, ["trace", "no-such-event"])
    assert missing.exit_code != 0 and "no flight record" in missing.output


def test_schemas_check_passes_against_the_released_snapshot() -> None:
    result = CliRunner().invoke(main, ["schemas", "check"])
    assert result.exit_code == 0, result.output
    assert "backward compatible" in result.output


def test_schemas_check_fails_on_a_breaking_change(tmp_path: Path) -> None:
    # The released snapshot lacks a field that the current schema requires without a default:
    # the current reader cannot read data written with the released version.
    released = tmp_path / "released"
    shutil.copytree(Path(str(files("schemas"))) / "released", released)
    path = released / "hub.erp.ProjectCreated.avsc"
    schema = json.loads(path.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "partner"]
    path.write_text(json.dumps(schema))
    result = CliRunner().invoke(main, ["schemas", "check", "--against", str(released)])
    assert result.exit_code != 0
    assert "INCOMPATIBLE hub.erp.ProjectCreated" in result.output
    assert "partner" in result.output


def test_an_invalid_setting_stops_the_command_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {"HUB_LEASE_TTL_MS": "soon"}
    result = _run_hub(["routes"], env)
    assert result.returncode != 0
    assert "HUB_LEASE_TTL_MS" in result.stderr
