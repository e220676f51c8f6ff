"""Properties of the packet layer: the parser never raises, agrees with itself and
with what a packet was built from, and rewrites keep checksums valid."""

import ipaddress
import struct

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from ovsd.packet import key, parse
from ovsd.packet.parse import extract_key, extract_keys, header_offsets
from ovsd.packet.rewrite import SET_FIELDS, apply_set

SLOW = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

macs = st.integers(0, (1 << 48) - 1)
ip4s = st.integers(0, (1 << 32) - 1)
ip6s = st.integers(0, (1 << 128) - 1)
ports = st.integers(0, 0xFFFF)
bytes8 = st.integers(0, 0xFF)


def mac_str(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def payload(draw, l4) -> Raw:
    data = draw(st.binary(max_size=30))
    if isinstance(l4, SCTP):
        # scapy takes a tail shorter than a chunk header for padding, outside the CRC.
        data = data[:len(data) // 4 * 4]
    return Raw(data)


def get(frame, name: str) -> int:
    return key.get(extract_key(frame), name)


# -- never raises, and the fast paths agree with the general parser ----------------------

# Bytes that steer random frames into the deeper parsing branches.
ETHERTYPES = st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8035, 0x8100, 0x88A8, 0x0050, 0x05DC])
STEER = st.sampled_from([b"", b"\x45", b"\x46", b"\x4f", b"\x60", b"\x81\x00", b"\x08\x00\x45",
                         b"\xaa\xaa\x03\x00\x00\x00\x08\x00\x45", b"\x00\x01\x08\x00\x06\x04"])
PROTOS = st.sampled_from([0, 1, 2, 6, 17, 43, 44, 51, 58, 60, 132, 135, 136, 8, 5])


@st.composite
def steered_frames(draw):
    body = draw(st.lists(st.one_of(bytes8, PROTOS), max_size=150))
    return (draw(st.binary(min_size=12, max_size=12)) + draw(ETHERTYPES).to_bytes(2, "big")
            + draw(STEER) + bytes(body))


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.binary(max_size=200), steered_frames()), st.integers(0, 0xFFFF))
def test_never_raises_and_paths_agree(frame, port):
    k = extract_key(frame, port)
    runt = len(frame) < 14  # no input port: no megaflow matches it
    assert k == (0 if runt else parse._extract(frame, len(frame), -1) | key.make(in_port=port))
    assert extract_keys([frame, memoryview(frame)], port) == [k, k]
    assert k & ~key.PACKET_MASK == 0
    header_offsets(frame)


@settings(max_examples=600, deadline=None)
@given(steered_frames())
def test_header_offsets_agree_with_the_key(frame):
    h = header_offsets(frame)
    k = extract_key(frame)
    assert key.get(k, "dl_type") == h.dl_type
    if h.l4_ok and h.nw_proto in (6, 17, 132):
        assert key.get(k, "tp_src") == frame[h.l4] << 8 | frame[h.l4 + 1]
        assert key.get(k, "tp_dst") == frame[h.l4 + 2] << 8 | frame[h.l4 + 3]
    elif h.nw_proto in (6, 17, 132):
        assert key.get(k, "tp_src") == key.get(k, "tp_dst") == 0
    if h.dl_type in (0x0800, 0x86DD) and h.l4 >= 0:
        assert key.get(k, "nw_proto") == h.nw_proto
        assert key.get(k, "nw_frag") == h.nw_frag
    if h.dl_type == 0x0800 and not h.l3_ok:
        assert key.get(k, "nw_ttl") == key.get(k, "nw_src") == key.get(k, "nw_proto") == 0
    if h.vlan >= 0:
        assert key.get(k, "vlan_tci") & 0x1000


# -- well-formed packets parse to what they were built from ----------------------------------

@st.composite
def l2(draw):
    src, dst = draw(macs), draw(macs)
    pkt = Ether(src=mac_str(src), dst=mac_str(dst))
    exp = {"dl_src": src, "dl_dst": dst}
    if draw(st.booleans()):
        vid, pcp = draw(st.integers(0, 4095)), draw(st.integers(0, 7))
        pkt = pkt / Dot1Q(vlan=vid, prio=pcp)
        exp.update(vlan_tci=0x1000 | pcp << 13 | vid, vlan_tpid=0x8100)
    return pkt, exp


