"""Bursts written into guest buffers by one preadv (kcopy.py), and the ring's use of it."""

from __future__ import annotations

import mmap
import os
import struct

import pytest

from ovsd.netdev.vhost_user import kcopy
from ovsd.netdev.vhost_user.vring import VRING_DESC_F_WRITE, RingCounters, iovecs
from ovsd.packet.parse import OneLengthBurst
from tests.support.virtq_driver import GuestRam, VirtqDriver

DESC = struct.Struct("<QIHH")
HDR = bytes(10) + (1).to_bytes(2, "little")


def _iov(addrs, delta, length):
    """The iovecs a ring makes of write descriptors at guest ``addrs``."""
    raw = b"".join(DESC.pack(a, 2048, VRING_DESC_F_WRITE, 7) for a in addrs)
    return iovecs(int.from_bytes(raw, "little"), len(addrs), delta, length)


@pytest.mark.parametrize("gpa_base", [0, 0x1_4000_0000])
def test_scatter_puts_each_piece_at_its_buffer(gpa_base):
    with mmap.mmap(-1, 1 << 16) as mm:
        held, where = kcopy.anchor(mm)
        try:
            offsets = [0x8000, 0x100, 0x3000, 0x2f00, 0xfff0 - 76]  # any order
            pieces = [bytes([i + 1]) * 76 for i in range(len(offsets))]
            iov = _iov([gpa_base + o for o in offsets], where - gpa_base, 76)
            data = b"".join(pieces)
            assert kcopy.copier().scatter(iov, len(offsets), 76, data[12:], head=data[:12])
            for o, piece in zip(offsets, pieces):
                assert mm[o:o + 76] == piece
            untouched = bytearray(mm)
            for o in offsets:
                untouched[o:o + 76] = bytes(76)
            assert untouched == bytes(len(mm))
        finally:
            del held


def test_scatter_refuses_what_it_cannot_do_in_one_call_and_writes_nothing():
    with mmap.mmap(-1, 1 << 16) as mm:
        held, where = kcopy.anchor(mm)
        iov = _iov([0, 4096], where, 76)
        assert not kcopy.copier().scatter(iov, 2, 76, bytes(151))
        assert not kcopy.copier().scatter(iov, 2, 76, bytes(140), head=bytes(11))
        big = kcopy.STAGE_BYTES // 2 + 1
        assert not kcopy.copier().scatter(_iov([0, 4096], where, big), 2, big, bytes(2 * big))
        n = kcopy.MAX_IOVECS + 1   # more iovecs than one call may take
        iov = _iov([16 * i for i in range(n)], where, 16)
        assert not kcopy.copier().scatter(iov, n, 16, bytes(16 * n))
        assert mm[:] == bytes(len(mm))
        n -= 1
        assert kcopy.copier().scatter(_iov([16 * i for i in range(n)], where, 16), n, 16,
                                      b"\xa5" * 16 * n)
        assert mm[:16 * n] == b"\xa5" * 16 * n
        del held


def test_an_address_the_kernel_cannot_write_reports_false():
    # Page 0 is never mapped: preadv fails with EFAULT instead of the
    # process faulting, and the caller falls back.
    assert not kcopy.copier().scatter(_iov([16, 4096], 0, 76), 2, 76, bytes(152))


def test_a_forked_child_gets_its_own_staging_file():
    parent = kcopy.copier()
    pid = os.fork()
    if pid == 0:  # the child: exit status says what it found
        child = kcopy.copier()
        os._exit(0 if child is not None and child is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert kcopy.copier() is parent


# -- the ring ---------------------------------------------------------------------------

NUM = 256


class _Guest:
    """Receive buffers in region 0, the ring itself in region 1."""

    def __init__(self, count):
        self.ram = GuestRam([NUM * 2100, 1 << 16], gpa_base=0x1_4000_0000)
        self.mem = self.ram.memory()
        self.drv = VirtqDriver(self.ram, NUM, region=1, buffer_regions=[0])
        for _ in range(count):
            self.drv.add_rx([2048], publish=False)
        self.drv.publish()
        self.ring = self.drv.vring(self.mem, RingCounters(bytearray(8)), 0)

    def close(self):
        self.ring.release()
        self.mem.close()
        self.ram.close()


def _enqueue(frames, *, kernel: bool):
    """Guest memory and used entries after one enqueue of ``frames``, with the
    kernel's copy for every burst or never."""
    g = _Guest(len(frames))
    saved = kcopy.MIN_BURST
    kcopy.MIN_BURST = 1 if kernel else 1 << 30
    try:
        assert g.ring.enqueue(frames, 12, True) == len(frames)
        assert g.ring.last_bytes == sum(map(len, frames))
        return g.ram.snapshot(), g.drv.collect_used()
    finally:
        kcopy.MIN_BURST = saved
        g.close()


@pytest.mark.parametrize("size", [0, 1, 64, kcopy.MAX_PIECE - 12])
@pytest.mark.parametrize("count", [1, 2, 64, NUM])
def test_the_kernel_copy_writes_what_the_interpreter_writes(size, count, monkeypatch):
    frames = OneLengthBurst(os.urandom(size) for _ in range(count))
    used = []
    real = kcopy.BurstCopier.scatter

    def counting(self, *args, **kwargs):
        used.append(args[1])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(kcopy.BurstCopier, "scatter", counting)
    kernel = _enqueue(frames, kernel=True)
    assert used == [count]
    used.clear()
    assert kernel == _enqueue(frames, kernel=False)
    assert used == []


def test_frames_of_several_lengths_adding_up_are_not_taken_as_one_length():
    # 60 + 68 bytes in turn: the sum is that of 64-byte frames, the layout is not.
    frames = [os.urandom(60 if i % 2 else 68) for i in range(NUM)]
    frames[0] = os.urandom(64)
    frames[1] = os.urandom(64)
    got = _enqueue(frames, kernel=True)
    assert got == _enqueue(frames, kernel=False)
    snap, used = got
    assert [ln for _, ln in used] == [12 + len(f) for f in frames]


def test_the_defaults_send_big_bursts_of_small_frames_to_the_kernel(monkeypatch):
    used = []
    real = kcopy.BurstCopier.scatter
    monkeypatch.setattr(kcopy.BurstCopier, "scatter",
                        lambda self, *a, **k: used.append(a[1]) or real(self, *a, **k))
    for count, size in ((kcopy.MIN_BURST, 64), (kcopy.MIN_BURST - 1, 64),
                        (NUM, kcopy.MAX_PIECE - 12), (NUM, kcopy.MAX_PIECE - 11)):
        g = _Guest(count)
        try:
            assert g.ring.enqueue([bytes(size)] * count, 12, True) == count
        finally:
            g.close()
    assert used == [kcopy.MIN_BURST, NUM]


def test_the_ring_keeps_the_mapping_it_wrote_through_until_released():
    g = _Guest(NUM)
    buffers = g.mem.gpa_spans[0][3]   # the ring itself holds no export of region 0
    try:
        saved, kcopy.MIN_BURST = kcopy.MIN_BURST, 1
        try:
            assert g.ring.enqueue([bytes(64)] * NUM, 12, True) == NUM
        finally:
            kcopy.MIN_BURST = saved
        g.mem.close()   # the ring still holds the buffers' mapping: it stays mapped
        assert not buffers.closed
        g.ring.release()
        buffers.close()  # now nothing holds it
        assert buffers.closed
    finally:
        g.ram.close()
