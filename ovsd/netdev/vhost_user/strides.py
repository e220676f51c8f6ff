"""Stride runs: copying a burst's frames out of guest memory a run at a time.

DPDK's mempools hand mbufs out and take them back in bulk, through a cache
per core, so the buffers of a burst that virtio_user (or a DPDK guest) puts
on a ring lie mostly in arithmetic progressions: runs of a few dozen, one
mempool element apart, going up or down.  The frames of such a run are
copied out by one ``Struct.unpack_from`` whose format skips the bytes between
them (``"64s2304x" * 31 + "64s"``): one C call builds the run's bytes objects,
where a slice per frame costs an address computation, a slice object and a
subscript in the interpreter.  Finding the runs is C-level work over the
burst (big-int lane arithmetic on the raw descriptors) plus a step per run.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import compress
from struct import Struct
from typing import Sequence


#: Per burst size n, over n raw descriptors read as one little-endian int (a
#: 128-bit lane each): the low address word of every lane; 2**40 in every
#: lane; and the Struct reading the low 8 bytes of lanes 0..n-3.
_LANES: dict[int, tuple[int, int, Struct]] = {}


def lane_ones(n: int) -> int:
    """n raw descriptors' worth of 128-bit lanes with 1 in each: times a value,
    that value in every lane."""
    return int.from_bytes((1).to_bytes(16, "little") * n, "little")


def _lanes(n: int) -> tuple[int, int, Struct]:
    lanes = _LANES.get(n)
    if lanes is None:
        ones = lane_ones(n)
        lanes = _LANES[n] = (ones * 0xFFFF_FFFF, ones << 40,
                             Struct("<" + "Q8x" * max(n - 2, 0)))
    return lanes


def runs(x: int, lows: Sequence[int]) -> list[tuple[int, int, int]] | None:
    """Cover the points ``lows`` with arithmetic progressions taken greedily from
    the left: (first, last, step) with first..last an inclusive index range
    whose points are ``step`` apart.  A point left alone at the end is
    (i, i, 0).  ``lows[i]`` is the low address word of descriptor i of the
    raw descriptors ``x`` (one little-endian int).  None when the points
    turn more than once every 4 on average (a mempool whose order has been
    scrambled): then runs are too short to pay for their per-run work, and
    a slice per frame is cheaper.

    Where a run turns, the second difference lows[j+1] - 2*lows[j] + lows[j-1]
    is not zero.  All of them come from a few big-int operations on ``x``:
    with the low words alone in their lanes (< 2**32) and 2**40 added to
    every lane, each lane of (x >> 256) + x - 2*(x >> 128) holds its second
    difference plus 2**40, between 2**40 - 2**34 and 2**40 + 2**34, so no
    lane borrows from or carries into another; XOR with 2**40 leaves zero
    exactly where the step goes on.  A differences pass and a comparison
    pass over the points in the interpreter's C loops cost twice as much."""
    n = len(lows)
    low_words, bias, lane_struct = _lanes(n)
    a = x & low_words
    z = ((a >> 256) + a + bias - (a >> 127)) ^ bias
    turns = list(compress(range(1, n - 1),
                          lane_struct.unpack_from(z.to_bytes(16 * n, "little"))))
    nturns = len(turns)
    if nturns > n >> 2:
        return None
    out = []
    i = 0
    while i < n - 1:
        t = bisect_right(turns, i)
        last = turns[t] if t < nturns else n - 1
        out.append((i, last, lows[i + 1] - lows[i]))
        i = last + 1
    if i == n - 1:
        out.append((i, i, 0))
    return out


#: (count, step, size) -> the Struct that reads count blocks of size bytes,
#: step bytes apart.  Run lengths vary from burst to burst, so a stream of one
#: frame size and one mempool fills at most one entry per length; the cache
#: is emptied if far more shapes than that come by.
GATHER_STRUCTS: dict[tuple[int, int, int], Struct] = {}


def gather_struct(count: int, step: int, size: int) -> Struct:
    """The Struct whose unpack_from(buf, at) returns the ``count`` blocks of
    ``size`` bytes at at, at + step, ... (``step >= size``)."""
    key = (count, step, size)
    s = GATHER_STRUCTS.get(key)
    if s is None:
        if step < size:
            raise ValueError(f"step {step} < size {size}: blocks would overlap")
        if len(GATHER_STRUCTS) >= 1024:
            GATHER_STRUCTS.clear()
        s = GATHER_STRUCTS[key] = Struct("<" + f"{size}s{step - size}x" * (count - 1) + f"{size}s")
    return s
