"""vhost-user ports with QEMU guests: a real Linux virtio-net driver on ovsd.

Each guest is a tiny TCG Linux (tests/interop/guest.py) whose NIC is a
vhost-user netdev on an ovsd port, in both socket directions:
``dpdkvhostuser`` (ovsd listens on RUNDIR/<port>, QEMU connects as client) and
``dpdkvhostuserclient`` (QEMU listens with server=on,wait=off, ovsd connects).
Guests ping and move TCP through ``actions=NORMAL``, reach a namespace behind
a system (veth) port, and keep running while ovsd is killed with SIGKILL and
started again on the same rundir: the port comes back by itself, the
guest's ping replies resume, its rings keep working past a wrap, and a TCP
stream cut by the kill completes intact, with nothing done on the QEMU side.

ovsd's PMD polls on core 1; QEMU's TCG vCPU threads take what is left.
Every process (ovsd, its PMDs, QEMU) is ended by PID.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

import pytest

from tests.daemon import Daemon
from tests.e2e.conftest import Daemons
from tests.integration import netns as N
from tests.interop.guest import (
    QEMU, Guest, GuestImage, build_guest, parse_ping, parse_ping_loop, parse_tcp,
    ping_cmd, ping_loop_cmd, tcp_recv_cmd, tcp_send_cmd)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which(QEMU) is None,
                       reason=f"{QEMU} is not installed (Debian package qemu-system-x86)"),
]

NETNS_REASON = N.unavailable_reason()
needs_netns = pytest.mark.skipif(NETNS_REASON is not None, reason=NETNS_REASON or "")

PMD_CORE_MASK = "0x2"   # ovsd's PMD on core 1
GUEST_BOOT = 60.0       # seconds; a TCG guest is ready in 2-6 s here, more under load
MIB = 1 << 20
SNDBUF = 128 * 1024    # the kernel doubles it
MAC_A, MAC_B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


# -- fixtures and helpers -------------------------------------------------------------

@pytest.fixture(scope="module")
def image() -> GuestImage:
    return build_guest()


def configure(d: Daemon) -> None:
    """br0 forwarding with NORMAL (MAC learning), PMD on core 1."""
    d.ofctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={PMD_CORE_MASK}")
    d.ofctl("add-br", "br0")
    d.ofctl("del-flows", "br0")
    d.ofctl("add-flow", "br0", "actions=NORMAL")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("vhq")) as d:
        configure(d)
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
                                 + d.ofctl("vhost-show", port) + ovsd_log_tail(d))
        time.sleep(0.1)


def ovsd_log_tail(d: Daemon, lines: int = 30) -> str:
    text = ""
    for name in ("ovsd.log", "stderr.log"):
        path = d.rundir / name
        if path.exists():
            text += f"\n--- last lines of {path} ---\n" + "\n".join(
                path.read_text(errors="replace").splitlines()[-lines:])
    return text


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (ovsd's PMD processes)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except FileNotFoundError:
        pass
    return kids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_stat(d: Daemon, port: str, name: str, least: int, timeout: float = 5.0) -> int:
    """The port's counter ``name`` once it reaches ``least`` (PMDs publish
    their counters about once a second), or its value at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = vhost(d, port)["stats"][name]
        if value >= least or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def kill9(d: Daemon, timeout: float = 10.0) -> list[int]:
    """SIGKILL ovsd's control process (no goodbye to any frontend) and wait
    for its PMD processes to notice and exit; returns the PMDs still running
    (killed by PID here, so nothing leaks, but a test should fail on them)."""
    assert d.proc is not None
    pmds = children(d.proc.pid)
    assert pmds, "ovsd has no PMD process (pmd-cpu-mask set, a port polled)"
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d.stop()
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pmds) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pmds if alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    return survivors


@contextmanager
def namespace_host(d: Daemon, ip: str, ofport: int) -> Iterator[N.Veth]:
    """A namespace with ``ip`` on a veth whose outer end is a system port of br0."""
    with N.netns() as ns, N.veth(ns) as link:
        ns.run("ip", "addr", "add", ip, "dev", link.inner)
        d.ofctl("add-port", "br0", link.outer, f"ofport_request={ofport}")
        try:
            yield link
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.ofctl("--if-exists", "del-port", link.outer)


