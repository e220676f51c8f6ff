"""Bridges and ports through the real ofctl: add-br, del-br, list-br,
add-port (type=, ofport_request=, options:), del-port, list-ports, show,
--json, options after the verb, OVSD_RUNDIR, and the errors a user can cause."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.daemon import Daemon, tool
from tests.e2e.conftest import add_dummy_ports, frames, udp_frame


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("ports")) as daemon:
        yield daemon


def fails(d: Daemon, *args: str) -> str:
    """Run ofctl expecting failure: exit status 1 and a message; returns stderr."""
    proc = d.ofctl_run(*args)
    assert proc.returncode == 1, (args, proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("ofctl: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return proc.stderr


def ports_of(d: Daemon, bridge: str) -> list[str]:
    return d.ofctl("list-ports", bridge).split()


# -- bridges ----------------------------------------------------------------------------

def test_bridges_add_list_delete(d):
    assert d.ofctl("list-br") == ""
    assert d.ofctl("add-br", "bra") == ""
    d.ofctl("add-br", "brb")
    assert d.ofctl("list-br") == "bra\nbrb\n"
    d.ofctl("del-br", "brb")
    assert d.ofctl("list-br") == "bra\n"
    d.ofctl("del-br", "bra")
    assert d.ofctl("list-br") == ""


def test_add_br_twice_needs_may_exist(d):
    d.ofctl("add-br", "brdup")
    assert "bridge brdup already exists" in fails(d, "add-br", "brdup")
    assert "--may-exist" in fails(d, "add-br", "brdup")
    d.ofctl("--may-exist", "add-br", "brdup")
    d.ofctl("add-br", "brdup", "--may-exist")  # options after the verb, as getopt allows
    assert d.ofctl("list-br").split().count("brdup") == 1
    d.ofctl("del-br", "brdup")


def test_del_br_unknown_needs_if_exists(d):
    assert "no bridge named nosuchbr" in fails(d, "del-br", "nosuchbr")
    d.ofctl("--if-exists", "del-br", "nosuchbr")
    d.ofctl("del-br", "nosuchbr", "--if-exists")


def test_bad_bridge_name(d):
    err = fails(d, "add-br", "this-name-is-far-too-long")
    assert "invalid bridge name" in err and "1 to 15" in err


def test_del_br_takes_its_ports_and_flows(d):
    d.ofctl("add-br", "brgone")
    add_dummy_ports(d, "brgone", ["g1", "g2"])
    d.ofctl("add-flow", "brgone", "priority=9,in_port=1,actions=output:2")
    d.ofctl("del-br", "brgone")
    assert "no bridge named brgone" in fails(d, "list-ports", "brgone")
    assert "no bridge named brgone" in fails(d, "dump-flows", "brgone")
    # The names are free again, on a new bridge.
    d.ofctl("add-br", "brgone")
    assert ports_of(d, "brgone") == []
    add_dummy_ports(d, "brgone", ["g1"])
    assert ports_of(d, "brgone") == ["g1"]
    d.ofctl("del-br", "brgone")


# -- ports ------------------------------------------------------------------------------

def test_add_port_columns(d, tmp_path):
    d.ofctl("add-br", "brp")
    pcap = tmp_path / "x.pcap"
    d.ofctl("add-port", "brp", "px", "type=dummy", "ofport_request=7",
            f"options:tx_pcap={pcap}", "options:color=blue")
    assert ports_of(d, "brp") == ["px"]
    assert d.ofctl("get", "Interface", "px", "type") == "dummy\n"
    assert d.ofctl("get", "Interface", "px", "ofport") == "7\n"
    assert d.ofctl("get", "Interface", "px", "ofport_request") == "7\n"
    assert d.ofctl("get", "Interface", "px", "options:color") == "blue\n"
    assert d.ofctl("get", "Interface", "px", "options:tx_pcap") == f'"{pcap}"\n'
    assert " 7(px): " in d.ofctl("show", "brp")
    # Without ofport_request: the lowest free number.
    d.ofctl("add-port", "brp", "py", "type=dummy")
    assert d.ofctl("get", "Interface", "py", "ofport") == "1\n"
    assert ports_of(d, "brp") == ["px", "py"]
    d.ofctl("del-br", "brp")


def test_add_port_existing_name_refused(d):
    d.ofctl("add-br", "brq")
    d.ofctl("add-br", "brq2")
    d.ofctl("add-port", "brq", "q1", "type=dummy", "ofport_request=3")
    err = fails(d, "add-port", "brq", "q1", "type=dummy")
    assert "a port named q1 already exists on bridge brq" in err
    err = fails(d, "add-port", "brq2", "q1", "type=dummy")
    assert "already exists on bridge brq" in err
    d.ofctl("--may-exist", "add-port", "brq", "q1", "type=dummy")
    assert ports_of(d, "brq") == ["q1"] and ports_of(d, "brq2") == []
    assert d.ofctl("get", "Interface", "q1", "ofport") == "3\n"
    d.ofctl("del-br", "brq")
    d.ofctl("del-br", "brq2")


def test_taken_ofport_request_refused(d):
    d.ofctl("add-br", "brt")
    d.ofctl("add-port", "brt", "t1", "type=dummy", "ofport_request=4")
    err = fails(d, "add-port", "brt", "t2", "type=dummy", "ofport_request=4")
    assert "ofport_request=4 is already taken by port t1 on bridge brt" in err
    assert ports_of(d, "brt") == ["t1"]
    assert "no row" in fails(d, "get", "Interface", "t2", "name")
    # Another bridge has its own numbers.
    d.ofctl("add-br", "brt2")
    d.ofctl("add-port", "brt2", "t2", "type=dummy", "ofport_request=4")
    assert d.ofctl("get", "Interface", "t2", "ofport") == "4\n"
    d.ofctl("del-br", "brt")
    d.ofctl("del-br", "brt2")


def test_add_port_errors_leave_nothing(d):
    d.ofctl("add-br", "bre")
    assert "no bridge named nobr" in fails(d, "add-port", "nobr", "e1", "type=dummy")
    err = fails(d, "add-port", "bre", "e1", "type=bogus")
    assert "unknown interface type 'bogus'" in err and "dummy" in err
    assert "nothing was added" in err
    err = fails(d, "add-port", "bre", "e1", "type=dummy", "ofport_request=abc")
    assert "abc" in err
    err = fails(d, "add-port", "bre", "e1", "type=dummy", "nosuchcolumn=1")
    assert "nosuchcolumn" in err
    assert ports_of(d, "bre") == []
    d.ofctl("add-port", "bre", "e1", "type=dummy")  # the name is still free
    d.ofctl("del-br", "bre")


def test_del_port(d):
    d.ofctl("add-br", "brd")
    d.ofctl("add-br", "brd2")
    add_dummy_ports(d, "brd", ["d1", "d2", "d3"])
    d.ofctl("del-port", "brd", "d1")
    d.ofctl("del-port", "d2")  # without the bridge, as ovs-vsctl allows
    assert ports_of(d, "brd") == ["d3"]
    assert "no port named d1" in fails(d, "del-port", "brd", "d1")
    assert "it is on bridge brd, not brd2" in fails(d, "del-port", "brd2", "d3")
    d.ofctl("--if-exists", "del-port", "brd", "d1")
    assert "delete the bridge with del-br" in fails(d, "del-port", "brd", "brd")
    assert ports_of(d, "brd") == ["d3"]
    # The number of a deleted port can be asked for again.
    d.ofctl("add-port", "brd", "d4", "type=dummy", "ofport_request=1")
    d.ofctl("del-br", "brd")
    d.ofctl("del-br", "brd2")


def test_list_ports_unknown_bridge(d):
    assert "no bridge named nob" in fails(d, "list-ports", "nob")
    assert "no bridge named nob" in fails(d, "show", "nob")


def test_show_numbers_names_types_state_counters(d):
    d.ofctl("add-br", "brs")
    pcaps = add_dummy_ports(d, "brs", ["s1", "s2"])
    d.ofctl("add-flow", "brs", "priority=10,in_port=1,actions=output:2")
    pkt = udp_frame()
    size = len(pkt) // 2
    d.ofctl("inject", "brs", "s1", pkt)
    d.ofctl("inject", "brs", "s1", pkt)
    text = d.ofctl("show", "brs")
    lines = text.splitlines()
    assert lines[0] == "brs: n_tables:254, n_flows:2"
    i = lines.index(" 1(s1): addr:00:00:00:00:00:00, type:dummy")
    assert lines[i + 1:i + 4] == [
        "     state:      UP",
        f"     rx pkts=2, bytes={2 * size}, drop=0, errs=0",
        "     tx pkts=0, bytes=0, drop=0, errs=0"]
    i = lines.index(" 2(s2): addr:00:00:00:00:00:00, type:dummy")
    assert lines[i + 1:i + 4] == [
        "     state:      UP",
        "     rx pkts=0, bytes=0, drop=0, errs=0",
        f"     tx pkts=2, bytes={2 * size}, drop=0, errs=0"]
    # The bridge's own port is listed by show (not by list-ports), as in OVS.
    assert any("(brs): " in line and "type:internal" in line for line in lines)
    assert [f.hex() for f in frames(pcaps["s2"])] == [pkt, pkt]

    r = json.loads(d.ofctl("--json", "show", "brs"))
    by_name = {p["name"]: p for p in r["ports"]}
    assert r["bridge"] == "brs" and r["n_flows"] == 2 and r["text"] == text
    assert by_name["s1"]["ofport"] == 1 and by_name["s1"]["type"] == "dummy"
    assert by_name["s1"]["state"] == "up"
    assert by_name["s1"]["statistics"]["rx_packets"] == 2
    assert by_name["s2"]["statistics"]["tx_bytes"] == 2 * size
    d.ofctl("del-br", "brs")


# -- output and option handling -----------------------------------------------------------

def test_json_output(d):
    d.ofctl("add-br", "brj")
    assert json.loads(d.ofctl("--json", "list-br"))["bridges"] == ["brj"]
    r = json.loads(d.ofctl("--json", "add-port", "brj", "j1", "type=dummy",
                           "ofport_request=2"))
    assert r == {"created": True, "ofport": 2, "port": "j1"}
    r = json.loads(d.ofctl("list-ports", "brj", "--json"))
    assert [(p["name"], p["ofport"], p["type"]) for p in r["ports"]] == [("j1", 2, "dummy")]
    r = json.loads(d.ofctl("--json", "dump-flows", "brj"))
    assert [(f["table"], f["priority"]) for f in r["flows"]] == [(0, 0)]
    assert r["flows"][0]["text"].endswith("priority=0 actions=NORMAL")
    assert json.loads(d.ofctl("--json", "del-br", "brj")) == {"bridge": "brj", "deleted": True}


def test_options_after_the_verb(d):
    d.ofctl("add-br", "bro")
    d.ofctl("add-flow", "bro", "-O", "OpenFlow13", "table=3,priority=5,actions=drop")
    d.ofctl("add-flow", "bro", "--protocols=OpenFlow13", "table=4,priority=5,actions=drop")
    out = d.ofctl("dump-flows", "bro", "-O", "OpenFlow13", "table=3")
    assert "idle_age" not in out and "table=3" in out  # the OpenFlow 1.3 line shape
    assert json.loads(d.ofctl("dump-flows", "bro", "table=4", "--json"))["flows"][0][
        "table"] == 4
    d.ofctl("del-br", "bro")


def test_ovsd_rundir_is_the_default(d, tmp_path):
    env = {**os.environ, "OVSD_RUNDIR": str(d.rundir)}
    proc = subprocess.run(tool("ofctl") + ["add-br", "brenv"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(tool("ofctl") + ["list-br"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "brenv" in proc.stdout.split()
    # --rundir wins over the environment.
    env["OVSD_RUNDIR"] = str(tmp_path / "nothing-here")
    proc = subprocess.run(tool("ofctl") + ["--rundir", str(d.rundir), "del-br", "brenv"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(tool("ofctl") + ["list-br"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert f"cannot connect to ovsd at {tmp_path / 'nothing-here' / 'ovsd.sock'}" in proc.stderr
    assert "Is ovsd running" in proc.stderr


def test_usage_errors(d):
    proc = d.ofctl_run("no-such-verb")
    assert proc.returncode == 1 and "no-such-verb" in proc.stderr
    proc = d.ofctl_run("-O", "OpenFlow99", "dump-flows", "x")
    assert proc.returncode == 1 and "OpenFlow99" in proc.stderr
    assert "OpenFlow13" in proc.stderr
    proc = d.ofctl_run("add-flow", "x")
    assert proc.returncode == 1 and "FLOW" in proc.stderr
