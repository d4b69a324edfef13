"""The fault suite's short version (``chaos/``): each scenario on private RabbitMQ, Redis and PostgreSQL servers,
the hub's own ``hub serve`` and ``hub worker`` processes and the simulated systems, with a small load.

The cheapest scenario runs in the default suite; the others are marked ``chaos`` (left out by default,
``make chaos-short`` runs them all). ``make chaos`` is the full run with the figures of docs/reliability.md.
"""

from __future__ import annotations

import shutil

import pytest

from chaos.harness import Options, run_scenario
from chaos.scenarios import SCENARIOS
from chaos.servers import POSTGRES_BIN, RABBIT_BIN

#: Events per scenario (fewer in the default suite, to keep it short), and the rate they are offered at (about
#: what the hub handles on a 2-core machine).
EVENTS = 300
DEFAULT_EVENTS = 100
RATE = 10.0
#: The scenarios of the default suite: the one that settles quickest (redis-empty, next, takes twice as long).
DEFAULT = ("poison",)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not (RABBIT_BIN / "rabbitmq-server").exists() or not (POSTGRES_BIN / "initdb").exists()
                       or shutil.which("redis-server") is None,
                       reason="the private servers need rabbitmq-server, redis-server and PostgreSQL 15's initdb"),
]


@pytest.mark.parametrize("name", [name if name in DEFAULT else pytest.param(name, marks=pytest.mark.chaos)
                                  for name in SCENARIOS])
def test_under_the_fault_every_accepted_event_has_its_effects_once_and_no_secret_is_written(name: str) -> None:
    events = DEFAULT_EVENTS if name in DEFAULT else EVENTS
    result = run_scenario(name, SCENARIOS[name], Options(events=events, rate=RATE))
    assert result.settled, result.notes
    assert result.accepted == events, result.notes
    assert result.lost == 0, result.notes
    assert result.duplicated_effects == 0, result.notes
    assert result.leaks == []
    assert result.dead_letters == result.expected_dead, result.notes