@st.composite
def l4_for(draw, proto_name: str):
    a, b = draw(ports), draw(ports)
    if proto_name == "tcp":
        flags = draw(st.integers(0, 0x1FF))
        return TCP(sport=a, dport=b, flags=flags), {"nw_proto": 6, "tp_src": a, "tp_dst": b,
                                                      "tcp_flags": flags}
    if proto_name == "udp":
        return UDP(sport=a, dport=b), {"nw_proto": 17, "tp_src": a, "tp_dst": b}
    if proto_name == "sctp":
        return SCTP(sport=a, dport=b), {"nw_proto": 132, "tp_src": a, "tp_dst": b}
    t, c = a & 0xFF, b & 0xFF
    if proto_name == "icmp":
        return ICMP(type=t, code=c), {"nw_proto": 1, "tp_src": t, "tp_dst": c}
    return ICMPv6EchoRequest(type=t, code=c), {"nw_proto": 58, "tp_src": t, "tp_dst": c}


@st.composite
def ipv4_packets(draw):
    pkt, exp = draw(l2())
    src, dst, tos, ttl = draw(ip4s), draw(ip4s), draw(bytes8), draw(bytes8)
    l4, l4exp = draw(l4_for(draw(st.sampled_from(["tcp", "udp", "sctp", "icmp"]))))
    pad = draw(st.binary(max_size=20))
    pkt = pkt / IP(src=str(ipaddress.IPv4Address(src)), dst=str(ipaddress.IPv4Address(dst)),
                   tos=tos, ttl=ttl) / l4 / payload(draw, l4)
    exp.update(dl_type=0x0800, nw_src=src, nw_dst=dst, nw_tos=tos, nw_ttl=ttl, **l4exp)
    return bytes(pkt) + pad, exp


@st.composite
def ipv6_packets(draw):
    pkt, exp = draw(l2())
    src, dst = draw(ip6s), draw(ip6s)
    tc, fl, hlim = draw(bytes8), draw(st.integers(0, 0xFFFFF)), draw(bytes8)
    l4, l4exp = draw(l4_for(draw(st.sampled_from(["tcp", "udp", "sctp", "icmpv6"]))))
    pkt = pkt / IPv6(src=str(ipaddress.IPv6Address(src)), dst=str(ipaddress.IPv6Address(dst)),
                     tc=tc, fl=fl, hlim=hlim)
    for ext in draw(st.lists(st.sampled_from([IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt]), max_size=2)):
        pkt = pkt / ext()
    pkt = pkt / l4 / payload(draw, l4)
    exp.update(dl_type=0x86DD, ipv6_src=src, ipv6_dst=dst, nw_tos=tc, ipv6_label=fl,
               nw_ttl=hlim, **l4exp)
    return bytes(pkt), exp


@st.composite
def arp_packets(draw):
    pkt, exp = draw(l2())
    op = draw(st.integers(0, 0xFFFF))
    sha, tha, spa, tpa = draw(macs), draw(macs), draw(ip4s), draw(ip4s)
    pkt = pkt / ARP(op=op, hwsrc=mac_str(sha), hwdst=mac_str(tha),
                    psrc=str(ipaddress.IPv4Address(spa)), pdst=str(ipaddress.IPv4Address(tpa)))
    exp.update(dl_type=0x0806, nw_src=spa, nw_dst=tpa, arp_sha=sha, arp_tha=tha,
               nw_proto=op if op <= 0xFF else 0)
    return bytes(pkt), exp


@SLOW
@given(st.one_of(ipv4_packets(), ipv6_packets(), arp_packets()))
def test_well_formed_packets_parse_to_their_fields(case):
    frame, exp = case
    got = key.unpack(extract_key(frame))
    for name in key.FIELDS:
        if key.FIELDS[name].offset < key.PACKET_BITS:
            assert got[name] == exp.get(name, 0), name


# -- rewrites keep checksums valid ------------------------------------------------------

def recomputed(frame: bytes) -> bytes:
    p = Ether(frame)
    layer = p
    while layer:
        for name in ("chksum", "cksum"):
            if name in layer.fields:
                setattr(layer, name, None)
        layer = layer.payload
    return bytes(p)


