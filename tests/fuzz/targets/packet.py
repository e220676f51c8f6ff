"""Target ``packet``: arbitrary frames through the parser, xlate and execute.

The first input byte picks the input port, the rest is the frame.  Checks:
extract_key, extract_keys (bytes, bytearray, memoryview) and header_offsets
never raise and agree, and shared_key answers for a burst only with a key every
frame of it has under the mask; translation on a bridge whose tables use every match
field kind and every action kind ovsd supports never raises; executing the
result never raises and every output frame is well formed: at least an
Ethernet header, and an IPv4 header (length, total length, checksum) and a
TCP/UDP checksum that were right on input are still right.
"""

from __future__ import annotations

from ovsd.dpif import odp_actions as odp
from ovsd.dpif.execute import execute
from ovsd.netdev.dummy.device import DummyNetdev
from ovsd.ofproto.backer import Backer
from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.normal_vlan import PortVlan
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.packet import key as K
from ovsd.packet.checksum import internet_checksum, ones_sum
from ovsd.packet.parse import extract_key, extract_keys, header_offsets, shared_key

MAX_LEN = 2048
N_PORTS = 4

# Every match field kind and every action kind, spread over several tables so
# resubmit and goto_table chain them.  Table 0 dispatches on a few bits of the
# frame so that each branch is reachable from some input.
FLOWS = [
    # -- table 0: dispatch ------------------------------------------------------
    "table=0,priority=100,in_port=1,actions=resubmit(,1)",
    "table=0,priority=100,in_port=2,actions=goto_table:2",
    "table=0,priority=100,in_port=3,actions=NORMAL",
    "table=0,priority=90,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,3)",
    "table=0,priority=80,vlan_tci=0x1000/0x1000,actions=resubmit(,4)",
    "table=0,priority=0,actions=resubmit(,5)",
    # -- table 1: L2 and VLANs ----------------------------------------------------
    "table=1,priority=60,dl_src=02:00:00:00:00:01,dl_type=0x0800,"
    "actions=mod_dl_src:02:00:00:00:00:aa,mod_dl_dst:02:00:00:00:00:bb,resubmit(,2)",
    "table=1,priority=50,dl_vlan=10,dl_vlan_pcp=3,actions=strip_vlan,output:2",
    "table=1,priority=45,vlan_vid=0x1005/0x1fff,actions=pop_vlan,push_vlan:0x88a8,"
    "set_field:4101->vlan_vid,output:3",
    "table=1,priority=40,vlan_tci=0,actions=push_vlan:0x8100,mod_vlan_vid:7,"
    "mod_vlan_pcp:5,resubmit(,2)",
    "table=1,priority=30,vlan_pcp=7,actions=set_vlan_vid:100,set_vlan_pcp:1,output:4",
    "table=1,priority=20,eth_type=0x0806,actions=resubmit(,6)",
    "table=1,priority=10,dl_type=0x86dd,actions=resubmit(,7)",
    "table=1,priority=0,actions=resubmit(,2)",
    # -- table 2: IPv4 and L4 rewrites -------------------------------------------
    "table=2,priority=90,ip,nw_ttl=1,actions=dec_ttl,output:1",
    "table=2,priority=80,tcp,nw_src=10.0.0.0/8,tcp_dst=80,"
    "actions=mod_nw_src:192.168.1.1,mod_tp_dst:8080,dec_ttl,output:3",
    "table=2,priority=79,tcp,tcp_flags=+syn-ack,actions=mod_tp_src:1,output:4",
    "table=2,priority=78,tcp,tp_src=0x100/0xff00,actions=set_field:9->tcp_src,"
    "set_field:10->tcp_dst,output:1",
    "table=2,priority=70,udp,nw_dst=192.168.0.0/16,udp_src=53,"
    "actions=mod_nw_dst:10.1.2.3,mod_nw_tos:40,mod_nw_ecn:2,mod_nw_ttl:9,output:2",
    "table=2,priority=69,udp,udp_dst=0x0/0xfff0,"
    "actions=set_field:7->udp_src,set_field:8->udp_dst,output:3",
    "table=2,priority=60,sctp,sctp_src=1,actions=set_field:99->sctp_dst,output:4",
    "table=2,priority=59,sctp,actions=mod_tp_src:5,mod_tp_dst:6,output:2",
    "table=2,priority=50,icmp,icmp_type=8,icmp_code=0,"
    "actions=set_field:0->icmp_type,set_field:3->icmp_code,output:1",
    "table=2,priority=40,ip,ip_frag=later,actions=output:2",
    "table=2,priority=39,ip,ip_frag=first,actions=set_field:10.9.8.7->ip_src,output:3",
    "table=2,priority=30,ip,nw_tos=32,actions=set_field:1->ip_ecn,"
    "set_field:12->ip_dscp,output:4",
    "table=2,priority=29,ip,ip_dscp=46,actions=set_field:0x10->nw_tos,output:4",
    "table=2,priority=28,ip,nw_ecn=3,actions=mod_nw_ecn:1,output:4",
    "table=2,priority=27,ip,nw_proto=47,actions=set_field:77->nw_ttl,output:2",
    "table=2,priority=20,ip,actions=dec_ttl,load:0x5->NXM_NX_REG0[0..7],"
    "move:NXM_OF_IP_SRC[]->NXM_NX_REG1[],resubmit(,8)",
    "table=2,priority=0,actions=write_actions(output:4),goto_table:9",
    # -- table 3: multicast / broadcast ------------------------------------------
    "table=3,priority=10,dl_dst=ff:ff:ff:ff:ff:ff,actions=FLOOD",
    "table=3,priority=5,eth_dst=01:80:c2:00:00:00/ff:ff:ff:ff:ff:f0,actions=drop",
    "table=3,priority=0,actions=ALL",
    # -- table 4: tagged ----------------------------------------------------------
    "table=4,priority=10,vlan_tci=0x3000/0xf000,actions=mod_vlan_vid:4095,in_port,"
    "output:4",
    "OpenFlow10|table=4,priority=5,actions=strip_vlan,resubmit(,1)",
    "table=4,priority=0,actions=NORMAL",
    # -- table 5: catch-all with action sets and metadata -------------------------
    "table=5,priority=10,dl_type=0x0800,"
    "actions=set_queue:3,write_metadata:0x12/0xff,goto_table:10",
    "table=5,priority=5,dl_type=0x88cc,actions=controller:100",
    "OpenFlow10|table=5,priority=0,actions=enqueue:2:1,note:01.02.03,output:LOCAL,pop_queue,"
    "exit",
    # -- table 6: ARP ---------------------------------------------------------------
    "table=6,priority=50,arp,arp_op=1,arp_tpa=10.0.0.0/24,"
    "actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
    "set_field:02:00:00:00:00:01->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
    "set_field:10.0.0.254->arp_spa,in_port",
    "table=6,priority=40,arp,arp_spa=192.168.0.0/16,arp_sha=02:00:00:00:00:00/ff:ff:00:00:00:00,"
    "actions=output:2",
    "table=6,priority=30,arp,arp_tha=00:00:00:00:00:00,actions=output:3",
    "table=6,priority=20,rarp,actions=output:4",
    "table=6,priority=0,actions=NORMAL",
    # -- table 7: IPv6 ------------------------------------------------------------
    "table=7,priority=60,icmp6,icmpv6_type=135,nd_target=fe80::1,"
    "nd_sll=02:00:00:00:00:01,actions=set_field:fe80::2->nd_target,"
    "set_field:02:00:00:00:00:02->nd_sll,output:1",
    "table=7,priority=59,icmp6,icmpv6_type=136,icmpv6_code=0,nd_tll=02:00:00:00:00:00/ff:00:00:00:00:00,"
    "actions=set_field:02:00:00:00:00:03->nd_tll,output:2",
    "table=7,priority=50,tcp6,ipv6_src=2001:db8::/32,tcp_dst=22,"
    "actions=set_field:2001:db8::1->ipv6_dst,set_field:222->tcp_dst,dec_ttl,output:3",
    "table=7,priority=49,udp6,ipv6_dst=ff02::/16,actions=set_field:0x12345->ipv6_label,"
    "set_field:5->udp_dst,output:FLOOD",
    "table=7,priority=48,sctp6,actions=set_field:7->sctp_src,output:4",
    "table=7,priority=40,ipv6,ipv6_label=0x0/0xff,nw_tos=0,"
    "actions=set_field:2001:db8::2->ipv6_src,set_field:64->nw_ttl,output:2",
    "table=7,priority=30,icmp6,actions=set_field:129->icmpv6_type,"
    "set_field:1->icmpv6_code,output:1",
    "table=7,priority=20,ipv6,ip_frag=yes,actions=output:4",
    "table=7,priority=1,ipv6,actions=dec_ttl,NORMAL",
    "table=7,priority=0,actions=clear_actions,write_actions(output:1)",
    # -- table 8: registers --------------------------------------------------------
    "table=8,priority=20,reg0=5,reg1=0x0a000000/0xff000000,"
    "actions=load:0x1->NXM_NX_REG2[],resubmit(,11)",
    "table=8,priority=10,reg0=5,actions=output:NXM_NX_REG0[0..1],"
    "move:NXM_NX_REG0[]->NXM_NX_REG3[],resubmit(,11)",
    "table=8,priority=0,actions=output:2",
    # -- table 9: goto target ---------------------------------------------------
    "table=9,priority=10,dl_type=0x0800,actions=write_actions(set_field:10.0.0.9->ip_dst,"
    "output:3),goto_table:10",
    "table=9,priority=0,actions=output:1",
    # -- table 10: metadata ---------------------------------------------------------
    "table=10,priority=10,metadata=0x12/0xff,actions=set_field:3->xreg4,"
    "set_field:0x7->xxreg3,resubmit(,11)",
    "table=10,priority=0,actions=resubmit(,0)",  # a loop back: xlate must stop it
    # -- table 11: wide registers and a resubmit back through the pipeline ---------
    "table=11,priority=10,xreg4=3,actions=output:4",
    "table=11,priority=9,xxreg3=0x7/0xf,actions=resubmit(1,1)",
    "table=11,priority=5,reg2=1,actions=resubmit(,12)",
    "table=11,priority=0,actions=in_port,output:ALL",
    "table=12,priority=0,actions=mod_dl_dst:ff:ff:ff:ff:ff:ff,output:IN_PORT,NORMAL",
]

