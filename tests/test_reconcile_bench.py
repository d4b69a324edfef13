"""The reconciliation benchmark in quick mode (``python -m bench.reconcile --quick``): a few hundred projects seeded
in bulk with every bulk class of difference injected, reconciled by a process of its own; every class is found
exactly (precision and recall 100%). Times are printed by ``make bench-reconcile``, never asserted here."""

from __future__ import annotations

import pytest

import actors
from bench.reconcile import measure
from bench.reconcile_data import INJECTED, build

pytestmark = pytest.mark.integration


def test_the_data_injects_every_bulk_class_each_alone() -> None:
    data = build(300, actors.load_policy(), fraction=0.02)
    by_subject: dict[str, list[str]] = {}
    for code, subject in data.expected:
        by_subject.setdefault(subject, []).append(code)
    assert {code for code, _ in data.expected} == set(INJECTED)
    assert all(len(codes) == 1 for codes in by_subject.values())


def test_reconciling_a_seeded_estate_finds_every_injected_difference_and_nothing_else() -> None:
    result = measure(300, fraction=0.02)
    assert result["compared"] == 300 - 6  # the missing workspaces are not compared, they are missing
    scores = result["scores"]
    assert set(scores) == set(INJECTED), scores  # no class found that was not injected
    assert all(s["precision"] == 1.0 and s["recall"] == 1.0 and s["expected"] == 6 for s in scores.values()), scores
