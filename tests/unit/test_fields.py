"""Fields: names, key mapping, value syntaxes and subfields (ovs-ofctl 3.1 rules)."""

import ipaddress

import pytest
from hypothesis import given, strategies as st

from ovsd.ofproto import fields as F
from ovsd.ofproto import values as V
from ovsd.ofproto.fields import FieldError, FlowSyntaxError
from ovsd.packet import key as K


# -- names -----------------------------------------------------------------------

@pytest.mark.parametrize("name, canonical", [
    ("in_port", "in_port"), ("dl_src", "eth_src"), ("eth_src", "eth_src"),
    ("dl_dst", "eth_dst"), ("dl_type", "eth_type"), ("eth_type", "eth_type"),
    ("dl_vlan", "dl_vlan"), ("dl_vlan_pcp", "dl_vlan_pcp"), ("vlan_tci", "vlan_tci"),
    ("vlan_vid", "vlan_vid"), ("vlan_pcp", "vlan_pcp"), ("nw_src", "ip_src"),
    ("ip_src", "ip_src"), ("nw_dst", "ip_dst"), ("arp_spa", "arp_spa"),
    ("arp_tpa", "arp_tpa"), ("arp_sha", "arp_sha"), ("arp_tha", "arp_tha"),
    ("arp_op", "arp_op"), ("nw_proto", "nw_proto"), ("ip_proto", "nw_proto"),
    ("nw_tos", "nw_tos"), ("ip_dscp", "ip_dscp"), ("nw_ecn", "nw_ecn"),
    ("ip_ecn", "nw_ecn"), ("nw_ttl", "nw_ttl"), ("ip_frag", "ip_frag"),
    ("nw_frag", "ip_frag"), ("ipv6_src", "ipv6_src"), ("ipv6_dst", "ipv6_dst"),
    ("ipv6_label", "ipv6_label"), ("nd_target", "nd_target"), ("nd_sll", "nd_sll"),
    ("nd_tll", "nd_tll"), ("tp_src", "tcp_src"), ("tp_dst", "tcp_dst"),
    ("tcp_src", "tcp_src"), ("udp_dst", "udp_dst"), ("sctp_src", "sctp_src"),
    ("tcp_flags", "tcp_flags"), ("icmp_type", "icmp_type"), ("icmp_code", "icmp_code"),
    ("icmpv6_type", "icmpv6_type"), ("icmpv6_code", "icmpv6_code"),
    ("metadata", "metadata"), ("reg0", "reg0"), ("reg15", "reg15"), ("xreg7", "xreg7"),
    ("xxreg3", "xxreg3"),
    ("NXM_OF_ETH_SRC", "eth_src"), ("OXM_OF_ETH_SRC", "eth_src"),
    ("NXM_OF_IN_PORT", "in_port"), ("NXM_OF_IP_SRC", "ip_src"),
    ("OXM_OF_IPV4_SRC", "ip_src"), ("NXM_NX_REG0", "reg0"), ("NXM_NX_REG15", "reg15"),
    ("OXM_OF_METADATA", "metadata"), ("OXM_OF_VLAN_VID", "vlan_vid"),
    ("NXM_OF_VLAN_TCI", "vlan_tci"), ("OXM_OF_PKT_REG0", "xreg0"),
    ("NXM_NX_XXREG1", "xxreg1"), ("OXM_OF_IP_DSCP", "ip_dscp"),
    ("NXM_OF_IP_TOS", "nw_tos"), ("NXM_NX_ND_SLL", "nd_sll"),
])
def test_lookup_accepts_every_alias(name, canonical):
    assert F.lookup(name).name == canonical


def test_lookup_unknown_field_names_it():
    with pytest.raises(FieldError, match="unknown field `icmpv4_type'"):
        F.lookup("icmpv4_type")
    with pytest.raises(FieldError) as e:
        F.lookup("NXM_NX_REG0", allow_nxm=False)
    assert "NXM_NX_REG0" in str(e.value)
    assert issubclass(FieldError, ValueError) and issubclass(FieldError, FlowSyntaxError)