_STATE: dict = {}


def build_bridge() -> tuple[Backer, Ofproto]:
    backer = Backer()
    ofp = Ofproto("br0")
    backer.add_bridge(ofp)
    vlans = {1: PortVlan(), 2: PortVlan.from_port_columns(10, (), None),
             3: PortVlan.from_port_columns(None, (10, 20), "trunk"),
             4: PortVlan.from_port_columns(20, (10,), "native-untagged")}
    for n in range(1, N_PORTS + 1):
        backer.add_port(ofp, OfPort(n, f"p{n}", 0, "dummy", vlans[n]),
                        DummyNetdev(f"p{n}", {}))
    for text in FLOWS:
        version, _, text = text.rpartition("|")
        ofp.add_flow(parse_flow(text, "add", version or "OpenFlow13", ofp.port_no))
    return backer, ofp


def setup() -> None:
    backer, ofp = build_bridge()
    _STATE.update(backer=backer, ofp=ofp,
                  odp={n: p.odp_port for n, p in ofp.ports.items()})


def seeds() -> list[bytes]:
    from tests.fuzz.targets import packet_seeds
    return packet_seeds.frames()


# -- checks --------------------------------------------------------------------------

def _check_parse(frame: bytes, port: int) -> int:
    k = extract_key(frame, port)
    ks = extract_keys([frame, bytearray(frame), memoryview(frame)], port)
    assert ks == [k, k, k], "extract_keys disagrees with extract_key"
    assert k & ~K.PACKET_MASK == 0, "a packet key with pipeline bits"
    _check_shared_key(frame, port, k)
    h = header_offsets(frame)
    if len(frame) < 14:
        assert k == 0 and h.l3 == -1
        return k
    assert K.get(k, "in_port") == port & 0xFFFF
    assert K.get(k, "dl_type") == h.dl_type, (hex(K.get(k, "dl_type")), h)
    assert (h.vlan >= 0) == bool(K.get(k, "vlan_tci") & K.VLAN_CFI)
    if h.dl_type in (0x0800, 0x86DD) and h.l4 >= 0:
        assert K.get(k, "nw_proto") == h.nw_proto, h
        assert K.get(k, "nw_frag") == h.nw_frag, h
        assert h.l3 < h.l4 <= h.l4_end <= len(frame), h
    if h.l4_ok and h.nw_proto in (6, 17, 132):
        assert K.get(k, "tp_src") == frame[h.l4] << 8 | frame[h.l4 + 1]
        assert K.get(k, "tp_dst") == frame[h.l4 + 2] << 8 | frame[h.l4 + 3]
    elif h.nw_proto in (6, 17, 132):
        assert K.get(k, "tp_src") == K.get(k, "tp_dst") == 0
    if h.dl_type == 0x0800 and not h.l3_ok:
        assert K.get(k, "nw_src") == K.get(k, "nw_proto") == K.get(k, "nw_ttl") == 0
    return k


