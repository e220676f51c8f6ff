"""extract_key and header_offsets against what OVS 3.1 extracts from the same frames.

OVS_FLOWS was recorded from OVS 3.1.0 (`ovs-ofctl parse-pcap` on SAMPLES, and
`ovs-appctl ofproto/trace` with vlan-limit=1 for the two double-tagged
frames, where ovs-ofctl would parse both tags).  Fields not listed are 0;
dl_src/dl_dst are MAC_A/MAC_B unless listed.  OVS does not print vlan_tpid,
TCP's reserved flag bits or ND's option type (kept in tcp_flags): EXTRA has
those, from lib/flow.c's rules.
"""

import ipaddress

import pytest

from ovsd.packet import key
from ovsd.packet import parse
from ovsd.packet.parse import HeaderOffsets, extract_key, extract_keys, header_offsets
from packet_samples import MAC_A, MAC_B, SAMPLES, fields


def mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


def ip4(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def ip6(s: str) -> int:
    return int(ipaddress.IPv6Address(s))


OVS_FLOWS: dict[str, dict[str, int]] = {
    "short_10": {},
    "eth_only_ip": {"dl_type": 0x800},
    "eth_unknown_type": {"dl_type": 0x1234},
    "vlan_truncated": {"dl_type": 0x8100},
    "vlan_tag_only": {"dl_type": 0x800, "vlan_tci": 0x3005},
    "vlan_tcp": {"dl_type": 0x800, "vlan_tci": 0xb064, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 6, "nw_ttl": 64, "tp_src": 1, "tp_dst": 2, "tcp_flags":
        0x10},
    "vlan_dei_udp": {"dl_type": 0x800, "vlan_tci": 0x1007, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_ttl": 64, "tp_src": 9, "tp_dst": 10},
    "qinq_outer_88a8": {"dl_type": 0x8100, "vlan_tci": 0x5009},
    "vlan_vlan_8100": {"dl_type": 0x8100, "vlan_tci": 0x1003},
    "mpls": {"dl_type": 0x8847},
    "llc_stp": {"dl_dst": mac("01:80:c2:00:00:00"), "dl_type": 0x5ff},
    "snap_ipv4_udp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 17, "nw_ttl": 64, "tp_src": 7, "tp_dst": 8},
    "snap_oui_cisco": {"dl_type": 0x5ff},
    "snap_small_type": {"dl_type": 0x5ff},
    "llc_truncated": {"dl_type": 0x5ff},
    "udp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 17, "nw_tos": 0xb9, "nw_ttl": 33, "tp_src": 1234, "tp_dst": 53},
    "udp_trailing": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 17, "nw_tos": 0xb9, "nw_ttl": 33, "tp_src": 1234, "tp_dst": 53},
    "tcp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 6, "nw_ttl": 64, "tp_src": 4000, "tp_dst": 80, "tcp_flags": 0x12},
    "tcp_all_flags": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 6, "nw_ttl": 64, "tp_src": 5, "tp_dst": 6, "tcp_flags": 0x1ff},
    "tcp_header_only": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 6, "nw_ttl": 64, "tp_src": 5, "tp_dst": 6, "tcp_flags":
        0x4},
    "tcp_doff_4": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 6, "nw_ttl": 64},
    "tcp_doff_beyond": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 6, "nw_ttl": 64},
    "tcp_options": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 6, "nw_ttl": 64, "tp_src": 5, "tp_dst": 6, "tcp_flags": 0x2},
    "ipv4_options_udp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_ttl": 64, "tp_src": 11, "tp_dst": 12},
    "ipv4_ihl_4": {"dl_type": 0x800},
    "ipv4_ihl_beyond_frame": {"dl_type": 0x800},
    "ipv4_totlen_gt_frame": {"dl_type": 0x800},
    "ipv4_totlen_lt_header": {"dl_type": 0x800},
    "ipv4_totlen_cuts_udp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_tos": 0xb9, "nw_ttl": 33},
    "ipv4_short_header": {"dl_type": 0x800},
    "ipv4_version_6": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_tos": 0xb9, "nw_ttl": 33, "tp_src": 1234,
        "tp_dst": 53},
    "ipv4_bad_checksum": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_tos": 0xb9, "nw_ttl": 33, "tp_src": 1234,
        "tp_dst": 53},
    "ipv4_frag_first": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_ttl": 64, "nw_frag": 1, "tp_src": 3, "tp_dst":
        4},
    "ipv4_frag_later": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 17, "nw_ttl": 64, "nw_frag": 3},
    "ipv4_frag_last_tcp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 6, "nw_ttl": 64, "nw_frag": 3},
    "ipv4_df_udp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 17, "nw_ttl": 64, "tp_src": 3, "tp_dst": 4},
    "udp_truncated": {"dl_type": 0x800},
    "icmp_echo": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 1, "nw_ttl": 64, "tp_src": 8},
    "icmp_unreach": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 1, "nw_ttl": 64, "tp_src": 3, "tp_dst": 13},
    "icmp_truncated": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 1, "nw_ttl": 64},
    "igmp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 2, "nw_tos": 0xc0, "nw_ttl": 1, "tp_src": 22},
    "sctp": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 132, "nw_ttl": 64, "tp_src": 2905, "tp_dst": 2906},
    "ipv4_proto_58": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 58, "nw_ttl": 64, "tp_src": 128},
    "ipv4_unknown_proto": {"dl_type": 0x800, "nw_src": ip4("10.0.0.1"), "nw_dst":
        ip4("192.168.1.2"), "nw_proto": 99, "nw_ttl": 64},
    "ipv6_tcp": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "ipv6_label": 0xabcde, "nw_proto": 6, "nw_tos": 0xb4, "nw_ttl": 17,
        "tp_src": 22, "tp_dst": 2222, "tcp_flags": 0x18},
    "ipv6_udp": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 17, "nw_ttl": 64, "tp_src": 546, "tp_dst": 547},
    "ipv6_icmp_echo": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 64, "tp_src": 128},
    "ipv6_plen_too_big": {"dl_type": 0x86dd},
    "ipv6_short_header": {"dl_type": 0x86dd},
    "ipv6_hbh_tcp": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 6, "nw_ttl": 64, "tp_src": 1, "tp_dst": 2, "tcp_flags":
        0x2},
    "ipv6_dst_rt_udp": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 17, "nw_ttl": 64, "tp_src": 5, "tp_dst": 6},
    "ipv6_frag_first": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 17, "nw_ttl": 64, "nw_frag": 1, "tp_src": 5, "tp_dst":
        6},
    "ipv6_frag_later": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 44, "nw_ttl": 64, "nw_frag": 3},
    "ipv6_frag_atomic": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 17, "nw_ttl": 64, "tp_src": 5, "tp_dst": 6},
    "ipv6_ah_tcp": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 6, "nw_ttl": 64, "tp_src": 7, "tp_dst": 8, "tcp_flags":
        0x2},
    "ipv6_ext_truncated": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1")},
    "ipv6_ext_len_beyond": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1")},
    "ipv6_unknown_nh": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 59, "nw_ttl": 64},
    "ipv6_icmp_truncated": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 64},
    "nd_ns_sll": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 135, "arp_sha":
        mac("02:00:00:00:00:01"), "nd_target": ip6("2001:db8::99")},
    "nd_na_tll": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 136, "arp_tha":
        mac("02:00:00:00:00:02"), "nd_target": ip6("2001:db8::98")},
    "nd_na_mtu_then_tll": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 136, "arp_tha":
        mac("02:00:00:00:00:03"), "nd_target": ip6("2001:db8::98")},
    "nd_na_tll_sll": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 136, "arp_sha":
        mac("02:00:00:00:00:05"), "arp_tha": mac("02:00:00:00:00:04"), "nd_target":
        ip6("2001:db8::97")},
    "nd_dup_tll": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 136},
    "nd_ns_no_target": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 64, "tp_src": 135},
    "nd_ns_code_1": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 135, "tp_dst": 1},
    "nd_opt_len_0": {"dl_type": 0x86dd, "ipv6_src": ip6("2001:db8::1"), "ipv6_dst":
        ip6("fe80::abcd:1"), "nw_proto": 58, "nw_ttl": 255, "tp_src": 135, "nd_target":
        ip6("2001:db8::95")},
    "arp_request": {"dl_dst": mac("ff:ff:ff:ff:ff:ff"), "dl_type": 0x806, "nw_src":
        ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"), "nw_proto": 1, "arp_sha":
        mac("00:11:22:33:44:55")},
    "arp_reply": {"dl_type": 0x806, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 2, "arp_sha": mac("00:11:22:33:44:55"), "arp_tha":
        mac("66:77:88:99:aa:bb")},
    "arp_op_300": {"dl_type": 0x806, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "arp_sha": mac("00:11:22:33:44:55"), "arp_tha": mac("66:77:88:99:aa:bb")},
    "arp_truncated": {"dl_type": 0x806},
    "arp_htype_6": {"dl_type": 0x806},
    "rarp": {"dl_type": 0x8035, "nw_src": ip4("10.0.0.1"), "nw_dst": ip4("192.168.1.2"),
        "nw_proto": 3, "arp_sha": mac("00:11:22:33:44:55"), "arp_tha":
        mac("66:77:88:99:aa:bb")},
}

