"""SplitVring against a real guest-side driver on shared memory (tests/support)."""

from __future__ import annotations

import os

import pytest

from ovsd.netdev.vhost_user import slices
from ovsd.netdev.vhost_user.vring import (
    COUNTERS_STRIDE, MAX_FRAME, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    VRING_USED_F_NO_NOTIFY, RingCounters, SplitVring, VringError)
from ovsd.packet.parse import OneLengthBurst
from tests.support.virtq_driver import DESC, GuestRam, VirtqDriver

NEXT, WRITE, INDIRECT = VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT
RSIZE = 256 * 1024


def frame(i: int, size: int = 60) -> bytes:
    return bytes((i + k) & 0xFF for k in range(size))


class Env:
    def __init__(self) -> None:
        self.ram = GuestRam([RSIZE, RSIZE, RSIZE])
        self.mem = self.ram.memory()
        self.counters = RingCounters(bytearray(COUNTERS_STRIDE * 4))
        self.fds: list[int] = []

    def ring(self, num: int = 16, *, start_idx: int = 0, index: int = 0,
             regions=(0,), ring_region: int = 1, event_idx: bool = False,
             indirect: bool = True, call: bool = False):
        drv = VirtqDriver(self.ram, num, start_idx=start_idx, region=ring_region,
                          buffer_regions=regions)
        call_fd = self.eventfd() if call else None
        return drv, drv.vring(self.mem, self.counters, index, event_idx=event_idx,
                              indirect=indirect, call_fd=call_fd)

    def eventfd(self) -> int:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        self.mem.close()
        self.ram.close()
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def env():
    e = Env()
    yield e
    e.close()


