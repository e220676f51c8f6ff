"""The megaflow cache (OVS's dpcls): one hash table per distinct wildcard mask.

A lookup probes subtables in order of how many hits they took, so the busy
masks come first; ``rerank`` re-sorts them (the owner calls it about once a
second, as OVS re-sorts its subtables by hit counts).  Megaflows come
from one consistent set of OpenFlow tables, so any matching one is right;
the first found wins.
"""

from __future__ import annotations

from ovsd.dpif.flow import DpFlow


class _Subtable:
    __slots__ = ("mask", "flows", "hits")

    def __init__(self, mask: int):
        self.mask = mask
        self.flows: dict[int, DpFlow] = {}
        self.hits = 0


class MegaflowCache:
    def __init__(self):
        self._by_mask: dict[int, _Subtable] = {}
        # Probe order; the datapath walks this list itself (see Datapath).
        self.order: list[_Subtable] = []
        self.n_flows = 0
        self.subtable_probes = 0  # for pmd-stats-show's "avg. subtable lookups per hit"

    def lookup(self, key: int) -> DpFlow | None:
        probes = 0
        for st in self.order:
            probes += 1
            flow = st.flows.get(key & st.mask)
            if flow is not None:
                st.hits += 1
                self.subtable_probes += probes
                return flow
        return None

    def insert(self, flow: DpFlow) -> DpFlow:
        """Add ``flow``; if an equal megaflow exists (two misses raced), keep that one."""
        st = self._by_mask.get(flow.mask)
        if st is None:
            st = _Subtable(flow.mask)
            self._by_mask[flow.mask] = st
            self.order.append(st)
        existing = st.flows.get(flow.key)
        if existing is not None:
            return existing
        st.flows[flow.key] = flow
        self.n_flows += 1
        return flow

    def remove(self, flow: DpFlow) -> None:
        st = self._by_mask.get(flow.mask)
        if st is None or st.flows.get(flow.key) is not flow:
            return
        del st.flows[flow.key]
        flow.dead = True
        self.n_flows -= 1
        if not st.flows:
            del self._by_mask[flow.mask]
            self.order.remove(st)

    def flows(self) -> list[DpFlow]:
        return [f for st in self.order for f in st.flows.values()]

    def clear(self) -> None:
        for st in self.order:
            for f in st.flows.values():
                f.dead = True
        self._by_mask.clear()
        self.order.clear()
        self.n_flows = 0

    @property
    def n_subtables(self) -> int:
        return len(self.order)

    def rerank(self) -> None:
        """Busiest subtables first; called about once a second, as OVS does."""
        self.order.sort(key=lambda st: -st.hits)
        for st in self.order:
            st.hits >>= 1  # decay, so the order follows recent traffic
