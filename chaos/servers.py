"""Private RabbitMQ, Redis and PostgreSQL servers on ports of their own, for faults the shared ones must never see.

Each server lives in a directory of its own (data, logs, and for RabbitMQ its Erlang cookie and crash dumps),
never in the working tree, and can be stopped gracefully, killed with SIGKILL and started again on the same
port with the same data (Redis: or empty). Nothing here touches the shared servers on 5672, 6379 and 5432:
a private node has its own node name, ports, HOME and data directory, and only its own process group is ever
signalled.

- :class:`PrivateRabbit`: ``rabbitmq-server`` with its own node name (``epmd`` is shared and left alone).
- :class:`PrivateRedis`: ``redis-server`` with a password, no automatic snapshots; a graceful stop saves.
- :class:`PrivatePostgres`: ``initdb`` into the directory (trust authentication) and ``pg_ctl``; run as the
  ``postgres`` user when this process is root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

#: Where the Debian packages put the binaries.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
#: How long a server may take to boot or stop.
BOOT_S = 90.0
#: A port is picked free but not reserved: another process may take it before the server binds it. A first
#: boot that fails for that reason is tried again on other ports.
BOOT_ATTEMPTS = 3
_RABBIT_PORT_TAKEN = re.compile(r"eaddrinuse|could not bind to distribution port", re.IGNORECASE)


class ServerError(RuntimeError):
    """A private server did not boot or stop."""


def free_port() -> int:
    """A port free now on 127.0.0.1 (not reserved: see :data:`BOOT_ATTEMPTS`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_dir(prefix: str = "hubchaos-") -> Path:
    """A new directory under the system's temporary directory for the servers of one run, which the
    ``postgres`` user may traverse (to its own subdirectory)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def _wait(check: Callable[[], bool], process: subprocess.Popen[bytes] | None, what: str, timeout_s: float = BOOT_S
          ) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if process is not None and process.poll() is not None:
            raise ServerError(f"{what} exited with {process.returncode} while booting")
        if time.monotonic() > deadline:
            raise ServerError(f"{what} did not answer within {timeout_s:.0f} s")
        time.sleep(0.1)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's own process group (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# -- RabbitMQ ---------------------------------------------------------------------------------------
class PrivateRabbit:
    """A RabbitMQ node of its own: node name, AMQP and distribution ports, HOME (cookie), mnesia and logs."""

    def __init__(self, base: Path, *, user: str = "guest", password: str = "guest") -> None:  # noqa: S107
        self.base = base
        self.user, self.password = user, password
        self.node = f"hubprivate{uuid.uuid4().hex[:8]}@localhost"
        self.port = 0
        self._dist_port = 0
        self._server: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        """The AMQP URL of the node (with its password)."""
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2F"

    @property
    def log_dir(self) -> Path:
        """Where the node writes its logs."""
        return self.base / "log"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # A failed boot (or a CLI tool's VM) dumps here, never into the working tree.
            "ERL_CRASH_DUMP": str(self.base / "erl_crash.dump"),
        }

    def ctl(self, *args: str, timeout_s: float = 90.0) -> str:
        """Run ``rabbitmqctl -n <node> ARGS``; its standard output, or :class:`ServerError`."""
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args], env=self._env(),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise ServerError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def boot(self) -> None:
        """Boot the node for the first time on free ports (tried again on other ports when one was taken)."""
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            self.port, self._dist_port = free_port(), free_port()
            (self.base / "rabbitmq.conf").write_text(
                f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
                f"default_user = {self.user}\ndefault_pass = {self.password}\n")
            try:
                self.start()
                return
            except ServerError:
                output = self._output()
                self.kill()
                if not _RABBIT_PORT_TAKEN.search(output) or attempt == BOOT_ATTEMPTS:
                    raise
                shutil.rmtree(self.base / "mnesia", ignore_errors=True)

    def _output(self) -> str:
        with contextlib.suppress(OSError):
            return (self.base / "server.out").read_text(errors="replace")
        return ""

    def start(self) -> None:
        """Start the node (again) on its ports with its data; returns once it runs."""
        with open(self.base / "server.out", "ab") as out:
            self._server = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self._env(), stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + BOOT_S
        while True:  # await_startup fails at once until the node has registered with epmd
            try:
                self.ctl("await_startup", "--timeout", "60")
                return
            except (ServerError, subprocess.TimeoutExpired) as exc:
                if self._server.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"RabbitMQ node {self.node} did not boot: {exc}\n{self._output()[-2000:]}"
                                      ) from exc
                time.sleep(0.5)

    def running(self) -> bool:
        """Whether the node's process runs."""
        return self._server is not None and self._server.poll() is None

    def stop(self) -> None:
        """Stop the node gracefully (``rabbitmqctl stop``), killing it if that fails."""
        if self._server is None:
            return
        try:
            if self._server.poll() is None:
                self.ctl("stop")
            self._server.wait(timeout=60)
        except (ServerError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node (its process group): no chance to write anything more."""
        if self._server is not None and self._server.poll() is None:
            _kill_group(self._server)

    def queue_messages(self) -> dict[str, int]:
        """Messages per queue, ready and unacknowledged (those a consumer holds, a delayed retry included). A
        stream (the topic exchange's history) is left out: it keeps what it was given, nothing waits in it."""
        rows = json.loads(self.ctl("-q", "list_queues", "name", "messages", "type", "--formatter", "json") or "[]")
        return {str(row["name"]): int(row["messages"]) for row in rows if row.get("type") != "stream"}


# -- Redis ------------------------------------------------------------------------------------------
class PrivateRedis:
    """A ``redis-server`` of its own, with a password; snapshots only on a graceful stop."""

    def __init__(self, base: Path, *, password: str) -> None:
        self.base = base
        self.password = password
        self.port = 0
        self._server: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The Redis URL (with its password)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.base / "redis.log"

    def client(self) -> redis.Redis:
        """A client of this server."""
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def boot(self) -> None:
        """Start for the first time on a free port (tried again on another when it was taken)."""
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            self.port = free_port()
            try:
                self.start()
                return
            except ServerError:
                if attempt == BOOT_ATTEMPTS:
                    raise

    def start(self, *, empty: bool = False) -> None:
        """Start on its port, with the data of its last graceful stop (none when ``empty``)."""
        if empty:
            (self.base / "dump.rdb").unlink(missing_ok=True)
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.base),
                   "--save", "", "--appendonly", "no", "--logfile", str(self.log_path), "--requirepass",
                   self.password]
        self._server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        _wait(self._answers, self._server, f"Redis on port {self.port}")

    def _answers(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop gracefully: ``SHUTDOWN SAVE`` writes its data for the next start."""
        if self._server is None or self._server.poll() is not None:
            return
        client = self.client()
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        try:
            self._server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: what was not saved is gone."""
        if self._server is not None and self._server.poll() is None:
            _kill_group(self._server)


# -- PostgreSQL -------------------------------------------------------------------------------------
class PrivatePostgres:
    """A PostgreSQL cluster of its own (``initdb``, trust authentication), served by ``pg_ctl``."""

    def __init__(self, base: Path, *, database: str = "hub") -> None:
        self.base = base
        self.database = database
        self.port = 0
        base.mkdir(parents=True, exist_ok=True)
        self._user = "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(base, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        """The hub's SQLAlchemy URL of the database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.base / "postgres.log"

    def _run(self, *command: str, timeout_s: float = BOOT_S) -> str:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s, check=False,
                              user=self._user, cwd=self.base)
        if done.returncode != 0:
            raise ServerError(f"{Path(command[0]).name} failed: {done.stderr or done.stdout}")
        return done.stdout

    def boot(self) -> None:
        """``initdb``, then start on a free port (tried again on another when it was taken)."""
        self._run(str(POSTGRES_BIN / "initdb"), "-D", str(self.base / "data"), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            self.port = free_port()
            try:
                self.start()
                return
            except ServerError:
                if attempt == BOOT_ATTEMPTS:
                    raise

    def start(self) -> None:
        """Start on its port with its data; returns once it accepts connections."""
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.base / "data"), "-l", str(self.log_path),
                  "-o", options, "-w", "-t", str(int(BOOT_S)), "start")

    def stop(self, *, mode: str = "fast") -> None:
        """``pg_ctl stop``: ``fast`` (sessions ended, a clean shutdown) or ``immediate`` (no checkpoint: a crash
        as far as the data is concerned, recovered from the WAL at the next start)."""
        with contextlib.suppress(ServerError):
            self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.base / "data"), "-m", mode, "-w", "stop")
