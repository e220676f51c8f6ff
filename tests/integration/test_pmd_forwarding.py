"""The fast path with real traffic: namespaces behind veths, the veths as
system ports of ovsd, forwarded by a PMD process (EMC, megaflows, upcalls).

One daemon serves the module; each test sets the flows it needs."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import struct
import threading
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.daemon import Daemon
from tests.integration import netns as N

pytestmark = pytest.mark.skipif(N.unavailable_reason() is not None,
                                reason=N.unavailable_reason() or "")

HOSTS = {"a": "10.77.0.1", "b": "10.77.0.2", "c": "10.77.0.3"}


class Topo:
    def __init__(self, daemon: Daemon, hosts: dict):
        self.d = daemon
        self.hosts = hosts  # name -> (Netns, Veth, ip, ofport)

    def ofctl(self, *args: str) -> str:
        return self.d.ofctl(*args)

    def json(self, *args: str) -> dict:
        return json.loads(self.d.ofctl("--json", *args))

    def mac(self, host: str) -> str:
        return ":".join(f"{b:02x}" for b in self.hosts[host][1].inner_mac)


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    run = tmp_path_factory.mktemp("pmd")
    with Daemon(run) as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        stack = []
        hosts = {}
        try:
            for n, (name, ip) in enumerate(HOSTS.items(), 1):
                ns_cm = N.netns()
                ns = ns_cm.__enter__()
                stack.append(ns_cm)
                veth_cm = N.veth(ns)
                link = veth_cm.__enter__()
                stack.append(veth_cm)
                ns.run("ip", "addr", "add", f"{ip}/24", "dev", link.inner)
                d.ofctl("add-port", "br0", link.outer, f"ofport_request={n}")
                hosts[name] = (ns, link, ip, n)
            yield Topo(d, hosts)
        finally:
            for cm in reversed(stack):
                cm.__exit__(None, None, None)


@pytest.fixture
def normal(topo):
    topo.ofctl("del-flows", "br0")
    topo.ofctl("add-flow", "br0", "actions=NORMAL")
    topo.ofctl("fdb/flush", "br0")
    return topo


def ping(topo: Topo, src: str, dst: str, count: int = 3) -> None:
    ns = topo.hosts[src][0]
    r = ns.run("ping", "-c", str(count), "-i", "0.2", "-W", "2", topo.hosts[dst][2],
               check=False, timeout=20)
    assert r.returncode == 0, f"ping {src} -> {dst} failed:\n{r.stdout}{r.stderr}"


def udp(topo: Topo, src: str, dst: str, payload: bytes, dst_ip: str | None = None,
        dst_mac: str | None = None, sport: int = 1000) -> bytes:
    return bytes(Ether(src=topo.mac(src), dst=dst_mac or topo.mac(dst)) /
                 IP(src=topo.hosts[src][2], dst=dst_ip or topo.hosts[dst][2]) /
                 UDP(sport=sport, dport=2000) / payload)


def capture(sock: socket.socket, seconds: float) -> list[bytes]:
    sock.settimeout(0.05)
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append(sock.recv(65535))
        except socket.timeout:
            pass
    return out


def test_ping_through_normal(normal):
    ping(normal, "a", "b")
    ping(normal, "c", "a")
    fdb = normal.ofctl("fdb/show", "br0")
    for host in ("a", "b", "c"):
        assert normal.mac(host) in fdb


def test_tcp_through_normal(normal):
    ns_b, ns_a = normal.hosts["b"][0], normal.hosts["a"][0]
    server = ns_b.popen("python3", "-c", (
        "import socket,hashlib\n"
        "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        f"s.bind(('{HOSTS['b']}',5001));s.listen(1);s.settimeout(20)\n"
        "c,_=s.accept();h=hashlib.sha256();n=0\n"
        "while True:\n"
        "  d=c.recv(65536)\n"
        "  if not d: break\n"
        "  h.update(d);n+=len(d)\n"
        "print(n,h.hexdigest())\n"), stdout=subprocess.PIPE, text=True)
    data = os.urandom(1 << 20)
    try:
        time.sleep(0.5)
        client = subprocess.run(
            ["ip", "netns", "exec", ns_a.name, "python3", "-c",
             f"import socket,sys\nc=socket.create_connection(('{HOSTS['b']}',5001),"
             "timeout=10)\nc.sendall(sys.stdin.buffer.read());c.close()\n"],
            input=data, capture_output=True, timeout=30)
        assert client.returncode == 0, client.stderr
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert out.split() == [str(len(data)), hashlib.sha256(data).hexdigest()]


def test_l3_rewrite_seen_in_the_sink(topo):
    topo.ofctl("del-flows", "br0")
    topo.ofctl("add-flow", "br0", "priority=100,ip,in_port=1,nw_dst=10.77.0.99,"
               f"actions=mod_nw_dst:{HOSTS['b']},mod_dl_dst:{topo.mac('b')},"
               "mod_nw_tos:32,output:2")
    sink = topo.hosts["b"][1].inner_socket()
    src = topo.hosts["a"][1].inner_socket()
    frames = [udp(topo, "a", "b", b"x" * 20 + bytes([i]), dst_ip="10.77.0.99",
                  dst_mac="02:99:99:99:99:99") for i in range(5)]
    for f in frames:
        src.send(f)
    got = [Ether(f) for f in capture(sink, 1.0) if f[12:14] == b"\x08\x00"]
    assert len(got) == 5
    for i, pkt in enumerate(got):
        assert pkt[IP].dst == HOSTS["b"] and pkt.dst == topo.mac("b")
        assert pkt[IP].tos == 32
        assert bytes(pkt[UDP].payload)[-1] == i
        again = Ether(bytes(pkt))
        del again[IP].chksum
        del again[UDP].chksum
        assert Ether(bytes(again))[IP].chksum == pkt[IP].chksum
        assert Ether(bytes(again))[UDP].chksum == pkt[UDP].chksum


def test_flow_change_applies_to_every_packet_sent_after_it_returns(topo):
    topo.ofctl("del-flows", "br0")
    topo.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
    to_b, to_c = topo.hosts["b"][1].inner_socket(), topo.hosts["c"][1].inner_socket()
    src = topo.hosts["a"][1].inner_socket()
    sent = [0]
    stop = threading.Event()
    base = udp(topo, "a", "b", b"\0" * 8)

    def sender():
        seq = 0
        while not stop.is_set():
            seq += 1
            src.send(base[:-8] + struct.pack("!Q", seq))
            sent[0] = seq
            time.sleep(0.0002)

    caught: dict[str, list] = {"b": [], "c": []}

    def sink(name, sock):
        caught[name] = capture(sock, 2.5)

    sinks = [threading.Thread(target=sink, args=("b", to_b)),
             threading.Thread(target=sink, args=("c", to_c))]
    for t in sinks:
        t.start()
    t = threading.Thread(target=sender)
    t.start()
    try:
        time.sleep(0.5)
        topo.ofctl("mod-flows", "br0", "in_port=1,actions=output:3")
        after = sent[0]  # every frame numbered above this was sent after the change
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
        for s in sinks:
            s.join()
    seqs = {k: [struct.unpack("!Q", f[-8:])[0] for f in v if len(f) == len(base)]
            for k, v in caught.items()}
    assert seqs["b"] and seqs["c"], "traffic did not flow both before and after"
    assert max(seqs["b"]) <= after, "a packet sent after mod-flows returned took the old path"
    assert max(seqs["c"]) > after


def test_megaflow_is_as_wide_as_the_rules_allow(topo):
    topo.ofctl("del-flows", "br0")
    topo.ofctl("add-flow", "br0", f"priority=10,dl_dst={topo.mac('b')},actions=output:2")
    src = topo.hosts["a"][1].inner_socket()
    for i in range(20):
        src.send(udp(topo, "a", "b", b"m" * 20, dst_ip=f"10.77.1.{i}", sport=1000 + i))
    time.sleep(0.5)
    flows = [line for line in topo.ofctl("dump-dp-flows").splitlines()
             if f"dst={topo.mac('b')}" in line]
    assert len(flows) == 1, flows
    assert "ipv4(" not in flows[0] or ("src=" not in flows[0].split("ipv4(")[1]
                                       and "dst=" not in flows[0].split("ipv4(")[1])
    assert "udp(" not in flows[0]
    assert "packets:20" in flows[0]


def test_counters_add_up(normal):
    ping(normal, "a", "b", 5)
    for pmd in normal.json("pmd-stats-show")["pmds"]:
        assert (pmd["simple_hits"] + pmd["emc_hits"] + pmd["megaflow_hits"]
                + pmd["upcalls"]) == pmd["packets"]
    flows = normal.json("dump-flows", "br0")["flows"]
    assert flows[0]["n_packets"] >= 10  # fast-path packets reach the rule's counters


def test_pmd_killed_with_sigkill_comes_back(normal):
    ping(normal, "a", "b", 2)
    pmds = [p for p in normal.json("pmd-stats-show")["pmds"] if p["pmd_id"] is not None]
    assert pmds and pmds[0]["alive"]
    os.kill(pmds[0]["pid"], 9)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = [p for p in normal.json("pmd-stats-show")["pmds"] if p["pmd_id"] is not None]
        if now[0]["alive"] and now[0]["restarts"] == pmds[0]["restarts"] + 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the PMD was not restarted")
    ping(normal, "a", "b", 3)
    assert "died (killed by signal 9); restarting it" in \
        normal.d.rundir.joinpath("ovsd.log").read_text()


def test_deleted_port_stops_receiving_and_closes_its_sockets(tmp_path):
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2, Daemon(tmp_path / "r") as d:
        d.ofctl("add-br", "brd")
        d.ofctl("add-port", "brd", l1.outer, "ofport_request=1")
        d.ofctl("add-port", "brd", l2.outer, "ofport_request=2")
        d.ofctl("del-flows", "brd")
        d.ofctl("add-flow", "brd", "actions=output:2")
        flags = lambda: int(open(f"/sys/class/net/{l1.outer}/flags").read(), 16)  # noqa
        assert flags() & 0x100  # IFF_PROMISC while the port is open
        d.ofctl("del-port", "brd", l1.outer)
        assert not flags() & 0x100, "the deleted port's sockets are still open somewhere"
        sink, src = l2.inner_socket(), l1.inner_socket()
        src.send(bytes(Ether(dst="02:00:00:00:00:02") / IP() / UDP() / b"gone"))
        assert not [f for f in capture(sink, 0.5) if f.endswith(b"gone")]


def test_interface_deleted_under_the_switch_and_back(tmp_path):
    with N.netns() as ns, N.veth(ns) as l1, N.veth(ns) as l2, Daemon(tmp_path / "r") as d:
        d.ofctl("add-br", "bre")
        d.ofctl("add-port", "bre", l1.outer, "ofport_request=1")
        d.ofctl("add-port", "bre", l2.outer, "ofport_request=2")
        name = l2.outer
        os.system(f"ip link del {name}")
        deadline = time.monotonic() + 10
        while "disappeared" not in d.ofctl("show", "bre"):
            assert time.monotonic() < deadline, "the port did not go down"
            time.sleep(0.2)
        assert "disappeared" in (d.rundir / "ovsd.log").read_text()
        os.system(f"ip link add {name} type veth peer name {name}p && ip link set {name} up "
                  f"&& ip link set {name}p up")
        try:
            deadline = time.monotonic() + 10
            while True:
                ports = {p["name"]: p for p in json.loads(d.ofctl("--json", "show", "bre"))
                         ["ports"]}
                if ports[name]["state"] == "up" and ports[name]["ofport"] == 2:
                    break
                assert time.monotonic() < deadline, "the port did not come back"
                time.sleep(0.2)
        finally:
            os.system(f"ip link del {name} 2>/dev/null")


def test_pmd_cpu_mask_changes_move_the_queues_and_forwarding_goes_on(normal):
    ping(normal, "a", "b", 2)
    normal.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3")
    rxq = normal.json("pmd-rxq-show")["pmds"]
    assert sorted(p["core"] for p in rxq) == [0, 1]
    assert sum(len(p["rxqs"]) for p in rxq) == 3  # every port polled exactly once
    ping(normal, "a", "c", 2)
    normal.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x1")
    rxq = normal.json("pmd-rxq-show")["pmds"]
    assert [p["core"] for p in rxq] == [0] and len(rxq[0]["rxqs"]) == 3
    ping(normal, "b", "c", 2)
    normal.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
    assert [p["core"] for p in normal.json("pmd-rxq-show")["pmds"]] == [1]
    ping(normal, "a", "b", 2)


def test_a_bad_pmd_cpu_mask_is_refused_in_the_log_and_changes_nothing(normal):
    normal.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x100")
    assert "names core(s) [8]" in normal.d.rundir.joinpath("ovsd.log").read_text()
    assert [p["core"] for p in normal.json("pmd-rxq-show")["pmds"]] == [1]
    ping(normal, "a", "b", 2)
    normal.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")


def test_pmd_stats_clear(normal):
    ping(normal, "a", "b", 2)
    normal.ofctl("pmd-stats-clear")
    pmds = [p for p in normal.json("pmd-stats-show")["pmds"] if p["pmd_id"] is not None]
    assert all(p["packets"] == 0 for p in pmds)
    ping(normal, "a", "b", 2)
    pmds = [p for p in normal.json("pmd-stats-show")["pmds"] if p["pmd_id"] is not None]
    assert sum(p["packets"] for p in pmds) >= 4


def test_malformed_frames_from_the_wire_are_forwarded_or_dropped_never_a_crash(topo):
    topo.ofctl("del-flows", "br0")
    topo.ofctl("add-flow", "br0", "priority=10,ip,actions=mod_nw_tos:32,output:2")
    topo.ofctl("add-flow", "br0", "priority=1,actions=output:2")
    src = topo.hosts["a"][1].inner_socket()
    sink = topo.hosts["b"][1].inner_socket()
    good = udp(topo, "a", "b", b"ok" * 10)
    eth = good[:14]
    bad = [
        eth,                                            # Ethernet header only
        eth[:12] + b"\x08\x00" + b"\x45\x00",            # IPv4 header cut short
        good[:14] + b"\x46" + good[15:],                 # IHL says options that are not there
        good[:16] + b"\xff\xff" + good[18:],             # total length beyond the frame
        good[:24] + b"\xde\xad" + good[26:],             # wrong IPv4 checksum
        eth[:12] + b"\x81\x00\x00",                      # VLAN tag cut short
        eth[:12] + b"\x86\xdd" + b"\x60" + bytes(10),    # IPv6 header cut short
        good + bytes(200),                               # trailing bytes
    ]
    for frame in bad:
        src.send(frame)
    src.send(good)
    got = capture(sink, 1.0)
    assert any(f.startswith(good[:14]) and f[14:15] == b"\x45" for f in got)
    assert len(got) >= len(bad)  # everything forwarded by one rule or the other
    ping_ok = topo.hosts["a"][0].run("true")  # the namespace is fine
    assert ping_ok.returncode == 0
    pmds = [p for p in topo.json("pmd-stats-show")["pmds"] if p["pmd_id"] is not None]
    assert pmds and all(p["alive"] for p in pmds) and all(p["lost"] == 0 for p in pmds)


def test_pmd_rxq_show_says_why_each_queue_is_where_it_is(topo):
    deadline = time.monotonic() + 10
    while "placed:" not in (text := topo.ofctl("pmd-rxq-show")):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert "placed: roundrobin: the PMD with the fewest queues" in text
    rxqs = [q for p in topo.json("pmd-rxq-show")["pmds"] for q in p["rxqs"]]
    assert rxqs and all(q["placed"].startswith("roundrobin:") for q in rxqs)
