"""A guest that polls its receive ring beside the switch, for transmit tests:
after each burst the device writes, it takes what arrived and posts new
buffers, so a retry finds room the try before it did not."""

from __future__ import annotations

from typing import Callable

from tests.support.virtq_driver import VirtqDriver


class PollingGuest:
    """The ring as VhostMapping sees it (enqueue, last_bytes), with a guest
    that, after each enqueue call, takes what arrived and posts ``refill``
    new buffers: an int, or a function of the call's number (0 first)."""

    def __init__(self, drv: VirtqDriver, vring, refill: int | Callable[[int], int]):
        self.drv, self.vring = drv, vring
        self.refill = refill if callable(refill) else (lambda _call: refill)
        self.received: list[bytes] = []
        self.tries: list[int] = []   # frames offered per enqueue call

    def enqueue(self, frames, hdr_len, mergeable):
        self.tries.append(len(frames))
        try:
            return self.vring.enqueue(frames, hdr_len, mergeable)
        finally:
            self.received += [f.data for f in self.drv.read_rx()]
            for _ in range(self.refill(len(self.tries) - 1)):
                self.drv.add_rx([2048])

    @property
    def last_bytes(self) -> int:
        return self.vring.last_bytes
