"""Cases recorded from real Open vSwitch 3.1 (cases.jsonl), replayed through
the public interface: ovsd with dummy ports, ofctl add-flow / inject, and the
ports' tx_pcap files.  Each packet must produce exactly the frames OVS sent."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ovsd.netdev.pcap import read_pcap
from tests.daemon import Daemon

CASES = [json.loads(line) for line in
         (Path(__file__).with_name("cases.jsonl")).read_text().splitlines() if line.strip()]
PORTS = ("p1", "p2", "p3", "p4")


@pytest.fixture(scope="module")
def switch(tmp_path_factory):
    run = tmp_path_factory.mktemp("conformance")
    with Daemon(run) as d:
        # Every cache tier on: each upcall's flow goes into the EMC too, so a
        # stale cached flow would show as a wrong output here.
        d.ofctl("set", "Open_vSwitch", ".", "other_config:emc-insert-inv-prob=1")
        d.ofctl("add-br", "br0")
        for n, name in enumerate(PORTS, 1):
            d.ofctl("add-port", "br0", name, "type=dummy", f"ofport_request={n}",
                    f"options:tx_pcap={run / name}.pcap")
        yield d


def _frames(path: Path) -> list[bytes]:
    return list(read_pcap(str(path))) if path.exists() else []


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(switch, case):
    run = switch.rundir
    version = case["openflow"]
    switch.ofctl("-O", version, "del-flows", "br0")
    switch.ofctl("fdb/flush", "br0")
    for flow in case["flows"]:
        switch.ofctl("-O", version, "add-flow", "br0", flow)
    for i, pkt in enumerate(case["packets"]):
        before = {p: len(_frames(run / f"{p}.pcap")) for p in PORTS}
        switch.ofctl("inject", "br0", pkt["in_port"], pkt["hex"])
        got = Counter()
        for p in PORTS:
            for frame in _frames(run / f"{p}.pcap")[before[p]:]:
                got[(p, frame.hex())] += 1
        want = Counter((o["port"], o["hex"]) for o in case["expect"][i]["out"])
        assert got == want, f"packet {i} ({pkt['in_port']}): {case['note']}"
