"""The datapath: ports by datapath port number, and the packet walk.

    rx burst -> extract keys -> upcall (slow path) -> execute -> tx burst per port

The upcall is a callable handed in by the daemon, ``upcall(key, frame) ->
(actions, mask)``: the datapath never imports ofproto.  Ports whose netdev is
not PMD-polled (dummy ports, injected frames) are processed here in the
control process, as OVS's non-PMD thread does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from ovsd.dpif.execute import execute
from ovsd.netdev.base import Netdev
from ovsd.packet.parse import extract_keys

log = logging.getLogger(__name__)

Upcall = Callable[[int, bytes], tuple]

MAX_PORTS = 65535
BURST = 32


class DatapathError(Exception):
    pass


@dataclass
class DpStats:
    n_packets: int = 0
    n_upcalls: int = 0
    n_userspace: int = 0  # packets a controller action would have sent up
    n_tx_unknown_port: int = 0
    n_upcall_errors: int = 0


@dataclass(eq=False)
class DpPort:
    port_no: int
    name: str
    netdev: Netdev
    stats: dict = field(default_factory=dict)


class Datapath:
    def __init__(self, upcall: Upcall):
        self.upcall = upcall
        self.ports: dict[int, DpPort] = {}
        self._by_name: dict[str, DpPort] = {}
        self.stats = DpStats()

    # -- ports ----------------------------------------------------------------

    def add_port(self, name: str, netdev: Netdev, port_no: int | None = None) -> int:
        if name in self._by_name:
            raise DatapathError(f"datapath already has a port named {name}")
        if port_no is None:
            port_no = 1
        if port_no in self.ports:
            free = (n for n in range(port_no, MAX_PORTS) if n not in self.ports)
            port_no = next(free, None) or next(n for n in range(1, MAX_PORTS)
                                               if n not in self.ports)
        port = DpPort(port_no, name, netdev)
        self.ports[port_no] = port
        self._by_name[name] = port
        return port_no

    def del_port(self, port_no: int) -> Netdev:
        port = self.ports.pop(port_no)
        del self._by_name[port.name]
        return port.netdev

    def port_by_name(self, name: str) -> DpPort | None:
        return self._by_name.get(name)

    # -- the packet walk ----------------------------------------------------

    def process(self, in_port: int, frames: list) -> None:
        """Run one received burst to completion and transmit what it produced."""
        keys = extract_keys(frames, in_port)
        outputs: dict[int, list] = {}
        upcall = self.upcall
        n_userspace = 0
        for frame, key in zip(frames, keys):
            try:
                actions, _mask = upcall(key, frame)
            except Exception:
                # A bug in the slow path must cost one packet, not the switch.
                log.exception("upcall failed; dropping the packet")
                self.stats.n_upcall_errors += 1
                continue
            n_userspace += execute(frame, actions, outputs)
        self.stats.n_packets += len(frames)
        self.stats.n_upcalls += len(frames)
        self.stats.n_userspace += n_userspace
        self.transmit(outputs)

    def transmit(self, outputs: dict[int, list]) -> None:
        for port_no, frames in outputs.items():
            port = self.ports.get(port_no)
            if port is None:
                self.stats.n_tx_unknown_port += len(frames)
                continue
            sent = port.netdev.tx_burst(0, frames)
            if sent < len(frames):
                port.netdev.stats.tx_dropped += len(frames) - sent

    def poll_port(self, port_no: int) -> int:
        """Drain a non-PMD port's queue; returns the number of frames processed."""
        port = self.ports[port_no]
        total = 0
        while True:
            frames = port.netdev.rx_burst(0, BURST)
            if not frames:
                return total
            self.process(port_no, frames)
            total += len(frames)
