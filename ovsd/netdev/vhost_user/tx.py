"""Transmitting to a vhost-user port from a PMD: into the guest receive ring
the port's mapping chose for this process."""

from __future__ import annotations

from ovsd.netdev.base import NetdevStats
from ovsd.netdev.vhost_user.mapping import VhostMapping


class VhostTx:
    def __init__(self, mapping: VhostMapping):
        self.mapping = mapping
        self.stats = NetdevStats()

    def tx_burst(self, qid: int, frames: list) -> int:
        return self.mapping.tx_burst(frames)

    @property
    def tx_drop_reason(self) -> str:
        return self.mapping.tx_drop_reason

    def close(self) -> None:
        pass  # the PMD closes the mapping when the port goes
