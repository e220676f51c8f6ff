"""`ovsd --metrics`: the real daemon serves Prometheus text at /metrics, and
what it says matches `ofctl --json show`, `pmd-stats-show` and `vhost-show`:
dummy ports with injected frames, a vhost-user port before and after a
frontend's handshake, and a system port on a veth whose far end is in a
network namespace, forwarded by a PMD on core 1.  Then the flag's bad
values, and a client that connects and says nothing."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon, tool
from tests.e2e.conftest import add_dummy_ports, frames, udp_frame
from tests.integration import netns as N
from tests.integration.traffic import recv_frames

BRIDGE = f"mt{os.getpid():x}"[:15]  # also a tap device: no clash with the host's
LISTENING = re.compile(r"metrics on http://(\S+):(\d+)/metrics")


# -- helpers --------------------------------------------------------------------------

def metrics_port(d: Daemon, timeout: float = 30.0) -> int:
    """The port from the daemon's log (it was started with --metrics 0)."""
    deadline = time.monotonic() + timeout
    log = d.rundir / "ovsd.log"
    while True:
        m = LISTENING.search(log.read_text()) if log.exists() else None
        if m:
            return int(m.group(2))
        assert d.proc.poll() is None, (d.rundir / "stderr.log").read_text()
        assert time.monotonic() < deadline, "ovsd never said where metrics are served"
        time.sleep(0.05)


