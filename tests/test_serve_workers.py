"""``hub serve --workers N``: N ingress processes on one port (SO_REUSEPORT) against the real RabbitMQ, Redis and
PostgreSQL; which process served a connection is read from /proc (the kernel's socket table), not from the answer."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hub.ingress.server import bound_socket
from tests.conftest import ROOT, worker_env
from tests.support.ingress import write_sources
from tests.support.rabbit import wait_until
from tests.test_ingress_app import bearer, sdk_event, structured
from tests.test_startup import hub_process

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")]

QUOTA = 5
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def _tcp_rows() -> list[list[str]]:
    """The rows of /proc/net/tcp and tcp6: local address, remote address, state, ..., inode (column 9)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            rows += [line.split() for line in list(lines)[1:]]
    return rows


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if found := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(found.group(1))
    return inodes


def _listeners(port: int) -> set[str]:
    return {row[9] for row in _tcp_rows() if _port(row[1]) == port and row[3] == LISTEN}


def _serving_process(pids: set[int], server_port: int, client_port: int) -> int:
    """The process holding the server's side of the connection from ``client_port``."""
    inodes = {row[9] for row in _tcp_rows() if _port(row[1]) == server_port and _port(row[2]) == client_port}
    assert len(inodes) == 1, inodes
    owners = [pid for pid in pids if inodes & _socket_inodes(pid)]
    assert len(owners) == 1, owners
    return owners[0]


def test_two_workers_listen_on_one_port_both_answer_and_together_admit_exactly_the_quota(
    prefix: str, tmp_path: Path
) -> None:
    path, creds = write_sources(tmp_path, quota=f"{QUOTA}/hour")
    env = worker_env(prefix, HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND="127.0.0.1:0", HUB_LOG_LEVEL="INFO",
                     HUB_LOG_FORMAT="json")
    with hub_process(["serve", "--workers", "2"], env) as serve:
        port = int(serve.wait_for(r"hub serve: 2 workers on http://127\.0\.0\.1:(\d+), pid").group(1))
        serving = re.compile(rf"serving http://127\.0\.0\.1:{port} in process (\d+)")
        assert wait_until(lambda: len({m.group(1) for line in serve.lines if (m := serving.search(line))}) == 2,
                          timeout=60), "".join(serve.lines)
        workers = {int(m.group(1)) for line in serve.lines if (m := serving.search(line))}
        assert serve.popen.pid not in workers
        for pid in workers:  # each a child of hub serve, with a listening socket of its own on the port
            with open(f"/proc/{pid}/stat") as stat:
                assert int(stat.read().rsplit(")", 1)[1].split()[1]) == serve.popen.pid
        listeners = _listeners(port)
        assert len(listeners) == 2
        assert all(len(_socket_inodes(pid) & listeners) == 1 for pid in workers)
        assert not _socket_inodes(serve.popen.pid) & listeners  # it holds the port; it does not listen
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=60)

        # One connection at a time, each kept open, until both processes have answered (the kernel spreads
        # connections by their addresses: ever more unlikely to keep choosing one process) and the quota is spent.
        answered: dict[int, list[int]] = {pid: [] for pid in workers}
        connections = []
        try:
            while len(connections) < 64 and (len(connections) <= QUOTA or not all(answered.values())):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                headers, body = structured(sdk_event(f"evt-workers-{len(connections)}"))
                conn.request("POST", "/v1/events", body=body, headers={**headers, **bearer(creds)})
                response = conn.getresponse()
                response.read()
                connections.append(conn)
                assert conn.sock is not None
                answered[_serving_process(workers, port, conn.sock.getsockname()[1])].append(response.status)
        finally:
            for conn in connections:
                conn.close()
        statuses = [status for by_process in answered.values() for status in by_process]
        assert all(answered.values()), answered
        assert sorted(set(statuses)) == [202, 429], answered
        assert statuses.count(202) == QUOTA, answered  # one quota across both processes

        serve.popen.send_signal(signal.SIGTERM)
        assert serve.popen.wait(timeout=60) == -signal.SIGTERM  # as a single hub serve ends on SIGTERM
        for pid in workers:  # both shut down gracefully before it ended
            assert not Path(f"/proc/{pid}").exists()
    text = "".join(serve.lines)
    assert "Traceback" not in text and "EMBEDDED" not in text
    assert text.count("Application shutdown complete") == 2, text


def test_workers_are_refused_in_the_embedded_mode(tmp_path: Path) -> None:
    path, _ = write_sources(tmp_path)
    env = worker_env("tworkers", HUB_EMBEDDED="on", HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND="127.0.0.1:0")
    done = subprocess.run([sys.executable, "-m", "hub", "serve", "--workers", "2"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--workers needs the real RabbitMQ and Redis" in done.stderr
    assert "Uvicorn running" not in done.stderr


def test_workers_exit_3_when_the_port_is_taken(prefix: str, tmp_path: Path) -> None:
    path, _ = write_sources(tmp_path)
    with bound_socket() as taken:  # a listening socket without SO_REUSEPORT: the port cannot be shared
        port = taken.getsockname()[1]
        env = worker_env(prefix, HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND=f"127.0.0.1:{port}")
        done = subprocess.run([sys.executable, "-m", "hub", "serve", "--workers", "2"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_when_one_worker_stops_on_refused_credentials_the_others_stop_and_the_exit_code_is_1(
    prefix: str, tmp_path: Path
) -> None:
    path, _ = write_sources(tmp_path)
    env = worker_env(prefix, HUB_SOURCES_FILE=str(path), HUB_HTTP_BIND="127.0.0.1:0", HUB_LOG_LEVEL="INFO",
                     HUB_LOG_FORMAT="json", HUB_REDIS_URL="redis://:not-the-password@127.0.0.1:6379/0")
    with hub_process(["serve", "--workers", "2"], env) as serve:
        serve.wait_for(r"^Error: Redis at \S+ refused the hub's credentials 3 times in a row")
        serve.wait_for(r"hub serve: process \d+ stopped \(exit code 1\); stopping the others")
        assert serve.popen.wait(timeout=60) == 1
    assert "not-the-password" not in "".join(serve.lines)
