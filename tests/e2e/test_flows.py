"""OpenFlow rules through the real ofctl: add-flow, add-flows FILE, mod-flows,
del-flows (and --strict), dump-flows (OpenFlow 1.0 and 1.3 line shapes, MATCH
filters, counters), timeouts, and malformed flow text (exit 1, the offending
token quoted, what was expected said, nothing changed)."""

from __future__ import annotations

import time

import pytest

from tests.daemon import Daemon
from tests.e2e.conftest import add_dummy_ports, frames, parse_flows, stable_flows, udp_frame

BR = "brf"

# Recorded from Open vSwitch 3.1 (ovs-ofctl add-flows, then dump-flows with and
# without -O OpenFlow13); only duration and idle_age are normalized.
REFERENCE_FLOWS = [
    "table=250,cookie=0xe2e001,priority=100,in_port=1,dl_src=00:11:22:33:44:55,"
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=output:2",
    "table=250,cookie=0xe2e002,priority=90,tcp,nw_src=10.0.0.0/8,nw_dst=192.168.1.1,"
    "tp_dst=80,actions=mod_nw_dst:10.1.1.1,output:3",
    "table=250,cookie=0xe2e003,idle_timeout=60,hard_timeout=120,priority=80,udp,"
    "tp_src=0x1000/0xf000,actions=drop",
    "table=250,cookie=0xe2e004,priority=70,dl_vlan=10,actions=strip_vlan,NORMAL",
    "table=250,cookie=0xe2e005,priority=60,arp,arp_tpa=10.0.0.1,arp_op=1,actions=FLOOD",
    "table=250,cookie=0xe2e006,priority=50,ipv6,ipv6_src=2001:db8::/32,"
    "actions=dec_ttl,output:1",
    "table=250,cookie=0xe2e007,priority=40,reg0=0x5,metadata=0x10,"
    "actions=load:0x1->NXM_NX_REG1[0..3],resubmit(,251)",
    "table=250,cookie=0xe2e008,priority=30,ip,nw_tos=16,"
    "actions=set_field:00:00:00:00:00:01->eth_src,mod_vlan_vid:20,output:4",
    "table=250,cookie=0xe2e009,priority=20,tcp,tcp_flags=+syn-ack,"
    "actions=controller,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],in_port",
    "table=250,cookie=0xe2e00a,actions=output:LOCAL",
]
_S = " cookie={c}, duration=Xs, table=250, n_packets=0, n_bytes=0, "
REFERENCE_OF10 = {
    0xe2e001: "idle_age=X, priority=100,in_port=1,dl_src=00:11:22:33:44:55,"
              "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=output:2",
    0xe2e002: "idle_age=X, priority=90,tcp,nw_src=10.0.0.0/8,nw_dst=192.168.1.1,tp_dst=80 "
              "actions=mod_nw_dst:10.1.1.1,output:3",
    0xe2e003: "idle_timeout=60, hard_timeout=120, idle_age=X, priority=80,udp,"
              "tp_src=0x1000/0xf000 actions=drop",
    0xe2e004: "idle_age=X, priority=70,dl_vlan=10 actions=strip_vlan,NORMAL",
    0xe2e005: "idle_age=X, priority=60,arp,arp_tpa=10.0.0.1,arp_op=1 actions=FLOOD",
    0xe2e006: "idle_age=X, priority=50,ipv6,ipv6_src=2001:db8::/32 actions=dec_ttl,output:1",
    0xe2e007: "idle_age=X, priority=40,reg0=0x5,metadata=0x10 "
              "actions=load:0x1->NXM_NX_REG1[0..3],resubmit(,251)",
    0xe2e008: "idle_age=X, priority=30,ip,nw_tos=16 "
              "actions=mod_dl_src:00:00:00:00:00:01,mod_vlan_vid:20,output:4",
    0xe2e009: "idle_age=X, priority=20,tcp,tcp_flags=+syn-ack "
              "actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],IN_PORT",
    0xe2e00a: "idle_age=X, actions=LOCAL",
}
REFERENCE_OF13 = {
    0xe2e001: "reset_counts priority=100,in_port=1,dl_src=00:11:22:33:44:55,"
              "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=output:2",
    0xe2e002: "reset_counts priority=90,tcp,nw_src=10.0.0.0/8,nw_dst=192.168.1.1,tp_dst=80 "
              "actions=set_field:10.1.1.1->ip_dst,output:3",
    0xe2e003: "idle_timeout=60, hard_timeout=120, reset_counts priority=80,udp,"
              "tp_src=0x1000/0xf000 actions=drop",
    0xe2e004: "reset_counts priority=70,dl_vlan=10 actions=pop_vlan,NORMAL",
    0xe2e005: "reset_counts priority=60,arp,arp_tpa=10.0.0.1,arp_op=1 actions=FLOOD",
    0xe2e006: "reset_counts priority=50,ipv6,ipv6_src=2001:db8::/32 actions=dec_ttl,output:1",
    0xe2e007: "reset_counts priority=40,reg0=0x5,metadata=0x10 "
              "actions=load:0x1->NXM_NX_REG1[0..3],resubmit(,251)",
    0xe2e008: "reset_counts priority=30,ip,nw_tos=16 "
              "actions=set_field:00:00:00:00:00:01->eth_src,push_vlan:0x8100,"
              "set_field:4116->vlan_vid,output:4",
    0xe2e009: "reset_counts priority=20,tcp,tcp_flags=+syn-ack "
              "actions=CONTROLLER:65535,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],IN_PORT",
    0xe2e00a: "reset_counts actions=LOCAL",
}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("flows")) as daemon:
        daemon.ofctl("add-br", BR)
        add_dummy_ports(daemon, BR, ["f1", "f2", "f3", "f4"])
        yield daemon


