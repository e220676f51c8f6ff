"""afxdp ports in ovsd with real traffic: veths whose outer ends are afxdp (or
system) ports, PMD-polled, frames sent and counted at the far ends in
namespaces.  Then the program's lifecycle: gone after del-port, after
SIGTERM, and after kill -9 at the next start; never replacing someone
else's program."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.daemon import Daemon, OfctlError
from tests.integration import netns as N
from tests.integration.traffic import recv_frames

pytestmark = pytest.mark.skipif(N.unavailable_reason() is not None,
                                reason=N.unavailable_reason() or "")

COUNT = 300


def xdp_attached(ifname: str) -> str:
    """What `ip -d link show` says about XDP on ``ifname`` ("" when nothing)."""
    out = subprocess.run(["ip", "-d", "link", "show", "dev", ifname], capture_output=True,
                         text=True, timeout=10).stdout
    return " ".join(line.strip() for line in out.splitlines()
                    if "xdp" in line.split(" ", 1)[0] or "prog/xdp" in line)


def frames(tag: bytes, n: int = COUNT, src: str = "02:aa:00:00:00:01",
           dst: str = "02:bb:00:00:00:02") -> list[bytes]:
    return [bytes(Ether(src=src, dst=dst) / IP(src="10.88.0.1", dst="10.88.0.2") /
                  UDP(sport=1000 + i % 50, dport=2000) / (tag + i.to_bytes(4, "big")))
            for i in range(n)]


def send_and_collect(src, sink, batch: list[bytes], seconds: float = 3.0) -> list[bytes]:
    """Send ``batch`` from ``src`` (paced, so no kernel queue overflows), and
    return the frames carrying the batch's tag that reach ``sink`` (and
    duplicates arriving right after)."""
    tag = batch[0][42:-4]
    for i, f in enumerate(batch):
        src.send(f)
        if i % 32 == 31:
            time.sleep(0.002)
    got = recv_frames(sink, len(batch), timeout=seconds, grace=0.3)
    return [f for f in got if f[42:-4] == tag]


def wait_ready(d: Daemon, port: str, timeout: float = 10.0) -> None:
    """Until a PMD polls the port's queues (pmd-rxq-show lists it)."""
    deadline = time.monotonic() + timeout
    while port not in d.ofctl("pmd-rxq-show"):
        assert time.monotonic() < deadline, d.ofctl("pmd-rxq-show")
        time.sleep(0.05)
    time.sleep(0.2)


@pytest.fixture
def two_links(tmp_path):
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2, \
            Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "brx")
        yield d, l1, l2


def forward_both_ways(d: Daemon, l1, l2) -> None:
    d.ofctl("del-flows", "brx")
    d.ofctl("add-flow", "brx", "in_port=1,actions=output:2")
    d.ofctl("add-flow", "brx", "in_port=2,actions=output:1")
    for src, sink, tag in ((l1, l2, b"one->two"), (l2, l1, b"two->one")):
        batch = frames(tag)
        got = send_and_collect(src.inner_socket(), sink.inner_socket(), batch)
        assert len(got) == len(batch), f"{tag}: {len(got)} of {len(batch)} arrived"
        assert sorted(got) == sorted(batch)


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_afxdp_and_system_port_both_ways(two_links, mode):
    d, l1, l2 = two_links
    d.ofctl("add-port", "brx", l1.outer, "type=afxdp", f"options:xdp-mode={mode}",
            "ofport_request=1")
    d.ofctl("add-port", "brx", l2.outer, "ofport_request=2")
    wait_ready(d, l1.outer)
    assert xdp_attached(l1.outer), "no XDP program on the afxdp port's interface"
    forward_both_ways(d, l1, l2)
    show = d.ofctl("show", "brx")
    assert f"xdp-mode:   {mode} (requested {mode})" in show
    # The PMD's counts reach the port's counters.
    deadline = time.monotonic() + 5
    while f"rx pkts={COUNT}" not in show or f"tx pkts={COUNT}" not in show:
        assert time.monotonic() < deadline, show
        time.sleep(0.3)
        show = d.ofctl("show", "brx")


