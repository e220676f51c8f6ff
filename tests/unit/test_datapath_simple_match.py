"""Simple match in the datapath: a burst of equal-length untagged IPv4
frames is placed by one lookup; anything else in a burst takes the per-frame
test, and the frames the simple key cannot describe take the full walk."""

from __future__ import annotations

from ovsd.dpif.datapath import Datapath, Upcall
from ovsd.dpif.odp_actions import output
from ovsd.packet import key as K
from tests.support.datapath import Sink, udp_frame

# What xlate returns for in_port=1,actions=output:2 (OVS also keeps the
# ethertype and the fragment bits).
MASK = K.FIELDS["in_port"].mask | K.FIELDS["dl_type"].mask | K.FIELDS["nw_frag"].mask


def switch():
    dp = Datapath(lambda key, frame: Upcall((output(2),), MASK))
    sink = Sink()
    dp.add_port("p1", Sink(), 1)
    dp.add_port("p2", sink, 2)
    return dp, sink


def fragment(frame: bytes) -> bytes:
    return frame[:20] + b"\x20\x00" + frame[22:]  # more fragments follow


def arp_like(frame: bytes) -> bytes:
    return frame[:12] + b"\x08\x06" + frame[14:]


def packets_by_flow(dp) -> dict:
    return {f.key: (f.n_packets, f.n_bytes) for f in dp.flows()}


def test_a_uniform_ipv4_burst_leaves_whole_and_is_counted_exactly():
    dp, sink = switch()
    frames = [udp_frame(1000 + i) for i in range(64)]
    dp.process(1, frames[:1])            # the upcall installs the megaflow
    sink.bursts.clear()
    dp.stats.clear()
    dp.process(1, frames)
    assert sink.bursts == [frames]
    assert dp.stats.n_simple_hit == 64 and dp.stats.n_packets == 64
    (flow_counts,) = packets_by_flow(dp).values()
    assert flow_counts == (65, 65 * len(frames[0]))


def test_frames_the_simple_key_cannot_describe_take_the_full_walk():
    dp, sink = switch()
    plain = [udp_frame(1000 + i) for i in range(8)]
    dp.process(1, plain[:1])
    frames = list(plain)
    frames[3] = fragment(frames[3])      # same length: only the header test tells
    frames[5] = arp_like(frames[5])
    sink.bursts.clear()
    dp.stats.clear()
    dp.process(1, frames)
    assert sorted(sink.sent) == sorted(frames)
    assert dp.stats.n_simple_hit == 6
    assert dp.stats.n_upcalls == 2       # the ARP frame's megaflow and the fragment's
    counts = packets_by_flow(dp)
    assert sorted(n for n, _ in counts.values()) == [1, 1, 7]


def test_frames_of_different_lengths_are_judged_one_by_one():
    dp, sink = switch()
    frames = [udp_frame(1000 + i, pad=i) for i in range(8)]
    dp.process(1, frames[:1])
    sink.bursts.clear()
    dp.stats.clear()
    dp.process(1, frames)
    assert sink.bursts == [frames]
    assert dp.stats.n_simple_hit == 8
    (flow_counts,) = packets_by_flow(dp).values()
    assert flow_counts == (9, len(frames[0]) + sum(map(len, frames)))


def test_a_uniform_burst_that_no_megaflow_answers_goes_up():
    dp, sink = switch()
    frames = [udp_frame(1000 + i) for i in range(16)]
    dp.process(1, frames)
    assert sink.sent == frames
    assert dp.stats.n_upcalls == 1 and dp.stats.n_packets == 16
