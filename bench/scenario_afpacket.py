"""Scenarios `afpacket-p2p` and `afpacket-10k`: real frames through system ports.

trafgen (one process, core 0) sends 64-byte UDP frames into a veth from a
generator namespace; the switch under test forwards them from that veth's
outer end to a second veth on core 1; the sink namespace's end counts what
arrives (bench/topology.py).  On the same veths, in the same invocation:
ovsd, Open vSwitch's userspace datapath and the bare Python forwarder
(bench/contenders.py).  Rounds interleave the contenders (the order rotates
each round), so every ratio compares runs done side by side; each run is a
warm-up, then a measured window.  Offered is what trafgen put on the wire in
the window, delivered what the sink got, loss the difference.

- afpacket-p2p: one flow, and the switches hold `in_port=1,actions=output:2`.
- afpacket-10k: 10,000 flows (625 source addresses x 16 source ports, sent
  round robin) through a table of 96 rules on nw_src prefixes and tp_src
  ranges plus a priority-0 default, all out of port 2: megaflows must keep
  those bits, and the exact-match cache (8192 entries) cannot hold every
  flow.  ovsd also runs the single-flow setup in the same rounds, for its
  10k/1-flow ratio.

BENCH_RUNS and BENCH_WINDOW (seconds) in the environment change the number
of rounds (default 3) and the window (default 3 s).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field

from bench import topology as topo_mod
from bench.topology import loadavg, print_foreign
from bench.contenders import Bare, ContenderError, Ovsd, OvsNetdev
from bench.topology import GEN_CPU, SWITCH_CPU, CpuShare, Topology, Trafgen

RUNS = max(1, int(os.environ.get("BENCH_RUNS", "3")))
WINDOW = max(0.5, float(os.environ.get("BENCH_WINDOW", "3.0")))
WARMUP = 1.0
FORWARD_TIMEOUT = 15.0
BUDGET = 300.0  # seconds per scenario: later rounds are dropped past it

P2P_FLOWS = ["in_port=1,actions=output:2"]
SRC_BASE = 10 << 24 | 1 << 16  # 10.1.0.0
N_ADDRS, N_PORTS = 625, 16     # coprime counts: round robin over k gives every pair once
PORT_BASE = 0x1000

TARGETS = {("ovsd", "OVS netdev"): 1.3, ("ovsd", "bare forwarder"): 0.9,
           ("ovsd", "ovsd, 1 flow"): 0.8,
           ("ovsd afxdp", "OVS afxdp"): 0.9, ("ovsd afxdp", "ovsd"): 1.5}


# -- traffic and rule tables -----------------------------------------------------------

def sport(j: int) -> int:
    """Source port j (0..15): one in each tp_src/0xff00 and /0xfff0 range."""
    return PORT_BASE + 0x101 * j


def flows_10k() -> list[tuple[int, int]]:
    """The 10,000 (source address, source port) pairs, in sending order."""
    return [(SRC_BASE + k % N_ADDRS, sport(k % N_PORTS)) for k in range(N_ADDRS * N_PORTS)]


def p2p_traffic() -> list[tuple[int, int]]:
    return [(SRC_BASE + 1, sport(0))]


def rules_10k() -> list[str]:
    """96 rules in three shapes (so the classifier has several masks) and a
    default; every rule outputs to port 2, so all traffic is delivered and
    the rule only decides the megaflow's mask."""
    ip = topo_mod.ipv4_text
    rules = []
    # /28 source blocks, each with one source-port range of 16.
    for b in range(48):
        rules.append(f"priority=300,udp,nw_src={ip(SRC_BASE + 16 * b)}/28,"
                     f"tp_src={PORT_BASE + 0x100 * (b % 16):#x}/0xfff0,actions=output:2")
    # Every other /26 source block.
    for c in range(0, 32, 2):
        rules.append(f"priority=200,udp,nw_src={ip(SRC_BASE + 64 * c)}/26,actions=output:2")
    # Every other 256-port range, most beyond the ports sent.
    for j in range(1, 64, 2):
        rules.append(f"priority=100,udp,tp_src={PORT_BASE + 0x100 * j:#x}/0xff00,"
                     "actions=output:2")
    rules.append("priority=0,actions=output:2")
    return rules


