"""Scenarios `vhost-p2p` and `vhost-p2p-normal`: bursts circulating between
dpdk-testpmd and the switch over vhost-user.

testpmd plays the guest: two virtio_user ports with ``server=1`` (testpmd
listens, the switch's two ``dpdkvhostuserclient`` ports connect), its
forwarding lcore on core TESTPMD_CPU (``-l 0,1 --main-lcore 1``; the main
lcore only sits at the prompt).  The switch has one PMD, on core SWITCH_CPU.
``start tx_first N`` puts N bursts of 32 frames (64 bytes) on each port, then
testpmd forwards whatever arrives on one port out of the other, and the switch
sends it back: the frames go round and round, and the Rx-pps testpmd reports,
summed over both ports, is the forwarding rate.  There is no generator to
outrun: whichever of the two cores is slower sets the pace.

- vhost-p2p: testpmd in ``io`` mode; the switch holds ``in_port=1,actions=
  output:2`` and ``in_port=2,actions=output:1``.
- vhost-p2p-normal: the switch holds ``actions=NORMAL`` and learns the two
  ports' MAC addresses; testpmd in ``mac`` mode, each port's ``--eth-peer``
  the other port's address, so every frame is unicast to a learned MAC.

The same setup runs with ovsd, with ovsd while `ofctl capture` records both
directions of port 1 (what a capture costs forwarding), and with OVS-DPDK
(Debian's ovs-vswitchd-dpdk, private instance: bench/ovs_dpdk.py), one after
the other in each round, the order rotating; every run starts the switch and
testpmd afresh.  Per scenario:
the median Mpps of each, the ratio of the runs done side by side, ovsd's time
per packet from ``ofctl pmd-stats-show`` and OVS-DPDK's from its cycle counts.

Why N = TX_FIRST bursts: with one burst per port in flight, ovsd's PMD sat 60%
idle (it had forwarded everything and waited for testpmd's next burst).  Each
virtqueue holds 256 descriptors, so 8 bursts of 32 per port fill a ring; 16
keeps every ring of the loop full (the excess is dropped at once by the full
ring, which costs nothing later), and the rate no longer depends on how many
frames testpmd happened to keep in flight.

Environment: BENCH_RUNS (rounds, default 5), BENCH_WINDOW (seconds measured
per run, default 5), BENCH_TX_FIRST (bursts per port, default TX_FIRST).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from bench import ovs_dpdk
from bench import topology as topo_mod
from bench.topology import loadavg, print_foreign
from bench.contenders import pmd_figures, write_flows
from bench.ovs_dpdk import OvsDpdk, OvsDpdkError
from bench.topology import signals_deferred
from tests.interop import testpmd as testpmd_mod
from tests.interop.hugepages import HugepageError, ensure_hugepages
from tests.interop.process import LoggedProcess, ProcessError, pid_alive
from tests.interop.testpmd import Testpmd

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"

TESTPMD_CPU = 0   # testpmd's forwarding lcore
SWITCH_CPU = 1    # the switch's PMD (and testpmd's idle main lcore)
TESTPMD_LCORES = f"{TESTPMD_CPU},{SWITCH_CPU}"
TESTPMD_EAL = ["--main-lcore", str(SWITCH_CPU)]
PMD_MASK = hex(1 << SWITCH_CPU)

RUNS = max(1, int(os.environ.get("BENCH_RUNS", "5")))
WINDOW = max(0.5, float(os.environ.get("BENCH_WINDOW", "5.0")))
TX_FIRST = max(1, int(os.environ.get("BENCH_TX_FIRST", "16")))
WARMUP = 1.0
READY_TIMEOUT = 30.0
CMD_TIMEOUT = 30.0
BUDGET = 150.0    # seconds per scenario: later rounds are dropped past it
BURST = 32        # testpmd's default burst

OVSD_BRIDGE, OVS_BRIDGE = "vo", "vd"   # + our pid in hex: OVS's is also a tap device
WORKDIR_STEM = "ovsd-vhost-bench-"     # + our pid: swept when that process is gone
MACS = ("02:76:68:00:00:01", "02:76:68:00:00:02")   # testpmd ports 0 and 1
TARGETS = (0.10, 0.25)   # ovsd / OVS-DPDK: first milestone, final goal


class ContenderError(RuntimeError):
    """A switch failed to start, to connect or to answer; the message says how."""


@dataclass(frozen=True)
class Setup:
    """One scenario: the switch's flow table and testpmd's forwarding mode."""
    name: str
    flows: tuple[str, ...]
    fwd: str                       # testpmd engine: io, or mac (with --eth-peer)
    reference_ovs_mpps: float      # OVS-DPDK on an idle machine of this kind (the issue)

    @property
    def eth_peers(self) -> dict[int, str]:
        # mac mode rewrites the destination to the peer: each port's peer is
        # the other port, whose address the switch learned from its frames.
        return {0: MACS[1], 1: MACS[0]} if self.fwd == "mac" else {}


P2P = Setup("vhost-p2p", ("in_port=1,actions=output:2", "in_port=2,actions=output:1"),
            "io", 9.0)
P2P_NORMAL = Setup("vhost-p2p-normal", ("actions=NORMAL",), "mac", 4.7)


# -- the switches ---------------------------------------------------------------------

class OvsdHandle:
    label = "ovsd"

    def __init__(self, rundir: Path, ports: list[str]):
        self.rundir, self.ports = rundir, ports

    def ofctl(self, *args: str) -> str:
        cmd = [str(BIN / "ofctl"), "--rundir", str(self.rundir), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ContenderError(f"ofctl {' '.join(args)}: no answer within "
                                 f"{CMD_TIMEOUT:.0f} s") from None
        if proc.returncode:
            raise ContenderError(f"ofctl {' '.join(args)}: exit {proc.returncode}: "
                                 f"{(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def wait_ready(self) -> None:
        """Both ports negotiated and handed to the PMD."""
        deadline = time.monotonic() + READY_TIMEOUT
        for port in self.ports:
            while (state := json.loads(self.ofctl("--json", "vhost-show", port))["state"]) \
                    != "ready":
                if time.monotonic() > deadline:
                    raise ContenderError(f"ovsd: port {port} is {state!r}, not 'ready', "
                                         f"{READY_TIMEOUT:.0f} s after testpmd came up:\n"
                                         + self.ofctl("vhost-show", port))
                time.sleep(0.05)

    def before_window(self) -> None:
        self.ofctl("pmd-stats-clear")

    def after_window(self) -> dict:
        stats = json.loads(self.ofctl("--json", "pmd-stats-show"))
        pmds = [p for p in stats.get("pmds", []) if p.get("core") == SWITCH_CPU]
        if len(pmds) != 1:
            raise ContenderError(f"ovsd pmd-stats-show: expected one PMD on core "
                                 f"{SWITCH_CPU}, got {stats.get('pmds')}")
        figures = pmd_figures(pmds[0])
        figures["text"] = pmd_section(stats.get("text", ""), SWITCH_CPU)
        # A reset connection (guest error) costs the rate: say so beside it.
        log = (self.rundir / "ovsd.log").read_text(errors="replace").splitlines()
        figures["resets"] = [line.split("|", 3)[-1] for line in log
                             if "vhost-user connection reset" in line]
        return figures


def pmd_section(text: str, core: int) -> str:
    """The block of pmd-stats-show text for the PMD on ``core``."""
    lines, inside = [], False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.startswith("pmd thread") and line.rstrip(":").endswith(
                f"core_id {core}")
        if inside:
            lines.append(line)
    return "\n".join(lines)


class Ovsd:
    label = "ovsd"

    @staticmethod
    def missing() -> str | None:
        for tool in ("ovsd", "ofctl"):
            if not (BIN / tool).exists():
                return f"{BIN / tool} is missing (run make setup)"
        return None

    @staticmethod
    @contextlib.contextmanager
    def running(workdir: Path, socks: list[Path], flows: tuple[str, ...]
                ) -> Iterator[OvsdHandle]:
        rundir = workdir / "ovsd"
        bridge = f"{OVSD_BRIDGE}{os.getpid():x}"
        ports = [f"vh{i}" for i in range(len(socks))]
        proc = LoggedProcess([str(BIN / "ovsd"), "--rundir", str(rundir)],
                             workdir / "ovsd.log", label="ovsd")
        handle = OvsdHandle(rundir, ports)
        pmds: list[int] = []
        proc.spawn()
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not (rundir / "ovsd.sock").exists():
                if not proc.alive() or time.monotonic() > deadline:
                    raise ContenderError(f"ovsd did not come up (exit {proc.returncode()}):\n"
                                         f"{proc.tail(10)}")
                time.sleep(0.05)
            handle.ofctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={PMD_MASK}")
            handle.ofctl("add-br", bridge)
            for ofport, (port, sock) in enumerate(zip(ports, socks), start=1):
                handle.ofctl("add-port", bridge, port, "type=dpdkvhostuserclient",
                             f"options:vhost-server-path={sock}", f"ofport_request={ofport}")
            handle.ofctl("del-flows", bridge)
            handle.ofctl("add-flows", bridge, str(write_flows(workdir, list(flows))))
            pmds = topo_mod.descendants(proc.pid)
            yield handle
        finally:
            with signals_deferred():
                pmds = sorted(set(pmds) | set(topo_mod.descendants(proc.pid)))
                proc.stop(polite=lambda: os.kill(proc.pid, signal.SIGTERM), grace=15.0)
                # PMDs whose daemon had to be killed must not stay behind.
                topo_mod.stop_pids(pmds, signal.SIGKILL, timeout=5.0)
                if os.path.exists(f"/sys/class/net/{bridge}"):
                    subprocess.run(["ip", "link", "del", bridge], capture_output=True,
                                   timeout=10)


class OvsDpdkHandle:
    label = "OVS-DPDK"

    def __init__(self, ovs: OvsDpdk, ports: list[str]):
        self.ovs, self.ports = ovs, ports
        self._cleared = 0.0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for port in self.ports:
            while (state := self.ovs.vsctl("get", "Interface", port,
                                           "link_state").strip()) != "up":
                if time.monotonic() > deadline:
                    raise ContenderError(f"OVS-DPDK: port {port} link_state {state}, "
                                         f"{READY_TIMEOUT:.0f} s after testpmd came up:\n"
                                         + self.ovs.log_tail())
                time.sleep(0.05)

    def before_window(self) -> None:
        self.ovs.pmd_stats_clear()
        self._cleared = time.monotonic()

    def after_window(self) -> dict:
        shown = time.monotonic()
        s = self.ovs.pmd_stats()
        cycles = s.get("idle_cycles", 0) + s.get("processing_cycles", 0)
        # The PMD counts TSC cycles: over the time since the clear, idle +
        # processing is that many seconds' worth, which gives the TSC rate.
        per_ns = cycles / ((shown - self._cleared) * 1e9) if shown > self._cleared else 0
        packets = s.get("packets", 0)
        out = dict(s)
        out["cycles_per_packet"] = s.get("processing_cycles", 0) / packets if packets else None
        out["ns_per_packet"] = (out["cycles_per_packet"] / per_ns
                                if packets and per_ns else None)
        out["idle_share"] = s.get("idle_cycles", 0) / cycles if cycles else None
        out["ghz"] = per_ns
        return out


class OvsDpdkSwitch:
    label = "OVS-DPDK"

    @staticmethod
    def missing() -> str | None:
        return ovs_dpdk.missing()

    @staticmethod
    @contextlib.contextmanager
    def running(workdir: Path, socks: list[Path], flows: tuple[str, ...]
                ) -> Iterator[OvsDpdkHandle]:
        bridge = f"{OVS_BRIDGE}{os.getpid():x}"
        ports = [f"vh{i}" for i in range(len(socks))]
        ovs = OvsDpdk(pmd_cpu=SWITCH_CPU)
        try:
            ovs.start()
            ovs.add_bridge(bridge)
            for ofport, (port, sock) in enumerate(zip(ports, socks), start=1):
                ovs.add_vhost_client(bridge, port, sock, ofport)
            ovs.ofctl("del-flows", bridge)
            ovs.ofctl("add-flows", bridge, str(write_flows(workdir, list(flows))))
            yield OvsDpdkHandle(ovs, ports)
        finally:
            with signals_deferred():
                ovs.close()


class OvsdCapturing(Ovsd):
    label = "ovsd capturing"

    @staticmethod
    @contextlib.contextmanager
    def running(workdir: Path, socks: list[Path], flows: tuple[str, ...]
                ) -> Iterator[OvsdHandle]:
        with Ovsd.running(workdir, socks, flows) as handle:
            capture = subprocess.Popen(
                [str(BIN / "ofctl"), "--rundir", str(handle.rundir), "capture",
                 handle.ports[0], "-w", str(workdir / "capture.pcapng")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(1.0)   # capture_start has returned: the PMD has the tap
                if capture.poll() is not None:
                    raise ContenderError(f"ofctl capture ended at once: "
                                         f"{capture.stderr.read().strip()}")
                yield handle
            finally:
                topo_mod.stop_pids([capture.pid], signal.SIGINT, timeout=10.0, reap=capture)


CONTENDERS = (Ovsd, OvsdCapturing, OvsDpdkSwitch)


# -- one run --------------------------------------------------------------------------

@dataclass
class Trial:
    """One measured window."""
    round: int
    rx_pps: dict[int, int]          # testpmd's Rx-pps per port at the window's end
    rx_packets: int                 # frames testpmd received in the window (both ports)
    seconds: float
    stats: dict = field(default_factory=dict)
    foreign: dict[str, float] = field(default_factory=dict)   # other processes, in cores
    steal: float = 0.0

    @property
    def mpps(self) -> float:
        return sum(self.rx_pps.values()) / 1e6

    @property
    def foreign_total(self) -> float:
        return sum(self.foreign.values())


def _testpmd(workdir: Path, socks: list[Path], setup: Setup) -> Testpmd:
    vdevs = [Testpmd.virtio_user(sock, server=True, mac=mac) for sock, mac in zip(socks, MACS)]
    return Testpmd(vdevs, workdir=workdir, name="vhost-bench", lcores=TESTPMD_LCORES,
                   eal_args=TESTPMD_EAL, eth_peers=setup.eth_peers)


def measure(contender, setup: Setup, rnd: int) -> Trial:
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_STEM}{os.getpid()}-"))
    socks = [workdir / f"vh{i}.sock" for i in range(2)]
    try:
        # The switch first: its client ports keep reconnecting until testpmd,
        # which blocks in its device probe until a back-end connects, listens.
        with contender.running(workdir, socks, setup.flows) as switch:
            pmd = _testpmd(workdir, socks, setup)
            try:
                pmd.launch()
                pmd.wait_ready()
                for port in range(len(socks)):
                    pmd.wait_link_up(port)
                switch.wait_ready()
                pmd.set_fwd(setup.fwd)
                pmd.start_fwd(tx_first=TX_FIRST)
                time.sleep(WARMUP)
                before = pmd.port_stats()   # also starts testpmd's Rx-pps interval
                switch.before_window()
                procs0, cpu0 = topo_mod.process_ticks(), topo_mod.cpu_times()
                t0 = time.monotonic()
                time.sleep(WINDOW)
                after = pmd.port_stats()
                t1 = time.monotonic()
                procs1, cpu1 = topo_mod.process_ticks(), topo_mod.cpu_times()
                ours = {os.getpid(), *topo_mod.descendants(os.getpid())}
                stats = switch.after_window()
                pmd.stop_fwd()
            finally:
                pmd.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rx = sum(after[p]["rx_packets"] - before[p]["rx_packets"] for p in after)
    steal = max(topo_mod.cpu_shares(cpu0[c], cpu1[c]).steal for c in (TESTPMD_CPU, SWITCH_CPU))
    return Trial(rnd, {p: s["rx_pps"] for p, s in after.items()}, rx, t1 - t0, stats,
                 topo_mod.foreign_cpu(procs0, procs1, ours, t1 - t0), steal)


def run_rounds(setup: Setup, contenders: list) -> tuple[dict[str, list[Trial]],
                                                         dict[str, str]]:
    results: dict[str, list[Trial]] = {c.label: [] for c in contenders}
    errors: dict[str, str] = {}
    deadline = time.monotonic() + BUDGET
    for rnd in range(RUNS):
        if time.monotonic() > deadline:
            print(f"  time budget ({BUDGET:.0f} s) spent: stopping after {rnd} rounds")
            break
        order = contenders[rnd % len(contenders):] + contenders[:rnd % len(contenders)]
        for contender in order:
            if contender.label in errors:
                continue
            try:
                trial = measure(contender, setup, rnd)
            except (ContenderError, OvsDpdkError, ProcessError, RuntimeError, OSError,
                    subprocess.SubprocessError, KeyError, ValueError) as e:
                errors[contender.label] = str(e)
                print(f"  round {rnd + 1}: {contender.label} failed, skipped from now on: "
                      f"{e}", flush=True)
                continue
            results[contender.label].append(trial)
            ports = ", ".join(f"port {p} {v / 1e6:.3f}" for p, v in sorted(trial.rx_pps.items()))
            print(f"  round {rnd + 1}/{RUNS} {contender.label:<14} {trial.mpps:6.3f} Mpps "
                  f"({ports}; {trial.rx_packets / trial.seconds / 1e6:.3f} Mpps from the "
                  "packet counts)", flush=True)
    return results, errors


# -- reporting ------------------------------------------------------------------------

def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def paired_ratios(results: dict[str, list[Trial]], a: str, b: str) -> list[float]:
    """Mpps(a) / Mpps(b) for each round where both ran."""
    by_round = {t.round: t for t in results.get(b, [])}
    return [t.mpps / by_round[t.round].mpps for t in results.get(a, [])
            if t.round in by_round and by_round[t.round].mpps]


def median_trial(trials: list[Trial]) -> Trial | None:
    """The run whose rate is the (lower) median."""
    if not trials:
        return None
    ranked = sorted(trials, key=lambda t: t.mpps)
    return ranked[(len(ranked) - 1) // 2]


def print_report(setup: Setup, results: dict[str, list[Trial]], errors: dict[str, str],
                 load_before: str) -> None:
    n = max(map(len, results.values()), default=0)
    print(f"\nmedians of {n} runs of {WINDOW:.1f} s after a {WARMUP:.1f} s warm-up "
          f"(Mpps: testpmd's Rx-pps summed over both ports):")
    print(f"{'contender':<15}{'Mpps':>8}{'ns/pkt':>9}{'PMD idle':>10}   per run")
    for label, trials in results.items():
        if not trials:
            continue
        mpps = _median([t.mpps for t in trials])
        ns = _median([t.stats.get("ns_per_packet") for t in trials])
        idle = _median([t.stats.get("idle_share") for t in trials])
        runs = " ".join(f"{t.mpps:.3f}" for t in trials)
        print(f"{label:<15}{_fmt(mpps, '.3f'):>8}{_fmt(ns, ',.0f'):>9}{_fmt(idle, '.1%'):>10}"
              f"   {runs}")
    for label, error in errors.items():
        print(f"{label}: failed: {error}")
    capturing = paired_ratios(results, OvsdCapturing.label, Ovsd.label)
    if capturing:
        print(f"ratio ovsd capturing port 1 / ovsd (same rounds): "
              f"{statistics.median(capturing):.2f} (per round: "
              f"{' '.join(f'{r:.2f}' for r in capturing)})")
    ratios = paired_ratios(results, Ovsd.label, OvsDpdkSwitch.label)
    if ratios:
        med = statistics.median(ratios)
        first, final = TARGETS
        verdict = ("both met" if med >= final else
                   "first met, final NOT met" if med >= first else "NOT met")
        print(f"ratio ovsd / OVS-DPDK (same rounds): {med:.3f} (per round: "
              f"{' '.join(f'{r:.3f}' for r in ratios)}); targets >= {first} first, "
              f">= {final} in the end: {verdict}")
    else:
        print("ratio ovsd / OVS-DPDK: not measured (one of them did not run)")
    ovs = results.get(OvsDpdkSwitch.label, [])
    if ovs:
        cpp = _median([t.stats.get("cycles_per_packet") for t in ovs])
        ghz = _median([t.stats.get("ghz") for t in ovs])
        print(f"OVS-DPDK's PMD: {_fmt(cpp, ',.0f')} processing cycles per packet at "
              f"{_fmt(ghz, '.2f')} GHz (TSC); the issue's reference on an idle machine of "
              f"this kind: about {setup.reference_ovs_mpps} Mpps")
    resets = [r for t in results.get(Ovsd.label, []) for r in t.stats.get("resets", ())]
    if resets:
        print(f"ovsd reset {len(resets)} vhost-user connection(s) during its runs, e.g.: "
              f"{resets[0]}")
    run = median_trial(results.get(Ovsd.label, []))
    if run is not None and run.stats.get("text"):
        print(f"ovsd's `ofctl pmd-stats-show` over the window of round {run.round + 1} "
              "(its median run):")
        for line in run.stats["text"].splitlines():
            print(f"  {line}")
    print_caveat(load_before, [t for trials in results.values() for t in trials])


def print_caveat(load_before: str, trials: list[Trial]) -> None:
    steal = max((t.steal for t in trials), default=0.0)
    print(f"caveat: {os.cpu_count()} cores, shared: core {TESTPMD_CPU} runs testpmd's "
          f"forwarding, core {SWITCH_CPU} the switch's PMD; both also run whatever else the "
          f"machine does (load average {load_before} before, {loadavg()} after; steal up "
          f"to {steal:.0%} of a window). Absolute Mpps move with that load; the ratio, from "
          "runs done side by side, is the figure to compare.")
    if not trials:
        return
    print_foreign([t.foreign for t in trials])


# -- entry points ---------------------------------------------------------------------

def _missing() -> str | None:
    if shutil.which(testpmd_mod.TESTPMD) is None:
        return f"{testpmd_mod.TESTPMD} is not installed (Debian package dpdk-dev)"
    if os.geteuid() != 0:
        return "needs root (hugepages, DPDK's EAL)"
    if not os.path.exists(f"/sys/devices/system/cpu/cpu{SWITCH_CPU}"):
        return f"needs CPUs {TESTPMD_CPU} and {SWITCH_CPU} (testpmd and switch cores)"
    return None


def sweep_stale() -> None:
    """What runs killed with SIGKILL left (their children died with them)."""
    testpmd_mod.sweep_stale()
    ovs_dpdk.sweep_stale()
    ovs_dpdk.sweep_stale_taps(OVS_BRIDGE)
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_STEM}*-*"):
        pid = path.name[len(WORKDIR_STEM):].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)



def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_setup(setup: Setup) -> dict[str, list[Trial]] | None:
    peers = ", --eth-peer: the other port" if setup.eth_peers else ""
    print(f"scenario {setup.name}: testpmd (core {TESTPMD_CPU}, 2 virtio_user ports, "
          f"server=1, {setup.fwd} mode{peers}, start tx_first {TX_FIRST}: {TX_FIRST} x {BURST} frames of 64 bytes per port) <-> "
          f"switch (one PMD on core {SWITCH_CPU}, 2 dpdkvhostuserclient ports, "
          f"{' / '.join(setup.flows)}); OVS-DPDK {ovs_dpdk.version() or ''} alongside",
          flush=True)
    reason = _missing()
    if reason:
        print(f"  skipped: {reason}")
        return None
    contenders = []
    for contender in CONTENDERS:
        reason = contender.missing()
        if reason:
            print(f"  {contender.label}: skipped: {reason}")
        else:
            contenders.append(contender)
    if not contenders:
        print("  skipped: no contender can run here")
        return None
    try:
        ensure_hugepages(512)
    except HugepageError as e:
        print(f"  hugepages: {e} (testpmd falls back to --no-huge; OVS-DPDK may fail)")
    sweep_stale()
    load = loadavg()
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results, errors = run_rounds(setup, contenders)
    except KeyboardInterrupt:
        print("\ninterrupted: processes, sockets, hugepage files and temporary files are "
              "cleaned up")
        raise SystemExit(130)
    finally:
        signal.signal(signal.SIGTERM, old_term)
    print_report(setup, results, errors, load)
    return results


def run_p2p() -> None:
    run_setup(P2P)


def run_p2p_normal() -> None:
    run_setup(P2P_NORMAL)
