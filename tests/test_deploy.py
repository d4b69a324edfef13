"""The Docker deployment, checked without a Docker engine.

``docker-compose.yml`` is validated against the compose specification's JSON schema and against the
rules of the stack (healthchecks, restart policies, loopback ports, passwords, profiles, real settings
and commands); the ``Dockerfile``'s install step is run from a read-only copy of the tree.

Past 400 lines on purpose: every rule of the compose file and the image in one place, each checked without a Docker
engine.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from hub.cli import main
from hub.cli.common import Config
from hub.cli.compose import Connections, load_sources
from hub.ingress.sources import webhook_key
from hub.registry import SchemaRegistry
from hub.settings import ENV_PREFIX
from simulators.erp import WebhookConfig

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "deploy" / "compose-spec" / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PACKAGES = ("hub", "actors", "connectors", "observability", "schemas")
SETTING_NAMES = {str(model.model_config.get("env_prefix", "")).upper() + name.upper()
                 for model in Connections.models() for name in model.model_fields}


# --- reading the Dockerfile --------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages, each a list of instructions starting with its FROM."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    stages: list[list[Instruction]] = []
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def final_stage() -> list[Instruction]:
    """The instructions of the image's last stage."""
    return dockerfile_stages()[-1]


def exec_form(keyword: str) -> list[str]:
    """The final stage's ENTRYPOINT or CMD, which must be a JSON array (exec form)."""
    (instruction,) = [i for i in final_stage() if i.keyword == keyword][-1:]
    value = json.loads(instruction.arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} is not exec form"
    return value


def image_entrypoint() -> list[str]:
    """The image's ENTRYPOINT."""
    return exec_form("ENTRYPOINT")


def image_cmd() -> list[str]:
    """The image's CMD."""
    return exec_form("CMD")


def dockerfile_env() -> dict[str, str]:
    """The final stage's ENV variables."""
    found: dict[str, str] = {}
    for instruction in final_stage():
        if instruction.keyword == "ENV":
            found.update(item.split("=", 1) for item in shlex.split(instruction.arguments))
    return found


def install_step() -> tuple[int, list[Instruction], list[str]]:
    """The build stage that installs the package (its index and instructions), and its ``pip install`` argv."""
    for index, stage in enumerate(dockerfile_stages()):
        for instruction in stage:
            if instruction.keyword != "RUN" or not re.search(r"\bpip install\b", instruction.arguments):
                continue
            (command,) = [c for c in instruction.arguments.split("&&") if re.search(r"\bpip install\b", c)]
            return index, stage, shlex.split(command)
    raise AssertionError("no RUN step installs the package")


def copied_paths(stage: list[Instruction]) -> set[str]:
    """What the stage's COPY instructions take from the build context."""
    return {part.rstrip("/") for i in stage if i.keyword == "COPY" and not i.arguments.startswith("--from=")
            for part in shlex.split(i.arguments)[:-1]}


# --- reading the compose file ------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}$]*))?\}|(?P<named>[A-Za-z_]\w*))"
)


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Compose's variable interpolation on every value; an unset variable without a default is an error
    (the stack must start with no variable set)."""
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"]
        # With a colon an empty value counts as unset.
        found = (environ.get(name) or None) if op in (":-", ":?") else environ.get(name)
        if found is not None:
            return found
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no default: `docker compose up` would need it set")

    assert "$" not in _VARIABLE.sub("", value), f"unsupported interpolation in {value!r}"
    return _VARIABLE.sub(replace, value)


def load_compose(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as Docker Compose sees it: YAML (anchors and merge keys), then interpolated."""
    document: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")), environ or {})
    return document


@pytest.fixture
def compose() -> dict[str, Any]:
    """The compose file with no variable set: every default in force."""
    return load_compose()


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as strings (the mapping and the list forms)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in raw.items()}


def hub_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services running the image this repository's Dockerfile builds."""
    return {name: service for name, service in compose["services"].items() if "build" in service}


def hub_argv(service: Mapping[str, Any]) -> list[str]:
    """What a hub service runs: the image's entrypoint and the service's command."""
    entrypoint = service.get("entrypoint", image_entrypoint())
    command = service.get("command", image_cmd())
    as_list = [shlex.split(part) if isinstance(part, str) else part for part in (entrypoint, command)]
    return [*as_list[0], *as_list[1]]


