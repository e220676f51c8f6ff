"""The MAC learning table behind the NORMAL action (ovs-appctl fdb/show).

Entries are keyed by (MAC, VLAN): learning is per VLAN, so a MAC learned on
VLAN 10 is unknown on VLAN 20.  Entries age out after ``aging`` seconds without
being seen, and when the table is full the least recently seen entry makes
room, as in OVS (defaults: 300 s, 8192 entries; Bridge other_config
mac-aging-time and mac-table-size).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, NamedTuple

DEFAULT_AGING = 300
DEFAULT_MAX_ENTRIES = 8192


class MacEntry(NamedTuple):
    port: int
    vlan: int
    mac: int
    age: int  # seconds since last seen


class MacTable:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 aging: float = DEFAULT_AGING,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.aging = aging
        self._clock = clock
        # (mac, vlan) -> [port, last_seen]; ordered oldest-seen first so that
        # expiry and eviction look only at the front.
        self._entries: OrderedDict[tuple[int, int], list] = OrderedDict()
        self.n_learned = 0
        self.n_expired = 0
        self.n_evicted = 0
        self.n_moved = 0

    def __len__(self) -> int:
        return len(self._entries)

    def learn(self, mac: int, vlan: int, port: int) -> bool:
        """Record that ``mac`` on ``vlan`` was seen on ``port``.

        Returns True when forwarding decisions may change: a new entry or a
        MAC that moved to another port (cached flows that relied on the old
        answer must then be revalidated).
        """
        now = self._clock()
        self._expire(now)
        k = (mac, vlan)
        entry = self._entries.get(k)
        if entry is not None:
            self._entries.move_to_end(k)
            entry[1] = now
            if entry[0] == port:
                return False
            entry[0] = port
            self.n_moved += 1
            return True
        if self.max_entries <= 0:
            return False
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
            self.n_evicted += 1
        self._entries[k] = [port, now]
        self.n_learned += 1
        return True

    def lookup(self, mac: int, vlan: int) -> int | None:
        entry = self._entries.get((mac, vlan))
        if entry is None:
            return None
        if self._clock() - entry[1] >= self.aging:
            del self._entries[(mac, vlan)]
            self.n_expired += 1
            return None
        return entry[0]

    def flush(self, port: int | None = None) -> int:
        """Forget every entry (or those on ``port``); returns how many."""
        if port is None:
            n = len(self._entries)
            self._entries.clear()
            return n
        gone = [k for k, (p, _) in self._entries.items() if p == port]
        for k in gone:
            del self._entries[k]
        return len(gone)

    def expire_now(self) -> int:
        """Drop entries that aged out; returns how many went."""
        before = self.n_expired
        self._expire(self._clock())
        return self.n_expired - before

    def entries(self) -> list[MacEntry]:
        now = self._clock()
        self._expire(now)
        return [MacEntry(p, vlan, mac, int(now - seen))
                for (mac, vlan), (p, seen) in self._entries.items()]

    def _expire(self, now: float) -> None:
        while self._entries:
            k, (_, seen) = next(iter(self._entries.items()))
            if now - seen < self.aging:
                break
            del self._entries[k]
            self.n_expired += 1


def format_fdb(entries: list[MacEntry], port_namer: Callable[[int], str]) -> str:
    """The table as ``ovs-appctl fdb/show`` prints it."""
    lines = [" port  VLAN  MAC                Age"]
    for e in sorted(entries, key=lambda e: (e.port, e.vlan, e.mac)):
        mac = ":".join(f"{b:02x}" for b in e.mac.to_bytes(6, "big"))
        lines.append(f"{port_namer(e.port):>5}  {e.vlan:4d}  {mac}  {e.age:>3}")
    return "\n".join(lines) + "\n"
