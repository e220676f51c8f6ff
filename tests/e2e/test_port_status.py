"""`ofctl port-status` against the real daemon: each port type in the state
the diagnosis is about, made for real (sockets nobody listens on, a process
that may not connect, veths in a namespace whose peer goes down, then
away).  Needs root and network namespaces, which this machine has: the
tests fail rather than skip without them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration import netns as N


def status(d, port: str) -> dict:
    return json.loads(d.ofctl("--json", "port-status", port))


def wait_for(d, port: str, pred, timeout: float = 10.0) -> dict:
    """port-status until ``pred`` holds (the daemon notices some changes a
    second or so later); fails with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        r = status(d, port)
        if pred(r):
            return r
        assert time.monotonic() < deadline, r["text"]
        time.sleep(0.2)


@pytest.fixture
def open_rundir():
    """A rundir other users can reach (pytest's own tmp base is 0700, which
    would be the diagnosis instead of the socket's permissions)."""
    path = Path(tempfile.mkdtemp(prefix="ovsd-ps-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_dummy_port_and_a_missing_one(daemon):
    daemon.ofctl("add-br", "br0")
    daemon.ofctl("add-port", "br0", "p1", "type=dummy", "ofport_request=1")
    r = status(daemon, "p1")
    assert r["forwarding"] is True and r["do"] is None
    assert (r["port"], r["type"], r["bridge"], r["ofport"]) == ("p1", "dummy", "br0", 1)
    assert set(r) == {"port", "type", "bridge", "ofport", "forwarding", "why", "do",
                      "facts", "text"}
    text = daemon.ofctl("port-status", "p1")
    assert text.splitlines()[0] == "p1 (dummy) on bridge br0, OpenFlow port 1: forwarding"
    assert text.splitlines()[1].startswith("why: ")
    proc = daemon.ofctl_run("port-status", "nope")
    assert proc.returncode == 1 and "no port named nope" in proc.stderr


def test_vhost_server_nobody_connected_then_a_frontend_without_permission(daemons,
                                                                           open_rundir):
    d = daemons.start(open_rundir)
    d.ofctl("add-br", "br0")
    d.ofctl("add-port", "br0", "vhu0", "type=dpdkvhostuser")
    sock = str(open_rundir / "vhu0")
    r = status(d, "vhu0")
    assert r["forwarding"] is False
    assert f"waiting for QEMU or a DPDK application to connect to {sock}" in r["why"]
    assert f"-chardev socket,id=char0,path={sock}" in r["do"]
    assert r["facts"]["vhost"]["socket_file"]["mode"] == "0660"
    assert "NOT forwarding" in d.ofctl("port-status", "vhu0").splitlines()[0]

    # A "QEMU" running as nobody that names the socket: the socket is 0660
    # root:root, so it cannot connect, and port-status says which option fixes it.
    fe = subprocess.Popen(["sh", "-c", "sleep 30; true", "sh", f"path={sock},reconnect=1"],
                          user="nobody", group="nogroup")
    try:
        r = wait_for(d, "vhu0", lambda r: "may not connect" in r["why"])
        assert f"(pid {fe.pid}, user nobody)" in r["why"]
        assert "options:vhost-sock-owner=nobody" in r["do"]
        d.ofctl("set", "Interface", "vhu0", "options:vhost-sock-owner=nobody")
        r = wait_for(d, "vhu0", lambda r: "may connect to it" in r["why"])
        assert r["facts"]["vhost"]["socket_file"]["user"] == "nobody"
        assert r["forwarding"] is False
    finally:
        fe.kill()
        fe.wait()


def test_vhost_client_nothing_listening_then_a_stale_socket(daemon, tmp_path):
    daemon.ofctl("add-br", "br0")
    missing = tmp_path / "nothing-here"
    daemon.ofctl("add-port", "br0", "vhc0", "type=dpdkvhostuserclient",
                 f"options:vhost-server-path={missing}")
    r = wait_for(daemon, "vhc0", lambda r: r["facts"]["vhost"]["connect_error"] is not None)
    assert r["facts"]["vhost"]["connect_error"]["name"] == "ENOENT"
    assert r["forwarding"] is False
    assert f"nothing listens at {missing}: the file does not exist" in r["why"]
    assert "server=on" in r["do"]

    # A socket file nobody listens on (a frontend died and left it): ECONNREFUSED.
    stale = tmp_path / "stale"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(stale))
        daemon.ofctl("add-port", "br0", "vhc1", "type=dpdkvhostuserclient",
                     f"options:vhost-server-path={stale}")
        r = wait_for(daemon, "vhc1",
                     lambda r: r["facts"]["vhost"]["connect_error"] is not None)
        assert r["facts"]["vhost"]["connect_error"]["name"] == "ECONNREFUSED"
        assert "exists but nobody listens on it" in r["why"]
    finally:
        s.close()


@pytest.fixture
def links(daemon):
    assert N.unavailable_reason() is None, N.unavailable_reason()
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2:
        daemon.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        daemon.ofctl("add-br", "brs")
        yield daemon, ns, l1, l2


def test_system_port_forwarding_then_peer_down_then_deleted(links):
    d, ns, l1, _ = links
    d.ofctl("add-port", "brs", l1.outer, "ofport_request=1")
    r = status(d, l1.outer)
    assert r["forwarding"] is True, r["text"]
    f = r["facts"]
    assert f["link"]["kind"] == "veth" and f["link"]["peer"]["netns"] == ns.name
    assert f["system"]["n_rxq"] == 1 and f["system"]["rx_ring_blocks"] == 64
    assert "rx 64 blocks x 65536 bytes" in r["text"]

    ns.run("ip", "link", "set", l1.inner, "down")
    r = wait_for(d, l1.outer, lambda r: not r["forwarding"])
    assert f"its peer {l1.inner} in network namespace {ns.name} is down" in r["why"]
    assert r["do"] == f"`ip netns exec {ns.name} ip link set {l1.inner} up`"

    ns.run("ip", "link", "set", l1.inner, "up")
    wait_for(d, l1.outer, lambda r: r["forwarding"])
    l1.set_up(False)
    r = wait_for(d, l1.outer, lambda r: "administratively down" in r["why"])
    assert r["do"] == f"`ip link set {l1.outer} up`"

    subprocess.run(["ip", "link", "del", l1.outer], check=True, timeout=10)
    # Once the switch noticed (within a second), the port's error says so.
    r = wait_for(d, l1.outer, lambda r: not r["facts"]["opened"])
    assert r["forwarding"] is False
    assert f"no network interface {l1.outer}" in r["why"]
    assert f"ofctl del-port {l1.outer}" in r["do"] and "ip link add" in r["do"]


def test_afxdp_port_shows_its_mode_and_why_not_zerocopy(links):
    d, _, _, l2 = links
    d.ofctl("add-port", "brs", l2.outer, "type=afxdp", "ofport_request=2")
    r = status(d, l2.outer)
    assert r["forwarding"] is True, r["text"]
    x = r["facts"]["afxdp"]
    assert (x["xdp_mode"], x["requested"], x["n_rxq"]) == ("native", "best-effort", 1)
    assert [m for m, _ in x["refused"]] == ["native-with-zerocopy"]
    assert "XDP mode native (requested best-effort)" in r["why"]
    assert "xdp-mode:   native (requested best-effort)" in r["text"]
    assert "refused:    native-with-zerocopy: " in r["text"]