@pytest.fixture
def clean(d):
    d.ofctl("del-flows", BR)
    return d


def dump(d: Daemon, *args: str) -> list[dict]:
    return parse_flows(d.ofctl(*args[:-1], "dump-flows", BR, *args[-1:])
                       if args else d.ofctl("dump-flows", BR))


def fails(d: Daemon, *args: str) -> str:
    proc = d.ofctl_run(*args)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("ofctl: ")
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return proc.stderr


# -- dump-flows ---------------------------------------------------------------------------

def test_dump_flows_line_shape_matches_ovs(clean, tmp_path):
    d = clean
    f = tmp_path / "ref.flows"
    f.write_text("\n".join(REFERENCE_FLOWS) + "\n")
    d.ofctl("add-flows", BR, str(f))
    for protocol, reference in (("OpenFlow10", REFERENCE_OF10),
                                ("OpenFlow13", REFERENCE_OF13)):
        text = stable_flows(d.ofctl("-O", protocol, "dump-flows", BR))
        got = {int(line.split(",")[0].split("=")[1], 16): line for line in text.splitlines()}
        want = {c: _S.format(c=hex(c)) + rest for c, rest in reference.items()}
        assert got == want, protocol
        parse_flows(text.replace("Xs", "0.000s").replace("=X", "=0"))


def test_dump_flows_of13_added_flow_has_no_reset_counts(clean):
    d = clean
    d.ofctl("-O", "OpenFlow13", "add-flow", BR, "table=2,priority=8,udp,actions=output:3")
    line = stable_flows(d.ofctl("-O", "OpenFlow13", "dump-flows", BR))
    assert line == (" cookie=0x0, duration=Xs, table=2, n_packets=0, n_bytes=0, "
                    "priority=8,udp actions=output:3\n")
    line = stable_flows(d.ofctl("dump-flows", BR))
    assert line == (" cookie=0x0, duration=Xs, table=2, n_packets=0, n_bytes=0, "
                    "idle_age=X, priority=8,udp actions=output:3\n")


def test_dump_flows_filters(clean):
    d = clean
    for flow in ("cookie=0x1,table=0,priority=10,in_port=1,actions=output:2",
                 "cookie=0x2,table=0,priority=20,in_port=2,actions=output:1",
                 "cookie=0x11,table=1,priority=10,ip,actions=output:3",
                 "cookie=0x12,table=1,priority=5,tcp,tp_dst=80,actions=output:4"):
        d.ofctl("add-flow", BR, flow)
    cookies = lambda match: sorted(f["cookie"] for f in dump(d, match))  # noqa: E731
    assert cookies("table=1") == [0x11, 0x12]
    assert cookies("in_port=2") == [0x2]
    assert cookies("cookie=0x10/0xf0") == [0x11, 0x12]
    assert cookies("cookie=0x1/-1") == [0x1]
    assert cookies("ip") == [0x11, 0x12]  # loose: every flow at least as specific
    assert cookies("tcp") == [0x12]
    assert cookies("out_port=4") == [0x12]
    assert cookies("") == [0x1, 0x2, 0x11, 0x12]
    assert dump(d, "table=7") == []


