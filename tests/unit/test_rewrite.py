"""Datapath set actions on frames: fields land, checksums stay right (checked by scapy)."""

import ipaddress

import pytest
from scapy.layers.inet import ICMP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU, ICMPv6NDOptSrcLLAddr, IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from ovsd.packet.checksum import crc32c, csum_replace, internet_checksum, ones_sum
from ovsd.packet.parse import header_offsets
from ovsd.packet.rewrite import apply_set, pop_vlan, push_vlan
from packet_samples import IP_A, IP_B, MAC_A, SAMPLES, eth, fields, ip, ip6

U16, U32, U48, U128 = 0xFFFF, 0xFFFFFFFF, (1 << 48) - 1, (1 << 128) - 1


def v4(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def v6(s: str) -> int:
    return int(ipaddress.IPv6Address(s))


def recomputed(frame: bytes) -> bytes:
    """``frame`` with every checksum scapy knows recomputed from scratch."""
    p = Ether(frame)
    layer = p
    while layer:
        for name in ("chksum", "cksum"):
            if name in layer.fields:
                setattr(layer, name, None)
        layer = layer.payload
    return bytes(p)


def assert_checksums_ok(frame: bytes) -> None:
    assert recomputed(frame).hex() == frame.hex()


def after(frame: bytes, header: str, *fields_) -> bytes:
    buf = bytearray(frame)
    apply_set(buf, header, fields_)
    return bytes(buf)


def csum_at(frame: bytes, off: int) -> int:
    return frame[off] << 8 | frame[off + 1]


def with_csum(frame: bytes, off: int, value: int) -> bytes:
    b = bytearray(frame)
    b[off:off + 2] = value.to_bytes(2, "big")
    return bytes(b)


TCP4 = bytes(eth() / ip() / TCP(sport=1000, dport=80, flags="S") / Raw(b"payload!"))
UDP4 = bytes(eth() / ip() / UDP(sport=53, dport=5353) / Raw(b"question"))
ICMP4 = bytes(eth() / ip() / ICMP(type=8, id=7, seq=1) / Raw(b"ping"))
SCTP4 = bytes(eth() / ip() / SCTP(sport=2905, dport=2906) / Raw(b"chunkdata"))
TCP6 = bytes(eth() / ip6() / TCP(sport=1000, dport=80, flags="S") / Raw(b"payload!"))
UDP6 = bytes(eth() / ip6() / IPv6ExtHdrHopByHop() / UDP(sport=53, dport=5353) / Raw(b"q6"))
ICMP6 = bytes(eth() / ip6() / ICMPv6EchoRequest(data=b"ping6"))
NS = bytes(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt="2001:db8::99")
           / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01"))
NA = bytes(eth() / ip6(hlim=255) / ICMPv6ND_NA(tgt="2001:db8::98") / ICMPv6NDOptMTU()
           / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02"))


# -- checksum primitives ---------------------------------------------------------------

def test_internet_checksum_matches_a_known_header():
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(hdr) == 0xB861
    assert ones_sum(b"\xff\xff") == 0xFFFF and ones_sum(b"") == 0
    assert ones_sum(b"\x01") == 0x0100


def test_csum_replace_equals_recomputation():
    data = bytearray(bytes(range(40)))
    csum = internet_checksum(data)
    old = int.from_bytes(data[8:24], "big")
    data[8:24] = bytes(range(200, 216))
    assert csum_replace(csum, old, int.from_bytes(data[8:24], "big")) == internet_checksum(data)


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283


# -- eth ----------------------------------------------------------------------------------

def test_eth_masked():
    out = after(TCP4, "eth", ("src", 0x0A0B0C0D0E0F, U48), ("dst", 0xFF0000000000, 0xFF0000000000))
    f = fields(out)
    assert f["dl_src"] == 0x0A0B0C0D0E0F
    assert f["dl_dst"] == 0xFF778899AABB
    assert out[12:] == TCP4[12:]


def test_eth_on_a_runt_is_a_no_op():
    assert after(b"\x01" * 10, "eth", ("src", 0, U48)) == b"\x01" * 10


# -- ipv4 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frame", [TCP4, UDP4, ICMP4, SCTP4], ids=["tcp", "udp", "icmp", "sctp"])
def test_ipv4_addresses_keep_every_checksum(frame):
    out = after(frame, "ipv4", ("src", v4("172.16.0.9"), U32), ("dst", v4("8.8.8.8"), U32))
    f = fields(out)
    assert (f["nw_src"], f["nw_dst"]) == (v4("172.16.0.9"), v4("8.8.8.8"))
    assert_checksums_ok(out)


def test_ipv4_tos_ttl_masked():
    out = after(TCP4, "ipv4", ("tos", 0xB8, 0xFC), ("ttl", 5, 0xFF), ("proto", 17, 0),
                ("frag", 0, 0))
    f = fields(out)
    assert (f["nw_tos"], f["nw_ttl"], f["nw_proto"]) == (0xB8, 5, 6)
    assert_checksums_ok(out)


def test_ipv4_partial_address_mask():
    out = after(UDP4, "ipv4", ("dst", v4("1.2.3.4"), 0xFFFFFF00))
    assert fields(out)["nw_dst"] == v4("1.2.3.2")
    assert_checksums_ok(out)


def test_proto_and_frag_are_not_writable():
    assert after(TCP4, "ipv4", ("proto", 17, 0xFF), ("frag", 1, 0xFF)) == TCP4
    assert after(TCP6, "ipv6", ("proto", 17, 0xFF), ("frag", 1, 0xFF)) == TCP6


def test_ipv4_with_options_and_vlan():
    frame = bytes(eth() / Dot1Q(vlan=5) / ip(options=b"\x94\x04\x00\x00") / TCP(sport=1, dport=2))
    out = after(frame, "ipv4", ("src", 1, U32), ("ttl", 1, 0xFF))
    assert fields(out)["nw_src"] == 1 and fields(out)["vlan_tci"] == 0x1005
    assert_checksums_ok(out)


def test_udp_checksum_zero_stays_zero():
    frame = with_csum(UDP4, 34 + 6, 0)
    out = after(frame, "ipv4", ("src", v4("9.9.9.9"), U32))
    out = after(out, "udp", ("dst", 1, U16))
    assert csum_at(out, 34 + 6) == 0
    assert fields(out)["tp_dst"] == 1


def test_udp_checksum_never_becomes_zero():
    # Pick a new port that makes the arithmetic land on 0: it must be sent as 0xffff.
    old = csum_at(UDP4, 40)
    port = next(p for p in range(65536) if csum_replace(old, 53 << 16 | 5353, 53 << 16 | p) == 0)
    out = after(UDP4, "udp", ("dst", port, U16))
    assert csum_at(out, 40) == 0xFFFF
    assert_checksums_ok(out)


def ones_diff(a: int, b: int) -> int:
    return (a - b) % 0xFFFF


@pytest.mark.parametrize("frame, header, fields_, csum_off", [
    (TCP4, "ipv4", [("ttl", 9, 0xFF)], 24),
    (TCP4, "ipv4", [("src", 77, U32)], 24),
    (TCP4, "ipv4", [("src", 77, U32)], 50),
    (TCP4, "tcp", [("src", 77, U16)], 50),
    (UDP4, "udp", [("dst", 77, U16)], 40),
    (ICMP4, "icmp", [("type", 0, 0xFF)], 36),
    (TCP6, "ipv6", [("dst", 77, U128)], 70),
    (ICMP6, "icmpv6", [("code", 1, 0xFF)], 56),
], ids=["ip-ttl", "ip-src/ip", "ip-src/tcp", "tcp-port", "udp-port", "icmp", "ipv6-dst/tcp",
        "icmpv6"])
def test_a_wrong_checksum_stays_wrong_by_the_same_amount(frame, header, fields_, csum_off):
    good = csum_at(frame, csum_off)
    bad_frame = with_csum(frame, csum_off, (good + 0x1234) % 0xFFFF)
    out = after(bad_frame, header, *fields_)
    correct = csum_at(recomputed(out), csum_off)
    before = ones_diff(csum_at(bad_frame, csum_off), good)
    assert ones_diff(csum_at(out, csum_off), correct) == before


def test_sctp_port_change_updates_crc32c():
    out = after(SCTP4, "sctp", ("src", 1, U16), ("dst", 0x8000, 0xFF00))
    f = fields(out)
    assert (f["tp_src"], f["tp_dst"]) == (1, 0x805A)
    assert_checksums_ok(out)
    # A wrong CRC stays wrong by the same XOR, as OVS does.
    bad = bytearray(SCTP4)
    bad[42] ^= 0x5A
    out = after(bytes(bad), "sctp", ("src", 1, U16))
    assert bytes(a ^ b for a, b in zip(out, recomputed(out)))[42:46] == b"\x5a\x00\x00\x00"


def test_ipv4_on_later_fragment_leaves_payload():
    frame = SAMPLES["ipv4_frag_later"]
    out = after(frame, "ipv4", ("src", 5, U32))
    assert out[34:] == frame[34:]
    assert fields(out)["nw_src"] == 5
    assert internet_checksum(out[14:34]) == 0


def test_ipv4_on_first_fragment_updates_l4_checksum_incrementally():
    frame = SAMPLES["ipv4_frag_first"]
    out = after(frame, "ipv4", ("dst", 6, U32))
    old, new = csum_at(frame, 40), csum_at(out, 40)
    assert new == csum_replace(old, v4(IP_B), 6)
    assert internet_checksum(out[14:34]) == 0


# -- ipv6 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frame", [TCP6, UDP6, ICMP6, NS], ids=["tcp", "udp-hbh", "icmpv6", "nd"])
def test_ipv6_addresses_keep_l4_checksum(frame):
    out = after(frame, "ipv6", ("src", v6("2001:db8::aaaa"), U128), ("dst", v6("::1"), 0xFFFF))
    f = fields(out)
    assert f["ipv6_src"] == v6("2001:db8::aaaa")
    assert f["ipv6_dst"] == v6("fe80::abcd:1") & ~0xFFFF | 1
    assert_checksums_ok(out)


def test_ipv6_class_label_hlimit():
    out = after(TCP6, "ipv6", ("tclass", 0xB8, 0xFF), ("label", 0x12345, 0xFFFFF),
                ("hlimit", 3, 0xFF))
    f = fields(out)
    assert (f["nw_tos"], f["ipv6_label"], f["nw_ttl"]) == (0xB8, 0x12345, 3)
    assert out[14] >> 4 == 6
    out = after(out, "ipv6", ("label", 0, 0xF), ("tclass", 0x3, 0x3))
    f = fields(out)
    assert (f["nw_tos"], f["ipv6_label"]) == (0xBB, 0x12340)
    assert_checksums_ok(out)


def test_ipv6_routing_header_with_segments_left():
    frame = bytes(eth() / ip6() / IPv6ExtHdrRouting(addresses=["2001:db8::5"], segleft=1)
                  / UDP(sport=1, dport=2))
    out = after(frame, "ipv6", ("dst", v6("2001:db8::6"), U128))
    assert out[-8:] == frame[-8:]  # the pseudo-header has the final destination
    assert_checksums_ok(out)
    out = after(frame, "ipv6", ("src", v6("2001:db8::7"), U128))
    assert_checksums_ok(out)


def test_ipv6_fragments():
    later = SAMPLES["ipv6_frag_later"]
    out = after(later, "ipv6", ("src", 1, U128))
    assert out[14 + 48:] == later[14 + 48:]
    first = bytes(eth() / ip6() / IPv6ExtHdrFragment(m=1) / UDP(sport=1, dport=2) / Raw(b"x" * 8))
    out = after(first, "ipv6", ("src", 1, U128))
    udp_csum = 14 + 48 + 6
    assert csum_at(out, udp_csum) == csum_replace(csum_at(first, udp_csum), v6("2001:db8::1"), 1)
    atomic = bytes(eth() / ip6() / IPv6ExtHdrFragment() / UDP(sport=1, dport=2))
    assert_checksums_ok(after(atomic, "ipv6", ("dst", 1, U128)))


# -- L4 ports -----------------------------------------------------------------------------

@pytest.mark.parametrize("frame, header", [(TCP4, "tcp"), (UDP4, "udp"), (TCP6, "tcp"),
                                           (UDP6, "udp"), (SCTP4, "sctp")])
def test_ports(frame, header):
    out = after(frame, header, ("src", 4242, U16), ("dst", 0x1200, 0xFF00))
    f = fields(out)
    assert f["tp_src"] == 4242
    assert f["tp_dst"] == (fields(frame)["tp_dst"] & 0xFF) | 0x1200
    assert_checksums_ok(out)


def test_icmp_and_icmpv6_type_code():
    out = after(ICMP4, "icmp", ("type", 0, 0xFF), ("code", 3, 0xFF))
    assert (fields(out)["tp_src"], fields(out)["tp_dst"]) == (0, 3)
    assert_checksums_ok(out)
    out = after(ICMP6, "icmpv6", ("type", 129, 0xFF))
    assert fields(out)["tp_src"] == 129
    assert_checksums_ok(out)


# -- arp and nd -------------------------------------------------------------------------------

def test_arp_fields():
    frame = SAMPLES["arp_request"]
    out = after(frame, "arp", ("sip", v4("1.1.1.1"), U32), ("tip", v4("2.2.2.2"), U32),
                ("op", 2, U16), ("sha", 0x0200000000AA, U48), ("tha", 0x0200000000BB, U48))
    f = fields(out)
    assert (f["nw_src"], f["nw_dst"], f["nw_proto"]) == (v4("1.1.1.1"), v4("2.2.2.2"), 2)
    assert (f["arp_sha"], f["arp_tha"]) == (0x0200000000AA, 0x0200000000BB)
    out = after(out, "arp", ("op", 0x100, 0xFF00))
    assert out[20:22] == b"\x01\x02"


def test_nd_target_and_link_layer_options():
    out = after(NS, "nd", ("target", v6("2001:db8::1234"), U128), ("sll", 0x0A0000000001, U48),
                ("tll", 0x0B0000000001, U48))
    f = fields(out)
    assert (f["nd_target"], f["arp_sha"], f["arp_tha"]) == (v6("2001:db8::1234"), 0x0A0000000001, 0)
    assert_checksums_ok(out)
    # The TLL option comes after an MTU option: the walk finds it.
    out = after(NA, "nd", ("tll", 0x0C0000000001, U48), ("sll", 1, U48))
    f = fields(out)
    assert (f["arp_sha"], f["arp_tha"]) == (0, 0x0C0000000001)
    assert_checksums_ok(out)


# -- sets on headers the frame does not have are no-ops ------------------------------------------

@pytest.mark.parametrize("name, header, fields_", [
    ("ipv4_ihl_4", "ipv4", [("src", 1, U32)]),
    ("ipv4_totlen_gt_frame", "ipv4", [("ttl", 1, 0xFF)]),
    ("ipv4_short_header", "ipv4", [("dst", 1, U32)]),
    ("tcp_doff_4", "tcp", [("src", 1, U16)]),
    ("tcp_doff_beyond", "tcp", [("dst", 1, U16)]),
    ("ipv4_totlen_cuts_udp", "udp", [("src", 1, U16)]),
    ("ipv4_frag_later", "udp", [("src", 1, U16)]),
    ("ipv4_frag_last_tcp", "tcp", [("src", 1, U16)]),
    ("icmp_truncated", "icmp", [("type", 1, 0xFF)]),
    ("udp", "tcp", [("src", 1, U16)]),
    ("udp", "ipv6", [("src", 1, U128)]),
    ("udp", "arp", [("sip", 1, U32)]),
    ("ipv6_udp", "ipv4", [("src", 1, U32)]),
    ("ipv6_icmp_echo", "icmp", [("type", 1, 0xFF)]),
    ("ipv6_icmp_echo", "nd", [("target", 1, U128)]),
    ("ipv4_proto_58", "icmpv6", [("type", 1, 0xFF)]),
    ("ipv6_plen_too_big", "ipv6", [("src", 1, U128)]),
    ("ipv6_frag_later", "udp", [("src", 1, U16)]),
    ("nd_ns_no_target", "nd", [("target", 1, U128)]),
    ("nd_ns_code_1", "nd", [("target", 1, U128)]),
    ("arp_truncated", "arp", [("op", 9, U16)]),
    ("arp_htype_6", "arp", [("op", 9, U16)]),
    ("eth_only_ip", "ipv4", [("src", 1, U32)]),
    ("empty", "tcp", [("src", 1, U16)]),
])
def test_set_on_missing_header_is_a_no_op(name, header, fields_):
    frame = SAMPLES[name]
    assert after(frame, header, *fields_) == frame


def test_unchanged_values_leave_the_frame_alone():
    assert after(TCP4, "ipv4", ("src", v4(IP_A), U32), ("ttl", 64, 0xFF)) == TCP4
    assert after(TCP4, "tcp", ("src", 9, 0)) == TCP4


def test_unknown_header_or_field_is_an_error():
    with pytest.raises(ValueError, match="unknown header 'vlan'"):
        apply_set(bytearray(TCP4), "vlan", ())
    with pytest.raises(ValueError, match=r"set\(tcp\) has no field 'flags'"):
        apply_set(bytearray(TCP4), "tcp", (("flags", 1, 1),))
    # Checked even when the frame has no such header.
    with pytest.raises(ValueError):
        apply_set(bytearray(b""), "ipv4", (("ihl", 1, 1),))


def test_one_parse_per_set(monkeypatch):
    from ovsd.packet import rewrite
    calls = []

    def counting(frame):
        calls.append(1)
        return header_offsets(frame)
    monkeypatch.setattr(rewrite, "header_offsets", counting)
    after(TCP4, "ipv4", ("src", 1, U32), ("dst", 2, U32), ("tos", 4, 0xFF), ("ttl", 1, 0xFF))
    after(UDP6, "ipv6", ("src", 1, U128), ("dst", 2, U128))
    after(NS, "nd", ("target", 1, U128), ("sll", 1, U48))
    assert len(calls) == 3


# -- vlan push/pop ------------------------------------------------------------------------------

def test_push_vlan_then_pop():
    pushed = push_vlan(TCP4, 0x8100, 0x1000 | 3 << 13 | 42)
    assert isinstance(pushed, bytearray) and len(pushed) == len(TCP4) + 4
    f = fields(pushed)
    assert (f["vlan_tci"], f["vlan_tpid"], f["dl_type"], f["tp_dst"]) == \
        (0x702A, 0x8100, 0x0800, 80)
    assert pushed[14:16] == b"\x60\x2a"  # CFI is not written, as OVS
    assert bytes(pop_vlan(pushed)) == TCP4


def test_push_on_tagged_makes_the_new_tag_outermost():
    frame = bytes(eth() / Dot1Q(vlan=5) / ip() / UDP())
    pushed = push_vlan(frame, 0x88A8, 7)
    f = fields(pushed)
    assert (f["vlan_tpid"], f["vlan_tci"], f["dl_type"]) == (0x88A8, 0x1007, 0x8100)
    assert bytes(pop_vlan(pushed)) == frame


def test_pop_vlan_untagged_or_runt_returns_a_private_copy():
    for frame in (TCP4, SAMPLES["vlan_truncated"], b""):
        popped = pop_vlan(frame)
        assert bytes(popped) == frame and isinstance(popped, bytearray)
    shared = bytearray(TCP4)
    assert pop_vlan(shared) is not shared


def test_push_vlan_needs_a_vlan_tpid():
    with pytest.raises(ValueError, match="TPID 0x0800"):
        push_vlan(TCP4, 0x0800, 1)


def test_push_pop_accept_memoryview():
    mv = memoryview(TCP4)
    assert bytes(pop_vlan(push_vlan(mv, 0x8100, 1))) == TCP4


def test_eth_set_on_a_bare_ethernet_header():
    frame = bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP())[:14]
    out = after(frame, "eth", ("dst", 1, U48))
    assert fields(out)["dl_dst"] == 1