def test_two_afxdp_ports(two_links):
    d, l1, l2 = two_links
    for n, link in enumerate((l1, l2), 1):
        d.ofctl("add-port", "brx", link.outer, "type=afxdp", "options:xdp-mode=native",
                f"ofport_request={n}")
        wait_ready(d, link.outer)
    forward_both_ways(d, l1, l2)


def test_best_effort_takes_native_on_a_veth_and_says_why_not_zerocopy(two_links):
    d, l1, _ = two_links
    d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "ofport_request=1")
    assert "xdp-mode:   native (requested best-effort)" in d.ofctl("show", "brx")
    status = d.ofctl("get", "Interface", l1.outer, "status")
    assert "xdp-modes-refused" in status and "native-with-zerocopy" in status


def test_several_rx_queues(tmp_path):
    with N.netns() as ns, N.veth(ns, queues=2) as l1, N.veth(ns) as l2, \
            Daemon(tmp_path / "run") as d:
        d.ofctl("add-br", "brx")
        d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "options:n_rxq=2",
                "options:xdp-mode=native", "ofport_request=1")
        d.ofctl("add-port", "brx", l2.outer, "ofport_request=2")
        rxqs = d.ofctl("pmd-rxq-show")
        assert f"port: {l1.outer}" in rxqs and "queue-id:  1" in rxqs, rxqs
        forward_both_ways(d, l1, l2)


def test_del_port_and_sigterm_leave_no_program(two_links):
    d, l1, l2 = two_links
    d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "options:xdp-mode=generic",
            "ofport_request=1")
    d.ofctl("add-port", "brx", l2.outer, "type=afxdp", "options:xdp-mode=native",
            "ofport_request=2")
    assert xdp_attached(l1.outer) and xdp_attached(l2.outer)
    d.ofctl("del-port", "brx", l1.outer)
    assert xdp_attached(l1.outer) == ""
    assert d.stop() == 0
    assert xdp_attached(l2.outer) == ""


def test_program_left_by_a_crash_is_removed_at_the_next_start(tmp_path):
    from ovsd.netdev.afxdp import bpf
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2:
        d = Daemon(tmp_path / "run").start()
        try:
            d.ofctl("add-br", "brx")
            d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "options:xdp-mode=native",
                    "ofport_request=1")
            d.ofctl("add-port", "brx", l2.outer, "ofport_request=2")
            ifindex = int(open(f"/sys/class/net/{l1.outer}/ifindex").read())
            before = bpf.attached(ifindex)
            assert len(before) == 1
        finally:
            d.kill()
        # The program outlives the daemon (the link holds it) ...
        assert bpf.attached(ifindex) == before
        with Daemon(tmp_path / "run") as d:
            # ... and the next start takes it off and attaches its own.
            after = bpf.attached(ifindex)
            assert len(after) == 1 and after[0][1] != before[0][1]
            assert "previous run left" in (d.rundir / "ovsd.log").read_text()
            wait_ready(d, l1.outer)
            forward_both_ways_flows(d)
            batch = frames(b"after-crash")
            got = send_and_collect(l1.inner_socket(), l2.inner_socket(), batch)
            assert len(got) == len(batch)
        assert xdp_attached(l1.outer) == ""


def forward_both_ways_flows(d: Daemon) -> None:
    d.ofctl("del-flows", "brx")
    d.ofctl("add-flow", "brx", "in_port=1,actions=output:2")
    d.ofctl("add-flow", "brx", "in_port=2,actions=output:1")


def test_someone_elses_program_is_never_replaced(two_links):
    from ovsd.netdev.afxdp import bpf
    d, l1, _ = two_links
    ifindex = int(open(f"/sys/class/net/{l1.outer}/ifindex").read())
    theirs = bpf.XskProgram.load(1)
    try:
        bpf.attach(ifindex, theirs.prog_fd, "generic")
        with pytest.raises(OfctlError) as e:
            d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "ofport_request=1")
        assert "already attached" in e.value.args[0] and f"ip link set dev {l1.outer}" \
            in e.value.args[0]
        assert bpf.attached(ifindex) == [("generic", theirs.prog_id)]
    finally:
        bpf.detach(ifindex, "generic")
        theirs.close()