def scrape_text(port: int, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def scrape(port: int) -> dict:
    """{(sample name, frozenset of labels): value}; fails on text the official
    parser does not accept."""
    out = {}
    for fam in text_string_to_metric_families(scrape_text(port)):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def labels(**kv) -> frozenset:
    return frozenset(kv.items())


def show(d: Daemon, bridge: str = BRIDGE) -> dict:
    return json.loads(d.ofctl("--json", "show", bridge))


def assert_ports_match_show(m: dict, d: Daemon, bridge: str = BRIDGE) -> int:
    """Every counter of every open port equals `ofctl --json show`; returns how
    many were compared."""
    n = 0
    for p in show(d, bridge)["ports"]:
        lv = labels(bridge=bridge, port=p["name"], type=p["type"])
        assert m[("ovsd_port_admin_state", lv)] == (0 if p["state"] == "down" else 1)
        assert m[("ovsd_port_link_state", lv)] == (1 if p["state"] == "up" else 0)
        assert m[("ovsd_port_info", lv | {("ofport", str(p["ofport"]))})] == 1
        for key, value in p["statistics"].items():
            assert m[(f"ovsd_port_{key}_total", lv)] == value, (p["name"], key)
            n += 1
    return n


def pmd_stats(d: Daemon) -> list[dict]:
    return json.loads(d.ofctl("--json", "pmd-stats-show"))["pmds"]


def settle(seconds: float = 1.2) -> None:
    """Longer than the metrics' PMD counter cache (1 s): the next scrape asks
    the PMDs again."""
    time.sleep(seconds)


@pytest.fixture
def served(daemons):
    d = daemons.start(None, "--metrics", "0")
    d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
    d.ofctl("add-br", BRIDGE)
    return d, metrics_port(d)


# -- what it serves -----------------------------------------------------------------------

def test_dummy_ports_match_show_and_pmd_stats(served):
    d, port = served
    pcaps = add_dummy_ports(d, BRIDGE, ["p1", "p2", "p3"])
    d.ofctl("del-flows", BRIDGE)
    d.ofctl("add-flow", BRIDGE, "in_port=1,actions=output:2")
    d.ofctl("add-flow", BRIDGE, "in_port=2,actions=output:1,output:3")
    for i in range(5):
        d.ofctl("inject", BRIDGE, "p1", udp_frame(sport=1000 + i))
    for i in range(2):
        d.ofctl("inject", BRIDGE, "p2", udp_frame(payload=b"x" * 100))
    assert len(frames(pcaps["p2"])) == 5 and len(frames(pcaps["p3"])) == 2

    m = scrape(port)
    assert assert_ports_match_show(m, d) >= 3 * 8
    p1, p2, p3 = (labels(bridge=BRIDGE, port=n, type="dummy") for n in ("p1", "p2", "p3"))
    assert m[("ovsd_port_rx_packets_total", p1)] == 5
    assert m[("ovsd_port_tx_packets_total", p2)] == 5
    assert m[("ovsd_port_tx_packets_total", p3)] == 2
    assert m[("ovsd_port_tx_bytes_total", p3)] == 2 * (len(udp_frame(payload=b"x" * 100)) // 2)

    version = d.ofctl("get", "Open_vSwitch", ".", "ovs_version").strip().strip('"')
    assert m[("ovsd_info", labels(version=version))] == 1
    assert m[("ovsd_bridges", labels())] == 1
    assert m[("ovsd_bridge_ports", labels(bridge=BRIDGE))] == 4  # with its LOCAL port
    assert m[("ovsd_bridge_flows", labels(bridge=BRIDGE))] == 2

    # Drops, by reason, as drop-stats counts them.
    d.ofctl("add-flow", BRIDGE, "priority=50000,udp,tp_dst=9,actions=drop")
    d.ofctl("inject", BRIDGE, "p3", udp_frame())  # no flow for in_port=3
    d.ofctl("inject", BRIDGE, "p1", udp_frame(dport=9))
    m = scrape(port)
    drops = json.loads(d.ofctl("--json", "drop-stats"))["ports"]
    assert drops == {"p3": {"table_miss": 1}, "p1": {"drop_action": 1}}
    assert m[("ovsd_port_drops_total", labels(bridge=BRIDGE, port="p3",
                                              reason="table_miss"))] == 1
    assert m[("ovsd_port_drops_total", labels(bridge=BRIDGE, port="p1",
                                              reason="drop_action"))] == 1

    main = next(e for e in pmd_stats(d) if e["pmd_id"] is None)
    ml = labels(pmd="main", core="")
    for key, name in (("packets", "packets"), ("emc_hits", "emc_hits"),
                      ("megaflow_hits", "megaflow_hits"),
                      ("simple_hits", "simple_match_hits"), ("upcalls", "upcalls"),
                      ("lost", "lost")):
        assert m[(f"ovsd_pmd_{name}_total", ml)] == main[key], key
    assert main["packets"] == 9
    dp_flows = json.loads(d.ofctl("--json", "dump-dp-flows"))["datapaths"]
    main_flows = next(s for s in dp_flows if s["pmd_id"] is None)["flows"]
    assert m[("ovsd_pmd_megaflows", ml)] == len(main_flows) >= 1


def test_vhost_port_state_and_queues(served):
    from tests.support.vhost_frontend import Frontend
    d, port = served
    d.ofctl("add-port", BRIDGE, "vh1", "type=dpdkvhostuser")
    vl = labels(bridge=BRIDGE, port="vh1", type="dpdkvhostuser")

    def state(m):
        on = [s for s in ("waiting", "connected", "ready")
              if m[("ovsd_vhost_state", vl | {("state", s)})] == 1]
        assert len(on) == 1, on
        return on[0]

    m = scrape(port)
    assert state(m) == "waiting" == json.loads(d.ofctl("--json", "vhost-show", "vh1"))["state"]
    assert m[("ovsd_port_link_state", vl)] == 0
    sock_path = str(d.rundir / "vh1")
    assert m[("ovsd_vhost_info", vl | {("mode", "server"), ("socket", sock_path)})] == 1
    assert not [k for k in m if k[0] == "ovsd_vhost_queue_ready"]
    assert m[("ovsd_vhost_tx_retries_total", vl)] == 0

    with Frontend(d.rundir / "vh1") as fe:
        fe.start()
        deadline = time.monotonic() + 10
        while state(m := scrape(port)) != "ready":
            assert time.monotonic() < deadline, m
            time.sleep(0.1)
        shown = json.loads(d.ofctl("--json", "vhost-show", "vh1"))
        assert shown["state"] == "ready"
        assert m[("ovsd_port_link_state", vl)] == 1
        for q in shown["queues"]:
            key = vl | {("queue", str(q["queue_pair"])), ("ring", str(q["ring"])),
                        ("direction", "rx" if q["ring"] % 2 else "tx")}
            assert m[("ovsd_vhost_queue_ready", key)] == (q["state"] == "ready") == 1
        assert {q["ring"] for q in shown["queues"]} == {0, 1}
    deadline = time.monotonic() + 10
    while state(scrape(port)) != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_system_port_with_pmd_traffic(daemons):
    reason = N.unavailable_reason()
    assert reason is None, reason
    N.sweep_stale()
    with N.netns() as ns, N.veth(ns) as link:
        d = daemons.start(None, "--metrics", "0")
        port = metrics_port(d)
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", BRIDGE)
        d.ofctl("add-port", BRIDGE, link.outer, "ofport_request=1")
        pcaps = {"dum": d.rundir / "dum.pcap"}
        d.ofctl("add-port", BRIDGE, "dum", "type=dummy", "ofport_request=2",
                f"options:tx_pcap={pcaps['dum']}")
        d.ofctl("del-flows", BRIDGE)
        d.ofctl("add-flow", BRIDGE, "in_port=1,actions=output:2")
        d.ofctl("add-flow", BRIDGE, "in_port=2,actions=output:1")
        deadline = time.monotonic() + 10
        while link.outer not in d.ofctl("pmd-rxq-show"):
            assert time.monotonic() < deadline, "no PMD polls the system port"
            time.sleep(0.05)
        time.sleep(0.2)

        count = 200
        sock = link.inner_socket()
        sent = [bytes.fromhex(udp_frame(src="02:00:00:00:0a:01", sport=2000 + i % 20,
                                        payload=b"m" * 60)) for i in range(count)]
        for i, f in enumerate(sent):
            sock.send(f)
            if i % 32 == 31:
                time.sleep(0.002)
        deadline = time.monotonic() + 15
        while len(frames(pcaps["dum"])) < count:
            assert time.monotonic() < deadline, f"{len(frames(pcaps['dum']))} of {count}"
            time.sleep(0.05)
        back = 7
        for i in range(back):
            d.ofctl("inject", BRIDGE, "dum", udp_frame(sport=3000 + i))
        assert len(recv_frames(sock, back, timeout=5)) >= back

        settle()
        m = scrape(port)
        compared = assert_ports_match_show(m, d)
        assert compared >= 3 * 8
        sl = labels(bridge=BRIDGE, port=link.outer, type="system")
        assert m[("ovsd_port_rx_packets_total", sl)] >= count
        assert m[("ovsd_port_tx_packets_total", sl)] >= back
        assert m[("ovsd_port_rxqs", sl)] == 1

        pmd = next(e for e in pmd_stats(d) if e["pmd_id"] is not None)
        assert pmd["core"] == 1
        pl = labels(pmd=str(pmd["pmd_id"]), core="1")
        assert m[("ovsd_pmd_packets_total", pl)] == pmd["packets"] >= count
        hits = 0
        for key, name in (("emc_hits", "emc_hits"), ("megaflow_hits", "megaflow_hits"),
                          ("simple_hits", "simple_match_hits"), ("upcalls", "upcalls"),
                          ("lost", "lost")):
            assert m[(f"ovsd_pmd_{name}_total", pl)] == pmd[key], key
            if key != "lost":
                hits += pmd[key]
        assert hits == pmd["packets"], pmd
        assert m[("ovsd_pmd_upcalls_total", pl)] >= 1
        assert m[("ovsd_pmd_busy_seconds_total", pl)] == pytest.approx(
            pmd["busy_ns"] / 1e9)
        assert m[("ovsd_pmd_busy_seconds_total", pl)] > 0
        assert m[("ovsd_pmd_idle_seconds_total", pl)] > 0
        assert m[("ovsd_pmd_alive", pl)] == 1
        assert m[("ovsd_pmd_megaflows", pl)] >= 1
        assert m[("ovsd_pmd_rxq_busy_seconds_total",
                  pl | {("port", link.outer), ("queue", "0")})] > 0
        d.stop()


def test_afxdp_port_xdp_mode(daemons):
    reason = N.unavailable_reason()
    assert reason is None, reason
    with N.netns() as ns, N.veth(ns) as link:
        d = daemons.start(None, "--metrics", "0")
        port = metrics_port(d)
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", BRIDGE)
        d.ofctl("add-port", BRIDGE, link.outer, "type=afxdp", "options:xdp-mode=generic",
                "ofport_request=1")
        settle()
        m = scrape(port)
        al = labels(bridge=BRIDGE, port=link.outer, type="afxdp")
        x = next(p for p in show(d)["ports"] if p["name"] == link.outer)["afxdp"]
        assert x["xdp_mode"] == "generic"
        assert m[("ovsd_afxdp_info", al | {("xdp_mode", x["xdp_mode"]),
                                           ("xdp_mode_requested", x["requested"]),
                                           ("use_need_wakeup",
                                            str(x["use_need_wakeup"]).lower())})] == 1
        assert m[("ovsd_port_rxqs", al)] == x["n_rxq"]
        assert_ports_match_show(m, d)
        assert d.stop() == 0


# -- the flag --------------------------------------------------------------------------

def run_ovsd(rundir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tool("ovsd") + ["--rundir", str(rundir), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value, says", [
    ("nonsense", "port must be a number"),
    ("99999", "port must be a number"),
    ("example.org:9100", "not an IP address"),
    ("::1:9100", "in brackets"),
])
def test_bad_flag_values_are_refused(tmp_path, value, says):
    proc = run_ovsd(tmp_path / "run", "--metrics", value)
    assert proc.returncode == 2
    assert "--metrics" in proc.stderr and says in proc.stderr, proc.stderr
    assert not (tmp_path / "run" / "ovsd.sock").exists()


def test_port_in_use_refuses_to_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        proc = run_ovsd(tmp_path / "run", "--metrics", f"127.0.0.1:{busy}")
    assert proc.returncode == 1, proc.stderr
    assert f"cannot serve metrics on 127.0.0.1:{busy}" in proc.stderr
    assert "in use" in proc.stderr
    assert not (tmp_path / "run" / "ovsd.sock").exists(), "it must clean up after itself"
    assert not (tmp_path / "run" / "ovsd.pid").exists()


def test_address_not_on_this_host_refuses_to_start(tmp_path):
    proc = run_ovsd(tmp_path / "run", "--metrics", "192.0.2.77:9100")  # TEST-NET-1
    assert proc.returncode == 1, proc.stderr
    assert "cannot serve metrics on 192.0.2.77:9100" in proc.stderr
    assert "assign requested address" in proc.stderr


def test_without_the_flag_nothing_listens(daemon):
    log = (daemon.rundir / "ovsd.log").read_text()
    assert "metrics on" not in log


def test_stop_releases_the_port(daemons):
    d = daemons.start(None, "--metrics", "0")
    port = metrics_port(d)
    scrape(port)
    assert d.stop() == 0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "still listening after stop"


# -- clients ------------------------------------------------------------------------------

def test_silent_client_does_not_block_scrapes(served):
    d, port = served
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        silent[0].sendall(b"GET /metrics HTTP/1.1\r\nHost:")  # and never the rest
        t0 = time.monotonic()
        for _ in range(3):
            assert "ovsd_port_rx_packets_total" in scrape_text(port, timeout=3)
        assert time.monotonic() - t0 < 3
        # The daemon goes on answering RPCs too.
        d.ofctl("list-br")
        # And the silent ones are sent away after the request deadline (5 s).
        for s in silent:
            s.settimeout(15)
            data = s.recv(4096)
            assert data.startswith(b"HTTP/1.1 408 "), data
    finally:
        for s in silent:
            s.close()


def test_metrics_address_from_the_config_file(daemons, tmp_path):
    """`metrics` in the [ovsd] section serves like --metrics (which overrides it)."""
    cfg = tmp_path / "m.toml"
    cfg.write_text('[ovsd]\nmetrics = "127.0.0.1:0"\n')
    d = daemons.start(None, "--config", str(cfg))
    port = metrics_port(d)
    assert ("ovsd_bridges", labels()) in scrape(port)
