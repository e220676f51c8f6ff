"""vhost-user ports with a real frontend: dpdk-testpmd's net_virtio_user.

testpmd plays the guest: each virtio_user vdev is one vhost-user frontend
(QEMU's role) connected to an ovsd port, in both socket directions
(dpdkvhostuser: ovsd listens; dpdkvhostuserclient: testpmd listens with
server=1).  Frames sent by one testpmd port arrive at another through ovsd
flows and are counted exactly at both ends.

testpmd's forwarding lcore is core 0 and ovsd's PMD core 1: two busy pollers
on one core would take turns in scheduler slices.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tests.daemon import Daemon, tool
from tests.e2e.conftest import wait_serving
from tests.integration import netns as N
from tests.interop.hugepages import HugepageError, ensure_hugepages
from tests.interop.testpmd import Testpmd, TestpmdError

pytestmark = [
    pytest.mark.skipif(shutil.which("dpdk-testpmd") is None,
                       reason="dpdk-testpmd is not installed (Debian package dpdk-dev; "
                              "scripts/host-deps.sh installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="testpmd needs root (hugepages, EAL)"),
]

PMD_CORE_MASK = "0x2"  # ovsd's PMD on core 1 ...
TESTPMD_EAL = ["--main-lcore", "1"]  # ... testpmd forwards on core 0


@pytest.fixture(scope="module", autouse=True)
def hugepages():
    try:
        ensure_hugepages(512)
    except HugepageError:
        pass  # testpmd falls back to --no-huge


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    run = tmp_path_factory.mktemp("vhost")
    with Daemon(run) as d:
        d.ofctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={PMD_CORE_MASK}",
                "other_config:emc-insert-inv-prob=1")
        d.ofctl("add-br", "br0")
        yield d


def vhost(d: Daemon, port: str) -> dict:
    return json.loads(d.ofctl("--json", "vhost-show", port))


def wait_state(d: Daemon, port: str, state: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = vhost(d, port)
        if info["state"] == state:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"{port} stayed {info['state']}, not {state}:\n"
                                 + d.ofctl("vhost-show", port))
        time.sleep(0.1)


class Pair:
    """Two vhost ports of ovsd cross-connected by in_port flows, and the testpmd
    whose two virtio_user ports are their frontends."""

    def __init__(self, d: Daemon, tmp, *, client: bool, queues: int, mrg: bool):
        self.d = d
        self.names = [f"vh{'c' if client else 's'}{i}" for i in range(2)]
        vdevs = []
        for n, name in enumerate(self.names, start=10):
            if client:
                path = tmp / f"{name}.sock"
                d.ofctl("add-port", "br0", name, "type=dpdkvhostuserclient",
                        f"options:vhost-server-path={path}", f"ofport_request={n}")
            else:
                d.ofctl("add-port", "br0", name, "type=dpdkvhostuser",
                        f"ofport_request={n}")
                path = d.rundir / name
            vdevs.append(Testpmd.virtio_user(path, server=client, queues=queues,
                                             mrg_rxbuf=mrg))
        d.ofctl("add-flow", "br0", "in_port=10,actions=output:11")
        d.ofctl("add-flow", "br0", "in_port=11,actions=output:10")
        self.pmd = Testpmd(vdevs, workdir=tmp, eal_args=TESTPMD_EAL)

    def __enter__(self):
        self.pmd.launch()
        self.pmd.wait_ready()
        for name in self.names:
            wait_state(self.d, name, "ready")
        for port in (0, 1):
            self.pmd.wait_link_up(port)
        return self

    def __exit__(self, *exc):
        self.pmd.close()
        for name in self.names:
            self.d.ofctl("--if-exists", "del-port", name)
        self.d.ofctl("del-flows", "br0", "in_port=10")
        self.d.ofctl("del-flows", "br0", "in_port=11")


def received(pmd: Testpmd) -> dict[int, int]:
    """Frames each testpmd port received so far (its NIC counters)."""
    return {p: st["rx_packets"] for p, st in pmd.port_stats().items()}


def receive_all(pmd: Testpmd, since: dict[int, int], expected: dict[int, int],
                timeout: float = 20.0) -> dict[int, int]:
    """Keep testpmd receiving (rxonly) until each port got what it expects
    since ``since``, or time is up; returns what each got.  Frames may have
    arrived already while send_exact ran (its rounds receive too)."""
    pmd.set_fwd("rxonly")
    deadline = time.monotonic() + timeout
    while True:
        pmd.start_fwd()
        time.sleep(0.3)
        pmd.stop_fwd()
        now = received(pmd)
        got = {p: now[p] - since[p] for p in expected}
        if all(got[p] >= n for p, n in expected.items()) or time.monotonic() > deadline:
            return got


@pytest.mark.parametrize("client, queues, mrg", [
    (False, 1, True), (False, 1, False), (False, 2, True),
    (True, 1, True), (True, 2, False),
], ids=["server-q1-mrg", "server-q1-nomrg", "server-q2-mrg", "client-q1-mrg",
        "client-q2-nomrg"])
def test_frames_cross_ovsd_counted_exactly(daemon, tmp_path, client, queues, mrg):
    with Pair(daemon, tmp_path, client=client, queues=queues, mrg=mrg) as pair:
        info = vhost(daemon, pair.names[0])
        assert ("net_mrg_rxbuf" in info["feature_names"]) == mrg
        assert sum(1 for q in info["queues"] if q["state"] == "ready") == 2 * queues
        before = [vhost(daemon, n)["stats"] for n in pair.names]
        start = received(pair.pmd)
        n = 600 * queues
        # Sent on every stream: n/2 from each port, so each port receives n/2.
        assert pair.pmd.send_exact(n) == n
        expected = {0: n // 2, 1: n // 2}
        assert receive_all(pair.pmd, start, expected) == expected
        time.sleep(0.5)  # nothing more arrives: exact, not at least
        assert receive_all(pair.pmd, start, expected, timeout=0.3) == expected
        # The PMD reports its counts once a second: wait for them, then check
        # that they stay exact.
        def moved() -> list[tuple[int, int, int]]:
            return [(a["rx_packets"] - b["rx_packets"], a["tx_packets"] - b["tx_packets"],
                     a["tx_dropped"] - b["tx_dropped"])
                    for b, a in zip(before, (vhost(daemon, n_)["stats"]
                                             for n_ in pair.names))]
        want = [(n // 2, n // 2, 0)] * 2
        deadline = time.monotonic() + 5
        while moved() != want and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.2)
        assert moved() == want


@pytest.mark.skipif(shutil.which("tshark") is None,
                    reason="tshark is not installed (make test installs it)")
def test_capture_on_a_vhost_port_with_testpmd(daemon, tmp_path):
    """`ofctl capture` of a port whose frontend is testpmd (what tcpdump cannot
    see): every frame testpmd sent into the port and every frame ovsd put into
    testpmd's receive ring, flagged by direction in a pcapng tshark reads."""
    out = tmp_path / "vh.pcapng"
    with Pair(daemon, tmp_path, client=False, queues=1, mrg=True) as pair:
        proc = subprocess.Popen(
            tool("ofctl") + ["--rundir", str(daemon.rundir), "capture", pair.names[0],
                             "-c", "200", "-w", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)   # capture_start has returned: the PMD has the tap
            assert proc.poll() is None, proc.stderr.read()
            start = received(pair.pmd)
            assert pair.pmd.send_exact(200) == 200
            expected = {0: 100, 1: 100}
            assert receive_all(pair.pmd, start, expected) == expected
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "200 packets captured, 0 lost" in proc.stderr.read()
    rows = subprocess.run(["tshark", "-r", str(out), "-T", "fields",
                           "-e", "frame.packet_flags_direction", "-e", "udp.length"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    directions = sorted(int(line.split("\t")[0], 16) for line in rows.splitlines())
    # pcapng epb_flags: 1 inbound (testpmd port 0 sent), 2 outbound (to port 0)
    assert directions == [1] * 100 + [2] * 100
    assert all(line.split("\t")[1] for line in rows.splitlines()), "not UDP as sent"


def test_show_and_vhost_show_report_the_state(daemon, tmp_path):
    daemon.ofctl("add-port", "br0", "vhwait", "type=dpdkvhostuser")
    try:
        text = daemon.ofctl("vhost-show", "vhwait")
        assert "state:              waiting" in text
        assert f"to connect to {daemon.rundir / 'vhwait'}" in text
        sock = daemon.rundir / "vhwait"
        assert sock.is_socket() and (sock.stat().st_mode & 0o777) == 0o660
        show = daemon.ofctl("show", "br0")
        assert f"vhost server {sock}: waiting" in show
    finally:
        daemon.ofctl("del-port", "vhwait")
    assert not (daemon.rundir / "vhwait").exists()
    with Pair(daemon, tmp_path, client=False, queues=1, mrg=True) as pair:
        text = daemon.ofctl("vhost-show", pair.names[0])
        assert "state:              ready" in text
        assert "ring 0  (queue 0, guest rx (ovsd tx)): size=256 enabled=yes state=ready" \
            in text
        show = daemon.ofctl("show", "br0")
        assert "vhost server" in show and ": ready, 1/1 queue pairs ready" in show
        ports = json.loads(daemon.ofctl("--json", "list-ports", "br0"))["ports"]
        states = {p["name"]: p["vhost"]["state"] for p in ports if "vhost" in p}
        assert states == {pair.names[0]: "ready", pair.names[1]: "ready"}


def test_client_port_waits_and_says_why(daemon, tmp_path):
    path = tmp_path / "nobody.sock"
    daemon.ofctl("add-port", "br0", "vhlone", "type=dpdkvhostuserclient",
                 f"options:vhost-server-path={path}")
    try:
        time.sleep(0.3)
        info = vhost(daemon, "vhlone")
        assert info["state"] == "waiting"
        assert info["last_error"] == f"cannot connect to {path}: No such file or directory"
    finally:
        daemon.ofctl("del-port", "vhlone")


def test_bad_port_options_are_refused(daemon):
    r = daemon.ofctl_run("add-port", "br0", "vhbad", "type=dpdkvhostuserclient")
    assert r.returncode != 0 and "needs options:vhost-server-path=PATH" in r.stderr
    r = daemon.ofctl_run("add-port", "br0", "vhbad", "type=dpdkvhostuser",
                         "options:vhost-sock-mode=rw")
    assert r.returncode != 0 and "vhost-sock-mode='rw'" in r.stderr
    assert "vhbad" not in daemon.ofctl("list-ports", "br0").split()


@pytest.mark.skipif(N.unavailable_reason() is not None,
                    reason=N.unavailable_reason() or "")
def test_vhost_to_veth_and_back(daemon, tmp_path):
    """Frames between a vhost port and a system port, both ways, counted at
    the kernel interface and at testpmd."""
    with N.netns() as ns, N.veth(ns) as link:
        daemon.ofctl("add-port", "br0", link.outer, "ofport_request=20")
        daemon.ofctl("add-port", "br0", "vhv", "type=dpdkvhostuser", "ofport_request=21")
        daemon.ofctl("add-flow", "br0", "in_port=21,actions=output:20")
        daemon.ofctl("add-flow", "br0", "in_port=20,actions=output:21")
        pmd = Testpmd([Testpmd.virtio_user(daemon.rundir / "vhv", server=False)],
                      workdir=tmp_path, eal_args=TESTPMD_EAL)
        try:
            pmd.start()
            wait_state(daemon, "vhv", "ready")
            pmd.wait_link_up(0)
            stats = f"/sys/class/net/{link.inner}/statistics/rx_packets"
            before = int(ns.run("cat", stats).stdout)
            assert pmd.send_exact(500) == 500
            deadline = time.monotonic() + 10
            while int(ns.run("cat", stats).stdout) - before < 500 and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.3)
            assert int(ns.run("cat", stats).stdout) - before == 500
            frame = bytes.fromhex("020000000001" "020000000002" "0800") + bytes(50)
            start = received(pmd)
            # testpmd polls while frames come (a guest that does not read its
            # ring gets 256 of them, the ring's size, and the rest are dropped).
            # In rounds of 100: its forwarding lcore may take a moment to start
            # polling after `start` returns, and ovsd fills the ring faster.
            pmd.set_fwd("rxonly")
            pmd.start_fwd()
            with link.inner_socket() as s:
                for _ in range(3):
                    time.sleep(0.1)
                    for _ in range(100):
                        s.send(frame)
            time.sleep(0.3)
            pmd.stop_fwd()
            assert receive_all(pmd, start, {0: 300}) == {0: 300}
        finally:
            pmd.close()
            daemon.ofctl("del-port", "vhv")
            daemon.ofctl("del-port", link.outer)
            daemon.ofctl("del-flows", "br0")


def forwards_exactly(d: Daemon, pmd: Testpmd, names) -> None:
    """Both ports ready and testpmd's links up; 200 frames sent, 100 from each
    testpmd port, arrive 100 at each, through ovsd's cross-connecting flows."""
    for name in names:
        wait_state(d, name, "ready")
    for port in (0, 1):
        pmd.wait_link_up(port)
    start = received(pmd)
    assert pmd.send_exact(200) == 200
    assert receive_all(pmd, start, {0: 100, 1: 100}) == {0: 100, 1: 100}


def test_restarted_ovsd_reconnects_to_a_running_testpmd(tmp_path):
    """testpmd keeps running in server mode while ovsd stops and starts again
    on the same rundir: the ports reconnect by themselves and traffic resumes,
    with nothing done on the testpmd side."""
    run = tmp_path / "run"
    d = Daemon(run).start()
    pmd = None
    try:
        d.ofctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={PMD_CORE_MASK}")
        d.ofctl("add-br", "br0")
        vdevs = []
        for n, name in enumerate(("vr0", "vr1"), start=1):
            path = tmp_path / f"{name}.sock"
            d.ofctl("add-port", "br0", name, "type=dpdkvhostuserclient",
                    f"options:vhost-server-path={path}", f"ofport_request={n}")
            vdevs.append(Testpmd.virtio_user(path, server=True))
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        d.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
        pmd = Testpmd(vdevs, workdir=tmp_path, eal_args=TESTPMD_EAL)
        pmd.launch()
        pmd.wait_ready()
        forwards_exactly(d, pmd, ("vr0", "vr1"))
        os.kill(d.proc.pid, signal.SIGKILL)  # no goodbye to the frontend
        d.proc.wait()
        d.stop()
        d = Daemon(run).start()
        wait_serving(d)  # the killed one left its socket file behind
        forwards_exactly(d, pmd, ("vr0", "vr1"))
    finally:
        if pmd is not None:
            pmd.close()
        d.stop()


def _launch_and_kill(pmd: Testpmd, delay: float) -> None:
    """Start ``pmd`` and SIGKILL it ``delay`` seconds after its process exists,
    wherever its start-up is then (EAL init, vhost-user negotiation, rings,
    the prompt)."""
    failure: list[BaseException] = []

    def launch() -> None:
        try:
            pmd.launch()
        except TestpmdError as e:   # it died before the prompt: expected
            failure.append(e)

    t = threading.Thread(target=launch, name="testpmd-launch", daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while pmd.spawned_pid is None:
        assert time.monotonic() < deadline, "testpmd was never spawned"
        time.sleep(0.01)
    time.sleep(delay)
    try:
        os.kill(pmd.spawned_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    t.join(60)
    assert not t.is_alive(), "testpmd's launch did not return after its process died"
    pmd.close()   # cleans up hugepage files when launch got as far as the prompt


def test_testpmd_killed_mid_traffic_and_while_starting(daemon, tmp_path):
    """kill -9 of a real frontend: while bursts circulate (descriptors in flight
    on every ring), then at moments spread over its start-up.  Each time both
    ports go back to waiting, and a testpmd started afterwards gets every frame
    through, counted exactly."""
    d = daemon
    names = ("vk0", "vk1")
    for n, name in enumerate(names, start=20):
        d.ofctl("add-port", "br0", name, "type=dpdkvhostuser", f"ofport_request={n}")
    d.ofctl("add-flow", "br0", "in_port=20,actions=output:21")
    d.ofctl("add-flow", "br0", "in_port=21,actions=output:20")
    vdevs = [Testpmd.virtio_user(d.rundir / name, server=False) for name in names]
    try:
        with Testpmd(vdevs, workdir=tmp_path, eal_args=TESTPMD_EAL) as pmd:
            for name in names:
                wait_state(d, name, "ready")
            for port in (0, 1):
                pmd.wait_link_up(port)
            pmd.set_fwd("io")
            pmd.start_fwd(tx_first=8)
            time.sleep(1.5)   # counters reach ofctl within a second
            assert vhost(d, "vk0")["stats"]["rx_packets"] > 0
            os.kill(pmd.pid, signal.SIGKILL)
            huge = pmd.used_hugepages
        for name in names:
            wait_state(d, name, "waiting")
        for delay in (0.03, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0):
            _launch_and_kill(Testpmd(vdevs, workdir=tmp_path, eal_args=TESTPMD_EAL,
                                     hugepages=huge), delay)
            for name in names:
                wait_state(d, name, "waiting")
        with Testpmd(vdevs, workdir=tmp_path, eal_args=TESTPMD_EAL) as pmd:
            forwards_exactly(d, pmd, names)
    finally:
        for name in names:
            d.ofctl("--if-exists", "del-port", name)
        d.ofctl("del-flows", "br0", "in_port=20")
        d.ofctl("del-flows", "br0", "in_port=21")
