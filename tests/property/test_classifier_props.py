"""The classifier against a brute-force reference (a list scanned in priority
order), over random rule sets, random inserts/removes and random wide keys."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ovsd.ofproto.classifier import Classifier
from ovsd.packet import key as K

M = K.field_mask
_ids = count()


@dataclass(eq=False)
class R:
    value: int
    mask: int
    priority: int
    id: int

    def matches(self, key: int) -> bool:
        return key & self.mask == self.value


class Reference:
    """What the classifier must do, computed the slow and obvious way."""

    def __init__(self) -> None:
        self.rules: list[R] = []

    def insert(self, r: R) -> R | None:
        for i, old in enumerate(self.rules):
            if (old.value, old.mask, old.priority) == (r.value, r.mask, r.priority):
                self.rules[i] = r
                return old
        self.rules.append(r)
        return None

    def remove(self, r: R) -> None:
        self.rules = [x for x in self.rules if x is not r]

    def best_priority(self, key: int) -> int | None:
        for r in sorted(self.rules, key=lambda r: -r.priority):
            if r.matches(key):
                return r.priority
        return None

    def loose(self, value: int, mask: int) -> set[int]:
        return {r.id for r in self.rules if r.mask & mask == mask and r.value & mask == value}

    def exact(self, value: int, mask: int, priority: int) -> R | None:
        found = [r for r in self.rules
                 if (r.value, r.mask, r.priority) == (value, mask, priority)]
        assert len(found) <= 1
        return found[0] if found else None


# -- strategies ----------------------------------------------------------------

FIELD_MASKS = [M(n) for n in ("in_port", "metadata", "reg0", "reg3", "dl_dst", "dl_src",
                              "dl_type", "vlan_tci", "nw_src", "nw_dst", "nw_proto",
                              "nw_frag", "ipv6_src", "ipv6_dst", "tp_src", "tp_dst",
                              "tcp_flags", "arp_sha", "nd_target")]
NW_SRC = K.FIELDS["nw_src"]


def prefix_mask(plen: int) -> int:
    return (((1 << plen) - 1) << (32 - plen)) << NW_SRC.offset


field_combo = st.lists(st.sampled_from(FIELD_MASKS), min_size=1, max_size=4).map(
    lambda ms: sum(set(ms)))
sparse_bits = st.lists(st.integers(0, K.KEY_BITS - 1), min_size=1, max_size=8).map(
    lambda bits: sum({1 << b for b in bits}))
masks = st.one_of(
    st.just(0),
    field_combo,
    st.builds(lambda m, p: m | prefix_mask(p), field_combo, st.integers(1, 32)),
    sparse_bits,
    st.integers(0, K.ALL_MASK),  # dense arbitrary mask: hits only via shared pool bits
)
priorities = st.one_of(st.integers(0, 4), st.integers(0, 0xFFFF))
# A handful of wide keys; rule values and lookup keys are made by mixing their
# bits, so that partial matches (hit stage 1, miss stage 3) are common.
pools = st.lists(st.integers(0, K.ALL_MASK), min_size=2, max_size=4, unique=True).map(
    lambda p: [0] + p)


@st.composite
def mixed_key(draw, pool: list[int]) -> int:
    key = draw(st.sampled_from(pool))
    for _ in range(draw(st.integers(0, 3))):
        splice = draw(masks)
        key = (key & ~splice) | (draw(st.sampled_from(pool)) & splice)
    return key


# -- checks shared by the tests --------------------------------------------------

def check_lookup(cls: Classifier, ref: Reference, key: int, others: list[int]) -> None:
    got, wc = cls.lookup(key)
    best = ref.best_priority(key)
    # (1) the best priority, from a rule that really matches
    if best is None:
        assert got is None
    else:
        assert got is not None and got.matches(key) and got.priority == best
    # wc covers only masks of subtables a lookup may visit: those whose
    # highest priority is not below the answer's.
    top: dict[int, int] = {}
    for r in ref.rules:
        top[r.mask] = max(top.get(r.mask, -1), r.priority)
    allowed = 0
    for mask, pri in top.items():
        if best is None or pri >= best:
            allowed |= mask
    assert wc & ~allowed == 0
    if got is not None:
        assert got.mask & ~wc == 0
    # (2) any key agreeing under wc gets the same answer
    for other in others:
        k2 = (key & wc) | (other & ~wc)
        got2, _ = cls.lookup(k2)
        assert ref.best_priority(k2) == best
        if got is None:
            assert got2 is None
        else:
            assert got2 is not None
            assert (got2.priority, got2.value, got2.mask) == (got.priority, got.value, got.mask)


def check_finds(cls: Classifier, ref: Reference, value: int, mask: int, priority: int) -> None:
    value &= mask
    assert {r.id for r in cls.find_loose(value, mask)} == ref.loose(value, mask)
    assert cls.find_exact(value, mask, priority) is ref.exact(value, mask, priority)


# -- the state machine: random inserts, removes, lookups, finds -------------------

class ClassifierMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cls = Classifier()
        self.ref = Reference()
        self.pool: list[int] = [0]
        self.masks: list[int] = []

    @initialize(pool=pools)
    def set_pool(self, pool):
        self.pool = pool

    @rule(data=st.data(), mask=masks, priority=priorities)
    def insert(self, data, mask, priority):
        # Reuse a mask now and then so subtables hold several rules.
        if self.masks and data.draw(st.booleans()):
            mask = data.draw(st.sampled_from(self.masks))
        self.masks.append(mask)
        value = data.draw(mixed_key(self.pool)) & mask
        r = R(value, mask, priority, next(_ids))
        assert self.cls.insert(r) is self.ref.insert(r)

    @precondition(lambda self: self.ref.rules)
    @rule(data=st.data())
    def remove(self, data):
        r = data.draw(st.sampled_from(self.ref.rules))
        self.cls.remove(r)
        self.ref.remove(r)

    @rule(data=st.data())
    def lookup(self, data):
        key = data.draw(mixed_key(self.pool))
        others = [data.draw(mixed_key(self.pool)), data.draw(st.integers(0, K.ALL_MASK))]
        check_lookup(self.cls, self.ref, key, others)

    @precondition(lambda self: self.ref.rules)
    @rule(data=st.data())
    def lookup_near_a_rule(self, data):
        r = data.draw(st.sampled_from(self.ref.rules))
        noise = data.draw(mixed_key(self.pool))
        key = r.value | (noise & ~r.mask)
        check_lookup(self.cls, self.ref, key, [data.draw(mixed_key(self.pool))])

    @rule(data=st.data(), mask=masks, priority=priorities)
    def finds(self, data, mask, priority):
        if self.masks and data.draw(st.booleans()):
            mask = data.draw(st.sampled_from(self.masks))
        check_finds(self.cls, self.ref, data.draw(mixed_key(self.pool)), mask, priority)

    @invariant()
    def same_rules(self):
        assert len(self.cls) == len(self.ref.rules)
        assert self.cls.is_empty() == (not self.ref.rules)
        assert sorted(r.id for r in self.cls) == sorted(r.id for r in self.ref.rules)
        for r in self.ref.rules:
            assert self.cls.find_exact(r.value, r.mask, r.priority) is r


ClassifierMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestClassifierMachine = ClassifierMachine.TestCase


# -- larger rule sets built at once ------------------------------------------------

@st.composite
def rule_sets(draw):
    pool = draw(pools)
    mask_set = draw(st.lists(masks, min_size=1, max_size=12))
    rules = []
    for _ in range(draw(st.integers(0, 80))):
        mask = draw(st.sampled_from(mask_set))
        rules.append(R(draw(mixed_key(pool)) & mask, mask, draw(priorities), next(_ids)))
    return pool, rules


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rule_sets(), st.data())
def test_bulk_rule_sets(rs, data):
    pool, rules = rs
    cls, ref = Classifier(), Reference()
    for r in rules:
        assert cls.insert(r) is ref.insert(r)
    for _ in range(10):
        key = data.draw(mixed_key(pool))
        check_lookup(cls, ref, key, [data.draw(mixed_key(pool)) for _ in range(2)])
    for r in ref.rules:
        key = r.value | (data.draw(mixed_key(pool)) & ~r.mask)
        check_lookup(cls, ref, key, [data.draw(mixed_key(pool))])
        check_finds(cls, ref, r.value, r.mask, r.priority)
    # Remove half, then check again.
    for r in list(ref.rules)[::2]:
        cls.remove(r)
        ref.remove(r)
    for _ in range(5):
        key = data.draw(mixed_key(pool))
        check_lookup(cls, ref, key, [data.draw(mixed_key(pool))])
    assert len(cls) == len(ref.rules)
