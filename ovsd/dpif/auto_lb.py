"""PMD auto load balance (other_config:pmd-auto-lb), with OVS's semantics:
every pmd-auto-lb-rebal-interval minutes, if some PMD was busier than
pmd-auto-lb-load-threshold percent with its rx queues, work out a placement
by measured load (heaviest queue to the least loaded PMD); apply it only if
it lowers the spread of the PMDs' loads (their variance) by at least
pmd-auto-lb-improvement-threshold percent.  A pure function of the
measurements, so the decision is testable without PMDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

Queue = Hashable


@dataclass(frozen=True)
class AutoLbConfig:
    enabled: bool = False
    load_threshold: int = 95          # percent of a PMD's time spent on its queues
    improvement_threshold: int = 25   # percent less variance, at least
    interval_s: float = 60.0          # pmd-auto-lb-rebal-interval is in minutes

    @classmethod
    def from_other_config(cls, oc: dict[str, str]) -> "AutoLbConfig":
        def number(key: str, default: int, low: int, high: int) -> int:
            try:
                return min(max(int(oc.get(key, default)), low), high)
            except ValueError:
                return default
        minutes = number("pmd-auto-lb-rebal-interval", 1, 0, 20000)
        return cls(oc.get("pmd-auto-lb", "false") == "true",
                   number("pmd-auto-lb-load-threshold", 95, 0, 100),
                   number("pmd-auto-lb-improvement-threshold", 25, 0, 100),
                   60.0 * (minutes or 1))  # 0 means the default, as in OVS


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def loads_by_pmd(assignment: dict[Queue, int], busy: dict[Queue, int], pmds: list[int],
                 window_ns: int) -> dict[int, float]:
    """Each PMD's share of the window spent on its queues, in percent."""
    out = {p: 0.0 for p in pmds}
    for q, p in assignment.items():
        if p in out:
            out[p] += 100.0 * busy.get(q, 0) / window_ns
    return out


def plan(assignment: dict[Queue, int], busy: dict[Queue, int], pmds: list[int],
         window_ns: int, cfg: AutoLbConfig) -> tuple[dict[Queue, int] | None, str]:
    """(new assignment or None, why) from the queues' busy ns over the window."""
    if len(pmds) < 2 or window_ns <= 0:
        return None, "fewer than two PMDs"
    current = loads_by_pmd(assignment, busy, pmds, window_ns)
    hottest = max(current.values())
    if hottest < cfg.load_threshold:
        return None, (f"no PMD above {cfg.load_threshold}% (the busiest: {hottest:.0f}%)")
    projected = {p: 0.0 for p in pmds}
    new: dict[Queue, int] = {}
    for q in sorted(assignment, key=lambda q: (-busy.get(q, 0), str(q))):
        p = min(pmds, key=lambda p: (projected[p], p != assignment[q], pmds.index(p)))
        new[q] = p
        projected[p] += 100.0 * busy.get(q, 0) / window_ns
    before, after = _variance(list(current.values())), _variance(list(projected.values()))
    improvement = 100.0 * (before - after) / before if before else 0.0
    if new == assignment or improvement < cfg.improvement_threshold:
        return None, (f"a new placement would lower the load variance by {improvement:.0f}%, "
                      f"less than {cfg.improvement_threshold}%")
    return new, (f"PMD loads {_fmt(current)} -> {_fmt(projected)} (variance "
                 f"{improvement:.0f}% lower)")


def _fmt(loads: dict[int, float]) -> str:
    return "/".join(f"{v:.0f}%" for _, v in sorted(loads.items()))
