"""The datapath's packet walk against a reference model: whatever path a
burst takes (simple match, the whole-burst forwarding of the one-subtable
walk with its deferred counters, the EMC walk, upcalls), every frame goes out
of the port its flow names, and every megaflow's packets and bytes are
exactly what was sent through it once its counters are read."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsd.dpif import drops as D
from ovsd.dpif.datapath import Datapath, Upcall
from ovsd.dpif.odp_actions import output
from ovsd.packet import key as K
from tests.support.datapath import Sink, udp_frame

_F = K.FIELDS
BASE_MASK = _F["in_port"].mask | _F["dl_type"].mask | _F["nw_frag"].mask | _F["nw_proto"].mask
TP_SRC = _F["tp_src"]
NW_SRC = _F["nw_src"]


def destination(sport: int, routes: tuple) -> int:
    """The port a source port's packets go to (0: dropped)."""
    return routes[sport % len(routes)]


class Rules:
    """The slow path: the output follows tp_src; the megaflow keeps tp_src
    and, when ``two_masks``, the low bit of nw_src, and all of nw_src for the
    sources that have it set (a second subtable), as a classifier whose
    rules look at nw_src only for those sources would."""

    def __init__(self, routes: tuple, two_masks: bool):
        self.routes = routes
        self.two_masks = two_masks
        self.upcalls = 0

    def __call__(self, key: int, frame) -> Upcall:
        self.upcalls += 1
        mask = BASE_MASK | TP_SRC.mask
        if self.two_masks:
            low = 1 << NW_SRC.offset
            mask |= NW_SRC.mask if key & low else low
        port = destination((key >> TP_SRC.offset) & 0xFFFF, self.routes)
        if port == 0:
            return Upcall((), mask, drop_reason=D.DROP_ACTION)
        return Upcall((output(port),), mask)


traffic = st.lists(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 11), st.sampled_from([0, 0, 0, 40])),
             min_size=1, max_size=40),
    min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(bursts=traffic,
       routes=st.sampled_from([(2,), (2, 3), (2, 2, 3), (3, 0), (2, 0, 3)]),
       two_masks=st.booleans(), emc_prob=st.sampled_from([0, 1, 100]))
def test_outputs_and_counters_match_the_reference(bursts, routes, two_masks, emc_prob):
    rules = Rules(routes, two_masks)
    dp = Datapath(rules)
    dp.emc.insert_inv_prob = emc_prob
    sinks = {n: Sink() for n in (1, 2, 3)}
    for n, sink in sinks.items():
        dp.add_port(f"p{n}", sink, n)
    expect_out: dict[int, Counter] = {2: Counter(), 3: Counter()}
    expect_flow: Counter = Counter()  # (src or None, sport) -> [packets, bytes]
    expect_bytes: Counter = Counter()
    for burst in bursts:
        frames = []
        for src_low, sport, pad in burst:
            frame = udp_frame(1000 + sport, 0x0A000000 | src_low, pad)
            frames.append(frame)
            port = destination(1000 + sport, routes)
            if port:
                expect_out[port][frame] += 1
            flow_id = (src_low if two_masks and src_low & 1 else None, 1000 + sport)
            expect_flow[flow_id] += 1
            expect_bytes[flow_id] += len(frame)
        given_list = list(frames)
        dp.process(1, frames)
        assert frames == given_list, "the caller's list was changed"
    for port in (2, 3):
        assert Counter(sinks[port].sent) == expect_out[port]
    assert not sinks[1].sent
    got_flow: Counter = Counter()
    got_bytes: Counter = Counter()
    for flow in dp.flows():
        sport = (flow.key >> TP_SRC.offset) & 0xFFFF
        src = ((flow.key >> NW_SRC.offset) & 0xFF
               if flow.mask & NW_SRC.mask == NW_SRC.mask else None)
        got_flow[(src, sport)] += flow.n_packets
        got_bytes[(src, sport)] += flow.n_bytes
        assert flow.used > 0
    assert got_flow == expect_flow
    assert got_bytes == expect_bytes
    total = sum(len(b) for b in bursts)
    s = dp.stats
    assert s.n_packets == total
    assert s.n_simple_hit + s.n_emc_hit + s.n_megaflow_hit + s.n_upcalls == total
    assert s.n_upcalls == rules.upcalls