EXTRA: dict[str, dict[str, int]] = {
    "vlan_tag_only": {"vlan_tpid": 0x8100},
    "vlan_tcp": {"vlan_tpid": 0x8100},
    "vlan_dei_udp": {"vlan_tpid": 0x8100},
    "qinq_outer_88a8": {"vlan_tpid": 0x88A8},
    "vlan_vlan_8100": {"vlan_tpid": 0x8100},
    "tcp_all_flags": {"tcp_flags": 0xFFF},
    "nd_ns_sll": {"tcp_flags": 1},
    "nd_na_tll": {"tcp_flags": 2},
    "nd_na_mtu_then_tll": {"tcp_flags": 2},
    "nd_na_tll_sll": {"tcp_flags": 2},
    # A repeated option voids target and addresses, not the type seen first.
    "nd_dup_tll": {"tcp_flags": 2},
}


def expected(name: str) -> dict[str, int]:
    exp = {name: 0 for name in fields(b"")}
    if len(SAMPLES[name]) >= 14:
        exp.update(dl_src=mac(MAC_A), dl_dst=mac(MAC_B))
    exp.update(OVS_FLOWS.get(name, {}))
    exp.update(EXTRA.get(name, {}))
    return exp


@pytest.mark.parametrize("name", list(SAMPLES))
def test_fields_match_ovs(name):
    got = fields(SAMPLES[name])
    exp = expected(name)
    assert {k: hex(v) for k, v in got.items() if v != exp[k]} == {}, \
        f"expected {({k: hex(exp[k]) for k, v in got.items() if v != exp[k]})}"


