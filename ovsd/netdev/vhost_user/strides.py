"""Stride runs: copying a burst's frames out of guest memory a run at a time.

DPDK's mempools hand mbufs out and take them back in bulk, through a cache
per core, so the buffers of a burst that virtio_user (or a DPDK guest) puts
on a ring lie mostly in arithmetic progressions: runs of a few dozen, one
mempool element apart, going up or down.  The frames of such a run are
copied out by one ``Struct.unpack_from`` whose format skips the bytes between
them (``"64s2304x" * 31 + "64s"``): one C call builds the run's bytes objects,
where a slice per frame costs an address computation, a slice object and a
subscript in the interpreter.  Finding the runs is C-level work over the
burst (differences, then where they change) plus a step per run.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import compress
from operator import ne, sub
from struct import Struct


def runs(points: tuple[int, ...] | list[int]) -> list[tuple[int, int, int]]:
    """Cover ``points`` with arithmetic progressions taken greedily from the left:
    (first, last, step) with first..last an inclusive index range whose points
    are ``step`` apart.  A point left alone at the end is (i, i, 0)."""
    n = len(points)
    diffs = list(map(sub, points[1:], points))
    # Indices j at which the step changes: diffs[j] != diffs[j - 1].
    turns = list(compress(range(1, n - 1), map(ne, diffs[1:], diffs)))
    nturns = len(turns)
    out = []
    i = 0
    while i < n - 1:
        t = bisect_right(turns, i)
        last = turns[t] if t < nturns else n - 1
        out.append((i, last, diffs[i]))
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
