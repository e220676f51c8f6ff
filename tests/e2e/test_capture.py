"""`ofctl capture` on dummy ports: exactly the frames a port received and
sent, in pcapng that tshark reads, directions flagged, dropped frames with
their reason, a filter, stdout, and the errors."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.daemon import tool
from tests.e2e.conftest import udp_frame

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark is not installed (make test installs it)")


@pytest.fixture
def sw(daemon):
    daemon.ofctl("add-br", "br0")
    for n in (1, 2):
        daemon.ofctl("add-port", "br0", f"p{n}", "type=dummy", f"ofport_request={n}")
    daemon.ofctl("del-flows", "br0")
    daemon.ofctl("add-flow", "br0", "priority=10,ip,nw_dst=10.0.0.9,actions=drop")
    daemon.ofctl("add-flow", "br0", "priority=5,in_port=1,actions=output:2")
    daemon.ofctl("add-flow", "br0", "priority=5,in_port=2,actions=output:1")
    return daemon


def start_capture(d, *args: str, out=subprocess.DEVNULL) -> subprocess.Popen:
    proc = subprocess.Popen(tool("ofctl") + ["--rundir", str(d.rundir), "capture", *args],
                            stdout=out, stderr=subprocess.PIPE)
    # Until the session shows up in the daemon's log of captures: capture_start
    # returns only when every datapath has the tap.
    deadline = time.monotonic() + 10
    while not _running(d):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the capture did not start"
        time.sleep(0.05)
    return proc


def _running(d) -> bool:
    # A capture_read on session 1 answers once it exists.
    r = d.ofctl_run("--json", "drop-stats")  # any call: the daemon is up
    return r.returncode == 0 and _session_exists(d)


def _session_exists(d) -> bool:
    import json
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(d.sock))
        s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"capture_read","params":{"id":1,"max":0}}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            reply += s.recv(65536)
    return "result" in json.loads(reply)


def tshark(path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_both_directions_exactly(sw, tmp_path):
    out = tmp_path / "p1.pcapng"
    proc = start_capture(sw, "p1", "-c", "5", "-w", str(out))
    rx = [udp_frame(payload=f"in-{i}".encode()) for i in range(3)]
    tx = [udp_frame(payload=f"out-{i}".encode()) for i in range(2)]
    for f in rx:
        sw.ofctl("inject", "br0", "p1", f)
    for f in tx:
        sw.ofctl("inject", "br0", "p2", f)
    assert proc.wait(timeout=20) == 0
    assert "5 packets captured, 0 lost" in proc.stderr.read().decode()
    rows = tshark(out, "frame.packet_flags_direction", "data.data", "udp.payload")
    # pcapng epb_flags: 1 inbound, 2 outbound.
    assert sorted(int(r[0], 16) for r in rows) == [1, 1, 1, 2, 2], rows
    from scapy.utils import rdpcap
    frames = [bytes(p).hex() for p in rdpcap(str(out))]
    assert sorted(frames) == sorted(rx + tx)


def test_dropped_frames_carry_the_reason_and_the_filter_applies(sw, tmp_path):
    out = tmp_path / "drops.pcapng"
    proc = start_capture(sw, "p1", "--rx", "-c", "2", "-w", str(out),
                         "--filter", "udp,tp_dst=80")
    sw.ofctl("inject", "br0", "p1", udp_frame(dport=81))             # filtered out
    sw.ofctl("inject", "br0", "p1", udp_frame(nw_dst="10.0.0.9"))     # dropped
    sw.ofctl("inject", "br0", "p1", udp_frame())                      # forwarded
    assert proc.wait(timeout=20) == 0
    rows = tshark(out, "frame.comment", "ip.dst", "udp.dstport")
    assert sorted(rows) == [["", "10.0.0.2", "80"], ["dropped: drop_action", "10.0.0.9", "80"]]


def test_stdout_into_tshark(sw):
    proc = start_capture(sw, "p2", "--tx", "-c", "1", out=subprocess.PIPE)
    sw.ofctl("inject", "br0", "p1", udp_frame(payload=b"to-stdout"))
    data, _ = proc.communicate(timeout=20)
    read = subprocess.run(["tshark", "-r", "-", "-T", "fields", "-e", "ip.dst"], input=data,
                          capture_output=True, timeout=60)
    assert read.stdout.decode().split() == ["10.0.0.2"]


def test_errors(sw):
    r = sw.ofctl_run("capture", "nope", "-c", "1")
    assert r.returncode == 1 and "no port named nope" in r.stderr
    r = sw.ofctl_run("capture", "p1", "-c", "1", "--filter", "tp_dst=banana")
    assert r.returncode == 1 and "bad filter" in r.stderr
