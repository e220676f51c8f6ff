"""Datapath flows print like ovs-appctl dpctl/dump-flows (shapes recorded from OVS 3.1)."""
from ovsd.dpif.odp_format import format_dp_flow
from ovsd.packet import key as K

F = K.FIELDS


def test_ipv4_tcp_megaflow_like_ovs():
    key = K.make(in_port=1, dl_type=0x0800, nw_dst=0x0A000002, nw_proto=6)
    mask = F["in_port"].mask | F["dl_type"].mask | F["nw_dst"].mask | \
        F["nw_proto"].mask | F["nw_frag"].mask
    assert format_dp_flow(key & mask, mask, 0, 0, -1, "set(ipv4(dst=1.2.3.4)),2") == (
        "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth_type(0x0800),"
        "ipv4(dst=10.0.0.2,proto=6,frag=no), packets:0, bytes:0, used:never, "
        "actions:set(ipv4(dst=1.2.3.4)),2")


def test_arp_with_macs():
    key = K.make(in_port=1, dl_type=0x0806, dl_src=0x020000000001,
                 dl_dst=0xFFFFFFFFFFFF, nw_proto=1)
    mask = F["in_port"].mask | F["dl_type"].mask | F["dl_src"].mask | F["dl_dst"].mask | \
        F["nw_src"].mask | F["nw_dst"].mask | F["nw_proto"].mask
    assert format_dp_flow(key & mask, mask, 2, 84, 0.5, "100,2,3,4") == (
        "recirc_id(0),in_port(1),packet_type(ns=0,id=0),"
        "eth(src=02:00:00:00:00:01,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),"
        "arp(sip=0.0.0.0,tip=0.0.0.0,op=1), packets:2, bytes:84, used:0.500s, "
        "actions:100,2,3,4")


def test_vlan_encap_and_partial_masks():
    key = K.make(in_port=2, dl_type=0x0800, vlan_tci=0x1000 | 7, vlan_tpid=0x8100,
                 nw_src=0x0A000000)
    mask = F["in_port"].mask | F["dl_type"].mask | F["vlan_tci"].mask | \
        (0xFF000000 << F["nw_src"].offset) | F["nw_frag"].mask
    text = format_dp_flow(key & mask, mask, 1, 60, 1.25, "pop_vlan,1")
    assert text.startswith("recirc_id(0),in_port(2),packet_type(ns=0,id=0),"
                           "eth_type(0x8100),vlan(vid=7,pcp=0),encap(eth_type(0x0800),"
                           "ipv4(src=10.0.0.0/255.0.0.0,frag=no))")
