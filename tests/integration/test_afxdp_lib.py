"""The AF_XDP library (bpf.py, xsk.py) against the real kernel, on veth pairs.

Our end of each veth (``link.outer``) stays in this process's namespace with
the XDP program attached; the peer (``link.inner``) is in a test namespace
where a raw AF_PACKET socket sends and receives whole frames.  Frames go to
a MAC nobody has, with an experimental EtherType, so no stack answers them
and counts are exact.  Every test runs in native and in generic mode where
both make sense.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest

from ovsd.netdev.afxdp import bpf
from ovsd.netdev.afxdp.bpf import BpfError, XskProgram
from ovsd.netdev.afxdp.xsk import XskError, XskQueue, XskSocket
from tests.integration.traffic import collect, recv_frames
from tests.integration.netns import Veth, netns, sweep_stale, unavailable_reason, veth
from tests.support.xdp_ns import xdp_state

ROOT = Path(__file__).resolve().parents[2]
REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"needs namespaces: {REASON}")

MODES = ("native", "generic")
SRC = bytes.fromhex("02aa00000001")
DST = bytes.fromhex("02bb00000002")  # nobody's
EXPERIMENTAL = 0x88B5
N = 100


def frame(seq: int, size: int = 64, tag: int = 0) -> bytes:
    body = bytes([tag]) + seq.to_bytes(4, "big") + random.Random(seq).randbytes(size - 19)
    return DST + SRC + EXPERIMENTAL.to_bytes(2, "big") + body


def send_all(q: XskQueue, frames: list, timeout: float = 3.0) -> int:
    """tx_burst until every frame was accepted (bounded); how many were."""
    done = 0
    deadline = time.monotonic() + timeout
    while done < len(frames) and time.monotonic() < deadline:
        done += q.tx_burst(frames[done:done + 32])
    return done


@dataclass
class Port:
    link: Veth
    ifindex: int
    prog: XskProgram
    mode: str

    def socket(self, queue: int = 0, **kw) -> XskSocket:
        kw.setdefault("zerocopy", False)
        kw.setdefault("need_wakeup", True)
        return XskSocket.create(self.ifindex, queue, **kw)


@pytest.fixture(scope="module", autouse=True)
def _clean_start():
    sweep_stale()


@contextlib.contextmanager
def xdp_port(mode: str, queues: int = 1):
    """A veth whose outer end has our program attached in ``mode``; detached
    and closed on exit."""
    with netns() as ns, veth(ns, queues=queues) as link:
        ifindex = socket.if_nametoindex(link.outer)
        with XskProgram.load(queues) as prog:
            bpf.attach(ifindex, prog.prog_fd, mode)
            try:
                yield Port(link, ifindex, prog, mode)
            finally:
                bpf.detach(ifindex, mode, prog.prog_id)


@pytest.fixture(params=MODES)
def port(request):
    with xdp_port(request.param) as p:
        yield p


# -- receive and transmit --------------------------------------------------------------

def test_receive_exactly_the_frames_sent(port):
    with port.socket() as xs, XskQueue(xs.fd, xs.umem_fd, xs.layout(),
                                       close_fds=False) as q:
        port.prog.set_socket(0, xs.fd)
        peer = port.link.inner_socket()
        sent = [frame(i, 60 + i) for i in range(N)]
        for f in sent:
            peer.send(f)
        got = collect(q.rx_burst, N)
        assert got == sent
        assert (q.rx_packets, q.rx_bytes) == (N, sum(map(len, sent)))
        stats = xs.statistics()
        assert stats["rx_dropped"] == stats["rx_ring_full"] == 0


def test_transmit_exactly_the_frames_given(port):
    with port.socket() as xs, XskQueue(xs.fd, xs.umem_fd, xs.layout(),
                                       close_fds=False) as q:
        peer = port.link.inner_socket()
        sent = [frame(i, 60 + 3 * i) for i in range(N)]
        assert send_all(q, sent) == N
        assert recv_frames(peer, N) == sent
        assert (q.tx_packets, q.tx_bytes) == (N, sum(map(len, sent)))


def test_oversize_and_runt_frames_are_not_sent(port):
    with port.socket() as xs, XskQueue(xs.fd, xs.umem_fd, xs.layout(),
                                       close_fds=False) as q:
        peer = port.link.inner_socket()
        good = frame(1)
        assert q.tx_burst([frame(0, 2049), good, b"\x00" * 10]) == 1
        assert (q.tx_oversize, q.tx_runt) == (1, 1)
        assert recv_frames(peer, 1) == [good]


_CHILD = r"""
import json, socket, sys, time
import msgpack
from ovsd.netdev.afxdp.xsk import XskQueue
conn = socket.socket(fileno=int(sys.argv[1]))
msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 2)
want = json.loads(msg)
q = XskQueue(fds[0], fds[1], want["layout"])
conn.sendall(b"R")
got = []
deadline = time.monotonic() + 5
while len(got) < want["n"] and time.monotonic() < deadline:
    got += q.rx_burst()
