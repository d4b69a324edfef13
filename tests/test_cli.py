"""The ``hub`` command: demo (embedded and real), trace, schemas check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from hub.cli import main
from hub.cli.scenario import project_created
from hub.runtime import Runtime
from hub.workers import running_worker
from tests.conftest import ROOT, worker_env
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
    assert "embedded mode: the flight record of ENG-ACME-0001:v1 goes with this process" in result.stdout
    assert "workspace provisioned in" in result.stdout
    assert "retention label DE-Engagement-10y" in result.stdout
    # One matter on Box beside the SharePoint engagements, with its wall.
    assert re.search(r"10\. legal matter MAT-GLOBEX-0042 .* on Box; the ERP shows https://app\.box\.com/folder/\d+",
                     result.stdout)
    assert "Box: collaborations Corporate-NA (editor), Finance-NA (viewer), Records-NA (viewer); retention policy " \
           "Client-GLOBEX-Matter-25y" in result.stdout
    assert "its Box collaboration was removed at once" in result.stdout
    assert "demo OK" in result.stdout
    assert re.search(r"11\. the operator console: http://127\.0\.0\.1:\d+/console", result.stdout)


@pytest.mark.integration
def test_the_demo_uses_the_real_servers_when_they_answer(prefix: str) -> None:
    result = _run_hub(["demo"], worker_env(prefix, HUB_EMBEDDED="auto"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode: real servers" in result.stdout
    assert "provisioning  erp.project.created.v1" in result.stdout and "demo OK" in result.stdout
    assert "a forged copy was refused: HTTP 401" in result.stdout
    # It ends with the console's address and the metrics the run produced.
    assert re.search(r"11\. the operator console: http://127\.0\.0\.1:\d+/console", result.stdout)
    assert 'hub_messages_total{actor="provisioning",outcome="ok"}' in result.stdout
    assert re.search(r"hub_provisioning_seconds_count \d+ \(mean", result.stdout)
    assert 'problem="unauthenticated",route="/v1/events",status="401"} 1' in result.stdout
    # The printed `hub trace` works after the demo ended.
    hint = re.search(r"HUB_QUEUE_PREFIX=(\S+) hub trace (\S+)", result.stdout)
    assert hint is not None, result.stdout
    demo_prefix, event_id = hint.groups()
    try:
        traced = _run_hub(["trace", event_id], worker_env(demo_prefix))
        assert traced.returncode == 0, traced.stderr
        assert f"journey {event_id}" in traced.stdout and "provisioning  erp.project.created.v1" in traced.stdout
        # ... and so do the other show commands, in JSON for scripts.
        hops = json.loads(_run_hub(["trace", event_id, "-o", "json"], worker_env(demo_prefix)).stdout)
        assert {(hop["actor"], hop["outcome"]) for hop in hops} >= {("provisioning", "ok"), ("fanout", "ok")}
        shown = _run_hub(["xref", "project:erp:ENG-ACME-0001", "-o", "json"], worker_env(demo_prefix))
        assert shown.returncode == 0, shown.stderr
        assert {(i["system"], i["primary"]) for i in json.loads(shown.stdout)["identities"]} >= {("erp", True)}
        pending = _run_hub(["db", "outbox", "-o", "json"], worker_env(demo_prefix))
        assert pending.returncode == 0, pending.stderr
        assert json.loads(pending.stdout)["pending"] == 0
    finally:
        client = redis.Redis()
        keys = list(client.scan_iter(f"{demo_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


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


def test_hub_answers_version_and_short_help() -> None:
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("hub, version ")
    short = CliRunner().invoke(main, ["-h"])
    assert short.exit_code == 0 and "Commands:" in short.output
    assert CliRunner().invoke(main, ["dlq", "list", "-h"]).output.startswith("Usage: ")


UNREACHABLE = {"HUB_REDIS_URL": "redis://127.0.0.1:1/0", "HUB_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
               "HUB_DATABASE_URL": "postgresql+psycopg://guest:guest@127.0.0.1:1/hub_test"}


@pytest.mark.parametrize(("args", "server", "variable"), [
    (["trace", "some-event"], "Redis does not answer at redis://127.0.0.1:1/0", "HUB_REDIS_URL"),
    (["xref", "project:erp:X"], "the database does not answer at postgresql+psycopg://***@127.0.0.1:1/hub_test "
                                "(database unavailable: OperationalError)", "HUB_DATABASE_URL"),
    (["dlq", "list"], "RabbitMQ does not answer at amqp://***@127.0.0.1:1/%2F", "HUB_AMQP_URL"),
])
def test_an_unreachable_server_is_one_line_naming_it_never_a_traceback(
    prefix: str, args: list[str], server: str, variable: str
) -> None:
    result = _run_hub(args, worker_env(prefix, **{variable: UNREACHABLE[variable]}))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: {server}"
    assert "Traceback" not in result.stderr and "guest:guest" not in result.stderr


@pytest.mark.parametrize("command", [["worker"], ["serve"], ["demo"]])
def test_a_broken_policy_file_stops_every_process_with_the_file_and_line(
    prefix: str, tmp_path: Path, command: list[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nfolders: [\n")
    sources = ROOT / "examples" / "sources.yaml"
    result = _run_hub(command, worker_env(prefix, HUB_POLICY_FILE=str(policy), HUB_SOURCES_FILE=str(sources)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {policy}, line 3: invalid YAML")
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_dead_letters_of_queues_never_declared_are_none_not_an_error(prefix: str) -> None:
    listed = _run_hub(["dlq", "list", "--output", "json"], worker_env(prefix))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [] and "0 dead letter(s)" in listed.stderr
    replay = _run_hub(["dlq", "replay", "--actor", "provisioning"], worker_env(prefix))
    assert replay.returncode == 0 and "no dead letter to replay" in replay.stderr


@pytest.mark.integration
def test_an_unknown_invoice_is_held_and_the_command_says_so_with_its_exit_code(prefix: str) -> None:
    shown = _run_hub(["readiness", "show", "INV-NEVER-DRAFTED", "--output", "json"], worker_env(prefix))
    assert shown.returncode == 3, shown.stderr
    body = json.loads(shown.stdout)
    assert body["status"] == "held" and body["may_finalize"] is False
    assert body["hold_reasons"][0]["code"] == "INVOICE_NOT_DRAFTED"


def test_list_and_show_commands_speak_json_for_scripts() -> None:
    routes = CliRunner().invoke(main, ["routes", "--output", "json"])
    assert routes.exit_code == 0 and json.loads(routes.stdout)["*"] == ["fanout"]
    types = CliRunner().invoke(main, ["schemas", "list", "-o", "json"])
    listed = {entry["type"]: entry for entry in json.loads(types.stdout)}
    assert listed["erp.project.created.v1"]["dataschema"].startswith(
        "http://127.0.0.1:8080/v1/schemas/erp.project.created.v1/")
    check = CliRunner().invoke(main, ["schemas", "check", "-o", "json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["compatible"] is True


def test_interactive_commands_log_at_warning_unless_asked() -> None:
    import logging

    from hub.cli.common import log_for_operator, log_for_server
    from hub.settings import load_settings

    root = logging.getLogger()
    saved = root.level, list(root.handlers), logging.getLogger("pika").level
    try:
        log_for_operator(load_settings())
        assert root.level == logging.WARNING
        log_for_operator(load_settings(log_level="DEBUG"))
        assert root.level == logging.DEBUG
        log_for_server(load_settings())
        assert root.level == logging.INFO
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("pika").setLevel(saved[2])
