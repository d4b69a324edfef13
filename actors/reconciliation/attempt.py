"""One attempt at a reconciliation run: its phases in order, each skipped when an earlier attempt of the same run
finished it (see :mod:`actors.reconciliation.run`)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from actors.reconciliation.box import BoxReader
from actors.reconciliation.changes import BoxChanges, SharePointChanges, retention_moved
from actors.reconciliation.classes import BY_CODE
from actors.reconciliation.compare import Finding, compare_workspace
from actors.reconciliation.contract import (
    BOX_CURSOR,
    COMPLETED,
    CURSOR,
    REPAIR_REQUESTED,
    Progress,
    ReconciliationBusy,
    case_id,
    erp_record,
    repair_id,
)
from actors.reconciliation.platform import PlatformReader
from actors.reconciliation.reading import pages
from actors.reconciliation.spill import Spill
from actors.reconciliation.store import Action, Run, counts_of
from connectors.box.platform import BoxPlatform
from connectors.erp.client import Project as ErpProject
from connectors.erp.client import ProjectNotFound, client_record, project_record
from connectors.sharepoint.client import DeltaTokenExpired
from hub.errors import InvalidEvent
from hub.workspace import Project, plan_workspace, workspace_path
from observability.logging import get_logger

if TYPE_CHECKING:
    from actors.reconciliation.run import Reconciler

log = get_logger(__name__)


class Attempt:
    """One attempt at a run: its phases in order, each skipped when an earlier attempt finished it."""

    def __init__(self, reconciler: Reconciler, run: Run, progress: Progress, lost: threading.Event) -> None:
        self.r, self.run, self.progress, self.lost = reconciler, run, progress, lost
        self.spill = Spill(reconciler.spill_dir / f"{run.run_id}.sqlite")
        self.out = reconciler.out()
        #: subject -> (class codes, actors asked) of the repairs to request
        self.repairs: dict[str, tuple[set[str], set[str]]] = {}
        self.phase = ""
        #: The platform's change cursor when this run started reading it (saved for the next incremental run).
        self.cursor: str | None = None
        self.last_save = 0.0
        self.counting = threading.Lock()

    def execute(self) -> None:
        try:
            incremental = self.run.since is not None
            if incremental and (self.r.store.get_state(CURSOR) is None
                                or (self.r.box is not None and self.r.store.get_state(BOX_CURSOR) is None)):
                log.warning("no full reconciliation has kept the platforms' change cursors yet: this one compares "
                            "everything")
                self.run.since, incremental = None, False
            if "workspaces" in self.run.scope and not incremental and not self.spill.done("cursor"):
                # Changes from here on are the next incremental run's: taken before reading, so none is missed.
                self.cursor = self.r.graph.delta("latest").token
                self.spill.set("cursor", self.cursor)
                if self.r.box is not None:  # likewise Box's stream head and its retention assignments
                    self.spill.set("box_cursor", self.r.box.changes("now").cursor)
                    self.spill.keep_retention(self.r.box.retention_index())
                self.spill.finish("cursor")
            if "workspaces" in self.run.scope or "crosswalk" in self.run.scope:
                self._phase("erp", self._plan_changed_projects if incremental else self._plan_projects)
            if "workspaces" in self.run.scope:
                self._phase("platform", self._compare_changed_workspaces if incremental else self._compare_workspaces)
                self._phase("missing", self._missing_workspaces)
            if "crosswalk" in self.run.scope:
                self._phase("crosswalk", self._compare_crosswalk)
            if "canonical" in self.run.scope and self.r.canonical is not None:
                self._phase("canonical", self._compare_canonical)
            if "readiness" in self.run.scope and self.r.readiness is not None:
                self._phase("readiness", self._compare_readiness)
            if "subscriptions" in self.run.scope and self.r.notification_url:
                self._phase("subscriptions", self._compare_subscriptions)
        except BaseException as exc:
            self.run.detail = f"stopped: {type(exc).__name__}: {exc}"[:2000]
            self.r.store.save(self.run)  # still running: the next run resumes it
            self.spill.close()
            raise
        cursor, box_cursor = self.cursor or self.spill.get("cursor"), self.spill.get("box_cursor")
        if cursor:
            self.r.store.set_state(CURSOR, cursor)
        if box_cursor is not None:  # the assignments first: a Box cursor kept means they were kept with it
            self.r.store.keep_box_retention(self.spill.retention() or {})
            self.r.store.set_state(BOX_CURSOR, box_cursor)
        self.run.status, self.run.finished_at = "completed", self.r.clock()
        self.run.detail = None
        self.run.checkpoint = {"phase": "done"}
        self.r.store.save(self.run)
        self.spill.close(remove=True)
        self._announce()

    def _phase(self, name: str, work: Callable[[], None]) -> None:
        if self.spill.done(name):
            return
        self.phase = name
        self.run.checkpoint = {"phase": name}
        self.r.store.save(self.run)
        work()
        self._act_on_pending_repairs()
        self.spill.finish(name)
        self.r.store.save(self.run)

    def _check_lock(self) -> None:
        if self.lost.is_set():
            raise ReconciliationBusy("the reconciliation lock was lost (Redis restarted or the run stalled); the "
                                     "next run resumes this one")

    def _page(self) -> None:
        with self.counting:  # the platform is read from several threads
            self.run.pages += 1

    # -- phases -----------------------------------------------------------------------------------

    def _plan_projects(self) -> None:
        def rows() -> Iterator[tuple[str, str, dict[str, Any]]]:
            for done, project in enumerate(self.r.erp.iter_projects(order="code", page_size=self.r.page_size), 1):
                if done % self.r.page_size == 0:
                    self._page()
                    self.progress("erp", done, None)
                    self._check_lock()
                yield self._planned_row(project)
        planned = self.spill.plan(rows())
        self._page()
        self.progress("erp", planned, planned)

    def _compare_workspaces(self) -> None:
        """Every workspace against its plan, a top-level folder at a time; findings acted on and recorded in
        batches (``flush_every`` of them, or every two seconds), each batch's folders marked compared in the spill
        in the same step, so a crash loses only what a resumed attempt compares again."""
        total = self.spill.planned_count()
        reader = PlatformReader(self.r.graph, self.r.policy, root=self.r.root, page_size=self.r.page_size,
                                on_page=self._page, concurrency=self.r.concurrency)
        box = [] if self.r.box is None else [BoxReader(self.r.box, self.r.policy, root=self.r.root,
                                                       on_page=self._page, retention=self.spill.retention())]
        findings: list[Finding] = []
        flushed = time.monotonic()
        self.spill.begin()
        for group in itertools.chain(reader.groups(skip=self.spill.group_done),
                                     *(b.groups(skip=self.spill.group_done) for b in box)):
            matches = self.spill.match_all([(seen.path, seen.item_id) for seen in group.workspaces])
            for seen, matched in zip(group.workspaces, matches, strict=True):
                if matched is None:
                    code = seen.metadata.get("ProjectCode")
                    findings.append(Finding("RC102", seen.path, "", None, seen.item_id, "erp", code or None))
                    continue
                code, record = matched
                plan = plan_workspace(Project.from_record(record), self.r.policy, root=self.r.root)
                findings += compare_workspace(plan, seen, self.r.policy, code)
                self.run.compared += 1
            self.spill.mark_group(group.name)
            if len(findings) >= self.r.flush_every or time.monotonic() - flushed >= 2.0:
                self._found(findings)  # recorded first: the folders' marks follow
                self.spill.commit()
                self.spill.begin()
                findings, flushed = [], time.monotonic()
            self.progress("platform", self.run.compared, total)
            self._check_lock()
        self._found(findings)
        self.spill.commit()
        self.progress("platform", self.run.compared, self.run.compared)  # the rest are missing: the next phase

    def _plan_changed_projects(self) -> None:
        """Incremental: the projects the ERP changed since then, and those whose workspace changed on a platform
        (read from the change cursors the last run left)."""
        assert self.run.since is not None
        projects = {p.code: p for p in self.r.erp.iter_projects(updated_since=self.run.since,
                                                                 page_size=self.r.page_size)}
        self._page()
        codes = self._sharepoint_changes() + ([] if self.r.box is None else self._box_changes(self.r.box))
        for code in codes:
            if code not in projects:
                try:
                    projects[code] = self.r.erp.get_project(code)
                except ProjectNotFound:
                    continue  # a workspace without a project: the workspace's comparison says orphan
        self.spill.plan(self._planned_row(project) for project in projects.values())
        self.progress("erp", len(projects), len(projects))

    def _sharepoint_changes(self) -> list[str]:
        token = self.r.store.get_state(CURSOR)
        try:
            changes = self.r.graph.delta(str(token))
        except DeltaTokenExpired:
            log.warning("the platform's change cursor expired: only the ERP's changes are compared; the next full "
                        "run compares everything")
            return []
        finally:
            self._page()
        self.cursor = changes.token
        self.spill.set("cursor", changes.token)
        depth = len(self.r.policy.workspace.path.split("/"))
        return list(SharePointChanges(self.r.graph, self.r.crosswalk, self.spill, root=self.r.root,
                                      depth=depth).codes(changes.items))

    def _box_changes(self, box: BoxPlatform) -> list[str]:
        """Box's events since its cursor, and its retention assignments against those the last run read."""
        page = box.changes(str(self.r.store.get_state(BOX_CURSOR)))
        retention = box.retention_index()
        self._page()
        moved = retention_moved(self.r.store.box_retention(), retention)
        self.spill.set("box_cursor", page.cursor)
        self.spill.keep_retention(retention)
        depth = len(self.r.policy.workspace.path.split("/"))
        return list(BoxChanges(box, self.r.crosswalk, self.spill, root=self.r.root, depth=depth,
                               on_page=self._page).codes(page.items, moved))

    def _planned_row(self, project: ErpProject) -> tuple[str, str, dict[str, Any]]:
        record = erp_record(project)
        try:
            path = workspace_path(Project.from_record(record), self.r.policy, root=self.r.root)
        except InvalidEvent:
            path = f"\x00{project.code}"  # no valid workspace path: reported as a missing workspace
        return path, project.code, record

    def _compare_changed_workspaces(self) -> None:
        """Incremental: each candidate workspace read where it must be (and where a change was seen)."""
        reader = PlatformReader(self.r.graph, self.r.policy, root=self.r.root, page_size=self.r.page_size,
                                on_page=self._page)
        box = [] if self.r.box is None else [BoxReader(self.r.box, self.r.policy, root=self.r.root,
                                                       on_page=self._page, retention=self.spill.retention())]
        paths = self.spill.candidate_paths()
        findings: list[Finding] = []
        self.spill.begin()
        for seen in itertools.chain(reader.read_paths(paths), *(b.read_paths(paths) for b in box)):
            matched = self.spill.match(seen.path, seen.item_id)
            if matched is None:
                code = seen.metadata.get("ProjectCode")
                findings.append(Finding("RC102", seen.path, "", None, seen.item_id, "erp", code or None))
                continue
            code, record = matched
            plan = plan_workspace(Project.from_record(record), self.r.policy, root=self.r.root)
            findings += compare_workspace(plan, seen, self.r.policy, code)
            self.run.compared += 1
        self.spill.commit()
        self._found(findings)
        self.progress("platform", self.run.compared, len(paths))

    def _missing_workspaces(self) -> None:
        findings = [Finding("RC101", code, "", path if not path.startswith("\x00") else "(no valid path)", None,
                            "erp", code) for path, code, _ in self.spill.unmatched()]
        self._found(findings)

    def _compare_crosswalk(self) -> None:
        on_box: set[str] = set()
        self.spill.link(self._links(on_box))
        findings = [Finding("RC501", code, "canonical_id", "(minted)", None, "erp", code)
                    for code in self.spill.crosswalk_missing()]
        if self.run.since is None:  # a record the ERP deleted is in no modified-since listing: full runs only
            findings += [Finding("RC502", code, "erp", None, canonical, "erp", code)
                         for code, canonical in self.spill.crosswalk_stale()]
        findings += [Finding("RC503", code, platform, item_id, linked, platform, code)
                     for code, item_id, linked in self.spill.link_drift()
                     for platform in ("box" if code in on_box else "sharepoint",)]
        self._found(findings)

    def _links(self, on_box: set[str]) -> Iterator[tuple[str, str, str | None]]:
        """Each ERP project's canonical id and workspace link: SharePoint's, or Box's when it has none there (its
        code then added to ``on_box``; one lookup per project without a SharePoint link)."""
        for code, canonical, linked in self.r.crosswalk.iter_links("project", "erp", to="sharepoint",
                                                                   page_size=self.r.page_size):
            if linked is None and self.r.box is not None:
                linked = self.r.crosswalk.identities(canonical).get("box")
                if linked is not None:
                    on_box.add(code)
            yield code, canonical, linked

    def _compare_canonical(self) -> None:
        """Every ERP client and project against its canonical record, a page at a time."""
        assert self.r.canonical is not None
        clients = pages(client_record(c) for c in self.r.erp.iter_clients(page_size=self.r.page_size))
        projects = pages(project_record(p) for p in self.r.erp.iter_projects(order="code", page_size=self.r.page_size))
        for entity, cut in (("client", clients), ("project", projects)):
            for page in cut(self.r.page_size):
                self._page()
                findings: list[Finding] = []
                for key, differs in self.r.canonical.drift(entity, page):  # type: ignore[arg-type]
                    subject = key if entity == "project" else f"client:{key}"
                    project = key if entity == "project" else None
                    if differs is None:
                        findings.append(Finding("RC504", subject, "canonical_id", "(a record)", None, "erp", project))
                    else:
                        findings += [Finding("RC505", subject, name, expected, actual, "erp", project)
                                     for name, expected, actual in differs]
                self._found(findings)
                self._check_lock()

    def _compare_readiness(self) -> None:
        assert self.r.readiness is not None
        readiness = self.r.readiness
        findings = [Finding("RC601", code, "facts", derived, stored, f"erp+{readiness.platform_of(code)}", code)
                    for code, derived, stored in readiness.stale()]
        self._found(findings)

    def _compare_subscriptions(self) -> None:
        url = self.r.notification_url
        resource = f"drives/{self.r.graph.drive_id}/root"
        mine = [s for s in self.r.graph.subscriptions() if s.resource == resource and s.notification_url == url]
        if not mine:
            self._found([Finding("RC701", resource, "subscription", url, None, "hub")])
            return
        expires = max(s.expiration for s in mine)
        if expires - self.r.clock() < timedelta(days=1):
            self._found([Finding("RC702", resource, "expiration", "more than a day ahead", expires.isoformat(),
                                 "hub")])

    # -- acting on what was found -----------------------------------------------------------------

    def _found(self, findings: Sequence[Finding]) -> None:
        """Act on the findings not recorded for this run yet, then record them, and checkpoint."""
        if not findings:
            self._save()
            return
        decided = [(f, self._action(f)) for f in findings]
        new = {id(f) for f in self.r.store.fresh(self.run.run_id, findings)}
        fresh = [(f, action) for f, action in decided if id(f) in new]
        for f, action in fresh:
            cls = BY_CODE[f.code]
            if action in ("repair_requested", "repaired_and_routed"):
                codes, actors = self.repairs.setdefault(f.project_code or f.subject, (set(), set()))
                codes.add(f.code)
                actors.add(str(cls.repairer))
            if action in ("routed", "repaired_and_routed"):
                self.out.raise_exception(
                    cls.owner, kind=f"reconciliation.{cls.name}", subject=f.subject, id=case_id(f),
                    severity=cls.severity, project_code=f.project_code,
                    detail=_evidence(f, cls.summary, repaired=action == "repaired_and_routed"))
                self.run.routed += 1
        self._act_on_pending_repairs()
        self.r.store.record(self.run.run_id, fresh, self.r.clock())
        self.run.counts = counts_of((f for f, _ in fresh), self.run.counts)
        self._save()

    def _action(self, finding: Finding) -> Action:
        cls = BY_CODE[finding.code]
        if cls.hard_stop:
            return "repaired_and_routed"
        if not self.run.repair:
            return "reported"
        return "repair_requested" if cls.safe else "routed"

    def _act_on_pending_repairs(self) -> None:
        for subject, (codes, actors) in sorted(self.repairs.items()):
            project = subject if not subject.startswith("drives/") else None
            data = {"run_id": self.run.run_id, "subject": subject, "project_code": project, "actors": sorted(actors),
                    "codes": sorted(codes), "requested_at": self.r.clock()}
            self.out.emit(REPAIR_REQUESTED, data, id=repair_id(self.run.run_id, self.phase, subject), subject=subject,
                          partitionkey=f"project:{project}" if project else None)
            self.run.repaired += len(codes)
        self.repairs.clear()

    def _save(self) -> None:
        now = time.monotonic()
        if now - self.last_save >= 2.0:
            self.r.store.save(self.run)
            self.last_save = now

    def _announce(self) -> None:
        run = self.run
        data = {"run_id": run.run_id, "scope": list(run.scope), "incremental": run.since is not None,
                "since": run.since, "repair": run.repair, "started_at": run.started_at,
                "finished_at": run.finished_at, "duration_ms": run.duration_ms, "compared": run.compared,
                "counts": dict(run.counts), "repaired": run.repaired, "routed": run.routed}
        self.out.emit(COMPLETED, data, id=run.run_id, subject=run.run_id)


def _evidence(f: Finding, summary: str, *, repaired: bool) -> str:
    said = f"{f.code} {summary}: {f.subject}" + (f" ({f.field})" if f.field else "")
    said += f"; expected {f.expected!r} per {f.authority}, found {f.actual!r}"
    return said + ("; removed at once by reconciliation" if repaired else "")