def test_counters_grow_with_injected_packets(clean):
    d = clean
    d.ofctl("add-flow", BR, "priority=10,in_port=1,actions=output:2")
    d.ofctl("add-flow", BR, "priority=10,in_port=3,actions=drop")
    pkt = udp_frame()
    size = len(pkt) // 2
    before = len(frames(d.rundir / "f2.pcap"))
    for n in range(1, 4):
        d.ofctl("inject", BR, "f1", pkt)
        (flow,) = dump(d, "in_port=1")
        assert (flow["n_packets"], flow["n_bytes"]) == (n, n * size)
    (other,) = dump(d, "in_port=3")
    assert other["n_packets"] == 0
    assert len(frames(d.rundir / "f2.pcap")) == before + 3
    d.ofctl("inject", BR, "f3", pkt)
    assert dump(d, "in_port=3")[0]["n_packets"] == 1


# -- add-flow, add-flows ------------------------------------------------------------------

def test_add_flow_replaces_same_match_and_priority(clean):
    d = clean
    d.ofctl("add-flow", BR, "cookie=0x5,priority=10,in_port=1,actions=output:2")
    d.ofctl("add-flow", BR, "cookie=0x6,priority=10,in_port=1,actions=output:3")
    d.ofctl("add-flow", BR, "cookie=0x7,priority=11,in_port=1,actions=output:4")
    flows = dump(d)
    assert [(f["cookie"], f["priority"], f["actions"]) for f in flows] == [
        (0x7, 11, "output:4"), (0x6, 10, "output:3")]


def test_add_flows_file_with_comments_and_blank_lines(clean, tmp_path):
    d = clean
    f = tmp_path / "flows.txt"
    f.write_text("# a pipeline in two tables\n"
                 "\n"
                 "priority=10,in_port=1,actions=resubmit(,1)\n"
                 "   # an indented comment\n"
                 "\t\n"
                 "table=1,priority=5,ip,actions=output:2\n"
                 "table=1,priority=0,actions=drop\n")
    assert d.ofctl("add-flows", BR, str(f)) == ""
    assert [(x["table"], x["priority"], x["match"], x["actions"]) for x in dump(d)] == [
        (0, 10, "in_port=1", "resubmit(,1)"), (1, 5, "ip", "output:2"), (1, 0, "", "drop")]
    # "-" reads the flows from stdin.
    d.ofctl("add-flows", BR, "-", input="table=2,priority=1,actions=drop\n# done\n")
    assert dump(d, "table=2")[0]["actions"] == "drop"


def test_add_flows_all_or_nothing_naming_the_line(clean, tmp_path):
    d = clean
    d.ofctl("add-flow", BR, "cookie=0x99,priority=1,actions=output:4")
    before = stable_flows(d.ofctl("dump-flows", BR))
    f = tmp_path / "bad.txt"
    f.write_text("priority=11,in_port=2,actions=drop\n"
                 "\n"
                 "# the next flow is fine, the one after is not\n"
                 "priority=12,in_port=3,actions=output:1\n"
                 "priority=13,in_port=2,actions=output:9x\n"
                 "priority=14,in_port=4,actions=drop\n")
    err = fails(d, "add-flows", BR, str(f))
    assert "line 5" in err and "9x" in err and "no flow was added" in err
    assert stable_flows(d.ofctl("dump-flows", BR)) == before
    # A line the switch refuses (not the parser) undoes the lines before it too.
    f.write_text("priority=11,in_port=2,actions=drop\n"
                 "table=254,actions=drop\n")
    err = fails(d, "add-flows", BR, str(f))
    assert "line 2" in err and "254" in err
    assert stable_flows(d.ofctl("dump-flows", BR)) == before
    proc = d.ofctl_run("add-flows", BR, str(tmp_path / "missing.txt"))
    assert proc.returncode == 1 and "No such file" in proc.stderr


# -- mod-flows ----------------------------------------------------------------------------

