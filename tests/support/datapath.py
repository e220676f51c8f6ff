"""What tests of the Datapath class alone need: a port that records what it
is given, and UDP frames that differ in the fields megaflows look at."""

from __future__ import annotations

import struct

from ovsd.netdev.base import NetdevStats
from ovsd.packet.parse import OneLengthBurst


class Sink:
    """A netdev that takes every frame and keeps each burst it was given."""

    def __init__(self):
        self.stats = NetdevStats()
        self.bursts: list[list] = []
        #: per burst, whether it came as a OneLengthBurst
        self.one_length: list[bool] = []

    def tx_burst(self, qid: int, frames: list) -> int:
        # A vhost port trusts the type: frames of several lengths in it
        # would be laid out wrong (kcopy.py).
        marked = type(frames) is OneLengthBurst
        assert not marked or len(set(map(len, frames))) <= 1, \
            "a OneLengthBurst holding frames of several lengths reached a port"
        self.one_length.append(marked)
        self.bursts.append(list(frames))
        return len(frames)

    @property
    def sent(self) -> list:
        return [f for burst in self.bursts for f in burst]


def udp_frame(sport: int, src: int = 0x0A000001, pad: int = 0) -> bytes:
    """02:00:00:00:00:01 -> 02:00:00:00:00:02, IPv4 ``src`` -> 10.0.0.2, UDP
    ``sport`` -> 80, with ``pad`` bytes of payload."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + pad, 1, 0, 64, 17, 0,
                     src.to_bytes(4, "big"), bytes([10, 0, 0, 2]))
    return (bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip
            + struct.pack("!HHHH", sport, 80, 8 + pad, 0) + bytes(pad))