def rule_for(addr: int, port: int, rules: list[str] | None = None) -> str:
    """The rule a flow from (addr, port) hits in rules_10k(): the reference
    the unit tests check the table against."""
    best = None
    for text in rules or rules_10k():
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "nw_src" in fields:
            net, plen = fields["nw_src"].split("/")
            a, b_, c, d = (int(x) for x in net.split("."))
            mask = (0xFFFFFFFF << (32 - int(plen))) & 0xFFFFFFFF
            if addr & mask != (a << 24 | b_ << 16 | c << 8 | d):
                continue
        if "tp_src" in fields:
            value, mask = (int(x, 0) for x in fields["tp_src"].split("/"))
            if port & mask != value:
                continue
        prio = int(fields["priority"])
        if best is None or prio > best[0]:
            best = (prio, text)
    assert best is not None, "rules_10k() has a priority-0 default"
    return best[1]


# -- measuring -----------------------------------------------------------------------

@dataclass
class Entry:
    """One row: a contender with a traffic profile and a flow table."""
    label: str
    contender: object
    traffic: list[tuple[int, int]]
    flows: list[str]
    details: bool = False  # also count the datapath's megaflows after the window


@dataclass
class Trial:
    """One measured window."""
    round: int
    offered: int
    refused: int        # frames the generator's veth did not take (not the switch's loss)
    delivered: int
    seconds: float
    cores: dict[int, CpuShare]
    stats: dict = field(default_factory=dict)
    megaflows: int | None = None
    foreign: dict[str, float] = field(default_factory=dict)  # other processes' CPU, cores

    @property
    def foreign_total(self) -> float:
        return sum(self.foreign.values())

    @property
    def offered_mpps(self) -> float:
        return self.offered / self.seconds / 1e6

    @property
    def delivered_mpps(self) -> float:
        return self.delivered / self.seconds / 1e6

    @property
    def loss(self) -> float:
        return 1 - self.delivered / self.offered if self.offered else 0.0


def _wait_forwarding(topo: Topology, label: str) -> None:
    start = topo.delivered()
    deadline = time.monotonic() + FORWARD_TIMEOUT
    while topo.delivered() - start < 1000:
        if time.monotonic() > deadline:
            raise ContenderError(f"{label}: fewer than 1000 frames reached the sink within "
                                 f"{FORWARD_TIMEOUT:.0f} s of starting the generator")
        time.sleep(0.05)


def measure(topo: Topology, entry: Entry, rnd: int) -> Trial:
    config = topo_mod.trafgen_config(entry.traffic)
    with entry.contender.running(topo, entry.flows) as switch, \
            Trafgen(topo.gen, topo.gen_link.inner, config):
        _wait_forwarding(topo, entry.label)
        time.sleep(WARMUP)
        switch.before_window()
        procs0, cpu0 = topo_mod.process_ticks(), topo_mod.cpu_times()
        (off0, ref0), del0, t0 = topo.offered(), topo.delivered(), time.monotonic()
        time.sleep(WINDOW)
        (off1, ref1), del1, t1 = topo.offered(), topo.delivered(), time.monotonic()
        procs1, cpu1 = topo_mod.process_ticks(), topo_mod.cpu_times()
        ours = {os.getpid(), *topo_mod.descendants(os.getpid()),
                *(switch.pids() if hasattr(switch, "pids") else ())}
        stats = switch.after_window()
        megaflows = switch.megaflows() if entry.details and hasattr(switch, "megaflows") \
            else None
    cores = {c: topo_mod.cpu_shares(cpu0[c], cpu1[c]) for c in (GEN_CPU, SWITCH_CPU)}
    foreign = topo_mod.foreign_cpu(procs0, procs1, ours, t1 - t0)
    return Trial(rnd, off1 - off0, ref1 - ref0, del1 - del0, t1 - t0, cores, stats, megaflows,
                 foreign)


