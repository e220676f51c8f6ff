"""Frames shared by the packet-layer tests, built with scapy (a test-only tool).

Every frame has explicit addresses so that the bytes never depend on the
host's routes.  ``SAMPLES`` maps a name to the frame's bytes; the parse tests
hold what OVS 3.1 extracted from each of them.
"""

from __future__ import annotations

import struct

from scapy.layers.igmp import IGMP
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, LLC, SNAP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from ovsd.packet import key
from ovsd.packet.parse import extract_key

MAC_A = "00:11:22:33:44:55"
MAC_B = "66:77:88:99:aa:bb"
IP_A = "10.0.0.1"
IP_B = "192.168.1.2"
IP6_A = "2001:db8::1"
IP6_B = "fe80::abcd:1"


def eth(**kw) -> Ether:
    return Ether(**{"src": MAC_A, "dst": MAC_B, **kw})


def ip(**kw) -> IP:
    return IP(**{"src": IP_A, "dst": IP_B, **kw})


def ip6(**kw) -> IPv6:
    return IPv6(**{"src": IP6_A, "dst": IP6_B, **kw})


def fields(frame, in_port: int = 0) -> dict[str, int]:
    """The packet fields extract_key found, by name."""
    k = extract_key(frame, in_port)
    return {name: key.get(k, name) for name in key.FIELDS
            if key.FIELDS[name].offset < key.PACKET_BITS}


def set_ipv4_word(frame: bytes, offset: int, fmt: str, value: int, l3: int = 14) -> bytes:
    """``frame`` with a field of the IPv4 header at ``l3`` overwritten (no checksum fix)."""
    b = bytearray(frame)
    struct.pack_into(fmt, b, l3 + offset, value)
    return bytes(b)


_udp = bytes(eth() / ip(tos=0xB9, ttl=33) / UDP(sport=1234, dport=53) / Raw(b"q" * 10))
_tcp = bytes(eth() / ip() / TCP(sport=4000, dport=80, flags="SA") / Raw(b"hello"))

