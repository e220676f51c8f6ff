"""The ring's whole-burst paths on DPDK-like buffers, against references.

DPDK hands a ring buffers from a mempool: runs one element apart, up or down,
with jumps between them, and the same buffers again burst after burst in an
order that drifts.  The paths that read such a burst through the slices kept
per buffer (slices.py) and write it with one store per frame must give
exactly what reading (dequeue) or writing (enqueue) buffer by buffer gives,
whatever the layout: runs of any length and step, steps smaller than a buffer
(overlapping buffers) or zero (one buffer given many times), runs in
different memory regions, addresses above 4 GiB and across it; and, burst
after burst, buffers that come round again, move, change length or region,
with a cache small enough to overflow and pause.  Enqueue is checked with the
burst written by the interpreter and by the kernel (kcopy.py) alike.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsd.netdev.vhost_user import kcopy, slices
from ovsd.netdev.vhost_user.vring import VRING_DESC_F_WRITE, RingCounters, VringError
from tests.support.virtq_driver import GuestRam, VirtqDriver

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RSIZE = 192 * 1024
NUM = 64


# -- guests with mempool layouts ----------------------------------------------------------

@st.composite
def layouts(draw, ln: int):
    """Buffer addresses for a burst: (region, first offset, step, count) runs."""
    n = draw(st.integers(1, NUM))
    points: list[tuple[int, int]] = []
    while len(points) < n:
        region = draw(st.sampled_from([0, 0, 0, 2]))
        step = draw(st.one_of(st.sampled_from([2368, -2368, 2368, -2368]),
                              st.integers(-3000, 3000)))
        count = draw(st.integers(1, min(40, n - len(points))))
        span = abs(step) * (count - 1) + ln
        if span > RSIZE:
            count, span = 1, ln
        first = draw(st.integers(0, RSIZE - span))
        if step < 0:
            first += span - ln
        points += [(region, first + k * step) for k in range(count)]
    return points


class MempoolGuest:
    """A guest whose ring holds, in order, one-buffer chains at chosen addresses."""

    def __init__(self, start_idx: int, gpa_base: int):
        self.ram = GuestRam([RSIZE, RSIZE, RSIZE], gpa_base=gpa_base)
        self.mem = self.ram.memory()
        self.counters = RingCounters(bytearray(8))
        self.drv = VirtqDriver(self.ram, NUM, start_idx=start_idx, region=1)
        self.ring = self.drv.vring(self.mem, self.counters, 0, indirect=False)
        self.start = start_idx

    def post(self, points: list[tuple[int, int]], ln: int, flags: int) -> list[int]:
        gpas = [self.ram.regions[r].gpa + off for r, off in points]
        for k, gpa in enumerate(gpas):
            head = (self.start + k) % NUM
            self.drv.write_desc(head, gpa, ln, flags, 0)
            self.drv.push_avail(head, publish=False)
        self.drv.publish()
        self.start += len(gpas)
        return gpas

    def close(self) -> None:
        self.ring.release()
        self.mem.close()
        self.ram.close()


gpa_bases = st.sampled_from([0, 0x1_4000_0000, 2**32 - RSIZE // 2])


@contextlib.contextmanager
def copies_by(copier: str):
    """Every in-order burst written by the kernel's copy, or none."""
    saved = kcopy.MIN_BURST, kcopy.MAX_PIECE
    kcopy.MIN_BURST, kcopy.MAX_PIECE = (1, 1 << 16) if copier == "kernel" else (1 << 30, 0)
    try:
        yield
    finally:
        kcopy.MIN_BURST, kcopy.MAX_PIECE = saved


copiers = pytest.mark.parametrize("copier", ["kernel", "interpreter"])


@SETTINGS
@given(st.integers(0, 200), st.sampled_from([10, 12]), st.integers(0, 65535), gpa_bases,
       st.data())
def test_dequeue_of_mempool_layouts_reads_every_buffer(size, hdr_len, start_idx, gpa_base,
                                                       data):
    ln = hdr_len + size
    points = data.draw(layouts(ln))
    g = MempoolGuest(start_idx, gpa_base)
    try:
        gpas = g.post(points, ln, 0)
        for k, gpa in enumerate(gpas):   # later buffers may overwrite earlier ones
            g.ram.write(gpa, bytes([k % 251]) * hdr_len + os.urandom(size))
        want = [g.ram.read(gpa + hdr_len, size) for gpa in gpas]
        before = g.ram.snapshot()
        assert g.ring.dequeue(NUM, hdr_len) == want
        assert g.ring.last_bytes == size * len(gpas)
        assert [x for x in g.ram.changed(before)
                if not g.drv.used <= x[0] < g.drv.used + 6 + 8 * NUM] == []
        assert g.drv.collect_used() == [((start_idx + k) % NUM, 0) for k in range(len(gpas))]
    finally:
        g.close()


@SETTINGS
@given(st.integers(0, 65535), gpa_bases, st.sampled_from([4, 16, 64, slices.MAX_SLICES]),
       st.data())