def test_nxm_name_is_what_subfields_print():
    assert F.lookup("eth_dst").nxm_name == "NXM_OF_ETH_DST"
    assert F.lookup("metadata").nxm_name == "OXM_OF_METADATA"
    assert F.lookup("sctp_src").nxm_name == "OXM_OF_SCTP_SRC"
    assert F.lookup("dl_vlan").nxm_name == "dl_vlan"


# -- key mapping ---------------------------------------------------------------------

@pytest.mark.parametrize("name, key_field, shift, width", [
    ("in_port", "in_port", 0, 16), ("eth_src", "dl_src", 0, 48),
    ("vlan_tci", "vlan_tci", 0, 16), ("dl_vlan", "vlan_tci", 0, 12),
    ("vlan_vid", "vlan_tci", 0, 12), ("vlan_pcp", "vlan_tci", 13, 3),
    ("ip_dscp", "nw_tos", 2, 6), ("nw_ecn", "nw_tos", 0, 2), ("nw_tos", "nw_tos", 0, 8),
    ("arp_op", "nw_proto", 0, 16), ("arp_spa", "nw_src", 0, 32),
    ("nd_sll", "arp_sha", 0, 48), ("icmp_type", "tp_src", 0, 8),
    ("icmp_code", "tp_dst", 0, 8), ("tcp_flags", "tcp_flags", 0, 12),
    ("ipv6_label", "ipv6_label", 0, 20), ("reg3", "reg3", 0, 32),
    ("xreg0", "xreg0", 0, 64), ("xxreg0", "xxreg0", 0, 128),
])
def test_fields_live_in_their_key_fields(name, key_field, shift, width):
    mf = F.lookup(name)
    assert (mf.key_field, mf.shift, mf.width) == (key_field, shift, width)
    assert mf.key_mask & ~K.FIELDS[key_field].mask == 0


def test_views_of_the_tci_and_tos():
    key = K.make(vlan_tci=0x7005, nw_tos=0xB9)
    assert F.lookup("vlan_vid").from_key(key) == 0x1005  # includes the present bit
    assert F.lookup("dl_vlan").from_key(key) == 5
    assert F.lookup("vlan_pcp").from_key(key) == 3
    assert F.lookup("ip_dscp").from_key(key) == 46
    assert F.lookup("nw_tos").from_key(key) == 0xB8
    assert F.lookup("nw_ecn").from_key(key) == 1
    assert F.lookup("ip_dscp").key_mask == 0xFC << K.FIELDS["nw_tos"].offset
    assert F.lookup("nw_tos").key_mask == F.lookup("ip_dscp").key_mask


def test_write_keeps_neighbouring_bits():
    key = K.make(nw_tos=0xB9, vlan_tci=0x1005, nw_proto=6)
    assert K.get(F.lookup("ip_dscp").write(key, 10), "nw_tos") == 0x29
    assert K.get(F.lookup("nw_ecn").write(key, 2), "nw_tos") == 0xBA
    assert K.get(F.lookup("vlan_vid").write(key, 0x1007), "vlan_tci") == 0x1007
    assert K.get(F.lookup("vlan_pcp").write(key, 5), "vlan_tci") == 0xB005
    assert K.get(F.lookup("arp_op").write(key, 0x102), "nw_proto") == 2
    assert K.get(F.lookup("reg0").write(key, 0xAB, 0xF0), "reg0") == 0xA0
    assert F.lookup("reg0").read(F.lookup("reg0").write(0, 7)) == 7


def test_xreg_and_xxreg_overlay_the_registers():
    key = F.lookup("xreg0").write(0, 0x1_0000_0002)
    assert K.get(key, "reg0") == 1 and K.get(key, "reg1") == 2
    key = F.lookup("xxreg0").write(0, 1)
    assert K.get(key, "reg3") == 1


def test_in_port_oxm_translates_reserved_ports():
    mf = F.lookup("in_port_oxm")
    key = mf.write(0, 0xFFFFFFFE)
    assert K.get(key, "in_port") == V.OFPP_LOCAL
    assert mf.read(key) == 0xFFFFFFFE


# -- prerequisites --------------------------------------------------------------------

def _k(**kw):
    return K.make(**kw)