def test_every_sample_was_recorded():
    assert set(SAMPLES) - set(OVS_FLOWS) == {"empty"}


# -- the behaviours the conformance suite recorded, spelled out ----------------------

L3_L4 = ("nw_src", "nw_dst", "nw_proto", "nw_tos", "nw_ttl", "nw_frag", "tp_src",
         "tp_dst", "tcp_flags", "ipv6_src", "ipv6_dst", "ipv6_label")


@pytest.mark.parametrize("name", ["ipv4_ihl_4", "ipv4_ihl_beyond_frame", "ipv4_totlen_gt_frame",
                                  "ipv4_totlen_lt_header", "ipv4_short_header", "eth_only_ip"])
def test_malformed_ipv4_keeps_dl_type_only(name):
    k = extract_key(SAMPLES[name])
    assert key.get(k, "dl_type") == 0x0800
    assert all(key.get(k, f) == 0 for f in L3_L4)


@pytest.mark.parametrize("name", ["ipv6_plen_too_big", "ipv6_short_header"])
def test_malformed_ipv6_keeps_dl_type_only(name):
    k = extract_key(SAMPLES[name])
    assert key.get(k, "dl_type") == 0x86DD
    assert all(key.get(k, f) == 0 for f in L3_L4)


def test_truncated_extension_header_keeps_only_the_addresses():
    k = extract_key(SAMPLES["ipv6_ext_truncated"])
    assert key.get(k, "ipv6_src") == ip6("2001:db8::1")
    assert key.get(k, "ipv6_dst") == ip6("fe80::abcd:1")
    assert key.get(k, "nw_ttl") == key.get(k, "nw_proto") == 0


