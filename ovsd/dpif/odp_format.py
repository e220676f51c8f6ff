"""Datapath flows as ``ovs-appctl dpctl/dump-flows`` prints them:

    recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=..,dst=..),
    eth_type(0x0800),ipv4(dst=10.0.0.2,proto=6,frag=no), packets:3, bytes:180,
    used:0.512s, actions:set(ipv4(dst=1.2.3.4)),2

Only fields the megaflow matches on are printed (a partly wildcarded field
as value/mask), which is how the wildcards of a megaflow are read.
"""

from __future__ import annotations

import ipaddress

from ovsd.packet import key as K

_F = {n: (f.offset, (1 << f.width) - 1) for n, f in K.FIELDS.items()}
_FRAG = {0: "no", 1: "first", 3: "later"}


def _get(v: int, name: str) -> int:
    off, m = _F[name]
    return (v >> off) & m


def _mac(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _ip4(v: int) -> str:
    return str(ipaddress.IPv4Address(v))


def _ip6(v: int) -> str:
    return str(ipaddress.IPv6Address(v))


def _attr(name: str, fields: list[tuple[str, str, int, int, callable]]) -> str | None:
    """name(f=v[/m],...) for the fields with a non-zero mask; None if none."""
    parts = []
    for label, fname, value, mask, fmt in fields:
        if not mask:
            continue
        full = _F[fname][1]
        text = f"{label}={fmt(value)}"
        if mask != full:
            text += f"/{fmt(mask)}"
        parts.append(text)
    return f"{name}({','.join(parts)})" if parts else None


def format_dp_match(key: int, mask: int, port_namer=str) -> str:
    g = lambda n: (_get(key, n), _get(mask, n))  # noqa: E731
    out = ["recirc_id(0)", f"in_port({port_namer(_get(key, 'in_port'))})",
           "packet_type(ns=0,id=0)"]
    (src, msrc), (dst, mdst) = g("dl_src"), g("dl_dst")
    eth = _attr("eth", [("src", "dl_src", src, msrc, _mac), ("dst", "dl_dst", dst, mdst, _mac)])
    if eth:
        out.append(eth)
    tci, mtci = g("vlan_tci")
    l3 = []
    dl_type, mdl = g("dl_type")
    if tci & K.VLAN_CFI:
        tpid = _get(key, "vlan_tpid") or 0x8100
        vlan = [f"vid={tci & 0xfff}" + ("" if mtci & 0xfff == 0xfff else f"/{mtci & 0xfff:#x}")
                if mtci & 0xfff else None,
                f"pcp={tci >> 13}" + ("" if mtci >> 13 == 7 else f"/{mtci >> 13:#x}")
                if mtci >> 13 else None]
        out.append(f"eth_type({tpid:#06x})")
        out.append("vlan(" + ",".join(v for v in vlan if v) + ")")
    l3.append(f"eth_type({dl_type:#06x})")
    if dl_type == 0x0800:
        a = _attr("ipv4", [
            ("src", "nw_src", *g("nw_src"), _ip4), ("dst", "nw_dst", *g("nw_dst"), _ip4),
            ("proto", "nw_proto", *g("nw_proto"), str), ("tos", "nw_tos", *g("nw_tos"), hex),
            ("ttl", "nw_ttl", *g("nw_ttl"), str),
            ("frag", "nw_frag", *g("nw_frag"), lambda v: _FRAG.get(v, hex(v)))])
        if a:
            l3.append(a)
    elif dl_type == 0x86DD:
        a = _attr("ipv6", [
            ("src", "ipv6_src", *g("ipv6_src"), _ip6), ("dst", "ipv6_dst", *g("ipv6_dst"), _ip6),
            ("label", "ipv6_label", *g("ipv6_label"), hex),
            ("proto", "nw_proto", *g("nw_proto"), str), ("tclass", "nw_tos", *g("nw_tos"), hex),
            ("hlimit", "nw_ttl", *g("nw_ttl"), str),
            ("frag", "nw_frag", *g("nw_frag"), lambda v: _FRAG.get(v, hex(v)))])
        if a:
            l3.append(a)
    elif dl_type in (0x0806, 0x8035):
        a = _attr("arp", [
            ("sip", "nw_src", *g("nw_src"), _ip4), ("tip", "nw_dst", *g("nw_dst"), _ip4),
            ("op", "nw_proto", *g("nw_proto"), str),
            ("sha", "arp_sha", *g("arp_sha"), _mac), ("tha", "arp_tha", *g("arp_tha"), _mac)])
        if a:
            l3.append(a)
    proto = _get(key, "nw_proto")
    if dl_type in (0x0800, 0x86DD):
        l4 = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto)
        if l4:
            a = _attr(l4, [("src", "tp_src", *g("tp_src"), str),
                           ("dst", "tp_dst", *g("tp_dst"), str)])
            if a:
                l3.append(a)
            if l4 == "tcp":
                flags, mflags = g("tcp_flags")
                if mflags:
                    l3.append(f"tcp_flags({flags:#x}" +
                              ("" if mflags == 0xfff else f"/{mflags:#x}") + ")")
        elif (proto == 1 and dl_type == 0x0800) or (proto == 58 and dl_type == 0x86DD):
            a = _attr("icmp" if proto == 1 else "icmpv6",
                      [("type", "tp_src", *g("tp_src"), str),
                       ("code", "tp_dst", *g("tp_dst"), str)])
            if a:
                l3.append(a)
    if tci & K.VLAN_CFI:
        out.append("encap(" + ",".join(l3) + ")")
    else:
        out.extend(l3)
    return ",".join(out)


def format_dp_flow(key: int, mask: int, packets: int, n_bytes: int, used_ago: float,
                   actions: str, port_namer=str) -> str:
    used = "never" if used_ago < 0 else f"{used_ago:.3f}s"
    return (f"{format_dp_match(key, mask, port_namer)}, packets:{packets}, "
            f"bytes:{n_bytes}, used:{used}, actions:{actions}")
