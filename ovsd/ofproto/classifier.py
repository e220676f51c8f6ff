"""The OpenFlow classifier: one per flow table, tuple space search.

Rules are grouped into *subtables*, one per distinct mask.  Within a subtable
every rule's match is an exact match on ``key & mask``, so finding the rules a
key hits is one ``&`` and one dict get.  A lookup therefore costs one probe per
subtable visited, whatever the number of rules: it grows with the number of
distinct masks, not of rules.

Subtables are visited in order of the highest priority they hold, and the walk
stops as soon as the next subtable cannot beat the best match found so far.

Besides the rule, a lookup reports the mask of key bits its answer depended
on (the *wildcards* the datapath turns into a megaflow).  Every subtable
visited contributes the bits it looked at; subtables the walk never reached
contribute nothing.  To keep that mask narrow, a subtable is probed in
*stages*, as Open vSwitch does: pipeline metadata first, then L2, L3, and
finally the whole mask.  Each stage but the last keeps the set of its rules'
values masked up to that stage, so a key that already misses at, say, the
metadata stage unwildcards only the metadata bits of that subtable, not its
L3/L4 fields.

The classifier knows nothing of fields beyond those stage boundaries: a rule
is any object with int attributes ``value`` (already masked), ``mask`` and
``priority`` (0..65535), which must not change while the rule is inserted.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterator, Protocol

from ovsd.packet import key as K

__all__ = ["Classifier", "ClassifierRule", "STAGE_MASKS", "STAGE_NAMES", "MAX_PRIORITY"]

MAX_PRIORITY = 0xFFFF


class ClassifierRule(Protocol):
    value: int
    mask: int
    priority: int


# Stage boundaries follow OVS 3.1's flow segments: in_port is pipeline
# metadata there (it sits before dl_dst in struct flow), and ND/ARP link-layer
# addresses share the last segment with the transport ports.
def _stage_of(name: str) -> int:
    if name in ("metadata", "in_port") or name.startswith(("reg", "xreg", "xxreg")):
        return 0
    if name.startswith(("dl_", "vlan_")):
        return 1
    if name.startswith(("nw_", "ipv6_")):
        return 2
    # tp_*, tcp_flags, arp_sha/arp_tha, nd_target, and any field added later:
    # the final stage is always sound, merely less selective.
    return 3


def _stage_masks() -> tuple[int, ...]:
    masks = [0, 0, 0]
    for f in K.FIELDS.values():
        stage = _stage_of(f.name)
        if stage < 3:
            masks[stage] |= f.mask
    return tuple(masks)


STAGE_NAMES = ("metadata", "l2", "l3", "l4")
# Masks of the stages checked before the final one; the final stage is every
# other bit (L4 fields, key bits that belong to no field).
STAGE_MASKS: tuple[int, ...] = _stage_masks()


class _Subtable:
    """The rules sharing one mask."""

    __slots__ = ("mask", "rules", "stages", "priorities", "max_priority", "entry")

    def __init__(self, mask: int) -> None:
        self.mask = mask
        # masked value -> rules with that match, priority descending
        self.rules: dict[int, list] = {}
        # (mask of the stages up to this one, {value under it: #chains}) for
        # each stage that adds bits, except the one that completes the mask:
        # that check is the rules dict itself.
        stages = []
        covered = 0
        prev = 0
        for stage_mask in STAGE_MASKS:
            covered |= stage_mask
            part = mask & covered
            if part != prev and part != mask:
                stages.append((part, {}))
                prev = part
        self.stages: tuple[tuple[int, dict[int, int]], ...] = tuple(stages)
        self.priorities: dict[int, int] = {}  # priority -> number of rules
        self.max_priority = -1
        # The tuple this subtable occupies in Classifier._order.
        self.entry: tuple | None = None


def _check_match(value: object, mask: object, what: str) -> None:
    if not isinstance(value, int) or not isinstance(mask, int):
        raise TypeError(f"{what}: value and mask must be ints (flow-key space), "
                        f"got {type(value).__name__} and {type(mask).__name__}")
    if mask < 0 or value < 0:
        raise ValueError(f"{what}: value and mask must be non-negative ints, "
                         f"got value={value:#x} mask={mask:#x}")
    if value & ~mask:
        raise ValueError(f"{what}: value has bits outside its mask ({value & ~mask:#x}); "
                         "the value must be masked (value & mask == value)")


def _check_priority(priority: object, what: str) -> None:
    if not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"{what}: priority must be an int in 0..{MAX_PRIORITY}, "
                         f"got {priority!r}")


class Classifier:
    """The rules of one flow table; see the module docstring."""

    __slots__ = ("_subtables", "_order", "_order_keys", "_n_rules")

    def __init__(self) -> None:
        self._subtables: dict[int, _Subtable] = {}
        # Subtables by descending max priority, as (max_priority, mask, rules,
        # stages) tuples so that lookup unpacks locals instead of reading
        # attributes.  _order_keys holds -max_priority, parallel, for bisect.
        self._order: list[tuple] = []
        self._order_keys: list[int] = []
        self._n_rules = 0

    # -- lookup (the hot path) ---------------------------------------------

    def lookup(self, key: int) -> tuple[ClassifierRule | None, int]:
        """The highest-priority rule matching ``key`` (or None), and the mask
        of the key bits that answer depended on: any key equal to ``key``
        under that mask gets the same rule."""
        best = None
        best_pri = -1
        wc = 0
        for pri, mask, rules, stages in self._order:
            if pri <= best_pri:
                break
            for stage_mask, seen in stages:
                if (key & stage_mask) not in seen:
                    wc |= stage_mask
                    break
            else:
                wc |= mask
                chain = rules.get(key & mask)
                if chain is not None:
                    rule = chain[0]
                    if rule.priority > best_pri:
                        best = rule
                        best_pri = rule.priority
        return best, wc

    # -- changes -------------------------------------------------------------

    def insert(self, rule: ClassifierRule) -> ClassifierRule | None:
        """Add ``rule``.  A rule with the same match and priority is replaced
        and returned (flow_mod "add"); otherwise returns None."""
        value, mask, priority = rule.value, rule.mask, rule.priority
        _check_match(value, mask, "insert")
        _check_priority(priority, "insert")
        st = self._subtables.get(mask)
        if st is None:
            st = self._subtables[mask] = _Subtable(mask)
        chain = st.rules.get(value)
        if chain is None:
            st.rules[value] = [rule]
            for stage_mask, seen in st.stages:
                v = value & stage_mask
                seen[v] = seen.get(v, 0) + 1
        else:
            for i, other in enumerate(chain):
                if other.priority == priority:
                    chain[i] = rule
                    return other
                if other.priority < priority:
                    chain.insert(i, rule)
                    break
            else:
                chain.append(rule)
        st.priorities[priority] = st.priorities.get(priority, 0) + 1
        self._n_rules += 1
        if priority > st.max_priority:
            if st.entry is not None:
                self._unplace(st)
            st.max_priority = priority
            self._place(st)
        return None

    def remove(self, rule: ClassifierRule) -> None:
        """Remove ``rule`` (this very object); KeyError if it is not here."""
        value, mask, priority = rule.value, rule.mask, rule.priority
        st = self._subtables.get(mask)
        chain = st.rules.get(value) if st is not None else None
        i = -1
        if chain is not None:
            for j, other in enumerate(chain):
                if other is rule:
                    i = j
                    break
        if i < 0:
            same = chain is not None and any(r.priority == priority for r in chain)
            hint = ("; a different rule object with the same match and priority is "
                    "present (remove takes the inserted object)" if same else "")
            raise KeyError(f"remove: rule with priority={priority} value={value:#x} "
                           f"mask={mask:#x} is not in this classifier{hint}")
        del chain[i]
        if not chain:
            del st.rules[value]
            for stage_mask, seen in st.stages:
                v = value & stage_mask
                n = seen[v] - 1
                if n:
                    seen[v] = n
                else:
                    del seen[v]
        self._n_rules -= 1
        n = st.priorities[priority] - 1
        if n:
            st.priorities[priority] = n
            return
        del st.priorities[priority]
        if priority != st.max_priority:
            return
        self._unplace(st)
        if st.priorities:
            st.max_priority = max(st.priorities)
            self._place(st)
        else:
            del self._subtables[mask]

    def _place(self, st: _Subtable) -> None:
        # After the subtables of equal priority: the order, and so which of
        # equal-priority overlapping rules wins, depends only on history.
        entry = (st.max_priority, st.mask, st.rules, st.stages)
        i = bisect_right(self._order_keys, -st.max_priority)
        self._order.insert(i, entry)
        self._order_keys.insert(i, -st.max_priority)
        st.entry = entry

    def _unplace(self, st: _Subtable) -> None:
        i = bisect_left(self._order_keys, -st.max_priority)
        while self._order[i] is not st.entry:
            i += 1
        del self._order[i]
        del self._order_keys[i]
        st.entry = None

    # -- queries for flow_mod and dumps ----------------------------------------

    def find_exact(self, value: int, mask: int, priority: int) -> ClassifierRule | None:
        """The rule with exactly this match and priority (strict flow_mod)."""
        _check_match(value, mask, "find_exact")
        st = self._subtables.get(mask)
        if st is None:
            return None
        for rule in st.rules.get(value, ()):
            if rule.priority == priority:
                return rule
        return None

    def find_loose(self, value: int, mask: int) -> Iterator[ClassifierRule]:
        """Rules whose match is ``value``/``mask`` or more specific
        (non-strict flow_mod).  Safe to remove them while iterating."""
        _check_match(value, mask, "find_loose")
        found: list = []
        for _, st_mask, rules, _ in self._order:
            if st_mask & mask != mask:
                continue
            if st_mask == mask:
                found.extend(rules.get(value, ()))
                continue
            for v, chain in rules.items():
                if v & mask == value:
                    found.extend(chain)
        return iter(found)

    def __len__(self) -> int:
        return self._n_rules

    def __iter__(self) -> Iterator[ClassifierRule]:
        """Every rule (a snapshot: removing rules while iterating is safe)."""
        return iter([rule for entry in self._order
                     for chain in entry[2].values() for rule in chain])

    def is_empty(self) -> bool:
        return self._n_rules == 0

    @property
    def n_subtables(self) -> int:
        """Distinct masks in use: what a lookup's cost grows with."""
        return len(self._order)

    def __repr__(self) -> str:
        return f"<Classifier {self._n_rules} rules in {len(self._order)} subtables>"