@pytest.mark.parametrize("options, expected", [
    (["options:xdp-mode=fast"], "options:xdp-mode='fast': expected one of best-effort"),
    (["options:n_rxq=3"], "has 1 rx queue; use n_rxq=1 or fewer"),
    (["options:use-need-wakeup=maybe"], "expected true or false"),
    (["options:xdp-mode=native-with-zerocopy"], "options:xdp-mode=best-effort"),
])
def test_bad_options_say_what_to_do_and_leave_nothing(two_links, options, expected):
    d, l1, _ = two_links
    with pytest.raises(OfctlError) as e:
        d.ofctl("add-port", "brx", l1.outer, "type=afxdp", *options)
    assert expected in e.value.args[0]
    assert xdp_attached(l1.outer) == ""
    assert os.listdir(d.rundir / "afxdp") == [] if (d.rundir / "afxdp").exists() else True


def test_pmd_killed_under_an_afxdp_port_comes_back_and_forwards(two_links):
    import json
    d, l1, l2 = two_links
    d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "ofport_request=1")
    d.ofctl("add-port", "brx", l2.outer, "type=afxdp", "ofport_request=2")
    wait_ready(d, l1.outer)
    wait_ready(d, l2.outer)
    forward_both_ways(d, l1, l2)

    def pmd() -> dict:
        return next(p for p in json.loads(d.ofctl("--json", "pmd-stats-show"))["pmds"]
                    if p["pmd_id"] is not None)

    before = pmd()
    os.kill(before["pid"], 9)
    deadline = time.monotonic() + 20
    while not ((now := pmd())["alive"] and now["restarts"] == before["restarts"] + 1):
        assert time.monotonic() < deadline, "the PMD was not restarted"
        time.sleep(0.2)
    wait_ready(d, l1.outer)
    # The rings live on in shared memory: the new PMD continues where the
    # killed one stopped (at most a burst of receive frames is lost to it).
    forward_both_ways(d, l1, l2)


def test_two_pmds_share_each_ports_transmit_socket(two_links):
    """Two PMDs, one queue per port: each PMD polls one port and transmits on
    the other, whose one socket both PMDs may use (so they lock around it)."""
    d, l1, l2 = two_links
    d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3")
    for n, link in enumerate((l1, l2), 1):
        d.ofctl("add-port", "brx", link.outer, "type=afxdp", f"ofport_request={n}")
        wait_ready(d, link.outer)
    rxqs = d.ofctl("pmd-rxq-show")
    assert rxqs.count("pmd thread") == 2, rxqs
    forward_both_ways(d, l1, l2)


def test_interface_deleted_under_an_afxdp_port_and_back(two_links):
    """The port goes down with its interface while the other port keeps its
    program; an interface of that name coming back gets the port (and a new
    program) again."""
    d, l1, l2 = two_links
    d.ofctl("add-port", "brx", l1.outer, "type=afxdp", "options:xdp-mode=native",
            "ofport_request=1")
    d.ofctl("add-port", "brx", l2.outer, "type=afxdp", "options:xdp-mode=native",
            "ofport_request=2")
    name = l1.outer
    ifindex = int(open(f"/sys/class/net/{name}/ifindex").read())
    assert (d.rundir / "afxdp" / f"{ifindex}.json").exists()
    subprocess.run(["ip", "link", "del", name], check=True, timeout=10)
    deadline = time.monotonic() + 10
    while "disappeared" not in d.ofctl("show", "brx"):
        assert time.monotonic() < deadline, "the port did not go down"
        time.sleep(0.2)
    assert xdp_attached(l2.outer), "the other port lost its program"
    assert not (d.rundir / "afxdp" / f"{ifindex}.json").exists()  # nothing left to undo
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
                   check=True, timeout=10)
    try:
        for dev in (name, f"{name}p"):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True, timeout=10)
        deadline = time.monotonic() + 10
        while "xdp-mode:   native" not in d.ofctl("show", "brx").split(name, 1)[1] \
                .split(" 2(", 1)[0]:
            assert time.monotonic() < deadline, d.ofctl("show", "brx")
            time.sleep(0.2)
        assert xdp_attached(name)
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)