def ping_outcome(events: list[tuple[int, bool, float]]) -> str:
    """ping_loop's replies as a string: o = reply, x = lost."""
    return "".join("o" if ok else "x" for _, ok, _ in events)


def wait_pings_ok(g: Guest, after: int, n: int, timeout: float) -> None:
    """Wait until ping_loop got ``n`` replies in a row after its first
    ``after`` pings."""
    deadline = time.monotonic() + timeout
    while True:
        events = parse_ping_loop(g.console())
        if "o" * n in ping_outcome(events[after:]):
            return
        if time.monotonic() > deadline or not g.alive():
            raise AssertionError(f"no {n} ping replies in a row after ping #{after} within "
                                 f"{timeout:g} s: {ping_outcome(events)}\n{g.tail()}")
        time.sleep(0.1)


def flood_ping(link: N.Veth, ip: str, count: int) -> str:
    """The namespace floods ``ip`` with ``count`` echo requests, each sent when
    the previous reply came (or after 10 ms): more frames than a ring holds
    (256), so both rings of the guest wrap.  Returns ping's summary."""
    proc = link.ns.run("ping", "-f", "-q", "-c", str(count), "-W", "1", ip,
                       check=False, timeout=60)
    return proc.stdout + proc.stderr


# -- two guests on one bridge ---------------------------------------------------------

def test_two_guests_ping_and_move_1mib_through_normal(daemon, image, tmp_path):
    """Guests A and B on two dpdkvhostuser ports (QEMU connects): A pings B,
    sends B 1 MiB of TCP, and B pings A back; the stream arrives intact."""
    d = daemon
    for name, n in (("vqa", 1), ("vqb", 2)):
        d.ofctl("add-port", "br0", name, "type=dpdkvhostuser", f"ofport_request={n}")
    try:
        t0 = time.monotonic()
        with Guest(image, d.rundir / "vqb", workdir=tmp_path, name="b", mac=MAC_B,
                   ip="10.0.0.2/24", hold=True,
                   command=tcp_recv_cmd(5001, 60) + " && " + ping_cmd("10.0.0.1", 3)) as b:
            assert b.wait_ready(GUEST_BOOT)["carrier"] == "1", b.tail()
            with Guest(image, d.rundir / "vqa", workdir=tmp_path, name="a", mac=MAC_A,
                       ip="10.0.0.1/24", hold=True,
                       command=ping_cmd("10.0.0.2", 3) + " && "
                       + tcp_send_cmd("10.0.0.2", 5001, MIB)) as a:
                assert a.wait_command(GUEST_BOOT + 60) == 0, a.tail()
                assert b.wait_command(60) == 0, b.tail()
                elapsed = time.monotonic() - t0
                assert parse_ping(a.console()) == (3, 3)
                assert parse_ping(b.console()) == (3, 3)
                sent = parse_tcp(a.console(), "TCP-SEND")
                assert sent[0] == MIB
                assert parse_tcp(b.console(), "TCP-RECV") == sent
                info = {name: vhost(d, name) for name in ("vqa", "vqb")}
        for name, i in info.items():
            assert i["state"] == "ready" and i["last_error"] in (None, ""), i
        # the stream crossed in ~1500-byte frames (or larger, with offloads)
        assert info["vqa"]["stats"]["rx_bytes"] > MIB
        assert info["vqb"]["stats"]["tx_bytes"] > MIB
        print(f"two guests: boot + ping + 1 MiB + ping back in {elapsed:.1f} s")
    finally:
        for name in ("vqa", "vqb"):
            d.ofctl("--if-exists", "del-port", name)


# -- a guest and a namespace ----------------------------------------------------------

@needs_netns
def test_guest_reaches_namespace_behind_system_port(daemon, image, tmp_path):
    """A guest on a dpdkvhostuser port pings a namespace behind a veth system
    port, and the namespace pings the guest back."""
    d = daemon
    d.ofctl("add-port", "br0", "vqn", "type=dpdkvhostuser", "ofport_request=3")
    try:
        with namespace_host(d, "10.0.1.2/24", 4) as link, \
                Guest(image, d.rundir / "vqn", workdir=tmp_path, name="n", mac=MAC_A,
                      ip="10.0.1.1/24", hold=True, command=ping_cmd("10.0.1.2", 3)) as g:
            assert g.wait_command(GUEST_BOOT + 30) == 0, g.tail()
            assert parse_ping(g.console()) == (3, 3)
            back = link.ns.run("ping", "-c", "3", "-i", "0.2", "-W", "3", "10.0.1.1",
                               check=False, timeout=20)
            assert " 3 received" in back.stdout, back.stdout + back.stderr
    finally:
        d.ofctl("--if-exists", "del-port", "vqn")


