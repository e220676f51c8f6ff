"""What a switch stores for a match: the OpenFlow encodings' round trips.

A match typed at ovs-ofctl reaches the switch as an OpenFlow 1.0
``ofp_match``, an OpenFlow 1.1 ``ofp11_match``, NXM (OpenFlow 1.0 with
Nicira extensions) or OXM (OpenFlow 1.2+), and a ``dump-flows`` re-encodes
the stored match the same way.  Each encoding drops what it cannot carry:
fields whose prerequisites are missing (``tp_dst=80`` without ``tcp``), VLAN
mask bits OXM has no room for, and so on; some combinations make the switch
refuse the flow (OFPBMC_BAD_PREREQ).  The functions here reproduce that so
that ovsd stores and prints exactly what Open vSwitch would.
"""

from __future__ import annotations

from ovsd.ofproto import fields as F
from ovsd.ofproto.fields import FlowSyntaxError
from ovsd.ofproto.match import (IP_DSCP_MASK, IP_ECN_MASK, VLAN_CFI, VLAN_PCP_MASK,
                                VLAN_VID_MASK, Match, MatchBuilder, dl_type_of, format_match,
                                is_ip_any, is_nd)
from ovsd.packet import key as K

__all__ = ["wire_match", "dump_match", "normalize_of10"]


class _Decoder:
    """Rebuilds a match entry by entry, as a switch decodes NXM/OXM."""

    def __init__(self) -> None:
        self.b = MatchBuilder()

    def put(self, name: str, value: int, mask: int | None = None) -> None:
        """One NXM/OXM entry (exact when ``mask`` is None)."""
        mf = F.lookup(name)
        if not mf.prereqs_ok(self.b.value):
            so_far = format_match(self.b.match()) or "an empty match"
            raise FlowSyntaxError(
                f"{mf.name}: the switch rejects the match (OFPBMC_BAD_PREREQ): "
                f"its prerequisites are not met by {so_far}")
        self.b.set(mf, value, mf.all_ones if mask is None else mask)


def _nxm_round_trip(match: Match, version: int) -> Match:
    """nx_put_raw + nx_pull_raw: ``version`` 0 is NXM, 2..6 OXM (1.1..1.5)."""
    v, m = match.value, match.mask
    d = _Decoder()

    def fv(name):
        return K.get(v, name), K.get(m, name)

    def put_masked(field, kname, width_mask):
        val, msk = fv(kname)
        if msk:
            d.put(field, val, None if msk == width_mask else msk)

    if K.get(m, "in_port"):
        d.put("in_port", K.get(v, "in_port"))
    put_masked("eth_src", "dl_src", 0xFFFFFFFFFFFF)
    put_masked("eth_dst", "dl_dst", 0xFFFFFFFFFFFF)
    if K.get(m, "dl_type"):
        d.put("eth_type", K.get(v, "dl_type"))
    tci, tmask = fv("vlan_tci")
    if version:
        vid, vmask = tci & (VLAN_VID_MASK | VLAN_CFI), tmask & (VLAN_VID_MASK | VLAN_CFI)
        if vmask == VLAN_VID_MASK | VLAN_CFI:
            d.put("vlan_vid", vid)
        elif vmask:
            d.put("vlan_vid", vid, vmask)
        if vid and tmask & VLAN_PCP_MASK:
            d.put("vlan_pcp", tci >> 13)
    elif tmask:
        d.put("vlan_tci", tci, None if tmask == 0xFFFF else tmask)

    dl_type = dl_type_of(v)
    if is_ip_any(v):
        if dl_type == F.ETH_TYPE_IP:
            put_masked("ip_src", "nw_src", 0xFFFFFFFF)
            put_masked("ip_dst", "nw_dst", 0xFFFFFFFF)
        else:
            put_masked("ipv6_src", "ipv6_src", (1 << 128) - 1)
            put_masked("ipv6_dst", "ipv6_dst", (1 << 128) - 1)
        frag, fmask = fv("nw_frag")
        fmask &= 3
        if fmask:
            d.put("ip_frag", frag & 3, None if fmask == 3 else fmask)
        tos, tosmask = fv("nw_tos")
        if tosmask & IP_DSCP_MASK:
            if version:
                d.put("ip_dscp", tos >> 2)
            else:
                d.put("nw_tos", tos & IP_DSCP_MASK)
        if tosmask & IP_ECN_MASK:
            d.put("nw_ecn", tos & IP_ECN_MASK)
        if K.get(m, "nw_ttl"):
            d.put("nw_ttl", K.get(v, "nw_ttl"))
        put_masked("ipv6_label", "ipv6_label", 0xFFFFF)
        if K.get(m, "nw_proto"):
            proto = K.get(v, "nw_proto")
            d.put("nw_proto", proto)
            ports = {F.IPPROTO_TCP: "tcp", F.IPPROTO_UDP: "udp", F.IPPROTO_SCTP: "sctp"}
            if proto in ports:
                put_masked(f"{ports[proto]}_src", "tp_src", 0xFFFF)
                put_masked(f"{ports[proto]}_dst", "tp_dst", 0xFFFF)
                if proto == F.IPPROTO_TCP:
                    put_masked("tcp_flags", "tcp_flags", 0xFFF)
            elif dl_type == F.ETH_TYPE_IP and proto == F.IPPROTO_ICMP:
                if K.get(m, "tp_src"):
                    d.put("icmp_type", K.get(v, "tp_src") & 0xFF)
                if K.get(m, "tp_dst"):
                    d.put("icmp_code", K.get(v, "tp_dst") & 0xFF)
            elif dl_type == F.ETH_TYPE_IPV6 and proto == F.IPPROTO_ICMPV6:
                if K.get(m, "tp_src"):
                    d.put("icmpv6_type", K.get(v, "tp_src") & 0xFF)
                if K.get(m, "tp_dst"):
                    d.put("icmpv6_code", K.get(v, "tp_dst") & 0xFF)
                if is_nd(v):
                    put_masked("nd_target", "nd_target", (1 << 128) - 1)
                    tp_src = K.get(v, "tp_src")
                    if tp_src == F.ND_NEIGHBOR_SOLICIT:
                        put_masked("nd_sll", "arp_sha", 0xFFFFFFFFFFFF)
                    if tp_src == F.ND_NEIGHBOR_ADVERT:
                        put_masked("nd_tll", "arp_tha", 0xFFFFFFFFFFFF)
    elif dl_type in (F.ETH_TYPE_ARP, F.ETH_TYPE_RARP):
        if K.get(m, "nw_proto"):
            d.put("arp_op", K.get(v, "nw_proto"))
        put_masked("arp_spa", "nw_src", 0xFFFFFFFF)
        put_masked("arp_tpa", "nw_dst", 0xFFFFFFFF)
        put_masked("arp_sha", "arp_sha", 0xFFFFFFFFFFFF)
        put_masked("arp_tha", "arp_tha", 0xFFFFFFFFFFFF)
    for i in range(K.N_REGS):
        put_masked(f"reg{i}", f"reg{i}", 0xFFFFFFFF)
    put_masked("metadata", "metadata", (1 << 64) - 1)
    return d.b.match()


