"""Taps: copies of the frames a port receives, sends or drops, taken inside
the datapath (so they work on vhost-user and afxdp ports, which tcpdump
cannot see), for `ofctl capture`.

A Datapath holds the taps the control process set (``set_taps``); with none,
the packet walk pays one truth test per burst.  A tap keeps what passes its
filter (an ovs-ofctl match, as a key/mask pair) in a bounded buffer that its
owner drains (``take``); what does not fit is counted as the capture's loss,
never waited for, so capturing cannot slow the switch beyond the copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ovsd.packet.parse import extract_keys

RX, TX = "rx", "tx"
#: Frames a tap holds between drains; past that, it counts instead of copying.
TAP_BUFFER = 4096
SNAPLEN = 65535
#: Frames a tap copies per second at most: the copies travel to the control
#: process and on to ofctl as JSON, which takes far longer than forwarding,
#: so past this the tap counts losses instead of slowing the PMD.
RATE = 20_000
_WINDOW = 0.1


@dataclass
class Tap:
    id: int
    odp: int
    rx: bool
    tx: bool
    value: int = 0  # filter, in key space without in_port; mask 0: everything
    mask: int = 0
    packets: list = field(default_factory=list)  # (time, dir, frame, drop reason)
    lost: int = 0
    _window_end: float = 0.0
    _budget: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "Tap":
        return cls(d["id"], d["odp"], d["rx"], d["tx"], d.get("value", 0), d.get("mask", 0))

    def see(self, frames: list, direction: str, reason: str | None = None) -> None:
        if self.mask:
            frames = [f for f, k in zip(frames, extract_keys(frames))
                      if k & self.mask == self.value]
        now = time.monotonic()
        if now >= self._window_end:
            self._window_end = now + _WINDOW
            self._budget = int(RATE * _WINDOW)
        room = max(min(TAP_BUFFER - len(self.packets), self._budget), 0)
        if len(frames) > room:
            self.lost += len(frames) - room
            frames = frames[:room]
        self._budget -= len(frames)
        stamp = time.time()
        self.packets.extend((stamp, direction, bytes(f[:SNAPLEN]), reason) for f in frames)

    def take(self) -> tuple[list, int]:
        packets, lost = self.packets, self.lost
        self.packets, self.lost = [], 0
        return packets, lost


class Taps(dict):
    """The taps of one Datapath: datapath port -> its taps.  A dict, so that the
    test every burst makes (``if dp.taps:``) is a C-level truth test: with no
    capture running that test is all the fast path pays."""

    def set(self, taps: list[dict]) -> None:
        by_port: dict[int, list[Tap]] = {}
        old = {t.id: t for ts in self.values() for t in ts}
        for d in taps:
            tap = old.get(d["id"]) or Tap.from_dict(d)
            by_port.setdefault(tap.odp, []).append(tap)
        self.clear()
        self.update(by_port)

    def rx(self, odp: int, frames: list) -> None:
        for tap in self.get(odp, ()):
            if tap.rx:
                tap.see(frames, RX)

    def tx(self, odp: int, frames: list) -> None:
        for tap in self.get(odp, ()):
            if tap.tx:
                tap.see(frames, TX)

    def dropped(self, odp: int, frames: list, reason: str) -> None:
        """Frames received on ``odp`` that the datapath dropped, with the reason."""
        for tap in self.get(odp, ()):
            if tap.rx:
                tap.see(frames, RX, reason)

    def drain(self) -> list[list]:
        """[[tap id, packets, lost], ...] of the taps that have something."""
        out = []
        for taps in self.values():
            for tap in taps:
                if tap.packets or tap.lost:
                    packets, lost = tap.take()
                    out.append([tap.id, packets, lost])
        return out
