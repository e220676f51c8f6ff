"""Capture sessions (`ofctl capture`), in the control process.

A session names a port, directions and a filter; every datapath that may
see the port's frames (the control process's and each PMD's) gets a tap for
it (ovsd.dpif.capture), and what the taps copied flows here: PMDs send it
between polls, the control process's own datapath is drained when a client
reads.  Each session queues a bounded number of packets for its client;
past that, and for whatever the taps could not copy, it counts losses.  A
session whose client stops reading for IDLE seconds ends by itself, so a
killed ofctl never leaves the switch copying frames.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ovsd.ofproto.match import parse_match
from ovsd.packet import key as K

if TYPE_CHECKING:
    from ovsd.switch import Switch

QUEUE = 20000   # packets a session holds for its client
IDLE = 10.0     # seconds without a read before a session ends
DIRECTIONS = ("rx", "tx", "both")
_FILTER_MASK = K.PACKET_MASK & ~K.FIELDS["in_port"].mask


class CaptureError(ValueError):
    """A capture cannot start; the message says why."""


@dataclass
class Session:
    id: int
    port: str
    odp: int
    direction: str
    filter: str
    value: int
    mask: int
    queue: deque = field(default_factory=deque)
    seen: int = 0
    lost: int = 0
    last_read: float = field(default_factory=time.monotonic)

    def tap(self) -> dict:
        return {"id": self.id, "odp": self.odp, "rx": self.direction != "tx",
                "tx": self.direction != "rx", "value": self.value, "mask": self.mask}

    def add(self, packets: list, lost: int) -> None:
        self.lost += lost
        for p in packets:
            if len(self.queue) >= QUEUE:
                self.lost += 1
                continue
            self.queue.append(p)
            self.seen += 1


class Captures:
    def __init__(self, switch: "Switch"):
        self.switch = switch
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)

    def start(self, port: str, direction: str = "both", filter: str | None = None) -> Session:
        if direction not in DIRECTIONS:
            raise CaptureError(f"direction {direction!r}: expected rx, tx or both")
        dp_port = self.switch.backer.dp.port_by_name(port)
        if dp_port is None:
            raise CaptureError(f"no port named {port} in the datapath (see `ofctl show "
                               "BRIDGE`; a port that could not be opened has no frames)")
        value = mask = 0
        if filter:
            try:
                match = parse_match(filter)
            except ValueError as e:
                raise CaptureError(f"bad filter {filter!r}: {e}") from None
            mask = match.mask & _FILTER_MASK
            value = match.value & mask
        session = Session(next(self._ids), port, dp_port.port_no, direction, filter or "",
                          value, mask)
        self.sessions[session.id] = session
        self._apply()
        return session

    def stop(self, sid: int) -> Session | None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            self._drain_local()
            self._apply()
        return session

    def read(self, sid: int, max_packets: int) -> Session | None:
        """The session, after moving what the taps hold into its queue; the
        caller pops up to ``max_packets`` from ``session.queue``."""
        session = self.sessions.get(sid)
        if session is not None:
            session.last_read = time.monotonic()
            self._drain_local()
        return session

    def deliver(self, taps: list) -> None:
        """[[tap id, packets, lost], ...] from a PMD or the local datapath."""
        for sid, packets, lost in taps:
            session = self.sessions.get(sid)
            if session is not None:
                session.add(packets, lost)

    def expire(self) -> None:
        now = time.monotonic()
        idle = [sid for sid, s in self.sessions.items() if now - s.last_read > IDLE]
        for sid in idle:
            self.stop(sid)

    def port_gone(self, name: str) -> None:
        for sid in [sid for sid, s in self.sessions.items() if s.port == name]:
            self.stop(sid)

    def _drain_local(self) -> None:
        dp = self.switch.backer.dp
        if dp.taps:
            self.deliver(dp.taps.drain())

    def _apply(self) -> None:
        taps = [s.tap() for s in self.sessions.values()]
        self.switch.backer.dp.taps.set(taps)
        self.switch.pmds.set_taps(taps)
