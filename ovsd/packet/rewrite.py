"""Executing the datapath's header rewrites on a frame.

``apply_set(frame, header, fields)`` is OVS's masked set action: each field
becomes ``old & ~mask | value & mask``.  Which header must really be there
for a set to apply follows OVS 3.1's userspace datapath (odp-execute.c and
packets.c), made strict where OVS trusts the flow match: a set on a header
the frame does not have (truncated IPv4, TCP with a bad data offset, an L4
set on a later fragment, ND on a non-ND message...) leaves the frame as it
was.  ``proto`` and ``frag`` of ipv4/ipv6 are accepted and ignored, as OVS's
datapath ignores them: they are not writable.

Checksums are updated incrementally (RFC 1624), so a checksum that was wrong
stays wrong by the same amount, and a UDP checksum of 0 (none) stays 0.
L4 checksums follow address changes through the pseudo-header: TCP and UDP
when at least their fixed header is there, ICMPv6 for IPv6.  Two places
where this is right and OVS 3.1 is not: no L4 checksum is touched on a later
fragment (its L4 bytes are payload), and for IPv6 the source address always
counts in the pseudo-header while the destination does not when a routing
header still has segments left (RFC 8200 8.1); an atomic fragment (offset 0,
no more fragments) is a whole packet and gets its checksum updated.  SCTP's
CRC32c is updated by XOR as OVS does, without a pass over the payload.
"""

from __future__ import annotations

from ovsd.packet.checksum import crc32c_xor_delta, csum_replace
from ovsd.packet.parse import (
    ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, ETH_TYPE_RARP, ETH_TYPE_VLAN,
    ETH_TYPE_VLAN_8021AD, IPPROTO_AH, IPPROTO_FRAGMENT, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_OPT_SOURCE_LINKADDR,
    ND_OPT_TARGET_LINKADDR, NW_FRAG_LATER, HeaderOffsets, header_offsets,
)

# The fields each set header accepts, as OVS names its datapath key attributes.
SET_FIELDS: dict[str, frozenset[str]] = {
    "eth": frozenset(("src", "dst")),
    "ipv4": frozenset(("src", "dst", "proto", "tos", "ttl", "frag")),
    "ipv6": frozenset(("src", "dst", "label", "proto", "tclass", "hlimit", "frag")),
    "tcp": frozenset(("src", "dst")),
    "udp": frozenset(("src", "dst")),
    "sctp": frozenset(("src", "dst")),
    "icmp": frozenset(("type", "code")),
    "icmpv6": frozenset(("type", "code")),
    "arp": frozenset(("sip", "tip", "op", "sha", "tha")),
    "nd": frozenset(("target", "sll", "tll")),
}

_BYTES_MASK = {n: (1 << 8 * n) - 1 for n in (1, 2, 4, 6, 16)}


def apply_set(frame: bytearray, header: str, fields) -> None:
    """Masked write of ``fields`` ((name, value, mask), ...) into ``header`` of ``frame``."""
    setter = _SETTERS.get(header)
    if setter is None:
        raise ValueError(f"set action on unknown header {header!r}; "
                         f"expected one of {', '.join(SET_FIELDS)}")
    allowed = SET_FIELDS[header]
    for f in fields:
        if f[0] not in allowed:
            raise ValueError(f"set({header}) has no field {f[0]!r}; "
                             f"expected one of {', '.join(sorted(allowed))}")
    setter(frame, fields)


def push_vlan(frame, tpid: int, tci: int) -> bytearray:
    """A copy of ``frame`` with a new outermost tag after the MACs (CFI cleared, as OVS)."""
    if tpid != ETH_TYPE_VLAN and tpid != ETH_TYPE_VLAN_8021AD:
        raise ValueError(f"push_vlan with TPID {tpid:#06x}; expected 0x8100 or 0x88a8")
    tag = (tpid << 16 | tci & 0xEFFF).to_bytes(4, "big")
    out = bytearray(frame[:12])
    out += tag
    out += frame[12:]
    return out


def pop_vlan(frame) -> bytearray:
    """A copy of ``frame`` without its outermost VLAN tag (an unchanged copy if untagged)."""
    if len(frame) >= 18:
        tpid = frame[12] << 8 | frame[13]
        if tpid == ETH_TYPE_VLAN or tpid == ETH_TYPE_VLAN_8021AD:
            out = bytearray(frame[:12])
            out += frame[16:]
            return out
    return bytearray(frame)


# -- helpers --------------------------------------------------------------------

def _rd(frame, off: int, n: int) -> int:
    return int.from_bytes(frame[off:off + n], "big")


def _wr(frame, off: int, n: int, value: int) -> None:
    frame[off:off + n] = value.to_bytes(n, "big")


def _merge(old: int, value: int, mask: int, width_mask: int) -> int:
    return (old & ~mask | value & mask) & width_mask


def _set_masked(frame, off: int, n: int, value: int, mask: int) -> tuple[int, int]:
    """Masked write of an n-byte field; returns (old, new)."""
    old = int.from_bytes(frame[off:off + n], "big")
    new = (old & ~mask | value & mask) & _BYTES_MASK[n]
    if new != old:
        frame[off:off + n] = new.to_bytes(n, "big")
    return old, new