quiet = time.monotonic() + 0.05
while time.monotonic() < quiet:
    got += q.rx_burst()
q.close()
conn.sendall(msgpack.packb(got))
conn.close()
"""


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    return data


@pytest.mark.parametrize("mode", MODES)
def test_queue_mapped_in_another_process(mode):
    """The PMD's way: fds over SCM_RIGHTS to a fresh process that maps it all."""
    with xdp_port(mode) as port, port.socket() as xs:
        port.prog.set_socket(0, xs.fd)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                theirs.close()
                socket.send_fds(ours, [json.dumps({"layout": xs.layout(), "n": N}).encode()],
                                [xs.fd, xs.umem_fd])
                ours.settimeout(10)
                assert ours.recv(1) == b"R"
                peer = port.link.inner_socket()
                sent = [frame(i) for i in range(N)]
                for f in sent:
                    peer.send(f)
                got = msgpack.unpackb(_read_all(ours, 10))
                assert got == sent
                assert child.wait(10) == 0
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()


def _transmit_child(fd: int, umem_fd: int, layout: dict, tag: int, rounds: int) -> None:
    """Fork child: ``rounds`` bursts of 32 under the lock, each retried until
    accepted; exit status 0 only when every frame was accepted."""
    code = 1
    try:
        signal.alarm(20)
        q = XskQueue(fd, umem_fd, layout)
        accepted = 0
        for r in range(rounds):
            burst = [frame(r * 32 + i, 64, tag) for i in range(32)]
            done = 0
            for _ in range(1000):
                fcntl.lockf(umem_fd, fcntl.LOCK_EX, 1, 0)
                try:
                    done += q.tx_burst(burst[done:])
                finally:
                    fcntl.lockf(umem_fd, fcntl.LOCK_UN, 1, 0)
                if done == len(burst):
                    break
                time.sleep(0.0005)
            accepted += done
        q.close()
        code = 0 if accepted == rounds * 32 else 2
    finally:
        os._exit(code)


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_transmit_on_one_socket(mode):
    rounds = 30  # 2 x 30 x 32 frames: the 2048 tx frames wrap once the peer counts
    with xdp_port(mode) as port, port.socket(n_frames=256, ring_size=128) as xs:
        peer = port.link.inner_socket()
        ctx = multiprocessing.get_context("fork")
        procs = []
        for tag in (1, 2):
            fds = (os.dup(xs.fd), os.dup(xs.umem_fd))
            try:
                procs.append(ctx.Process(target=_transmit_child,
                                         args=(*fds, xs.layout(), tag, rounds)))
                procs[-1].start()
            finally:
                for fd in fds:
                    os.close(fd)
        try:
            got = recv_frames(peer, 2 * rounds * 32, timeout=10)
            for p in procs:
                p.join(15)
            assert [p.exitcode for p in procs] == [0, 0]
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        want = {frame(r * 32 + i, 64, tag) for tag in (1, 2) for r in range(rounds)
                for i in range(32)}
        assert len(got) == len(want)
        assert set(got) == want


@pytest.mark.parametrize("mode", MODES)
def test_rings_wrap_around(mode):
    """64-entry rings and 64 frames each way: 5 rounds of 50 wrap every index."""
    with xdp_port(mode) as port, port.socket(n_frames=128, ring_size=64) as xs, \
            XskQueue(xs.fd, xs.umem_fd, xs.layout(), close_fds=False) as q:
        port.prog.set_socket(0, xs.fd)
        peer = port.link.inner_socket()
        for r in range(5):
            sent = [frame(r * 50 + i) for i in range(50)]
            for f in sent:
                peer.send(f)
            assert collect(q.rx_burst, 50) == sent, f"round {r}"
            back = [frame(1000 + r * 50 + i, 80) for i in range(50)]
            assert send_all(q, back) == 50
            assert recv_frames(peer, 50) == back, f"round {r}"
        assert q.rx_packets == q.tx_packets == 250


def test_both_queues_of_a_two_queue_veth():
    with xdp_port("native", queues=2) as port, port.socket(0) as xs0, \
            port.socket(1) as xs1, \
            XskQueue(xs0.fd, xs0.umem_fd, xs0.layout(), close_fds=False) as q0, \
            XskQueue(xs1.fd, xs1.umem_fd, xs1.layout(), close_fds=False) as q1:
        port.prog.set_socket(0, xs0.fd)
        port.prog.set_socket(1, xs1.fd)
        peer = port.link.inner_socket()
        sent = []
        for i in range(N):
            # IPv4/UDP with varying ports, so the peer spreads them over its tx queues.
            udp = struct.pack("!HHHH", 1000 + i, 2000 + i, 12, 0) + i.to_bytes(4, "big")
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2]))
            sent.append(DST + SRC + b"\x08\x00" + ip + udp)
        for f in sent:
            peer.send(f)
        got = collect(lambda: q0.rx_burst() + q1.rx_burst(), N)
        assert sorted(got) == sorted(sent)


