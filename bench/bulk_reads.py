"""How fast the simulators' bulk paths are over real HTTP, as a reconciliation of N projects uses them.

Seeds N projects in the ERP simulator and N workspaces of ~5 sub-folders each in the Graph simulator, then times:
listing every project by code (pages of 1,000), listing the children of the workspaces' folders, and 5,000
``$batch`` calls of 20 ``permissions`` reads. Prints the figures; asserts nothing about time::

    PYTHONPATH=. .venv/bin/python bench/bulk_reads.py [--projects 100000] [--batches 5000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from connectors.erp.client import ErpClient
from connectors.settings import ErpSettings, GraphSettings
from connectors.sharepoint.client import BatchRequest, GraphClient
from hub.ingress.server import serve_in_thread
from simulators.erp import ErpSimConfig
from simulators.erp import create_app as erp_app
from simulators.sharepoint import SimulatorConfig
from simulators.sharepoint import create_app as graph_app

T = TypeVar("T")
SUBFOLDERS = ("Contracts", "SOWs", "Invoices", "Deliverables", "Correspondence")
CLIENTS_PER = 10  # projects per client


def timed(label: str, work: Callable[[], T]) -> T:
    """Run ``work`` and print how long it took."""
    start = time.perf_counter()
    result = work()
    print(f"{label:<58} {time.perf_counter() - start:7.2f} s")
    return result


def project(n: int) -> dict[str, Any]:
    return {"code": f"P-{n:06d}", "client_id": f"C-{n // CLIENTS_PER:05d}", "name": f"Project {n}",
            "engagement_type": "consulting", "practice": "Strategy", "region": "EU", "country": "DE",
            "partner": "p@example-firm.com", "billing_model": "fixed_fee"}


def seed_erp(url: str, count: int) -> None:
    clients = [{"id": f"C-{n:05d}", "name": f"Client {n}", "country": "DE"} for n in range(count // CLIENTS_PER + 1)]
    body = {"clients": clients, "projects": [project(n) for n in range(count)]}
    httpx.post(f"{url}/_sim/seed", json=body, timeout=600).raise_for_status()


def seed_graph(url: str, count: int, chunk: int = 20_000) -> None:
    for start in range(0, count, chunk):
        folders: list[dict[str, Any]] = []
        for n in range(start, min(start + chunk, count)):
            workspace = f"Clients/C-{n // CLIENTS_PER:05d}/P-{n:06d}"
            folders.append({"path": workspace, "grants": [{"group": "Strategy-EU", "role": "write"}],
                            "fields": {"Title": f"P-{n:06d}"}, "retentionLabel": "Engagement - 10y"})
            folders += [{"path": f"{workspace}/{name}"} for name in SUBFOLDERS]
        httpx.post(f"{url}/_sim/seed", json={"folders": folders}, timeout=600).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=5_000)
    parser.add_argument("--folders", type=int, default=2_000, help="workspaces whose children are listed")
    args = parser.parse_args()
    n = args.projects
    graph_config = SimulatorConfig(token="t", graph_ids=False, columns=None,
                                   retention_labels=frozenset({"Engagement - 10y"}))
    with serve_in_thread(erp_app(ErpSimConfig(token="t"))) as erp_url, \
            serve_in_thread(graph_app(graph_config)) as graph_url:
        timed(f"ERP seed: {n:,} projects, {n // CLIENTS_PER:,} clients", lambda: seed_erp(erp_url, n))
        timed(f"Graph seed: {n:,} workspaces x {1 + len(SUBFOLDERS)} folders", lambda: seed_graph(graph_url, n))
        erp = ErpClient.from_settings(ErpSettings(url=erp_url, token=SecretStr("t")))
        listed = timed("ERP: every project by code, pages of 1,000",
                       lambda: sum(1 for _ in erp.iter_projects(order="code", page_size=1000)))
        assert listed == n
        graph = GraphClient.from_settings(GraphSettings(url=f"{graph_url}/v1.0/", token=SecretStr("t"),
                                                        drive_id="workspaces"))
        clients_folder = graph.get_by_path("Clients")
        assert clients_folder is not None
        client_folders = timed("Graph: children of Clients (pages of 1,000, by name)",
                               lambda: list(graph.iter_children(clients_folder.id, orderby="name", page_size=1000)))
        first = client_folders[0]
        workspaces = timed("Graph: workspaces of one client, expanded",
                           lambda: list(graph.iter_children(first.id, expand=["listItem($expand=fields)",
                                                                              "retentionLabel"], page_size=1000)))
        sample = [w.id for c in client_folders[: args.folders // CLIENTS_PER]
                  for w in graph.iter_children(c.id, select="id,name", page_size=1000)][: args.folders]

        def subfolders() -> int:
            return sum(len(list(graph.iter_children(i, expand="retentionLabel", page_size=1000))) for i in sample)

        count = timed(f"Graph: children of {len(sample):,} workspaces, one call each", subfolders)
        ids = [w.id for c in client_folders for w in graph.iter_children(c.id, select="id", page_size=1000)]
        requests = [BatchRequest.get(f"{graph.item_url(ids[i % len(ids)])}/permissions")
                    for i in range(args.batches * 20)]
        answers = timed(f"Graph: {args.batches:,} $batch calls of 20 permissions reads",
                        lambda: graph.batch(requests))
        assert all(a.ok for a in answers) and len(workspaces) == CLIENTS_PER and count == len(sample) * len(SUBFOLDERS)
        erp.close()
        graph.close()


if __name__ == "__main__":
    main()
