"""pmd-auto-lb decisions (OVS's semantics) and why a queue sits on its PMD."""

from __future__ import annotations

import pytest

from ovsd.dpif.auto_lb import AutoLbConfig, loads_by_pmd, plan
from ovsd.dpif.rxq_sched import assign_rxqs

WINDOW = 1_000_000_000  # 1 s of busy ns per PMD at 100%
CFG = AutoLbConfig(True, 95, 25, 60.0)


def test_config_from_other_config_with_ovs_defaults_and_bounds():
    assert AutoLbConfig.from_other_config({}) == AutoLbConfig(False, 95, 25, 60.0)
    cfg = AutoLbConfig.from_other_config({
        "pmd-auto-lb": "true", "pmd-auto-lb-load-threshold": "70",
        "pmd-auto-lb-improvement-threshold": "250", "pmd-auto-lb-rebal-interval": "0"})
    assert cfg == AutoLbConfig(True, 70, 100, 60.0)
    assert AutoLbConfig.from_other_config({"pmd-auto-lb-rebal-interval": "3"}).interval_s \
        == 180.0
    assert AutoLbConfig.from_other_config({"pmd-auto-lb-load-threshold": "x"}) \
        .load_threshold == 95


def test_two_heavy_queues_on_one_pmd_are_split():
    assignment = {"a": 0, "b": 0, "c": 1}
    busy = {"a": 0.5 * WINDOW, "b": 0.48 * WINDOW, "c": 0.05 * WINDOW}
    assert loads_by_pmd(assignment, busy, [0, 1], WINDOW) == pytest.approx({0: 98, 1: 5})
    new, why = plan(assignment, busy, [0, 1], WINDOW, CFG)
    assert new is not None and new["a"] != new["b"]
    assert "98%/5%" in why and "variance" in why


def test_nothing_moves_below_the_load_threshold():
    busy = {"a": 0.5 * WINDOW, "b": 0.4 * WINDOW, "c": 0.0}
    new, why = plan({"a": 0, "b": 0, "c": 1}, busy, [0, 1], WINDOW, CFG)
    assert new is None and "no PMD above 95%" in why


def test_nothing_moves_when_the_improvement_is_too_small():
    # One queue carries the load: no placement spreads it.
    busy = {"a": 0.97 * WINDOW, "b": 0.0}
    new, why = plan({"a": 0, "b": 1}, busy, [0, 1], WINDOW, CFG)
    assert new is None and "less than 25%" in why


def test_one_pmd_never_rebalances():
    assert plan({"a": 0}, {"a": WINDOW}, [0], WINDOW, CFG)[0] is None


def test_placement_reasons():
    why: dict = {}
    out = assign_rxqs(["q1", "q2", "q3"], [0, 1], {"q1": 0}, {}, "roundrobin", why)
    assert out == {"q1": 0, "q2": 1, "q3": 0}
    assert "q1" not in why  # kept where it was
    assert why["q2"] == "roundrobin: the PMD with the fewest queues (0)"
    why = {}
    assign_rxqs(["q1", "q2"], [0, 1], {"q1": 0}, {"q1": 500, "q2": 100}, "cycles", why)
    assert why == {"q2": "cycles: the PMD with the least measured load (0 ns)"}