# -- kill -9 and restart of ovsd under a running guest ---------------------------------

def _ping_through_restart(ds: Daemons, d: Daemon, g: Guest, port: str, peer: N.Veth,
                          guest_ip: str) -> Daemon:
    """With ``g`` ping-looping a peer through ``port``: kill -9 ovsd, start it
    again on the same rundir, and check that the replies resume by themselves
    and that the rings still work past a wrap.  Returns the new daemon."""
    wait_pings_ok(g, 0, 3, GUEST_BOOT)
    qemu_pid = g.pid
    before = len(parse_ping_loop(g.console()))
    survivors = kill9(d)
    assert survivors == [], f"ovsd's PMD processes {survivors} outlived the killed ovsd"
    time.sleep(1.5)   # long enough for a few pings to go unanswered
    assert g.alive() and g.pid == qemu_pid, "QEMU did not survive the back-end's death\n" \
        + g.tail()
    down = len(parse_ping_loop(g.console()))
    t0 = time.monotonic()
    # the same rundir: its database brings the ports back (Daemons.start also
    # waits until ovsd accepts, as the killed one left its RPC socket file)
    d = ds.start(d.rundir)
    wait_state(d, port, "ready")
    ready = time.monotonic() - t0
    wait_pings_ok(g, down + 1, 3, 30)   # the ping in flight at the restart may be lost
    resumed = time.monotonic() - t0
    outcome = ping_outcome(parse_ping_loop(g.console()))
    assert "x" in outcome[before:down + 1], f"pings answered while ovsd was dead: {outcome}"
    summary = flood_ping(peer, guest_ip, 600)
    assert "600 packets transmitted, 600 received" in summary, summary
    assert g.alive() and g.pid == qemu_pid
    assert vhost(d, port)["state"] == "ready", d.ofctl("vhost-show", port)
    for name in ("rx_packets", "tx_packets"):
        assert wait_stat(d, port, name, 600) >= 600, d.ofctl("vhost-show", port)
    print(f"{port}: ready {ready:.1f} s, 3 replies {resumed:.1f} s after the restart: "
          f"{outcome}")
    return d


def server_mode_guest(stack: ExitStack, ds: Daemons, image: GuestImage, tmp_path,
                      subnet: str, command: str) -> tuple[Daemon, Guest, N.Veth]:
    """ovsd with a namespace at ``subnet``.2 on a system port, and a QEMU
    guest at ``subnet``.1 listening (server=on,wait=off) for ovsd's
    dpdkvhostuserclient port "vqs".  QEMU starts first: it creates the socket,
    then waits for its first back-end connection before running the guest."""
    sock = tmp_path / "qs.sock"
    d = ds.start(tmp_path / "run")
    configure(d)
    peer = stack.enter_context(namespace_host(d, f"{subnet}.2/24", 2))
    g = stack.enter_context(Guest(image, sock, workdir=tmp_path, name="qs", mode="server",
                                  mac=MAC_A, ip=f"{subnet}.1/24", hold=True, command=command))
    deadline = time.monotonic() + 30
    while not sock.is_socket():
        assert g.alive() and time.monotonic() < deadline, g.tail()
        time.sleep(0.05)
    d.ofctl("add-port", "br0", "vqs", "type=dpdkvhostuserclient",
            f"options:vhost-server-path={sock}", "ofport_request=1")
    wait_state(d, "vqs", "ready")
    return d, g, peer


@needs_netns
def test_qemu_server_survives_ovsd_kill9_and_port_reconnects(image, tmp_path):
    """dpdkvhostuserclient: QEMU listens, ovsd connects.  ovsd is killed with
    SIGKILL and started again on the same rundir; it reconnects to the
    still-running QEMU by itself and the guest's pings are answered again."""
    ds = Daemons(tmp_path)
    with ExitStack() as stack:
        stack.callback(ds.stop_all)
        d, g, peer = server_mode_guest(stack, ds, image, tmp_path, "10.0.2",
                                       ping_loop_cmd("10.0.2.2", 120, 250))
        d = _ping_through_restart(ds, d, g, "vqs", peer, "10.0.2.1")
        assert vhost(d, "vqs")["connections"] == 1