def test_mod_flows_loose_and_strict(clean):
    d = clean
    d.ofctl("add-flow", BR, "priority=10,ip,actions=output:1")
    d.ofctl("add-flow", BR, "priority=20,tcp,actions=output:1")
    d.ofctl("add-flow", BR, "priority=30,arp,actions=output:1")
    actions = lambda: {f["priority"]: f["actions"] for f in dump(d)}  # noqa: E731
    # Loose: every flow whose match is at least as specific as "ip".
    d.ofctl("mod-flows", BR, "ip,actions=output:2")
    assert actions() == {10: "output:2", 20: "output:2", 30: "output:1"}
    # Strict: only the flow with exactly this match and priority.
    d.ofctl("--strict", "mod-flows", BR, "priority=20,tcp,actions=output:3")
    assert actions() == {10: "output:2", 20: "output:3", 30: "output:1"}
    d.ofctl("mod-flows", BR, "--strict", "priority=10,ip,actions=drop")
    assert actions() == {10: "drop", 20: "output:3", 30: "output:1"}


def test_mod_flows_cookie_as_ovs(clean):
    d = clean
    d.ofctl("add-flow", BR, "cookie=0x7,priority=10,ip,actions=output:1")
    d.ofctl("add-flow", BR, "cookie=0x8,priority=20,tcp,actions=output:1")
    # A cookie mask selects the flows; they keep their cookies.
    d.ofctl("mod-flows", BR, "cookie=0x8/-1,actions=output:4")
    assert {(f["cookie"], f["actions"]) for f in dump(d)} == {(7, "output:1"),
                                                                (8, "output:4")}
    # Without one, as ovs-ofctl, the modified flows get the cookie given (or 0):
    # Open vSwitch 3.1 does the same.
    d.ofctl("mod-flows", BR, "tcp,actions=output:2")
    assert {(f["cookie"], f["actions"]) for f in dump(d)} == {(7, "output:1"),
                                                                (0, "output:2")}
    # A modify that matches nothing adds the flow (to the table given), as in OVS.
    d.ofctl("mod-flows", BR, "--strict", "table=2,cookie=0x9,priority=99,udp,actions=output:3")
    assert (2, 9, 99, "udp", "output:3") in {(f["table"], f["cookie"], f["priority"],
                                             f["match"], f["actions"]) for f in dump(d)}


def test_mod_flows_without_table_adds_to_table_0(clean):
    d = clean
    d.ofctl("mod-flows", BR, "--strict", "cookie=0x9,priority=99,udp,actions=output:3")
    assert [(f["table"], f["cookie"]) for f in dump(d)] == [(0, 9)]


def test_mod_flows_changes_the_datapath_path(clean):
    d = clean
    d.ofctl("add-flow", BR, "priority=10,in_port=1,actions=output:2")
    pkt = udp_frame()
    n2, n3 = len(frames(d.rundir / "f2.pcap")), len(frames(d.rundir / "f3.pcap"))
    d.ofctl("inject", BR, "f1", pkt)
    d.ofctl("mod-flows", BR, "in_port=1,actions=output:3")
    d.ofctl("inject", BR, "f1", pkt)
    assert len(frames(d.rundir / "f2.pcap")) == n2 + 1
    assert len(frames(d.rundir / "f3.pcap")) == n3 + 1


# -- del-flows ----------------------------------------------------------------------------

def test_del_flows_loose_strict_and_all(clean):
    d = clean
    for flow in ("cookie=0x1,priority=10,ip,actions=drop",
                 "cookie=0x2,priority=20,ip,actions=drop",
                 "cookie=0x3,priority=20,tcp,actions=drop",
                 "cookie=0x4,table=3,priority=20,tcp,actions=drop",
                 "cookie=0x5,priority=5,arp,actions=drop"):
        d.ofctl("add-flow", BR, flow)
    d.ofctl("--strict", "del-flows", BR, "priority=20,ip")
    assert sorted(f["cookie"] for f in dump(d)) == [1, 3, 4, 5]
    d.ofctl("del-flows", BR, "--strict", "priority=21,tcp")  # no exact match: nothing
    assert len(dump(d)) == 4
    d.ofctl("del-flows", BR, "tcp")  # loose, every table
    assert sorted(f["cookie"] for f in dump(d)) == [1, 5]
    d.ofctl("del-flows", BR, "cookie=0x5/-1")
    assert sorted(f["cookie"] for f in dump(d)) == [1]
    d.ofctl("del-flows", BR)
    assert dump(d) == []
    # With no flow at all, a packet is dropped (table miss).
    n = {p: len(frames(d.rundir / f"{p}.pcap")) for p in ("f2", "f3", "f4")}
    d.ofctl("inject", BR, "f1", udp_frame())
    assert n == {p: len(frames(d.rundir / f"{p}.pcap")) for p in ("f2", "f3", "f4")}


