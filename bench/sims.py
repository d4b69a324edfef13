"""The simulated systems the measured flows write to, each in a process of its own (its CPU is measured apart):
``python -m bench.sims erp|graph --port N``.

- the ERP simulator (``simulators.erp``): no webhooks (the load is posted by the benchmark), the hub's
  ERP token; its projects are seeded in bulk (``POST /_sim/seed``, not measured) before each phase posts their
  ``erp.project.created.v1``, since provisioning reads the ERP's current record;
- the SharePoint/Graph simulator (``simulators.sharepoint``): the ``workspaces`` library (its drive id is its
  name), the policy's directory groups and retention labels, the document columns the sandbox's tenant has.

Both at zero latency by default: no fault plan (``FaultPlan()``: no latency, no error), uvicorn with warnings-only
logs; ``--latency-ms N`` adds N ms before every answer (a vendor's service is that far away), no error.
The hub's workers reach them through ``HUB_ERP_*`` and ``HUB_GRAPH_*`` (:meth:`Simulators.env`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import BenchError, free_port
from bench.procs import START_S, Proc, hub_env, spawn, stop_all
from hub.cli.scenario import erp_payload

ERP_TOKEN, GRAPH_TOKEN, DRIVE = "bench-erp-token", "bench-graph-token", "workspaces"


def _serve(kind: str, port: int, latency_s: float = 0.0) -> None:
    import uvicorn

    import actors
    from simulators.kit.faults import FaultPlan
    from simulators.sandbox import DOCUMENT_COLUMNS

    if kind == "erp":
        from simulators.erp import ErpSimConfig
        from simulators.erp import create_app as erp_app

        app = erp_app(ErpSimConfig(token=ERP_TOKEN, faults=FaultPlan(latency_s=latency_s), webhook=None))
    else:
        from simulators.sharepoint import BUILTIN_COLUMNS, DEFAULT_GROUPS, SimulatorConfig
        from simulators.sharepoint import create_app as graph_app

        policy = actors.load_policy()
        groups = tuple(dict.fromkeys([*(policy.security_groups.known_groups or ()), *DEFAULT_GROUPS]))
        columns = tuple(dict.fromkeys([*BUILTIN_COLUMNS, *DOCUMENT_COLUMNS]))
        app = graph_app(SimulatorConfig(token=GRAPH_TOKEN, drives=(DRIVE,), graph_ids=False, groups=groups,
                                        faults=FaultPlan(latency_s=latency_s), columns=columns,
                                        retention_labels=frozenset(policy.retention.all_labels())))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@dataclass
class Simulators:
    """The ERP and Graph simulators of a run."""

    erp: Proc
    graph: Proc
    erp_url: str
    graph_url: str

    @property
    def procs(self) -> list[Proc]:
        """Both processes."""
        return [self.erp, self.graph]

    def env(self) -> dict[str, str]:
        """The hub's settings for them."""
        return {"HUB_ERP_URL": self.erp_url, "HUB_ERP_TOKEN": ERP_TOKEN, "HUB_GRAPH_URL": self.graph_url,
                "HUB_GRAPH_TOKEN": GRAPH_TOKEN, "HUB_GRAPH_DRIVE_ID": DRIVE}

    def seed_client(self) -> None:
        """The load's client (``erp_payload``'s ``client_id``)."""
        payload = erp_payload()
        self._seed({"clients": [{"id": payload["client_id"], "name": "ACME", "country": payload["country"]}]})

    def seed_projects(self, codes: Sequence[str]) -> None:
        """One ERP project per code, as the load's events describe them (``erp_payload``)."""
        base = erp_payload()
        fields = ("client_id", "name", "engagement_type", "practice", "region", "country", "partner",
                  "billing_model", "status")
        for first in range(0, len(codes), 5000):
            self._seed({"projects": [{**{k: base[k] for k in fields}, "code": code}
                                     for code in codes[first:first + 5000]]})

    def _seed(self, body: Mapping[str, object]) -> None:
        response = httpx.post(f"{self.erp_url}/_sim/seed", json=body, timeout=120)
        if response.status_code >= 300:
            raise BenchError(f"seeding the ERP simulator answered {response.status_code}: {response.text[:300]}")


def _await(proc: Proc, url: str, token: str) -> None:
    deadline = time.monotonic() + START_S
    with httpx.Client(timeout=2.0, headers={"authorization": f"Bearer {token}"}) as client:
        while True:
            if not proc.alive():
                raise BenchError(f"{proc.name} exited with {proc.popen.returncode} at start; its output ends "
                                 f"with:\n{proc.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"{proc.name} not ready after {START_S:.0f} s:\n{proc.log_tail()}")
            time.sleep(0.1)


def start_simulators(prefix: str, work_dir: Path, *, latency_ms: float = 0.0) -> Simulators:
    """Start both simulators on free ports (``latency_ms`` before every answer), wait until each answers, seed the
    load's client."""
    env = hub_env(prefix)
    erp_port, graph_port = free_port(), free_port()
    latency = ["--latency-ms", f"{latency_ms:g}"]
    erp = spawn("erp-sim", [sys.executable, "-m", "bench.sims", "erp", "--port", str(erp_port), *latency], env,
                work_dir)
    graph = spawn("graph-sim", [sys.executable, "-m", "bench.sims", "graph", "--port", str(graph_port), *latency],
                  env, work_dir)
    sims = Simulators(erp, graph, f"http://127.0.0.1:{erp_port}", f"http://127.0.0.1:{graph_port}/v1.0")
    try:
        _await(erp, f"{sims.erp_url}/api/v1/clients", ERP_TOKEN)
        _await(graph, f"{sims.graph_url}/drives/{DRIVE}", GRAPH_TOKEN)
        sims.seed_client()
    except BaseException:
        stop_all(sims.procs)
        raise
    return sims


def main(argv: list[str] | None = None) -> None:
    """Serve one simulator."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("erp", "graph"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added before every answer (default 0)")
    args = parser.parse_args(argv)
    if args.latency_ms < 0:
        parser.error("--latency-ms must not be negative")
    _serve(args.kind, args.port, args.latency_ms / 1000)


if __name__ == "__main__":
    main()
