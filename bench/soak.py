"""`make soak MINUTES=N`: every port type forwarding at once for N minutes
while the flow table changes every second, then a report.

- a system port and an afxdp port (veths into a namespace): a paced UDP
  stream goes in on the system port and out of the afxdp port, and back the
  other way; the sinks count what arrives, the senders what went out;
- two dpdkvhostuserclient ports with dpdk-testpmd (virtio_user, server=1,
  io mode, start tx_first): bursts circulate between testpmd and ovsd;
- every second a flow is added, modified or deleted (on a match no traffic
  uses, so forwarding is unaffected and every change revalidates the caches).

The report: frames lost on the veth paths (sent - received), testpmd's
throughput at start and end, the RSS of the daemon and each PMD at start,
after the warm-up and at the end, PMD restarts, and the warnings and errors
ovsd logged; then a verdict (exit status 1 on FAIL) against the bounds below.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.integration import netns as N
from tests.interop.hugepages import HugepageError, ensure_hugepages
from tests.interop.testpmd import Testpmd

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
RATE = 2000  # frames per second per direction on the veth paths
CHANGE_EVERY = float(os.environ.get("SOAK_CHANGE_EVERY", "1.0"))  # seconds; 0: no changes
# Bounds of the verdict.  Caches and first bursts grow the processes in the
# first seconds, so memory is judged from the end of the warm-up.
WARMUP = 30.0              # seconds, at most a quarter of the run
RSS_GROWTH_KB = 4096       # per process, after the warm-up...
RSS_GROWTH_SHARE = 0.10    # ...or this share of its size then, whichever is larger
LOSS_SHARE = 0.001         # veth frames lost / sent, per direction
RATE_KEPT = 0.5            # testpmd's Rx-pps at the end / after the warm-up


def ofctl(rundir: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "ofctl"), "--rundir", str(rundir), *args],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pmd_pids(rundir: Path) -> dict[int, int]:
    stats = json.loads(ofctl(rundir, "--json", "pmd-stats-show"))["pmds"]
    return {p["pmd_id"]: p["pid"] for p in stats if p["pmd_id"] is not None}


class Stream:
    """A paced UDP stream from one namespace socket to another, counted."""

    def __init__(self, src: socket.socket, sink: socket.socket, tag: bytes):
        self.src, self.sink, self.tag = src, sink, tag
        self.sent = self.received = 0
        self.stop = threading.Event()
        self.frame = (b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
                      + bytes.fromhex("4500001c00014000401100000a0000010a000002")
                      + b"\x04\xd2\x00\x50\x00\x08\x00\x00" + tag)
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._recv, daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.src.send(self.frame)
            self.sent += 1
            next_at += 1.0 / RATE
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _recv(self) -> None:
        self.sink.settimeout(0.2)
        while not self.stop.is_set() or self._pending():
            try:
                if self.tag in self.sink.recv(2048):
                    self.received += 1
            except socket.timeout:
                if self.stop.is_set():
                    return

    def _pending(self) -> bool:
        return self.received < self.sent

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def run(minutes: float) -> int:
    reason = N.unavailable_reason()
    if reason:
        print(f"soak: cannot run: {reason}")
        return 1
    try:
        ensure_hugepages(512)
    except HugepageError as e:
        print(f"soak: hugepages: {e} (testpmd falls back to --no-huge)")
    work = Path(tempfile.mkdtemp(prefix="ovsd-soak-"))
    rundir = work / "run"
    log = open(work / "ovsd.out", "w")
    daemon = subprocess.Popen([str(BIN / "ovsd"), "--rundir", str(rundir)], stdout=log,
                              stderr=subprocess.STDOUT)
    pmd = None
    try:
        deadline = time.monotonic() + 30
        while not (rundir / "ovsd.sock").exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                print("soak: ovsd did not start")
                return 1
            time.sleep(0.05)
        with N.netns() as ns, N.veth(ns) as sys_link, N.veth(ns) as xdp_link:
            ofctl(rundir, "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
            ofctl(rundir, "add-br", "soak")
            ofctl(rundir, "add-port", "soak", sys_link.outer, "ofport_request=1")
            ofctl(rundir, "add-port", "soak", xdp_link.outer, "type=afxdp",
                  "ofport_request=2")
            socks = [work / f"vh{i}.sock" for i in range(2)]
            for i, sock in enumerate(socks):
                ofctl(rundir, "add-port", "soak", f"vh{i}", "type=dpdkvhostuserclient",
                      f"options:vhost-server-path={sock}", f"ofport_request={3 + i}")
            ofctl(rundir, "del-flows", "soak")
            for a, b in ((1, 2), (2, 1), (3, 4), (4, 3)):
                ofctl(rundir, "add-flow", "soak", f"in_port={a},actions=output:{b}")
            pmd = Testpmd([Testpmd.virtio_user(s, server=True) for s in socks], workdir=work,
                          name="soak", lcores="0,1", eal_args=["--main-lcore", "1"])
            pmd.launch()
            pmd.wait_ready()
            for port in (0, 1):
                pmd.wait_link_up(port)
            pmd.set_fwd("io")
            pmd.start_fwd(tx_first=4)
            time.sleep(2)
            daemon_rss0 = rss_kb(daemon.pid)
            pmds0 = {i: rss_kb(p) for i, p in pmd_pids(rundir).items()}
            tp0 = pmd.port_stats()
            streams = [Stream(sys_link.inner_socket(), xdp_link.inner_socket(), b"sys->xdp"),
                       Stream(xdp_link.inner_socket(), sys_link.inner_socket(), b"xdp->sys")]
            for s in streams:
                s.start()
            rng = random.Random(1)
            changes = 0
            begin = time.monotonic()
            end = begin + 60 * minutes
            warm_at = begin + min(WARMUP, 15 * minutes)
            warm = None
            while time.monotonic() < end:
                if warm is None and time.monotonic() >= warm_at:
                    warm = (rss_kb(daemon.pid),
                            {i: rss_kb(p) for i, p in pmd_pids(rundir).items()},
                            pmd.port_stats())
                if not CHANGE_EVERY:
                    time.sleep(1.0)
                    continue
                tp = rng.randrange(1, 60000)
                op = changes % 3
                if op == 0:
                    ofctl(rundir, "add-flow", "soak", f"priority=100,udp,tp_dst={tp},"
                                                      "actions=drop")
                elif op == 1:
                    ofctl(rundir, "mod-flows", "soak", "udp,actions=drop")
                else:
                    ofctl(rundir, "del-flows", "soak", "udp")
                changes += 1
                time.sleep(CHANGE_EVERY)
            for s in streams:
                s.finish()
            tp1 = pmd.port_stats()
            stats = json.loads(ofctl(rundir, "--json", "pmd-stats-show"))["pmds"]
            pmds1 = {i: rss_kb(p) for i, p in pmd_pids(rundir).items()}
            daemon_rss1 = rss_kb(daemon.pid)
            drops = ofctl(rundir, "drop-stats")
            # What ovsd logs from here on is the teardown (the veths go before
            # the daemon does), not the soak.
            judged_lines = len((rundir / "ovsd.log").read_text().splitlines())
    finally:
        if pmd is not None:
            pmd.close()
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
    logged = (rundir / "ovsd.log").read_text().splitlines()
    shutil.rmtree(work, ignore_errors=True)
    problems = [line for line in logged[:judged_lines]
                if "|ERROR|" in line or "|WARNING|" in line]
    print(f"soak: {minutes:g} minutes, {changes} flow-table changes")
    for s in streams:
        print(f"  {s.tag.decode()}: sent {s.sent}, received {s.received}, "
              f"lost {s.sent - s.received}")
    warm_daemon, warm_pmds, warm_tp = warm or (daemon_rss0, pmds0, tp0)
    for port in tp1:
        print(f"  testpmd port {port}: rx {tp1[port]['rx_packets'] - tp0[port]['rx_packets']:,}"
              f" packets during the soak, Rx-pps after the warm-up "
              f"{warm_tp[port]['rx_pps']:,}, at the end {tp1[port]['rx_pps']:,}")
    print(f"  ovsd RSS: {daemon_rss0} kB at start, {warm_daemon} kB after the warm-up, "
          f"{daemon_rss1} kB at the end")
    for i in sorted(pmds1):
        print(f"  PMD {i} RSS: {pmds0.get(i, 0)} kB at start, {warm_pmds.get(i, 0)} kB after "
              f"the warm-up, {pmds1[i]} kB at the end")
    restarts = sum(p.get('restarts', 0) for p in stats if p['pmd_id'] is not None)
    print(f"  PMD restarts: {restarts}")
    print("  drop-stats at the end:\n    " + drops.strip().replace("\n", "\n    "))
    print(f"  warnings and errors logged: {len(problems)}")
    for line in problems[:10]:
        print(f"    {line}")
    failures = _judge(streams, warm_tp, tp1, [("ovsd", warm_daemon, daemon_rss1)]
                      + [(f"PMD {i}", warm_pmds.get(i, 0), pmds1[i]) for i in sorted(pmds1)],
                      restarts, problems)
    print("verdict: " + ("PASS" if not failures else "FAIL\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


def _judge(streams: list[Stream], tp_warm: dict, tp_end: dict,
           rss: list[tuple[str, int, int]], restarts: int, problems: list[str]) -> list[str]:
    """What broke the bounds, one line each."""
    failures = []
    for s in streams:
        lost = s.sent - s.received
        if lost > LOSS_SHARE * s.sent:
            failures.append(f"{s.tag.decode()}: lost {lost} of {s.sent} frames "
                            f"(bound {LOSS_SHARE:.1%})")
    for port, end in tp_end.items():
        start = tp_warm[port]["rx_pps"]
        if end["rx_pps"] < RATE_KEPT * start:
            failures.append(f"testpmd port {port}: Rx-pps fell from {start:,} after the "
                            f"warm-up to {end['rx_pps']:,} (bound: keep {RATE_KEPT:.0%})")
    for who, warm_kb, end_kb in rss:
        allowed = max(RSS_GROWTH_KB, RSS_GROWTH_SHARE * warm_kb)
        if end_kb - warm_kb > allowed:
            failures.append(f"{who}: RSS grew {end_kb - warm_kb} kB after the warm-up "
                            f"(bound {allowed:.0f} kB)")
    if restarts:
        failures.append(f"{restarts} PMD restarts")
    if problems:
        failures.append(f"{len(problems)} warnings or errors logged")
    return failures


if __name__ == "__main__":
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    sys.exit(run(minutes))
