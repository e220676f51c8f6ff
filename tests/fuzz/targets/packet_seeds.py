"""Well-formed frames of every shape the packet target's tables care about."""

from __future__ import annotations


def frames() -> list[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                    ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrFragment,
                                    IPv6ExtHdrHopByHop)
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.layers.sctp import SCTP

    src, dst = "02:00:00:00:00:01", "02:00:00:00:00:02"
    e = Ether(src=src, dst=dst)
    pkts = [
        e / IP(src="10.0.0.1", dst="10.0.0.2", ttl=1) / UDP(sport=1, dport=2) / b"x",
        e / IP(src="10.1.1.1", dst="192.168.1.1") / TCP(sport=1234, dport=80, flags="S"),
        e / IP(src="10.1.1.1", dst="192.168.1.1", tos=32) / UDP(sport=53, dport=5),
        e / IP(src="1.2.3.4", dst="5.6.7.8", flags=1, frag=0) / ICMP(type=8),
        e / IP(src="1.2.3.4", dst="5.6.7.8", frag=100) / b"fragment",
        e / IP(dst="9.9.9.9", proto=47) / b"gre?",
        e / IP(options=b"\x01\x01\x01\x00") / SCTP(sport=1, dport=2),
        e / Dot1Q(vlan=10, prio=3) / IP() / UDP(),
        e / Dot1Q(vlan=5) / IP() / TCP(sport=0x1234),
        Ether(src=src, dst="01:00:5e:00:00:01") / Dot1AD(vlan=20) / Dot1Q(vlan=30) / IP(),
        Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, pdst="10.0.0.7"),
        Ether(src=src, dst="ff:ff:ff:ff:ff:ff", type=0x8035) / ARP(op=3),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=22),
        e / IPv6(dst="ff02::1") / UDP(sport=1, dport=2),
        e / IPv6(src="fe80::9", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fe80::1")
        / ICMPv6NDOptSrcLLAddr(lladdr=src),
        e / IPv6() / ICMPv6ND_NA(tgt="fe80::1") / ICMPv6NDOptDstLLAddr(lladdr=dst),
        e / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=0, m=1) / UDP(),
        e / IPv6() / SCTP(),
        Ether(src=src, dst=dst, type=0x88CC) / (b"\x02\x07\x04" + bytes(20)),
        Ether(src=src, dst=dst) / b"\xaa\xaa\x03\x00\x00\x00\x08\x00" / IP() / UDP(),
    ]
    out = []
    for i, p in enumerate(pkts):
        out.append(bytes([1 + i % 4]) + bytes(p))
    out.append(b"\x01" + bytes(13))
    return out
