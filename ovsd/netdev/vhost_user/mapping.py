"""One PMD's view of a vhost-user port: the guest memory mapped into this
process and a SplitVring per ready ring, rebuilt whenever the control process
sends the port's new state (``update``).

Every PMD keeps one, because every PMD may transmit to the port; the PMD that
polls a queue pair also receives from it.  Ring indices live in the shared
counters area, so a ring can move between PMDs, and the control process can
answer GET_VRING_BASE, without anyone handing positions around.

Transmitters share a guest receive ring only when there are more of them than
ready queue pairs; then they take a POSIX record lock on that ring's byte of
the counters file around each burst (a syscall pair per burst, and only then).
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from collections import Counter
from typing import Callable

from ovsd.dpif import drops as D
from ovsd.netdev.vhost_user.memory import GuestMemory, GuestMemoryError, Region
from ovsd.netdev.vhost_user.vring import RingCounters, SplitVring, VringError

log = logging.getLogger("ovsd.vhost")

LOCK_BASE = 4096  # lock byte offsets: past the counters themselves


class VhostMapping:
    def __init__(self, name: str, odp_port: int, on_error: Callable[[int, str], None]):
        self.name = name
        self.odp_port = odp_port
        self.on_error = on_error
        self.rings: dict[int, SplitVring] = {}
        self.hdr_len = 12
        self.mergeable = False
        self.failed = False
        self.memory: GuestMemory | None = None
        self.mem_gen = -1
        self.epoch = -1
        self._counters_fd: int | None = None
        self._counters_mm: mmap.mmap | None = None
        self._counters: RingCounters | None = None
        self._call_fds: list[int] = []
        #: The guest receive ring this process transmits on, and its lock (or None).
        self.tx_ring: SplitVring | None = None
        self.tx_lock: int | None = None
        # Counted here, reported to the control process as deltas.
        self.rx_packets = self.rx_bytes = self.rx_dropped = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0
        self.tx_retries = self.tx_failures = 0
        #: options:tx-retries-max (from update()): how often a burst the ring
        #: took only part of is offered again (while each try places more).
        self.tx_retries_max = 0
        #: Drops by reason since the last report (the PMD's drop-stats).
        self.drops: Counter = Counter()
        #: Why the last transmit burst fell short (the datapath counts it).
        self.tx_drop_reason = D.GUEST_RING_FULL

    def update(self, info: dict, fds: list[int], tx_rank: int, tx_n: int) -> None:
        """Take the port's state from the control process (vhost_info())."""
        keep: set[int] = set()
        try:
            self._drop_rings()
            if self._counters is None:
                self._counters_mm = mmap.mmap(fds[0], mmap.PAGESIZE)
                self._counters = RingCounters(self._counters_mm)
                self._counters_fd = fds[0]
                keep.add(fds[0])
            self.epoch = info["epoch"]
            self.hdr_len, self.mergeable = info["hdr_len"], info["mergeable"]
            self.tx_retries_max = info["tx_retries_max"]
            regions = info["regions"]
            if info["mem_gen"] != self.mem_gen or (self.memory is None) != (not regions):
                self._drop_memory()
                if regions:
                    self.memory = GuestMemory([Region(*r) for r in regions],
                                              fds[1:1 + len(regions)])
                self.mem_gen = info["mem_gen"]
            self.failed = False
            for index, num, desc, avail, used, call in info["rings"]:
                call_fd = fds[call] if call >= 0 else None
                if call_fd is not None:
                    keep.add(call_fd)
                    self._call_fds.append(call_fd)
                self.rings[index] = SplitVring(
                    self.memory, index, num, desc, avail, used, self._counters,
                    event_idx=info["event_idx"], indirect=info["indirect"],
                    call_fd=call_fd)
            self._choose_tx(tx_rank, tx_n)
        except (GuestMemoryError, VringError) as e:
            self.fail(str(e))
        finally:
            # Memory fds are mapped (a mapping outlives its fd); a second
            # counters fd is a dup of the area already mapped.
            for fd in fds:
                if fd not in keep:
                    os.close(fd)

    def _choose_tx(self, rank: int, n: int) -> None:
        rx_rings = sorted(i for i in self.rings if i % 2 == 0)
        self.tx_ring, self.tx_lock = None, None
        if not rx_rings:
            return
        index = rx_rings[rank % len(rx_rings)]
        self.tx_ring = self.rings[index]
        sharers = sum(1 for r in range(n) if r % len(rx_rings) == rank % len(rx_rings))
        if sharers > 1:
            self.tx_lock = LOCK_BASE + index

    def fail(self, reason: str) -> None:
        """The guest broke the ring protocol: stop touching its memory, and tell
        the control process, which resets the connection."""
        self._drop_rings()
        self.tx_ring = None
        self.drops[D.VHOST_DESCRIPTOR_ERROR] += 1
        if not self.failed:
            self.failed = True
            self.on_error(self.odp_port, f"guest error on port {self.name}: {reason}")

    def _drop_rings(self) -> None:
        for ring in self.rings.values():
            ring.release()
        self.rings = {}
        self.tx_ring = None
        for fd in self._call_fds:
            os.close(fd)
        self._call_fds = []

    def _drop_memory(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None

    # -- transmit (every PMD) -----------------------------------------------------------

    def tx_burst(self, frames: list) -> int:
        ring = self.tx_ring
        if ring is None:
            self.tx_dropped += len(frames)
            self.tx_drop_reason = D.OUTPUT_PORT_DOWN
            return 0
        lock = self.tx_lock
        try:
            if lock is not None:
                fcntl.lockf(self._counters_fd, fcntl.LOCK_EX, 1, lock)
            try:
                sent = ring.enqueue(frames, self.hdr_len, self.mergeable)
                n_bytes = ring.last_bytes
                if sent < len(frames) and sent and self.tx_retries_max:
                    sent, n_bytes = self._retry(ring, frames, sent, n_bytes)
            finally:
                if lock is not None:
                    fcntl.lockf(self._counters_fd, fcntl.LOCK_UN, 1, lock)
        except VringError as e:
            self.fail(str(e))
            self.tx_dropped += len(frames)
            self.tx_drop_reason = D.VHOST_DESCRIPTOR_ERROR
            return 0
        self.tx_packets += sent
        self.tx_bytes += n_bytes
        if sent < len(frames):
            self.tx_dropped += len(frames) - sent
            self.tx_failures += len(frames) - sent
            self.tx_drop_reason = D.GUEST_RING_FULL
        return sent

    def _retry(self, ring: SplitVring, frames: list, sent: int,
               n_bytes: int) -> tuple[int, int]:
        """The ring took the first ``sent`` frames only: offer the rest again,
        as OVS does, up to ``tx_retries_max`` times while each try places
        some (a guest that polls frees buffers meanwhile); a try that places
        none means the guest is not taking any, and ends it."""
        tries = 0
        while tries < self.tx_retries_max:
            tries += 1
            more = ring.enqueue(frames[sent:], self.hdr_len, self.mergeable)
            if not more:
                break
            n_bytes += ring.last_bytes
            sent += more
            if sent == len(frames):
                break
        self.tx_retries += tries
        return sent, n_bytes

    def take_stats(self) -> list[int] | None:
        """Counters since the last call, or None when nothing happened."""
        out = [self.rx_packets, self.rx_bytes, self.tx_packets, self.tx_bytes,
               self.tx_dropped, self.rx_dropped, self.tx_retries, self.tx_failures]
        if not any(out):
            return None
        self.rx_packets = self.rx_bytes = self.rx_dropped = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0
        self.tx_retries = self.tx_failures = 0
        return out

    def close(self) -> None:
        self._drop_rings()
        self._drop_memory()
        if self._counters is not None:
            self._counters.release()
            self._counters = None
        if self._counters_mm is not None:
            self._counters_mm.close()
            self._counters_mm = None
        if self._counters_fd is not None:
            os.close(self._counters_fd)
            self._counters_fd = None