def run_rounds(topo: Topology, entries: list[Entry]) -> tuple[dict[str, list[Trial]],
                                                              dict[str, str]]:
    results: dict[str, list[Trial]] = {e.label: [] for e in entries}
    errors: dict[str, str] = {}
    deadline = time.monotonic() + BUDGET
    for rnd in range(RUNS):
        if time.monotonic() > deadline:
            print(f"  time budget ({BUDGET:.0f} s) spent: stopping after {rnd} rounds")
            break
        order = entries[rnd % len(entries):] + entries[:rnd % len(entries)]
        for entry in order:
            if entry.label in errors:
                continue
            try:
                trial = measure(topo, entry, rnd)
            except (ContenderError, RuntimeError, OSError, subprocess.SubprocessError) as e:
                errors[entry.label] = str(e)
                print(f"  round {rnd + 1}: {entry.label} failed, skipped from now on: {e}",
                      flush=True)
                continue
            results[entry.label].append(trial)
            print(f"  round {rnd + 1}/{RUNS} {entry.label:<15} offered "
                  f"{trial.offered_mpps:.3f} Mpps, delivered {trial.delivered_mpps:.3f} "
                  f"Mpps", flush=True)
    return results, errors


# -- reporting -----------------------------------------------------------------------

def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: dict[str, list[Trial]]) -> None:
    print(f"{'contender':<16}{'offered':>9}{'delivered':>11}{'loss':>8}{'core0':>8}"
          f"{'core1':>8}{'ns/pkt':>9}{'PMD idle':>10}")
    print(f"{'':<16}{'Mpps':>9}{'Mpps':>11}{'':>8}{'busy':>8}{'busy':>8}")
    for label, trials in results.items():
        if not trials:
            continue
        m = {
            "offered": _median([t.offered_mpps for t in trials]),
            "delivered": _median([t.delivered_mpps for t in trials]),
            "loss": _median([t.loss for t in trials]),
            "core0": _median([t.cores[GEN_CPU].busy for t in trials]),
            "core1": _median([t.cores[SWITCH_CPU].busy for t in trials]),
            "ns": _median([t.stats.get("ns_per_packet") for t in trials]),
            "idle": _median([t.stats.get("idle_share") for t in trials]),
        }
        print(f"{label:<16}{_fmt(m['offered'], '.3f'):>9}{_fmt(m['delivered'], '.3f'):>11}"
              f"{_fmt(m['loss'], '.1%'):>8}{_fmt(m['core0'], '.0%'):>8}"
              f"{_fmt(m['core1'], '.0%'):>8}{_fmt(m['ns'], ',.0f'):>9}"
              f"{_fmt(m['idle'], '.1%'):>10}")
    print("per run, delivered Mpps (offered):")
    for label, trials in results.items():
        if not trials:
            continue
        runs = "  ".join(f"{t.delivered_mpps:.3f} ({t.offered_mpps:.3f})" for t in trials)
        print(f"  {label:<16}{runs}")
    print(f"how the cores spent the window (medians; user / system / softirq): core {GEN_CPU} "
          f"is trafgen plus the kernel's delivery into the switch's socket, core {SWITCH_CPU} "
          "the switch plus its transmits and the sink's receive")
    for label, trials in results.items():
        if not trials:
            continue
        split = []
        for cpu in (GEN_CPU, SWITCH_CPU):
            u, y, q = (_median([getattr(t.cores[cpu], f) for t in trials])
                       for f in ("user", "system", "softirq"))
            split.append(f"core {cpu} {u:4.0%} / {y:4.0%} / {q:4.0%}")
        print(f"  {label:<16}" + "    ".join(split))
    for label, trials in results.items():
        refused = sum(t.refused for t in trials)
        if refused:
            print(f"  {label}: the generator's veth refused {refused:,} frames (backlog full;"
                  " not counted as offered)")


def paired_ratios(results: dict[str, list[Trial]], a: str, b: str) -> list[float]:
    """delivered(a) / delivered(b) for each round where both ran."""
    by_round = {t.round: t for t in results.get(b, [])}
    return [t.delivered / by_round[t.round].delivered for t in results.get(a, [])
            if t.round in by_round and by_round[t.round].delivered]


