"""Port type ``dummy``: no device, for tests and trying things out.

Frames enter through ``receive`` (ofctl inject, the counterpart of
netdev-dummy/receive) and leave into nothing, optionally recorded:
``options:tx_pcap=FILE`` records what the switch sends on the port,
``options:rx_pcap=FILE`` what it receives, ``options:pcap=FILE`` both.
"""

from __future__ import annotations

from collections import deque

from ovsd.netdev.base import Netdev, NetdevError
from ovsd.netdev.pcap import PcapWriter

MAX_QUEUED = 4096


class DummyNetdev(Netdev):
    type = "dummy"
    pmd_polled = False

    def __init__(self, name: str, options: dict[str, str]):
        super().__init__(name, options)
        self._rxq: deque = deque()
        self._rx_pcap: PcapWriter | None = None
        self._tx_pcap: PcapWriter | None = None
        self._pcap_paths: tuple = ()
        self._open_pcaps(options)

    def _open_pcaps(self, options: dict[str, str]) -> None:
        both = options.get("pcap")
        rx_path = options.get("rx_pcap") or both
        tx_path = options.get("tx_pcap") or both
        if (rx_path, tx_path) == self._pcap_paths:
            return
        for path in (rx_path, tx_path):
            if path and not path.startswith("/"):
                raise NetdevError(
                    f"dummy port {self.name}: pcap path {path!r} must be absolute "
                    "(the daemon's working directory is not yours)")
        self._close_pcaps()
        try:
            if rx_path and rx_path == tx_path:
                self._rx_pcap = self._tx_pcap = PcapWriter(rx_path)
            else:
                self._rx_pcap = PcapWriter(rx_path) if rx_path else None
                self._tx_pcap = PcapWriter(tx_path) if tx_path else None
        except OSError as e:
            self._close_pcaps()
            raise NetdevError(f"dummy port {self.name}: cannot open pcap file: {e}") from e
        self._pcap_paths = (rx_path, tx_path)

    def _close_pcaps(self) -> None:
        for w in {id(w): w for w in (self._rx_pcap, self._tx_pcap) if w}.values():
            w.close()
        self._rx_pcap = self._tx_pcap = None
        self._pcap_paths = ()

    def reconfigure(self, options: dict[str, str]) -> None:
        self._open_pcaps(options)
        super().reconfigure(options)

    def receive(self, frame: bytes) -> bool:
        """Queue ``frame`` as if it arrived on the wire; False if the queue is full."""
        if len(self._rxq) >= MAX_QUEUED:
            self.stats.rx_dropped += 1
            return False
        self._rxq.append(bytes(frame))
        return True

    def rx_burst(self, qid: int, max_frames: int = 32) -> list:
        q = self._rxq
        n = min(len(q), max_frames)
        if not n:
            return []
        frames = [q.popleft() for _ in range(n)]
        self.stats.rx_packets += n
        self.stats.rx_bytes += sum(map(len, frames))
        if self._rx_pcap:
            self._rx_pcap.write(frames)
        return frames

    def tx_burst(self, qid: int, frames: list) -> int:
        n = len(frames)
        self.stats.tx_packets += n
        self.stats.tx_bytes += sum(map(len, frames))
        if self._tx_pcap:
            self._tx_pcap.write(frames)
        return n

    def status(self) -> dict[str, str]:
        return {"driver_name": "dummy"}

    def close(self) -> None:
        self._close_pcaps()
        self._rxq.clear()
