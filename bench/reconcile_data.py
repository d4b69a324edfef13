"""The data of the reconciliation benchmark: N projects in the ERP, their workspaces as provisioning would leave
them, the crosswalk, and a chosen fraction of each class of difference injected, with the differences a correct
reconciliation must find (to score precision and recall).

Pure: it builds records and folder entries; :mod:`bench.reconcile` seeds them into the simulators and the database.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hub.policy import Policy
from hub.workspace import Project, WorkspacePlan, plan_workspace

#: The classes the benchmark injects (readiness and subscriptions are not bulk classes: see docs).
INJECTED = ("RC101", "RC102", "RC103", "RC201", "RC301", "RC302", "RC303", "RC304", "RC401", "RC501", "RC502",
            "RC503")
#: A directory group the policy does not manage (granted by hand: RC303).
UNMANAGED = "Hand-Picked-Reviewers"
#: Behind the Litigation practice's wall in the default policy (``Knowledge-*``).
WALLED = "Knowledge-EU"
_KINDS = (("consulting", "Strategy"), ("engineering", "Infrastructure"), ("managed_services", "CloudOps"),
          ("legal", "Litigation"))
_REGIONS = (("EU", "DE"), ("NA", "US"), ("ME", "SA"), ("APAC", "SG"))


@dataclass
class Dataset:
    """What is seeded and what must be found."""

    clients: list[dict[str, Any]] = field(default_factory=list)
    projects: list[dict[str, Any]] = field(default_factory=list)
    #: Graph seed entries (``POST /_sim/seed`` ``folders``).
    folders: list[dict[str, Any]] = field(default_factory=list)
    #: Workspace path (as planned) -> project code, for the projects whose workspace is seeded.
    workspaces: dict[str, str] = field(default_factory=dict)
    #: (ERP code, linked workspace path or None) the crosswalk holds.
    crosswalk: list[tuple[str, str | None]] = field(default_factory=list)
    #: Crosswalk rows whose link must point elsewhere (RC503): their codes.
    relinked: set[str] = field(default_factory=set)
    #: (code, subject) a correct run finds.
    expected: set[tuple[str, str]] = field(default_factory=set)


def _record(code: str, client: str, index: int) -> dict[str, Any]:
    kind, practice = _KINDS[index % len(_KINDS)]
    region, country = _REGIONS[(index // len(_KINDS)) % len(_REGIONS)]
    return {"code": code, "client_id": client, "name": f"Engagement {code}", "engagement_type": kind,
            "practice": practice, "region": region, "country": country, "partner": "p.weber@firm.example",
            "billing_model": "time_and_materials", "status": "active",
            "value": {"amount_minor": 1_000_000, "currency": "EUR"}}


def plan_of(record: dict[str, Any], policy: Policy) -> WorkspacePlan:
    """The workspace the policy asks for an ERP record."""
    return plan_workspace(Project.from_record({**record, "project_code": record["code"], "updated_at": None,
                                               "conflicted_groups": []}), policy)


def build(n: int, policy: Policy, *, fraction: float = 0.01, seed: int = 7) -> Dataset:
    """N projects (ten per client), ``fraction`` of them (at least one) drifted in each class, each alone."""
    rng = random.Random(seed)
    data = Dataset()
    per_class = max(1, round(n * fraction))
    codes = [f"PRJ-{i:07d}" for i in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    legal = [i for i in order if _KINDS[i % len(_KINDS)][0] == "legal"]
    drifted: dict[int, str] = {i: "RC304" for i in legal[:per_class]}
    rest = iter(i for i in order if i not in drifted)
    for code in ("RC101", "RC103", "RC201", "RC301", "RC302", "RC303", "RC401", "RC501", "RC503"):
        for _ in range(per_class):
            drifted[next(rest)] = code
    known = sorted(policy.security_groups.known_groups or ())
    labels = sorted(policy.retention.all_labels())
    for c in range(0, n, 10):
        data.clients.append({"id": f"CL-{c // 10:06d}", "name": f"Client {c // 10}", "country": "DE"})
    for i, code in enumerate(codes):
        record = _record(code, f"CL-{i // 10:06d}", i)
        data.projects.append(record)
        plan = plan_of(record, policy)
        kind = drifted.get(i)
        if kind is not None:
            data.expected.add((kind, code))
        data.crosswalk += [] if kind == "RC501" else [(code, None if kind == "RC101" else plan.path)]
        if kind == "RC503":
            data.relinked.add(code)
        if kind == "RC101":
            continue
        data.workspaces[plan.path] = code
        data.folders += list(_entries(plan, kind, known, labels))
    for j in range(per_class):  # orphans: a workspace under a client's folder, no ERP project
        path = f"{plan_of(data.projects[j * 10], policy).path.rsplit('/', 1)[0]}/ORPHAN-{j:05d}"
        data.folders.append({"path": path, "fields": {"ProjectCode": f"ORPHAN-{j:05d}"}})
        data.expected.add(("RC102", path))
    for j in range(per_class):  # stale: the crosswalk knows an ERP project that is gone
        data.crosswalk.append((f"GONE-{j:05d}", None))
        data.expected.add(("RC502", f"GONE-{j:05d}"))
    return data


def _entries(plan: WorkspacePlan, kind: str | None, known: list[str], labels: list[str]) -> Iterator[dict[str, Any]]:
    grants = dict(plan.grants)
    metadata = dict(plan.metadata)
    label = plan.label
    if kind == "RC201":
        metadata["ProjectName"] = "edited by hand"
    elif kind == "RC301":
        del grants[sorted(grants)[0]]
    elif kind == "RC302":
        grants[next(g for g in known if g not in grants and not plan.walls.blocks(g))] = "read"
    elif kind == "RC303":
        grants[UNMANAGED] = "read"
    elif kind == "RC304":
        grants[WALLED] = "write"
    elif kind == "RC401":
        label = next(other for other in labels if other != plan.label)
    yield {"path": plan.path, "fields": metadata, "grants": [{"group": g, "role": r} for g, r in grants.items()],
           "retentionLabel": label}
    folders = list(plan.folders)
    if kind == "RC103":
        folders = folders[1:]
    for folder in folders:
        entry: dict[str, Any] = {"path": folder}
        if folder in plan.folder_labels:
            entry["retentionLabel"] = plan.folder_labels[folder]
        yield entry
