"""The one interface the datapath knows about ports.

A netdev moves frames; it knows nothing about flows.  Receive and transmit
work on bursts (lists of frames) so per-packet costs stay inside one loop in
the caller.  Frames are ``bytes``-like objects; a netdev may hand out
memoryviews into its own buffers that stay valid until the next rx_burst on
the same queue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields


class NetdevError(Exception):
    """A port cannot be opened or configured; the message says why and what to do."""


@dataclass
class NetdevStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_dropped: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def add_counts(self, rx_packets: int, rx_bytes: int, tx_packets: int, tx_bytes: int,
                   tx_dropped: int, rx_dropped: int = 0) -> None:
        """A PMD's counts since its last report, for ports whose rings only
        PMDs touch (``Netdev.pmd_counted``)."""
        self.rx_packets += rx_packets
        self.rx_bytes += rx_bytes
        self.tx_packets += tx_packets
        self.tx_bytes += tx_bytes
        self.tx_dropped += tx_dropped
        self.rx_dropped += rx_dropped


class Netdev(ABC):
    """A port's device.  Subclasses set ``type`` and implement the bursts."""

    type: str = ""
    #: True when a PMD should busy-poll this port's rx queues; False when the
    #: control process feeds it (dummy ports) or polls it on events.
    pmd_polled: bool = False
    #: True when only PMDs see the port's traffic: they report its counts.
    pmd_counted: bool = False

    def __init__(self, name: str, options: dict[str, str]):
        self.name = name
        self.options = dict(options)
        self.stats = NetdevStats()

    @property
    def n_rxq(self) -> int:
        return 1

    @abstractmethod
    def rx_burst(self, qid: int, max_frames: int = 32) -> list:
        """Up to ``max_frames`` received frames (an empty list when idle)."""

    @abstractmethod
    def tx_burst(self, qid: int, frames: list) -> int:
        """Send ``frames``; returns how many were sent (the rest are counted as dropped)."""

    def reconfigure(self, options: dict[str, str]) -> None:
        """Apply changed options; raise NetdevError when they cannot be applied."""
        self.options = dict(options)

    def status(self) -> dict[str, str]:
        """Facts for Interface.status (driver name, link details...)."""
        return {}

    @property
    def link_up(self) -> bool:
        return True

    @property
    def mac(self) -> bytes | None:
        return None

    def close(self) -> None:
        """Release every resource (fds, files, rings)."""
