"""``make bench-reconcile``: batch reconciliation at 10,000 and 100,000 projects (``python -m bench.reconcile``).

For each size: the ERP and Graph simulators run in processes of their own, seeded in bulk (``POST /_sim/seed``)
with N projects, their workspaces as provisioning leaves them and 1% of the projects drifted in each class (each
alone), and the crosswalk seeded in the real PostgreSQL; then a dry run reconciles workspaces and crosswalk in a
process of its own, which reports its wall time, pages read and peak RSS. The baseline, measured in the same run,
is a read of the same pages with nothing compared or stored (what the reading alone costs). Precision and recall
of the classes found against those injected must both be 100%.

Targets (issue "Batch reconciliation"): 100k projects in under 30 s, peak RSS under 300 MiB and within 20% between
10k and 100k. ``--quick`` runs a few hundred projects (the suite runs it, and checks only precision and recall).
Figures go to ``bench/results/reconcile.json`` and are printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, BenchError, format_table, free_port, machine_info, now_iso, write_report
from bench.reconcile_data import INJECTED, UNMANAGED, Dataset, build

DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/hub_bench"
REDIS_URL = "redis://127.0.0.1:6379/0"
ERP_TOKEN, GRAPH_TOKEN, DRIVE = "bench-erp-token", "bench-graph-token", "workspaces"
#: Items per page read (the ERP's and Graph's largest).
PAGE = 1000


def _serve_erp(port: int) -> None:
    import uvicorn

    from simulators.erp.app import ErpSimConfig, create_app

    uvicorn.run(create_app(ErpSimConfig(token=ERP_TOKEN)), host="127.0.0.1", port=port, log_level="warning")


def _serve_graph(port: int, groups: tuple[str, ...], labels: frozenset[str]) -> None:
    import uvicorn

    from simulators.sharepoint import SimulatorConfig, create_app

    config = SimulatorConfig(token=GRAPH_TOKEN, graph_ids=False, groups=groups, retention_labels=labels,
                             columns=None, page_size=PAGE)
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="warning")


def _wait(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, headers=headers, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise BenchError(f"the simulator at {url} did not start")


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started (``VmHWM``: ``ru_maxrss`` would count the memory of
    the parent it was forked from, which Linux carries across the exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmHWM in /proc/self/status")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU the processes used so far (Linux ``/proc``)."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def simulators(groups: tuple[str, ...], labels: frozenset[str]) -> Iterator[tuple[str, str, list[int]]]:
    """The ERP and Graph simulators, each in its own process: (ERP URL, Graph URL, their pids)."""
    context = multiprocessing.get_context("spawn")
    erp_port, graph_port = free_port(), free_port()
    procs = [context.Process(target=_serve_erp, args=(erp_port,), daemon=True),
             context.Process(target=_serve_graph, args=(graph_port, groups, labels), daemon=True)]
    for proc in procs:
        proc.start()
    try:
        erp, graph = f"http://127.0.0.1:{erp_port}", f"http://127.0.0.1:{graph_port}/v1.0"
        _wait(f"{erp}/api/v1/clients", {"authorization": f"Bearer {ERP_TOKEN}"})
        _wait(f"{graph}/drives/{DRIVE}", {"authorization": f"Bearer {GRAPH_TOKEN}"})
        yield erp, graph, [proc.pid for proc in procs if proc.pid is not None]
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(10)


def _post(url: str, body: dict[str, Any]) -> None:
    response = httpx.post(url, json=body, timeout=600)
    if response.status_code >= 300:
        raise BenchError(f"seeding {url} answered {response.status_code}: {response.text[:500]}")


def seed(data: Dataset, erp: str, graph: str, prefix: str) -> float:
    """Seed the simulators and the crosswalk; returns the seconds it took."""
    started = time.perf_counter()
    erp_admin, graph_admin = f"{erp}/_sim/seed", graph.replace("/v1.0", "/_sim/seed")
    _post(erp_admin, {"clients": data.clients, "projects": []})
    for first in range(0, len(data.projects), 20_000):
        _post(erp_admin, {"clients": [], "projects": data.projects[first:first + 20_000]})
    for first in range(0, len(data.folders), 50_000):
        _post(graph_admin, {"drive": DRIVE, "folders": data.folders[first:first + 50_000]})
    ids = _workspace_ids(graph)
    _seed_crosswalk(data, ids, prefix)
    return time.perf_counter() - started


def _workspace_ids(graph_url: str) -> dict[str, str]:
    """Workspace path (case-folded) -> item id, read from the simulator (two levels below the root)."""
    from connectors.settings import GraphSettings
    from connectors.sharepoint.batch import BatchRequest
    from connectors.sharepoint.client import GraphClient

    client = GraphClient.from_settings(GraphSettings(url=graph_url, token=GRAPH_TOKEN, drive_id=DRIVE))
    try:
        root = client.get_by_path("Engagements")
        assert root is not None
        tops = [(item.id, item.name) for item in client.iter_children(root.id, page_size=PAGE)]
        ids: dict[str, str] = {}
        for first in range(0, len(tops), 20):
            chunk = tops[first:first + 20]
            answers = client.batch([BatchRequest.get(f"drives/{DRIVE}/items/{item}/children?$select=id,name"
                                                     f"&$top={PAGE}") for item, _ in chunk], raise_errors=True)
            for (_, name), answer in zip(chunk, answers, strict=True):
                for child in answer.body.get("value", []):
                    ids[f"engagements/{name}/{child['name']}".casefold()] = child["id"]
        return ids
    finally:
        client.close()


def _seed_crosswalk(data: Dataset, ids: dict[str, str], prefix: str) -> None:
    import actors
    from hub.crosswalk import crosswalk_identities, crosswalk_ids
    from hub.db import connect_database, ensure_database, upgrade

    ensure_database(DATABASE_URL)
    db = connect_database(DATABASE_URL, prefix=prefix, embedded=False)
    upgrade(db, actors.MIGRATIONS)
    now = datetime.now(UTC)
    id_rows, identity_rows = [], []
    for code, path in data.crosswalk:
        canonical = f"project_{uuid.uuid4().hex[:20]}"
        id_rows.append({"canonical_id": canonical, "entity": "project", "resolves_to": canonical, "minted_at": now})
        identity_rows.append({"system": "erp", "system_id": code, "entity": "project", "canonical_id": canonical,
                              "is_primary": True})
        if path is not None:
            item = "01RELINKED" + code if code in data.relinked else ids[path.casefold()]
            identity_rows.append({"system": "sharepoint", "system_id": item, "entity": "project",
                                  "canonical_id": canonical, "is_primary": True})
    with db.begin() as connection:
        for first in range(0, len(id_rows), 10_000):
            connection.execute(crosswalk_ids.insert(), id_rows[first:first + 10_000])
        for first in range(0, len(identity_rows), 10_000):
            connection.execute(crosswalk_identities.insert(), identity_rows[first:first + 10_000])
    db.close()


def child(args: argparse.Namespace) -> None:
    """In a process of its own: one dry run (or, ``--read-only``, the baseline read), its figures as JSON."""
    import redis

    import actors
    from actors.reconciliation import Reconciler, SqlReconciliationStore
    from actors.reconciliation.platform import PlatformReader
    from connectors.erp.client import ErpClient
    from connectors.settings import ErpSettings, GraphSettings
    from connectors.sharepoint.client import GraphClient
    from hub.actor import Emitting, RecordingEmitter
    from hub.crosswalk import SqlCrosswalk
    from hub.db import connect_database
    from hub.registry import SchemaRegistry
    from hub.store import RedisLocks

    policy = actors.load_policy()
    erp = ErpClient.from_settings(ErpSettings(url=args.erp, token=ERP_TOKEN))
    graph = GraphClient.from_settings(GraphSettings(url=args.graph, token=GRAPH_TOKEN, drive_id=DRIVE))
    started = time.perf_counter()
    if args.read_only:
        pages = sum(1 for _ in erp.iter_projects(order="code", page_size=PAGE)) // PAGE + 1
        reader = PlatformReader(graph, policy, page_size=PAGE)
        workspaces = sum(len(group.workspaces) for group in reader.groups())
        result: dict[str, Any] = {"seconds": time.perf_counter() - started, "workspaces": workspaces,
                                  "pages": pages}
    else:
        db = connect_database(DATABASE_URL, prefix=args.prefix, embedded=False)
        client = redis.Redis.from_url(REDIS_URL)
        registry = SchemaRegistry.load()
        recorder = RecordingEmitter()
        job = Reconciler(policy=policy, erp=erp, graph=graph, crosswalk=SqlCrosswalk(db),
                         store=SqlReconciliationStore(db), locks=RedisLocks(client, prefix=args.prefix),
                         out=lambda: Emitting(spec=actors.reconciliation.SPEC, registry=registry, emitter=recorder),
                         page_size=PAGE)
        run = job.run(scope=("workspaces", "crosswalk"))
        result = {"seconds": time.perf_counter() - started, "run_id": run.run_id, "compared": run.compared,
                  "pages": run.pages, "counts": run.counts}
        client.delete(*client.keys(f"{args.prefix}:*")) if client.keys(f"{args.prefix}:*") else None
        db.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mib"] = peak_rss_mib()
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    erp.close()
    graph.close()
    print(json.dumps(result))


def _child(erp: str, graph: str, prefix: str, *, read_only: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.reconcile", "child", "--erp", erp, "--graph", graph, "--prefix", prefix]
    done = subprocess.run([*command, *(["--read-only"] if read_only else [])], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise BenchError(f"the reconciliation process failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def score(data: Dataset, found: set[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Precision and recall per injected class."""
    scores: dict[str, dict[str, float]] = {}
    for code in INJECTED:
        expected = {s for c, s in data.expected if c == code}
        got = {s for c, s in found if c == code}
        hit = len(expected & got)
        scores[code] = {"expected": len(expected), "found": len(got),
                        "precision": hit / len(got) if got else (1.0 if not expected else 0.0),
                        "recall": hit / len(expected) if expected else 1.0}
    unexpected = {c for c, _ in found} - set(INJECTED)
    for code in sorted(unexpected):
        scores[code] = {"expected": 0, "found": len({s for c, s in found if c == code}), "precision": 0.0,
                        "recall": 1.0}
    return scores