# -- timeouts -----------------------------------------------------------------------------

def test_idle_and_hard_timeouts_expire(clean):
    d = clean
    # Each flow's age is measured from just before its own add-flow: the flow cannot be
    # older than that, so a lower bound on when it expired is never met by accident.
    added = {}
    for cookie, spec in ((1, "in_port=1,idle_timeout=1"), (2, "in_port=2,hard_timeout=2"),
                         (3, "in_port=3,idle_timeout=3"), (4, "in_port=4")):
        added[cookie] = time.monotonic()
        d.ofctl("add-flow", BR, f"cookie={cookie:#x},priority=5,{spec},actions=drop")
    start = time.monotonic()
    seen = {}
    while time.monotonic() - start < 6 and len(seen) < 2:
        d.ofctl("inject", BR, "f3", udp_frame())  # keeps the idle_timeout=3 flow alive
        left = {f["cookie"] for f in dump(d)}
        for c in (1, 2):
            if c not in left and c not in seen:
                seen[c] = time.monotonic() - added[c]
        time.sleep(0.2)
    assert set(seen) == {1, 2}, "flows with timeouts did not expire"
    assert seen[1] >= 1.0 and seen[2] >= 2.0, seen
    assert {f["cookie"] for f in dump(d)} == {3, 4}


# -- malformed flows and unknown names ------------------------------------------------------

@pytest.mark.parametrize("verb,flow,quoted,expected", [
    ("add-flow", "priority=5,in_port=1,actions=output:9x", "9x", "expected a port number"),
    ("add-flow", "priority=5,in_port=nope,actions=drop", "nope", "unknown port"),
    ("add-flow", "table=300,actions=drop", "300", "expected 0 to"),
    ("add-flow", "priority=5,nw_src=1.2.3.4/33,actions=drop", "1.2.3.4/33", "between 0 and 32"),
    ("add-flow", "dl_src=zz:00:00:00:00:01,actions=drop", "zz:00:00:00:00:01",
     "invalid Ethernet address"),
    ("add-flow", "tcp,tp_dst=70000,actions=drop", "70000", "too large for 2-byte field"),
    ("add-flow", "actions=bogus", "bogus", "expected an action"),
    ("add-flow", "in_port=1", "in_port=1", "expected actions="),
    ("add-flow", "priority=abc,actions=drop", "abc", "priority"),
    ("add-flow", "actions=set_field:1->eth_nope", "eth_nope", "expected an OVS field name"),
    ("mod-flows", "ip,actions=output:9x", "9x", "expected a port number"),
    ("del-flows", "tcp,tp_dst=abc", "abc", "tcp_dst"),
    ("dump-flows", "table=300", "300", "expected 0 to"),
])
def test_malformed_flow_changes_nothing(d, verb, flow, quoted, expected):
    d.ofctl("del-flows", BR)
    d.ofctl("add-flow", BR, "cookie=0x42,priority=3,ip,actions=output:2")
    before = stable_flows(d.ofctl("dump-flows", BR))
    err = fails(d, verb, BR, flow)
    assert quoted in err and expected in err, err
    assert stable_flows(d.ofctl("dump-flows", BR)) == before


def test_unknown_bridge_table_and_port(d):
    assert "no bridge named nobr" in fails(d, "add-flow", "nobr", "actions=drop")
    assert "no bridge named nobr" in fails(d, "dump-flows", "nobr")
    assert "no bridge named nobr" in fails(d, "del-flows", "nobr")
    assert "no bridge named nobr" in fails(d, "mod-flows", "nobr", "actions=drop")
    err = fails(d, "add-flow", BR, "actions=resubmit(,300)")
    assert "300" in err and "table" in err
    err = fails(d, "add-flow", BR, "table=254,actions=drop")
    assert "254" in err and "0 to 253" in err
    assert "no port named f9" in fails(d, "inject", BR, "f9", udp_frame())
    assert "hexadecimal" in fails(d, "inject", BR, "f1", "zz")
    assert "14 to 65535 bytes" in fails(d, "inject", BR, "f1", "00")
