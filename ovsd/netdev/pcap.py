"""Classic libpcap files (linktype Ethernet), for dummy ports' rx_pcap/tx_pcap."""

from __future__ import annotations

import struct
import time
from typing import BinaryIO, Iterator

LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Appends frames to a pcap file, flushed after each burst so readers see them."""

    def __init__(self, path: str):
        self.path = path
        # Appended to, as OVS does: a restart or a re-added port continues the
        # file instead of wiping what was recorded.
        self._f: BinaryIO = open(path, "ab")
        if self._f.tell() == 0:
            self._f.write(_GLOBAL.pack(MAGIC_USEC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
            self._f.flush()

    def write(self, frames, now: float | None = None) -> None:
        if now is None:
            now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        out = self._f
        for frame in frames:
            n = len(frame)
            out.write(_RECORD.pack(sec, usec, min(n, SNAPLEN), n))
            out.write(frame[:SNAPLEN])
        out.flush()

    def close(self) -> None:
        self._f.close()


def read_pcap(path: str, offset: int = 0) -> Iterator[bytes]:
    """Frames of a pcap file; ``offset`` skips to a byte position past the header."""
    with open(path, "rb") as f:
        header = f.read(_GLOBAL.size)
        if len(header) < _GLOBAL.size:
            return
        magic = struct.unpack_from("<I", header)[0]
        endian = "<" if magic in (MAGIC_USEC, MAGIC_NSEC) else ">"
        record = struct.Struct(endian + "IIII")
        if offset > _GLOBAL.size:
            f.seek(offset)
        while True:
            rec = f.read(record.size)
            if len(rec) < record.size:
                return
            _, _, incl, _ = record.unpack(rec)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield data
