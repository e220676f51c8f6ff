"""Port type ``system`` over AF_PACKET rings, with real traffic on veth pairs.

The switch side of each veth (``link.outer``) stays in this process's network
namespace; the other end (``link.inner``) is in a test namespace, where a raw
AF_PACKET socket sends and receives whole frames.  Frames use a local
experimental EtherType (or, where the kernel must hash flows, IPv4/UDP to a
MAC that is not the host's), so no network stack answers or forwards them and
the counts are exact.
"""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from ovsd.netdev.base import NetdevError
from ovsd.netdev.afpacket.device import SystemNetdev
from ovsd.netdev.afpacket.ring import IFF_PROMISC, RxRing, TxRing
from ovsd.netdev.afpacket.rx import RxQueue
from ovsd.netdev.afpacket.tx import TxQueue
from tests.integration.traffic import collect, recv_frames
from tests.integration.netns import netns, sweep_stale, unavailable_reason, veth

ROOT = Path(__file__).resolve().parents[2]
REASON = unavailable_reason()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"needs namespaces: {REASON}")

SRC = bytes.fromhex("02aa00000001")
DST = bytes.fromhex("02bb00000002")  # nobody's: the host stacks drop these frames
EXPERIMENTAL = 0x88B5


# -- helpers ---------------------------------------------------------------------------

def frame(seq: int, size: int, ethertype: int = EXPERIMENTAL) -> bytes:
    body = seq.to_bytes(4, "big") + random.Random(seq).randbytes(size - 18)
    return DST + SRC + ethertype.to_bytes(2, "big") + body


def udp_frame(sport: int, dport: int, seq: int) -> bytes:
    payload = seq.to_bytes(4, "big") + bytes(14)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return DST + SRC + b"\x08\x00" + ip + udp


def promisc(ifname: str) -> bool:
    with open(f"/sys/class/net/{ifname}/flags") as f:
        return bool(int(f.read(), 16) & IFF_PROMISC)


