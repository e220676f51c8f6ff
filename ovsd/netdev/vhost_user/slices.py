"""Frame slices: a burst's frames copied out of guest memory by one C call.

A DPDK application's transmit buffers are mbufs of one mempool, a few
thousand of them, coming round again and again: each one's frame sits at the
same place in the mapped region every time.  So the slice object that reads it
is kept, per ring, by the buffer's address, and a burst of one frame length is
read by ``itemgetter(*slices)(mm)``: one C call whatever the order of the
buffers.  Their order drifts under traffic (testpmd's turns from runs of ~30
mbufs one element apart into pairs and singles within seconds), which is why
this replaced copying a burst a stride run at a time: that paid ~40 ns a frame
to find the runs and fell back to a slice per frame (~70 ns) once they were
short, where a burst read through the cache costs ~50 ns a frame in any order.

The cache is keyed by values the guest chooses, so it is bounded: at most
MAX_SLICES entries per ring (about 200 bytes each; a mempool needs one per
mbuf, testpmd's has ~16K).  A guest whose buffers are not a mempool (a Linux
guest's socket buffers, say) would fill it without it paying back: after
MAX_SLICES fills the ring pauses the cache for PAUSE_MIN bursts, twice as long
each time it happens again (up to PAUSE_MAX), and its bursts are read a slice
per frame meanwhile.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Callable, Sequence

from ovsd.netdev.vhost_user.memory import Span

MAX_SLICES = 1 << 15
PAUSE_MIN = 256
PAUSE_MAX = 1 << 14


class FrameSlices:
    """One ring's cache: low address word -> the slice of that buffer's frame,
    for buffers of one shape (address high word, length, header length) in one
    mapped region."""

    __slots__ = ("_slices", "_shape", "_span", "_fills", "_pause", "_next_pause")

    def __init__(self) -> None:
        self._slices: dict[int, slice] = {}
        self._shape: tuple[int, int, int] | None = None
        self._span: Span | None = None
        self._fills = 0
        self._pause = 0
        self._next_pause = PAUSE_MIN

    def __len__(self) -> int:
        return len(self._slices)

    @property
    def paused(self) -> int:
        """Bursts left before the cache is used again."""
        return self._pause

    def gather(self, lows: Sequence[int], base: int, ln: int, hdr_len: int,
               span_of: Callable[[int, int], Span | None]) -> tuple[bytes, ...] | None:
        """The frames of the buffers at base + lows[i] (at least two), each ``ln``
        bytes long of which the first ``hdr_len`` are the virtio-net header; or
        None (nothing read) when they are not all in one memory region or the
        cache is paused.  ``span_of(addr, length)`` is the ring's lookup of the
        region holding a buffer."""
        if self._pause:
            self._pause -= 1
            return None
        if (base, ln, hdr_len) != self._shape:
            self._slices.clear()
            self._shape = (base, ln, hdr_len)
        slices = self._slices
        try:
            return itemgetter(*itemgetter(*lows)(slices))(self._span[3])
        except KeyError:  # a buffer not seen yet (an empty cache has no region yet)
            pass
        if not self._fill(lows, span_of):
            return None
        frames = itemgetter(*itemgetter(*lows)(slices))(self._span[3])
        if self._fills > MAX_SLICES:  # not paying back: pause
            self._fills = 0
            self.clear()
            self._pause = self._next_pause
            self._next_pause = min(2 * self._next_pause, PAUSE_MAX)
        return frames

    def clear(self) -> None:
        self._slices.clear()
        self._shape = self._span = None

    def _fill(self, lows: Sequence[int], span_of) -> bool:
        base, ln, hdr_len = self._shape
        slices = self._slices
        new = [p for p in lows if p not in slices]
        span = self._span
        if span is None or not _inside(new, base, ln, span):
            # The first burst, or the buffers are in another region now: the
            # cache follows them there.
            slices.clear()
            new = list(lows)
            span = self._span = span_of(base + lows[0], ln)
            if span is None or not _inside(new, base, ln, span):
                self._span = None
                return False
        if len(slices) + len(new) > MAX_SLICES:
            slices.clear()
            new = list(lows)
        first = base + span[2] + hdr_len
        end = base + span[2] + ln
        for p in new:
            slices[p] = slice(p + first, p + end)
        self._fills += len(new)
        return True


def _inside(points: list[int], base: int, ln: int, span: Span) -> bool:
    """Whether every buffer base + p (p in points), ln bytes long, lies in span."""
    return not points or (span[0] <= base + min(points)
                          and base + max(points) + ln <= span[1])
