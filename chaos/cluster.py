"""A three-node RabbitMQ cluster, a Redis primary, replica and three sentinels, and a PostgreSQL server on this
machine, private to the caller: ``python -m chaos.cluster up|down|status`` (``make cluster-up``, ``make
cluster-down``), the failover scenarios ``python -m chaos.cluster scenario rabbit-leader|redis-primary`` on a
cluster that is up, and ``python -m chaos.cluster run`` (part of ``make chaos``): a cluster of its own, each
scenario, the table, the cluster down (:mod:`chaos.cluster_scenarios`).

Every server listens on 127.0.0.1 on a port free when it starts and keeps its data and logs in one temporary
directory; the RabbitMQ nodes have their own names, distribution ports and Erlang cookie. The machine's own
RabbitMQ, Redis and PostgreSQL are left alone (the nodes only register with its epmd, as every Erlang node
does). ``up`` writes a state file (``--state``, by default ``<tmp>/hub-cluster/state.json``) with the ports, the
process groups and the URLs, and prints the ``HUB_AMQP_URL``, ``HUB_REDIS_URL`` and ``HUB_DATABASE_URL`` to use;
``down`` stops what the file names and removes the directory.

Past 400 lines on purpose: a cluster's life (ports, configuration, boot, join, sentinels, teardown) reads as one
story; its failover scenarios are apart, in :mod:`chaos.cluster_scenarios`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from chaos.servers import PrivatePostgres

#: Where RabbitMQ's scripts are (Debian's package).
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
#: The failover scenarios of :mod:`chaos.cluster_scenarios`.
SCENARIOS = ("rabbit-leader", "redis-primary")
#: The state file ``up`` writes and ``down`` reads, unless told another.
DEFAULT_STATE = Path(tempfile.gettempdir()) / "hub-cluster" / "state.json"
#: The name the sentinels know the Redis primary by.
SERVICE = "hub"
#: How long a node, a join or a failover may take on a busy two-core machine.
BOOT_S = 180.0
#: The sentinels call the primary down after this long without an answer.
DOWN_AFTER_MS = 2_000
#: Ask the Erlang VMs not to spin waiting for work: the machine is shared.
_ERL_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none -kernel inet_dist_use_interface {127,0,0,1}"
#: The servers this process started, kept so that they are reaped (the state file has only their ids).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ClusterError(RuntimeError):
    """A server of the cluster did not start, join or stop as asked."""


@dataclass
class Node:
    """One RabbitMQ node: its name, its ports, its directory and the process group of its server."""

    name: str
    amqp_port: int
    dist_port: int
    directory: str
    pgid: int = 0

    @property
    def url(self) -> str:
        """Its AMQP URL (the default user, which the nodes let in from anywhere)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"


@dataclass
class Cluster:
    """The private servers and where their files are; saved as the state file."""

    directory: str
    nodes: list[Node]
    redis_ports: list[int]
    sentinel_ports: list[int]
    #: Process id of each Redis server and sentinel, by port.
    pids: dict[str, int] = field(default_factory=dict)
    #: The private PostgreSQL's port (0 while it is not started).
    postgres_port: int = 0

    @property
    def amqp_url(self) -> str:
        """``HUB_AMQP_URL``: every node's URL, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    @property
    def redis_url(self) -> str:
        """``HUB_REDIS_URL``: the primary through the sentinels."""
        return f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.sentinel_ports)}/{SERVICE}/0"

    @property
    def database_url(self) -> str:
        """``HUB_DATABASE_URL``: the private PostgreSQL's ``hub`` database."""
        return self.postgres().url

    def postgres(self) -> PrivatePostgres:
        """The private PostgreSQL server (its data in the cluster's directory)."""
        server = PrivatePostgres(Path(self.directory) / "postgres")
        server.port = self.postgres_port
        return server

    def env(self) -> dict[str, str]:
        """The hub's variables for this cluster."""
        return {"HUB_AMQP_URL": self.amqp_url, "HUB_REDIS_URL": self.redis_url, "HUB_DATABASE_URL": self.database_url}

    def save(self, path: Path) -> None:
        """Write the state file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Cluster:
        """Read the state file ``up`` wrote."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster state at {path}: run `python -m chaos.cluster up` first") from None
        data["nodes"] = [Node(**node) for node in data["nodes"]]
        return cls(**data)

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)


