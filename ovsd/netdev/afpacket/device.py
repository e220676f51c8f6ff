"""Port type ``system``: an existing Linux interface (a veth, a NIC), as in OVS.

The port is split the way PMD processes need it:

- ``SystemNetdev`` (control side) checks the interface, opens ``n_rxq``
  receive sockets (TPACKET_V3 rx rings, one PACKET_FANOUT hash group when
  there are several, so the kernel spreads flows across them; promiscuous
  while they live; blind to the host's own transmissions), and answers for
  the port: link state, MAC, status, counters.
- A PMD gets each rx socket's fd over SCM_RIGHTS and builds
  ``RxQueue(fd, **netdev.detach_rxq(qid))``; it builds its own transmit
  handle with ``TxQueue.from_info(netdev.tx_info())``.
- In-process ``rx_burst``/``tx_burst`` (tests, the control process) run on
  the same RxQueue/TxQueue classes.

Counters are the kernel's interface counters (/sys/class/net/IF/statistics,
as OVS's netdev-linux reads them from the kernel), plus the frames the rx
rings had no room for (PACKET_STATISTICS) and truncated frames the in-process
queues dropped, in rx_dropped.

Options (Interface.options), all validated when the port is opened or
reconfigured:
  n_rxq           rx queues (sockets in one fanout group), 1 to 64, default 1
  rx_ring_blocks  blocks per rx ring, default 64
  rx_block_size   bytes per block (a power of two, 4 KiB to 4 MiB), default
                  64 KiB: 454 minimum-size frames, so the default ring holds
                  about 40 ms of 0.7 Mpps
  tx_ring_frames  slots per transmit ring, default 1024
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields

from ovsd.dpif import drops as D
from ovsd.netdev.base import Netdev, NetdevError, NetdevStats
from ovsd.netdev.linux_iface import KernelIface
from ovsd.netdev.afpacket.ring import (RxRing, if_mtu, open_rx_socket,
                                       rx_ring_drops)
from ovsd.netdev.afpacket.rx import RxQueue
from ovsd.netdev.afpacket.tx import DEFAULT_TX_FRAMES, TxQueue

DEFAULT_RX_BLOCKS = 64
DEFAULT_RX_BLOCK_SIZE = 64 * 1024
MAX_RXQ = 64

_STAT_NAMES = tuple(f.name for f in fields(NetdevStats))  # also the names in sysfs


def _int_option(options: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = options.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw), 0)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise NetdevError(f"options:{key}={raw!r}: expected an integer from {lo} to {hi}")
    return value


@dataclass(frozen=True)
class SystemConfig:
    n_rxq: int
    rx_ring: RxRing
    tx_ring_frames: int

    @classmethod
    def from_options(cls, options: dict[str, str]) -> "SystemConfig":
        n_rxq = _int_option(options, "n_rxq", 1, 1, MAX_RXQ)
        blocks = _int_option(options, "rx_ring_blocks", DEFAULT_RX_BLOCKS, 2, 65536)
        block_size = _int_option(options, "rx_block_size", DEFAULT_RX_BLOCK_SIZE,
                                 RxRing.MIN_BLOCK, RxRing.MAX_BLOCK)
        frames = _int_option(options, "tx_ring_frames", DEFAULT_TX_FRAMES, 16, 65536)
        return cls(n_rxq, RxRing(block_size, blocks), frames)


class SystemNetdev(KernelIface, Netdev):
    type = "system"
    pmd_polled = True

    def __init__(self, name: str, options: dict[str, str]):
        super().__init__(name, options)
        self._config = SystemConfig.from_options(options)
        self._find("system")
        self._rxqs: dict[int, RxQueue] = {}
        self._detached: set[int] = set()
        self._txq: TxQueue | None = None
        self._ring_drops = 0
        self._truncated = 0
        self._kernel = dict.fromkeys(_STAT_NAMES, 0)
        self._socks: list[socket.socket] = self._open_rx(self._config)
        #: Bumped whenever the rx sockets are replaced (reconfigure): PMDs
        #: holding the old fds must be given rxq_fds() again.
        self.rxq_epoch = 1

    # -- rx sockets --------------------------------------------------------------

    def _open_rx(self, config: SystemConfig) -> list[socket.socket]:
        socks: list[socket.socket] = []
        fanout = -1 if config.n_rxq > 1 else None
        try:
            for _ in range(config.n_rxq):
                sock, fanout = open_rx_socket(self.name, self.ifindex, config.rx_ring,
                                              fanout)
                socks.append(sock)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks

    def _close_rx(self) -> None:
        for q in self._rxqs.values():
            self._truncated += q.truncated
            q.close()
        self._rxqs.clear()
        for sock in self._socks:
            self._ring_drops += rx_ring_drops(sock)
            sock.close()
        self._socks = []

    @property
    def n_rxq(self) -> int:
        return len(self._socks)

    @property
    def rx_ring(self) -> RxRing:
        return self._config.rx_ring

    def rxq_fds(self) -> list[int]:
        """One socket fd per rx queue, to send to the PMD that polls it."""
        return [s.fileno() for s in self._socks]

    def detach_rxq(self, qid: int) -> dict:
        """Stop reading queue ``qid`` in this process; returns the keyword
        arguments for ``RxQueue(fd, **...)`` in its new owner: where to start
        (block, skip; block None when this process never read it: the new
        owner finds the first unread block) and the ring's geometry
        (msgpack-able).  Until ``attach_rxq`` takes it back, rx_burst on it
        is an error: two readers of one ring would hand blocks back twice."""
        self._check_qid(qid)
        q = self._rxqs.pop(qid, None)
        block, skip = (None, 0) if q is None else q.position
        if q is not None:
            self._truncated += q.truncated
            q.close()
        self._detached.add(qid)
        return {"block": block, "skip": skip, "ring": self._config.rx_ring.as_dict()}

    def attach_rxq(self, qid: int, block: int | None = None, skip: int = 0) -> None:
        """Read queue ``qid`` in this process again, from where its last owner
        stopped (that owner's RxQueue.position; None when it is not known)."""
        self._check_qid(qid)
        if qid not in self._detached:
            raise NetdevError(f"system port {self.name}: rx queue {qid} is not detached")
        self._detached.discard(qid)
        self._rxqs[qid] = RxQueue(self._socks[qid].fileno(), block, skip,
                                  ring=self._config.rx_ring)

    def tx_info(self) -> dict:
        """What a PMD needs for TxQueue.from_info (msgpack-able)."""
        try:
            mtu = if_mtu(self.name)
        except OSError:
            mtu = self.mtu
        return {"ifindex": self.ifindex, "name": self.name, "mtu": mtu,
                "tx_ring_frames": self._config.tx_ring_frames}

    def _check_qid(self, qid: int) -> None:
        if not 0 <= qid < len(self._socks):
            raise NetdevError(f"system port {self.name}: no rx queue {qid} "
                              f"(n_rxq={len(self._socks)})")

    # -- in-process bursts --------------------------------------------------------

    def rxq(self, qid: int) -> RxQueue:
        """This process's reader of queue ``qid`` (created on first use)."""
        q = self._rxqs.get(qid)
        if q is None:
            self._check_qid(qid)
            if qid in self._detached:
                raise NetdevError(f"system port {self.name}: rx queue {qid} was handed to "
                                  "another reader (detach_rxq); attach_rxq takes it back")
            q = self._rxqs[qid] = RxQueue(self._socks[qid].fileno(),
                                          ring=self._config.rx_ring)
        return q

    @property
    def txq(self) -> TxQueue:
        """This process's transmit handle (created on first use)."""
        if self._txq is None:
            self._txq = TxQueue(self.ifindex, frames=self._config.tx_ring_frames,
                                mtu=self.mtu)
        return self._txq

    def drop_counts(self) -> dict[str, int]:
        """Drops the kernel and the rings counted for this port, by reason."""
        for sock in self._socks:
            self._ring_drops += rx_ring_drops(sock)
        return {D.RX_RING_OVERRUN: self._ring_drops,
                D.OVERSIZED_FRAME: self._truncated + sum(q.truncated
                                                         for q in self._rxqs.values())}

    @property
    def tx_drop_reason(self) -> str:
        return self._txq.tx_drop_reason if self._txq is not None else D.OUTPUT_PORT_DOWN

    def rx_burst(self, qid: int, max_frames: int = 32) -> list:
        q = self._rxqs.get(qid) or self.rxq(qid)
        return q.rx_burst(max_frames)

    def tx_burst(self, qid: int, frames: list) -> int:
        try:
            txq = self._txq or self.txq
        except NetdevError:
            return 0  # the interface is gone: the caller counts the drops
        return txq.tx_burst(frames)

    # -- configuration ------------------------------------------------------------

    def reconfigure(self, options: dict[str, str]) -> None:
        config = SystemConfig.from_options(options)
        if config.n_rxq != self._config.n_rxq or config.rx_ring != self._config.rx_ring:
            socks = self._open_rx(config)  # may fail: then nothing changed
            self._close_rx()
            self._socks = socks
            self._detached.clear()
            self.rxq_epoch += 1
        if config.tx_ring_frames != self._config.tx_ring_frames and self._txq is not None:
            self._txq.close()
            self._txq = None
        self._config = config
        super().reconfigure(options)

    # -- facts --------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        out = dict(self._driver)
        out.update(self.link_status())
        out["n_rxq"] = str(len(self._socks))
        return out

    # -- counters -----------------------------------------------------------------

    @property
    def stats(self) -> NetdevStats:
        """Kernel counters + ring drops + whatever callers added to the object
        (the datapath adds its transmit drops with ``stats.tx_dropped += n``)."""
        shown = self._shown
        current = self._stats_obj
        added = self._added
        for name in _STAT_NAMES:
            added[name] += getattr(current, name) - shown[name]
        kernel = self._read_kernel()
        for sock in self._socks:
            self._ring_drops += rx_ring_drops(sock)
        kernel["rx_dropped"] += (self._ring_drops + self._truncated
                                 + sum(q.truncated for q in self._rxqs.values()))
        for name in _STAT_NAMES:
            value = kernel[name] + added[name]
            setattr(current, name, value)
            shown[name] = value
        return current

    @stats.setter
    def stats(self, value: NetdevStats) -> None:
        self._stats_obj = value
        self._shown = value.as_dict()
        self._added = value.as_dict()

    def _read_kernel(self) -> dict[str, int]:
        """The interface's counters; the last ones read once it is gone."""
        name = self.current_name()
        if name is not None:
            base = f"/sys/class/net/{name}/statistics/"
            values = {}
            try:
                for stat in _STAT_NAMES:
                    fd = os.open(base + stat, os.O_RDONLY)
                    try:
                        values[stat] = int(os.read(fd, 32))
                    finally:
                        os.close(fd)
            except (OSError, ValueError):
                pass
            else:
                self._kernel = values
        return dict(self._kernel)

    def close(self) -> None:
        """Close every socket and ring; promiscuous mode ends with the last
        socket (PMDs holding copies of the rx fds must close theirs too)."""
        self._close_rx()
        if self._txq is not None:
            self._txq.close()
            self._txq = None