@needs_netns
def test_tcp_stream_survives_ovsd_kill9_midway(image, tmp_path):
    """ovsd dies with descriptors in flight on both rings of a guest receiving
    8 MiB of TCP (QEMU server mode); once restarted, it resumes the rings where
    QEMU says they stand, and the stream completes intact (TCP retransmits
    what was lost)."""
    size = 8 * MIB
    ds = Daemons(tmp_path)
    with ExitStack() as stack:
        stack.callback(ds.stop_all)
        d, g, peer = server_mode_guest(stack, ds, image, tmp_path, "10.0.4",
                                       tcp_recv_cmd(5001, 90))
        g.wait_for("GUEST-CMD-BEGIN", GUEST_BOOT)
        data = os.urandom(size)
        deadline = time.monotonic() + 10
        while True:
            # nc may not listen yet: a refused, reset or aborted attempt leaves
            # the socket unusable, so each attempt gets a fresh one
            sender = peer.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
            # A small send buffer ties what the guest has taken to what the
            # sender has handed over (within SNDBUF), so the kill below lands
            # early in the stream however fast this machine moves it.
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
            sender.settimeout(60)
            try:
                sender.connect(("10.0.4.1", 5001))
                break
            except (ConnectionError, socket.timeout):
                sender.close()
                assert time.monotonic() < deadline, g.tail()
                time.sleep(0.2)
        failure: list[BaseException] = []
        quarter = threading.Event()

        def send() -> None:
            try:
                view, chunk = memoryview(data), 64 * 1024
                for off in range(0, size, chunk):
                    if off >= size // 4:
                        quarter.set()
                    sender.sendall(view[off:off + chunk])
                sender.shutdown(socket.SHUT_WR)
            except OSError as e:
                failure.append(e)
            quarter.set()

        thread = threading.Thread(target=send, name="tcp-sender", daemon=True)
        thread.start()
        assert quarter.wait(30) and not failure, f"the stream did not start: {failure}"
        survivors = kill9(d)   # the sender keeps sending: both rings are busy
        assert survivors == [], f"ovsd's PMD processes {survivors} outlived the killed ovsd"
        time.sleep(1.0)
        d = ds.start(d.rundir)
        wait_state(d, "vqs", "ready")
        thread.join(60)
        assert not thread.is_alive() and not failure, failure
        line = g.wait_for("TCP-RECV", 60)
        assert parse_tcp(line, "TCP-RECV") == (size, hashlib.md5(data).hexdigest())
        # The new ovsd carried the rest: at least 8 MiB - 2 MiB - SNDBUF
        # (counters lag up to 1 s).
        carried = wait_stat(d, "vqs", "tx_bytes", 4 * MIB)
        assert carried >= 4 * MIB, carried
        print(f"kill9 midway: the restarted ovsd carried {carried / MIB:.1f} MiB")


@needs_netns
def test_qemu_client_reconnects_to_restarted_ovsd(image, tmp_path):
    """dpdkvhostuser: ovsd listens, QEMU connects with reconnect=1.  ovsd is
    killed with SIGKILL (its socket file stays behind) and started again on the
    same rundir: it listens at the same path again and QEMU reconnects."""
    ds = Daemons(tmp_path)
    with ExitStack() as stack:
        stack.callback(ds.stop_all)
        d = ds.start(tmp_path / "run")
        configure(d)
        peer = stack.enter_context(namespace_host(d, "10.0.3.2/24", 2))
        d.ofctl("add-port", "br0", "vqc", "type=dpdkvhostuser", "ofport_request=1")
        sock = d.rundir / "vqc"
        g = stack.enter_context(Guest(
            image, sock, workdir=tmp_path, name="qc", reconnect=1, mac=MAC_A,
            ip="10.0.3.1/24", hold=True, command=ping_loop_cmd("10.0.3.2", 120, 250)))
        wait_state(d, "vqc", "ready")
        d = _ping_through_restart(ds, d, g, "vqc", peer, "10.0.3.1")
        assert sock.is_socket()
        assert vhost(d, "vqc")["socket"] == str(sock)
