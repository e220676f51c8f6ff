"""A burst whose frames share their key under every subtable's mask (a stream
between two guests under NORMAL's megaflows) is batched under one megaflow
after one lookup; any frame that differs where a mask looks sends the burst
down the per-frame walk."""

from __future__ import annotations

from ovsd.dpif import datapath as datapath_mod
from ovsd.dpif.datapath import Datapath, Upcall
from ovsd.dpif.odp_actions import output
from ovsd.packet import key as K
from ovsd.packet.parse import OneLengthBurst
from tests.support.datapath import Sink, udp_frame

F = K.FIELDS
L2_MASK = F["in_port"].mask | F["dl_dst"].mask | F["dl_src"].mask | F["dl_type"].mask


def switch(masks):
    """Upcalls answer with masks[0] for frames to dl_dst ...:02, else masks[-1]."""
    def upcall(key, frame):
        mask = masks[0] if frame[5] == 2 else masks[-1]
        return Upcall((output(2),), mask)
    dp = Datapath(upcall)
    sink = Sink()
    dp.add_port("p1", Sink(), 1)
    dp.add_port("p2", sink, 2)
    return dp, sink


def to(dst_last: int, frame: bytes) -> bytes:
    return frame[:5] + bytes([dst_last]) + frame[6:]


def stream(n: int) -> list[bytes]:
    """One guest's stream: same MACs and length; ports, addresses and ids differ."""
    return [udp_frame(1000 + i, src=0x0A000000 + i, pad=18) for i in range(n)]


def count_extractions(monkeypatch) -> list[int]:
    """Frames whose keys the per-frame walk extracts from now on."""
    seen = []
    real = datapath_mod.extract_keys

    def counting(frames, in_port=0):
        seen.append(len(frames))
        return real(frames, in_port)
    monkeypatch.setattr(datapath_mod, "extract_keys", counting)
    return seen


def counters(dp) -> list[tuple[int, int]]:
    return sorted((f.n_packets, f.n_bytes) for f in dp.flows())


def test_a_stream_under_l2_megaflows_takes_one_lookup(monkeypatch):
    dp, sink = switch([L2_MASK])
    frames = stream(64)
    dp.process(1, frames[:1])                        # the upcall
    sink.bursts.clear()
    dp.stats.clear()
    dp.megaflows.subtable_probes = 0
    extracted = count_extractions(monkeypatch)
    dp.process(1, frames)
    assert extracted == []                           # no key extracted per frame
    assert sink.bursts == [frames]
    assert dp.stats.n_megaflow_hit == 64 and dp.stats.n_upcalls == 0
    assert dp.megaflows.subtable_probes == 64
    assert counters(dp) == [(65, 65 * len(frames[0]))]


def test_one_frame_that_differs_where_the_mask_looks_takes_the_per_frame_walk(monkeypatch):
    dp, sink = switch([L2_MASK])
    frames = stream(16)
    dp.process(1, frames[:1])
    frames[7] = to(9, frames[7])                     # another destination MAC
    sink.bursts.clear()
    dp.stats.clear()
    extracted = count_extractions(monkeypatch)
    dp.process(1, frames)
    assert extracted == [16]
    assert sorted(sink.sent) == sorted(frames)
    assert dp.stats.n_upcalls == 1                   # the new destination's megaflow
    assert counters(dp) == [(1, len(frames[0])), (16, 16 * len(frames[0]))]


def test_with_two_subtables_the_burst_shares_its_key_under_both(monkeypatch):
    narrow = L2_MASK | F["tp_src"].mask              # subtable for frames to ...:09
    dp, sink = switch([L2_MASK, narrow])
    frames = stream(8)
    dp.process(1, [to(9, frames[0])])                # installs the narrow subtable
    dp.process(1, frames[:1])                        # and the L2 one
    assert dp.megaflows.n_subtables == 2
    sink.bursts.clear()
    dp.stats.clear()
    # tp_src differs between the frames, and the narrow mask looks at it:
    # the per-frame walk, which finds the L2 megaflow for each.
    probes = dp.megaflows.subtable_probes
    dp.process(1, frames)
    assert dp.stats.n_megaflow_hit == 8 and dp.stats.n_upcalls == 0
    per_frame_probes = dp.megaflows.subtable_probes - probes
    same = [udp_frame(1000, src=0x0A000000 + i, pad=18) for i in range(8)]
    extracted = count_extractions(monkeypatch)
    dp.process(1, same)                              # equal tp_src: one lookup
    assert extracted == []
    assert dp.stats.n_megaflow_hit == 16
    # pmd-stats-show's subtables per hit read as if each frame had been looked up.
    assert dp.megaflows.subtable_probes - probes == 2 * per_frame_probes
    assert sink.sent == frames + same


def test_a_shared_key_without_a_megaflow_goes_up_once():
    dp, sink = switch([L2_MASK])
    dp.process(1, stream(1))
    frames = [to(7, f) for f in stream(32)]          # a new destination
    dp.stats.clear()
    dp.process(1, frames)
    assert sink.sent[-32:] == frames
    assert dp.stats.n_upcalls == 1 and dp.stats.n_megaflow_hit == 31


# -- what the output port is handed ---------------------------------------------------------

def test_a_whole_burst_leaves_marked_as_one_length():
    dp, sink = switch([L2_MASK])
    dp.process(1, stream(1))
    sink.one_length.clear()
    dp.process(1, stream(32))                        # one megaflow for the burst
    mixed = stream(8)
    mixed[3] = udp_frame(7, pad=30)                  # another length: the per-frame walk
    dp.process(1, mixed)
    assert sink.one_length == [True, False]


def test_simple_match_whole_bursts_leave_marked_and_mixed_ones_do_not():
    dp = Datapath(lambda key, frame: Upcall((output(2),), F["in_port"].mask))
    sink = Sink()
    dp.add_port("p1", Sink(), 1)
    dp.add_port("p2", sink, 2)
    dp.process(1, stream(1))                         # installs the in_port flow
    sink.one_length.clear()
    dp.process(1, stream(16))
    assert dp.stats.n_simple_hit >= 16
    dp.process(1, stream(4) + [udp_frame(9, pad=30)])
    assert sink.one_length == [True, False]


def test_a_whole_batch_that_other_frames_join_leaves_unmarked(monkeypatch):
    """Whatever order process() meets its batches in: once frames of another
    flow are added to the whole burst's output list, it is a plain list."""
    dp, sink = switch([L2_MASK])
    dp.process(1, stream(1))
    dp.process(1, [to(9, udp_frame(5, pad=30))])     # a second flow, also to port 2
    first, second = sorted(dp.flows(), key=lambda f: f.n_bytes)
    whole = stream(8)
    other = udp_frame(6, pad=30)

    def walk(in_port, frames, tables, batches):
        batches[first] = dp._whole = OneLengthBurst(whole)   # met first this time
        dp._whole_len = len(whole)
        batches[second] = [other]
        return []
    monkeypatch.setattr(dp.simple, "tables", lambda in_port: ())
    monkeypatch.setattr(dp, "_simple_walk", walk)
    sink.bursts.clear()
    sink.one_length.clear()
    dp.process(1, whole + [other])
    assert sink.bursts == [whole + [other]] and sink.one_length == [False]