def run_child(body, timeout: float = 10.0):
    """Fork; the child runs ``body(conn)`` and exits (killed by SIGALRM after
    ``timeout``).  Returns (parent end of the socketpair, wait function)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            parent.close()
            signal.alarm(int(timeout))
            body(child)
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    child.close()

    def wait() -> int:
        deadline = time.monotonic() + timeout + 2
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("child process did not finish in time")
    return parent, wait


def send_msg(sock: socket.socket, obj) -> None:
    data = msgpack.packb(obj)
    sock.sendall(len(data).to_bytes(4, "big") + data)


def recv_msg(sock: socket.socket, timeout: float = 10.0):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise EOFError("peer closed before a whole message")
        buf += chunk
    return msgpack.unpackb(buf[4:4 + int.from_bytes(buf[:4], "big")])


# -- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ns():
    if REASON is not None:
        pytest.skip(f"needs namespaces: {REASON}")
    sweep_stale()
    with netns() as n:
        yield n


@pytest.fixture
def link(ns):
    with veth(ns) as pair:
        yield pair


@pytest.fixture
def port():
    """Opens SystemNetdevs and closes them all at the end of the test."""
    opened = []

    def open_port(name: str, **options: str) -> SystemNetdev:
        dev = SystemNetdev(name, options)
        opened.append(dev)
        return dev
    yield open_port
    for dev in opened:
        dev.close()


# -- errors a user can cause (no namespaces needed) ------------------------------------

def test_nonexistent_interface_is_a_clear_error():
    with pytest.raises(NetdevError) as e:
        SystemNetdev("ovtnosuchif0", {})
    msg = str(e.value)
    assert "ovtnosuchif0" in msg and "no network interface" in msg and "ip link" in msg


@pytest.mark.parametrize("options, words", [
    ({"n_rxq": "0"}, "options:n_rxq='0': expected an integer from 1 to 64"),
    ({"n_rxq": "two"}, "options:n_rxq='two'"),
    ({"rx_ring_blocks": "1"}, "options:rx_ring_blocks='1'"),
    ({"rx_block_size": "12288"}, "rx_block_size=12288: expected a power of two"),
    ({"rx_block_size": "100"}, "options:rx_block_size='100'"),
    ({"tx_ring_frames": "8"}, "options:tx_ring_frames='8'"),
    ({"rx_ring_blocks": "65536", "rx_block_size": "65536"}, "at most 1024 MiB"),
])
def test_bad_ring_options_are_clear_errors(options, words):
    with pytest.raises(NetdevError, match=words.replace("(", r"\(").replace(")", r"\)")):
        SystemNetdev("lo", options)


def test_invalid_interface_names_and_non_ethernet_interfaces():
    with pytest.raises(NetdevError, match="not a valid interface name"):
        SystemNetdev("a" * 16, {})
    with pytest.raises(NetdevError, match="not an Ethernet interface"):
        SystemNetdev("lo", {})


def test_ring_geometry():
    assert RxRing(65536, 64).max_frame == 65536 - 130
    tx = TxRing.for_mtu(1500, 1024)
    assert tx.frame_size == 2048 and tx.max_frame == 2006 and tx.size == 2 << 20
    assert TxRing.for_mtu(9000, 64).frame_size == 16384
    with pytest.raises(NetdevError, match="multiple of 2"):
        TxRing(2048, 17)


# -- receive ---------------------------------------------------------------------------

@needs_netns
def test_rx_burst_returns_exactly_the_frames_sent_in_order(link, port):
    # Small blocks, so that 600 frames span dozens of them and bursts cross
    # block ends at every phase.
    dev = port(link.outer, rx_block_size="8192", rx_ring_blocks="256")
    sizes = [60, 1514, 1500, 61, 64, 128, 999, 60]
    frames = [frame(i, sizes[i % len(sizes)]) for i in range(600)]
    sender = link.inner_socket()
    for f in frames:
        sender.send(f)
    got = collect(lambda: dev.rx_burst(0, 7), len(frames))
    assert len(got) == len(frames)
    assert got == frames
    assert all(type(f) is bytes for f in got)
    stats = dev.stats
    assert stats.rx_packets == 600 and stats.rx_bytes == sum(map(len, frames))
    assert stats.rx_dropped == 0


@needs_netns
def test_one_burst_takes_frames_from_every_block_handed_over(link, port):
    # Light traffic: each frame lands in a block of its own (the kernel hands
    # a block over 1 ms after opening it).  One burst must return them all,
    # or a PMD that polls the queue less often than once a millisecond
    # falls behind until the ring overflows.
    dev = port(link.outer)
    sender = link.inner_socket()
    frames = [frame(i, 60) for i in range(12)]
    for f in frames:
        sender.send(f)
        time.sleep(0.004)
    time.sleep(0.05)
    assert dev.rx_burst(0, 32) == frames
    assert dev.rx_burst(0, 32) == []
    assert dev.stats.rx_packets == 12


@needs_netns
def test_vlan_tags_the_kernel_takes_out_are_put_back(link, port):
    dev = port(link.outer)
    tagged = DST + SRC + b"\x81\x00\x20\x64" + frame(1, 60)[12:]
    priority_tagged = DST + SRC + b"\x81\x00\xa0\x00" + frame(2, 60)[12:]
    qinq = DST + SRC + b"\x88\xa8\x00\x0a\x81\x00\x00\x14" + frame(3, 1500)[12:]
    untagged = frame(4, 60)
    sender = link.inner_socket()
    for f in (tagged, priority_tagged, qinq, untagged):
        sender.send(f)
    assert collect(lambda: dev.rx_burst(0), 4) == [tagged, priority_tagged, qinq, untagged]


@needs_netns
def test_frames_longer_than_a_block_are_dropped_and_counted(ns, port):
    with veth(ns, mtu=9000) as link:
        dev = port(link.outer, rx_block_size="4096")
        assert dev.rx_ring.max_frame == 4096 - 130
        sender = link.inner_socket()
        small, big, fits = frame(1, 60), frame(2, 5000), frame(3, 4096 - 130)
        for f in (small, big, fits):
            sender.send(f)
        assert collect(lambda: dev.rx_burst(0), 2) == [small, fits]
        assert dev.stats.rx_dropped == 1


@needs_netns
def test_ring_full_drops_are_counted_and_the_ring_recovers(link, port):
    dev = port(link.outer, rx_block_size="4096", rx_ring_blocks="2")
    sender = link.inner_socket()
    frames = [frame(i, 1000) for i in range(40)]  # 3 per 4 KiB block: 6 fit
    for f in frames:
        sender.send(f)
    got = collect(lambda: dev.rx_burst(0), len(frames), timeout=0.3)
    assert got == frames[:len(got)] and 0 < len(got) < len(frames)
    assert dev.stats.rx_dropped == len(frames) - len(got)
    later = [frame(100 + i, 60) for i in range(5)]
    for f in later:
        sender.send(f)
    assert collect(lambda: dev.rx_burst(0), 5) == later


@needs_netns
def test_own_transmissions_are_not_received(link, port):
    dev = port(link.outer)
    peer = link.inner_socket()
    out = [frame(i, 60) for i in range(20)]
    assert dev.tx_burst(0, out) == 20
    assert recv_frames(peer, 20) == out
    assert collect(lambda: dev.rx_burst(0), 0) == []  # watched for GRACE
    back = frame(99, 60)
    peer.send(back)
    assert collect(lambda: dev.rx_burst(0), 1) == [back]


@needs_netns
def test_fanout_spreads_flows_and_delivers_every_frame_once(link, port):
    dev = port(link.outer, n_rxq="2")
    assert dev.n_rxq == 2 and len(set(dev.rxq_fds())) == 2
    flows = [(1000 + i, 2000 + 3 * i) for i in range(64)]
    frames = [udp_frame(s, d, seq) for seq in range(8) for s, d in flows]
    sender = link.inner_socket()
    for f in frames:
        sender.send(f)
    per_queue: list[list] = [[], []]
    deadline = time.monotonic() + 3
    while sum(map(len, per_queue)) < len(frames) and time.monotonic() < deadline:
        for qid in (0, 1):
            per_queue[qid] += dev.rx_burst(qid, 64)
    for qid in (0, 1):
        per_queue[qid] += collect(lambda: dev.rx_burst(qid, 64), 0)  # nothing more
    assert sorted(per_queue[0] + per_queue[1]) == sorted(frames)  # each exactly once
    assert per_queue[0] and per_queue[1]  # spread
    for q in per_queue:  # a flow stays on one queue, in order
        flows_here = {f[34:38] for f in q}
        for flow in flows_here:
            mine = [f for f in frames if f[34:38] == flow]
            assert [f for f in q if f[34:38] == flow] == mine
    assert not {f[34:38] for f in per_queue[0]} & {f[34:38] for f in per_queue[1]}


@needs_netns
def test_handover_mid_block_to_another_process_loses_nothing(link, port):
    dev = port(link.outer, rx_block_size="8192", rx_ring_blocks="64")
    sender = link.inner_socket()
    first = [frame(i, 200) for i in range(100)]  # ~30 per block
    for f in first:
        sender.send(f)
    got = []
    while len(got) < 45:
        got += dev.rx_burst(0, 5)
    # Stop inside a block.  Where blocks end depends on the kernel's retire
    # timer too (a loaded machine closes them early, with fewer frames), so
    # 45 frames can end exactly on a block boundary: one more frame then.
    deadline = time.monotonic() + 3
    while dev._rxqs[0].position[1] == 0 and len(got) < 90:
        got += dev.rx_burst(0, 1)
        assert time.monotonic() < deadline
    where = dev.detach_rxq(0)
    assert where["block"] >= 1 and where["skip"] > 0  # stopped inside a block
    fd = dev.rxq_fds()[0]
    second = [frame(1000 + i, 200) for i in range(100)]

    def child(conn):
        q = RxQueue(fd, block=where["block"], skip=where["skip"])  # geometry from the kernel
        assert q.ring == dev.rx_ring
        send_msg(conn, "ready")
        send_msg(conn, collect(q.rx_burst, 200 - len(got)))
    conn, wait = run_child(child)
    assert recv_msg(conn) == "ready"
    for f in second:
        sender.send(f)
    rest = recv_msg(conn)
    assert wait() == 0
    assert got + rest == first + second


@needs_netns
def test_a_detached_queue_is_not_read_here_until_attached_again(link, port):
    dev = port(link.outer, rx_block_size="4096")
    sender = link.inner_socket()
    frames = [frame(i, 500) for i in range(20)]  # 6 per block
    for f in frames[:10]:
        sender.send(f)
    got = collect(lambda: dev.rx_burst(0, 4), 10)
    where = dev.detach_rxq(0)
    with pytest.raises(NetdevError, match="detach_rxq"):
        dev.rx_burst(0)
    other = RxQueue(dev.rxq_fds()[0], **where)  # the queue's new owner
    for f in frames[10:]:
        sender.send(f)
    part: list = []
    deadline = time.monotonic() + 3
    while len(part) < 5 and time.monotonic() < deadline:
        part += other.rx_burst(5 - len(part))  # never more than 5
    got += part
    block, skip = other.position
    other.close()
    dev.attach_rxq(0, block, skip)
    got += collect(lambda: dev.rx_burst(0), 5)
    assert got == frames
    with pytest.raises(NetdevError, match="not detached"):
        dev.attach_rxq(0)
    with pytest.raises(NetdevError, match="no rx queue 1"):
        dev.detach_rxq(1)


@needs_netns
def test_a_reader_that_died_is_replaced_without_knowing_its_position(link, port):
    dev = port(link.outer, rx_block_size="4096", rx_ring_blocks="8")
    fd = dev.rxq_fds()[0]
    sender = link.inner_socket()
    frames = [frame(i, 480) for i in range(70)]  # 7 per block: 10 blocks, the ring wraps
    got = []
    dead = RxQueue(fd, ring=dev.rx_ring)
    for i in range(0, 70, 7):
        for f in frames[i:i + 7]:
            sender.send(f)
        if i < 35:
            got += collect(dead.rx_burst, 7)
    # (Usually block 5; on a loaded machine the kernel's 1 ms block timeout
    # can close a block early, so the numbers are read rather than assumed.)
    where = dead.position
    assert where[1] == 0  # between blocks: every block it opened was given back
    dead.close()  # its position is lost with it
    heir = RxQueue(fd, ring=dev.rx_ring)
    assert heir.position == where  # the oldest block handed over and not given back
    got += collect(heir.rx_burst, 35)
    assert got == frames
    # Idle ring: every block given back; a new reader waits at the open block.
    stop = heir.position
    heir.close()
    idle = RxQueue(fd, ring=dev.rx_ring)
    assert idle.position == stop
    sender.send(frame(999, 60))
    assert collect(idle.rx_burst, 1) == [frame(999, 60)]


@needs_netns
def test_handover_between_two_queue_objects_at_every_position(link, port):
    dev = port(link.outer, rx_block_size="4096", rx_ring_blocks="64")
    fd = dev.rxq_fds()[0]
    sender = link.inner_socket()
    frames = [frame(i, 100 + i % 300) for i in range(300)]
    for f in frames:
        sender.send(f)
    got, q = [], RxQueue(fd, ring=dev.rx_ring)
    deadline = time.monotonic() + 3
    while len(got) < len(frames) and time.monotonic() < deadline:
        got += q.rx_burst(3)
        block, skip = q.position
        q.close()
        q = RxQueue(fd, block, skip, ring=dev.rx_ring.as_dict())
    q.close()
    assert got == frames


@needs_netns
def test_rx_fd_passed_with_scm_rights_to_a_forked_child(link, port):
    dev = port(link.outer)
    frames = [frame(i, 60 + i) for i in range(50)]

    inherited = dev.rxq_fds()[0]

    def child(conn):
        os.close(inherited)  # fork copied it: use only what SCM_RIGHTS brings
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 1)
        info = msgpack.unpackb(msg)
        with RxQueue(fds[0], close_fd=True, **info) as q:
            send_msg(conn, "ready")
            assert select.select([q], [], [], 5)[0] == [q]  # readable once a block is in
            got = collect(q.rx_burst, len(frames))
            assert q.packets == len(got)
            send_msg(conn, got)
    conn, wait = run_child(child)
    socket.send_fds(conn, [msgpack.packb(dev.detach_rxq(0))], [inherited])
    assert recv_msg(conn) == "ready"
    sender = link.inner_socket()
    for f in frames:
        sender.send(f)
    assert recv_msg(conn) == frames
    assert wait() == 0


def test_rx_queue_rejects_what_is_not_a_v3_rx_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        with pytest.raises(NetdevError, match="not an AF_PACKET socket"):
            RxQueue(s.fileno())
    if os.geteuid() == 0:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
            with pytest.raises(NetdevError, match="no TPACKET_V3 rx ring"):
                RxQueue(s.fileno())
    with pytest.raises(NetdevError, match="start block 9: the ring has blocks 0 to 7"):
        RxQueue(0, block=9, ring=RxRing(4096, 8))


# -- transmit --------------------------------------------------------------------------

@needs_netns
def test_tx_burst_frames_arrive_byte_identical(link, port):
    dev = port(link.outer, tx_ring_frames="16")
    peer = link.inner_socket()
    sizes = [60, 1514, 1500, 100, 61]
    frames = [frame(i, sizes[i % len(sizes)]) for i in range(100)]
    # Bursts of 7 through a 16-slot ring: every slot is reused several times
    # before the peer reads anything.
    sent = sum(dev.tx_burst(0, frames[i:i + 7]) for i in range(0, len(frames), 7))
    assert sent == 100
    assert recv_frames(peer, 100) == frames
    assert dev.txq.sent == 100 and dev.txq.dropped == 0
    stats = dev.stats
    assert stats.tx_packets == 100 and stats.tx_bytes == sum(map(len, frames))


@needs_netns
def test_tx_drops_frames_the_interface_cannot_carry(link, port):
    dev = port(link.outer)
    peer_dev = link.ns.call(lambda: SystemNetdev(link.inner, {}))  # puts VLAN tags back
    try:
        ok = [frame(1, 1514), DST + SRC + b"\x81\x00\x00\x05" + frame(2, 1514)[12:],
              frame(3, 60)[:14]]
        bad = [frame(4, 1515), DST + SRC + b"\x81\x00\x00\x05" + frame(5, 1515)[12:],
               frame(6, 60)[:13], b""]
        assert dev.tx_burst(0, [bad[0], ok[0], bad[1], ok[1], bad[2], ok[2], bad[3]]) == 3
        assert dev.txq.dropped_size == 4
        assert collect(lambda: peer_dev.rx_burst(0), 3) == ok
    finally:
        peer_dev.close()


@needs_netns
def test_a_full_tx_ring_counts_drops_instead_of_blocking(link, port):
    dev = port(link.outer, tx_ring_frames="16")
    # A slow qdisc holds the frames (all but the first, which its bucket lets
    # through), so their slots stay in flight.
    subprocess.run(["tc", "qdisc", "add", "dev", link.outer, "root", "tbf", "rate", "8kbit",
                    "burst", "1600", "limit", "1000000"], check=True, timeout=10)
    frames = [frame(i, 1000) for i in range(64)]
    start = time.monotonic()
    first = dev.tx_burst(0, frames[:40])
    second = dev.tx_burst(0, frames[40:])
    assert time.monotonic() - start < 0.5
    assert first == 16  # the ring's size: the other 24 found no free slot
    assert second < 24 // 2
    assert dev.txq.dropped_full == 64 - first - second
    assert dev.txq.in_flight() >= 16 - 2
    subprocess.run(["tc", "qdisc", "del", "dev", link.outer, "root"], check=True, timeout=10)
    deadline = time.monotonic() + 3
    while dev.txq.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dev.txq.in_flight() == 0
    peer = link.inner_socket()
    again = [frame(100 + i, 60) for i in range(16)]
    assert dev.tx_burst(0, again) == 16
    assert recv_frames(peer, 16) == again


@needs_netns
def test_frames_a_full_send_buffer_left_in_the_ring_go_out_with_flush(link, port):
    dev = port(link.outer)
    q = dev.txq
    # Room for only a few frames in flight, and a qdisc slow enough to hold them.
    q._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    subprocess.run(["tc", "qdisc", "add", "dev", link.outer, "root", "tbf", "rate", "2mbit",
                    "burst", "1600", "limit", "1000000"], check=True, timeout=10)
    peer = link.inner_socket()
    frames = [frame(i, 1000) for i in range(12)]
    assert q.tx_burst(frames) == 12
    assert q.unsent and q.in_flight() >= 10  # the bucket lets the first one through
    deadline = time.monotonic() + 5
    while q.unsent and time.monotonic() < deadline:
        time.sleep(0.005)
        q.flush()
    assert not q.unsent
    assert recv_frames(peer, 12) == frames


@needs_netns
def test_tx_on_a_down_link_drops_without_leaving_stale_frames(link, port):
    dev = port(link.outer)
    peer = link.inner_socket()
    link.set_up(False)
    assert not dev.link_up
    assert dev.tx_burst(0, [frame(i, 60) for i in range(10)]) == 0
    assert dev.txq.dropped_down == 10
    link.set_up(True)
    fresh = [frame(100 + i, 60) for i in range(10)]
    assert dev.tx_burst(0, fresh) == 10
    assert recv_frames(peer, 10) == fresh  # nothing from while it was down
    deadline = time.monotonic() + 3
    while not dev.link_up and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dev.link_up


@needs_netns
def test_tx_queue_built_from_tx_info_like_a_pmd(link, port):
    dev = port(link.outer)
    info = dev.tx_info()
    assert info == {"ifindex": socket.if_nametoindex(link.outer), "name": link.outer,
                    "mtu": 1500, "tx_ring_frames": 1024}
    assert msgpack.unpackb(msgpack.packb(info)) == info
    peer = link.inner_socket()
    with TxQueue.from_info(info) as q:
        assert q.tx_burst([frame(1, 60), frame(2, 60)]) == 2
    assert recv_frames(peer, 2) == [frame(1, 60), frame(2, 60)]
    with pytest.raises(NetdevError, match="no network interface has ifindex"):
        TxQueue(10 ** 6)


# -- the port as a whole ---------------------------------------------------------------

@needs_netns
def test_facts_status_and_counters(link, port):
    dev = port(link.outer)
    assert dev.type == "system" and dev.pmd_polled and dev.link_up
    assert dev.mac == link.outer_mac
    status = dev.status()
    assert status["driver_name"] == "veth"
    assert status["ifindex"] == str(socket.if_nametoindex(link.outer))
    assert status["mtu"] == "1500" and status["n_rxq"] == "1"
    sender = link.inner_socket()
    for i in range(5):
        sender.send(frame(i, 100))
    assert len(collect(lambda: dev.rx_burst(0), 5)) == 5
    # The datapath adds the drops it counts to the object; they stick.
    dev.stats.tx_dropped += 3
    stats = dev.stats
    assert (stats.rx_packets, stats.rx_bytes, stats.tx_dropped) == (5, 500, 3)
    assert dev.stats.tx_dropped == 3


@needs_netns
def test_closing_releases_promiscuous_mode(link, port):
    assert not promisc(link.outer)
    one = port(link.outer, n_rxq="2")
    two = port(link.outer)
    assert promisc(link.outer)
    one.close()
    assert promisc(link.outer)  # the other port still holds it
    two.close()
    assert not promisc(link.outer)


@needs_netns
def test_reconfigure_replaces_the_rx_sockets(link, port):
    dev = port(link.outer)
    epoch = dev.rxq_epoch
    dev.reconfigure({"n_rxq": "3", "rx_block_size": "16384"})
    assert dev.n_rxq == 3 and dev.rxq_epoch == epoch + 1
    assert dev.rx_ring == RxRing(16384, 64)
    with pytest.raises(NetdevError, match="n_rxq"):
        dev.reconfigure({"n_rxq": "100"})
    assert dev.n_rxq == 3 and dev.rxq_epoch == epoch + 1  # unchanged
    sender = link.inner_socket()
    frames = [udp_frame(5000 + i, 53, i) for i in range(30)]
    for f in frames:
        sender.send(f)
    got = []
    deadline = time.monotonic() + 3
    while len(got) < 30 and time.monotonic() < deadline:
        for qid in range(3):
            got += dev.rx_burst(qid, 32)
    assert sorted(got) == sorted(frames)


@needs_netns
def test_deleting_the_interface_under_an_open_port(link, port):
    dev = port(link.outer)
    sender = link.inner_socket()
    sender.send(frame(1, 60))
    assert collect(lambda: dev.rx_burst(0), 1) == [frame(1, 60)]
    dev.tx_burst(0, [frame(2, 60)])
    before, mac = dev.stats, dev.mac
    subprocess.run(["ip", "link", "del", link.outer], check=True, timeout=10)
    assert not dev.link_up
    for _ in range(1000):
        assert dev.rx_burst(0) == []
    assert dev.tx_burst(0, [frame(3, 60)] * 5) == 0
    assert dev.txq.dropped_down == 5
    assert dev.stats.rx_packets == before.rx_packets  # last known counters
    assert "no longer exists" in dev.status()["error"]
    assert dev.mac == mac  # the last known address
    dev.close()


# -- the benchmark's bare forwarder ----------------------------------------------------

@needs_netns
def test_bare_forwarder_forwards_every_frame(ns, link):
    with veth(ns) as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.bare_forwarder", link.outer,
                                 out.outer], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 5
            while not (promisc(link.outer) and promisc(out.outer)):  # its sockets are open
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            sink = out.inner_socket()
            frames = [frame(i, 60 + i % 1400) for i in range(300)]
            sender = link.inner_socket()
            for f in frames:
                sender.send(f)
            assert recv_frames(sink, len(frames)) == frames
            proc.terminate()  # SIGTERM: it prints its count and exits
            stdout, stderr = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        assert stdout.startswith("forwarded 300 packets in ")
        assert "tx drops: 0 ring full, 0 size, 0 link down" in stdout