def _update_csum(frame, off: int, old: int, new: int, udp: bool) -> None:
    csum = frame[off] << 8 | frame[off + 1]
    if udp and not csum:
        return  # UDP without a checksum stays without one
    csum = csum_replace(csum, old, new)
    if udp and not csum:
        csum = 0xFFFF  # 0 would mean "no checksum"
    frame[off] = csum >> 8
    frame[off + 1] = csum & 0xFF


def _pseudo_csum(h: HeaderOffsets) -> tuple[int, bool]:
    """(offset of the L4 checksum an address change affects or -1, is UDP)."""
    if h.l4 < 0 or h.nw_frag & NW_FRAG_LATER:
        return -1, False
    size = h.l4_end - h.l4
    proto = h.nw_proto
    if proto == IPPROTO_TCP and size >= 20:
        return h.l4 + 16, False
    if proto == IPPROTO_UDP and size >= 8:
        return h.l4 + 6, True
    if proto == IPPROTO_ICMPV6 and size >= 4 and h.dl_type == ETH_TYPE_IPV6:
        return h.l4 + 2, False
    return -1, False


# -- one setter per header --------------------------------------------------------

def _set_eth(frame, fields) -> None:
    if len(frame) < 14:
        return
    for name, value, mask in fields:
        _set_masked(frame, 6 if name == "src" else 0, 6, value, mask)


def _set_ipv4(frame, fields) -> None:
    h = header_offsets(frame)
    if h.dl_type != ETH_TYPE_IP or not h.l3_ok:
        return
    l3 = h.l3
    csum = frame[l3 + 10] << 8 | frame[l3 + 11]
    csum0 = csum
    l4_csum = -2  # not looked up yet: TTL/TOS-only sets never need it
    udp = False
    for name, value, mask in fields:
        if name == "src" or name == "dst":
            old, new = _set_masked(frame, l3 + (12 if name == "src" else 16), 4, value, mask)
            if new != old:
                csum = csum_replace(csum, old, new)
                if l4_csum == -2:
                    l4_csum, udp = _pseudo_csum(h)
                if l4_csum >= 0:
                    _update_csum(frame, l4_csum, old, new, udp)
        elif name == "tos":
            old, new = _set_masked(frame, l3 + 1, 1, value, mask)
            if new != old:
                csum = csum_replace(csum, old, new)  # low byte of its word
        elif name == "ttl":
            old, new = _set_masked(frame, l3 + 8, 1, value, mask)
            if new != old:
                csum = csum_replace(csum, old << 8, new << 8)
    if csum != csum0:
        frame[l3 + 10] = csum >> 8
        frame[l3 + 11] = csum & 0xFF


def _ipv6_pseudo_rules(frame, h: HeaderOffsets) -> tuple[bool, bool]:
    """(L4 checksum covers this packet at all, a routing header has segments left)."""
    recalc = True
    routed = False
    p = h.l3 + 40
    nh = frame[h.l3 + 6]
    # header_offsets already checked every extension header up to h.l4.
    while p < h.l4:
        nxt = frame[p]
        if nh == IPPROTO_FRAGMENT:
            # Only a packet that starts at offset 0 holds the L4 header.
            recalc = not (frame[p + 2] << 8 | frame[p + 3]) & 0xFFF8
            p += 8
        elif nh == IPPROTO_AH:
            p += (frame[p + 1] + 2) * 4
        else:
            if nh == IPPROTO_ROUTING and frame[p + 3]:
                routed = True
            p += (frame[p + 1] + 1) * 8
        nh = nxt
    return recalc, routed


def _set_ipv6(frame, fields) -> None:
    h = header_offsets(frame)
    if h.dl_type != ETH_TYPE_IPV6 or not h.l3_ok:
        return
    l3 = h.l3
    for name, value, mask in fields:
        if name == "src" or name == "dst":
            old, new = _set_masked(frame, l3 + (8 if name == "src" else 24), 16, value, mask)
            if new != old:
                l4_csum, udp = _pseudo_csum(h)
                if l4_csum >= 0:
                    recalc, routed = _ipv6_pseudo_rules(frame, h)
                    if recalc and not (routed and name == "dst"):
                        _update_csum(frame, l4_csum, old, new, udp)
        elif name == "label":
            word = _rd(frame, l3, 4)
            _wr(frame, l3, 4, word & ~0xFFFFF | _merge(word & 0xFFFFF, value, mask, 0xFFFFF))
        elif name == "tclass":
            word = _rd(frame, l3, 4)
            tc = _merge(word >> 20 & 0xFF, value, mask, 0xFF)
            _wr(frame, l3, 4, word & 0xF00FFFFF | tc << 20)
        elif name == "hlimit":
            _set_masked(frame, l3 + 7, 1, value, mask)


def _l4_present(h: HeaderOffsets, proto: int, ipv4: bool, ipv6: bool) -> bool:
    return (h.nw_proto == proto and h.l4_ok
            and (ipv4 and h.dl_type == ETH_TYPE_IP or ipv6 and h.dl_type == ETH_TYPE_IPV6))


