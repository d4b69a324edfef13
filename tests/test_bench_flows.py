"""The benchmark's flows (``python -m bench.run --quick --flows-only``: the flows section of ``--quick``): the fan-out,
provisioning, master data and all three, each posted to an ingress of its own against the real RabbitMQ, Redis and
PostgreSQL with the ERP and Graph simulators at zero latency, until each event's last side effects arrived on
``hub.events``; CPU per event by component. Figures are printed by ``make bench``, never asserted here."""

from __future__ import annotations

import dataclasses

import pytest

import actors
from bench import loadgen
from bench.flows import EVENT, FLOWS, PROJECT_CHANGED, PROVISIONED
from bench.suite import QUICK, build_report, markdown_tables, run_suite
from hub.dispatch import RoutingTable


def test_the_hub_still_routes_every_flow_and_fans_out_its_last_side_effects() -> None:
    routes = RoutingTable.of(actors.SPECS).as_dict()
    assert loadgen.check_routes(routes, FLOWS.values()) == ()  # all three flows: nothing else takes the load's type
    assert FLOWS["all"].effects == (EVENT, PROVISIONED, PROJECT_CHANGED)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_the_quick_flows_run_end_to_end_with_the_simulators_and_cost_every_component() -> None:
    cfg = dataclasses.replace(QUICK, flows_only=True, repeats=1)
    run, params = run_suite(cfg, log=print)
    report = build_report(run, cfg)
    rows = {row["flow"]: row for row in report["flows"]}
    assert set(rows) == set(FLOWS) == set(params["flows"])
    for name, row in rows.items():
        assert row["events_per_s"]["median"] > 0, name
        cpu = row["cpu_ms_per_event"]
        assert set(cpu) == {"ingress", "workers", "rabbitmq", "redis", "postgres", "erp_sim", "graph_sim",
                            "loadgen"}, name
        assert all(cpu[k] is not None for k in ("ingress", "workers", "postgres", "erp_sim", "graph_sim")), name
        assert row["baseline_b_msgs_per_s"]["median"] > 0
    for name in ("provisioning", "all"):  # they wrote to the simulators
        assert rows[name]["cpu_ms_per_event"]["graph_sim"]["median"] > 0, name
    tables = markdown_tables(report)
    assert "### CPU ms per business event by flow" in tables
    assert "its own cost, the master_data row less the fanout row" in tables
