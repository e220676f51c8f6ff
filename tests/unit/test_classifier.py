"""The OpenFlow classifier: insert/replace/remove, strict and loose finds, and
lookups with the wildcard mask a megaflow is built from."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from ovsd.ofproto.classifier import STAGE_MASKS, STAGE_NAMES, Classifier
from ovsd.ofproto.rule import Rule
from ovsd.packet import key as K

M = K.field_mask


@dataclass(eq=False)
class R:
    value: int
    mask: int
    priority: int
    name: str = ""


def rule(priority: int, name: str = "", **fields: int) -> R:
    """A rule matching ``fields`` exactly."""
    mask = 0
    for f in fields:
        mask |= M(f)
    return R(K.make(**fields), mask, priority, name)


IP = 0x0800
PKT = K.make(in_port=1, dl_type=IP, dl_src=0x0A0000000001, dl_dst=0x0A0000000002,
             nw_proto=6, nw_src=0x0A000001, nw_dst=0x0A000002, tp_src=1234, tp_dst=80)


# -- empty -------------------------------------------------------------------

def test_empty_classifier():
    cls = Classifier()
    assert len(cls) == 0 and cls.is_empty() and list(cls) == []
    assert cls.lookup(PKT) == (None, 0)
    assert cls.find_exact(0, 0, 0) is None
    assert list(cls.find_loose(0, 0)) == []
    assert cls.n_subtables == 0


# -- insert / replace / remove -----------------------------------------------

def test_insert_then_lookup_and_wildcards():
    cls = Classifier()
    r = rule(10, in_port=1, dl_type=IP)
    assert cls.insert(r) is None
    assert len(cls) == 1 and not cls.is_empty()
    got, wc = cls.lookup(PKT)
    assert got is r
    assert wc == M("in_port") | M("dl_type")


def test_catchall_matches_everything_and_depends_on_nothing():
    cls = Classifier()
    r = R(0, 0, 0)
    cls.insert(r)
    assert cls.lookup(PKT) == (r, 0)
    assert cls.lookup(0) == (r, 0)


def test_same_match_and_priority_replaces():
    cls = Classifier()
    old = rule(10, "old", in_port=1)
    new = rule(10, "new", in_port=1)
    cls.insert(old)
    assert cls.insert(new) is old
    assert len(cls) == 1 and list(cls) == [new]
    assert cls.lookup(PKT)[0] is new
    with pytest.raises(KeyError, match="different rule object"):
        cls.remove(old)
    cls.remove(new)
    assert cls.is_empty() and cls.n_subtables == 0


def test_same_match_other_priorities_coexist():
    cls = Classifier()
    rules = [rule(p, in_port=1) for p in (5, 50, 20)]
    for r in rules:
        assert cls.insert(r) is None
    assert len(cls) == 3 and cls.n_subtables == 1
    assert cls.lookup(PKT)[0].priority == 50
    cls.remove(rules[1])
    assert cls.lookup(PKT)[0].priority == 20
    cls.remove(rules[2])
    assert cls.lookup(PKT)[0].priority == 5


def test_remove_absent_rule_raises_key_error():
    cls = Classifier()
    r = rule(1, in_port=1)
    with pytest.raises(KeyError, match="not in this classifier"):
        cls.remove(r)
    cls.insert(r)
    cls.remove(r)
    with pytest.raises(KeyError, match="priority=1"):
        cls.remove(r)


def test_removing_last_rule_of_a_subtable_drops_it():
    cls = Classifier()
    a, b = rule(1, in_port=1), rule(2, dl_type=IP)
    cls.insert(a)
    cls.insert(b)
    assert cls.n_subtables == 2
    cls.remove(b)
    assert cls.n_subtables == 1
    assert cls.lookup(PKT) == (a, M("in_port"))


def test_remove_lowers_subtable_priority_so_others_go_first():
    cls = Classifier()
    hi = rule(100, in_port=1)
    lo = rule(1, in_port=2)
    other = rule(50, dl_type=IP)
    for r in (hi, lo, other):
        cls.insert(r)
    assert cls.lookup(PKT)[0] is hi
    cls.remove(hi)
    # in_port's subtable now tops out at 1: the dl_type subtable wins first
    # and the lookup never needs in_port.
    assert cls.lookup(PKT) == (other, M("dl_type"))


def test_iteration_is_a_snapshot():
    cls = Classifier()
    rules = [rule(p, in_port=p) for p in range(1, 6)]
    for r in rules:
        cls.insert(r)
    for r in cls:
        cls.remove(r)
    assert cls.is_empty()


# -- validation ----------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (R(0b11, 0b01, 1), "outside its mask"),
    (R(-1, 0b01, 1), "non-negative"),
    (R(0, 0, -1), "priority must be an int in 0..65535"),
    (R(0, 0, 65536), "priority must be an int in 0..65535"),
])
def test_insert_rejects_bad_rules(bad, message):
    cls = Classifier()
    with pytest.raises(ValueError, match=message):
        cls.insert(bad)
    assert cls.is_empty() and cls.n_subtables == 0


def test_insert_rejects_non_int_match():
    with pytest.raises(TypeError, match="must be ints"):
        Classifier().insert(R("1", 1, 1))  # type: ignore[arg-type]


def test_find_rejects_unmasked_value():
    with pytest.raises(ValueError, match="outside its mask"):
        Classifier().find_exact(0b10, 0b01, 0)
    with pytest.raises(ValueError, match="outside its mask"):
        Classifier().find_loose(0b10, 0b01)


# -- strict and loose finds ----------------------------------------------------

def test_find_exact():
    cls = Classifier()
    r = rule(10, in_port=1, dl_type=IP)
    cls.insert(r)
    mask = M("in_port") | M("dl_type")
    value = K.make(in_port=1, dl_type=IP)
    assert cls.find_exact(value, mask, 10) is r
    assert cls.find_exact(value, mask, 11) is None
    assert cls.find_exact(value & M("in_port"), M("in_port"), 10) is None
    assert cls.find_exact(K.make(in_port=2, dl_type=IP), mask, 10) is None


def test_find_loose_returns_same_or_more_specific():
    cls = Classifier()
    port1 = rule(1, in_port=1)
    port1_ip = rule(2, in_port=1, dl_type=IP)
    port1_ip_hi = rule(3, in_port=1, dl_type=IP)
    port2_ip = rule(4, in_port=2, dl_type=IP)
    ip_only = rule(5, dl_type=IP)
    catchall = R(0, 0, 6)
    everything = [port1, port1_ip, port1_ip_hi, port2_ip, ip_only, catchall]
    for r in everything:
        cls.insert(r)

    def loose(**fields):
        mask = 0
        for f in fields:
            mask |= M(f)
        return {id(r) for r in cls.find_loose(K.make(**fields), mask)}

    assert {id(r) for r in cls.find_loose(0, 0)} == {id(r) for r in everything}
    assert loose(in_port=1) == {id(port1), id(port1_ip), id(port1_ip_hi)}
    assert loose(dl_type=IP) == {id(port1_ip), id(port1_ip_hi), id(port2_ip), id(ip_only)}
    assert loose(in_port=1, dl_type=IP) == {id(port1_ip), id(port1_ip_hi)}
    assert loose(in_port=3) == set()
    assert loose(tp_dst=80) == set()


def test_find_loose_allows_removal_while_iterating():
    cls = Classifier()
    for p in range(5):
        cls.insert(rule(p, in_port=1, dl_type=IP))
    for r in cls.find_loose(K.make(in_port=1), M("in_port")):
        cls.remove(r)
    assert cls.is_empty()


# -- priorities and early termination ------------------------------------------

def test_highest_priority_wins_across_subtables():
    cls = Classifier()
    low = rule(1, in_port=1)
    high = rule(200, tp_dst=80)
    mid = rule(100, nw_src=0x0A000001)
    for r in (low, high, mid):
        cls.insert(r)
    assert cls.lookup(PKT)[0] is high
    assert cls.lookup(K.put(PKT, "tp_dst", 22))[0] is mid
    assert cls.lookup(K.make(in_port=1))[0] is low
    assert cls.lookup(K.make(in_port=9))[0] is None


def test_subtables_below_the_match_are_never_visited():
    cls = Classifier()
    cls.insert(rule(100, in_port=1))
    cls.insert(rule(50, tp_dst=80))
    cls.insert(rule(10, nw_src=0x0A000001))
    got, wc = cls.lookup(PKT)
    assert got.priority == 100
    assert wc == M("in_port")
    # Missing the top subtable visits the next one, and stops there.
    got, wc = cls.lookup(K.put(PKT, "in_port", 2))
    assert got.priority == 50
    assert wc == M("in_port") | M("tp_dst")


def test_lower_priority_rule_in_a_visited_subtable_still_counts_in_wildcards():
    cls = Classifier()
    cls.insert(rule(100, "hi", in_port=7))
    cls.insert(rule(1, "lo", in_port=1))
    cls.insert(rule(50, "ip", dl_type=IP))
    got, wc = cls.lookup(PKT)
    assert got.name == "ip"
    assert wc == M("in_port") | M("dl_type")


def test_equal_priority_overlap_is_deterministic():
    cls = Classifier()
    a = rule(10, in_port=1)
    b = rule(10, dl_type=IP)
    cls.insert(a)
    cls.insert(b)
    first = cls.lookup(PKT)
    assert first[0] in (a, b)
    assert all(cls.lookup(PKT) == first for _ in range(5))
    # The second subtable cannot beat an equal priority: not visited.
    assert first[1] == first[0].mask


# -- staged lookup -------------------------------------------------------------

def test_stage_masks_follow_flow_segments():
    assert STAGE_NAMES == ("metadata", "l2", "l3", "l4")
    meta, l2, l3 = STAGE_MASKS
    assert not (meta & l2) and not (meta & l3) and not (l2 & l3)
    for name in ("in_port", "metadata", "reg0", "reg15", "xreg3", "xxreg0"):
        assert M(name) & meta == M(name), name
    for name in ("dl_dst", "dl_src", "dl_type", "vlan_tci"):
        assert M(name) & l2 == M(name), name
    for name in ("nw_src", "nw_dst", "nw_proto", "nw_tos", "nw_ttl", "nw_frag",
                 "ipv6_src", "ipv6_dst", "ipv6_label"):
        assert M(name) & l3 == M(name), name
    for name in ("tp_src", "tp_dst", "tcp_flags", "arp_sha", "arp_tha", "nd_target"):
        assert not M(name) & (meta | l2 | l3), name


def test_miss_in_an_early_stage_unwildcards_only_that_far():
    cls = Classifier()
    r = rule(10, in_port=1, dl_type=IP, nw_src=0x0A000001, tp_dst=80)
    cls.insert(r)
    meta, l2, l3 = M("in_port"), M("dl_type"), M("nw_src")
    # Wrong in_port: the metadata stage decides alone.
    assert cls.lookup(K.put(PKT, "in_port", 2)) == (None, meta)
    assert cls.lookup(K.put(PKT, "dl_type", 0x86DD)) == (None, meta | l2)
    assert cls.lookup(K.put(PKT, "nw_src", 9)) == (None, meta | l2 | l3)
    # The final stage is the whole mask, hit or miss.
    assert cls.lookup(K.put(PKT, "tp_dst", 22)) == (None, r.mask)
    assert cls.lookup(PKT) == (r, r.mask)


def test_registers_are_checked_with_metadata():
    cls = Classifier()
    r = rule(10, reg0=5, tp_dst=80)
    cls.insert(r)
    assert cls.lookup(K.put(PKT, "reg0", 6)) == (None, M("reg0"))
    assert cls.lookup(K.put(PKT, "reg0", 5)) == (r, r.mask)


def test_stages_index_all_rules_of_a_subtable():
    cls = Classifier()
    a = rule(10, in_port=1, tp_dst=80)
    b = rule(10, in_port=2, tp_dst=443)
    cls.insert(a)
    cls.insert(b)
    mask = a.mask
    assert cls.lookup(K.put(PKT, "in_port", 2)) == (None, mask)  # port 2 passes stage 1
    assert cls.lookup(K.put(PKT, "in_port", 3)) == (None, M("in_port"))
    assert cls.lookup(K.put(K.put(PKT, "in_port", 2), "tp_dst", 443)) == (b, mask)
    cls.remove(b)
    assert cls.lookup(K.put(PKT, "in_port", 2)) == (None, M("in_port"))
    cls.remove(a)
    cls.insert(a)
    assert cls.lookup(PKT) == (a, mask)


def test_stage_entries_are_shared_by_rules_with_the_same_stage_value():
    cls = Classifier()
    a = rule(10, in_port=1, tp_dst=80)
    a_lo = rule(5, in_port=1, tp_dst=80)
    c = rule(10, in_port=1, tp_dst=22)
    for r in (a, a_lo, c):
        cls.insert(r)
    for r in (a, c):
        cls.remove(r)
    # a_lo still holds in_port=1 in the metadata stage.
    assert cls.lookup(PKT) == (a_lo, a.mask)
    assert cls.lookup(K.put(PKT, "tp_dst", 22)) == (None, a.mask)


def test_arbitrary_bit_masks_beyond_named_fields():
    cls = Classifier()
    top = 1 << (K.KEY_BITS + 10)  # not a key bit at all: lands in the final stage
    r = R(top | M("in_port") & K.make(in_port=1), top | M("in_port"), 3)
    cls.insert(r)
    assert cls.lookup(PKT) == (None, r.mask)
    assert cls.lookup(PKT | top) == (r, r.mask)
    assert cls.lookup(K.put(PKT, "in_port", 4)) == (None, M("in_port"))


# -- many masks ------------------------------------------------------------------

def test_many_masks():
    cls = Classifier()
    rules = []
    # One subtable per nw_src prefix length, the longest prefix highest.
    addr = 0x0A01020F
    for plen in range(33):
        pmask = ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1)
        mask = M("dl_type") | (pmask << K.FIELDS["nw_src"].offset)
        r = R(K.make(dl_type=IP, nw_src=addr & pmask), mask, plen)
        rules.append(r)
        cls.insert(r)
    assert cls.n_subtables == 33 and len(cls) == 33
    key = K.make(dl_type=IP, nw_src=addr)
    assert cls.lookup(key)[0] is rules[32]
    for plen in range(32, 0, -1):
        # Differ in the last bit of a /plen prefix: the /plen-1 rule wins.
        other = K.put(key, "nw_src", addr ^ (1 << (32 - plen)))
        got, wc = cls.lookup(other)
        assert got.priority == plen - 1, plen
    for r in rules:
        cls.remove(r)
    assert cls.is_empty() and cls.n_subtables == 0


def test_many_single_bit_masks_in_random_order():
    import random

    rnd = random.Random(7)
    cls = Classifier()
    rules = [R(1 << bit, 1 << bit, bit % 100) for bit in rnd.sample(range(K.KEY_BITS), 300)]
    for r in rules:
        cls.insert(r)
    assert cls.n_subtables == 300
    for _ in range(50):
        key = rnd.getrandbits(K.KEY_BITS)
        got, wc = cls.lookup(key)
        hits = [r for r in rules if key & r.mask == r.value]
        if not hits:
            assert got is None
        else:
            assert got.priority == max(r.priority for r in hits)
            assert key & got.mask == got.value


# -- with ofproto's Rule -----------------------------------------------------

def test_works_with_ofproto_rules():
    cls = Classifier()
    mask = M("in_port") | M("dl_type")
    match = SimpleNamespace(value=K.make(in_port=1, dl_type=IP), mask=mask)
    r = Rule(table_id=0, priority=100, match=match, actions=())
    cls.insert(r)
    assert cls.lookup(PKT) == (r, mask)
    assert cls.find_exact(match.value, mask, 100) is r
    assert list(cls.find_loose(0, 0)) == [r]
    cls.remove(r)
    assert cls.is_empty()