def _set_ports(frame, fields, h: HeaderOffsets) -> tuple[int, int]:
    """Masked write of src/dst ports at h.l4; returns the (old, new) port pair."""
    l4 = h.l4
    old = frame[l4] << 24 | frame[l4 + 1] << 16 | frame[l4 + 2] << 8 | frame[l4 + 3]
    new = old
    for name, value, mask in fields:
        if name == "src":
            new = new & 0xFFFF | _merge(new >> 16, value, mask, 0xFFFF) << 16
        else:
            new = new & 0xFFFF0000 | _merge(new & 0xFFFF, value, mask, 0xFFFF)
    if new != old:
        _wr(frame, l4, 4, new)
    return old, new


def _set_tcp(frame, fields) -> None:
    h = header_offsets(frame)
    if _l4_present(h, IPPROTO_TCP, True, True):
        old, new = _set_ports(frame, fields, h)
        if new != old:
            _update_csum(frame, h.l4 + 16, old, new, False)


def _set_udp(frame, fields) -> None:
    h = header_offsets(frame)
    if _l4_present(h, IPPROTO_UDP, True, True):
        old, new = _set_ports(frame, fields, h)
        if new != old:
            _update_csum(frame, h.l4 + 6, old, new, True)


def _set_sctp(frame, fields) -> None:
    h = header_offsets(frame)
    if _l4_present(h, IPPROTO_SCTP, True, True):
        old, new = _set_ports(frame, fields, h)
        if new != old:
            delta = crc32c_xor_delta((old ^ new).to_bytes(4, "big"), h.l4_end - h.l4 - 4)
            at = h.l4 + 8
            stored = int.from_bytes(frame[at:at + 4], "little") ^ delta
            frame[at:at + 4] = stored.to_bytes(4, "little")


def _set_icmp_common(frame, fields, h: HeaderOffsets) -> None:
    l4 = h.l4
    old = frame[l4] << 8 | frame[l4 + 1]
    new = old
    for name, value, mask in fields:
        if name == "type":
            new = new & 0xFF | _merge(new >> 8, value, mask, 0xFF) << 8
        else:
            new = new & 0xFF00 | _merge(new & 0xFF, value, mask, 0xFF)
    if new != old:
        _wr(frame, l4, 2, new)
        _update_csum(frame, l4 + 2, old, new, False)


def _set_icmp(frame, fields) -> None:
    h = header_offsets(frame)
    if _l4_present(h, IPPROTO_ICMP, True, False):
        _set_icmp_common(frame, fields, h)


def _set_icmpv6(frame, fields) -> None:
    h = header_offsets(frame)
    if _l4_present(h, IPPROTO_ICMPV6, False, True):
        _set_icmp_common(frame, fields, h)


_ARP_FIELDS = {"op": (6, 2), "sha": (8, 6), "sip": (14, 4), "tha": (18, 6), "tip": (24, 4)}


def _set_arp(frame, fields) -> None:
    h = header_offsets(frame)
    if not h.l3_ok or (h.dl_type != ETH_TYPE_ARP and h.dl_type != ETH_TYPE_RARP):
        return
    for name, value, mask in fields:
        off, n = _ARP_FIELDS[name]
        _set_masked(frame, h.l3 + off, n, value, mask)


def _set_nd(frame, fields) -> None:
    h = header_offsets(frame)
    if not _l4_present(h, IPPROTO_ICMPV6, False, True):
        return
    l4, end = h.l4, h.l4_end
    if (end - l4 < 24 or frame[l4 + 1]
            or (frame[l4] != ND_NEIGHBOR_SOLICIT and frame[l4] != ND_NEIGHBOR_ADVERT)):
        return
    # Only the first source or target link-layer option is rewritten, as OVS.
    lla = -1
    lla_kind = ""
    p = l4 + 24
    while end - p >= 8 and frame[p + 1]:
        if frame[p + 1] == 1 and frame[p] == ND_OPT_SOURCE_LINKADDR:
            lla, lla_kind = p + 2, "sll"
            break
        if frame[p + 1] == 1 and frame[p] == ND_OPT_TARGET_LINKADDR:
            lla, lla_kind = p + 2, "tll"
            break
        p += frame[p + 1] * 8
    for name, value, mask in fields:
        if name == "target":
            old, new = _set_masked(frame, l4 + 8, 16, value, mask)
        elif name == lla_kind:
            old, new = _set_masked(frame, lla, 6, value, mask)
        else:
            continue
        if new != old:
            _update_csum(frame, l4 + 2, old, new, False)


_SETTERS = {
    "eth": _set_eth,
    "ipv4": _set_ipv4,
    "ipv6": _set_ipv6,
    "tcp": _set_tcp,
    "udp": _set_udp,
    "sctp": _set_sctp,
    "icmp": _set_icmp,
    "icmpv6": _set_icmpv6,
    "arp": _set_arp,
    "nd": _set_nd,
}
assert _SETTERS.keys() == SET_FIELDS.keys()