def notifications(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def broken(env: Env, vring: SplitVring, call, match: str) -> None:
    """``call`` raises VringError matching ``match`` and the device wrote nothing."""
    before = env.ram.snapshot()
    state = env.counters.get(vring.index)
    with pytest.raises(VringError, match=match) as exc:
        call()
    assert f"ring {vring.index}" in str(exc.value)
    assert env.ram.changed(before) == []
    assert env.ram.canaries_intact()
    assert env.counters.get(vring.index) == state


# -- RingCounters ---------------------------------------------------------------------


def test_counters_layout():
    buf = bytearray(32)
    c = RingCounters(buf)
    c.set(2, 0x1234, 0xBEEF)
    assert c.get(2) == (0x1234, 0xBEEF)
    assert buf[16:24] == bytes.fromhex("3412efbe00000000")
    assert c.get(0) == (0, 0)


def test_counters_refuse_bad_values():
    c = RingCounters(bytearray(16))
    with pytest.raises(ValueError, match="65535"):
        c.set(0, 65536, 0)
    with pytest.raises(ValueError, match="rings 0 to 1"):
        c.get(2)


# -- construction -----------------------------------------------------------------------


def test_construction_sets_no_notify(env):
    drv, _ = env.ring()
    assert drv.used_flags == VRING_USED_F_NO_NOTIFY


@pytest.mark.parametrize("num", [0, 3, 48, 65536])
def test_ring_size_must_be_a_power_of_two(env, num):
    drv = VirtqDriver(env.ram, 16)
    with pytest.raises(VringError, match=f"size {num}"):
        SplitVring(env.mem, 0, num, *drv.addrs, env.counters, event_idx=False,
                   indirect=False, call_fd=None)


@pytest.mark.parametrize("which, delta, match", [
    (0, 8, "descriptor table .* not 16-byte aligned"),
    (1, 1, "avail ring .* not 2-byte aligned"),
    (2, 2, "used ring .* not 4-byte aligned"),
])
def test_ring_alignment(env, which, delta, match):
    drv = VirtqDriver(env.ram, 16)
    addrs = list(drv.addrs)
    addrs[which] += delta
    with pytest.raises(VringError, match=match):
        SplitVring(env.mem, 0, 16, *addrs, env.counters, event_idx=False, indirect=False,
                   call_fd=None)


def test_ring_areas_must_be_in_memory(env):
    drv = VirtqDriver(env.ram, 16)
    r = env.ram.regions[0]
    for addrs in [(drv.desc, drv.addrs[1], drv.addrs[2]),  # a gpa, not a uva
                  (drv.addrs[0], r.uva + r.size - 16, drv.addrs[2]),  # crosses the end
                  (drv.addrs[0], drv.addrs[1], r.uva + r.size)]:
        with pytest.raises(VringError, match="ring 0: .* not inside one memory region"):
            SplitVring(env.mem, 0, 16, *addrs, env.counters, event_idx=False,
                       indirect=False, call_fd=None)
    with pytest.raises(VringError, match="no memory table"):
        SplitVring(None, 0, 16, *drv.addrs, env.counters, event_idx=False, indirect=False,
                   call_fd=None)
    with pytest.raises(ValueError, match="counters"):
        SplitVring(env.mem, 9, 16, *drv.addrs, env.counters, event_idx=False,
                   indirect=False, call_fd=None)


# -- dequeue (guest transmit) -------------------------------------------------------------


def test_dequeue_nothing(env):
    drv, vr = env.ring()
    assert vr.dequeue(32, 12) == []
    assert drv.used_idx == 0 and env.counters.get(0) == (0, 0)


@pytest.mark.parametrize("hdr_len", [10, 12])
def test_dequeue_single_descriptor_frames(env, hdr_len):
    drv, vr = env.ring()
    heads = [drv.add_tx(frame(i), hdr_len=hdr_len, header=bytes([0xEE]) * hdr_len)
             for i in range(5)]
    assert vr.avail_pending == 5
    got = vr.dequeue(32, hdr_len)
    assert got == [frame(i) for i in range(5)]
    assert all(type(f) is bytes for f in got)
    assert drv.reap_tx() == [(h, 0) for h in heads]
    assert env.counters.get(0) == (5, 5)
    assert vr.avail_pending == 0
    assert env.ram.canaries_intact()


def test_dequeued_frames_are_copies(env):
    drv, vr = env.ring()
    drv.add_tx(frame(1))
    got = vr.dequeue(32, 12)
    env.ram.write(drv.chains[0].buffers[0][0], bytes(72))
    assert got == [frame(1)]


@pytest.mark.parametrize("split, indirect", [
    ([12], False),  # header in its own descriptor
    ([5, 20, 7, 1], False),  # header and data cut anywhere
    ([12, 30], True),
    ([3], True),
    (None, True),  # a one-entry indirect table
])
def test_dequeue_chains(env, split, indirect):
    drv, vr = env.ring(32, regions=(0, 1, 2))
    frames = [frame(i, 50 + 20 * i) for i in range(4)]
    for f in frames:
        drv.add_tx(f, split=split, indirect=indirect)
    assert vr.dequeue(32, 12) == frames
    assert len(drv.reap_tx()) == 4
    assert env.ram.canaries_intact()


def test_dequeue_buffers_in_every_region(env):
    drv, vr = env.ring(regions=(2, 0, 1))
    frames = [frame(i) for i in range(9)]
    for f in frames:
        drv.add_tx(f)
    assert vr.dequeue(32, 12) == frames


def test_dequeue_respects_max_frames(env):
    drv, vr = env.ring()
    for i in range(10):
        drv.add_tx(frame(i))
    assert vr.dequeue(4, 12) == [frame(i) for i in range(4)]
    assert vr.avail_pending == 6
    assert drv.used_idx == 4
    assert vr.dequeue(0, 12) == []
    assert vr.dequeue(32, 12) == [frame(i) for i in range(4, 10)]


def test_dequeue_wraps_the_ring_and_the_16_bit_indices(env):
    drv, vr = env.ring(num=8, start_idx=65530)
    seen = []
    sent = []
    for burst in range(6):
        for k in range(5):
            sent.append(frame(burst * 5 + k))
            drv.add_tx(sent[-1])
        seen += vr.dequeue(3, 12)
        seen += vr.dequeue(32, 12)
        assert len(drv.reap_tx()) == 5
    assert seen == sent
    assert env.counters.get(0) == ((65530 + 30) & 0xFFFF,) * 2
    assert drv.used_idx == (65530 + 30) & 0xFFFF


def test_dequeue_frame_sizes(env):
    drv, vr = env.ring(regions=(1,))
    big = bytes(range(256)) * 256  # 65536 bytes: one too many
    drv.add_tx(b"")  # only a header
    drv.add_tx(big[:MAX_FRAME], split=[12, 30000])
    drv.add_tx(big)
    drv.add_tx(big, split=[2000])
    drv.add_tx(frame(7))
    assert vr.dequeue(32, 12) == [b"", big[:MAX_FRAME], frame(7)]
    assert vr.dropped_oversize == 2
    assert len(drv.reap_tx()) == 5  # dropped chains are returned too


def test_dequeue_takeover_by_another_ring_object(env):
    # Two processes' SplitVrings on one ring: the counters carry the position.
    drv, a = env.ring()
    b = SplitVring(env.mem, 0, 16, *drv.addrs, env.counters, event_idx=False,
                   indirect=True, call_fd=None)
    for i in range(6):
        drv.add_tx(frame(i))
    assert a.dequeue(2, 12) + b.dequeue(3, 12) + a.dequeue(9, 12) == \
        [frame(i) for i in range(6)]
    assert env.counters.get(0) == (6, 6)


# -- dequeue: broken guests -----------------------------------------------------------


def test_dequeue_head_out_of_range(env):
    drv, vr = env.ring()
    drv.add_tx(frame(0))
    drv.push_avail(16)
    broken(env, vr, lambda: vr.dequeue(32, 12),
           r"avail entry 1 \(slot 1\) holds descriptor index 16, beyond the ring size 16")


def test_dequeue_head_out_of_range_across_the_wrap(env):
    drv, vr = env.ring(num=4, start_idx=2)
    drv.add_tx(frame(0))
    drv.add_tx(frame(1))
    drv.push_avail(0xFFFF)
    broken(env, vr, lambda: vr.dequeue(32, 12), "avail entry 4 .* 65535")


def test_dequeue_avail_idx_too_far_ahead(env):
    drv, vr = env.ring(start_idx=100)
    drv.set_avail_idx(100 + 17)
    broken(env, vr, lambda: vr.dequeue(32, 12),
           "avail->idx 117 is 17 entries ahead of last_avail_idx 100")
    drv.set_avail_idx(99)  # "behind" is 65535 ahead
    broken(env, vr, lambda: vr.dequeue(32, 12), "65535 entries ahead")


def _raw_chain(drv: VirtqDriver, descs, head: int = 0) -> None:
    for i, (addr, ln, flags, nxt) in enumerate(descs):
        drv.write_desc(i, addr, ln, flags, nxt)
    drv.push_avail(head)


def _table(env: Env, descs) -> int:
    at = env.ram.alloc(16 * len(descs), align=16)
    env.ram.write(at, b"".join(DESC.pack(*d) for d in descs))
    return at


def test_dequeue_bad_descriptors(env):
    ram = env.ram
    buf = ram.alloc(256)
    r0, r1, r2 = ram.regions
    hole = r0.gpa + r0.size + 100
    cases = [
        ([(buf, 64, NEXT, 16)], "next index 16 is beyond the ring size 16"),
        ([(buf, 64, NEXT, 1), (buf, 64, NEXT, 0)], r"longer than 16 descriptors \(a loop\)"),
        ([(buf, 64, NEXT, 0)], "a loop"),
        ([(hole, 64, 0, 0)], "buffer is outside guest memory"),
        ([(r0.gpa + r0.size - 32, 64, 0, 0)], "outside guest memory"),
        ([(r2.gpa + r2.size, 64, 0, 0)], "outside guest memory"),
        ([(2**64 - 16, 64, 0, 0)], "outside guest memory"),
        ([(buf, 64, 0, 0)], None),  # control: this one is fine
        ([(buf, 64, WRITE, 0)], "write-only descriptor in a transmit chain"),
        ([(buf, 30, NEXT, 1), (buf, 64, WRITE, 0)], "descriptor 1 .* write-only"),
        ([(buf, 8, 0, 0)], "holds 8 bytes, less than the 12-byte virtio-net header"),
        ([(buf, 5, NEXT, 1), (buf, 6, 0, 0)], "holds 11 bytes"),
        ([(buf, 30, NEXT, 1), (buf, 64, INDIRECT, 0)], "INDIRECT flag on a descriptor that is "
                                                       "not a chain head"),
        ([(r1.uva, 64, 0, 0)], "outside guest memory"),  # a uva is not a gpa
    ]
    for descs, match in cases:
        drv, vr = env.ring()
        _raw_chain(drv, descs)
        if match is None:
            assert len(vr.dequeue(32, 12)) == 1
        else:
            broken(env, vr, lambda: vr.dequeue(32, 12), match)


def test_dequeue_bad_indirect_tables(env):
    ram = env.ram
    buf = ram.alloc(256)
    good = _table(env, [(buf, 64, 0, 0)])
    cases = [
        (dict(indirect=False), [(good, 16, INDIRECT, 0)], "VIRTIO_F_INDIRECT_DESC was not"),
        ({}, [(good, 16, INDIRECT | NEXT, 1), (buf, 64, 0, 0)], "INDIRECT and NEXT"),
        ({}, [(good, 0, INDIRECT, 0)], "not a nonzero multiple of 16"),
        ({}, [(good, 24, INDIRECT, 0)], "not a nonzero multiple of 16"),
        ({}, [(good, 16 * 17, INDIRECT, 0)], r"more than the ring size \(16\)"),
        ({}, [(ram.regions[0].gpa + RSIZE - 8, 16, INDIRECT, 0)],
         "indirect table is outside guest memory"),
        ({}, [(_table(env, [(good, 16, INDIRECT, 0)]), 16, INDIRECT, 0)],
         "indirect descriptor 0 .* nested indirect table"),
        ({}, [(_table(env, [(buf, 64, NEXT, 1), (buf, 1, NEXT, 0)]), 32, INDIRECT, 0)],
         "indirect descriptor 1 .*a loop"),
        ({}, [(_table(env, [(buf, 64, NEXT, 2), (buf, 1, 0, 0)]), 32, INDIRECT, 0)],
         "next index 2 is beyond the table size 2"),
        ({}, [(_table(env, [(buf, 64, WRITE, 0)]), 16, INDIRECT, 0)],
         "write-only descriptor in a transmit chain"),
        ({}, [(_table(env, [(buf, 4, 0, 0)]), 16, INDIRECT, 0)], "less than the 12-byte"),
        # The WRITE flag of the descriptor that points at a table is ignored.
        ({}, [(good, 16, INDIRECT | WRITE, 0)], None),
    ]
    for kw, descs, match in cases:
        drv, vr = env.ring(**kw)
        _raw_chain(drv, descs)
        if match is None:
            assert len(vr.dequeue(32, 12)) == 1
        else:
            broken(env, vr, lambda: vr.dequeue(32, 12), match)


def test_dequeue_error_after_good_frames_publishes_nothing(env):
    drv, vr = env.ring()
    for i in range(3):
        drv.add_tx(frame(i))
    drv.write_desc(1, 0, 64, NEXT, 99)
    broken(env, vr, lambda: vr.dequeue(32, 12), "chain at head 1: descriptor 1")
    assert drv.used_idx == 0


def test_header_length_is_checked(env):
    _, vr = env.ring()
    with pytest.raises(ValueError, match="hdr_len=11"):
        vr.dequeue(32, 11)
    with pytest.raises(ValueError, match="hdr_len=8"):
        vr.enqueue([b"x"], 8, False)
    with pytest.raises(ValueError, match="12-byte header"):
        vr.enqueue([b"x"], 10, True)


# -- enqueue (guest receive) ----------------------------------------------------------------


def test_enqueue_nothing_posted(env):
    drv, vr = env.ring()
    assert vr.enqueue([frame(0)], 12, True) == 0
    assert vr.enqueue([], 12, True) == 0
    assert drv.used_idx == 0


def test_enqueue_mergeable_one_buffer_each(env):
    drv, vr = env.ring(regions=(0, 1, 2))
    heads = [drv.add_rx([2048]) for _ in range(8)]
    frames = [frame(i, 60 + 300 * i) for i in range(5)]
    assert vr.enqueue(frames, 12, True) == 5
    used = drv.collect_used()
    assert used == [(h, 12 + len(f)) for h, f in zip(heads, frames)]
    for (h, n), f in zip(used, frames):
        data = drv.chain_bytes(h, n)
        assert data == bytes(10) + b"\x01\x00" + f
    assert vr.avail_pending == 3
    assert env.ram.canaries_intact()


def test_enqueue_mergeable_frame_over_several_buffers(env):
    drv, vr = env.ring()
    for _ in range(6):
        drv.add_rx([100])
    frames = [frame(1, 50), frame(2, 250), frame(3, 88)]
    assert vr.enqueue(frames, 12, True) == 3
    got = drv.read_rx(12, mergeable=True)
    assert [g.data for g in got] == frames
    assert [g.num_buffers for g in got] == [1, 3, 1]
    assert [g.header[:10] for g in got] == [bytes(10)] * 3
    assert vr.avail_pending == 1


def test_enqueue_mergeable_multi_descriptor_and_indirect_buffers(env):
    drv, vr = env.ring(regions=(0, 2))
    drv.add_rx([4, 8, 40], indirect=True)  # the header itself is split
    drv.add_rx([30, 30])
    drv.add_rx([12, 500], indirect=True)
    frames = [frame(1, 100), frame(2, 400)]
    assert vr.enqueue(frames, 12, True) == 2
    got = drv.read_rx(12, mergeable=True)
    assert [(g.data, g.num_buffers) for g in got] == [(frames[0], 2), (frames[1], 1)]


def test_enqueue_mergeable_not_enough_buffers(env):
    drv, vr = env.ring()
    for _ in range(3):
        drv.add_rx([64])
    # The second frame needs 4 buffers, 2 are left: it and the rest stay with the
    # caller, and the 2 buffers stay available.
    assert vr.enqueue([frame(0, 40), frame(1, 200), frame(2, 10)], 12, True) == 1
    assert vr.avail_pending == 2
    assert [g.data for g in drv.read_rx(12, mergeable=True)] == [frame(0, 40)]
    assert vr.enqueue([frame(2, 10)], 12, True) == 1


@pytest.mark.parametrize("hdr_len, header", [(12, bytes(10) + b"\x01\x00"), (10, bytes(10))])
def test_enqueue_without_mergeable(env, hdr_len, header):
    drv, vr = env.ring(regions=(1, 2))
    drv.add_rx([1600])
    drv.add_rx([hdr_len, 1500])  # header in its own descriptor, like old Linux
    drv.add_rx([7, 700, 900], indirect=True)
    frames = [frame(0, 1000), frame(1, 1500), frame(2, 1400)]
    assert vr.enqueue(frames, hdr_len, False) == 3
    got = drv.read_rx(hdr_len)
    assert [(g.header, g.data, g.buffers) for g in got] == [(header, f, 1) for f in frames]


def test_enqueue_without_mergeable_frame_too_big_for_the_chain(env):
    # As DPDK: the burst stops at a frame the chain cannot hold; the chain
    # stays available and takes the next frame.
    drv, vr = env.ring()
    heads = [drv.add_rx([12, 100]) for _ in range(3)]
    assert vr.enqueue([frame(0, 80), frame(1, 101), frame(2, 10)], 12, False) == 1
    assert vr.avail_pending == 2
    assert vr.enqueue([frame(2, 10)], 12, False) == 1
    assert [h for h, _ in drv.collect_used()] == heads[:2]


def test_enqueue_ring_full(env):
    drv, vr = env.ring()
    for _ in range(3):
        drv.add_rx([2048])
    assert vr.enqueue([frame(i) for i in range(5)], 12, True) == 3
    assert vr.enqueue([frame(9)], 12, True) == 0
    assert len(drv.read_rx(12, mergeable=True)) == 3


def test_enqueue_accepts_any_bytes_like_frames(env):
    drv, vr = env.ring()
    for _ in range(4):
        drv.add_rx([2048])
    frames = [frame(0), bytearray(frame(1)), memoryview(frame(2)), memoryview(frame(3, 900))]
    assert vr.enqueue(frames, 12, True) == 4
    assert [g.data for g in drv.read_rx(12, mergeable=True)] == [bytes(f) for f in frames]


def test_enqueue_wraps_the_ring_and_the_16_bit_indices(env):
    drv, vr = env.ring(num=8, start_idx=65533)
    sent, got = [], []
    for burst in range(12):
        while vr.avail_pending < 6:
            drv.add_rx([128])
        # 4 frames, the last one needing 2 buffers; leftovers stay posted.
        frames = [frame(burst * 10 + k, 30 + 40 * k) for k in range(4)]
        assert vr.enqueue(frames, 12, True) == 4
        sent += frames
        got += [g.data for g in drv.read_rx(12, mergeable=True)]
    assert got == sent
    assert drv.used_idx == env.counters.get(0)[1] == (65533 + 12 * 5) & 0xFFFF


def test_enqueue_broken_chains(env):
    ram = env.ram
    buf = ram.alloc(4096)
    cases = [
        ([(buf, 2048, 0, 0)], "read-only descriptor in a receive chain"),
        ([(buf, 8, WRITE, 0)], "holds 8 bytes, less than the 12-byte"),
        ([(buf, 20, WRITE | NEXT, 1), (buf, 20, 0, 0)], "descriptor 1 .* read-only"),
        ([(ram.regions[2].gpa + RSIZE - 10, 2048, WRITE, 0)], "outside guest memory"),
        ([(buf, 2048, WRITE | NEXT, 0)], "a loop"),
        ([(_table(env, [(buf, 2048, WRITE | INDIRECT, 0)]), 16, INDIRECT, 0)], "nested"),
    ]
    for descs, match in cases:
        for mergeable in (True, False):
            drv, vr = env.ring()
            _raw_chain(drv, descs)
            broken(env, vr, lambda: vr.enqueue([frame(0, 100)], 12, mergeable), match)


def test_enqueue_bad_head(env):
    drv, vr = env.ring()
    drv.add_rx([2048])
    drv.push_avail(40)
    broken(env, vr, lambda: vr.enqueue([frame(0)] * 2, 12, True), "descriptor index 40")
    drv.set_avail_idx(30)
    broken(env, vr, lambda: vr.enqueue([frame(0)], 12, True), "30 entries ahead")


def test_enqueue_bad_head_found_while_gathering_buffers(env):
    # The fast pass reads one head per frame; a frame that needs more reads on.
    drv, vr = env.ring()
    drv.add_rx([40])
    drv.push_avail(99)
    broken(env, vr, lambda: vr.enqueue([frame(0, 100)], 12, True), "descriptor index 99")


# -- notifications ------------------------------------------------------------------------


def test_notify_once_per_burst(env):
    drv, vr = env.ring(call=True)
    for i in range(5):
        drv.add_tx(frame(i))
    assert len(vr.dequeue(32, 12)) == 5
    assert notifications(vr.call_fd) == 1
    assert vr.dequeue(32, 12) == []
    assert notifications(vr.call_fd) == 0


def test_no_interrupt_suppresses(env):
    drv, vr = env.ring(call=True)
    drv.set_no_interrupt(True)
    for i in range(3):
        drv.add_tx(frame(i))
    assert len(vr.dequeue(32, 12)) == 3
    assert notifications(vr.call_fd) == 0
    drv.set_no_interrupt(False)
    drv.add_tx(frame(9))
    vr.dequeue(32, 12)
    assert notifications(vr.call_fd) == 1


def test_enqueue_notifies(env):
    drv, vr = env.ring(call=True)
    for _ in range(4):
        drv.add_rx([2048])
    assert vr.enqueue([frame(0), frame(1)], 12, True) == 2
    assert notifications(vr.call_fd) == 1
    drv.set_no_interrupt(True)
    assert vr.enqueue([frame(2)], 12, True) == 1
    assert notifications(vr.call_fd) == 0
    assert vr.enqueue([frame(2)] * 3, 12, True) == 1  # the last buffer
    assert vr.enqueue([frame(3)], 12, True) == 0  # nothing delivered, nothing said
    assert notifications(vr.call_fd) == 0


def test_event_idx(env):
    drv, vr = env.ring(call=True, event_idx=True)
    drv.set_no_interrupt(True)  # ignored with EVENT_IDX
    for i in range(10):
        drv.add_tx(frame(i))
    drv.set_used_event(2)  # "tell me when entry 2 is used"
    assert len(vr.dequeue(2, 12)) == 2  # used 0..1: not yet
    assert notifications(vr.call_fd) == 0
    assert len(vr.dequeue(3, 12)) == 3  # used 2..4: entry 2 is among them
    assert notifications(vr.call_fd) == 1
    assert len(vr.dequeue(1, 12)) == 1  # event 2 is behind us now
    assert notifications(vr.call_fd) == 0
    drv.set_used_event(6)  # exactly the next one (entries 0..5 are used)
    assert len(vr.dequeue(1, 12)) == 1
    assert notifications(vr.call_fd) == 1


def test_event_idx_across_the_16_bit_wrap(env):
    drv, vr = env.ring(call=True, event_idx=True, start_idx=65534)
    for i in range(4):
        drv.add_tx(frame(i))
    drv.set_used_event(0)  # after the wrap
    assert len(vr.dequeue(1, 12)) == 1  # used 65534
    assert notifications(vr.call_fd) == 0
    assert len(vr.dequeue(3, 12)) == 3  # used 65535, 0, 1
    assert notifications(vr.call_fd) == 1


def test_saturated_eventfd_is_not_an_error(env):
    drv, vr = env.ring(call=True)
    os.eventfd_write(vr.call_fd, 0xFFFF_FFFF_FFFF_FFFE)  # the counter's maximum
    drv.add_tx(frame(0))
    assert vr.dequeue(32, 12) == [frame(0)]


def test_call_fd_can_be_changed(env):
    drv, vr = env.ring()
    vr.call_fd = env.eventfd()
    drv.add_tx(frame(0))
    vr.dequeue(32, 12)
    assert notifications(vr.call_fd) == 1


# -- in-order bursts (the whole-burst path) ----------------------------------------------


@pytest.fixture
def runs(monkeypatch):
    """How many bursts each whole-burst path handled (returned a result)."""
    taken = {"dequeue": 0, "enqueue": 0}
    for kind in taken:
        original = getattr(SplitVring, f"_{kind}_run")

        def spy(self, *args, _original=original, _kind=kind):
            result = _original(self, *args)
            taken[_kind] += result is not None
            return result
        monkeypatch.setattr(SplitVring, f"_{kind}_run", spy)
    return taken


def test_in_order_bursts_across_the_descriptor_wrap(env, runs):
    drv, vr = env.ring(16)
    rx, rvr = env.ring(16, index=1)
    for burst in range(5):   # descriptors 0-9, 10-15 + 0-3, ...: consecutive mod 16
        frames = [frame(10 * burst + i, 60 + i) for i in range(10)]
        for f in frames:
            drv.add_tx(f)
            rx.add_rx([2048])
        assert vr.dequeue(32, 12) == frames
        assert rvr.enqueue(frames, 12, True) == 10
        assert [f.data for f in rx.read_rx(12, mergeable=True)] == frames
        for head, _ in drv.collect_used():
            drv.recycle(head)
    assert runs == {"dequeue": 5, "enqueue": 5}
    assert env.ram.canaries_intact()


def test_in_order_burst_with_a_chain_inside_is_walked(env, runs):
    drv, vr = env.ring(16)
    frames = [frame(i) for i in range(6)]
    for i, f in enumerate(frames):
        drv.add_tx(f, split=[5] if i == 3 else None)
    assert vr.dequeue(32, 12) == frames
    assert runs["dequeue"] == 0


def test_in_order_burst_with_a_short_buffer_stops_there(env, runs):
    drv, vr = env.ring(16)
    for size in (2048, 2048, 40, 2048):
        drv.add_rx([size])
    frames = [frame(i, 100) for i in range(4)]
    assert vr.enqueue(frames, 12, False) == 2   # the third does not fit: the burst ends
    assert [f.data for f in drv.read_rx(12)] == frames[:2]
    assert runs["enqueue"] == 0


def test_in_order_burst_over_several_regions_is_walked(env, runs):
    drv, vr = env.ring(16, regions=(0, 1, 2))
    frames = [frame(i) for i in range(6)]
    for f in frames:
        drv.add_tx(f)
    assert vr.dequeue(32, 12) == frames
    assert runs["dequeue"] == 0


def _mempool_runs(drv, env, ln: int, flags: int, shape) -> list[int]:
    """Post one-buffer chains in order, at addresses laid out as DPDK's mempools
    hand them out: ``shape`` is (first element, count, +1 or -1) runs of
    2368-byte elements in region 0."""
    gpas = []
    for first, count, way in shape:
        gpas += [env.ram.regions[0].gpa + 2368 * (first + way * k) for k in range(count)]
    for k, gpa in enumerate(gpas):
        drv.write_desc(k, gpa, ln, flags, 0)
        drv.push_avail(k, publish=False)
    drv.publish()
    return gpas


def _fills(monkeypatch) -> list[int]:
    """How many buffers each burst had to add to the ring's slices."""
    filled = []
    original = slices.FrameSlices._fill

    def spy(self, lows, span_of):
        before = self._fills
        ok = original(self, lows, span_of)
        filled.append(self._fills - before if ok else None)
        return ok
    monkeypatch.setattr(slices.FrameSlices, "_fill", spy)
    return filled


def _post_again(drv, env, gpas, contents):
    """Give descriptors 0.. back to the device again, holding ``contents``
    (after a 12-byte header) at ``gpas``."""
    for gpa, f in zip(gpas, contents):
        env.ram.write(gpa, bytes(12) + f)
    drv.collect_used()
    for k in range(len(gpas)):
        drv.push_avail(k, publish=False)
    drv.publish()


def test_mempool_burst_is_read_through_the_slices_of_its_buffers(env, runs, monkeypatch):
    drv, vr = env.ring(32)
    filled = _fills(monkeypatch)
    gpas = _mempool_runs(drv, env, 12 + 60, 0, [(3, 10, 1), (40, 8, -1), (20, 2, 1)])
    frames = [frame(i) for i in range(len(gpas))]
    for gpa, f in zip(gpas, frames):
        env.ram.write(gpa, bytes(12) + f)
    got = vr.dequeue(32, 12)
    assert got == frames
    assert type(got) is OneLengthBurst   # the datapath need not measure them again
    assert runs["dequeue"] == 1 and filled == [20] and len(vr._slices) == 20
    # The same buffers come round again, in another order: nothing to add.
    order = [7, 0, 19, 3, 12, 5, 18, 1, 9, 14, 2, 17, 8, 11, 4, 16, 6, 13, 10, 15]
    for k, i in enumerate(order):
        drv.write_desc(k, gpas[i], 12 + 60, 0, 0)
    frames = [frame(100 + i) for i in range(len(gpas))]
    _post_again(drv, env, [gpas[i] for i in order], frames)
    assert vr.dequeue(32, 12) == frames
    assert runs["dequeue"] == 2 and filled == [20]


def test_slices_start_over_for_another_length(env, runs, monkeypatch):
    drv, vr = env.ring(32)
    filled = _fills(monkeypatch)
    gpas = _mempool_runs(drv, env, 12 + 60, 0, [(3, 6, 1)])
    assert vr.dequeue(32, 12) == [env.ram.read(g + 12, 60) for g in gpas]
    for k, gpa in enumerate(gpas):
        drv.write_desc(k, gpa, 12 + 100, 0, 0)
    frames = [frame(i, 100) for i in range(6)]
    _post_again(drv, env, gpas, frames)
    assert vr.dequeue(32, 12) == frames
    assert filled == [6, 6] and len(vr._slices) == 6 and runs["dequeue"] == 2


def test_slices_follow_the_buffers_into_another_region(env, runs, monkeypatch):
    drv, vr = env.ring(32, regions=(0, 1, 2))
    filled = _fills(monkeypatch)
    gpas = _mempool_runs(drv, env, 12 + 60, 0, [(3, 6, 1)])
    vr.dequeue(32, 12)
    other = env.ram.regions[2].gpa
    moved = [other + 2368 * k for k in range(6)]
    for k, gpa in enumerate(moved):
        drv.write_desc(k, gpa, 12 + 60, 0, 0)
    frames = [frame(i) for i in range(6)]
    _post_again(drv, env, moved, frames)
    assert vr.dequeue(32, 12) == frames
    assert filled == [6, 6] and runs["dequeue"] == 2
    # A burst over both regions is walked frame by frame; the slices, which
    # no one region can hold for it, start over.
    both = gpas[:3] + moved[3:]
    for k, gpa in enumerate(both):
        drv.write_desc(k, gpa, 12 + 60, 0, 0)
    frames = [frame(50 + i) for i in range(6)]
    _post_again(drv, env, both, frames)
    assert vr.dequeue(32, 12) == frames
    assert filled == [6, 6, None] and len(vr._slices) == 0 and runs["dequeue"] == 2


def test_slices_that_do_not_pay_back_pause(env, runs, monkeypatch):
    """A guest giving new buffers every burst (not a mempool) fills the slices
    without reading through them again: past MAX_SLICES fills they pause for
    PAUSE_MIN bursts, then twice as long the next time; meanwhile bursts are
    read a slice per frame, still whole."""
    monkeypatch.setattr(slices, "MAX_SLICES", 16)
    monkeypatch.setattr(slices, "PAUSE_MIN", 2)
    drv, vr = env.ring(32)
    filled = _fills(monkeypatch)
    pauses = []
    for burst in range(12):
        gpas = _mempool_runs(drv, env, 12 + 60, 0, [(8 * burst, 8, 1)])
        frames = [frame(8 * burst + i) for i in range(8)]
        for gpa, f in zip(gpas, frames):
            env.ram.write(gpa + 12, f)
        assert vr.dequeue(32, 12) == frames
        assert len(vr._slices) <= 16
        pauses.append(vr._slices.paused)
        drv.collect_used()
    assert filled == [8] * 6   # bursts 3, 4 and 8-11 were read while paused
    assert pauses == [0, 0, 2, 1, 0, 0, 0, 4, 3, 2, 1, 0]
    assert runs["dequeue"] == 12


def test_a_buffer_starting_in_the_hole_below_a_region_fails(env, runs):
    """Its end is inside the region the burst's other buffers are in: still
    outside guest memory, nothing read."""
    drv, vr = env.ring(32, regions=(0, 1, 2))
    r = env.ram.regions[2]
    gpas = [r.gpa + 2368 * k for k in range(6)]
    gpas[3] = r.gpa - 8
    for k, gpa in enumerate(gpas):
        drv.write_desc(k, gpa, 12 + 60, 0, 0)
        drv.push_avail(k, publish=False)
    drv.publish()
    broken(env, vr, lambda: vr.dequeue(32, 12), "outside guest memory")


def test_a_buffer_moved_out_of_memory_after_its_slice_was_kept_fails(env, runs):
    drv, vr = env.ring(32)
    gpas = _mempool_runs(drv, env, 12 + 60, 0, [(3, 6, 1)])
    vr.dequeue(32, 12)
    r = env.ram.regions[0]
    for k, gpa in enumerate(gpas):
        drv.write_desc(k, gpa, 12 + 60, 0, 0)
    drv.write_desc(4, r.gpa + r.size - 30, 12 + 60, 0, 0)   # sticks out of the region
    _post_again(drv, env, gpas, [frame(i) for i in range(6)])
    broken(env, vr, lambda: vr.dequeue(32, 12), "outside guest memory")


def test_mempool_burst_is_written_in_one_pass(env, runs):
    drv, vr = env.ring(32)
    gpas = _mempool_runs(drv, env, 2048, VRING_DESC_F_WRITE, [(3, 10, 1), (40, 8, -1)])
    frames = [frame(i, 100) for i in range(len(gpas))]
    assert vr.enqueue(frames, 12, True) == len(frames)
    assert runs["enqueue"] == 1
    assert [env.ram.read(gpa, 112) for gpa in gpas] == [
        bytes(10) + b"\x01\x00" + f for f in frames]


def test_mempool_buffers_coming_round_again_get_their_header_checked(env, runs):
    """The second time round a header still right is left alone, one the guest
    changed meanwhile is written again."""
    drv, vr = env.ring(32)
    gpas = _mempool_runs(drv, env, 2048, VRING_DESC_F_WRITE, [(3, 10, 1)])
    assert vr.enqueue([frame(i, 100) for i in range(10)], 12, True) == 10
    drv.collect_used()
    env.ram.write(gpas[4] + 3, b"\xee")          # the guest scribbles on two headers
    env.ram.write(gpas[7] + 10, b"\x05\x00")
    for k in range(10):
        drv.push_avail(k, publish=False)
    drv.publish()
    frames = [frame(50 + i, 100) for i in range(10)]
    assert vr.enqueue(frames, 12, True) == 10
    assert runs["enqueue"] == 2
    assert [env.ram.read(gpa, 112) for gpa in gpas] == [
        bytes(10) + b"\x01\x00" + f for f in frames]


def test_in_order_burst_with_a_bad_descriptor_publishes_nothing(env):
    drv, vr = env.ring(16)
    heads = [drv.add_tx(frame(i)) for i in range(6)]
    r = env.ram.regions[0]
    drv.write_desc(heads[4], r.gpa + r.size - 8, 76, 0, 0)   # runs off the region
    broken(env, vr, lambda: vr.dequeue(32, 12), "outside guest memory")


# -- lifetime -------------------------------------------------------------------------------


def test_rings_keep_no_exports_of_guest_memory(env):
    drv, vr = env.ring(regions=(0, 1, 2))
    rx, rvr = env.ring(index=1)
    for i in range(4):
        drv.add_tx(frame(i), split=[7], indirect=i % 2 == 1)
        rx.add_rx([40, 200])
    vr.dequeue(32, 12)
    rvr.enqueue([frame(i, 150) for i in range(4)], 12, True)
    maps = [m for *_, m in env.mem.gpa_spans]
    del vr, rvr
    env.mem.close()
    assert all(m.closed for m in maps)  # close() did not meet a BufferError
