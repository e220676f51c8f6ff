"""Stored flows come back exactly as they were added."""
import msgpack
import pytest

from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.ofproto import Ofproto
from ovsd.ofproto.persist import PersistError, decode_bridges, encode_bridges

FLOWS = [
    ("OpenFlow13", "table=0,priority=10,tcp,in_port=1,actions=set_field:4321->tcp_src,"
                   "set_field:46->ip_dscp,set_field:10.9.8.7->ip_src,output:2"),
    ("OpenFlow13", "table=0,actions=write_actions(output:2),goto_table:1"),
    ("OpenFlow13", "table=1,ipv6,ipv6_src=fd00::/120,actions=dec_ttl,output:3"),
    ("OpenFlow10", "table=2,cookie=0x123456789abcdef0,idle_timeout=30,hard_timeout=60,"
                   "send_flow_rem,dl_vlan=7,actions=mod_vlan_vid:8,strip_vlan,output:1"),
    ("OpenFlow10", "table=3,ip,actions=load:0x2->NXM_NX_REG0[],move:NXM_OF_IP_DST[0..7]->"
                   "NXM_NX_REG3[8..15],resubmit(,4),note:01.02.03,controller"),
    ("OpenFlow10", "table=4,reg3=0x200/0xff00,actions=output:NXM_NX_REG3[8..15],NORMAL"),
]


def test_round_trip_through_msgpack():
    br = Ofproto("br0")
    for version, text in FLOWS:
        br.add_flow(parse_flow(text, "add", version, br.port_no))
    data = msgpack.unpackb(msgpack.packb(encode_bridges([br])), raw=False)
    rules = decode_bridges(data)["br0"]
    originals = list(br.rules())
    assert len(rules) == len(originals)
    for a, b in zip(originals, rules):
        assert (a.table_id, a.priority, a.match, a.actions, a.cookie, a.idle_timeout,
                a.hard_timeout, a.flags, a.created) == \
               (b.table_id, b.priority, b.match, b.actions, b.cookie, b.idle_timeout,
                b.hard_timeout, b.flags, b.created)


def test_unknown_format_is_refused():
    with pytest.raises(PersistError, match="format"):
        decode_bridges({"format": 99, "bridges": {}})


def test_damaged_rule_is_a_clear_error():
    with pytest.raises(PersistError, match="damaged"):
        decode_bridges({"format": 1, "bridges": {"br0": [{"table": 0}]}})
