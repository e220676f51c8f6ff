import pytest

from ovsd.dpif.rxq_sched import assign_rxqs


def test_new_queues_spread_round_robin():
    got = assign_rxqs(["a0", "a1", "b0", "b1"], [0, 1], {}, {})
    assert sorted(got.values()) == [0, 0, 1, 1]


def test_existing_assignment_is_kept():
    got = assign_rxqs(["a0", "b0", "c0"], [0, 1], {"a0": 1, "b0": 1}, {})
    assert got["a0"] == 1 and got["b0"] == 1 and got["c0"] == 0


def test_queues_of_a_gone_pmd_move_to_the_others():
    got = assign_rxqs(["a0", "b0"], [1], {"a0": 0, "b0": 1}, {})
    assert got == {"a0": 1, "b0": 1}


def test_cycles_mode_balances_by_load():
    loads = {"a0": 90, "b0": 10, "c0": 10, "d0": 10}
    got = assign_rxqs(["a0", "b0", "c0", "d0"], [0, 1], {}, loads, "cycles")
    assert got["a0"] != got["b0"] and got["b0"] == got["c0"] == got["d0"]


def test_no_pmds_no_assignment_and_bad_mode():
    assert assign_rxqs(["a0"], [], {}, {}) == {}
    with pytest.raises(ValueError, match="pmd-rxq-assign"):
        assign_rxqs(["a0"], [0], {}, {}, "random")
