"""The exact-match cache's insertion policy and bound."""

from __future__ import annotations

from ovsd.dpif.emc import Emc


def test_inv_prob_one_inserts_every_miss_and_zero_none():
    always, never = Emc(insert_inv_prob=1), Emc(insert_inv_prob=0)
    for k in range(100):
        always.maybe_insert(k, "flow")
        never.maybe_insert(k, "flow")
    assert len(always) == 100 and len(never) == 0


def test_inv_prob_100_inserts_about_one_miss_in_100():
    emc = Emc(size=1 << 20, insert_inv_prob=100)
    for k in range(200_000):
        emc.maybe_insert(k, "flow")
    # 2000 expected; the seed is fixed, the bound is ~6 standard deviations
    assert 1730 <= len(emc) <= 2270


def test_full_cache_drops_its_oldest_entry():
    emc = Emc(size=4, insert_inv_prob=1)
    for k in range(6):
        emc.maybe_insert(k, f"flow{k}")
    assert list(emc.entries) == [2, 3, 4, 5]
    emc.maybe_insert(3, "again")   # already there: nothing is evicted
    assert list(emc.entries) == [2, 3, 4, 5] and emc.entries[3] == "again"
