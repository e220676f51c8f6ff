"""The MAC learning table behind the NORMAL action (ovs-appctl fdb/show).

Entries are keyed by (MAC, VLAN): learning is per VLAN, so a MAC learned on
VLAN 10 is unknown on VLAN 20.  Entries age out after ``aging`` seconds without
being seen, and when the table is full the least recently seen entry makes
room, as in OVS (defaults: 300 s, 8192 entries; Bridge other_config
mac-aging-time and mac-table-size).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Callable, NamedTuple

DEFAULT_AGING = 300
DEFAULT_MAX_ENTRIES = 8192
JOURNAL_LENGTH = 8192

# Journal operations: what replicas (PMDs) replay to follow this table.
LEARN, FORGET, FLUSH = "learn", "forget", "flush"


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
        # Every change, numbered, so that replicas can catch up from where
        # they were; a replica too far behind gets the whole table instead.
        self.seq = 0
        self._journal: deque = deque(maxlen=JOURNAL_LENGTH)

    def _log(self, op: str, mac: int, vlan: int, port: int) -> None:
        self.seq += 1
        self._journal.append((self.seq, op, mac, vlan, port))

    def journal_since(self, seq: int) -> list | None:
        """Changes after ``seq`` as (op, mac, vlan, port), or None when the
        journal no longer reaches back that far."""
        if seq >= self.seq:
            return []
        if not self._journal or self._journal[0][0] > seq + 1:
            return None
        return [entry[1:] for entry in self._journal if entry[0] > seq]

    def replay(self, changes) -> bool:
        """Apply journal entries from another table; True if anything changed."""
        changed = False
        for op, mac, vlan, port in changes:
            if op == LEARN:
                changed |= self.learn(mac, vlan, port)
            elif op == FORGET:
                changed |= self.forget(mac, vlan)
            elif op == FLUSH:
                changed |= bool(self.flush(None if port < 0 else port))
        return changed

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
            self._log(LEARN, mac, vlan, port)
            return True
        if self.max_entries <= 0:
            return False
        while len(self._entries) >= self.max_entries:
            (old_mac, old_vlan), _ = self._entries.popitem(last=False)
            self.n_evicted += 1
            self._log(FORGET, old_mac, old_vlan, 0)
        self._entries[k] = [port, now]
        self.n_learned += 1
        self._log(LEARN, mac, vlan, port)
        return True

    def forget(self, mac: int, vlan: int) -> bool:
        if self._entries.pop((mac, vlan), None) is None:
            return False
        self._log(FORGET, mac, vlan, 0)
        return True

    def lookup(self, mac: int, vlan: int) -> int | None:
        entry = self._entries.get((mac, vlan))
        if entry is None:
            return None
        if self._clock() - entry[1] >= self.aging:
            del self._entries[(mac, vlan)]
            self.n_expired += 1
            self._log(FORGET, mac, vlan, 0)
            return None
        return entry[0]

    def flush(self, port: int | None = None) -> int:
        """Forget every entry (or those on ``port``); returns how many."""
        if port is None:
            n = len(self._entries)
            self._entries.clear()
        else:
            gone = [k for k, (p, _) in self._entries.items() if p == port]
            for k in gone:
                del self._entries[k]
            n = len(gone)
        self._log(FLUSH, 0, 0, -1 if port is None else port)
        return n

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
            self._log(FORGET, k[0], k[1], 0)


def format_fdb(entries: list[MacEntry], port_namer: Callable[[int], str]) -> str:
    """The table as ``ovs-appctl fdb/show`` prints it."""
    lines = [" port  VLAN  MAC                Age"]
    for e in sorted(entries, key=lambda e: (e.port, e.vlan, e.mac)):
        mac = ":".join(f"{b:02x}" for b in e.mac.to_bytes(6, "big"))
        lines.append(f"{port_namer(e.port):>5}  {e.vlan:4d}  {mac}  {e.age:>3}")
    return "\n".join(lines) + "\n"