def measure(n: int, *, fraction: float = 0.01) -> dict[str, Any]:
    """Seed N projects, time the baseline read and the dry run, score what it found."""
    import actors
    from actors.reconciliation import SqlReconciliationStore
    from hub.db import connect_database, drop_schema

    policy = actors.load_policy()
    data = build(n, policy, fraction=fraction)
    groups = (*sorted(policy.security_groups.known_groups or ()), UNMANAGED)
    prefix = f"benchrec{uuid.uuid4().hex[:6]}"
    with simulators(groups, frozenset(policy.retention.all_labels())) as (erp, graph, pids):
        seeded = seed(data, erp, graph, prefix)
        baseline = _child(erp, graph, prefix, read_only=True)
        before = cpu_seconds(pids)
        run = _child(erp, graph, prefix, read_only=False)
        simulators_cpu = cpu_seconds(pids) - before
    db = connect_database(DATABASE_URL, prefix=prefix, embedded=False)
    try:
        found = {(r.finding.code, r.finding.subject) for r in SqlReconciliationStore(db).findings(run["run_id"])}
    finally:
        drop_schema(db)
        db.close()
    return {"projects": n, "seed_s": round(seeded, 1), "baseline_s": round(baseline["seconds"], 2),
            "seconds": round(run["seconds"], 2), "ratio_to_baseline": round(run["seconds"] / baseline["seconds"], 2),
            "pages": run["pages"], "peak_rss_mib": round(run["peak_rss_mib"], 1),
            "baseline_rss_mib": round(baseline["peak_rss_mib"], 1), "compared": run["compared"],
            "reconciler_cpu_s": round(run["cpu_s"], 2), "simulators_cpu_s": round(simulators_cpu, 2),
            "scores": score(data, found)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, ``child``, one measured process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("child")
    one.add_argument("--erp", required=True)
    one.add_argument("--graph", required=True)
    one.add_argument("--prefix", required=True)
    one.add_argument("--read-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a few hundred projects, to check it works")
    parser.add_argument("--sizes", default="10000,100000", help="project counts, comma-separated")
    args = parser.parse_args(argv)
    if args.command == "child":
        child(args)
        return 0
    sizes = [300] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = [measure(n, fraction=0.02 if args.quick else 0.01) for n in sizes]
    rows = [(r["projects"], r["seed_s"], r["baseline_s"], r["seconds"], r["ratio_to_baseline"], r["pages"],
             r["reconciler_cpu_s"], r["simulators_cpu_s"], r["peak_rss_mib"],
             f"{min(s['precision'] for s in r['scores'].values()):.0%}",
             f"{min(s['recall'] for s in r['scores'].values()):.0%}") for r in results]
    print(format_table(("projects", "seed s", "baseline read s", "reconcile s", "x baseline", "pages",
                        "reconciler CPU s", "simulators CPU s", "peak RSS MiB", "precision", "recall"), rows))
    if len(results) > 1:
        growth = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
        print(f"peak RSS {results[-1]['projects']:,} vs {results[0]['projects']:,} projects: x{growth:.2f}")
    write_report("reconcile-quick" if args.quick else "reconcile",
                 {"at": now_iso(), "machine": machine_info(), "results": results})
    perfect = all(s["precision"] == 1.0 and s["recall"] == 1.0 for r in results for s in r["scores"].values())
    return 0 if perfect else 1


if __name__ == "__main__":
    sys.exit(main())