SAMPLES: dict[str, bytes] = {
    # -- Ethernet and VLAN --------------------------------------------------
    "empty": b"",
    "short_10": bytes(eth())[:10],
    "eth_only_ip": bytes(eth(type=0x0800)),
    "eth_unknown_type": bytes(eth(type=0x1234) / Raw(b"x" * 46)),
    "vlan_truncated": bytes(eth(type=0x8100)) + b"\x20\x05",
    "vlan_tag_only": bytes(eth(type=0x8100)) + b"\x20\x05\x08\x00",
    "vlan_tcp": bytes(eth() / Dot1Q(vlan=100, prio=5) / ip() / TCP(sport=1, dport=2, flags="A")),
    "vlan_dei_udp": bytes(eth() / Dot1Q(vlan=7, dei=1) / ip() / UDP(sport=9, dport=10)),
    "qinq_outer_88a8": bytes(eth() / Dot1AD(vlan=9, prio=2) / Dot1Q(vlan=7) / ip() / UDP()),
    "vlan_vlan_8100": bytes(eth() / Dot1Q(vlan=3) / Dot1Q(vlan=4) / ip() / UDP()),
    "mpls": bytes(eth(type=0x8847) / Raw(b"\x00\x01\x41\x40" + bytes(40))),
    # -- 802.3 / LLC / SNAP ---------------------------------------------------
    "llc_stp": bytes(Dot3(src=MAC_A, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3)
                     / Raw(b"\x00" * 35)),
    "snap_ipv4_udp": bytes(Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
                           / SNAP(OUI=0, code=0x0800) / ip() / UDP(sport=7, dport=8)),
    "snap_oui_cisco": bytes(Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
                            / SNAP(OUI=0x0C, code=0x2000) / Raw(b"c" * 30)),
    "snap_small_type": bytes(Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
                             / SNAP(OUI=0, code=0x0100) / Raw(b"c" * 30)),
    "llc_truncated": bytes(Dot3(src=MAC_A, dst=MAC_B, len=3)) + b"\xaa\xaa\x03",
    # -- IPv4 -------------------------------------------------------------------
    "udp": _udp,
    "udp_trailing": _udp + b"TRAILER-NOT-L4",
    "tcp": _tcp,
    "tcp_all_flags": bytes(eth() / ip() / TCP(sport=5, dport=6, reserved=7, flags=0x1FF)),
    "tcp_header_only": bytes(eth() / ip() / TCP(sport=5, dport=6, flags="R")),
    "tcp_doff_4": bytes(eth() / ip() / TCP(sport=5, dport=6, dataofs=4, flags="S")),
    "tcp_doff_beyond": bytes(eth() / ip() / TCP(sport=5, dport=6, dataofs=15, flags="S")),
    "tcp_options": bytes(eth() / ip() / TCP(sport=5, dport=6, flags="S",
                                             options=[("MSS", 1460), ("NOP", None)])),
    "ipv4_options_udp": bytes(eth() / ip(options=IPOption(b"\x94\x04\x00\x00"))
                              / UDP(sport=11, dport=12)),
    "ipv4_ihl_4": set_ipv4_word(_udp, 0, "B", 0x44),
    "ipv4_ihl_beyond_frame": set_ipv4_word(_udp[:14 + 24], 0, "B", 0x47),
    "ipv4_totlen_gt_frame": set_ipv4_word(_udp, 2, "!H", len(_udp) - 14 + 1),
    "ipv4_totlen_lt_header": set_ipv4_word(_udp, 2, "!H", 19),
    "ipv4_totlen_cuts_udp": set_ipv4_word(_udp, 2, "!H", 24),
    "ipv4_short_header": _udp[:14 + 19],
    "ipv4_version_6": set_ipv4_word(_udp, 0, "B", 0x65),
    "ipv4_bad_checksum": set_ipv4_word(_udp, 10, "!H", 0xDEAD),
    "ipv4_frag_first": bytes(eth() / ip(flags="MF", proto=17) / UDP(sport=3, dport=4)
                             / Raw(b"f" * 16)),
    "ipv4_frag_later": bytes(eth() / ip(frag=185, proto=17) / Raw(b"f" * 16)),
    "ipv4_frag_last_tcp": bytes(eth() / ip(frag=2, proto=6) / Raw(b"t" * 24)),
    "ipv4_df_udp": bytes(eth() / ip(flags="DF") / UDP(sport=3, dport=4)),
    "udp_truncated": _udp[:14 + 20 + 6],
    "icmp_echo": bytes(eth() / ip() / ICMP(type=8, code=0, id=1, seq=2)),
    "icmp_unreach": bytes(eth() / ip() / ICMP(type=3, code=13)),
    "icmp_truncated": bytes(eth() / ip(proto=1) / Raw(b"\x08\x00\x00\x00")),
    "igmp": bytes(eth() / ip() / IGMP(type=0x16, gaddr="224.1.2.3")),
    "sctp": bytes(eth() / ip() / SCTP(sport=2905, dport=2906)),
    "ipv4_proto_58": bytes(eth() / ip(proto=58) / Raw(b"\x80\x00\x00\x00\x00\x00\x00\x00")),
    "ipv4_unknown_proto": bytes(eth() / ip(proto=99) / Raw(b"z" * 20)),
    # -- IPv6 -------------------------------------------------------------------
    "ipv6_tcp": bytes(eth() / ip6(tc=0xB4, fl=0xABCDE, hlim=17)
                      / TCP(sport=22, dport=2222, flags="PA")),
    "ipv6_udp": bytes(eth() / ip6() / UDP(sport=546, dport=547)),
    "ipv6_icmp_echo": bytes(eth() / ip6() / ICMPv6EchoRequest()),
    "ipv6_plen_too_big": None,  # filled in below
    "ipv6_short_header": bytes(eth() / ip6() / UDP())[:14 + 39],
    "ipv6_hbh_tcp": bytes(eth() / ip6() / IPv6ExtHdrHopByHop() / TCP(sport=1, dport=2, flags="S")),
    "ipv6_dst_rt_udp": bytes(eth() / ip6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting()
                             / UDP(sport=5, dport=6)),
    "ipv6_frag_first": bytes(eth() / ip6() / IPv6ExtHdrFragment(m=1, id=7) / UDP(sport=5, dport=6)),
    "ipv6_frag_later": bytes(eth() / ip6() / IPv6ExtHdrFragment(offset=10, nh=17) / Raw(b"l" * 16)),
    "ipv6_frag_atomic": bytes(eth() / ip6() / IPv6ExtHdrFragment() / UDP(sport=5, dport=6)),
    "ipv6_ah_tcp": bytes(eth() / ip6() / AH(nh=6, payloadlen=4, icv=b"\x00" * 12)
                         / TCP(sport=7, dport=8)),
    "ipv6_ext_truncated": bytes(eth() / ip6(nh=0) / Raw(b"\x11\x00\x00\x00")),
    "ipv6_ext_len_beyond": bytes(eth() / ip6(nh=60) / Raw(b"\x11\x05" + bytes(14))),
    "ipv6_unknown_nh": bytes(eth() / ip6(nh=59) / Raw(b"n" * 8)),
    "ipv6_icmp_truncated": bytes(eth() / ip6(nh=58) / Raw(b"\x80\x00\x00\x00")),
    "nd_ns_sll": bytes(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt="2001:db8::99")
                       / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")),
    "nd_na_tll": bytes(eth() / ip6(hlim=255) / ICMPv6ND_NA(tgt="2001:db8::98", R=0, S=1, O=1)
                       / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02")),
    "nd_na_mtu_then_tll": bytes(eth() / ip6() / ICMPv6ND_NA(tgt="2001:db8::98")
                                / ICMPv6NDOptMTU()
                                / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:03")),
    "nd_na_tll_sll": bytes(eth() / ip6() / ICMPv6ND_NA(tgt="2001:db8::97")
                           / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:04")
                           / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:05")),
    "nd_dup_tll": bytes(eth() / ip6() / ICMPv6ND_NA(tgt="2001:db8::96")
                        / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:06")
                        / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:07")),
    "nd_ns_no_target": bytes(eth() / ip6(nh=58)
                             / Raw(b"\x87\x00\x00\x00\x00\x00\x00\x00" + b"\x20\x01")),
    "nd_ns_code_1": bytes(eth() / ip6() / ICMPv6ND_NS(code=1, tgt="2001:db8::99")
                          / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")),
    "nd_opt_len_0": bytes(eth() / ip6() / ICMPv6ND_NS(tgt="2001:db8::95")
                          / Raw(b"\x01\x00" + bytes(6))),
    # -- ARP ----------------------------------------------------------------------
    "arp_request": bytes(eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_A, psrc=IP_A,
                                                            hwdst="00:00:00:00:00:00", pdst=IP_B)),
    "arp_reply": bytes(eth() / ARP(op=2, hwsrc=MAC_A, psrc=IP_A, hwdst=MAC_B, pdst=IP_B)),
    "arp_op_300": bytes(eth() / ARP(op=300, hwsrc=MAC_A, psrc=IP_A, hwdst=MAC_B, pdst=IP_B)),
    "arp_truncated": bytes(eth() / ARP(op=1, hwsrc=MAC_A, psrc=IP_A, pdst=IP_B))[:14 + 27],
    "arp_htype_6": bytes(eth() / ARP(hwtype=6, op=1, hwsrc=MAC_A, psrc=IP_A, pdst=IP_B)),
    "rarp": bytes(eth(type=0x8035) / ARP(op=3, hwsrc=MAC_A, psrc=IP_A, hwdst=MAC_B, pdst=IP_B)),
}

_v6udp = bytearray(bytes(eth() / ip6() / UDP(sport=5, dport=6)))
struct.pack_into("!H", _v6udp, 14 + 4, 9)  # payload length 9 > the 8 bytes there
SAMPLES["ipv6_plen_too_big"] = bytes(_v6udp)
