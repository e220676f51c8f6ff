"""Fault injection: SIGKILL of one PMD under traffic.  The daemon restarts
it and its ports forward again; a port polled by the other PMD never stalls
for as long as a second meanwhile."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.daemon import Daemon
from tests.integration import netns as N

pytestmark = pytest.mark.skipif(N.unavailable_reason() is not None or os.cpu_count() < 2,
                                reason=N.unavailable_reason() or "needs two cores")

SEND_EVERY = 0.001
RUN = 4.0
MAX_STALL = 1.0


def frame(seq: int) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                 IP(src="10.8.0.1", dst="10.8.0.2") / UDP(sport=1, dport=2) /
                 (b"stall" + seq.to_bytes(4, "big")))


def pmds(d: Daemon) -> list[dict]:
    return [p for p in json.loads(d.ofctl("--json", "pmd-stats-show"))["pmds"]
            if p["pmd_id"] is not None]


def poller_of(d: Daemon, port: str) -> int | None:
    for p in json.loads(d.ofctl("--json", "pmd-rxq-show"))["pmds"]:
        if any(q["port"] == port for q in p["rxqs"]):
            return p["core"]
    return None


def test_killing_one_pmd_does_not_stall_the_others_ports(tmp_path):
    with N.netns() as ns, N.veth(ns) as a1, N.veth(ns) as a2, N.veth(ns) as b1, \
            N.veth(ns) as b2, Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3")
        d.ofctl("add-br", "br0")
        for n, link in enumerate((a1, a2, b1, b2), 1):
            d.ofctl("add-port", "br0", link.outer, f"ofport_request={n}")
        d.ofctl("del-flows", "br0")
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        d.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
        d.ofctl("add-flow", "br0", "in_port=3,actions=output:4")
        deadline = time.monotonic() + 15
        while None in [poller_of(d, link.outer) for link in (a1, a2, b1, b2)]:
            assert time.monotonic() < deadline, d.ofctl("pmd-rxq-show")
            time.sleep(0.2)
        # Kill the PMD that does not poll b1; one of a1/a2 is its.
        victim = next(p for p in pmds(d) if p["core"] != poller_of(d, b1.outer))
        a_in, a_out = (a1, a2) if poller_of(d, a1.outer) == victim["core"] else (a2, a1)
        assert poller_of(d, a_in.outer) == victim["core"], d.ofctl("pmd-rxq-show")

        src, sink = b1.inner_socket(), b2.inner_socket()
        sink.settimeout(0.05)
        arrivals: list[float] = []
        stop = threading.Event()

        def send() -> None:
            seq = 0
            while not stop.is_set():
                src.send(frame(seq))
                seq += 1
                time.sleep(SEND_EVERY)

        def receive() -> None:
            while not stop.is_set():
                try:
                    f = sink.recv(2048)
                except socket.timeout:
                    continue
                if b"stall" in f:
                    arrivals.append(time.monotonic())

        threads = [threading.Thread(target=send), threading.Thread(target=receive)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            killed_at = time.monotonic()
            os.kill(victim["pid"], 9)
            time.sleep(RUN - 1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        window = [t for t in arrivals if t >= killed_at - 0.2]
        assert len(window) > 100, "the other PMD's port did not forward"
        gaps = [b - a for a, b in zip(window, window[1:])]
        print(f"longest gap on the other PMD's port after the kill: {max(gaps) * 1000:.0f} ms")
        assert max(gaps) < MAX_STALL, f"the other PMD's port stalled {max(gaps):.2f} s"

        # The killed PMD is back and its port forwards again.
        deadline = time.monotonic() + 20
        while not any(p["alive"] and p["restarts"] > victim["restarts"] for p in pmds(d)):
            assert time.monotonic() < deadline, "the killed PMD was not restarted"
            time.sleep(0.2)
        a_sink = a_out.inner_socket()
        a_sink.settimeout(0.1)
        a_src = a_in.inner_socket()
        got = 0
        deadline = time.monotonic() + 10
        while got < 5 and time.monotonic() < deadline:
            a_src.send(frame(999))
            try:
                while b"stall" in a_sink.recv(2048):
                    got += 1
            except socket.timeout:
                pass
        assert got >= 5, "the restarted PMD's port does not forward"
