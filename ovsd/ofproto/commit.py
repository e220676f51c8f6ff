"""Turning flow changes into datapath set/push/pop actions ("commit").

xlate changes its copy of the flow key as OpenFlow actions run; the packet in
the datapath only changes when an output needs it.  At each output, the
fields where the flow differs from ``base`` (what the packet is now) become
masked set actions, header by header, in OVS's order (Ethernet, L3, L4,
ICMP, VLAN), and ``base`` catches up.  The set's mask is the wildcard mask
of the field (the bits that were read or written), so a DSCP-only rewrite
leaves the packet's ECN bits alone, and fields that did not change are left
out, as OVS's commit_odp_actions does.
"""

from __future__ import annotations

from ovsd.dpif import odp_actions as odp
from ovsd.ofproto.fields import (ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6,
                                 IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
                                 IPPROTO_TCP, IPPROTO_UDP)
from ovsd.packet import key as K

_F = {name: (f.offset, (1 << f.width) - 1) for name, f in K.FIELDS.items()}

# header -> ((datapath attribute, key field), ...)
_ETH = (("src", "dl_src"), ("dst", "dl_dst"))
_IPV4 = (("src", "nw_src"), ("dst", "nw_dst"), ("tos", "nw_tos"), ("ttl", "nw_ttl"))
_IPV6 = (("src", "ipv6_src"), ("dst", "ipv6_dst"), ("label", "ipv6_label"),
         ("tclass", "nw_tos"), ("hlimit", "nw_ttl"))
_ARP = (("sip", "nw_src"), ("tip", "nw_dst"), ("op", "nw_proto"),
        ("sha", "arp_sha"), ("tha", "arp_tha"))
_ND = (("target", "nd_target"), ("sll", "arp_sha"), ("tll", "arp_tha"))
_L4 = (("src", "tp_src"), ("dst", "tp_dst"))
_ICMP = (("type", "tp_src"), ("code", "tp_dst"))
_L4_HEADER = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_SCTP: "sctp"}
_ND_TYPES = (135, 136)
_NW_PROTO_MASK = K.FIELDS["nw_proto"].mask
_VLAN_BITS = K.FIELDS["vlan_tci"].mask | K.FIELDS["vlan_tpid"].mask


def _get(key: int, name: str) -> int:
    off, m = _F[name]
    return (key >> off) & m


class Committer:
    """Holds the datapath's view of the packet (``base``) during one xlate."""

    def __init__(self, base: int, base_inner_vlan: tuple[int, int] = (0, 0)):
        self.base = base
        self.base_inner = base_inner_vlan

    def commit(self, flow: int, inner_vlan: tuple[int, int], wc: int,
               out: list) -> int:
        """Append the actions that make the packet match ``flow``; returns
        the wildcard mask, widened by what the comparison looked at."""
        if flow == self.base and inner_vlan == self.base_inner:
            return wc
        base = self.base
        wc = self._header(flow, "eth", _ETH, wc, out)
        # Which headers exist depends on nw_proto: the megaflow must say so.
        wc |= _NW_PROTO_MASK
        nw_proto = _get(flow, "nw_proto")
        dl_type = _get(base, "dl_type")
        # A flow whose nw_proto is 0 has no L3 header to rewrite (a truncated
        # or malformed IP header reads as all zeros), as in OVS.
        if nw_proto:
            if dl_type == ETH_TYPE_IP:
                wc = self._header(flow, "ipv4", _IPV4, wc, out)
            elif dl_type == ETH_TYPE_IPV6:
                wc = self._header(flow, "ipv6", _IPV6, wc, out)
                if nw_proto == IPPROTO_ICMPV6 and _get(flow, "tp_src") in _ND_TYPES:
                    wc |= K.FIELDS["tp_src"].mask
                    wc = self._header(flow, "nd", _ND, wc, out)
            elif dl_type == ETH_TYPE_ARP:
                wc = self._header(flow, "arp", _ARP, wc, out)
            if dl_type in (ETH_TYPE_IP, ETH_TYPE_IPV6) and nw_proto in _L4_HEADER:
                wc = self._header(flow, _L4_HEADER[nw_proto], _L4, wc, out)
        if dl_type == ETH_TYPE_IP and nw_proto == IPPROTO_ICMP:
            wc = self._header(flow, "icmp", _ICMP, wc, out, masked=False)
        elif dl_type == ETH_TYPE_IPV6 and nw_proto == IPPROTO_ICMPV6:
            wc = self._header(flow, "icmpv6", _ICMP, wc, out, masked=False)
        wc = self._vlans(flow, inner_vlan, wc, out)
        return wc

    def _header(self, flow: int, header: str, attrs, wc: int, out: list,
                masked: bool = True) -> int:
        base = self.base
        fields = []
        for attr, name in attrs:
            off, m = _F[name]
            fv = (flow >> off) & m
            if fv == (base >> off) & m:
                continue
            wm = (wc >> off) & m if masked else m
            if not wm:
                continue
            fields.append((attr, fv & wm, wm))
            base = (base & ~(wm << off)) | ((fv & wm) << off)
            wc |= wm << off
        if fields:
            if not masked:
                # An unmasked set writes every attribute of the header.
                done = {a for a, _, _ in fields}
                for attr, name in attrs:
                    if attr not in done:
                        off, m = _F[name]
                        fields.append((attr, (flow >> off) & m, m))
                        wc |= m << off
            out.append(odp.set_fields(header, fields))
            self.base = base
        return wc

    def _vlans(self, flow: int, inner: tuple[int, int], wc: int, out: list) -> int:
        base = self.base
        want = _stack(_get(flow, "vlan_tpid"), _get(flow, "vlan_tci"), inner)
        have = _stack(_get(base, "vlan_tpid"), _get(base, "vlan_tci"), self.base_inner)
        wc |= _VLAN_BITS
        if want == have:
            return wc
        # Keep the common innermost tags; pop the rest, push the new ones.
        common = 0
        while (common < len(want) and common < len(have)
               and want[-1 - common] == have[-1 - common]):
            common += 1
        for _ in range(len(have) - common):
            out.append(odp.pop_vlan())
        for tpid, tci in reversed(want[:len(want) - common]):
            out.append(odp.push_vlan(tpid, tci))
        self.base = (base & ~_VLAN_BITS) | (flow & _VLAN_BITS)
        self.base_inner = inner
        return wc


def _stack(tpid: int, tci: int, inner: tuple[int, int]) -> list[tuple[int, int]]:
    """The tags present, outermost first."""
    tags = []
    if tci & K.VLAN_CFI:
        tags.append((tpid or 0x8100, tci))
        if inner[1] & K.VLAN_CFI:
            tags.append(inner)
    return tags
