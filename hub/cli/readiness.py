"""``hub readiness``: the invoice-readiness gate's verdict on an invoice, and rebuilding its facts."""

from __future__ import annotations

import sys

import click

from hub.cli.common import EXIT_HELD, Config, echo_json, echo_table, log_for_operator, note, output_option, pass_config
from hub.cli.compose import build_app, readiness_gate


@click.group()
def readiness() -> None:
    """The invoice-readiness gate: an invoice's verdict, and rebuilding the gate's facts."""


@readiness.command("show")
@click.argument("invoice")
@output_option
@pass_config
def readiness_show(config: Config, invoice: str, output: str) -> None:
    """Whether INVOICE may be finalised now, with its hold reasons (from the gate's facts).

    Exits 0 when the invoice is ready and 3 when it is held, so a script can gate on it.
    """
    from actors.invoice_readiness.facts import readiness_body

    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    gate = readiness_gate(runtime, config.connections)
    try:
        code, verdict = gate.current(invoice)
    finally:
        gate.erp.close()
        runtime.close()
    body = readiness_body(invoice, code, verdict)
    if output == "json":
        echo_json(body)
    else:
        click.echo(f"{invoice} ({code or 'project unknown'}): {body['status'].upper()}"
                   + ("" if body["may_finalize"] else " - may not be finalised"))
        if body["hold_reasons"]:
            echo_table(("hold code", "artefact", "detail"),
                       ((r["code"], r["artefact"], r["detail"]) for r in body["hold_reasons"]))
    if not body["may_finalize"]:
        sys.exit(EXIT_HELD)


@readiness.command("list")
@click.option("--held", is_flag=True, help="The held invoices (the only list there is, for now).")
@click.option("--owner", help="Only invoices waiting for this owner (finance, pmo, records_management).")
@output_option
@pass_config
def readiness_list(config: Config, held: bool, owner: str | None, output: str) -> None:
    """Every held invoice: its hold codes, the artefacts it waits for, who takes the next step, and since when."""
    from actors.invoice_readiness import SqlReadinessStore
    from actors.invoice_readiness.held import held_body

    if not held:
        raise click.UsageError("say which invoices: --held")
    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    try:
        invoices = [invoice for invoice in SqlReadinessStore(runtime.db).held()
                    if owner is None or owner in invoice.owners]
    finally:
        runtime.close()
    if output == "json":
        echo_json([held_body(invoice) for invoice in invoices])
        return
    echo_table(("invoice", "project", "held since", "codes", "waiting for", "owners"),
               ((i.invoice_number, i.project_code, i.since.strftime("%Y-%m-%d %H:%M"), ", ".join(i.codes),
                 ", ".join(dict.fromkeys(r.name or r.artefact for r in i.reasons)), ", ".join(i.owners))
                for i in invoices))
    note(f"{len(invoices)} held invoice(s)")


@readiness.command("rebuild")
@click.argument("invoice", required=False)
@click.option("--all", "rebuild_all", is_flag=True, help="Every draft invoice in the ERP.")
@output_option
@pass_config
def readiness_rebuild(config: Config, invoice: str | None, rebuild_all: bool, output: str) -> None:
    """Rebuild the gate's facts from the ERP and the document platform (one INVOICE's project, or --all),
    and emit the verdicts that changed."""
    import actors
    from connectors.sharepoint.client import GraphClient
    from hub.actor import Emitting
    from hub.cli.platforms import document_platforms

    if (invoice is None) == (not rebuild_all):
        raise click.UsageError("name one INVOICE or give --all")
    log_for_operator(config.settings)
    runtime = build_app(config.settings, embedded=False, connections=config.connections)
    graph = GraphClient.from_settings(config.connections.graph)
    platforms, closers = document_platforms(runtime.policy, config.connections, graph=graph)
    gate = readiness_gate(runtime, config.connections, platforms=platforms)
    out = Emitting(spec=runtime.specs[actors.invoice_readiness.SPEC.name], registry=runtime.registry,
                   emitter=runtime.dispatcher)
    try:
        changes = gate.rebuild(out, invoice=invoice, progress=lambda code, done, total, facts: note(
            f"[{done}/{total}] {code}: {facts} fact(s) from the ERP and the workspace"))
    finally:
        gate.erp.close()
        graph.close()
        for close in closers:
            close()
        runtime.close()
    if output == "json":
        echo_json([{"invoice_number": c.invoice_number, "project_code": c.project_code,
                    "status": c.readiness.status, "hold_reasons": [r.to_record() for r in c.readiness.reasons]}
                   for c in changes])
    else:
        echo_table(("invoice", "project", "status", "hold reasons"),
                   ((c.invoice_number, c.project_code, c.readiness.status,
                     ", ".join(f"{r.code}({r.artefact})" for r in c.readiness.reasons) or "-") for c in changes))
    note(f"{len(changes)} verdict(s) changed")