def print_ratios(results: dict[str, list[Trial]], pairs: list[tuple[str, str]]) -> None:
    for a, b in pairs:
        ratios = paired_ratios(results, a, b)
        if not ratios:
            print(f"ratio {a} / {b}: not measured (one of them did not run)")
            continue
        med = statistics.median(ratios)
        target = TARGETS.get((a, b))
        verdict = "" if target is None else \
            f"; target >= {target}: {'met' if med >= target else 'NOT met'}"
        print(f"ratio {a} / {b} (delivered, same rounds): {med:.2f} "
              f"(per round: {' '.join(f'{r:.2f}' for r in ratios)}){verdict}")


def print_where_time_goes(results: dict[str, list[Trial]], label: str = "ovsd") -> None:
    trials = results.get(label, [])
    idle = _median([t.stats.get("idle_share") for t in trials])
    loss = _median([t.loss for t in trials])
    if idle is None or loss is None:
        return
    if idle < 0.05 and loss > 0.01:
        verdict = (f"{label}'s PMD is the limit: idle {idle:.1%} of the window while "
                   f"{loss:.1%} of the offered frames were lost; the generator offers more")
    elif loss <= 0.01:
        verdict = (f"the generator is the limit: {label} kept up (loss {loss:.1%}) with its "
                   f"PMD idle {idle:.1%} of the window")
    else:
        verdict = (f"{label} lost {loss:.1%} with its PMD idle {idle:.1%}: frames were "
                   "dropped while the PMD had time (ring size or scheduling, not CPU)")
    print(f"where the time goes: {verdict}.")


def print_caveat(load_start: str, trials: list[Trial]) -> None:
    steal = max((t.cores[c].steal for t in trials for c in t.cores), default=0.0)
    load_end = loadavg()
    print(f"caveat: {os.cpu_count()} cores, shared: core {GEN_CPU} runs trafgen and the "
          f"kernel's delivery into the switch's socket, core {SWITCH_CPU} the switch and the "
          "kernel's veth transmit and sink-side receive; both also run whatever else the "
          f"machine does (load average {load_start} before, {load_end} after; steal up to "
          f"{steal:.0%} of a window). Absolute Mpps move with that load; the ratios, from "
          "runs done side by side, are the figures to compare.")
    if not trials:
        return
    print_foreign([t.foreign for t in trials])


def _contenders(entries: list[Entry]) -> list[Entry]:
    """The entries whose contender can run here; the others are reported."""
    ready = []
    for entry in entries:
        reason = entry.contender.missing()
        if reason:
            print(f"  {entry.label}: skipped: {reason}")
        else:
            ready.append(entry)
    return ready


def _run_scenario(title: str, entries_fn) -> dict[str, list[Trial]] | None:
    print(title, flush=True)
    for reason in (topo_mod.missing(), Trafgen.missing()):
        if reason:
            print(f"  skipped: {reason}")
            return None
    entries = _contenders(entries_fn())
    if not entries:
        print("  skipped: no contender can run here")
        return None
    load = loadavg()
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with topo_mod.topology() as topo:
            results, errors = run_rounds(topo, entries)
    except KeyboardInterrupt:
        print("\ninterrupted: namespaces, veths, processes and temporary files are cleaned up")
        raise SystemExit(130)
    finally:
        signal.signal(signal.SIGTERM, old_term)
    print(f"\nmedians of {max(map(len, results.values()), default=0)} runs of {WINDOW:.1f} s "
          f"after a {WARMUP:.1f} s warm-up; core busy shares are over the window:")
    print_table(results)
    for label, error in errors.items():
        print(f"{label}: failed: {error}")
    print_caveat(load, [t for trials in results.values() for t in trials])
    return results


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_p2p() -> None:
    def entries() -> list[Entry]:
        traffic = p2p_traffic()
        return [Entry("ovsd", Ovsd(), traffic, P2P_FLOWS),
                Entry("OVS netdev", OvsNetdev(), traffic, P2P_FLOWS),
                Entry("bare forwarder", Bare(), traffic, P2P_FLOWS),
                Entry("ovsd capturing", Ovsd(capturing=True), traffic, P2P_FLOWS)]
    results = _run_scenario(
        f"scenario afpacket-p2p: 64-byte UDP frames, 1 flow, trafgen (core {GEN_CPU}) -> veth "
        f"-> switch (core {SWITCH_CPU}, in_port=1,actions=output:2) -> veth -> sink; "
        f"OVS {OvsNetdev.version() or '(not installed)'} userspace datapath alongside",
        entries)
    if results is None:
        return
    print_ratios(results, [("ovsd", "OVS netdev"), ("ovsd", "bare forwarder"),
                           ("ovsd capturing", "ovsd")])
    print_where_time_goes(results)


