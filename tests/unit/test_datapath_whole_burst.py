"""A burst whose frames all go to one port by flows that do nothing else
is forwarded as one list, and its packets are counted per flow only when
something reads flow counters (Datapath._count_whole and _fold): expiry,
flush (crediting the OpenFlow rules) and captures must not notice."""

from __future__ import annotations

from ovsd.dpif.datapath import FOLD_INTERVAL, Datapath, Upcall
from ovsd.dpif.odp_actions import output
from ovsd.packet import key as K
from tests.support.datapath import Sink, udp_frame

MASK = (K.FIELDS["in_port"].mask | K.FIELDS["dl_type"].mask | K.FIELDS["nw_proto"].mask
        | K.FIELDS["nw_frag"].mask | K.FIELDS["tp_src"].mask)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def switch(**kw):
    clock = Clock()
    dp = Datapath(lambda key, frame: Upcall((output(2),), MASK), clock=clock, **kw)
    sink = Sink()
    dp.add_port("p1", Sink(), 1)
    dp.add_port("p2", sink, 2)
    return dp, sink, clock


def by_sport(flows) -> dict[int, tuple[int, int]]:
    shift = K.FIELDS["tp_src"].offset
    return {(f.key >> shift) & 0xFFFF: (f.n_packets, f.n_bytes) for f in flows}


def test_a_burst_of_many_flows_to_one_port_leaves_as_one_list():
    dp, sink, _ = switch()
    frames = [udp_frame(1000 + i % 50) for i in range(256)]
    dp.process(1, frames)          # upcalls: 50 megaflows in one subtable
    sink.bursts.clear()
    dp.stats.clear()
    dp.process(1, frames)
    assert sink.bursts == [frames]
    assert dp.stats.n_megaflow_hit == 256
    counts = by_sport(dp.flows())
    assert counts[1000] == (2 * 6, 2 * 6 * len(frames[0]))  # 256 = 5 * 50 + 6
    assert counts[1049] == (2 * 5, 2 * 5 * len(frames[0]))


def test_frames_of_mixed_lengths_are_counted_by_their_own_length():
    dp, _, _ = switch()
    frames = [udp_frame(1000 + i % 3, pad=i % 4) for i in range(12)]
    dp.process(1, frames)
    dp.process(1, frames)
    want: dict[int, list[int]] = {}
    for f in frames + frames:
        got = want.setdefault(1000 + frames.index(f) % 3, [0, 0])
        got[0] += 1
        got[1] += len(f)
    assert by_sport(dp.flows()) == {k: tuple(v) for k, v in want.items()}


def test_expiry_sees_use_that_was_not_yet_added_to_the_flows():
    dp, _, clock = switch()
    frames = [udp_frame(1000 + i) for i in range(8)]
    dp.process(1, frames)          # created at 100
    dp.process(1, frames)          # counted at once: the first count in a while
    clock.now = 100.0 + FOLD_INTERVAL * 0.9
    dp.process(1, frames)          # counted in the burst counter only
    clock.now = 100.0 + FOLD_INTERVAL * 0.5 + 10.0
    assert dp.expire(10.0) == 0    # used FOLD_INTERVAL * 0.4 s less than 10 s ago
    clock.now = 100.0 + FOLD_INTERVAL + 10.0
    assert dp.expire(10.0) == 8


def test_used_trails_the_traffic_by_at_most_the_fold_interval():
    dp, _, clock = switch()
    frames = [udp_frame(1000 + i) for i in range(4)]
    dp.process(1, frames)
    flows = dp.megaflows.flows()   # the objects, without the fold flows() does
    for step in range(1, 6):
        clock.now = 100.0 + step * FOLD_INTERVAL * 0.6
        dp.process(1, frames)
        assert all(clock.now - f.used <= FOLD_INTERVAL for f in flows)


def test_flush_hands_over_every_packet():
    removed = {}

    def on_removed(flow):
        removed[(flow.key >> K.FIELDS["tp_src"].offset) & 0xFFFF] = flow.n_packets

    dp, _, _ = switch(on_flow_removed=on_removed)
    frames = [udp_frame(1000 + i % 4) for i in range(20)]
    for _ in range(3):             # upcalls; counted at once; in the burst counter
        dp.process(1, frames)
    dp.flush()
    assert removed == {1000 + i: 15 for i in range(4)}


def test_a_capture_sees_each_frame_with_its_direction():
    dp, sink, _ = switch()
    frames = [udp_frame(1000 + i % 5) for i in range(30)]
    dp.process(1, frames)
    dp.taps.set([{"id": 1, "odp": 1, "rx": True, "tx": False},
                 {"id": 2, "odp": 2, "rx": False, "tx": True}])
    dp.process(1, frames)
    got = {tap_id: packets for tap_id, packets, _lost in dp.taps.drain()}
    assert sorted(p[2] for p in got[1]) == sorted(frames)
    assert sorted(p[2] for p in got[2]) == sorted(frames)
    assert by_sport(dp.flows())[1000] == (12, 12 * len(frames[0]))


def test_with_several_subtables_the_burst_still_leaves_whole():
    low_src = 1 << K.FIELDS["nw_src"].offset
    sink = Sink()
    dp = Datapath(lambda key, frame: Upcall(
        (output(2),), MASK | (K.FIELDS["nw_src"].mask if key & low_src else low_src)))
    dp.add_port("p1", Sink(), 1)
    dp.add_port("p2", sink, 2)
    frames = [udp_frame(1000 + i % 7, src=0x0A000001 + i % 2) for i in range(80)]
    dp.process(1, frames)
    assert dp.megaflows.n_subtables == 2
    sink.bursts.clear()
    dp.process(1, frames)
    assert sink.bursts == [frames]
    assert sum(f.n_packets for f in dp.flows()) == 160
