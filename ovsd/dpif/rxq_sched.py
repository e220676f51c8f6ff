"""Which PMD polls which rx queue (other_config:pmd-rxq-assign).

``roundrobin``: queues keep their PMD while it lives; a new or orphaned
queue goes to the PMD polling the fewest queues.  ``cycles``: the same, but
"fewest" is measured by the busy time the queues took (the heaviest orphans
placed first), so a loaded PMD does not get more.  Moving a queue costs a
pause on that queue only, so a running assignment is left alone.
"""

from __future__ import annotations

from typing import Hashable

Queue = Hashable


def assign_rxqs(queues: list[Queue], pmds: list[int], current: dict[Queue, int],
                loads: dict[Queue, int], mode: str = "roundrobin",
                why: dict[Queue, str] | None = None) -> dict[Queue, int]:
    """Queue -> PMD; ``why``, when given, gets each newly placed queue's reason."""
    if not pmds:
        return {}
    if mode not in ("roundrobin", "cycles"):
        raise ValueError(f"pmd-rxq-assign {mode!r} is not one of roundrobin, cycles")
    alive = set(pmds)
    out = {q: current[q] for q in queues if current.get(q) in alive}
    weight = (lambda q: loads.get(q, 0)) if mode == "cycles" else (lambda q: 1)
    burden = {p: 0 for p in pmds}
    for q, p in out.items():
        burden[p] += weight(q)
    orphans = [q for q in queues if q not in out]
    if mode == "cycles":
        orphans.sort(key=lambda q: -loads.get(q, 0))
    for q in orphans:
        p = min(pmds, key=lambda p: (burden[p], pmds.index(p)))
        if why is not None:
            why[q] = (f"{mode}: the PMD with the least measured load ({burden[p]} ns)"
                      if mode == "cycles" else
                      f"{mode}: the PMD with the fewest queues ({burden[p]})")
        out[q] = p
        burden[p] += max(weight(q), 1)
    return out