def free_port() -> int:
    """A port free now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- RabbitMQ ----------------------------------------------------------------------------------------------


def node_env(cluster: Cluster, node: Node) -> dict[str, str]:
    """The environment of a node's server and of the CLI tools talking to it."""
    base = Path(node.directory)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
        "HOME": cluster.directory,  # the cluster's own Erlang cookie
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_NODE_PORT": str(node.amqp_port),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(Path(cluster.directory) / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(Path(cluster.directory) / "rabbitmq-env.conf"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": _ERL_ARGS,
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),  # never into the working tree
    }


def ctl(cluster: Cluster, node: Node, *args: str, tool: str = "rabbitmqctl", timeout: float = 120.0) -> str:
    """Run a RabbitMQ CLI tool against ``node``; its output, or ClusterError."""
    try:
        done = subprocess.run([str(RABBIT_BIN / tool), "-n", node.name, *args],
                              env=node_env(cluster, node),
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{tool} {' '.join(args)} on {node.name}: no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        raise ClusterError(f"{tool} {' '.join(args)} on {node.name} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def start_node(cluster: Cluster, node: Node) -> None:
    """Start ``node``'s server in its own session (its process group is ``node.pgid``)."""
    base = Path(node.directory)
    base.mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{node.amqp_port}\n"
                                        "loopback_users = none\n")
    with open(base / "server.out", "ab") as out:
        node.pgid = _spawn([str(RABBIT_BIN / "rabbitmq-server")], env=node_env(cluster, node), stdout=out)


def await_node(cluster: Cluster, node: Node, *, timeout: float = BOOT_S) -> None:
    """Wait until ``node`` runs (its RabbitMQ application started)."""
    deadline = time.monotonic() + timeout
    while True:  # await_startup fails at once until the node has registered with epmd
        try:
            ctl(cluster, node, "await_startup", "--timeout", str(int(max(deadline - time.monotonic(), 1))))
            return
        except ClusterError as exc:
            if not _group_alive(node.pgid) or time.monotonic() > deadline:
                tail = (Path(node.directory) / "server.out").read_text(errors="replace")[-1500:]
                raise ClusterError(f"node {node.name} did not start: {exc}\n{tail}") from None
            time.sleep(1.0)


def running_nodes(cluster: Cluster, *, via: Node | None = None) -> list[str]:
    """The nodes of the cluster that run, as ``via`` (by default the first that answers) sees them."""
    for node in [via] if via else cluster.nodes:
        with contextlib.suppress(ClusterError):
            status = json.loads(ctl(cluster, node, "-q", "cluster_status", "--formatter", "json"))
            return sorted(status.get("running_nodes", []))
    return []


def kill_node(node: Node) -> None:
    """``kill -9`` the node's server (its whole process group: the Erlang VM and its helpers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _group_alive(node.pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def queue_leaders(cluster: Cluster, prefix: str) -> list[tuple[str, str, int]]:
    """(name, leading node, messages) of every quorum queue whose name starts with ``prefix``, asked of a node
    that runs."""
    for node in cluster.nodes:
        if not _group_alive(node.pgid):
            continue
        with contextlib.suppress(ClusterError):
            rows = json.loads(ctl(cluster, node, "-q", "list_queues", "name", "type", "leader", "messages",
                                  "--formatter", "json"))
            return [(row["name"], str(row["leader"]), int(row.get("messages") or 0)) for row in rows
                    if row["name"].startswith(prefix) and row["type"] == "quorum"]
    raise ClusterError("no node answers list_queues")


def _spawn(args: list[str], *, env: dict[str, str] | None = None, stdout: Any = subprocess.DEVNULL) -> int:
    """Start a server in its own session (so that it outlives ``up`` and a kill reaches only it); its pid."""
    child = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                             stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[child.pid] = child
    return child.pid


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _group_alive(pgid: int) -> bool:
    if pgid <= 0:
        return False
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_rabbit(cluster: Cluster) -> None:
    base = Path(cluster.directory)
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq-env.conf").write_text("")
    cookie = base / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    cookie.chmod(0o400)
    for node in cluster.nodes:
        start_node(cluster, node)
    for node in cluster.nodes:
        await_node(cluster, node)
    first = cluster.nodes[0]
    for node in cluster.nodes[1:]:
        ctl(cluster, node, "stop_app")
        ctl(cluster, node, "join_cluster", first.name)
        ctl(cluster, node, "start_app")
    deadline = time.monotonic() + BOOT_S
    while len(running_nodes(cluster, via=first)) < len(cluster.nodes):
        if time.monotonic() > deadline:
            raise ClusterError(f"the nodes did not all join: running {running_nodes(cluster, via=first)}")
        time.sleep(1.0)
    # RabbitMQ puts a new queue's leader on the node the declaring client is connected to: the first URL of
    # every hub process. This policy spreads them (3.10 also has a queue argument, x-queue-leader-locator, but
    # RabbitMQ refuses to redeclare a queue with it changed, and the hub redeclares its queues at every start).
    ctl(cluster, first, "set_policy", "leaders", ".*", json.dumps({"queue-leader-locator": "balanced"}),
        "--apply-to", "queues", "--priority", "0")


# -- Redis -------------------------------------------------------------------------------------------------


def start_redis(cluster: Cluster, port: int, *, replica_of: int | None = None) -> None:
    """Start a Redis server on ``port`` (no persistence), a replica of ``replica_of`` when given."""
    base = Path(cluster.directory) / f"redis-{port}"
    base.mkdir(parents=True, exist_ok=True)
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base), "--save", "",
            "--appendonly", "no", "--logfile", str(base / "redis.log")]
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    cluster.pids[str(port)] = _spawn(args)


def start_sentinel(cluster: Cluster, port: int, primary: int) -> None:
    """Start a sentinel on ``port`` watching ``primary`` (a quorum of 2 of the 3 calls a failover)."""
    base = Path(cluster.directory) / f"sentinel-{port}"
    base.mkdir(parents=True, exist_ok=True)
    config = base / "sentinel.conf"  # the sentinel rewrites it as the roles change
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {base}\nlogfile {base / 'sentinel.log'}\n"
                      f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                      f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                      f"sentinel failover-timeout {SERVICE} 10000\n"
                      f"sentinel parallel-syncs {SERVICE} 1\n")
    cluster.pids[str(port)] = _spawn(["redis-server", str(config), "--sentinel"])


def _ask(port: int, *command: str) -> Any:
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def primary_port(cluster: Cluster) -> int | None:
    """The port of the primary the sentinels agree on now (None when no sentinel answers)."""
    for port in cluster.sentinel_ports:
        with contextlib.suppress(redis.RedisError):
            address = _ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            if address:
                return int(address[1])
    return None


def await_sentinels(cluster: Cluster, *, timeout: float = BOOT_S) -> int:
    """Wait until every sentinel knows the two others and a replica in sync with the primary; its port."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, TypeError, ValueError):
            if all(_watching(port) for port in cluster.sentinel_ports):
                primary = primary_port(cluster)
                if primary is not None:
                    return primary
        if time.monotonic() > deadline:
            raise ClusterError("the sentinels did not agree on a primary with a replica")
        time.sleep(0.2)


def _watching(port: int) -> bool:
    """Whether the sentinel on ``port`` sees the primary up, the two other sentinels and an online replica."""
    master = _pairs(_ask(port, "SENTINEL", "MASTER", SERVICE))
    replicas = [_pairs(r) for r in _ask(port, "SENTINEL", "REPLICAS", SERVICE)]
    return ("s_down" not in master["flags"] and int(master["num-other-sentinels"]) >= 2
            and any(r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in replicas))


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _start_redis_group(cluster: Cluster) -> None:
    primary, replica = cluster.redis_ports
    start_redis(cluster, primary)
    start_redis(cluster, replica, replica_of=primary)
    for port in cluster.sentinel_ports:
        start_sentinel(cluster, port, primary)
    await_sentinels(cluster)


def kill_pid(pid: int) -> None:
    """SIGKILL one of the cluster's Redis processes and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _await_gone(pid)


def _await_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.05)


# -- the whole -------------------------------------------------------------------------------------------


def up(state: Path = DEFAULT_STATE) -> Cluster:
    """Start the three nodes and join them, then the Redis primary, replica and sentinels; save the state."""
    if state.exists():
        raise ClusterError(f"a cluster is already up ({state}); `python -m chaos.cluster down` first")
    directory = Path(tempfile.mkdtemp(prefix="hub-cluster-"))
    directory.chmod(0o711)  # the postgres user reaches its own subdirectory
    tag = secrets.token_hex(3)
    cluster = Cluster(
        directory=str(directory),
        nodes=[Node(name=f"hubc{tag}n{i}@localhost", amqp_port=free_port(), dist_port=free_port(),
                    directory=str(directory / f"node{i}")) for i in (1, 2, 3)],
        redis_ports=[free_port(), free_port()],
        sentinel_ports=[free_port() for _ in range(3)],
    )
    try:
        _start_rabbit(cluster)
        _start_redis_group(cluster)
        database = cluster.postgres()
        database.boot()
        cluster.postgres_port = database.port
    except BaseException:
        down(cluster, state)
        raise
    cluster.save(state)
    return cluster


def down(cluster: Cluster, state: Path | None = None) -> None:
    """Stop every server of the cluster and remove its directory (and the state file)."""
    for node in cluster.nodes:
        if _group_alive(node.pgid):
            with contextlib.suppress(ClusterError):
                ctl(cluster, node, "stop", timeout=60)
    for node in cluster.nodes:
        deadline = time.monotonic() + 30
        while _group_alive(node.pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        kill_node(node)  # what did not stop
    for pid in cluster.pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in cluster.pids.values():
        _await_gone(pid, timeout=10)
        kill_pid(pid)
    if cluster.postgres_port:
        cluster.postgres().stop(mode="immediate")
    shutil.rmtree(cluster.directory, ignore_errors=True)
    if state is not None:
        state.unlink(missing_ok=True)


def status(cluster: Cluster) -> str:
    """What runs: the nodes, the Redis primary and the variables to use."""
    running = set(running_nodes(cluster))
    lines = [f"{node.name}  amqp 127.0.0.1:{node.amqp_port}  {'running' if node.name in running else 'down'}"
             for node in cluster.nodes]
    primary = primary_port(cluster)
    lines.append(f"redis primary 127.0.0.1:{primary}  servers {cluster.redis_ports}  "
                 f"sentinels {cluster.sentinel_ports}" if primary else "redis: no sentinel answers")
    if cluster.postgres_port:
        lines.append(f"postgres 127.0.0.1:{cluster.postgres_port}")
    return "\n".join(lines)


def exports(cluster: Cluster) -> str:
    """Shell lines setting the hub's variables for this cluster."""
    return "\n".join(f"export {name}='{value}'" for name, value in cluster.env().items())


def _quiet_counter() -> None:
    # The counter's client reconnects on its own when a node dies; aiormq's tracebacks for it are noise.
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def _run(names: list[str], *, events: int, rate: float) -> int:
    """A cluster of its own for the scenarios, one after the other; the table; 1 when one missed its target."""
    from chaos.cluster_scenarios import ScenarioResult, run_scenario

    _quiet_counter()
    state = Path(tempfile.mkdtemp(prefix="hub-cluster-run-")) / "state.json"
    started = time.monotonic()
    print("starting a cluster of three RabbitMQ nodes, Redis with three sentinels and PostgreSQL ...", flush=True)
    cluster = up(state)
    results = []
    try:
        print(f"cluster up in {time.monotonic() - started:.0f} s", flush=True)
        for name in names:
            results.append(run_scenario(name, cluster, state=state, events=events, rate=rate))
    finally:
        down(Cluster.load(state) if state.exists() else cluster, state)
        state.parent.rmdir()
    print()
    print(ScenarioResult.HEADER)
    for result in results:
        print(result.row())
    return 0 if all(result.passed for result in results) else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m chaos.cluster up|down|status|scenario|run``."""
    parser = argparse.ArgumentParser(prog="python -m chaos.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state file (default {DEFAULT_STATE})")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the cluster and print the variables to use")
    commands.add_parser("down", help="stop the cluster and remove its files")
    commands.add_parser("status", help="what runs, and the variables to use")
    scenario = commands.add_parser("scenario", help="a failover under load (the cluster must be up)")
    scenario.add_argument("name", choices=SCENARIOS)
    scenario.add_argument("--events", type=int, default=600, help="events to send (default 600)")
    scenario.add_argument("--rate", type=float, default=20.0, help="events per second (default 20)")
    run = commands.add_parser("run", help="start a cluster of its own, run the scenarios, print the table, stop it")
    run.add_argument("--scenario", action="append", choices=SCENARIOS, metavar="NAME",
                     help=f"run only this one (repeatable): {', '.join(SCENARIOS)}")
    run.add_argument("--events", type=int, default=600, help="events to send in each (default 600)")
    run.add_argument("--rate", type=float, default=20.0, help="events per second (default 20)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster = up(args.state)
            print(f"cluster up (state {args.state}):\n{status(cluster)}\n{exports(cluster)}")
        elif args.command == "down":
            down(Cluster.load(args.state), args.state)
            print("cluster down")
        elif args.command == "status":
            cluster = Cluster.load(args.state)
            print(f"{status(cluster)}\n{exports(cluster)}")
        elif args.command == "scenario":
            from chaos.cluster_scenarios import run_scenario

            _quiet_counter()
            result = run_scenario(args.name, Cluster.load(args.state), state=args.state, events=args.events,
                                  rate=args.rate)
            return 0 if result.passed else 1
        else:
            return _run(args.scenario or list(SCENARIOS), events=args.events, rate=args.rate)
    except ClusterError as exc:
        print(f"chaos.cluster: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
