"""The settle benchmark in short (``python -m bench.settles``, ``make bench-settles``): an ingress that settles each
request at once and one that holds the settle for the next request both accept every event on the real RabbitMQ and
Redis, each measured at every point. Speeds are printed by ``make bench-settles``, never asserted here."""

from __future__ import annotations

import pytest

from bench.settles import POINTS, WAYS, run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_both_ways_accept_every_event_at_every_point() -> None:
    report = run(repeats=1, events=200, log=lambda _: None)
    for way in WAYS:
        for batch, clients in POINTS:
            (sample,) = report["samples"][f"{way} {batch}x{clients}"]
            assert sample["events_per_s"] > 0 and sample["ingress_cpu_ms"] > 0, (way, batch, clients)
    assert set(report["ratios_held_to_at_once"]) == {f"{b}x{c}" for b, c in POINTS}
