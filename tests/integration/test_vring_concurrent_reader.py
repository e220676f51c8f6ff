"""The device's index stores as a guest sees them from another CPU.

A frontend polls used->idx while the PMD writes it, and the control process
reads the shared ring counters while a PMD updates them.  Each store must go
from the old value to the new one in one step: a reader that ever sees
anything else (a zero, a half-written value) computes a count of used
entries near 65536 and walks stale ring slots.  DPDK's virtio driver did
exactly that when a store was not one step (found by `make soak`).

Here the device works a transmit ring of 256 descriptors as fast as it can
while a forked process on the other CPU reads the same shared memory in a
tight loop and checks that no change it sees is a step backwards.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

import pytest

from ovsd.netdev.vhost_user.vring import RingCounters
from tests.support.virtq_driver import GuestRam, VirtqDriver

NUM = 256
BURST = 32
SECONDS = 1.5
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")   # one load: both of a ring's counters at once

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="needs two CPUs: the reader must run while "
                                       "the device stores")


def _backward(prev: int, new: int) -> bool:
    """``new`` lies behind ``prev`` (free-running 16-bit indices)."""
    return (new - prev) & 0xFFFF >= 0x8000


def _watch(used_mm: mmap.mmap, used_off: int, counters: mmap.mmap, deadline: float) -> str:
    """Poll used->idx and ring 0's counters until ``deadline``; the first step
    backwards seen, or ''.  A value that flickers through anything else (a
    zero) shows as one step back, going there or coming back.  A block of reads
    the scheduler interrupted is not judged: the device may have gone round the
    16-bit space meanwhile."""
    unpack, unpack32 = U16.unpack_from, U32.unpack_from
    prev_used = unpack(used_mm, used_off)[0]
    prev_c = unpack32(counters, 0)[0]
    judged = 0
    while time.monotonic() < deadline:
        steps = []
        t0 = time.perf_counter()
        for _ in range(1000):
            used = unpack(used_mm, used_off)[0]
            if used != prev_used:
                steps.append(("used->idx", prev_used, used))
                prev_used = used
            c = unpack32(counters, 0)[0]
            if c != prev_c:
                steps.append(("counters' last_avail", prev_c & 0xFFFF, c & 0xFFFF))
                steps.append(("counters' used", prev_c >> 16, c >> 16))
                prev_c = c
        if time.perf_counter() - t0 > 0.005:
            continue
        judged += 1
        for what, a, b in steps:
            if _backward(a, b):
                return f"{what} went from {a} to {b}"
    return "" if judged > 10 else f"only {judged} blocks of reads ran undisturbed"


def test_guest_polling_used_idx_only_sees_it_step_forward():
    ram = GuestRam([1 << 20, 1 << 20])
    mem = ram.memory()
    shared = mmap.mmap(-1, mmap.PAGESIZE)   # MAP_SHARED: the child sees our stores
    counters = RingCounters(shared)
    drv = VirtqDriver(ram, NUM, region=1, buffer_regions=[0])
    frame = bytes(range(64))
    for _ in range(NUM):   # slot i holds descriptor i for good
        drv.add_tx(frame, publish=False)
    drv.publish()
    ring = drv.vring(mem, counters, 0)
    used_mm, used_off = ram._where(drv.used + 2, 2)
    deadline = time.monotonic() + SECONDS
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the reader: report and leave without running pytest's teardown
        try:
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
            verdict = _watch(used_mm, used_off, shared, deadline + 0.2)
            os.write(wfd, verdict.encode() or b"ok")
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        stores = 0
        while time.monotonic() < deadline:
            assert len(ring.dequeue(BURST, 12)) == BURST
            stores += 1
            # The guest reclaims at once and makes every slot available again.
            drv.set_avail_idx(drv.used_idx + NUM)
        verdict = os.read(rfd, 4096).decode()
    finally:
        os.sched_setaffinity(0, os.sched_getaffinity(os.getppid()))
        os.close(rfd)
        os.waitpid(pid, 0)
        mem.close()
        ram.close()
    assert stores > 1000, f"the device made only {stores} bursts in {SECONDS} s"
    assert verdict == "ok", f"after {stores} bursts a reader saw: {verdict}"
