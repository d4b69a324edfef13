"""Convergence: whatever order the vendors deliver a scenario's webhooks in, however often and however many at once,
the hub ends where the in-order run ends.

For each scenario (consulting SOW and change order, engineering milestones, a managed-services billing package, a
legal matter whose wall grows), the vendors' webhooks are captured unsent as the exact signed requests
(:mod:`tests.support.convergence`). The reference run delivers them in their order, one at a time, the hub quiet
after each user action's webhooks. Each Hypothesis example is a run on a fresh hub and fresh simulators that posts
a permutation of them, each one one to three times, from two to four threads at once, and the vendors' webhooks
the hub's own writes cause, once or twice each. Every run must end in the reference's state: the workspace tree,
grants, labels and fields, SharePoint's folder creates, grants, uploads and deletes, the ERP's records and the
writes made to each, the gate's verdicts; no dead letter, no message failed, no exception raised, no webhook
refused, no folder created or file uploaded twice, and no verdict published twice in a row.

``--convergence-examples N`` sets the examples per scenario: 2 by default (a fixed sequence), 50 drawn at random
by ``make converge``. The summary line says how many were tried.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.conftest import ORDERS_TRIED
from tests.support.convergence import Outcome, Plan, repeated, run
from tests.support.convergence_scenarios import SCENARIOS

pytestmark = pytest.mark.integration

#: Examples per scenario in the default suite: a fixed sequence, drawn the same way every run.
DEFAULT_EXAMPLES = 2


@st.composite
def plans(draw: st.DrawFn, webhooks: int) -> Plan:
    """A delivery of ``webhooks`` webhooks: each one to three times, the posts in any order, from two to four
    threads; the vendors' webhooks caused by the hub's writes once or twice each."""
    copies = draw(st.lists(st.integers(1, 3), min_size=webhooks, max_size=webhooks))
    posts = [index for index, count in enumerate(copies) for _ in range(count)]
    return Plan(order=tuple(draw(st.permutations(posts))), threads=draw(st.integers(2, 4)),
                feedback=draw(st.integers(1, 2)))


def assert_sound(outcome: Outcome) -> None:
    """What every run must show by itself: nothing refused, dead-lettered, failed or raised, no folder created or
    file uploaded twice, no verdict published twice in a row, and the last one published the gate's final answer."""
    state = outcome.state
    assert outcome.refused == []
    assert (state["dead_letters"], state["ended_badly"], state["exceptions_raised"]) == ({}, [], 0)
    twice = {path: count for kind in ("creates", "uploads") for path, count in state["effects"][kind].items()
             if count > 1}
    assert twice == {}
    for number, verdicts in outcome.verdicts.items():
        assert repeated(verdicts) == [], (number, verdicts)
        final = state["verdicts"][number]
        reasons = sorted((code, artefact) for code, artefact, _ in final["hold_reasons"])
        assert verdicts[-1] == (final["status"], reasons)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_any_delivery_order_with_duplicates_and_concurrent_reposts_ends_in_the_state_of_the_in_order_run(
        name: str, request: pytest.FixtureRequest) -> None:
    build = SCENARIOS[name]
    reference = run(build)
    assert_sound(reference)
    assert set(reference.verdicts) == set(reference.state["verdicts"])  # each invoice's verdict was published
    examples: int = request.config.getoption("convergence_examples")
    tried = 0

    @settings(max_examples=examples, deadline=None, derandomize=examples <= DEFAULT_EXAMPLES, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(plan=plans(len(reference.systems)))
    def delivered(plan: Plan) -> None:
        nonlocal tried
        tried += 1
        note(plan.describe(reference.systems))
        outcome = run(build, plan)
        assert outcome.systems == reference.systems  # the same webhooks, captured the same way
        assert_sound(outcome)
        assert _diff(outcome.state, reference.state) == {}

    delivered()
    request.node.user_properties.append((ORDERS_TRIED, tried))


def _diff(state: Any, reference: Any, path: str = "") -> dict[str, Any]:
    """Where ``state`` differs from ``reference``: each differing leaf's path with (its value, the reference's)."""
    if isinstance(state, dict) and isinstance(reference, dict):
        found: dict[str, Any] = {}
        for key in sorted(set(state) | set(reference), key=str):
            found.update(_diff(state.get(key), reference.get(key), f"{path}/{key}"))
        return found
    return {} if state == reference else {path: (state, reference)}