def test_dequeue_of_successive_bursts_reads_every_buffer(start_idx, gpa_base, cap, data):
    """Burst after burst on one ring: the same buffers again in another order,
    other buffers, other lengths; with a cache of ``cap`` slices (small ones
    overflow and pause it)."""
    saved = slices.MAX_SLICES, slices.PAUSE_MIN
    slices.MAX_SLICES, slices.PAUSE_MIN = cap, 2
    g = MempoolGuest(start_idx, gpa_base)
    try:
        points: list[tuple[int, int]] = []
        size, hdr_len = 0, 12
        for _ in range(data.draw(st.integers(1, 8))):
            again = points and data.draw(st.booleans())
            if not again:
                size = data.draw(st.sampled_from([0, 1, 60, 200]))
            elif size >= 2 and data.draw(st.booleans()):  # the same buffers, other header
                ln = hdr_len + size
                hdr_len = 22 - hdr_len   # 10 <-> 12
                size = ln - hdr_len
            if not again:
                hdr_len = data.draw(st.sampled_from([10, 12]))
            ln = hdr_len + size
            points = data.draw(st.permutations(points) if again else layouts(ln))
            gpas = g.post(points, ln, 0)
            for k, gpa in enumerate(gpas):
                g.ram.write(gpa, bytes([k % 251]) * hdr_len + os.urandom(size))
            want = [g.ram.read(gpa + hdr_len, size) for gpa in gpas]
            assert g.ring.dequeue(NUM, hdr_len) == want
            assert g.ring.last_bytes == size * len(gpas)
            assert [u for _, u in g.drv.collect_used()] == [0] * len(gpas)
            assert len(g.ring._slices) <= cap
    finally:
        slices.MAX_SLICES, slices.PAUSE_MIN = saved
        g.close()


@copiers
@SETTINGS
@given(st.integers(0, 200), st.integers(0, 64), st.integers(0, 65535), gpa_bases,
       st.booleans(), st.data())
def test_enqueue_into_mempool_layouts_writes_every_buffer(copier, size, spare, start_idx,
                                                          gpa_base, one_size, data):
    hdr_len = 12
    ln = hdr_len + size + spare
    points = data.draw(layouts(ln))
    frames = [os.urandom(size if one_size else data.draw(st.integers(0, size)))
              for _ in points]
    g = MempoolGuest(start_idx, gpa_base)
    try:
        gpas = g.post(points, ln, VRING_DESC_F_WRITE)
        header = bytes(10) + (1).to_bytes(2, "little")
        want = GuestRam.__new__(GuestRam)   # the reference: the same writes, in order
        want.regions = g.ram.regions
        want.maps = [bytearray(m) for m in g.ram.maps]
        for gpa, frame in zip(gpas, frames):
            mm, off = want._where(gpa, hdr_len + len(frame))
            mm[off:off + hdr_len + len(frame)] = header + frame
        with copies_by(copier):
            assert g.ring.enqueue(frames, hdr_len, True) == len(frames)
        assert g.ring.last_bytes == sum(map(len, frames))
        used = g.drv.used
        for r, got, ref in zip(g.ram.regions, g.ram.maps, want.maps):
            lo, hi = r.mmap_offset, r.mmap_offset + r.size
            if r.gpa <= used < r.gpa + r.size:   # the used ring changed too: compare around it
                u, v = r.mmap_offset + used - r.gpa, r.mmap_offset + used - r.gpa + 6 + 8 * NUM
                assert got[lo:u] == ref[lo:u] and got[v:hi] == ref[v:hi]
            else:
                assert got[lo:hi] == ref[lo:hi]
        assert g.drv.collect_used() == [((start_idx + k) % NUM, hdr_len + len(f))
                                        for k, f in enumerate(frames)]
    finally:
        g.close()


@copiers
@SETTINGS
@given(st.integers(0, 200), st.integers(0, 65535), gpa_bases, st.booleans(), st.data())
def test_a_buffer_outside_memory_fails_the_burst_untouched(copier, size, start_idx, gpa_base,
                                                          receive, data):
    """One run sticks out of its region (past its end, into the hole after it):
    VringError, and no byte of guest memory read into a frame or written."""
    hdr_len = 12
    ln = hdr_len + size
    points = data.draw(layouts(ln))
    k = data.draw(st.integers(0, len(points) - 1))
    region, _ = points[k]
    # From buffer k on, the run climbs past the end of the region.
    over = data.draw(st.integers(1, ln))
    step = data.draw(st.sampled_from([ln, 2368]))
    tail = len(points) - k
    points[k:] = [(region, RSIZE - ln + over - (tail - 1 - j) * step) for j in range(tail)]
    if points[k][1] < 0:
        return
    g = MempoolGuest(start_idx, gpa_base)
    try:
        g.post(points, ln, VRING_DESC_F_WRITE if receive else 0)
        before = g.ram.snapshot()
        try:
            if receive:
                with copies_by(copier):
                    g.ring.enqueue([bytes(size)] * len(points), hdr_len, True)
            else:
                g.ring.dequeue(NUM, hdr_len)
        except VringError as e:
            assert "outside guest memory" in str(e)
        else:
            raise AssertionError("a buffer outside guest memory went unnoticed")
        assert g.ram.changed(before) == [] or receive
        assert g.drv.used_idx == start_idx & 0xFFFF
    finally:
        g.close()
