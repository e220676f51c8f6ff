"""Packets through the real daemon: inject (outputs in the tx_pcap files when
it returns, input in rx_pcap), trace (per-table lines, `Datapath actions:`),
and NORMAL's MAC table with fdb/show and fdb/flush."""

from __future__ import annotations

import json
import time

import pytest

from tests.daemon import Daemon
from tests.e2e.conftest import frames, stable_flows, udp_frame

BR = "brx"
A, B, C = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("dp")) as daemon:
        daemon.ofctl("add-br", BR)
        for n in (1, 2, 3):
            daemon.ofctl("add-port", BR, f"x{n}", "type=dummy", f"ofport_request={n}",
                         f"options:tx_pcap={daemon.rundir / f'x{n}.pcap'}",
                         f"options:rx_pcap={daemon.rundir / f'x{n}-rx.pcap'}")
        yield daemon


@pytest.fixture
def normal(d):
    d.ofctl("del-flows", BR)
    d.ofctl("add-flow", BR, "priority=0,actions=NORMAL")
    d.ofctl("fdb/flush", BR)
    return d


class Sent:
    """Frames each dummy port sent since the last call."""

    def __init__(self, d: Daemon):
        self.d = d
        self.seen = {p: len(frames(self.path(p))) for p in ("x1", "x2", "x3")}

    def path(self, port: str):
        return self.d.rundir / f"{port}.pcap"

    def __call__(self) -> dict[str, list[bytes]]:
        out = {}
        for p, n in self.seen.items():
            got = frames(self.path(p))
            out[p] = got[n:]
            self.seen[p] = len(got)
        return out


def fdb(d: Daemon) -> list[tuple[int, int, str]]:
    lines = d.ofctl("fdb/show", BR).splitlines()
    assert lines[0] == " port  VLAN  MAC                Age"
    return [(int(p), int(v), m) for p, v, m, _ in (line.split() for line in lines[1:])]


# -- inject -------------------------------------------------------------------------------

def test_inject_outputs_are_in_the_pcaps_when_it_returns(d):
    d.ofctl("del-flows", BR)
    d.ofctl("add-flow", BR, "in_port=1,actions=output:2,output:3")
    d.ofctl("add-flow", BR, "in_port=2,actions=mod_nw_dst:10.9.9.9,output:1")
    sent = Sent(d)
    rx = len(frames(d.rundir / "x1-rx.pcap"))
    pkts = [udp_frame(dport=port) for port in range(5)]
    for pkt in pkts:
        assert json.loads(d.ofctl("--json", "inject", BR, "x1", pkt)) == {
            "sent": {"x2": 1, "x3": 1}}
    out = sent()
    assert [f.hex() for f in out["x2"]] == pkts and [f.hex() for f in out["x3"]] == pkts
    assert out["x1"] == []
    assert [f.hex() for f in frames(d.rundir / "x1-rx.pcap")[rx:]] == pkts
    # A rewrite: the IPv4 checksum stays right.
    d.ofctl("inject", BR, "x2", udp_frame(nw_dst="10.0.0.2"))
    (frame,) = sent()["x1"]
    assert frame.hex() == udp_frame(nw_dst="10.9.9.9")


def test_inject_errors(d):
    for args, msg in [((BR, "nox", udp_frame()), "no port named nox"),
                      (("nobr", "x1", udp_frame()), "no bridge named nobr"),
                      ((BR, "x1", "xyz"), "hexadecimal"),
                      ((BR, "x1", "0011"), "14 to 65535 bytes")]:
        proc = d.ofctl_run("inject", *args)
        assert proc.returncode == 1 and msg in proc.stderr, (args, proc.stderr)
    proc = d.ofctl_run("inject", BR, BR, udp_frame())  # the bridge's own (internal) port
    assert proc.returncode == 1 and "dummy" in proc.stderr


# -- trace --------------------------------------------------------------------------------