def equal_but_a_zero_checksum(out: bytes, rebuilt: bytes, h) -> bool:
    """True if the frames differ only in one checksum written 0x0000 where a
    fresh computation gives 0xFFFF (or the reverse): the same value in ones'
    complement, and what an incremental update (RFC 1624, as OVS's
    recalc_csum16 does it) can give.  Not for UDP, where 0 means "no
    checksum": there 0xFFFF is the only right answer."""
    if len(out) != len(rebuilt):
        return False
    diff = [i for i in range(len(out)) if out[i] != rebuilt[i]]
    if not diff or diff[-1] - diff[0] > 1:
        return False
    at = diff[0] - (diff[0] - h.l3) % 2 if h.l3 >= 0 else diff[0]
    fields = {h.l3 + 10} if h.dl_type == 0x0800 else set()
    if h.l4 >= 0 and h.nw_proto == 6:
        fields.add(h.l4 + 16)
    if h.l4 >= 0 and h.nw_proto in (1, 58):
        fields.add(h.l4 + 2)
    return (at in fields and at + 2 > diff[-1]
            and {out[at:at + 2], rebuilt[at:at + 2]} == {b"\x00\x00", b"\xff\xff"})


WIDTH = {"src": 0, "dst": 0, "tos": 8, "ttl": 8, "tclass": 8, "hlimit": 8, "label": 20,
         "type": 8, "code": 8}
ADDR_WIDTH = {"ipv4": 32, "ipv6": 128, "tcp": 16, "udp": 16, "sctp": 16}
WRITABLE = {"ipv4": ["src", "dst", "tos", "ttl"],
            "ipv6": ["src", "dst", "tclass", "hlimit", "label"],
            "tcp": ["src", "dst"], "udp": ["src", "dst"], "sctp": ["src", "dst"],
            "icmp": ["type", "code"], "icmpv6": ["type", "code"]}


KEY_FIELD = {("ipv4", "src"): "nw_src", ("ipv4", "dst"): "nw_dst", ("ipv4", "tos"): "nw_tos",
             ("ipv4", "ttl"): "nw_ttl", ("ipv6", "src"): "ipv6_src",
             ("ipv6", "dst"): "ipv6_dst", ("ipv6", "tclass"): "nw_tos",
             ("ipv6", "hlimit"): "nw_ttl", ("ipv6", "label"): "ipv6_label"}


@st.composite
def set_cases(draw):
    if draw(st.booleans()):
        frame, _ = draw(ipv4_packets())
        header = draw(st.sampled_from(["ipv4", "tcp", "udp", "sctp", "icmp"]))
    else:
        frame, _ = draw(ipv6_packets())
        header = draw(st.sampled_from(["ipv6", "tcp", "udp", "sctp", "icmpv6"]))
    names = draw(st.lists(st.sampled_from(WRITABLE[header]), min_size=1, max_size=3, unique=True))
    fields = []
    for name in names:
        width = WIDTH[name] or ADDR_WIDTH[header]
        fields.append((name, draw(st.integers(0, (1 << width) - 1)),
                       draw(st.sampled_from([(1 << width) - 1, 0, (1 << width) - 1 >> 4]))))
    return frame, header, tuple(fields)


# ICMP type 1 -> 0 with a zero body: the update gives checksum 0x0000 (as
# OVS's would), a fresh computation 0xFFFF.
ZERO_CSUM = (bytes(12) + b"\x08\x00E\x00\x00\x1c\x00\x01\x00\x00\x00\x01\xba\xe1"
             + bytes(8) + b"\x01\x00\xfe\xff" + bytes(4), "icmp", (("type", 0, 255),))


@SLOW
@given(set_cases())
@example(ZERO_CSUM)
def test_apply_set_keeps_checksums_valid(case):
    frame, header, fields = case
    assert all(n in SET_FIELDS[header] for n, _, _ in fields)
    buf = bytearray(frame)
    apply_set(buf, header, fields)
    out = bytes(buf)
    try:
        rebuilt = recomputed(out)
    except (OSError, ValueError, struct.error):
        # A random ICMPv6 type can turn the frame into an ND message whose
        # options scapy dissects but cannot build again: nothing to compare.
        assume(False)
    h = header_offsets(out)
    assert rebuilt.hex() == out.hex() or equal_but_a_zero_checksum(out, rebuilt, h)
    for name, value, mask in fields:
        if header in ("tcp", "udp", "sctp"):
            if h.nw_proto != {"tcp": 6, "udp": 17, "sctp": 132}[header]:
                assert out == frame
                continue
            got = get(out, "tp_src" if name == "src" else "tp_dst")
            was = get(frame, "tp_src" if name == "src" else "tp_dst")
        elif header in ("icmp", "icmpv6"):
            if h.nw_proto != (1 if header == "icmp" else 58):
                assert out == frame
                continue
            got = get(out, "tp_src" if name == "type" else "tp_dst")
            was = get(frame, "tp_src" if name == "type" else "tp_dst")
        else:
            kf = KEY_FIELD[header, name]
            got, was = get(out, kf), get(frame, kf)
        assert got == was & ~mask | value & mask