_L2_MASK = (K.FIELDS["in_port"].mask | K.FIELDS["dl_dst"].mask | K.FIELDS["dl_src"].mask
            | K.FIELDS["dl_type"].mask)


def _check_shared_key(frame: bytes, port: int, k: int) -> None:
    """Copies share the frame's key, if shared_key answers; with one byte
    changed, it answers only if the changed frame's key agrees under the mask."""
    mask = K.PACKET_MASK if port & 1 else _L2_MASK
    got = shared_key([frame, bytes(frame), bytearray(frame)], port, mask)
    assert got is None or got == k, "shared_key of copies is not their key"
    if frame:
        other = bytearray(frame)
        other[port * 7 % len(frame)] ^= 0x5A
        got = shared_key([frame, bytes(other)], port, mask)
        if got is not None:
            assert got == k and extract_key(bytes(other), port) & mask == k & mask, \
                "shared_key answered for frames whose keys differ under the mask"


def _ipv4_facts(frame) -> tuple | None:
    """(ihl, total length, header ok, L4 proto, L4 checksum ok or None) of a frame
    header_offsets calls IPv4; None for anything else."""
    h = header_offsets(frame)
    if h.dl_type != 0x0800 or not h.l3_ok:
        return None
    off = h.l3
    ihl = (frame[off] & 0x0F) * 4
    tot = frame[off + 2] << 8 | frame[off + 3]
    hdr_ok = internet_checksum(bytes(frame[off:off + 10]) + bytes(frame[off + 12:off + ihl])) \
        == (frame[off + 10] << 8 | frame[off + 11])
    l4_ok = None
    if h.l4_ok and not h.nw_frag and h.nw_proto in (6, 17):
        seg = bytes(frame[h.l4:h.l4_end])
        csum_at = 16 if h.nw_proto == 6 else 6
        stored = seg[csum_at] << 8 | seg[csum_at + 1]
        if not (h.nw_proto == 17 and stored == 0):  # UDP over IPv4: 0 is "none"
            pseudo = bytes(frame[off + 12:off + 20]) + bytes([0, h.nw_proto]) \
                + len(seg).to_bytes(2, "big")
            zeroed = seg[:csum_at] + b"\0\0" + seg[csum_at + 2:]
            calc = internet_checksum(zeroed, ones_sum(pseudo))
            if h.nw_proto == 17 and calc == 0:
                calc = 0xFFFF
            l4_ok = calc == stored
    return ihl, tot, hdr_ok, h.nw_proto, l4_ok