def _of10_round_trip(match: Match) -> Match:
    """An OpenFlow 1.0 ofp_match and back, then the switch's normalization."""
    v, m = match.value, match.mask
    keep = 0
    for name in ("in_port", "dl_type", "nw_proto", "tp_src", "tp_dst", "dl_src", "dl_dst"):
        if K.get(m, name):
            keep |= K.FIELDS[name].mask
    out_v = v & keep
    out_m = keep
    for name in ("nw_src", "nw_dst"):
        out_v |= v & K.FIELDS[name].mask
        out_m |= m & K.FIELDS[name].mask
    if K.get(m, "nw_tos") & IP_DSCP_MASK:
        dscp_bits = IP_DSCP_MASK << K.FIELDS["nw_tos"].offset
        out_v |= v & dscp_bits
        out_m |= dscp_bits
    tci, tmask = K.get(v, "vlan_tci"), K.get(m, "vlan_tci")
    if tmask:
        if tmask & VLAN_CFI and not tci & VLAN_CFI:
            new_tci, new_mask = 0, 0xFFFF
        else:
            new_mask = 0
            if tmask & VLAN_VID_MASK:
                new_mask |= VLAN_VID_MASK | VLAN_CFI
            if tmask & VLAN_PCP_MASK:
                new_mask |= VLAN_PCP_MASK | VLAN_CFI
            new_tci = (tci | VLAN_CFI) & new_mask
        out_v |= new_tci << K.FIELDS["vlan_tci"].offset
        out_m |= new_mask << K.FIELDS["vlan_tci"].offset
    return normalize_of10(Match(out_v, out_m))


