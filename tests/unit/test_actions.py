"""Actions: parsing, OVS's version translations and refusals, printing.

Expected strings were recorded from ovs-ofctl 3.1 (tests/data/flow_syntax)."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ovsd.ofproto import actions as A
from ovsd.ofproto import fields as F
from ovsd.ofproto import values as V
from ovsd.ofproto.action_syntax import parse_actions
from ovsd.ofproto.actions import format_action, format_actions
from ovsd.ofproto.fields import FlowSyntaxError
from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.match import parse_match

DATA = Path(__file__).resolve().parents[1] / "data" / "flow_syntax"
PORTS = {"p1": 1, "p2": 2, "p3": 3, "p4": 4}


def load(*names):
    out = []
    for name in names:
        with open(DATA / name) as f:
            out += [json.loads(line) for line in f]
    return out


def dumped_actions(line):
    return line[line.index("actions=") + len("actions="):] if line.startswith(" cookie") \
        else None


def assert_ovs_error(expected, err):
    text = str(err)
    if expected.startswith("switch: "):
        assert expected[len("switch: "):] in text
    else:
        assert text.startswith(expected), (text, expected)


RECORDS = load("action_flows.jsonl", "action_flows_other_versions.jsonl",
               "conformance_flows.jsonl")
OK = [r for r in RECORDS if "dump" in r and "deviation" not in r]
REFUSED = [r for r in RECORDS if "error" in r and "deviation" not in r]


@pytest.mark.parametrize("rec", OK, ids=lambda r: f"{r['version']}:{r['flow']}")
def test_actions_print_like_ovs_dump_flows(rec):
    fm = parse_flow(rec["flow"], "add", rec["version"], PORTS.get)
    for version, line in rec["dump"].items():
        assert format_actions(fm.actions, version) == dumped_actions(line), version


@pytest.mark.parametrize("rec", REFUSED, ids=lambda r: f"{r['version']}:{r['flow']}")
def test_refusals_match_ovs(rec):
    with pytest.raises(FlowSyntaxError) as e:
        parse_flow(rec["flow"], "add", rec["version"], PORTS.get)
    if "UNENCODABLE" in rec["error"]:
        # OVS 1.0 can only say "unencodable"; the real error is the order.
        assert "OFPBAC_UNSUPPORTED_ORDER" in str(e.value)
    else:
        assert_ovs_error(rec["error"], e.value)


@pytest.mark.parametrize("rec", [r for r in RECORDS if r.get("deviation")],
                         ids=lambda r: f"{r['version']}:{r['flow']}")
def test_deliberate_deviations_are_refused_clearly(rec):
    with pytest.raises(FlowSyntaxError) as e:
        parse_flow(rec["flow"], "add", rec["version"], PORTS.get)
    if rec["deviation"] == "unsupported":
        assert "not supported" in str(e.value)
    else:
        assert "mod_vlan_vid" in str(e.value)


# -- the data model -------------------------------------------------------------------

def acts(text, version="OpenFlow13", match="", **kw):
    return parse_actions(text, version, parse_match(match), PORTS.get, **kw)


VID = F.lookup("vlan_vid")


def test_mod_vlan_vid_by_version():
    # After the push the switch knows a tag is there (flow_has_vlan).
    assert acts("mod_vlan_vid:42,output:2") == (
        A.PushVlan(0x8100), A.SetField(VID, 0x102A, 0xFFFF, flow_has_vlan=True), A.Output(2))
    assert acts("mod_vlan_vid:42,output:2", match="dl_vlan=7") == (
        A.SetField(VID, 0x102A, 0xFFFF, flow_has_vlan=True), A.Output(2))
    assert acts("mod_vlan_vid:42", "OpenFlow10") == (A.SetVlanVid(42, True, False),)
    assert acts("mod_vlan_vid:42", "OpenFlow10", "dl_vlan=7") == (A.SetVlanVid(42, True, True),)
    assert acts("mod_vlan_pcp:5") == (
        A.PushVlan(0x8100), A.SetField(F.lookup("vlan_pcp"), 5, 0xFF, flow_has_vlan=True))
    assert acts("push_vlan:0x88a8,set_field:4097->vlan_vid") == (
        A.PushVlan(0x88A8), A.SetField(VID, 0x1001, 0xFFFF, flow_has_vlan=True))


@pytest.mark.parametrize("text, match", [
    ("strip_vlan", ""), ("pop_vlan", ""), ("set_vlan_vid:5", ""), ("set_vlan_pcp:1", ""),
    ("mod_tp_dst:80", "ip"), ("mod_tp_src:80", ""), ("mod_tp_dst:80", "icmp"),
    ("dec_ttl", ""), ("dec_ttl", "arp"), ("mod_nw_src:1.2.3.4", "ipv6"),
    ("mod_nw_tos:4", ""), ("strip_vlan,strip_vlan", "dl_vlan=5"),
])
def test_openflow13_refuses_inconsistent_actions(text, match):
    with pytest.raises(FlowSyntaxError) as e:
        acts(text, "OpenFlow13", match)
    assert "none of the usable flow formats (OpenFlow10,NXM)" in str(e.value)
    assert acts(text, "OpenFlow10", match)  # OpenFlow 1.0 takes them


@pytest.mark.parametrize("text, match, token", [
    ("set_field:4102->vlan_vid", "", "set_field vlan_vid lacks correct prerequisites"),
    ("set_field:1.2.3.4->ip_src", "arp", "set_field ip_src lacks correct prerequisites"),
    ("set_field:80->udp_dst", "tcp", "set_field udp_dst lacks correct prerequisites"),
    ("move:NXM_OF_IP_SRC[]->NXM_NX_REG0[]", "",
     "source field ip_src lacks correct prerequisites"),
    ("output:65280", "", "OFPBAC_BAD_OUT_PORT"),
    ("output:NONE", "", "OFPBAC_BAD_OUT_PORT"),
])
def test_impossible_actions_are_refused_in_every_version(text, match, token):
    for version in ("OpenFlow10", "OpenFlow13"):
        with pytest.raises(FlowSyntaxError) as e:
            acts(text, version, match)
        assert "actions are invalid with specified match" in str(e.value)
        assert token in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("foo:1", "unknown action foo"),
    ("output:foo", "foo: output to unknown port"),
    ("mod_vlan_vid:4096", "4096: not a valid VLAN VID"),
    ("mod_vlan_pcp:8", "8: not a valid VLAN PCP"),
    ("mod_nw_tos:185", "185: not a valid TOS"),
    ("mod_nw_ecn:4", "4: not a valid ECN"),
    ("mod_dl_src:02:00:00:00:00", "invalid mac address 02:00:00:00:00"),
    ("mod_nw_src:1.2.3", "1.2.3: could not convert to IP address"),
    ("mod_tp_dst:65536", 'invalid destination port "65536"'),
    ("push_vlan:0x0800", "0x0800: not a valid VLAN ethertype"),
    ("set_field:1->foo", "foo is not a valid OXM field name"),
    ("set_field:6->nw_proto", "nw_proto is read-only"),
    ("set_field:64->ip_dscp", "64 is not a valid value for field ip_dscp"),
    ("set_field:1", "1: missing `->'"),
    ("load:0x1ff->NXM_NX_REG1[0..7]", "0x1ff->NXM_NX_REG1[0..7]: value 0x1ff does not fit "
                                     "into 8 bits"),
    ("load:foo->NXM_NX_REG0[]", "foo->NXM_NX_REG0[]: cannot parse integer value"),
    ("move:NXM_NX_REG0[]->NXM_NX_REG1[0..15]", "NXM_NX_REG0[]->NXM_NX_REG1[0..15]: source "
                                               "field is 32 bits wide but destination is "
                                               "16 bits wide"),
    ("resubmit(,)", 'at least one "in_port" or "table" must be specified on resubmit'),
    ("resubmit(foo,1)", "foo: resubmit to unknown port"),
    ("goto_table:abc", 'unknown table "abc"'),
    ("drop,output:2", '"drop" must not be accompanied by any other action or instruction'),
    ("goto_table:1,output:2", "invalid instruction ordering: apply_actions must appear "
                              "before goto_table"),
    ("write_actions(output:2),write_actions(output:3)",
     "duplicate write_actions instruction not allowed"),
    ("write_actions(goto_table:1)", "goto_table instruction not allowed here"),
    ("note:hello", "bad hex digit in `note' argument"),
    ("enqueue:2", '"enqueue" syntax is "enqueue:PORT:QUEUE" or "enqueue(PORT,QUEUE)"'),
    ("controller(foo=1)", 'unknown key "foo" parsing controller action'),
    ("apply_actions(output:2)", "apply_actions is the default instruction"),
])
def test_syntax_errors_name_the_token(text, message):
    with pytest.raises(FlowSyntaxError) as e:
        acts(text, "OpenFlow13", "tcp")
    assert str(e.value).startswith(message)


def test_switch_side_refusals():
    with pytest.raises(FlowSyntaxError, match="OFPBIC_BAD_TABLE_ID"):
        acts("goto_table:0", "OpenFlow13")
    assert acts("goto_table:0", "OpenFlow10") == (A.Resubmit(V.OFPP_IN_PORT, 0),)
    with pytest.raises(FlowSyntaxError, match="OFPBIC_BAD_TABLE_ID"):
        acts("goto_table:1", "OpenFlow13", table_id=1)
    with pytest.raises(FlowSyntaxError, match="OFPBAC_BAD_SET_ARGUMENT"):
        acts("load:0x800->NXM_OF_ETH_TYPE[]")
    with pytest.raises(FlowSyntaxError, match="OFPBAC_BAD_SET_ARGUMENT"):
        acts("set_field:6->vlan_vid", match="dl_vlan=5")
    with pytest.raises(FlowSyntaxError, match="OFPBAC_MATCH_INCONSISTENT"):
        acts("mod_nw_ecn:1", "OpenFlow10")
    with pytest.raises(FlowSyntaxError, match="OFPBAC_BAD_TYPE"):
        acts("write_actions(note:01)")


def test_parsed_objects():
    reg0, reg3, ip_dst = (F.lookup(n) for n in ("reg0", "reg3", "ip_dst"))
    assert acts("load:0x2->NXM_NX_REG0[],resubmit(,1)") == (
        A.SetField(reg0, 2, 0xFFFFFFFF, "load"), A.Resubmit(V.OFPP_IN_PORT, 1))
    assert acts("move:NXM_OF_IP_DST[0..7]->NXM_NX_REG3[8..15]", match="ip") == (
        A.RegMove(F.SubField(ip_dst, 0, 8), F.SubField(reg3, 8, 8)),)
    assert acts("output:in_port,all,flood,normal,local,controller,IN_PORT") == (
        A.Output(V.OFPP_IN_PORT), A.Output(V.OFPP_ALL), A.Output(V.OFPP_FLOOD),
        A.Output(V.OFPP_NORMAL), A.Output(V.OFPP_LOCAL),
        A.Output(V.OFPP_CONTROLLER, 0xFFFF), A.Output(V.OFPP_IN_PORT))
    assert acts("output:reg1[0..15]") == (A.OutputReg(F.parse_subfield("reg1[0..15]")),)
    assert acts("drop") == () == acts("")
    assert acts("resubmit:2,resubmit(3,4)") == (A.Resubmit(2), A.Resubmit(3, 4))
    assert acts("set_queue:5,enqueue:2:7") == (
        A.SetQueue(5), A.SetQueue(7), A.Output(2, 0xFFFF), A.PopQueue())
    assert acts("enqueue(2,7)", "OpenFlow10") == (A.Enqueue(2, 7),)
    assert acts("note:01.02") == (A.Note(bytes([1, 2, 0, 0, 0, 0])),)
    assert acts("dec_ttl(1,2)", match="ip") == (A.DecTtl((1, 2), True),)
    assert acts("controller(reason=no_match,max_len=100)") == (
        A.Controller(100, "no_match"),)
    assert acts("write_metadata:0x1/0xff,goto_table:2") == (
        A.WriteMetadata(1, 0xFF), A.GotoTable(2))
    assert acts("clear_actions,write_actions(set_field:1.2.3.4->ip_src,output:2)",
                match="ip") == (
        A.ClearActions(), A.WriteActions((A.SetField(F.lookup("ip_src"), 0x01020304,
                                                     0xFFFFFFFF), A.Output(2))))
    assert acts("mod_tp_dst:443", "OpenFlow10", "tcp") == (A.SetL4DstPort(443, 6),)
    assert acts("mod_nw_tos:184", "OpenFlow10", "ip") == (A.SetIPDscp(184),)
    assert acts("set_field:46->ip_dscp", match="ip") == (
        A.SetField(F.lookup("ip_dscp"), 46, 0xFF),)
    assert acts("set_field:3->in_port,output:p3") == (
        A.SetField(F.lookup("in_port"), 3, 0xFFFF), A.Output(3))


def test_ipv6_loads_split_in_64_bit_pieces():
    stored = acts("set_field:fd00::1->ipv6_src", "OpenFlow10", "ipv6")
    src = F.lookup("ipv6_src")
    assert stored == (A.SetField(src, 1, (1 << 64) - 1, "load"),
                      A.SetField(src, 0xFD00 << 112, ((1 << 64) - 1) << 64, "load"))
    assert format_actions(stored, "OpenFlow13") == (
        "load:0x1->NXM_NX_IPV6_SRC[0..63],load:0xfd00000000000000->NXM_NX_IPV6_SRC[64..127]")


def test_format_action_prints_stored_actions_as_trace_does():
    stored = acts("mod_nw_src:1.2.3.4,load:0x5->NXM_NX_REG0[],resubmit(,1)", "OpenFlow10",
                  "tcp")
    assert [format_action(a) for a in stored] == [
        "mod_nw_src:1.2.3.4", "load:0x5->NXM_NX_REG0[]", "resubmit(,1)"]
    stored = acts("set_field:4321->tcp_src,write_actions(dec_ttl,output:2)", match="tcp")
    assert [format_action(a) for a in stored] == [
        "set_field:4321->tcp_src", "write_actions(dec_ttl,output:2)"]
    assert format_actions((), "OpenFlow13") == "drop"
    assert format_actions(stored, None) == \
        "set_field:4321->tcp_src,write_actions(dec_ttl,output:2)"


def test_port_names_in_output():
    namer = {1: "p1", 2: "p2", 3: "p3"}.get
    stored = acts("set_field:3->in_port,output:p1,resubmit(p3,1),LOCAL")
    assert format_actions(stored, "OpenFlow13", namer) == \
        "set_field:p3->in_port,output:p1,resubmit(p3,1),LOCAL"


ACTION_WORDS = ["output:2", "output:in_port", "normal", "flood", "all", "local",
                "controller:100", "resubmit(,3)", "resubmit:4", "mod_dl_src:02:00:00:00:00:01",
                "mod_nw_dst:10.0.0.9", "mod_nw_tos:8", "mod_nw_ecn:2", "mod_nw_ttl:5",
                "mod_tp_src:99", "dec_ttl", "dec_ttl(4)", "mod_vlan_vid:9", "mod_vlan_pcp:2",
                "strip_vlan", "push_vlan:0x8100", "set_field:7->reg1",
                "set_field:0x5/0xff->reg2", "load:3->NXM_NX_REG3[4..7]",
                "move:NXM_NX_REG0[0..15]->NXM_OF_TCP_DST[]", "set_queue:3", "pop_queue",
                "note:aa.bb", "exit", "set_field:1.1.1.1->ip_src", "set_field:22->tcp_dst"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(ACTION_WORDS), max_size=6),
       st.sampled_from(["OpenFlow10", "OpenFlow13"]))
def test_printed_actions_parse_back_to_the_same_print(words, version):
    match = parse_match("tcp,dl_vlan=5")
    try:
        stored = parse_actions(",".join(words), version, match)
    except FlowSyntaxError:
        return
    printed = format_actions(stored, version)
    again = parse_actions(printed if printed != "drop" else "", version, match)
    assert format_actions(again, version) == printed
