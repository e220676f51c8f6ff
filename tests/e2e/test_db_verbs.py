"""ovs-vsctl's generic verbs through the real ofctl: set, get, list, remove and
clear on the Open_vSwitch, Bridge, Port and Interface tables, and that a
change made this way reaches the running switch."""

from __future__ import annotations

import re

import pytest

from tests.daemon import Daemon
from tests.e2e.conftest import add_dummy_ports, frames, udp_frame

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("db")) as daemon:
        daemon.ofctl("add-br", "brdb")
        add_dummy_ports(daemon, "brdb", ["v1", "v2", "v3"])
        yield daemon


def fails(d: Daemon, *args: str) -> str:
    proc = d.ofctl_run(*args)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return proc.stderr


def listed(text: str) -> dict[str, str]:
    """One record of `list` output as {column: value}."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        out[name.strip()] = value
    return out


def test_open_vswitch_other_config_cycle(d):
    d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2",
            "other_config:max-idle=5000")
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config:pmd-cpu-mask") == '"0x2"\n'
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config") == \
        '{max-idle="5000", pmd-cpu-mask="0x2"}\n'
    row = listed(d.ofctl("list", "Open_vSwitch"))
    assert row["other_config"] == '{max-idle="5000", pmd-cpu-mask="0x2"}'
    assert UUID.match(row["_uuid"])
    assert row["iface_types"] == "[afxdp, dpdkvhostuser, dpdkvhostuserclient, dummy, internal, system]"
    assert row["cur_cfg"] == row["next_cfg"]  # the switch has applied every change
    d.ofctl("remove", "Open_vSwitch", ".", "other_config", "max-idle")
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config") == '{pmd-cpu-mask="0x2"}\n'
    d.ofctl("clear", "Open_vSwitch", ".", "other_config")
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config") == "{}\n"
    err = fails(d, "get", "Open_vSwitch", ".", "other_config:pmd-cpu-mask")
    assert 'no key "pmd-cpu-mask"' in err
    assert d.ofctl("--if-exists", "get", "Open_vSwitch", ".",
                   "other_config:pmd-cpu-mask") == "\n"


def test_bridge_columns(d):
    d.ofctl("set", "Bridge", "brdb", "external_ids:owner=e2e", "other_config:a=1")
    assert d.ofctl("get", "Bridge", "brdb", "external_ids", "other_config:a") == \
        '{owner=e2e}\n"1"\n'
    row = listed(d.ofctl("list", "Bridge", "brdb"))
    assert row["name"] == "brdb" and row["datapath_type"] == "netdev"
    assert len(row["ports"].strip("[]").split(", ")) == 4  # v1..v3 and brdb's own port
    out = d.ofctl("--columns=name,external_ids", "list", "Bridge")
    assert out == "name                : brdb\nexternal_ids        : {owner=e2e}\n"
    d.ofctl("remove", "Bridge", "brdb", "external_ids", "owner=e2e")
    d.ofctl("remove", "Bridge", "brdb", "other_config", "a=2")  # value differs: kept
    assert d.ofctl("get", "Bridge", "brdb", "external_ids", "other_config") == \
        '{}\n{a="1"}\n'
    d.ofctl("clear", "Bridge", "brdb", "other_config")
    assert d.ofctl("get", "Bridge", "brdb", "other_config") == "{}\n"


def test_port_vlan_columns_reach_normal(d):
    d.ofctl("set", "Port", "v3", "tag=10")
    d.ofctl("set", "Port", "v2", "trunks=10,20")
    assert d.ofctl("get", "Port", "v3", "tag") == "10\n"
    assert d.ofctl("--columns=name,tag,trunks", "list", "Port", "v2") == \
        "name                : v2\ntag                 : []\ntrunks              : [10, 20]\n"
    d.ofctl("del-flows", "brdb")
    d.ofctl("add-flow", "brdb", "actions=NORMAL")
    d.ofctl("fdb/flush", "brdb")
    pcaps = {p: d.rundir / f"{p}.pcap" for p in ("v1", "v2", "v3")}
    before = {p: len(frames(f)) for p, f in pcaps.items()}
    # Untagged from v1 (VLAN 0): v3 is an access port of VLAN 10, v2 trunks 10 and 20;
    # v1, with neither tag nor trunks, trunks every VLAN (OVS's rule).
    d.ofctl("inject", "brdb", "v1", udp_frame(src="02:00:00:00:01:01"))
    got = {p: len(frames(f)) - before[p] for p, f in pcaps.items()}
    assert got == {"v1": 0, "v2": 0, "v3": 0}
    d.ofctl("inject", "brdb", "v3", udp_frame(src="02:00:00:00:01:03"))
    got = {p: len(frames(f)) - before[p] for p, f in pcaps.items()}
    assert got == {"v1": 1, "v2": 1, "v3": 0}
    for p in ("v1", "v2"):  # tagged on the trunks
        assert frames(pcaps[p])[-1][12:16] == bytes.fromhex("8100000a")
    d.ofctl("remove", "Port", "v2", "trunks", "10")
    assert d.ofctl("get", "Port", "v2", "trunks") == "[20]\n"
    d.ofctl("clear", "Port", "v3", "tag")
    d.ofctl("clear", "Port", "v2", "trunks")
    assert d.ofctl("get", "Port", "v3", "tag") == "[]\n"
    d.ofctl("inject", "brdb", "v1", udp_frame(src="02:00:00:00:01:01"))
    got = {p: len(frames(f)) - before[p] for p, f in pcaps.items()}
    assert got == {"v1": 1, "v2": 2, "v3": 1}


def test_interface_options_reach_the_port(d, tmp_path):
    new = tmp_path / "v2-new.pcap"
    d.ofctl("set", "Interface", "v2", f"options:tx_pcap={new}", "external_ids:k=v")
    assert d.ofctl("get", "Interface", "v2", "options:tx_pcap") == f'"{new}"\n'
    d.ofctl("del-flows", "brdb")
    d.ofctl("add-flow", "brdb", "in_port=1,actions=output:2")
    pkt = udp_frame()
    d.ofctl("inject", "brdb", "v1", pkt)
    assert [f.hex() for f in frames(new)] == [pkt]
    row = listed(d.ofctl("list", "Interface", "v2"))
    assert row["ofport"] == "2" and row["type"] == "dummy"
    assert row["external_ids"] == "{k=v}" and row["link_state"] == "up"
    d.ofctl("remove", "Interface", "v2", "external_ids", "k")
    assert d.ofctl("get", "Interface", "v2", "external_ids") == "{}\n"
    d.ofctl("set", "Interface", "v2", "external_ids:a=1", "external_ids:b=2")
    d.ofctl("clear", "Interface", "v2", "external_ids")
    assert d.ofctl("get", "Interface", "v2", "external_ids") == "{}\n"
    d.ofctl("set", "Interface", "v2", f"options:tx_pcap={d.rundir / 'v2.pcap'}")


def test_interface_ofport_request_renumbers(d):
    d.ofctl("add-port", "brdb", "v9", "type=dummy")
    assert d.ofctl("get", "Interface", "v9", "ofport") == "4\n"
    d.ofctl("set", "Interface", "v9", "ofport_request=40")
    assert d.ofctl("get", "Interface", "v9", "ofport") == "40\n"
    assert " 40(v9): " in d.ofctl("show", "brdb")
    d.ofctl("del-port", "v9")


def test_errors(d):
    assert 'unknown table "Nope"' in fails(d, "set", "Nope", ".", "a=b")
    assert "nocol" in fails(d, "set", "Bridge", "brdb", "nocol=1")
    assert 'no row "nobr" in table Bridge' in fails(d, "get", "Bridge", "nobr", "name")
    err = fails(d, "set", "Interface", "v1", "ofport=5")
    assert "cannot modify column ofport" in err and "ofport_request" in err
    assert "expects an integer, got 'abc'" in fails(d, "set", "Open_vSwitch", ".",
                                                      "next_cfg=abc")
    assert "read-only column name" in fails(d, "clear", "Port", "v1", "name")
    assert '"=" followed by a value' in fails(d, "set", "Bridge", "brdb", "external_ids")
    # Nothing half-done: an error in the second assignment leaves the first unapplied.
    fails(d, "set", "Bridge", "brdb", "external_ids:x=1", "nocol=2")
    assert d.ofctl("get", "Bridge", "brdb", "external_ids") == "{}\n"
