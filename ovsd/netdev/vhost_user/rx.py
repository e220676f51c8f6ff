"""Receiving from a vhost-user port: what the guest transmitted on one queue
pair's TX ring (ring 2*qid+1), polled by the PMD that owns the queue."""

from __future__ import annotations

from ovsd.dpif.drops import OVERSIZED_FRAME
from ovsd.netdev.vhost_user.mapping import VhostMapping
from ovsd.netdev.vhost_user.vring import VringError


class VhostRxQueue:
    def __init__(self, mapping: VhostMapping, qid: int):
        self.mapping = mapping
        self.qid = qid
        self._ring_index = 2 * qid + 1

    def rx_burst(self, max_frames: int = 32) -> list:
        m = self.mapping
        ring = m.rings.get(self._ring_index)
        if ring is None:
            return []
        try:
            frames = ring.dequeue(max_frames, m.hdr_len)
        except VringError as e:
            m.fail(str(e))
            return []
        if frames:
            m.rx_packets += len(frames)
            m.rx_bytes += ring.last_bytes
        if ring.dropped_oversize:  # frames longer than any Ethernet frame we carry
            m.rx_dropped += ring.dropped_oversize
            m.drops[OVERSIZED_FRAME] += ring.dropped_oversize
            ring.dropped_oversize = 0
        return frames

    @property
    def position(self) -> tuple[None, int]:
        return None, 0  # the ring's indices are in the shared counters

    def close(self) -> None:
        pass  # the mapping belongs to the port, not to one queue
