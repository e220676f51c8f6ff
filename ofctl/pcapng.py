"""A pcapng writer for `ofctl capture`: one section, one Ethernet interface
(the port), an Enhanced Packet Block per frame with its direction
(epb_flags) and, for a dropped frame, the drop reason as a comment.
Readable by tshark, Wireshark and scapy."""

from __future__ import annotations

import struct
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_COMMENT, _OPT_IF_NAME, _OPT_EPB_FLAGS, _OPT_IF_TSRESOL = 1, 2, 2, 9
_INBOUND, _OUTBOUND = 1, 2


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


class PcapngWriter:
    def __init__(self, out: BinaryIO, port: str, snaplen: int = 65535):
        self.out = out
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b"")
        idb = (struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen)
               + _option(_OPT_IF_NAME, port.encode()) + _option(_OPT_IF_TSRESOL, b"\x06")
               + _option(0, b""))
        out.write(_block(_SHB, shb) + _block(_IDB, idb))

    def write(self, t: float, frame: bytes, direction: str, drop: str | None = None) -> None:
        us = int(t * 1_000_000)
        options = _option(_OPT_EPB_FLAGS,
                          struct.pack("<I", _INBOUND if direction == "rx" else _OUTBOUND))
        if drop:
            options += _option(_OPT_COMMENT, f"dropped: {drop}".encode())
        body = (struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(frame), len(frame))
                + _pad(frame) + options + _option(0, b""))
        self.out.write(_block(_EPB, body))
        self.out.flush()
