"""The topic-publish benchmark in short (``python -m bench.confirms``, ``make bench-confirms``): both ways publish
every message, confirmed, on the real RabbitMQ, and the window has several publishes awaiting their confirms on its
one channel. Speeds are printed by ``make bench-confirms``, never asserted here."""

from __future__ import annotations

import pytest

from bench.confirms import WAYS, run

pytestmark = pytest.mark.integration


def test_both_ways_publish_every_message_and_the_window_holds_several_in_flight() -> None:
    report = run(threads=4, messages=400, repeats=1)
    for way in WAYS:
        (sample,) = report["samples"][way]
        assert sample["msgs_per_s"] > 0 and sample["client_cpu_ms"] > 0, way
    assert report["samples"]["window"][0]["in_flight_max"] > 1
    assert set(report["ratios_window_to_per_thread"]) >= {"msgs_per_s", "client_cpu_ms"}
