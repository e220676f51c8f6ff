"""The interop harness itself, proven against real DPDK back-ends.

dpdk-testpmd's net_vhost vdev is a real vhost-user back-end, so everything the
harness will do against ovsd's vhost-user ports is first shown to work here:
two testpmds move exact packet counts over virtio-user <-> vhost-user in both
socket directions and with two queue pairs, and QEMU guests boot, ping and move
1 MiB of TCP through testpmd.  The parsers are checked on output recorded from
testpmd 22.11.

Every process is ended by PID; sockets live in a short directory (unix socket
paths are limited to 107 bytes) removed after each test; logs go to tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.interop.guest import (
    Cpio, Guest, build_guest, parse_ping, parse_ping_loop, parse_tcp,
    ping_cmd, ping_loop_cmd, tcp_recv_cmd, tcp_send_cmd)
from tests.interop.hugepages import (
    HugepageError, ensure_hugepages, free_hugepages, hugetlbfs_mounted, reserved_hugepages)
from tests.interop.testpmd import (
    Testpmd, TestpmdError, parse_fwd_stats, parse_port_info, parse_port_stats, sweep_stale)

pytestmark = pytest.mark.interop


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (hugepages, /var/run/dpdk)"
    for tool, pkg in (("dpdk-testpmd", "dpdk-dev"), ("qemu-system-x86_64", "qemu-system-x86"),
                      ("stdbuf", "coreutils")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package {pkg})"
    return None


REASON = _unavailable()
needs_interop = pytest.mark.skipif(REASON is not None, reason=f"interop: {REASON}")

N = 1000                   # frames per direction in the exact-count tests
GUEST_BOOT = 90.0          # seconds; a TCG guest is ready in 5-6 s here, slower under load
MIB = 1 << 20


# -- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hugepages():
    if REASON is not None:
        pytest.skip(REASON)
    sweep_stale()
    try:
        ensure_hugepages(512)
    except HugepageError:
        pass  # testpmd falls back to --no-huge
    yield


@pytest.fixture
def sockdir():
    d = Path(tempfile.mkdtemp(prefix="ovsdi-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def image():
    if REASON is not None:
        pytest.skip(REASON)
    return build_guest()


def _rx_packets(tp: Testpmd, port: int = 0) -> int:
    return tp.port_stats()[port]["rx_packets"]


def _wait_rx(tp: Testpmd, want: int, port: int = 0, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while _rx_packets(tp, port) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)   # and nothing more arrives
    return _rx_packets(tp, port)


# -- parsers, on output recorded from testpmd 22.11 -------------------------------------

STOP_OUTPUT = """\
Telling cores to stop...
Waiting for lcores to finish...

  ------- Forward Stats for RX Port= 0/Queue= 0 -> TX Port= 0/Queue= 0 -------
  RX-packets: 500            TX-packets: 0              TX-dropped: 0             

  ------- Forward Stats for RX Port= 0/Queue= 1 -> TX Port= 0/Queue= 1 -------
  RX-packets: 500            TX-packets: 0              TX-dropped: 0             

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 1000           RX-dropped: 0             RX-total: 1000
  TX-packets: 0              TX-dropped: 0             TX-total: 0
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 77             RX-dropped: 0             RX-total: 77
  TX-packets: 734            TX-dropped: 6             TX-total: 740
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 1077           RX-dropped: 0             RX-total: 1077
  TX-packets: 734            TX-dropped: 6             TX-total: 740
  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++

Done.
"""

PORT_STATS_OUTPUT = """
  ######################## NIC statistics for port 0  ########################
  RX-packets: 1000       RX-missed: 0          RX-bytes:  64000
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 3          TX-errors: 0          TX-bytes:  294

  Throughput (since last show)
  Rx-pps:          812          Rx-bps:       415872
  Tx-pps:            0          Tx-bps:            0
  ############################################################################
"""

PORT_INFO_OUTPUT = """
********************* Infos for port 0  *********************
MAC address: 56:48:4F:53:54:00
Device name: net_vhost0
Driver name: net_vhost
Devargs: iface=/tmp/tpx/v0.sock,queues=1,client=0
Link status: down
Link speed: 10 Gbps
VLAN offload: 
  strip off, filter off, extend off, qinq strip off