def one_input(data: bytes) -> None:
    if not data:
        return
    port = data[0] % (N_PORTS + 2)  # 5 is a port the bridge lacks
    frame = data[1:]
    _check_parse(frame, port)
    if len(frame) < 14:
        return
    backer, odp_of = _STATE["backer"], _STATE["odp"]
    odp_in = odp_of.get(port, 77)
    key = extract_key(frame, odp_in)
    up = backer.upcall(key, frame)
    assert up.mask & ~K.PACKET_MASK == 0, "megaflow mask with pipeline bits"
    for a in up.actions:
        assert a[0] in (odp.OUTPUT, odp.SET, odp.PUSH_VLAN, odp.POP_VLAN, odp.USERSPACE), a
    outputs: dict[int, list] = {}
    execute(frame, up.actions, outputs)
    before = _ipv4_facts(frame)
    for port_no, frames in outputs.items():
        for out in frames:
            assert len(out) >= 14, f"a {len(out)}-byte frame sent to port {port_no}"
            if before is None:
                continue
            after = _ipv4_facts(out)
            if after is None:
                continue
            ihl, tot, hdr_ok, proto, l4_ok = before
            assert after[0] == ihl and after[1] == tot, (before, after)
            if hdr_ok:
                assert after[2], "IPv4 header checksum broken by a rewrite"
            if l4_ok and after[3] == proto:
                assert after[4], "TCP/UDP checksum broken by a rewrite"
    # The same frame through the whole datapath (caches, batching): an upcall
    # that raises is counted as lost there instead of propagating.
    dp = backer.dp
    lost = dp.stats.n_lost
    dp.process(odp_in, [frame, frame])
    assert dp.stats.n_lost == lost, "the datapath lost a packet to a failed upcall"