@pytest.mark.parametrize("name, ok, bad", [
    ("tcp_src", [_k(dl_type=0x800, nw_proto=6), _k(dl_type=0x86DD, nw_proto=6)],
     [_k(dl_type=0x800, nw_proto=17), _k(dl_type=0x800, nw_proto=6, nw_frag=3), 0]),
    ("udp_dst", [_k(dl_type=0x800, nw_proto=17)], [_k(dl_type=0x800, nw_proto=6)]),
    ("ip_src", [_k(dl_type=0x800)], [_k(dl_type=0x86DD), _k(dl_type=0x806)]),
    ("nw_ttl", [_k(dl_type=0x800), _k(dl_type=0x86DD)], [_k(dl_type=0x806)]),
    ("arp_spa", [_k(dl_type=0x806), _k(dl_type=0x8035)], [_k(dl_type=0x800)]),
    ("icmp_type", [_k(dl_type=0x800, nw_proto=1)], [_k(dl_type=0x86DD, nw_proto=58)]),
    ("icmpv6_type", [_k(dl_type=0x86DD, nw_proto=58)], [_k(dl_type=0x800, nw_proto=1)]),
    ("nd_sll", [_k(dl_type=0x86DD, nw_proto=58, tp_src=135)],
     [_k(dl_type=0x86DD, nw_proto=58, tp_src=136),
      _k(dl_type=0x86DD, nw_proto=58, tp_src=135, tp_dst=1)]),
    ("nd_target", [_k(dl_type=0x86DD, nw_proto=58, tp_src=136)],
     [_k(dl_type=0x86DD, nw_proto=58, tp_src=128)]),
    ("vlan_pcp", [_k(vlan_tci=0x1005)], [_k(vlan_tci=0)]),
    ("reg0", [0], []), ("eth_src", [0], []), ("vlan_vid", [0], []),
])
def test_prerequisites_follow_ovs(name, ok, bad):
    mf = F.lookup(name)
    for key in ok:
        assert mf.prereqs_ok(key)
    for key in bad:
        assert not mf.prereqs_ok(key)


def test_prereq_is_a_tuple_of_matches():
    (ip, ip6) = F.lookup("tcp_dst").prereq
    assert ip.matches(_k(dl_type=0x800, nw_proto=6, tp_dst=80))
    assert ip6.matches(_k(dl_type=0x86DD, nw_proto=6))
    assert F.lookup("reg0").prereq == ()
    assert F.lookup("tcp_dst").prereq_zero == K.NW_FRAG_LATER << K.FIELDS["nw_frag"].offset


# -- value syntax ----------------------------------------------------------------------

@pytest.mark.parametrize("field, text, value, mask", [
    ("tcp_dst", "80", 80, 0xFFFF), ("tcp_dst", "0x50", 80, 0xFFFF),
    ("tcp_dst", "010", 8, 0xFFFF), ("tcp_dst", "0x330/0xfff0", 0x330, 0xFFF0),
    ("tcp_dst", "*", 0, 0), ("eth_type", "0x800", 0x800, 0xFFFF),
    ("metadata", "0x00000000000000001", 1, (1 << 64) - 1),
    ("eth_src", "2:0:0:0:0:1", 0x020000000001, 0xFFFFFFFFFFFF),
    ("eth_dst", "01:00:00:00:00:00/01:00:00:00:00:00", 1 << 40, 1 << 40),
    ("ip_src", "10.0.0.0/24", 0x0A000000, 0xFFFFFF00),
    ("ip_src", "10.0.0.1/255.0.255.0", 0x0A000001, 0xFF00FF00),
    ("ip_src", "10.0.0.256", 0x0A000000, 0xFFFFFFFF),
    ("ipv6_src", "fd00::/64", 0xFD00 << 112, ((1 << 64) - 1) << 64),
    ("ip_frag", "later", 3, 0xFF), ("ip_frag", "YES", 1, 0xFD),
    ("ip_frag", "not_later", 0, 0xFE),
    ("tcp_flags", "+syn-ack", 0x002, 0x012), ("tcp_flags", "0x002/0x012", 2, 0x12),
    ("tcp_flags", "syn|ack", 0x012, 0xFFFF),
    ("in_port", "LOCAL", V.OFPP_LOCAL, 0xFFFF), ("in_port", "in_port", V.OFPP_IN_PORT, 0xFFFF),
    ("in_port", "4294967294", V.OFPP_LOCAL, 0xFFFF), ("in_port", "p3", 3, 0xFFFF),
])
def test_parse_values(field, text, value, mask):
    assert F.lookup(field).parse(text, {"p3": 3}.get) == (value, mask)


