"""An OpenFlow rule (a flow table entry) and its counters."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

# Rules are named by id between the control process and the PMDs' replicas.
_ids = itertools.count(1)


@dataclass(eq=False)
class Rule:
    table_id: int
    priority: int
    match: object  # ovsd.ofproto.match.Match (value/mask in key space)
    actions: tuple
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    importance: int = 0
    flags: frozenset = frozenset()
    created: float = field(default_factory=time.time)
    modified: float = 0.0
    last_used: float = 0.0
    n_packets: int = 0
    n_bytes: int = 0
    id: int = field(default_factory=lambda: next(_ids))
    rev: int = 0  # bumped when the actions change, so replicas know to refresh

    def __post_init__(self) -> None:
        if not self.modified:
            self.modified = self.created
        if not self.last_used:
            self.last_used = self.created

    # The classifier sees a rule through these three attributes.
    @property
    def value(self) -> int:
        return self.match.value

    @property
    def mask(self) -> int:
        return self.match.mask

    def credit(self, n_packets: int, n_bytes: int, now: float) -> None:
        self.n_packets += n_packets
        self.n_bytes += n_bytes
        self.last_used = now

    def expired(self, now: float) -> str | None:
        """'idle' or 'hard' when a timeout has passed, else None."""
        if self.hard_timeout and now - self.modified >= self.hard_timeout:
            return "hard"
        if self.idle_timeout and now - self.last_used >= self.idle_timeout:
            return "idle"
        return None