def services_running(compose: Mapping[str, Any], subcommand: str) -> dict[str, list[str]]:
    """argv of every hub service running ``hub <subcommand>``."""
    found = {name: hub_argv(service) for name, service in hub_services(compose).items()}
    return {name: argv for name, argv in found.items() if argv[:2] == ["hub", subcommand]}


def option(argv: list[str], name: str) -> str:
    """The value given to ``--name`` in argv."""
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def shell_text(value: Any) -> str:
    """A command, entrypoint or healthcheck as one string, whatever its form."""
    return " ".join(value) if isinstance(value, list) else str(value or "")


def seconds(duration: str) -> float:
    """A compose duration such as ``1m30s`` in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- compose file tests --------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in validator_class(schema).iter_errors(compose)]
    assert errors == []


def test_the_compose_schema_refuses_a_misspelt_key(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    compose["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    compose["services"]["worker"]["restart"] = ["always"]
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(compose))
    assert len(errors) == 2


def test_every_service_has_a_healthcheck_and_a_restart_policy(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert shell_text(check["test"]).split(" ")[0] in {"CMD", "CMD-SHELL"}, name
        assert re.fullmatch(r"always|unless-stopped|on-failure(:\d+)?", str(service.get("restart"))), name


def test_every_published_port_is_bound_to_the_loopback_address(compose: dict[str, Any]) -> None:
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None  # HOST_IP:PUBLISHED:TARGET
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond the loopback address"
            published += 1
    assert published >= 5


def test_the_ingress_runs_hub_serve_with_a_read_only_sources_file(compose: dict[str, Any]) -> None:
    ingress = services_running(compose, "serve")
    assert len(ingress) == 1, "exactly one ingress service"
    name = next(iter(ingress))
    service, env = compose["services"][name], environment(compose["services"][name])
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[target] = (source, mode)
    source, mode = mounts[env["HUB_SOURCES_FILE"]]
    assert mode == ["ro"], "the sources file is mounted read-only"
    assert (ROOT / source).is_file()
    host, _, port = env["HUB_HTTP_BIND"].rpartition(":")
    assert host == "0.0.0.0" and f"127.0.0.1:{port}:{port}" in service["ports"]
    assert f"127.0.0.1:{port}/readyz" in shell_text(service["healthcheck"]["test"])


def test_the_deployed_sources_file_loads_with_the_environment_compose_gives_the_ingress(
    compose: dict[str, Any],
) -> None:
    (name,) = services_running(compose, "serve")
    env = environment(compose["services"][name])
    registry = load_sources(ROOT / "deploy" / "sources.yaml", env)
    types = SchemaRegistry.load().event_types
    for source in registry:
        for pattern in source.event_types:
            matched = [t for t in types if t == pattern or (pattern.endswith(".*") and t.startswith(pattern[:-1]))]
            assert matched, f"{source.id}: {pattern} names no event type of the hub"
        for vendor in ("docusign", "graph", "box"):
            if getattr(source, vendor) is not None:
                assert source.may_claim(f"{vendor}://{source.id}"), source.id
    written = yaml.safe_load((ROOT / "deploy" / "sources.yaml").read_text(encoding="utf-8"))
    for source in written["sources"]:
        vendor_secrets = [*(source.get("docusign") or {}).get("hmac_keys", []),
                          *(source.get("graph") or {}).get("client_states", []),
                          *(key for key in (source.get("box") or {}).values() if key is not None)]
        for secret in [*vendor_secrets, *(c for c in source.get("credentials", []) if c["scheme"] != "api_key")]:
            assert "secret_env" in secret, f"{source['id']}: a secret is written in the file"


def test_the_simulators_sign_with_the_secrets_the_ingress_knows(compose: dict[str, Any]) -> None:
    (ingress,) = services_running(compose, "serve")
    registry = load_sources(ROOT / "deploy" / "sources.yaml", environment(compose["services"][ingress]))
    simulators = services_running(compose, "simulate")
    by_system = {argv[2]: (name, argv) for name, argv in simulators.items()}

    name, argv = by_system["erp"]
    assert option(argv, "--webhook-url") == f"http://{ingress}:8080/v1/events"
    secret = environment(compose["services"][name])["ERP_SIM_WEBHOOK_SECRET"]
    claimed = WebhookConfig(url="", secret=secret).source
    signers = [s for s in registry if s.may_claim(claimed) and s.may_publish_type("erp.project.created.v1")]
    assert any(webhook_key(secret) in s.webhook_keys for s in signers), "no source knows the ERP's secret"

    name, argv = by_system["docusign"]
    url = urlparse(option(argv, "--webhook-url"))
    assert url.hostname == ingress and url.path.startswith("/v1/webhooks/docusign/")
    source = registry.get(url.path.rsplit("/", 1)[1])
    assert source is not None and source.docusign is not None
    hmac_key = environment(compose["services"][name])["DOCUSIGN_SIM_HMAC_KEY"]
    assert hmac_key in [key.get_secret_value() for key in source.docusign.hmac_keys]

    state = environment(compose["services"][next(iter(services_running(compose, "worker")))])["HUB_GRAPH_CLIENT_STATE"]
    assert any(state in [c.get_secret_value() for c in s.graph.client_states] for s in registry if s.graph is not None)


def test_workers_run_hub_worker_with_a_heartbeat_that_their_healthcheck_reads(compose: dict[str, Any]) -> None:
    workers = services_running(compose, "worker")
    assert workers
    for name, argv in workers.items():
        heartbeat = option(argv, "--heartbeat-file")
        assert heartbeat in shell_text(compose["services"][name]["healthcheck"]["test"])


def test_no_service_installs_packages_or_mounts_the_source_tree(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key in ("command", "entrypoint"):
            assert not re.search(r"\bpip\b.*\binstall\b", shell_text(service.get(key))), (name, key)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            assert source.rstrip("/") not in {".", ROOT.as_posix()}, (name, volume)


@pytest.mark.parametrize("environ", [{}, {"REDIS_PASSWORD": "s3cret-r", "RABBITMQ_PASSWORD": "s3cret-q",
                                          "RABBITMQ_USER": "ops"}], ids=["defaults", "variables set"])
def test_redis_and_rabbitmq_require_the_passwords_that_the_hubs_urls_carry(environ: dict[str, str]) -> None:
    compose = load_compose(environ)
    redis_command = compose["services"]["redis"]["command"]
    password = option(redis_command, "--requirepass")
    assert password and password == environ.get("REDIS_PASSWORD", password)
    rabbit = environment(compose["services"]["rabbitmq"])
    checked = 0
    for name, service in hub_services(compose).items():
        env = environment(service)
        if "HUB_REDIS_URL" in env:
            url = urlparse(env["HUB_REDIS_URL"])
            assert (url.hostname, url.password) == ("redis", password), name
            checked += 1
        if "HUB_AMQP_URL" in env:
            url = urlparse(env["HUB_AMQP_URL"])
            assert url.hostname == "rabbitmq", name
            assert (url.username, url.password) == (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"])
    assert checked >= 2


@pytest.mark.parametrize("environ", [{}, {"POSTGRES_PASSWORD": "s3cret-p"}], ids=["defaults", "variables set"])
def test_the_hub_keeps_its_records_in_the_postgresql_service_on_a_volume(environ: dict[str, str]) -> None:
    compose = load_compose(environ)
    postgres = compose["services"]["postgres"]
    env = environment(postgres)
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "postgres-data" in compose["volumes"]
    for name, service in hub_services(compose).items():
        if "HUB_AMQP_URL" not in environment(service):
            continue  # a simulator
        url = urlparse(environment(service)["HUB_DATABASE_URL"])
        assert (url.scheme, url.hostname, url.username, url.password, url.path) == (
            "postgresql+psycopg", "postgres", env["POSTGRES_USER"], env["POSTGRES_PASSWORD"],
            f"/{env['POSTGRES_DB']}"), name
        assert env["POSTGRES_PASSWORD"] == environ.get("POSTGRES_PASSWORD", "change-me")
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name


#: Services of the ``monitoring`` profile (tests/test_monitoring.py checks what they run).
MONITORING = frozenset({"prometheus", "grafana"})


def test_the_simulators_run_only_under_a_profile_and_the_hub_points_at_them(compose: dict[str, Any]) -> None:
    simulators = services_running(compose, "simulate")
    assert sorted(argv[2] for argv in simulators.values()) == ["docusign", "erp", "sharepoint"]
    for name, service in compose["services"].items():
        profiles = service.get("profiles") or []
        expected = ["simulators"] if name in simulators else ["monitoring"] if name in MONITORING else []
        assert profiles == expected, f"{name}: profiles {profiles}"
    hub_env = environment(compose["services"][next(iter(services_running(compose, "worker")))])
    setting = {"erp": "HUB_ERP_URL", "sharepoint": "HUB_GRAPH_URL", "docusign": "HUB_DOCUSIGN_URL"}
    for name, argv in simulators.items():
        assert option(argv, "--host") == "0.0.0.0"
        url = urlparse(hub_env[setting[argv[2]]])
        assert (url.hostname, str(url.port)) == (name, option(argv, "--port")), argv[2]
    assert urlparse(hub_env["HUB_GRAPH_URL"]).path == "/v1.0"


def test_hub_services_wait_for_healthy_servers_and_stop_gracefully(compose: dict[str, Any]) -> None:
    for subcommand in ("serve", "worker"):
        for name in services_running(compose, subcommand):
            service = compose["services"][name]
            for server in ("rabbitmq", "redis"):
                assert service["depends_on"][server]["condition"] == "service_healthy", (name, server)
            assert service.get("init") is True, name
            assert seconds(service["stop_grace_period"]) >= 30, name
            assert environment(service)["HUB_EMBEDDED"] == "off", name


def test_every_hub_setting_of_the_deployment_is_a_real_and_valid_setting(compose: dict[str, Any]) -> None:
    image_env = {k: v for k, v in dockerfile_env().items() if k.startswith(ENV_PREFIX)}
    assert set(image_env) <= SETTING_NAMES, set(image_env) - SETTING_NAMES
    for name, service in hub_services(compose).items():
        env = {**image_env, **environment(service)}
        unknown = {key for key in env if key.startswith(ENV_PREFIX)} - SETTING_NAMES
        assert not unknown, f"{name}: unknown setting(s) {unknown}"
        with pytest.MonkeyPatch.context() as patch:
            for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
                patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            Config.load()  # raises ConfigurationError on an invalid value


def test_every_hub_command_of_the_deployment_parses(compose: dict[str, Any]) -> None:
    commands = [hub_argv(service) for service in hub_services(compose).values()]
    for argv in [*commands, [*image_entrypoint(), *image_cmd()]]:
        assert argv[0] == "hub", argv
        group = main.make_context("hub", argv[1:])
        name, command, arguments = main.resolve_command(group, argv[1:])
        assert command is not None, argv
        command.make_context(name or "", arguments, parent=group)  # raises on an unknown option


def test_the_worker_healthcheck_fails_once_the_heartbeat_is_a_minute_old(compose: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    (name, argv), *_ = services_running(compose, "worker").items()
    kind, script = compose["services"][name]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    heartbeat = tmp_path / "alive"
    script = script.replace(option(argv, "--heartbeat-file"), str(heartbeat))

    def healthy() -> bool:
        return subprocess.run(["sh", "-c", script], check=False).returncode == 0

    assert not healthy()
    heartbeat.touch()
    assert healthy()
    os.utime(heartbeat, (heartbeat.stat().st_mtime - 90,) * 2)
    assert not healthy()


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def test_the_simulator_healthcheck_accepts_any_http_answer_and_nothing_else(compose: dict[str, Any]) -> None:
    name = next(iter(services_running(compose, "simulate")))
    test = compose["services"][name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        answered = subprocess.run([sys.executable, "-c", test[3], str(port)], capture_output=True, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    silent = subprocess.run([sys.executable, "-c", test[3], str(port)], capture_output=True, check=False)
    assert answered.returncode == 0, answered.stderr
    assert silent.returncode != 0


# --- Dockerfile tests ------------------------------------------------------------------------------


def test_the_image_runs_hub_as_a_non_root_user_through_an_exec_form_entrypoint() -> None:
    users = [i.arguments for i in final_stage() if i.keyword == "USER"]
    assert users, "the image sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert image_entrypoint() == ["hub"]
    assert image_cmd() == ["serve"]
    assert dockerfile_env().get("PYTHONUNBUFFERED") == "1"
    assert any(i.keyword == "EXPOSE" and "8080" in i.arguments.split() for i in final_stage())


def test_the_image_installs_the_package_at_build_time_from_the_copied_tree() -> None:
    index, stage, argv = install_step()
    assert argv[-1] == "." and "-e" not in argv and "--editable" not in argv
    assert {"pyproject.toml", "README.md", *PACKAGES} <= copied_paths(stage)
    assert index < len(dockerfile_stages()) - 1, "the package is built in its own stage, not in the final image"
    assert not copied_paths(final_stage()), "the final image takes no sources from the build context"
    assert any(i.keyword == "COPY" and i.arguments.startswith("--from=") for i in final_stage())


def test_the_dockerignore_lets_through_what_the_dockerfile_copies_and_nothing_else() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded first, then what the build needs let through"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    _, stage, _ = install_step()
    assert copied_paths(stage) == allowed


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under root: its mode, mtime and content hash (a file's) — any write changes it."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        entries[path.relative_to(root).as_posix()] = (info.st_mode, info.st_mtime_ns, digest)
    return entries


def set_writable(root: Path, *, writable: bool) -> None:
    """Add or remove every write bit under root (root included)."""
    bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


@pytest.fixture
def read_only_tree(tmp_path: Path) -> Iterator[Path]:
    """What the Dockerfile's build stage copies, copied likewise into a folder without write bits."""
    _, stage, _ = install_step()
    workdirs = [i.arguments for i in stage if i.keyword == "WORKDIR"]
    tree = tmp_path / "context"
    tree.mkdir()
    for instruction in stage:
        if instruction.keyword != "COPY":
            continue
        *sources, destination = shlex.split(instruction.arguments)
        assert not any(s.startswith("--") for s in sources), instruction
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, tree / destination, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # as .dockerignore
            else:
                shutil.copy2(origin, tree / destination / origin.name if destination.endswith("/") else
                             tree / destination)
    assert workdirs, "the build stage sets its WORKDIR before copying"
    set_writable(tree, writable=False)
    try:
        yield tree
    finally:
        set_writable(tree, writable=True)


