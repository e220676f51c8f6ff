"""Split virtqueue micro benchmark: ``python -m bench.vring_micro``.

Prints ns per packet for SplitVring.dequeue (guest transmit) and
SplitVring.enqueue (guest receive, mergeable buffers, one buffer per frame)
with 64- and 1500-byte frames at bursts of 32 and 256: the median of 5 runs,
each timing only the ring calls.  The guest side is the tests' driver for
the setup (memfd guest RAM, one buffer per descriptor) and a few struct
calls per burst to give the buffers back, so only the device side is timed.
The ring has a call eventfd, as with QEMU or virtio_user, but the guest polls
(NO_INTERRUPT): no syscalls in the timed part.
"""

from __future__ import annotations

import os
import statistics
import struct
import sys
import time

from ovsd.netdev.vhost_user.vring import RingCounters
from tests.support.virtq_driver import GuestRam, VirtqDriver

RING = 1024
HDR = 12
RUNS = 5
PACKETS_PER_RUN = 64 * 1024


class _Guest:
    """A driver whose chains never change: giving buffers back is rewriting heads."""

    def __init__(self, ram: GuestRam, frame_size: int, transmit: bool):
        self.drv = VirtqDriver(ram, RING)
        self.transmit = transmit
        frame = bytes(range(256)) * (frame_size // 256 + 1)
        for _ in range(RING):
            if transmit:
                self.drv.add_tx(frame[:frame_size], hdr_len=HDR, publish=False)
            else:
                self.drv.add_rx([2048], publish=False)
        self.drv.publish()
        mm, self.avail = ram._where(self.drv.avail, 6 + 2 * RING)
        _, self.used = ram._where(self.drv.used, 6 + 8 * RING)
        self.mm = mm
        self.avail_idx = self.drv.avail_idx
        self.last_used = 0
        self.drv.set_no_interrupt(True)

    def give_back(self) -> None:
        """Make the chains the device returned available again."""
        mm = self.mm
        used_idx = struct.unpack_from("<H", mm, self.used + 2)[0]
        n = (used_idx - self.last_used) & 0xFFFF
        for k in range(n):
            slot = (self.last_used + k) % RING
            head = struct.unpack_from("<I", mm, self.used + 4 + 8 * slot)[0]
            struct.pack_into("<H", mm, self.avail + 4 + 2 * ((self.avail_idx + k) % RING), head)
        self.last_used = used_idx
        self.avail_idx = (self.avail_idx + n) & 0xFFFF
        struct.pack_into("<H", mm, self.avail + 2, self.avail_idx)


def _run(op: str, size: int, burst: int) -> float:
    with GuestRam([RING * 2304 + (1 << 20)]) as ram:
        guest = _Guest(ram, size, op == "dequeue")
        mem = ram.memory()
        counters = RingCounters(bytearray(8))
        call_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        vring = guest.drv.vring(mem, counters, 0, call_fd=call_fd)
        frames = [bytes(size) for _ in range(burst)]
        clock = time.perf_counter_ns
        elapsed = 0
        done = 0
        while done < PACKETS_PER_RUN:
            if op == "dequeue":
                t0 = clock()
                got = len(vring.dequeue(burst, HDR))
                elapsed += clock() - t0
            else:
                t0 = clock()
                got = vring.enqueue(frames, HDR, True)
                elapsed += clock() - t0
            if got != burst:
                raise RuntimeError(f"{op} moved {got} of {burst} frames")
            done += got
            guest.give_back()
        del vring
        mem.close()
        try:
            os.eventfd_read(call_fd)
            raise RuntimeError("the ring notified a guest that asked for no interrupts")
        except BlockingIOError:
            pass
        os.close(call_fd)
    return elapsed / done


def measure(op: str, size: int, burst: int, runs: int = RUNS) -> float:
    """Median ns/packet over ``runs`` runs."""
    return statistics.median(_run(op, size, burst) for _ in range(runs))


def run() -> None:
    print("split virtqueue, ns/packet (median of 5 runs), mergeable rx buffers, "
          "call fd set, NO_INTERRUPT guest")
    print(f"{'operation':<10}{'frame':>7}{'burst':>7}{'ns/pkt':>9}")
    for op in ("dequeue", "enqueue"):
        for size in (64, 1500):
            for burst in (32, 256):
                print(f"{op:<10}{size:>7}{burst:>7}{measure(op, size, burst):>9.0f}")
                sys.stdout.flush()


if __name__ == "__main__":
    run()