@pytest.mark.parametrize("name", ["tcp_doff_4", "tcp_doff_beyond"])
def test_bad_tcp_data_offset_keeps_proto_only(name):
    k = extract_key(SAMPLES[name])
    assert key.get(k, "nw_proto") == 6
    assert key.get(k, "tp_src") == key.get(k, "tp_dst") == key.get(k, "tcp_flags") == 0


def test_ip_checksum_is_not_checked_and_trailing_bytes_are_not_l4():
    assert extract_key(SAMPLES["ipv4_bad_checksum"]) == extract_key(SAMPLES["udp"])
    assert extract_key(SAMPLES["udp_trailing"]) == extract_key(SAMPLES["udp"])


def test_total_length_bounds_l4():
    # The UDP header is in the frame but only 4 of its bytes are inside the datagram.
    k = extract_key(SAMPLES["ipv4_totlen_cuts_udp"])
    assert key.get(k, "nw_proto") == 17 and key.get(k, "tp_src") == 0


def test_fragments():
    first = extract_key(SAMPLES["ipv4_frag_first"])
    later = extract_key(SAMPLES["ipv4_frag_later"])
    assert key.get(first, "nw_frag") == key.NW_FRAG_ANY and key.get(first, "tp_dst") == 4
    assert key.get(later, "nw_frag") == key.NW_FRAG_ANY | key.NW_FRAG_LATER
    assert key.get(later, "tp_src") == 0
    v6later = extract_key(SAMPLES["ipv6_frag_later"])
    assert key.get(v6later, "nw_proto") == 44 and key.get(v6later, "nw_frag") == 3
    # An atomic fragment (offset 0, no more fragments) is not a fragment for OVS.
    assert key.get(extract_key(SAMPLES["ipv6_frag_atomic"]), "nw_frag") == 0


def test_vlan_limit_one():
    k = extract_key(SAMPLES["vlan_vlan_8100"])
    assert key.get(k, "vlan_tci") == 0x1000 | 3 and key.get(k, "dl_type") == 0x8100
    assert key.get(k, "nw_src") == 0


# -- in_port, batches and input types ------------------------------------------------

def test_in_port_is_the_only_difference_between_ports():
    for name, frame in SAMPLES.items():
        if len(frame) < 14:
            continue  # see test_a_runt_has_no_input_port
        k0 = extract_key(frame)
        k7 = extract_key(frame, 7)
        assert k7 == k0 | key.make(in_port=7), name
        assert key.get(k7, "in_port") == 7


def test_a_runt_has_no_input_port():
    # So no megaflow (every mask has in_port) matches it and the datapath
    # drops it as a runt instead of forwarding it.
    for n in range(14):
        assert extract_key(bytes(range(n)), 7) == 0
        assert extract_keys([bytes(range(n))], 7) == [0]
    assert key.get(extract_key(bytes(14), 7), "in_port") == 7


def test_in_port_is_sixteen_bits():
    k = extract_key(SAMPLES["udp"], 0x1_0005)
    assert key.get(k, "in_port") == 5
    assert key.get(k, "vlan_tci") == 0


