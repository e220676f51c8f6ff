"""Simple match (OVS 3.1's dpif-netdev "simple match" tier).

When every megaflow of an input port matches nothing but the input port, the
ethertype, the VLAN tag and the IP fragment bits (an ``in_port=1,
actions=output:2`` patch, NORMAL-free port forwarding), a packet's flow is
found from those few header bytes alone: no key extraction, no EMC.  A port
whose megaflows look at anything more falls back to the full walk until the
caches are next flushed.

The simple key is built in key space (``ovsd.packet.key``) so that it can
be masked with a megaflow's mask and looked up by the megaflow's own key.
It must equal what the full parser would put in those fields, so anything
unusual (an IPv4 fragment, IPv6, a truncated tag, an 802.3 length field)
is left to the full path.
"""

from __future__ import annotations

from ovsd.dpif.flow import DpFlow
from ovsd.packet import key as K
from ovsd.packet.parse import joined_if_one_length

_F = K.FIELDS
SIMPLE_MASK = (_F["in_port"].mask | _F["dl_type"].mask | _F["vlan_tci"].mask
               | _F["vlan_tpid"].mask | _F["nw_frag"].mask)
_DL_TYPE = _F["dl_type"].offset
_TCI = _F["vlan_tci"].offset
_TPID = _F["vlan_tpid"].offset
IPV4_NOFRAG = 0x0800 << _DL_TYPE  # the commonest simple key, less the in_port bits

_ETH_IP = b"\x08\x00"
#: byte -> the byte's fragment-offset bits (the low 6 of IPv4's byte 6)
_FRAG_HIGH_BITS = bytes(b & 0x3F for b in range(256))


def uniform_ipv4(frames: list) -> bool:
    """True when every frame of the burst is an untagged IPv4 frame of the same
    length (at least 22 bytes) that is not a fragment: then every frame has the
    simple key ``IPV4_NOFRAG`` and one lookup answers the whole burst.

    Equal lengths let the frames be joined once and each header byte read
    from all of them by one strided slice, so the burst is judged by a
    handful of C-level operations instead of a test per frame."""
    size = len(frames[0])
    joined = joined_if_one_length(frames, size) if size >= 22 else None
    if joined is None:
        return False
    n = len(frames)
    return (joined[12::size].count(0x08) == n and joined[13::size].count(0) == n
            and joined[21::size].count(0) == n
            and joined[20::size].translate(_FRAG_HIGH_BITS).count(0) == n)


def simple_key(frame, port_bits: int) -> int | None:
    """The key-space value of (in_port, dl_type, vlan, nw_frag) for ``frame``,
    or None when only the full parser can tell."""
    n = len(frame)
    if n < 14:
        return None
    off = 12
    tag = 0
    et = frame[12] << 8 | frame[13]
    if et == 0x8100 or et == 0x88A8:
        if n < 18:
            return None
        tag = (et << _TPID) | ((frame[14] << 8 | frame[15] | K.VLAN_CFI) << _TCI)
        off = 16
        et = frame[16] << 8 | frame[17]
    if et < 0x600 or et == 0x86DD:
        return None  # 802.3/LLC or IPv6 (fragments live in extension headers)
    if et == 0x0800 and n >= off + 10 and (frame[off + 8] & 0x3F or frame[off + 9]):
        return None  # a fragment, or a header only the full parser can judge
    return port_bits | tag | (et << _DL_TYPE)


class SimpleMatch:
    def __init__(self) -> None:
        # in_port -> [(mask, {masked key: flow})]; absent = not (yet) simple
        self._tables: dict[int, list[tuple[int, dict]]] = {}
        self._not_simple: set[int] = set()
        self.hits = 0

    def tables(self, in_port: int) -> list[tuple[int, dict]] | None:
        if in_port in self._not_simple:
            return None
        return self._tables.get(in_port)

    def add(self, in_port: int, flow: DpFlow) -> None:
        if in_port in self._not_simple:
            return
        if flow.mask & ~SIMPLE_MASK:
            self._not_simple.add(in_port)
            self._tables.pop(in_port, None)
            return
        tables = self._tables.setdefault(in_port, [])
        for mask, table in tables:
            if mask == flow.mask:
                table[flow.key] = flow
                return
        tables.append((flow.mask, {flow.key: flow}))

    def remove(self, in_port: int, flow: DpFlow) -> None:
        for mask, table in self._tables.get(in_port, ()):
            if mask == flow.mask and table.get(flow.key) is flow:
                del table[flow.key]

    def clear(self) -> None:
        self._tables.clear()
        self._not_simple.clear()
