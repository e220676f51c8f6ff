"""`drop_stats`: where packets were dropped and why (ovsd.dpif.drops).

Three sources, added up per port: the control process's datapath (ports no
PMD polls), the PMDs' reports (collected just before), and what the kernel
or a port's rings counted (a system port's rx ring overruns, an afxdp
socket's full rings).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ovsd.dpif.drops import REASONS

if TYPE_CHECKING:
    from ovsd.switch import Switch


def drop_counts(switch: "Switch") -> dict[str, Counter]:
    """port name -> Counter(reason -> packets), every port the switch knows."""
    out: dict[str, Counter] = {}
    dp_ports = switch.backer.dp.ports
    for (odp, reason), n in switch.backer.dp.drops.items():
        port = dp_ports.get(odp)
        out.setdefault(port.name if port is not None else f"odp port {odp}",
                       Counter())[reason] += n
    for (name, reason), n in switch.pmds.drops.items():
        out.setdefault(name, Counter())[reason] += n
    for name, iface in switch.ifaces.items():
        counts = getattr(iface.netdev, "drop_counts", None)
        if counts is not None:
            for reason, n in counts().items():
                out.setdefault(name, Counter())[reason] += n
    return out


def ports_of(switch: "Switch", target: str | None) -> list[str] | None:
    """The ports ``target`` names (a bridge: its ports; a port: itself;
    None: every port), or None when it names nothing."""
    if target is None:
        return sorted(switch.ifaces)
    if target in switch.backer.bridges:
        return sorted(n for n, i in switch.ifaces.items() if i.bridge == target)
    if target in switch.ifaces:
        return [target]
    return None


def report(counts: dict[str, Counter], ports: list[str], show_all: bool) -> dict:
    """The result: totals and per-port counts (zeros only with ``show_all``),
    and the text `ofctl drop-stats` prints."""
    total: Counter = Counter()
    per_port = {}
    for name in ports:
        c = counts.get(name, Counter())
        total.update(c)
        shown = {r: c.get(r, 0) for r in REASONS if show_all or c.get(r, 0)}
        if shown or show_all:
            per_port[name] = shown
    totals = {r: total.get(r, 0) for r in REASONS if show_all or total.get(r, 0)}
    width = max(map(len, REASONS))
    lines = [f"total: {sum(total.values())} packets dropped"]
    lines += [f"  {r:<{width}} {n:>12}  {REASONS[r]}" for r, n in totals.items()]
    for name, shown in per_port.items():
        lines.append(f"port {name}: {sum(shown.values())} dropped")
        lines += [f"  {r:<{width}} {n:>12}" for r, n in shown.items()]
    return {"total": totals, "ports": per_port, "reasons": dict(REASONS),
            "text": "\n".join(lines) + "\n"}
