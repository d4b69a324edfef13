"""``hub reconcile``: compare the systems of record, classify every difference, repair what is safe (``--repair``)
through the actors, route the rest to its owner; ``hub reconcile show``: a stored run's report."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hub.cli.common import Config, console, echo_json, echo_table, log_for_operator, note, output_option, pass_config
from hub.cli.compose import build_app, reconciler
from hub.rfc3339 import parse

if TYPE_CHECKING:
    from actors.reconciliation import Run

#: What the phases are called on the progress bar.
_PHASES = {"erp": "ERP projects planned", "platform": "workspaces compared", "missing": "missing workspaces",
           "crosswalk": "crosswalk", "canonical": "canonical records", "readiness": "readiness facts",
           "subscriptions": "subscriptions"}
_RELATIVE = re.compile(r"^(\d+)([dhm])$")


def _since(value: str | None) -> datetime | None:
    """``--since``: an RFC 3339 time, or how long ago (``12h``, ``2d``, ``30m``)."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return datetime.now(UTC) - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
    try:
        return parse(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor an age "
                                 "(12h, 2d)", param_hint="--since") from None


@click.group(invoke_without_command=True)
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["workspaces", "crosswalk", "canonical",
                                                                      "readiness", "subscriptions"]),
              help="Compare only this (repeatable; default: everything).")
@click.option("--since", help="Only what changed since then (RFC 3339 time, or an age: 12h, 2d): the ERP's "
                              "modified-since listing and the platform's changes since the last run.")
@click.option("--repair", is_flag=True, help="Repair the safe differences through the actors and route the rest "
                                            "to their owners (default: a dry run that only reports).")
@click.option("--fresh", is_flag=True, help="Abandon a run that did not finish instead of resuming it.")
@output_option
@click.pass_context
def reconcile(ctx: click.Context, scopes: tuple[str, ...], since: str | None, repair: bool, fresh: bool,
              output: str) -> None:
    """Compare the ERP, the crosswalk, the canonical records, the document platform and the readiness facts; report
    every difference by
    class, repair the safe ones (--repair) and route the rest to their owners. A walled group found on a workspace
    is removed at once, dry run or not. One run at a time; a run that died is resumed."""
    if ctx.invoked_subcommand is not None:
        return
    from actors.reconciliation import SCOPES

    config = ctx.find_object(Config)
    assert config is not None  # the hub group loads it
    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    job = reconciler(runtime, config.connections)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console(stderr=True), transient=output == "json") as bar:
            tasks: dict[str, Any] = {}

            def progress(phase: str, done: int, total: int | None) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total)
                bar.update(tasks[phase], completed=done, total=total)

            run = job.run(scope=scopes or SCOPES, since=_since(since), repair=repair, fresh=fresh, progress=progress)
    finally:
        job.close()
        runtime.close()
    _report(run, output)


@reconcile.command("show")
@click.argument("run_id", required=False)
@click.option("--class", "code", help="Only this class's differences (a code such as RC304, or its name).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many differences listed (the counts cover them all).")
@click.option("--list", "list_runs", is_flag=True, help="The latest runs instead of one run's report.")
@output_option
@pass_config
def reconcile_show(config: Config, run_id: str | None, code: str | None, limit: int, list_runs: bool,
                   output: str) -> None:
    """A stored run's report (the newest when RUN_ID is not given; a unique prefix of it will do)."""
    from actors.reconciliation import SqlReconciliationStore, drift_class

    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        store = SqlReconciliationStore(runtime.db)
        if list_runs:
            runs = store.runs()
            if output == "json":
                echo_json([r.as_dict() for r in runs])
            else:
                echo_table(("run", "status", "started", "scope", "repair", "differences", "repaired", "routed"),
                           ((r.run_id[:8], r.status, r.started_at.strftime("%Y-%m-%d %H:%M"), ",".join(r.scope),
                             "yes" if r.repair else "dry run", sum(r.counts.values()), r.repaired, r.routed)
                            for r in runs))
            return
        run = store.run(run_id)
        if run is None:
            raise click.ClickException(f"no reconciliation run {run_id!r}" if run_id else "no reconciliation run yet")
        try:
            chosen = drift_class(code).code if code else None
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--class") from None
        findings = list(store.findings(run.run_id, code=chosen, limit=limit))
    finally:
        runtime.close()
    _report(run, output, findings=[f.as_dict() for f in findings])


def _report(run: Run, output: str, *, findings: list[dict[str, Any]] | None = None) -> None:
    """The run's summary (and differences, when given) as a table or JSON."""
    from actors.reconciliation.classes import counts_table

    if output == "json":
        echo_json({**run.as_dict(), **({"differences": findings} if findings is not None else {})})
        return
    mode = "repair" if run.repair else "dry run"
    click.echo(f"run {run.run_id} ({mode}, {','.join(run.scope)}): {run.status}, {run.compared} workspace(s) "
               f"compared in {run.duration_ms / 1000:.1f} s, {run.pages} page(s) read")
    echo_table(("code", "class", "found"), [row for row in counts_table(run.counts) if row[2]] or [("-", "none", 0)],
               title="Differences")
    if findings:
        echo_table(("code", "subject", "field", "expected", "found", "authority", "action"),
                   ((f["code"], f["subject"], f["field"], f["expected"], f["actual"], f["authority"],
                     f["action"].replace("_", " "))
                    for f in findings), title="Each difference")
    note(f"{sum(run.counts.values())} difference(s); {run.repaired} repair(s) requested, {run.routed} routed"
         + ("" if run.repair else "; run with --repair to repair the safe ones"))