def test_trace_pipeline(d):
    d.ofctl("del-flows", BR)
    d.ofctl("add-flow", BR, "priority=10,in_port=1,actions=resubmit(,1)")
    d.ofctl("add-flow", BR, "table=1,priority=5,ip,nw_dst=10.0.0.2,actions=output:2")
    d.ofctl("-O", "OpenFlow13", "add-flow", BR,
            "table=1,priority=4,ip,actions=mod_dl_src:02:00:00:00:00:09,goto_table:3")
    d.ofctl("add-flow", BR, "table=3,actions=output:2,output:3")
    text = d.ofctl("trace", BR, "in_port=1,ip,nw_dst=10.0.0.2")
    assert text.startswith("Flow: ip,in_port=1,")
    assert "\n".join(text.splitlines()[1:9]) == (
        "\n"
        f'bridge("{BR}")\n'
        "-------------\n"
        " 0. in_port=1, priority 10\n"
        "    resubmit(,1)\n"
        " 1. ip,nw_dst=10.0.0.2, priority 5\n"
        "    output:2\n")
    assert "\nFinal flow: unchanged\n" in text
    assert text.endswith("\nDatapath actions: 2\n")

    text = d.ofctl("trace", BR, "in_port=1,ip,nw_dst=10.0.0.3")
    assert (" 1. ip, priority 4\n"
            "    set_field:02:00:00:00:00:09->eth_src\n"
            "    goto_table:3\n"
            " 3. priority 32768\n"
            "    output:2\n"
            "    output:3\n") in text
    assert "\nFinal flow: ip,in_port=1,vlan_tci=0x0000,dl_src=02:00:00:00:00:09," in text
    assert text.endswith("\nDatapath actions: set(eth(src=02:00:00:00:00:09)),2,3\n")

    text = d.ofctl("trace", BR, "in_port=2")
    assert " 0. No match.\n    drop\n" in text
    assert text.endswith("\nDatapath actions: drop\n")

    r = json.loads(d.ofctl("--json", "trace", BR, "in_port=1,ip,nw_dst=10.0.0.2"))
    assert r["datapath_actions"] == "2" and r["error"] is None
    assert r["megaflow"].startswith("recirc_id=0,eth,ip,in_port=1,")


def test_trace_with_a_packet_and_no_side_effects(normal):
    d = normal
    before = stable_flows(d.ofctl("dump-flows", BR))
    text = d.ofctl("trace", BR, "in_port=1", udp_frame(src=A, dst=B))
    assert f"dl_src={A},dl_dst={B}" in text and "nw_dst=10.0.0.2" in text
    assert " 0. priority 0\n    NORMAL\n" in text
    assert "no learned MAC for destination, flooding" in text
    actions = text.splitlines()[-1]
    assert actions.startswith("Datapath actions: 2,3")  # then LOCAL's port, if it opened
    # A trace is hypothetical: no counter moved and no MAC was learned.
    assert stable_flows(d.ofctl("dump-flows", BR)) == before
    assert "n_packets=0" in before
    assert fdb(d) == []


def test_trace_errors(d):
    proc = d.ofctl_run("trace", BR, "in_port=1,tcp,nw_src=300")
    assert proc.returncode == 1 and "300: invalid IP address" in proc.stderr
    proc = d.ofctl_run("trace", "nobr", "in_port=1")
    assert proc.returncode == 1 and "no bridge named nobr" in proc.stderr


# -- NORMAL and its MAC table ----------------------------------------------------------------

