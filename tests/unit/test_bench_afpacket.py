"""The afpacket benchmarks' pure parts: traffic, rule table, netlink
counters, process stopping, reporting arithmetic.  No namespaces, no switch."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given, strategies as st

# bench/ is not an installed package: `python -m bench` finds it from the
# checkout's root, and so must this file (tests/unit has no __init__.py).

from bench import scenario_afpacket as S
from bench import topology as T
from bench.contenders import parse_ovs_pmd_stats, pmd_figures
from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.ofproto.xlate import xlate
from ovsd.packet import key as K

# Open vSwitch 3.1's `ovs-appctl dpif-netdev/pmd-stats-show` for a netdev
# bridge with two system ports (recorded from the afpacket-10k setup).
OVS_PMD_STATS = """\
main thread:
  packets received: 457271
  packet recirculations: 0
  avg. datapath passes per packet: 1.00
  phwol hits: 0
  mfex opt hits: 0
  simple match hits: 0
  emc hits: 157114
  smc hits: 0
  megaflow hits: 300157
  avg. subtable lookups per megaflow hit: 1.00
  miss with success upcall: 0
  miss with failed upcall: 0
  avg. packets per output batch: 31.95
"""


# -- traffic ---------------------------------------------------------------------------

def test_10k_flows_are_distinct_and_cover_every_pair():
    flows = S.flows_10k()
    assert len(flows) == 10_000
    assert len(set(flows)) == 10_000
    assert {a for a, _ in flows} == {S.SRC_BASE + i for i in range(S.N_ADDRS)}
    assert len({p for _, p in flows}) == S.N_PORTS


def test_trafgen_config_has_one_packet_per_flow():
    text = T.trafgen_config(S.flows_10k()[:3])
    lines = text.splitlines()
    assert len(lines) == 3
    assert "saddr=10.1.0.0," in lines[0] and "sp=4096," in lines[0]
    assert "saddr=10.1.0.1," in lines[1] and f"sp={0x1000 + 0x101}," in lines[1]
    assert all(f"fill(0x00, {64 - 42})" in line for line in lines)


@pytest.mark.parametrize("flows", [[], [(1 << 32, 1)], [(1, 65536)], [(-1, 0)]])
def test_trafgen_config_rejects_bad_flows(flows):
    with pytest.raises(ValueError):
        T.trafgen_config(flows)


def _pcap_frames(data: bytes) -> list[bytes]:
    frames, off = [], 24
    while off < len(data):
        _s, _us, incl, _orig = struct.unpack_from("<IIII", data, off)
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.skipif(shutil.which("trafgen") is None, reason="needs trafgen (netsniff-ng)")
def test_trafgen_compiles_the_frames_we_mean(tmp_path):
    flows = S.flows_10k()[:40]
    conf = tmp_path / "frames.cfg"
    conf.write_text(T.trafgen_config(flows))
    out = tmp_path / "out.pcap"
    subprocess.run(["trafgen", "--dev", str(out), "--conf", str(conf), "--cpus", "1",
                    "-n", str(2 * len(flows)), "--no-sock-mem"], check=True,
                   capture_output=True, timeout=20)
    frames = _pcap_frames(out.read_bytes())
    assert len(frames) == 2 * len(flows)
    seen = []
    for f in frames:
        assert len(f) == T.FRAME_LEN
        assert f[:6] == bytes.fromhex(T.DST_MAC.replace(":", ""))
        assert f[12:14] == b"\x08\x00" and f[23] == 17
        assert _csum(f[14:34]) == 0xFFFF  # a valid IPv4 header checksum
        seen.append((int.from_bytes(f[26:30], "big"), int.from_bytes(f[34:36], "big")))
    assert seen == flows + flows  # round robin, in order


# -- the rule table ----------------------------------------------------------------------

def test_rule_table_shape():
    rules = S.rules_10k()
    assert len(rules) == 97
    assert rules[-1] == "priority=0,actions=output:2"
    assert all(r.endswith("actions=output:2") for r in rules)


def test_every_rule_kind_is_hit_and_ovsd_agrees_with_the_reference():
    rules = S.rules_10k()
    bridge = Ofproto("bench")
    for i in (1, 2):
        bridge.add_port(OfPort(i, f"p{i}", i, "dummy"))
    for cookie, text in enumerate(rules):
        bridge.add_flow(parse_flow(f"cookie={cookie},{text}", "add", "OpenFlow10",
                                   bridge.port_no))
    hits = {300: 0, 200: 0, 100: 0, 0: 0}
    for addr, port in S.flows_10k()[::7]:
        expected = S.rule_for(addr, port, rules)
        key = K.make(in_port=1, dl_type=0x0800, nw_proto=17, nw_src=addr,
                     nw_dst=0x0A020001, tp_src=port, tp_dst=9)
        result = xlate(bridge, key, side_effects=False)
        assert [r.cookie for r in result.rules] == [rules.index(expected)]
        hits[int(expected.split(",")[0].split("=")[1])] += 1
    assert all(n > 0 for n in hits.values()), hits


def test_megaflows_number_far_fewer_than_flows():
    # What the datapath must keep: the /28 source block and the /0xfff0 port
    # range (the widest rule masks): 640 megaflows for 10,000 flows.
    blocks = {(a >> 4, p >> 4) for a, p in S.flows_10k()}
    assert len(blocks) == 640


# -- netlink counters ------------------------------------------------------------------

def test_link_counters_of_loopback():
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_ROUTE) as sock:
        counters = T.LinkCounters(sock, "lo").read()
        assert set(counters) == set(T.STAT_NAMES)
        assert all(v >= 0 for v in counters.values())


def test_link_counters_name_the_missing_link():
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, T.NETLINK_ROUTE) as sock:
        with pytest.raises(OSError, match="No such device"):
            T.LinkCounters(sock, "nosuchlink0").read()


def _newlink(attrs: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0)
    for kind, payload in attrs:
        attr = struct.pack("=HH", 4 + len(payload), kind) + payload
        body += attr + bytes(-len(attr) % 4)
    return struct.pack("=IHHII", 16 + len(body), T.RTM_NEWLINK, 0, 1, 0) + body


@given(st.lists(st.integers(0, 2**64 - 1), min_size=24, max_size=24),
       st.lists(st.binary(max_size=11), max_size=4))
def test_parse_link_stats_finds_stats64_among_other_attributes(values, others):
    stats = struct.pack("=24Q", *values)
    attrs = [(100 + i, b) for i, b in enumerate(others)]
    reply = _newlink(attrs[:2] + [(T.IFLA_STATS64, stats)] + attrs[2:])
    assert T.parse_link_stats(reply) == dict(zip(T.STAT_NAMES, values))


def test_parse_link_stats_without_stats64():
    with pytest.raises(ValueError, match="IFLA_STATS64"):
        T.parse_link_stats(_newlink([(T.IFLA_IFNAME, b"x\0")]))


def test_getlink_request_is_well_formed():
    req = T.getlink_request("veth0", 5)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq) == (len(req), T.RTM_GETLINK, T.NLM_F_REQUEST, 5)
    assert len(req) % 4 == 0 and b"veth0\0" in req


# -- processes -------------------------------------------------------------------------

def test_stop_pids_stops_a_child_and_its_descendants():
    proc = subprocess.Popen([sys.executable, "-c",
                             "import subprocess, sys, time; "
                             "subprocess.Popen([sys.executable, '-c', 'import time; "
                             "time.sleep(60)']); time.sleep(60)"])
    deadline = time.monotonic() + 5
    while not T.descendants(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    kids = T.descendants(proc.pid)
    assert len(kids) == 1
    T.stop_pids([*kids, proc.pid], timeout=5.0, reap=proc)
    assert proc.poll() is not None
    assert not T._alive(kids[0], None)


# -- arithmetic and parsing ------------------------------------------------------------

def test_cpu_shares():
    before = (100, 0, 50, 800, 50, 0, 0, 0)
    # 300 jiffies: 100 user, 60 system, 40 softirq, 50 idle, 50 stolen
    after = (200, 0, 110, 850, 50, 0, 40, 50)
    share = T.cpu_shares(before, after)
    assert share.busy == pytest.approx(200 / 300)
    assert share.steal == pytest.approx(50 / 300)
    assert (share.user, share.system, share.softirq) == pytest.approx((1 / 3, 0.2, 40 / 300))
    assert T.cpu_shares(before, before) == T.CpuShare(0.0, 0.0)


def _trial(rnd: int, delivered: int, offered: int = 1000) -> S.Trial:
    return S.Trial(rnd, offered, 0, delivered, 1.0, {0: T.CpuShare(1, 0), 1: T.CpuShare(1, 0)})


def test_paired_ratios_use_only_rounds_both_ran():
    results = {"a": [_trial(0, 300), _trial(1, 330), _trial(2, 360)],
               "b": [_trial(0, 100), _trial(2, 120)]}
    assert S.paired_ratios(results, "a", "b") == [3.0, 3.0]
    assert S.paired_ratios(results, "a", "missing") == []


def test_trial_rates():
    t = S.Trial(0, 2_000_000, 5, 500_000, 2.0, {})
    assert (t.offered_mpps, t.delivered_mpps, t.loss) == (1.0, 0.25, 0.75)
    assert S.Trial(0, 0, 0, 0, 1.0, {}).loss == 0.0


def test_pmd_figures():
    fig = pmd_figures({"packets": 1000, "busy_ns": 1_500_000, "idle_ns": 500_000,
                       "emc_hits": 400, "megaflow_hits": 590, "upcalls": 10,
                       "subtable_probes": 600, "simple_hits": 0, "lost": 0})
    assert fig["ns_per_packet"] == 1500.0
    assert fig["idle_share"] == 0.25
    assert pmd_figures({})["ns_per_packet"] is None


def test_parse_ovs_pmd_stats():
    assert parse_ovs_pmd_stats(OVS_PMD_STATS) == {
        "packets": 457271, "simple_hits": 0, "emc_hits": 157114, "smc_hits": 0,
        "megaflow_hits": 300157, "upcalls": 0, "failed_upcalls": 0}
    other = "pmd thread numa_id 0 core_id 1:\n  packets received: 5\n" + OVS_PMD_STATS
    assert parse_ovs_pmd_stats(other)["packets"] == 457271


def test_foreign_cpu_counts_other_user_processes_only():
    before = {1: ("init", 100, False), 2: ("kthreadd", 0, True), 10: ("ours", 0, False),
              11: ("pytest", 50, False)}
    hz = os.sysconf("SC_CLK_TCK")
    after = {1: ("init", 100, False), 2: ("kthreadd", 5 * hz, True), 10: ("ours", hz, False),
             11: ("pytest", 50 + hz, False), 12: ("make", hz // 2, False)}
    used = T.foreign_cpu(before, after, {10}, 2.0)
    assert list(used) == ["pytest", "make"]
    assert used["pytest"] == pytest.approx(0.5)
    assert used["make"] == pytest.approx(0.25, abs=0.01)


def test_process_ticks_sees_this_process():
    ticks = T.process_ticks()
    assert os.getpid() in ticks and not ticks[os.getpid()][2]