@pytest.mark.parametrize("field, text, message", [
    ("tcp_dst", "65536", "65536: value too large for 2-byte field tcp_dst"),
    ("tcp_dst", "-1", "-1: value too large for 2-byte field tcp_dst"),
    ("tcp_dst", "http", "http: bad syntax for tcp_dst value"),
    ("eth_type", "0x0800/0xff00", "0x0800/0xff00: invalid mask for field eth_type"),
    ("eth_dst", "02:00:00:00:00:0g", "02:00:00:00:00:0g: invalid Ethernet address"),
    ("ip_src", "10.0.0", "10.0.0: invalid IP address"),
    ("ip_src", "10.0.0.1/33",
     "10.0.0.1/33: IPv4 network prefix bits not between 0 and 32, inclusive"),
    ("ipv6_src", "fd00:::1", "fd00:::1: invalid IPv6 address"),
    ("ip_frag", "maybe", 'maybe: unknown fragment type (valid types are "no"'),
    ("in_port", "foo", "foo: invalid or unknown port for in_port"),
    ("in_port", "0xfffe", "0xfffe: invalid or unknown port for in_port"),
    ("tcp_flags", "+foo", "foo: unknown TCP flag(s)"),
    ("tcp_flags", "+syn+syn", "syn: Each TCP flag can be specified only once"),
    ("tcp_flags", "0x1000", "0x1000: unknown TCP flag(s)"),
])
def test_parse_errors_quote_the_value(field, text, message):
    with pytest.raises(FieldError) as e:
        F.lookup(field).parse(text)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("field, value, mask, text", [
    ("reg0", 5, None, "0x5"), ("reg0", 0, None, "0"), ("reg0", 5, 0xFF, "0x5/0xff"),
    ("tcp_dst", 80, None, "80"), ("nw_ecn", 3, 3, "3/0x3"), ("ip_src", 0x01020000,
                                                             0xFFFF0000, "1.2.0.0/16"),
    ("eth_dst", 0x020000000000, 0xFFFFFF000000, "02:00:00:00:00:00/ff:ff:ff:00:00:00"),
    ("ipv6_src", 1, None, "::1"), ("in_port", 0xFFFE, None, "LOCAL"),
    ("in_port", 3, None, "3"), ("ipv6_label", 0x12345, None, "0x12345"),
    ("tcp_flags", 0x12, 0xFFFF, "syn|ack"), ("tcp_flags", 2, 0x12, "+syn-ack"),
    ("ip_frag", 3, None, "later"), ("reg0", 1, 0, "ANY"),
])
def test_format_values(field, value, mask, text):
    assert F.lookup(field).format(value, mask) == text