def normalize_of10(match: Match) -> Match:
    """OVS's ofputil_normalize_match: drop fields the dl_type/nw_proto
    cannot have (nw_src without ip/arp, tp_dst without tcp/udp/...)."""
    v, m = match.value, match.mask
    dl_type = dl_type_of(v) if K.get(m, "dl_type") else 0
    proto = K.get(v, "nw_proto")
    may = {"nw_addr": False, "tp": False, "nw_proto": False, "ipvx": False,
           "arp_sha": False, "arp_tha": False, "ipv6": False, "nd_target": False}
    if dl_type == F.ETH_TYPE_IP:
        may.update(nw_proto=True, ipvx=True, nw_addr=True)
        if proto in (F.IPPROTO_TCP, F.IPPROTO_UDP, F.IPPROTO_SCTP, F.IPPROTO_ICMP):
            may["tp"] = True
    elif dl_type == F.ETH_TYPE_IPV6:
        may.update(nw_proto=True, ipvx=True, ipv6=True)
        if proto in (F.IPPROTO_TCP, F.IPPROTO_UDP, F.IPPROTO_SCTP):
            may["tp"] = True
        elif proto == F.IPPROTO_ICMPV6:
            may["tp"] = True
            tp_src = K.get(v, "tp_src")
            if tp_src == F.ND_NEIGHBOR_SOLICIT:
                may.update(nd_target=True, arp_sha=True)
            elif tp_src == F.ND_NEIGHBOR_ADVERT:
                may.update(nd_target=True, arp_tha=True)
    elif dl_type in (F.ETH_TYPE_ARP, F.ETH_TYPE_RARP):
        may.update(nw_proto=True, nw_addr=True, arp_sha=True, arp_tha=True)
    drop = {"nw_addr": ("nw_src", "nw_dst"), "tp": ("tp_src", "tp_dst"),
            "nw_proto": ("nw_proto",), "ipvx": ("nw_tos", "nw_ttl"),
            "arp_sha": ("arp_sha",), "arp_tha": ("arp_tha",),
            "ipv6": ("ipv6_src", "ipv6_dst", "ipv6_label"), "nd_target": ("nd_target",)}
    for what, names in drop.items():
        if not may[what]:
            for name in names:
                m &= ~K.FIELDS[name].mask
    return Match(v, m)


def _of11_round_trip(match: Match) -> Match:
    """An OpenFlow 1.1 ofp11_match and back: VLAN as VID/"any"/"none" plus
    PCP, and L3/L4 fields only for IPv4 (and ARP addresses)."""
    v, m = match.value, match.mask
    b = MatchBuilder()
    if K.get(m, "in_port"):
        b.put_raw("in_port", K.get(v, "in_port"), 0xFFFF)
    for name in ("dl_src", "dl_dst"):
        b.put_raw(name, K.get(v, name), K.get(m, name))
    tci, tmask = K.get(v, "vlan_tci"), K.get(m, "vlan_tci")
    if tmask:
        if tmask & VLAN_CFI and not tci & VLAN_CFI:
            b.put_raw("vlan_tci", 0, 0xFFFF)
        else:
            new_tci, new_mask = VLAN_CFI, VLAN_CFI
            if tmask & VLAN_VID_MASK:
                new_tci |= tci & VLAN_VID_MASK
                new_mask |= VLAN_VID_MASK
            if tmask & VLAN_PCP_MASK:
                new_tci |= tci & VLAN_PCP_MASK
                new_mask |= VLAN_PCP_MASK
            b.put_raw("vlan_tci", new_tci, new_mask)
    dl_type = dl_type_of(v) if K.get(m, "dl_type") else 0
    if K.get(m, "dl_type"):
        b.put_raw("dl_type", dl_type, 0xFFFF)
    ipv4 = dl_type == F.ETH_TYPE_IP
    if ipv4 and K.get(m, "nw_tos") & IP_DSCP_MASK:
        b.put_raw("nw_tos", K.get(v, "nw_tos"), IP_DSCP_MASK)
    if dl_type in (F.ETH_TYPE_IP, F.ETH_TYPE_ARP, F.ETH_TYPE_RARP):
        if K.get(m, "nw_proto"):
            b.put_raw("nw_proto", K.get(v, "nw_proto"), 0xFF)
        for name in ("nw_src", "nw_dst"):
            b.put_raw(name, K.get(v, name), K.get(m, name))
    proto = K.get(v, "nw_proto")
    if ipv4 and proto in (F.IPPROTO_ICMP, F.IPPROTO_TCP, F.IPPROTO_UDP, F.IPPROTO_SCTP):
        for name in ("tp_src", "tp_dst"):
            if K.get(m, name):
                b.put_raw(name, K.get(v, name), 0xFFFF)
    b.put_raw("metadata", K.get(v, "metadata"), K.get(m, "metadata"))
    return b.match()


def wire_match(match: Match, protocol: int) -> Match:
    """The match after encoding in ``protocol`` (one ``fields.P_*`` bit)
    and decoding again, as a switch stores it from a flow_mod.
    Raises FlowSyntaxError where a switch would reject the encoding."""
    if protocol == F.P_OF10:
        return _of10_round_trip(match)
    if protocol == F.P_OF11:
        return _of11_round_trip(match)
    if protocol == F.P_NXM:
        return _nxm_round_trip(match, 0)
    version = {F.P_OF12: 3, F.P_OF13: 4, F.P_OF14: 5, F.P_OF15: 6}[protocol]
    return _nxm_round_trip(match, version)


def dump_match(match: Match, version: int) -> Match:
    """The match as a ``dump-flows`` in OpenFlow ``version`` (1..6) shows
    it: NXM for OpenFlow 1.0, OXM otherwise (OVS replies to OpenFlow 1.1
    flow stats requests with the OXM encoding as well).  A match that
    encoding cannot carry (where ovs-ofctl would fail to decode the reply)
    is shown as stored rather than failing the whole dump."""
    try:
        return _nxm_round_trip(match, 0 if version == 1 else version)
    except FlowSyntaxError:
        return match