def test_normal_learns_and_fdb_show(normal):
    d = normal
    sent = Sent(d)
    d.ofctl("inject", BR, "x1", udp_frame(src=A))  # broadcast: flooded
    out = sent()
    assert (len(out["x1"]), len(out["x2"]), len(out["x3"])) == (0, 1, 1)
    assert fdb(d) == [(1, 0, A)]
    d.ofctl("inject", BR, "x2", udp_frame(src=B, dst=A))  # A is known: only to x1
    out = sent()
    assert (len(out["x1"]), len(out["x2"]), len(out["x3"])) == (1, 0, 0)
    d.ofctl("inject", BR, "x3", udp_frame(src=C, dst=B))
    out = sent()
    assert (len(out["x1"]), len(out["x2"]), len(out["x3"])) == (0, 1, 0)
    assert sorted(fdb(d)) == [(1, 0, A), (2, 0, B), (3, 0, C)]
    r = json.loads(d.ofctl("--json", "fdb/show", BR))
    assert sorted((e["port"], e["vlan"], e["mac"]) for e in r["entries"]) == sorted(fdb(d))
    assert all(e["age"] >= 0 for e in r["entries"])
    # A MAC that shows up on another port moves there.
    d.ofctl("inject", BR, "x3", udp_frame(src=A, dst=B))
    assert (3, 0, A) in fdb(d) and (1, 0, A) not in fdb(d)
    d.ofctl("inject", BR, "x2", udp_frame(src=B, dst=A))
    out = sent()
    assert (len(out["x1"]), len(out["x2"]), len(out["x3"])) == (0, 1, 1)


def test_normal_vlan_in_fdb(normal):
    d = normal
    d.ofctl("inject", BR, "x1", udp_frame(src=A, vlan=20))
    assert fdb(d) == [(1, 20, A)]


def test_fdb_flush(normal):
    d = normal
    d.ofctl("inject", BR, "x1", udp_frame(src=A))
    d.ofctl("inject", BR, "x2", udp_frame(src=B))
    assert len(fdb(d)) == 2
    assert d.ofctl("fdb/flush", BR) == "table successfully flushed\n"
    assert fdb(d) == []
    sent = Sent(d)
    d.ofctl("inject", BR, "x2", udp_frame(src=B, dst=A))  # A forgotten: flooded again
    out = sent()
    assert (len(out["x1"]), len(out["x3"])) == (1, 1)
    # Without a bridge: every bridge's table.
    d.ofctl("add-br", "brx2")
    d.ofctl("add-port", "brx2", "y1", "type=dummy")
    d.ofctl("inject", "brx2", "y1", udp_frame(src=C))
    assert "02:00:00:00:0a:03" in d.ofctl("fdb/show", "brx2")
    assert json.loads(d.ofctl("--json", "fdb/flush")) == {"flushed": 2}
    assert fdb(d) == [] and d.ofctl("fdb/show", "brx2").count("\n") == 1
    d.ofctl("del-br", "brx2")
    proc = d.ofctl_run("fdb/show", "nobr")
    assert proc.returncode == 1 and "no bridge named nobr" in proc.stderr
    proc = d.ofctl_run("fdb/flush", "nobr")
    assert proc.returncode == 1 and "no bridge named nobr" in proc.stderr


def test_mac_table_size_and_aging_follow_bridge_other_config(tmp_path):
    with Daemon(tmp_path / "run") as d:
        d.ofctl("add-br", "brm")
        for n in (1, 2):
            d.ofctl("add-port", "brm", f"m{n}", "type=dummy", f"ofport_request={n}")
        d.ofctl("set", "Bridge", "brm", "other_config:mac-table-size=10")
        for i in range(12):
            src = f"0200000001{i:02x}"
            d.ofctl("inject", "brm", "m1", "ffffffffffff" + src + "0800" + "45" + "00" * 45)
        rows = [line for line in d.ofctl("fdb/show", "brm").splitlines()[1:] if line.strip()]
        assert len(rows) == 10  # the table size holds, the oldest went
        d.ofctl("set", "Bridge", "brm", "other_config:mac-aging-time=1")
        time.sleep(2.2)
        rows = [line for line in d.ofctl("fdb/show", "brm").splitlines()[1:] if line.strip()]
        assert rows == []  # aged out after a second
