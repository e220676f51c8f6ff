"""Target ``vring``: split virtqueues over guest memory the fuzzer writes.

Guest memory is two regions inside one anonymous mapping, each between
PROT_NONE guard pages:

    [guard][region 0: 64 KiB][guard][region 1: 16 KiB][guard]

so a read or write that strays outside a region kills the process (the
pytest wrapper runs this target in a subprocess for that reason).  The
input chooses the ring size, features, the device's indices and the ring
placement, then its bytes become region 0 from offset 0: descriptor table,
avail ring, used ring and buffers, in that order, so every byte the fuzzer
flips lands in a ring structure or a buffer (loops, out-of-range indexes and
addresses, overflowing lengths, chains longer than the ring, jumping avail
indexes).  A script of dequeue/enqueue calls then runs: each returns or
raises VringError, nothing else.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

from ovsd.netdev.vhost_user.memory import GuestMemory, Region
from ovsd.netdev.vhost_user.vring import (VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
                                          VRING_DESC_F_WRITE, RingCounters, SplitVring,
                                          VringError)

MAX_LEN = 8192
PAGE = mmap.PAGESIZE
SIZES = (64 * 1024, 16 * 1024)
GPAS = (0, 0x10_0000)
UVAS = (0x7F00_0000_0000, 0x7F10_0000_0000)
DESC = struct.Struct("<QIHH")

_STATE: dict = {}


def _guarded_memory() -> tuple[GuestMemory, mmap.mmap, list[int]]:
    """A GuestMemory whose regions sit between PROT_NONE pages of one mapping."""
    total = PAGE + sum(s + PAGE for s in SIZES)
    big = mmap.mmap(-1, total, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                    mmap.PROT_READ | mmap.PROT_WRITE)
    view = (ctypes.c_char * total).from_buffer(big)
    base = ctypes.addressof(view)
    del view  # an exported buffer would pin the mapping
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    offsets, guards, off = [], [0], PAGE
    for s in SIZES:
        offsets.append(off)
        off += s
        guards.append(off)
        off += PAGE
    for g in guards:
        if libc.mprotect(base + g, PAGE, 0) != 0:  # PROT_NONE
            raise OSError(ctypes.get_errno(), "mprotect")
    regions = [Region(gpa, size, uva, o) for gpa, size, uva, o in zip(GPAS, SIZES, UVAS, offsets)]
    # Built by hand: GuestMemory maps fds itself, and an fd mapping cannot
    # have guard pages inside it.  The translation tables are all SplitVring
    # uses, and they point into the guarded mapping.
    mem = GuestMemory.__new__(GuestMemory)
    mem.regions = tuple(regions)
    mem._maps = [big]
    mem.gpa_spans = tuple((r.gpa, r.gpa + r.size, r.mmap_offset - r.gpa, big) for r in regions)
    mem.uva_spans = tuple((r.uva, r.uva + r.size, r.mmap_offset - r.uva, big) for r in regions)
    return mem, big, offsets


def setup() -> None:
    mem, big, offsets = _guarded_memory()
    call_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    _STATE.update(mem=mem, big=big, offsets=offsets, call_fd=call_fd)


def _layout(num: int) -> tuple[int, int, int, int]:
    """Offsets in region 0 of the descriptor table, avail ring, used ring and
    the first buffer byte, packed one after the other."""
    desc = 0
    avail = 16 * num
    used = (avail + 6 + 2 * num + 3) // 4 * 4
    bufs = (used + 6 + 8 * num + 15) // 16 * 16
    return desc, avail, used, bufs


def one_input(data: bytes) -> None:
    if len(data) < 8:
        return
    mem, big, offsets, call_fd = (_STATE[k] for k in ("mem", "big", "offsets", "call_fd"))
    num = 1 << (data[0] % 9)
    flags = data[1]
    event_idx, indirect = bool(flags & 1), bool(flags & 2)
    hdr_len = 12 if flags & 4 else 10
    mergeable = bool(flags & 8) and hdr_len == 12
    last_avail, used_idx = struct.unpack_from("<HH", data, 2)
    n_ops = data[6] % 8 + 1
    script = data[7:7 + 2 * n_ops]
    image = data[7 + 2 * n_ops:]
    desc, avail, used, _ = _layout(num)
    if flags & 0x10 and len(image) >= 6:
        # Anywhere (aligned or not, inside or not): the constructor must refuse.
        d, a, u = struct.unpack_from("<HHH", image)
        desc, avail, used = d * 8, a, u * 2
    base0, base1 = offsets
    big[base0:base0 + SIZES[0]] = image[:SIZES[0]].ljust(SIZES[0], b"\0")
    big[base1:base1 + SIZES[1]] = bytes(SIZES[1])
    counters = RingCounters(bytearray(8))
    counters.set(0, last_avail, used_idx)
    try:
        vr = SplitVring(mem, 0, num, UVAS[0] + desc, UVAS[0] + avail, UVAS[0] + used,
                        counters, event_idx=event_idx, indirect=indirect,
                        call_fd=call_fd if flags & 0x20 else None)
    except VringError:
        return
    for i in range(0, len(script) - 1, 2):
        kind, arg = script[i], script[i + 1]
        try:
            if kind & 1:
                frames = vr.dequeue(arg % 300 + 1, hdr_len)
                assert all(isinstance(f, bytes) and len(f) <= 65535 for f in frames)
            else:
                sizes = [(arg * (j + 7)) % (1 << (kind >> 4) * 1 + 7) for j in range(kind % 5 + 1)]
                frames = [bytes([j]) * s for j, s in enumerate(sizes)]
                n = vr.enqueue(frames, hdr_len, mergeable)
                assert 0 <= n <= len(frames)
        except VringError as e:
            assert str(e)
            return
        _ = vr.avail_pending
        la, ui = counters.get(0)
        assert 0 <= la <= 0xFFFF and 0 <= ui <= 0xFFFF
    try:
        os.eventfd_read(call_fd)
    except BlockingIOError:
        pass


# -- seeds: rings a driver would build --------------------------------------------

def _seed(num: int, flags: int, tx: bool, ops: list[tuple[int, int]], *,
          indirect: bool = False, chain: int = 1, second_region: bool = False) -> bytes:
    desc, avail, used, bufs = _layout(num)
    image = bytearray(bufs + 4096)
    heads = []
    nxt_buf = bufs
    d = 0
    for h in range(min(num, 4)):
        if d + chain > num:
            break
        heads.append(d)
        for c in range(chain):
            f = (VRING_DESC_F_NEXT if c < chain - 1 else 0) | (0 if tx else VRING_DESC_F_WRITE)
            addr = GPAS[1] + 64 * d if second_region else nxt_buf
            DESC.pack_into(image, desc + 16 * d, addr, 64, f, d + 1)
            image[nxt_buf:nxt_buf + 64] = bytes(range(64))
            nxt_buf += 64
            d += 1
    if indirect and num >= 2:
        table = nxt_buf
        DESC.pack_into(image, table, bufs, 32, VRING_DESC_F_NEXT | (0 if tx else 2), 1)
        DESC.pack_into(image, table + 16, bufs + 32, 32, 0 if tx else 2, 0)
        DESC.pack_into(image, desc, table, 32, VRING_DESC_F_INDIRECT, 0)
    for i, h in enumerate(heads):
        struct.pack_into("<H", image, avail + 4 + 2 * i, h)
    struct.pack_into("<H", image, avail + 2, len(heads))
    script = b"".join(bytes(op) for op in ops)
    return bytes([num.bit_length() - 1, flags, 0, 0, 0, 0, len(ops) - 1]) + script + bytes(image)


def seeds() -> list[bytes]:
    deq, enq = (1, 8), (0x30, 20)
    return [
        _seed(4, 0x00, True, [deq]),
        _seed(8, 0x04, True, [deq, deq], chain=2),
        _seed(4, 0x06, True, [deq], indirect=True),
        _seed(4, 0x24, False, [enq, enq]),
        _seed(8, 0x0E, False, [enq], chain=3),
        _seed(16, 0x2D, False, [(0x70, 200)], second_region=True),
        _seed(1, 0x00, True, [deq, enq]),
    ]