@pytest.mark.parametrize("text, printed", [
    ("fd00::1", "fd00::1"), ("::ffff:1.2.3.4", "::ffff:1.2.3.4"), ("::", "::"),
    ("::1", "::1"), ("::1.2.3.4", "::1.2.3.4"), ("1::", "1::"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("fe80::1:2", "fe80::1:2"),
])
def test_ipv6_text_is_inet_ntop(text, printed):
    assert V.format_ipv6(V.parse_ipv6(text)) == printed


@given(st.integers(0, (1 << 128) - 1))
def test_ipv6_format_parses_back(value):
    text = V.format_ipv6(value)
    assert V.parse_ipv6(text) == value
    assert int(ipaddress.IPv6Address(text)) == value


@given(st.integers(0, 0xFFF), st.integers(0, 0xFFF))
def test_tcp_flags_masked_round_trip(value, mask):
    value &= mask
    text = V.format_tcp_flags(value, mask)
    if mask == 0xFFF:
        assert V.parse_tcp_flags(text) == (value, 0xFFFF)
    elif mask:
        assert V.parse_tcp_flags(text) == (value, mask)


@given(st.sampled_from([f for f in F.FIELDS if f.kind in ("decimal", "hex", "mac", "ipv4",
                                                           "ipv6")]),
       st.integers(0, (1 << 128) - 1), st.integers(0, (1 << 128) - 1))
def test_parse_format_round_trip(mf, value, mask):
    value &= mf.all_ones
    mask = mask & mf.all_ones if mf.maskable else mf.all_ones
    text = mf.format(value, mask)
    if text != "ANY":
        assert mf.parse(text) == (value, mask)


# -- ports -------------------------------------------------------------------------------

def test_ports():
    assert V.parse_port("65534") == V.OFPP_LOCAL
    assert V.parse_port("NONE") == V.OFPP_NONE == V.parse_port("any")
    assert V.parse_port("70000") is None and V.parse_port("-1") is None
    assert V.parse_port('"p1"', {"p1": 1}.get) == 1
    assert V.format_port(V.OFPP_FLOOD) == "FLOOD"
    assert V.format_port(2, {2: "p2"}.get) == "p2"
    assert V.format_port(5, {2: "p2"}.get) == "5"


# -- subfields ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, name, start, n_bits, printed", [
    ("NXM_NX_REG0[]", "reg0", 0, 32, "NXM_NX_REG0[]"),
    ("NXM_NX_REG3[8..15]", "reg3", 8, 8, "NXM_NX_REG3[8..15]"),
    ("reg0[0..7]", "reg0", 0, 8, "NXM_NX_REG0[0..7]"),
    ("NXM_OF_ETH_DST[]", "eth_dst", 0, 48, "NXM_OF_ETH_DST[]"),
    ("reg1[5]", "reg1", 5, 1, "NXM_NX_REG1[5]"),
    ("reg2", "reg2", 0, 32, "NXM_NX_REG2[]"),
    ("NXM_NX_REG0_W[]", "reg0", 0, 32, "NXM_NX_REG0[]"),
    ("OXM_OF_VLAN_VID[]", "vlan_vid", 0, 12, "OXM_OF_VLAN_VID[]"),
    ("metadata[16..31]", "metadata", 16, 16, "OXM_OF_METADATA[16..31]"),
    ("NXM_NX_XXREG0[64..127]", "xxreg0", 64, 64, "NXM_NX_XXREG0[64..127]"),
])
def test_subfield_syntax(text, name, start, n_bits, printed):
    sf = F.parse_subfield(text)
    assert (sf.field.name, sf.start, sf.n_bits) == (name, start, n_bits)
    assert str(sf) == printed


@pytest.mark.parametrize("text, message", [
    ("NXM_NX_FOO[]", "NXM_NX_FOO[]: unknown field `NXM_NX_FOO'"),
    ("NXM_NX_REG0[0..32]", "NXM_NX_REG0[0..32]: ending bit 32 is not valid because "
                           "field is only 32 bits wide"),
    ("NXM_NX_REG0[5..3]", "NXM_NX_REG0[5..3]: starting bit 5 is after ending bit 3"),
    ("NXM_NX_REG0[0..7", "NXM_NX_REG0[0..7: syntax error expecting [] or [<bit>] or "
                         "[<start>..<end>]"),
    ("NXM_NX_REG0[40]", "NXM_NX_REG0[40]: starting bit 40 is not valid"),
    ("reg0[]x", "reg0[]x: unexpected input following field syntax"),
])
def test_subfield_errors(text, message):
    with pytest.raises(FieldError) as e:
        F.parse_subfield(text)
    assert str(e.value).startswith(message)


def test_subfield_key_mask_read_write():
    sf = F.parse_subfield("NXM_NX_REG3[8..15]")
    assert sf.key_mask == 0xFF00 << K.FIELDS["reg3"].offset
    key = sf.write(K.make(reg3=0x12345678), 0xAB)
    assert K.get(key, "reg3") == 0x1234AB78
    assert sf.read(key) == 0xAB
    ip = F.parse_subfield("NXM_OF_IP_DST[0..7]")
    assert ip.read(K.make(nw_dst=0x0A000005)) == 5
    vid = F.parse_subfield("NXM_OF_VLAN_TCI[0..11]")
    assert K.get(vid.write(K.make(vlan_tci=0x1005), 7), "vlan_tci") == 0x1007
