"""The flows the benchmark measures: the actors the load goes to and the last side effects waited for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flow:
    """A measured flow: the actors the benchmark ingress routes the load's ``erp.project.created.v1`` to (the
    workers route what those actors emit as the hub does), and the last side effects waited for per event, all on
    ``hub.events`` (the fan-out publishes every event the hub emits): ``EVENT`` is the fan-out's publish of the
    posted event itself, any other name the fan-out's publish of an event of that type about the event's
    project."""

    name: str
    actors: tuple[str, ...]
    effects: tuple[str, ...]
    #: Whether it writes to the simulated ERP and Graph (started at zero latency, the ERP seeded first).
    simulators: bool = False


#: The last side effect "the fan-out published the posted event itself".
EVENT = "event"
PROVISIONED = "dms.workspace.provisioned.v1"
PROJECT_CHANGED = "hub.project.changed.v1"
#: Every flow the benchmark measures, by name. ``all`` is the hub's own routing of the load's type.
FLOWS: dict[str, Flow] = {flow.name: flow for flow in (
    Flow("fanout", ("fanout",), (EVENT,)),
    Flow("provisioning", ("provisioning",), (PROVISIONED,), simulators=True),
    # With the policy's ethical walls on the bus, the fan-out publishes hub.project.changed.v1 only once it learnt
    # the matter's verdict from the project's own event: master data is measured with the fan-out (its own cost is
    # this flow's less the fan-out's).
    Flow("master_data", ("master_data", "fanout"), (EVENT, PROJECT_CHANGED)),
    Flow("all", ("fanout", "provisioning", "master_data"), (EVENT, PROVISIONED, PROJECT_CHANGED), simulators=True),
)}
#: The flow of the ingress and end-to-end sections: the fan-out.
FANOUT = FLOWS["fanout"]
#: The environment variable naming the flow whose routes ``bench.hubproc ingress`` keeps (default ``fanout``).
FLOW_ENV = "BENCH_FLOW"