def run_afxdp_p2p() -> None:
    """The afpacket-p2p setup with both veths as afxdp ports, beside OVS's own
    afxdp ports and ovsd's AF_PACKET path in the same rounds."""
    def entries() -> list[Entry]:
        traffic = p2p_traffic()
        return [Entry("ovsd afxdp", Ovsd("afxdp"), traffic, P2P_FLOWS),
                Entry("OVS afxdp", OvsNetdev("afxdp", ("options:xdp-mode=best-effort",)),
                      traffic, P2P_FLOWS),
                Entry("ovsd", Ovsd(), traffic, P2P_FLOWS)]
    results = _run_scenario(
        f"scenario afxdp-p2p: the afpacket-p2p topology and generator, the veths as afxdp "
        f"ports (xdp-mode best-effort: native on a veth); OVS "
        f"{OvsNetdev.version() or '(not installed)'} afxdp ports and ovsd's system ports "
        "alongside", entries)
    if results is None:
        return
    print_ratios(results, [("ovsd afxdp", "OVS afxdp"), ("ovsd afxdp", "ovsd")])
    print_where_time_goes(results, "ovsd afxdp")


def run_10k() -> None:
    def entries() -> list[Entry]:
        many, rules = flows_10k(), rules_10k()
        return [Entry("ovsd, 1 flow", Ovsd(), p2p_traffic(), P2P_FLOWS),
                Entry("ovsd", Ovsd(), many, rules, details=True),
                Entry("OVS netdev", OvsNetdev(), many, rules, details=True),
                Entry("bare forwarder", Bare(), many, rules)]
    results = _run_scenario(
        f"scenario afpacket-10k: 64-byte UDP frames, {N_ADDRS * N_PORTS:,} flows "
        f"({N_ADDRS} source addresses x {N_PORTS} source ports, round robin) through "
        f"{len(rules_10k()) - 1} rules on nw_src prefixes and tp_src ranges plus a default; "
        "`ovsd, 1 flow` is the afpacket-p2p setup, run in the same rounds", entries)
    if results is None:
        return
    print_ratios(results, [("ovsd", "OVS netdev"), ("ovsd", "bare forwarder"),
                           ("ovsd", "ovsd, 1 flow")])
    print_where_time_goes(results)
    print_cache_counts(results, "ovsd")
    print_cache_counts(results, "OVS netdev")


def print_cache_counts(results: dict[str, list[Trial]], label: str) -> None:
    trials = results.get(label, [])
    if not trials:
        return
    print(f"{label}'s datapath counters per run (pmd-stats-show over the window):")
    for t in trials:
        s = t.stats
        packets = s.get("packets", 0) or 1
        parts = [f"packets {s.get('packets', 0):,}"]
        for key, name in (("simple_hits", "simple match"), ("emc_hits", "EMC"),
                          ("smc_hits", "SMC"), ("megaflow_hits", "megaflow"),
                          ("upcalls", "upcalls")):
            if key in s and (s[key] or key != "smc_hits"):
                parts.append(f"{name} {s[key]:,} ({s[key] / packets:.1%})")
        if s.get("megaflow_hits") and "subtable_probes" in s:
            parts.append(f"subtables/megaflow hit {s['subtable_probes'] / s['megaflow_hits']:.2f}")
        if "lost" in s:
            parts.append(f"lost {s['lost']:,}")
        if t.megaflows is not None:
            parts.append(f"megaflows in the datapath {t.megaflows:,}")
        print(f"  round {t.round + 1}: " + ", ".join(parts))
