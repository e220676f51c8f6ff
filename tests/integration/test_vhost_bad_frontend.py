"""vhost-user ports against frontends that misbehave.

A Python frontend (tests/support/vhost_frontend.py) connects to ovsd's
dpdkvhostuser sockets over real unix sockets with real shared memory, and
breaks the protocol or its rings on purpose.  Each time: that port is reset
with a logged reason that `vhost-show` reports, it waits for a new
connection (which then works), and another vhost port keeps forwarding.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from ovsd.netdev.vhost_user.protocol import HEADER, U64, VERSION, VRING_ADDR, VRING_STATE, Req
from tests.daemon import Daemon
from tests.e2e.conftest import frames, udp_frame
from tests.support.vhost_frontend import Frontend

pytestmark = pytest.mark.skipif(os.cpu_count() < 2, reason="needs a core for the PMD")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    run = tmp_path_factory.mktemp("vhbad")
    with Daemon(run) as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        d.ofctl("add-port", "br0", "vgood", "type=dpdkvhostuser", "ofport_request=1")
        d.ofctl("add-port", "br0", "vbad", "type=dpdkvhostuser", "ofport_request=2")
        d.ofctl("add-port", "br0", "sink", "type=dummy", "ofport_request=3",
                f"options:tx_pcap={run / 'sink.pcap'}")
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:3")
        d.ofctl("add-flow", "br0", "in_port=2,actions=output:3")
        d.ofctl("add-flow", "br0", "in_port=3,actions=output:1")
        yield d


def vhost(d: Daemon, port: str) -> dict:
    return json.loads(d.ofctl("--json", "vhost-show", port))


def wait_for(cond, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def sink_frames(d: Daemon) -> list[bytes]:
    return frames(d.rundir / "sink.pcap")


def check_good_port_forwards(d: Daemon, good: Frontend) -> None:
    """Frames both ways through the well-behaved port: guest -> sink, and
    injected on the sink port -> into the guest (via a PMD)."""
    before = len(sink_frames(d))
    payload = os.urandom(6).hex().encode()
    frame = bytes.fromhex(udp_frame(payload=payload))
    good.transmit([frame] * 3)
    good.wait_tx_done(3)
    wait_for(lambda: len(sink_frames(d)) >= before + 3, "frames at the sink")
    assert sink_frames(d)[before:] == [frame] * 3
    good.post_rx_buffers(4)
    back = bytes.fromhex(udp_frame(payload=b"back-" + payload))
    d.ofctl("inject", "br0", "sink", back.hex())
    assert good.receive(1) == [back]


@pytest.fixture
def good(daemon):
    with Frontend(daemon.rundir / "vgood") as fe:
        fe.start()
        wait_for(lambda: vhost(daemon, "vgood")["state"] == "ready", "vgood ready")
        yield fe


def assert_reset(d: Daemon, fe: Frontend, reason: str) -> None:
    assert fe.closed_by_peer(), "the port did not drop the misbehaving frontend"
    info = wait_for(lambda: (i := vhost(d, "vbad"))["state"] == "waiting" and i,
                    "vbad waiting again")
    assert reason in (info["last_error"] or ""), info["last_error"]
    assert reason in (d.rundir / "ovsd.log").read_text()
    assert d.proc.poll() is None


def test_good_frontend_forwards_both_ways(daemon, good):
    check_good_port_forwards(daemon, good)


@pytest.mark.parametrize("name, act, reason", [
    ("bad version", lambda fe: fe.send(Req.SET_OWNER, flags=0x2),
     "protocol version 2"),
    ("huge payload", lambda fe: fe.send(Req.SET_OWNER, b"x" * 8192),
     "payload of 8192 bytes"),
    ("ring index", lambda fe: fe.send(Req.SET_VRING_NUM, VRING_STATE.pack(99, 256)),
     "ring index 99 is out of range"),
    ("short payload", lambda fe: fe.send(Req.SET_FEATURES, b"\x01\x02"),
     "SET_FEATURES: malformed payload"),
    ("kick without fd", lambda fe: fe.send(Req.SET_VRING_KICK, U64.pack(0)),
     "expects one fd but 0 came"),
    ("unknown question", lambda fe: fe.send(Req.GET_CONFIG, bytes(12)),
     "GET_CONFIG is not supported"),
])
def test_protocol_errors_reset_only_that_port(daemon, good, name, act, reason):
    with Frontend(daemon.rundir / "vbad") as bad:
        act(bad)
        assert_reset(daemon, bad, reason)
    check_good_port_forwards(daemon, good)


def test_vanishing_mid_handshake_then_a_new_connection_works(daemon, good):
    with Frontend(daemon.rundir / "vbad") as bad:
        bad.negotiate()
        bad.setup_ring(0, bad.rx)
        # Half a message ...
        bad.sock.send(HEADER.pack(Req.SET_VRING_NUM, VERSION, 8) + b"\x01\x00")
    # ... and gone.
    info = wait_for(lambda: (i := vhost(daemon, "vbad"))["state"] == "waiting" and
                    i["last_error"] and "middle" in i["last_error"] and i,
                    "vbad waiting after a cut message")
    assert info["last_error"] == ("the frontend closed the connection in the middle "
                                  "of a message")
    with Frontend(daemon.rundir / "vbad") as again:
        again.start()
        wait_for(lambda: vhost(daemon, "vbad")["state"] == "ready", "vbad ready")
        frame = bytes.fromhex(udp_frame(payload=b"second-connection"))
        before = len(sink_frames(daemon))
        again.transmit([frame])
        again.wait_tx_done(1)
        wait_for(lambda: len(sink_frames(daemon)) > before, "frame at the sink")
        assert sink_frames(daemon)[-1] == frame
    check_good_port_forwards(daemon, good)


def _desc_outside(fe: Frontend) -> None:
    head = fe.tx.add_tx(bytes(60), publish=False)
    fe.tx.write_desc(head, 0x7000_0000, 100, 0, 0)  # far outside guest RAM
    fe.tx.publish()


def _looping_chain(fe: Frontend) -> None:
    head = fe.tx.add_tx(bytes(60), split=[12, 20], publish=False)
    chain = fe.tx.chains[head].descs
    gpa, ln = fe.tx.chains[head].buffers[1]
    fe.tx.write_desc(chain[1], gpa, ln, 1, chain[0])  # NEXT back to the head
    fe.tx.publish()


def _avail_runs_ahead(fe: Frontend) -> None:
    fe.tx.set_avail_idx(5000)


def _head_out_of_range(fe: Frontend) -> None:
    fe.tx.push_avail(4000)


@pytest.mark.parametrize("name, act, reason", [
    ("descriptor outside memory", _desc_outside, "buffer is outside guest memory"),
    ("looping chain", _looping_chain, "(a loop)"),
    ("avail index runs ahead", _avail_runs_ahead, "more than the ring size 256"),
    ("head out of range", _head_out_of_range, "descriptor index 4000, beyond the ring"),
])
def test_ring_errors_reset_only_that_port(daemon, good, name, act, reason):
    with Frontend(daemon.rundir / "vbad") as bad:
        bad.start()
        wait_for(lambda: vhost(daemon, "vbad")["state"] == "ready", "vbad ready")
        act(bad)
        assert_reset(daemon, bad, reason)
        assert bad.ram.canaries_intact()
    check_good_port_forwards(daemon, good)


def test_ring_outside_the_memory_table_is_refused_at_setup(daemon, good):
    with Frontend(daemon.rundir / "vbad") as bad:
        bad.negotiate()
        bad.send(Req.SET_VRING_NUM, VRING_STATE.pack(1, 256))
        bad.send(Req.SET_VRING_ADDR, VRING_ADDR.pack(1, 0, 0x10, 0x20, 0x30, 0))
        assert_reset(daemon, bad, "ring 1: frontend-virtual range 0x10+4096 is not "
                                  "inside one memory region")
    check_good_port_forwards(daemon, good)


def test_oversized_frame_is_dropped_and_counted_not_a_reset(daemon, good):
    def rx_dropped() -> int:
        return vhost(daemon, "vgood")["stats"]["rx_dropped"]

    before = rx_dropped()
    good.tx.add_tx(bytes(70000), split=[12, 35000])  # longer than any frame we carry
    good.wait_tx_done(1)
    wait_for(lambda: rx_dropped() == before + 1, "rx_dropped counted (PMDs report each "
             "second)")
    assert drops(daemon, "vgood").get("oversized_frame", 0) >= 1
    assert vhost(daemon, "vgood")["state"] == "ready"
    check_good_port_forwards(daemon, good)


def drops(d: Daemon, port: str) -> dict:
    return json.loads(d.ofctl("--json", "drop-stats", port))["ports"].get(port, {})


def test_guest_drop_reasons_are_counted(daemon, good):
    before = drops(daemon, "vgood")
    # A runt from the guest, and frames for a guest that posted no buffers.
    good.tx.add_tx(bytes(10))
    good.wait_tx_done(1)
    for _ in range(2):
        daemon.ofctl("inject", "br0", "sink", udp_frame(payload=b"no-buffers"))
    want = {"runt_frame": 1, "guest_ring_full": 2}
    wait_for(lambda: all(drops(daemon, "vgood").get(r, 0) - before.get(r, 0) == n
                         for r, n in want.items()), f"drop-stats to show {want}")


def test_a_broken_ring_is_counted_as_a_descriptor_error(daemon, good):
    before = drops(daemon, "vbad").get("vhost_descriptor_error", 0)
    with Frontend(daemon.rundir / "vbad") as bad:
        bad.start()
        wait_for(lambda: vhost(daemon, "vbad")["state"] == "ready", "vbad ready")
        _desc_outside(bad)
        assert_reset(daemon, bad, "buffer is outside guest memory")
    wait_for(lambda: drops(daemon, "vbad").get("vhost_descriptor_error", 0) > before,
             "vhost_descriptor_error counted")


def test_capture_on_a_vhost_port_gives_exactly_what_the_guest_sent(daemon, good, tmp_path):
    import subprocess
    from scapy.utils import rdpcap
    from tests.daemon import tool
    out = tmp_path / "vgood.pcapng"
    proc = subprocess.Popen(tool("ofctl") + ["--rundir", str(daemon.rundir), "capture",
                                             "vgood", "--rx", "-c", "4", "-w", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # capture_start returned: the PMD has the tap
    sent = [bytes.fromhex(udp_frame(payload=f"guest-{i}".encode())) for i in range(4)]
    good.transmit(sent)
    good.wait_tx_done(4)
    assert proc.wait(timeout=20) == 0, proc.stderr.read()
    assert [bytes(p) for p in rdpcap(str(out))] == sent


def _ready_again(daemon: Daemon) -> None:
    """vbad is waiting again, and a well-behaved frontend gets it ready."""
    wait_for(lambda: vhost(daemon, "vbad")["state"] == "waiting", "vbad waiting again")
    with Frontend(daemon.rundir / "vbad") as again:
        again.start()
        wait_for(lambda: vhost(daemon, "vbad")["state"] == "ready", "vbad ready again")


def test_frontend_vanishing_mid_traffic(daemon, good):
    with Frontend(daemon.rundir / "vbad") as bad:
        bad.start()
        wait_for(lambda: vhost(daemon, "vbad")["state"] == "ready", "vbad ready")
        for i in range(200):  # in flight when it goes
            bad.tx.add_tx(bytes.fromhex(udp_frame(payload=f"gone-{i}".encode())))
    # Closed (memory unmapped on its side) with frames still on the ring.
    _ready_again(daemon)
    assert daemon.proc.poll() is None
    check_good_port_forwards(daemon, good)


def test_frontend_vanishing_while_its_memory_table_is_replaced(daemon, good):
    with Frontend(daemon.rundir / "vbad") as bad:
        bad.start()
        wait_for(lambda: vhost(daemon, "vbad")["state"] == "ready", "vbad ready")
        # A new memory table, and gone before the back-end could answer it.
        bad.send(Req.SET_MEM_TABLE, bad.mem_table_payload(), bad.ram.fds, need_reply=True)
    _ready_again(daemon)
    assert daemon.proc.poll() is None
    check_good_port_forwards(daemon, good)