"""


def test_parse_stop_output_keeps_ports_apart_from_streams():
    stats = parse_fwd_stats(STOP_OUTPUT)
    assert stats == {
        0: {"rx_packets": 1000, "rx_dropped": 0, "rx_total": 1000,
            "tx_packets": 0, "tx_dropped": 0, "tx_total": 0},
        1: {"rx_packets": 77, "rx_dropped": 0, "rx_total": 77,
            "tx_packets": 734, "tx_dropped": 6, "tx_total": 740},
    }
    assert parse_fwd_stats("Packet forwarding not started\n") == {}


def test_parse_port_stats_and_info():
    assert parse_port_stats(PORT_STATS_OUTPUT) == {0: {
        "rx_packets": 1000, "rx_missed": 0, "rx_bytes": 64000, "rx_errors": 0,
        "rx_nombuf": 0, "tx_packets": 3, "tx_errors": 0, "tx_bytes": 294,
        "rx_pps": 812, "rx_bps": 415872, "tx_pps": 0, "tx_bps": 0}}
    info = parse_port_info(PORT_INFO_OUTPUT)
    assert info["MAC address"] == "56:48:4F:53:54:00"
    assert info["Link status"] == "down"
    assert info["Driver name"] == "net_vhost"


def test_vdev_arguments():
    vu = Testpmd.virtio_user("/tmp/x.sock", server=True, queues=2, mrg_rxbuf=False,
                             mac="02:00:00:00:00:01")
    assert vu.spec(3) == ("net_virtio_user3,path=/tmp/x.sock,server=1,queues=2,mrg_rxbuf=0,"
                          "in_order=0,packed_vq=0,queue_size=256,mac=02:00:00:00:00:01")
    assert vu.listens
    vh = Testpmd.vhost("/tmp/y.sock", client=True, queues=2)
    assert vh.spec(0) == "net_vhost0,iface=/tmp/y.sock,queues=2,client=1"
    assert not vh.listens
    tp = Testpmd([vh, Testpmd.vhost("/tmp/z.sock"), vu], workdir="/tmp", eth_peers={0: "02:00:00:00:00:09"})
    argv = tp.argv(use_hugepages=False)
    assert "--vdev=net_vhost0,iface=/tmp/y.sock,queues=2,client=1" in argv
    assert "--vdev=net_vhost1,iface=/tmp/z.sock,queues=1,client=0" in argv
    assert any(a.startswith("--vdev=net_virtio_user0,") for a in argv)
    assert {"--no-huge", "--rxq=2", "--txq=2", "--eth-peer=0,02:00:00:00:00:09"} <= set(argv)
    with pytest.raises(ValueError, match="107"):
        Testpmd.vhost("/tmp/" + "x" * 120)
    with pytest.raises(ValueError, match="two"):
        Testpmd([vh], workdir="/tmp", lcores="0")


def test_guest_commands_and_their_markers():
    assert ping_cmd("10.0.0.2", 3) == "ping_report 10.0.0.2 3"
    assert tcp_send_cmd("10.0.0.2", 5001, MIB) == "tcp_send 10.0.0.2 5001 1048576"
    assert tcp_recv_cmd(5001, 30) == "tcp_recv 5001 30"
    assert ping_loop_cmd("10.0.0.9", 8, 200) == "ping_loop 10.0.0.9 8 200"
    with pytest.raises(ValueError, match="IP address"):
        ping_cmd("10.0.0.2; reboot", 1)
    console = ("PING-RESULT ip=10.0.0.2 sent=3 received=2\n"
               "TCP-RECV bytes=1048576 md5=c415ce4371b81708a8b0e1232401b70e rc=0\n"
               "PING-LOOP seq=1 ok uptime=2.78\nPING-LOOP seq=2 lost uptime=4.98\n")
    assert parse_ping(console) == (3, 2)
    assert parse_tcp(console, "TCP-RECV") == (MIB, "c415ce4371b81708a8b0e1232401b70e")
    assert parse_ping_loop(console) == [(1, True, 2.78), (2, False, 4.98)]


def test_cpio_newc_is_read_by_gnu_cpio(tmp_path):
    if shutil.which("cpio") is None:
        pytest.skip("needs cpio")
    c = Cpio()
    c.dir("bin")
    c.file("bin/hello", b"hello\n", 0o755)
    c.symlink("bin/hi", "hello")
    c.chardev("console", 5, 1)
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=c.finish(),
                             capture_output=True, timeout=10, check=True).stdout.decode()
    lines = listing.splitlines()
    assert [ln.split()[-1] for ln in lines] == ["bin", "bin/hello", "hello", "console"]
    assert lines[1].startswith("-rwxr-xr-x") and lines[2].startswith("lrwxrwxrwx")
    assert lines[3].startswith("crw-------") and "5,   1" in lines[3]


@needs_interop
def test_start_failure_names_the_cause(hugepages, sockdir, tmp_path):
    bad = Testpmd([Testpmd.vhost(sockdir / "v.sock")], workdir=tmp_path, name="bad",
                  hugepages=False, eal_args=["--vdev=net_nosuchdriver0"])
    with pytest.raises(TestpmdError, match="exited during start") as e:
        bad.start(timeout=30)
    assert "net_nosuchdriver0" in str(e.value)   # the log tail came along
    assert bad.pid is None and not list(Path("/var/run/dpdk").glob(bad.prefix))


# -- hugepages --------------------------------------------------------------------------

@needs_interop
def test_ensure_hugepages_never_lowers_and_is_idempotent(hugepages):
    before = reserved_hugepages()
    try:
        ensure_hugepages(0)
        ensure_hugepages(min(before, 512))
    except HugepageError as e:
        pytest.skip(f"hugepages unavailable here: {e}")
    assert reserved_hugepages() >= before
    assert hugetlbfs_mounted()
    assert 0 <= free_hugepages() <= reserved_hugepages()
    with pytest.raises(ValueError):
        ensure_hugepages(-1)


# -- testpmd <-> testpmd: exact counts ---------------------------------------------------

def _pair(sockdir: Path, tmp_path: Path, backend_listens: bool, queues: int,
          hugepages: bool | None = None):
    """(vhost testpmd, virtio-user testpmd), both at the prompt with link up."""
    sock = sockdir / "vu.sock"
    vhost = Testpmd([Testpmd.vhost(sock, client=not backend_listens, queues=queues)],
                    workdir=tmp_path, name="vhost", hugepages=hugepages)
    virtio = Testpmd([Testpmd.virtio_user(sock, server=not backend_listens, queues=queues)],
                     workdir=tmp_path, name="virtio", hugepages=hugepages)
    first, second = (vhost, virtio) if backend_listens else (virtio, vhost)
    try:
        first.launch()
        second.start()
        first.wait_ready()
        vhost.wait_link_up(0)
        virtio.wait_link_up(0)
    except BaseException:
        second.close()
        first.close()
        raise
    return vhost, virtio


@needs_interop
@pytest.mark.parametrize("backend_listens,queues,huge", [
    (True, 1, None), (False, 1, None), (True, 2, None), (False, 2, None), (False, 1, False)],
    ids=["vhost-listens-q1", "virtio-listens-q1", "vhost-listens-q2", "virtio-listens-q2",
         "virtio-listens-q1-nohuge"])
def test_exact_counts_both_ways(hugepages, sockdir, tmp_path, backend_listens, queues, huge):
    """B sends exactly N, A counts exactly N, then the reverse; in both socket
    directions, with one and two queue pairs, and without hugepages (the
    fallback when they are short: --no-huge memory is memfd-backed, which
    virtio-user can share)."""
    vhost, virtio = _pair(sockdir, tmp_path, backend_listens, queues, huge)
    with vhost, virtio:
        if huge is False:
            assert vhost.used_hugepages is False and virtio.used_hugepages is False
        assert vhost.fwd_streams() == virtio.fwd_streams() == queues
        for sender, receiver in ((virtio, vhost), (vhost, virtio)):
            receiver.clear_stats()
            sender.clear_stats()
            receiver.set_fwd("rxonly")
            receiver.start_fwd()
            assert sender.send_exact(N, size=64) == N
            assert _wait_rx(receiver, N) == N
            rx = receiver.port_stats()[0]
            assert (rx["rx_bytes"], rx["rx_errors"]) == (N * 64, 0)
            assert sender.port_stats()[0]["tx_packets"] == N
            assert receiver.stop_fwd()[0]["rx_packets"] == N
            if queues > 1:   # the frames really used every queue pair
                xs = receiver.xstats(0)
                assert [xs[f"rx_q{q}_good_packets"] for q in range(queues)] == [N // queues] * queues
    assert not (sockdir / "vu.sock").exists()


@needs_interop
def test_send_exact_waits_for_a_slow_receiver(hugepages, sockdir, tmp_path):
    """The receiver polls only after the sender's ring has filled: the rounds
    the ring refuses are resent, and the total is still exact."""
    vhost, virtio = _pair(sockdir, tmp_path, backend_listens=True, queues=1)
    with vhost, virtio:
        result: dict[str, object] = {}

        def send():
            try:
                result["sent"] = vhost.send_exact(3 * 256, max_burst=128, timeout=30)
            except Exception as e:   # surfaced below
                result["error"] = e

        t = threading.Thread(target=send)
        t.start()
        time.sleep(1.0)   # 256 rx buffers of virtio-user fill up meanwhile
        virtio.set_fwd("rxonly")
        virtio.start_fwd()
        t.join(40)
        assert "error" not in result, result.get("error")
        assert result["sent"] == 3 * 256
        assert _wait_rx(virtio, 3 * 256) == 3 * 256
        # the refusals happened: txonly counted them as dropped in the sender's log
        assert any(int(x) > 0 for x in re.findall(r"TX-dropped: (\d+)", vhost.transcript()))


@needs_interop
def test_txonly_and_flowgen_counts_match(hugepages, sockdir, tmp_path):
    """Free-running senders (the benchmarks' load): whatever the sender's port
    counted as transmitted, the receiver counted as received, and the rate
    columns of ``show port stats`` move."""
    vhost, virtio = _pair(sockdir, tmp_path, backend_listens=True, queues=1)
    with vhost, virtio:
        vhost.set_fwd("rxonly")
        for mode in ("txonly", "flowgen"):
            vhost.clear_stats()
            virtio.clear_stats()
            vhost.start_fwd()
            virtio.set_fwd(mode)
            virtio.start_fwd()
            vhost.port_stats()
            time.sleep(0.5)
            assert vhost.port_stats()[0]["rx_pps"] > 0
            with pytest.raises(TestpmdError, match="stop forwarding"):
                virtio.clear_stats()
            virtio.stop_fwd()
            sent = virtio.port_stats()[0]["tx_packets"]
            assert sent > 0
            assert _wait_rx(vhost, sent) == sent
            vhost.stop_fwd()


# -- QEMU guests on testpmd's vhost-user back-end ------------------------------------------

@needs_interop
def test_guest_boots_and_its_frames_cross_testpmd(hugepages, image, sockdir, tmp_path):
    """QEMU connects (client) to testpmd net_vhost in io mode (one port: every
    frame goes back where it came from): the guest's NIC comes up with
    carrier, and the three ICMP requests it sends reach testpmd and return."""
    assert set(image.modules) == {"virtio", "virtio_ring", "virtio_pci", "virtio_pci_modern_dev",
                                  "virtio_pci_legacy_dev", "virtio_net", "net_failover",
                                  "failover"}
    m = image.modules
    assert m.index("failover") < m.index("net_failover") < m.index("virtio_net")
    assert m.index("virtio_pci_modern_dev") < m.index("virtio_pci")
    sock = sockdir / "g.sock"
    with Testpmd([Testpmd.vhost(sock)], workdir=tmp_path, name="vhost") as tp:
        tp.set_fwd("io")
        tp.start_fwd()
        t0 = time.monotonic()
        with Guest(image, sock, workdir=tmp_path, mac="52:54:00:00:00:01", ip="10.0.0.1/24",
                   arp={"10.0.0.9": "02:00:00:00:00:09"},
                   command=ping_cmd("10.0.0.9", 3)) as g:
            ready = g.wait_ready(GUEST_BOOT)
            boot = time.monotonic() - t0
            assert ready["carrier"] == "1" and ready["mac"] == "52:54:00:00:00:01"
            assert tp.link_status(0) == "up"
            g.wait_for("GUEST-POWEROFF", 60)
            assert g.wait_exit(30) == 0
            stats = dict(kv.split("=") for kv in
                         g.wait_for("GUEST-STATS", 1).split()[1:])
        sent, received = parse_ping(g.console())
        assert (sent, received) == (3, 0)   # requests come back, not replies
        # static ARP, no IPv6: the three requests are all the guest sent
        assert (int(stats["tx_packets"]), int(stats["rx_packets"])) == (3, 3)
        ports = tp.stop_fwd()
        assert (ports[0]["rx_packets"], ports[0]["tx_packets"]) == (3, 3)
        print(f"guest ready {boot:.1f} s after QEMU start")


@needs_interop
def test_guest_as_server_with_two_queues_pings_testpmd_icmpecho(hugepages, image, sockdir,
                                                                 tmp_path):
    """QEMU listens (server=on,wait=off), testpmd's net_vhost connects
    (client=1) with two queue pairs and answers ARP and ICMP echo (icmpecho
    mode); the two-vCPU guest uses both pairs, then holds until closed by PID."""
    sock = sockdir / "gs.sock"
    show_queues = "echo QUEUES $(ls /sys/class/net/eth0/queues); "
    with Guest(image, sock, workdir=tmp_path, mode="server", queues=2, smp=2, hold=True,
               ip="10.0.0.1/24", command=show_queues + ping_cmd("10.0.0.9", 3)) as g:
        deadline = time.monotonic() + 30
        while not sock.is_socket():   # QEMU creates it, then waits for the back-end
            assert g.alive() and time.monotonic() < deadline, g.tail()
            time.sleep(0.05)
        with Testpmd([Testpmd.vhost(sock, client=True, queues=2)], workdir=tmp_path,
                     name="vhost") as tp:
            tp.set_fwd("icmpecho")
            tp.start_fwd()
            assert g.wait_ready(GUEST_BOOT)["carrier"] == "1"
            assert g.wait_command(60) == 0
            assert "QUEUES rx-0 rx-1 tx-0 tx-1" in g.console()
            assert parse_ping(g.console()) == (3, 3)
            g.wait_for("GUEST-HOLD", 10)
            assert g.alive()
            g.close()
            assert not g.alive()
            # ARP + 3 echo requests in, ARP reply + 3 echo replies out
            assert tp.stop_fwd()[0] == {"rx_packets": 4, "rx_dropped": 0, "rx_total": 4,
                                        "tx_packets": 4, "tx_dropped": 0, "tx_total": 4}
    assert not sock.exists()


@needs_interop
def test_two_guests_ping_and_move_1mib_through_testpmd(hugepages, image, sockdir, tmp_path):
    """Two guests on two net_vhost ports of one testpmd in io mode (port 0 <->
    port 1): they ping each other and 1 MiB of TCP arrives intact."""
    sa, sb = sockdir / "a.sock", sockdir / "b.sock"
    with Testpmd([Testpmd.vhost(sa), Testpmd.vhost(sb)], workdir=tmp_path, name="io") as tp:
        tp.set_fwd("io")
        tp.start_fwd()
        t0 = time.monotonic()
        with Guest(image, sb, workdir=tmp_path, name="b", mac="52:54:00:00:00:02",
                   ip="10.0.0.2/24", command=tcp_recv_cmd(5001, 90)) as b:
            b.wait_ready(GUEST_BOOT)
            with Guest(image, sa, workdir=tmp_path, name="a", mac="52:54:00:00:00:01",
                       ip="10.0.0.1/24", command=ping_cmd("10.0.0.2", 3) + " && "
                       + tcp_send_cmd("10.0.0.2", 5001, MIB)) as a:
                assert a.wait_command(GUEST_BOOT + 60) == 0, a.tail()
                assert b.wait_command(60) == 0, b.tail()
                elapsed = time.monotonic() - t0
                assert parse_ping(a.console()) == (3, 3)
                sent = parse_tcp(a.console(), "TCP-SEND")
                assert sent[0] == MIB
                assert parse_tcp(b.console(), "TCP-RECV") == sent
        ports = tp.stop_fwd()
        # io mode: every frame received on one port was sent (or dropped, while
        # a guest was not yet or no longer there) on the other
        for rx, tx in ((0, 1), (1, 0)):
            assert ports[tx]["tx_total"] == ports[rx]["rx_packets"] > 0
        assert ports[0]["rx_packets"] > MIB // 65536   # the stream crossed port 0
        print(f"two guests: boot + ping + 1 MiB in {elapsed:.1f} s")


@needs_interop
def test_ping_loop_shows_a_backend_restart(hugepages, image, sockdir, tmp_path):
    """A reconnecting guest (client, reconnect=1) keeps pinging while its
    back-end is stopped and started again: replies stop, then resume."""
    sock = sockdir / "r.sock"

    def backend() -> Testpmd:
        tp = Testpmd([Testpmd.vhost(sock)], workdir=tmp_path, name="echo").start()
        tp.set_fwd("icmpecho")
        tp.start_fwd()
        return tp

    first = backend()
    try:
        with Guest(image, sock, workdir=tmp_path, reconnect=1,
                   command=ping_loop_cmd("10.0.0.9", 8, 200)) as g:
            g.wait_for(re.compile(r"PING-LOOP seq=\d+ ok"), GUEST_BOOT)
            first.close()
            time.sleep(1.0)
            first = backend()
            g.wait_for("PING-LOOP-END", 60)
            events = parse_ping_loop(g.console())
    finally:
        first.close()
    outcome = "".join("o" if ok else "x" for _, ok, _ in events)
    assert [s for s, _, _ in events] == list(range(1, len(events) + 1))
    assert "x" in outcome, outcome
    first_loss = outcome.index("x")
    assert "o" in outcome[:first_loss] and "o" in outcome[first_loss:], outcome
