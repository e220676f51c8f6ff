"""The exact-match cache: flow key -> datapath flow, one dict probe.

Bounded (8192 entries by default, as OVS's EMC); when full, the oldest
entry makes room.  Insertion is probabilistic (1 in ``insert_inv_prob`` misses,
other_config:emc-insert-inv-prob, default 100 as in OVS) so that a flood of
short flows does not thrash the entries of the long ones; 1 inserts always,
0 disables the EMC.
"""

from __future__ import annotations

import random

DEFAULT_SIZE = 8192
DEFAULT_INSERT_INV_PROB = 100


class Emc:
    __slots__ = ("entries", "size", "insert_inv_prob", "_random")

    def __init__(self, size: int = DEFAULT_SIZE,
                 insert_inv_prob: int = DEFAULT_INSERT_INV_PROB):
        self.entries: dict = {}
        self.size = size
        self.insert_inv_prob = insert_inv_prob
        # random() is a C call; randrange() is Python code costing 3x as much,
        # paid on every miss.
        self._random = random.Random(0x0E3C).random

    def maybe_insert(self, key: int, flow) -> None:
        p = self.insert_inv_prob
        if p <= 0:
            return
        if p > 1 and self._random() * p >= 1.0:
            return
        entries = self.entries
        if len(entries) >= self.size and key not in entries:
            del entries[next(iter(entries))]
        entries[key] = flow

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)