# -- the kernel stack still gets what we do not take ----------------------------------

def test_queue_without_socket_passes_to_the_stack(port):
    link, ns = port.link, port.link.ns
    subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", link.outer], check=True,
                   timeout=10)
    ns.run("ip", "addr", "add", "10.77.0.2/24", "dev", link.inner)
    ping = ns.run("ping", "-c", "1", "-W", "2", "10.77.0.1", check=False, timeout=10)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # With a socket on the queue the same traffic goes to the socket instead.
    with port.socket() as xs, XskQueue(xs.fd, xs.umem_fd, xs.layout(),
                                       close_fds=False) as q:
        port.prog.set_socket(0, xs.fd)
        ns.run("ip", "neigh", "flush", "dev", link.inner)
        ping = ns.run("ping", "-c", "1", "-W", "1", "10.77.0.1", check=False, timeout=10)
        assert ping.returncode != 0
        got = collect(q.rx_burst, 1)
        assert got and all(f[12:14] in (b"\x08\x06", b"\x08\x00") for f in got)
        port.prog.clear_socket(0)
        port.prog.clear_socket(0)  # already empty: not an error


# -- attach and detach -----------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_detach_leaves_no_program(mode):
    with netns() as ns, veth(ns) as link, XskProgram.load(1) as prog:
        ifindex = socket.if_nametoindex(link.outer)
        assert bpf.attached(ifindex) == [] and xdp_state(link.outer) == []
        bpf.attach(ifindex, prog.prog_fd, mode)
        assert bpf.attached(ifindex) == [(mode, prog.prog_id)]
        assert f"prog/xdp id {prog.prog_id}" in xdp_state(link.outer)
        assert bpf.prog_name(prog.prog_id) == "ovsd_xsk"
        other = "generic" if mode == "native" else "native"
        assert not bpf.detach(ifindex, mode, expected_prog_id=prog.prog_id + 100000)
        assert not bpf.detach(ifindex, other, expected_prog_id=prog.prog_id)
        assert bpf.attached(ifindex) == [(mode, prog.prog_id)]
        assert bpf.detach(ifindex, mode, expected_prog_id=prog.prog_id)
        assert bpf.attached(ifindex) == []
        assert xdp_state(link.outer) == []
        assert not bpf.detach(ifindex, mode, expected_prog_id=prog.prog_id)
        assert not bpf.detach(ifindex, mode)


@pytest.mark.parametrize("mode", MODES)
def test_attach_over_another_program_is_refused(mode):
    with xdp_port(mode) as port, XskProgram.load(1) as intruder:
        name = port.link.outer
        for how in MODES:
            with pytest.raises(BpfError) as info:
                bpf.attach(port.ifindex, intruder.prog_fd, how)
            assert name in str(info.value)
            assert f"ip link set dev {name} xdp off" in str(info.value)
        assert bpf.attached(port.ifindex) == [(mode, port.prog.prog_id)]


def test_verifier_log_in_the_error(monkeypatch):
    good = bpf.program
    # Drop the instruction that sets r2: the verifier refuses to read it.
    monkeypatch.setattr(bpf, "program", lambda fd: good(fd)[8:])
    with pytest.raises(BpfError) as info:
        XskProgram.load(1)
    text = str(info.value)
    assert text.startswith("BPF_PROG_LOAD: ") and "verifier log:" in text
    assert "R2 !read_ok" in text


# -- bind errors -----------------------------------------------------------------------

def test_zerocopy_on_veth_is_refused_clearly():
    # veth has no XSK buffer pool support: zero-copy must fail (if a future
    # kernel grows it, this test says so).
    with xdp_port("native") as port:
        with pytest.raises(XskError) as info:
            port.socket(zerocopy=True)
        assert "driver cannot do zero-copy: use xdp-mode=native or generic" in str(info.value)


def test_queue_beyond_the_device_and_queue_taken():
    with xdp_port("generic") as port:
        with pytest.raises(XskError) as info:
            port.socket(queue=3)
        assert f"{port.link.outer} has 1 rx queue (0 to 0)" in str(info.value)
        with port.socket(0):
            with pytest.raises(XskError) as info:
                port.socket(0)
            assert f"queue 0 of {port.link.outer} already has an XDP socket" in str(info.value)