def test_the_image_install_step_works_from_a_read_only_copy_of_the_tree(read_only_tree: Path,
                                                                        tmp_path: Path) -> None:
    # Root ignores the write bits: comparing snapshots is what proves that nothing was written.
    assert importlib.util.find_spec("hatchling"), "the build backend comes with the dev extras: pip install -e '.[dev]'"
    _, _, argv = install_step()
    pip_options = argv[argv.index("install") + 1:]
    before = snapshot(read_only_tree)
    site = tmp_path / "site"
    # The image installs the dependencies from PyPI and builds in an isolated environment; here nothing may
    # come from the network, so dependencies are skipped and the build backend is the one of this virtualenv.
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", *pip_options,
         "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check", "--target", str(site)],
        cwd=read_only_tree, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(read_only_tree) == before, "the install step wrote into the source tree"

    for package in PACKAGES:
        assert (site / package / "__init__.py").is_file(), package
    for data in [*(ROOT / "schemas").glob("*.avsc"), *(ROOT / "schemas" / "released").iterdir(),
                 ROOT / "actors" / "default_policy.yaml", ROOT / "actors" / "master_data" / "default_mapping.yaml"]:
        assert (site / data.relative_to(ROOT)).is_file(), f"{data.relative_to(ROOT)} is not installed"
    (entry_points,) = site.glob("*.dist-info/entry_points.txt")
    assert "hub = hub.cli:main" in entry_points.read_text(encoding="utf-8")

    env["PYTHONPATH"] = str(site)
    imported = subprocess.run([sys.executable, "-c", "import hub, actors, connectors, observability, schemas; "
                               "print(hub.__file__, schemas.__file__)"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [str(site / "hub" / "__init__.py"), str(site / "schemas" / "__init__.py")]
    checked = subprocess.run([str(site / "bin" / "hub"), "schemas", "check"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"backward compatible with {site / 'schemas' / 'released'}" in checked.stdout
