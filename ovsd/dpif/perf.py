"""PMD performance counters and their pmd-stats-show / pmd-rxq-show text.

Counters are plain dicts so they travel over the PMD channel as they are.
Times are nanoseconds of wall clock, measured around each poll: OVS counts
TSC cycles, ovsd counts time, and says so in its output.
"""

from __future__ import annotations


def new_counters() -> dict:
    return {"packets": 0, "simple_hits": 0, "emc_hits": 0, "megaflow_hits": 0,
            "subtable_probes": 0,
            "upcalls": 0, "lost": 0, "userspace": 0, "batches": 0,
            "busy_ns": 0, "idle_ns": 0}


def pmd_counters(dp_stats, busy_ns: int, idle_ns: int, batches: int) -> dict:
    """A PMD's (or the main thread's) counters from its datapath's stats."""
    return {"packets": dp_stats.n_packets, "simple_hits": dp_stats.n_simple_hit,
            "emc_hits": dp_stats.n_emc_hit,
            "megaflow_hits": dp_stats.n_megaflow_hit,
            "subtable_probes": dp_stats.n_subtable_probes,
            "upcalls": dp_stats.n_upcalls, "lost": dp_stats.n_lost,
            "userspace": dp_stats.n_userspace, "batches": batches,
            "busy_ns": busy_ns, "idle_ns": idle_ns}


def minus(a: dict, b: dict) -> dict:
    """Counters ``a`` since the snapshot ``b`` (pmd-stats-clear keeps a snapshot)."""
    return {k: v - b.get(k, 0) for k, v in a.items()}


def _ratio(n: int, d: int) -> str:
    return f"{n / d:.2f}" if d else "0.00"


def format_pmd_stats(title: str, c: dict, with_times: bool = True) -> str:
    pkts = c["packets"]
    lines = [
        f"{title}:",
        f"  packets received: {pkts}",
        f"  simple match hits: {c['simple_hits']}",
        f"  emc hits: {c['emc_hits']}",
        f"  megaflow hits: {c['megaflow_hits']}",
        f"  avg. subtable lookups per megaflow hit: "
        f"{_ratio(c['subtable_probes'], c['megaflow_hits'])}",
        f"  miss with success upcall: {c['upcalls'] - c['lost']}",
        f"  miss with failed upcall: {c['lost']}",
        f"  avg. packets per rx batch: {_ratio(pkts, c['batches'])}",
    ]
    if with_times:
        busy, idle = c["busy_ns"], c["idle_ns"]
        total = busy + idle
        share = (lambda x: 100.0 * x / total) if total else (lambda x: 0.0)
        lines += [
            f"  idle time: {idle / 1e9:.3f} s ({share(idle):.2f}%)",
            f"  processing time: {busy / 1e9:.3f} s ({share(busy):.2f}%)",
            f"  avg processing time per packet: "
            f"{(busy / pkts if pkts else 0):.0f} ns ({busy}/{pkts})",
        ]
    return "\n".join(lines) + "\n"


def format_rxq_show(pmds: list[dict]) -> str:
    """``pmds``: [{"pmd_id", "core", "rxqs": [{"port", "qid", "busy_ns", "enabled"}],
    "busy_ns", "idle_ns"}]"""
    out = []
    for p in pmds:
        out.append(f"pmd thread numa_id 0 core_id {p['core']}:")
        out.append("  isolated : false")
        total = p["busy_ns"] + p["idle_ns"]
        for q in p["rxqs"]:
            usage = int(100 * q["busy_ns"] / total) if total else 0
            state = "enabled" if q.get("enabled", True) else "disabled"
            out.append(f"  port: {q['port']:<16}  queue-id: {q['qid']:>2} ({state})"
                       f"  pmd usage: {usage:>2} %")
            if q.get("placed"):
                out.append(f"    placed: {q['placed']}")
        overhead = int(100 * max(0, p["busy_ns"] - sum(q["busy_ns"] for q in p["rxqs"]))
                       / total) if total else 0
        out.append(f"  overhead: {overhead:>2} %")
    return "\n".join(out) + ("\n" if out else "")