def test_batch_equals_single_and_accepts_any_buffer():
    frames = list(SAMPLES.values())
    expect = [extract_key(f, 3) for f in frames]
    assert extract_keys(frames, 3) == expect
    assert extract_keys([bytearray(f) for f in frames], 3) == expect
    assert extract_keys([memoryview(f) for f in frames], 3) == expect
    assert [extract_key(memoryview(bytearray(f)), 3) for f in frames] == expect
    assert extract_keys([], 1) == []


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_truncation_parses_like_the_general_parser(name):
    # The fast paths must agree with the general parser on every prefix, and
    # nothing may raise.
    frame = SAMPLES[name]
    for n in range(len(frame) + 1):
        cut = frame[:n]
        assert extract_key(cut) == parse._extract(cut, n, -1), n
        header_offsets(cut)


def test_fast_path_is_taken_for_plain_tcp_and_udp(monkeypatch):
    def general(*args):
        raise AssertionError("general parser used")
    monkeypatch.setattr(parse, "_extract", general)
    for name in ("udp", "tcp", "tcp_options", "udp_trailing", "ipv4_bad_checksum"):
        extract_key(SAMPLES[name])
    extract_keys([SAMPLES["udp"], SAMPLES["tcp"]])


# -- header_offsets ----------------------------------------------------------------------

def test_offsets_plain_tcp():
    assert header_offsets(SAMPLES["tcp"]) == HeaderOffsets(
        vlan=-1, l3=14, dl_type=0x0800, l3_ok=True, l4=34, l4_end=14 + 20 + 20 + 5,
        nw_proto=6, l4_ok=True, nw_frag=0)


def test_offsets_vlan_snap_and_options():
    h = header_offsets(SAMPLES["vlan_tcp"])
    assert (h.vlan, h.l3, h.l4, h.l4_ok) == (12, 18, 38, True)
    h = header_offsets(SAMPLES["snap_ipv4_udp"])
    assert (h.vlan, h.l3, h.l4, h.nw_proto, h.l4_ok) == (-1, 22, 42, 17, True)
    h = header_offsets(SAMPLES["ipv4_options_udp"])
    assert (h.l3, h.l4, h.l4_end) == (14, 38, 14 + 24 + 8)


def test_offsets_ipv6_extension_headers_and_fragments():
    h = header_offsets(SAMPLES["ipv6_dst_rt_udp"])
    assert (h.l3, h.l4, h.nw_proto, h.l4_ok) == (14, 14 + 40 + 8 + 8, 17, True)
    h = header_offsets(SAMPLES["ipv6_ah_tcp"])
    assert (h.l4, h.nw_proto, h.l4_ok) == (14 + 40 + 24, 6, True)
    h = header_offsets(SAMPLES["ipv6_frag_later"])
    assert (h.l4, h.nw_proto, h.l4_ok, h.nw_frag) == (14 + 48, 44, False, 3)
    h = header_offsets(SAMPLES["ipv6_ext_truncated"])
    assert (h.l3_ok, h.l4, h.l4_ok) == (True, -1, False)


@pytest.mark.parametrize("name, l3_ok, l4_ok", [
    ("ipv4_ihl_4", False, False), ("ipv4_totlen_gt_frame", False, False),
    ("tcp_doff_4", True, False), ("tcp_doff_beyond", True, False),
    ("tcp_header_only", True, True), ("udp_truncated", False, False),
    ("ipv4_totlen_cuts_udp", True, False), ("icmp_truncated", True, False),
    ("ipv4_frag_later", True, False), ("ipv4_frag_first", True, True),
    ("arp_request", True, False), ("arp_truncated", False, False),
    ("arp_htype_6", False, False), ("rarp", True, False), ("llc_stp", False, False),
    ("ipv6_plen_too_big", False, False), ("ipv6_icmp_truncated", True, False),
])
def test_offsets_validity(name, l3_ok, l4_ok):
    h = header_offsets(SAMPLES[name])
    assert (h.l3_ok, h.l4_ok) == (l3_ok, l4_ok)


def test_offsets_of_runts():
    assert header_offsets(b"") == HeaderOffsets(-1, -1, 0, False, -1, -1, 0, False, 0)
    h = header_offsets(SAMPLES["vlan_truncated"])
    assert (h.vlan, h.l3, h.dl_type) == (-1, 14, 0x8100)
