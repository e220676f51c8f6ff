"""`ofctl capture` on a system port polled by a PMD: exactly the frames it
received, and forwarding that goes on at full count while a capture runs."""

from __future__ import annotations

import subprocess
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from tests.daemon import Daemon, tool
from tests.integration import netns as N
from tests.integration.traffic import recv_frames

pytestmark = pytest.mark.skipif(N.unavailable_reason() is not None,
                                reason=N.unavailable_reason() or "")


def frame(i: int, tag: bytes = b"cap") -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                 IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1000, dport=2000) /
                 (tag + i.to_bytes(4, "big")))


@pytest.fixture
def pair(tmp_path):
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2, \
            Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        d.ofctl("add-port", "br0", l1.outer, "ofport_request=1")
        d.ofctl("add-port", "br0", l2.outer, "ofport_request=2")
        d.ofctl("del-flows", "br0")
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        deadline = time.monotonic() + 10
        while l1.outer not in d.ofctl("pmd-rxq-show"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield d, l1, l2


def capture(d: Daemon, port: str, out, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(tool("ofctl") + ["--rundir", str(d.rundir), "capture", port,
                                             "-w", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # capture_start has returned: every PMD has the tap
    assert proc.poll() is None, proc.stderr.read()
    return proc


def test_exactly_the_frames_a_system_port_received(pair, tmp_path):
    d, l1, l2 = pair
    out = tmp_path / "rx.pcapng"
    proc = capture(d, l1.outer, out, "--rx", "-c", "20")
    sent = [frame(i) for i in range(20)]
    src = l1.inner_socket()
    for f in sent:
        src.send(f)
    assert proc.wait(timeout=20) == 0, proc.stderr.read()
    assert sorted(bytes(p) for p in rdpcap(str(out))) == sorted(sent)


def test_forwarding_goes_on_at_full_count_while_capturing(pair, tmp_path):
    d, l1, l2 = pair
    proc = capture(d, l1.outer, tmp_path / "load.pcapng", "--duration", "4")
    src, sink = l1.inner_socket(), l2.inner_socket()
    sent = [frame(i, b"load") for i in range(3000)]
    for i, f in enumerate(sent):
        src.send(f)
        if i % 64 == 63:
            time.sleep(0.001)
    got = [f for f in recv_frames(sink, len(sent), timeout=5, grace=0.3) if b"load" in f]
    proc.wait(timeout=20)
    assert len(got) == len(sent)
    captured = len(rdpcap(str(tmp_path / "load.pcapng")))
    report = proc.stderr.read()
    assert f"{captured} packets captured" in report, report
    lost = int(report.split(", ")[1].split()[0])
    assert captured + lost >= len(sent)  # every frame was either copied or counted
