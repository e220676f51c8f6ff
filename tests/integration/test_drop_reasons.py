"""Drop reasons on real ports, provoked with real traffic through veths: a
frame too long for the output port's MTU, and an rx ring that overflows
while its PMD is stopped."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.daemon import Daemon
from tests.integration import netns as N

pytestmark = pytest.mark.skipif(N.unavailable_reason() is not None,
                                reason=N.unavailable_reason() or "")


def drops(d: Daemon, port: str) -> dict:
    return json.loads(d.ofctl("--json", "drop-stats", port))["ports"].get(port, {})


def wait_drops(d: Daemon, port: str, reason: str, at_least: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (n := drops(d, port).get(reason, 0)) < at_least:
        assert time.monotonic() < deadline, f"{port}: {reason} = {n}, wanted {at_least}"
        time.sleep(0.2)
    return n


def frame(size: int, i: int = 0) -> bytes:
    head = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP()
    return bytes(head / (i.to_bytes(4, "big") * ((size - len(head)) // 4 + 1)))[:size]


def wait_polled(d: Daemon, port: str) -> None:
    deadline = time.monotonic() + 10
    while port not in d.ofctl("pmd-rxq-show"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_frame_longer_than_the_output_mtu(tmp_path):
    with N.netns() as ns, N.veth(ns) as big, N.veth(ns, mtu=1300) as small, \
            Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        d.ofctl("add-port", "br0", big.outer, "ofport_request=1")
        d.ofctl("add-port", "br0", small.outer, "ofport_request=2")
        d.ofctl("del-flows", "br0")
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        wait_polled(d, big.outer)
        src = big.inner_socket()
        for i in range(4):
            src.send(frame(1400, i))
        assert wait_drops(d, small.outer, "mtu_exceeded", 4) == 4


def test_rx_ring_overrun_while_the_pmd_is_stopped(tmp_path):
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2, \
            Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        # The smallest ring: two blocks of 4 KiB, a few dozen small frames.
        d.ofctl("add-port", "br0", l1.outer, "ofport_request=1", "options:rx_ring_blocks=2",
                "options:rx_block_size=4096")
        d.ofctl("add-port", "br0", l2.outer, "ofport_request=2")
        wait_polled(d, l1.outer)
        pmd = next(p for p in json.loads(d.ofctl("--json", "pmd-stats-show"))["pmds"]
                   if p["pmd_id"] is not None)
        src = l1.inner_socket()
        os.kill(pmd["pid"], signal.SIGSTOP)
        try:
            for i in range(400):
                src.send(frame(64, i))
            time.sleep(0.2)
        finally:
            os.kill(pmd["pid"], signal.SIGCONT)
        assert wait_drops(d, l1.outer, "rx_ring_overrun", 1) >= 300


def test_tx_ring_full(tmp_path):
    from tests.support.vhost_frontend import Frontend
    with N.netns() as ns, N.veth(ns) as l2, Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        d.ofctl("add-port", "br0", "vh0", "type=dpdkvhostuser", "ofport_request=1")
        # The smallest transmit ring: 16 slots, all filled before one send().
        d.ofctl("add-port", "br0", l2.outer, "ofport_request=2", "options:tx_ring_frames=16")
        d.ofctl("del-flows", "br0")
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        with Frontend(d.rundir / "vh0") as guest:
            guest.start()
            deadline = time.monotonic() + 10
            while json.loads(d.ofctl("--json", "vhost-show", "vh0"))["state"] != "ready":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # One burst of 100 frames from the guest, handed to the 16-slot ring
            # in one go.
            for i in range(100):
                guest.tx.add_tx(frame(64, i), publish=False)
            guest.tx.publish()
            guest.wait_tx_done(100)
            assert wait_drops(d, l2.outer, "tx_queue_full", 1) >= 100 - 16
