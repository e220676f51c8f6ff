"""An afxdp port as a PMD holds it: the rx queues it polls and the socket it
transmits on, mapped in the PMD's own process from fds the control process
sent (AfxdpNetdev.rxq_handover / tx_handover).

Counts are kept here and reported to the control process as deltas
(``take_stats``), as for vhost-user ports.
"""

from __future__ import annotations

import fcntl
import os

from ovsd.dpif import drops as D
from ovsd.netdev.afxdp.xsk import XskQueue
from ovsd.netdev.base import NetdevStats

_TX_LOCK_BYTE = 0  # in the UMEM memfd, which every sharer of the socket holds


def _mapped(fds: list[int], layout: dict, close_fds: bool) -> XskQueue:
    try:
        return XskQueue(fds[0], fds[1], layout, close_fds=close_fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


class AfxdpRxQueue:
    def __init__(self, fds: list[int], layout: dict):
        self.xsk = _mapped(fds, layout, True)
        self._seen = (0, 0)

    def rx_burst(self, max_frames: int = 32) -> list:
        return self.xsk.rx_burst(max_frames)

    def take_stats(self) -> list[int] | None:
        now = (self.xsk.rx_packets, self.xsk.rx_bytes)
        if now == self._seen:
            return None
        delta = [now[0] - self._seen[0], now[1] - self._seen[1], 0, 0, 0, 0]
        self._seen = now
        return delta

    @property
    def position(self) -> tuple[None, int]:
        return None, 0  # the ring indices are in the shared rings

    def close(self) -> None:
        self.xsk.close()


class AfxdpTx:
    """Transmitting on one XDP socket; ``lock`` when other PMDs share it."""

    def __init__(self, fds: list[int], info: dict):
        self.xsk = _mapped(fds, info["layout"], True)
        # The UMEM memfd stays open as long as the mapping: a lock file every
        # sharer has, without another fd to send.
        self._lock_fd = fds[1] if info.get("lock") else None
        self.stats = NetdevStats()  # the datapath's view; the counts are below
        self.tx_dropped = 0
        self._seen = (0, 0)
        self.tx_drop_reason = D.TX_QUEUE_FULL

    def tx_burst(self, qid: int, frames: list) -> int:
        oversize = self.xsk.tx_oversize
        lock = self._lock_fd
        if lock is None:
            sent = self.xsk.tx_burst(frames)
        else:
            fcntl.lockf(lock, fcntl.LOCK_EX, 1, _TX_LOCK_BYTE)
            try:
                sent = self.xsk.tx_burst(frames)
            finally:
                fcntl.lockf(lock, fcntl.LOCK_UN, 1, _TX_LOCK_BYTE)
        if sent < len(frames):
            self.tx_dropped += len(frames) - sent
            self.tx_drop_reason = (D.MTU_EXCEEDED if self.xsk.tx_oversize != oversize
                                   else D.TX_QUEUE_FULL)
        return sent

    def flush(self) -> None:
        """Between polls: kick the kernel for descriptors a refused kick left
        in the ring (an empty burst costs one index compare otherwise)."""
        self.tx_burst(0, [])

    def take_stats(self) -> list[int] | None:
        now = (self.xsk.tx_packets, self.xsk.tx_bytes)
        if now == self._seen and not self.tx_dropped:
            return None
        delta = [0, 0, now[0] - self._seen[0], now[1] - self._seen[1], self.tx_dropped, 0]
        self._seen, self.tx_dropped = now, 0
        return delta

    def close(self) -> None:
        self.xsk.close()


class DroppingTx:
    """A port this PMD was given no socket for (the port has none open): its
    frames are dropped and counted."""

    tx_drop_reason = D.OUTPUT_PORT_DOWN

    def __init__(self) -> None:
        self.stats = NetdevStats()
        self.tx_dropped = 0

    def tx_burst(self, qid: int, frames: list) -> int:
        self.tx_dropped += len(frames)
        return 0

    def take_stats(self) -> list[int] | None:
        if not self.tx_dropped:
            return None
        delta, self.tx_dropped = [0, 0, 0, 0, self.tx_dropped, 0], 0
        return delta

    def close(self) -> None:
        pass
