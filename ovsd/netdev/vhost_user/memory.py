"""Guest memory shared by a vhost-user frontend: the regions of SET_MEM_TABLE, mapped.

A frontend describes each region by its guest-physical address (what
descriptors carry), the address it has the region at in its own process (what
SET_VRING_ADDR carries) and the fd plus the offset of the region inside that
fd.  Like DPDK, the whole file prefix up to the region's end is mapped
(offset 0, length ``mmap_offset + size``): hugetlbfs only maps at huge-page
aligned offsets, and ``mmap_offset`` need not be one.

Every translation checks that the whole range lies inside one region, so no
address a guest writes into a ring can make us touch anything else.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Sequence

#: A translation entry: [start, end) in the address space, the delta that
#: turns an address into an offset in the mapping, and the mapping.
Span = tuple[int, int, int, mmap.mmap]

_U64 = 1 << 64


class GuestMemoryError(Exception):
    """A memory table that cannot be mapped, or an address range outside it."""


@dataclass(frozen=True)
class Region:
    gpa: int  # guest-physical start
    size: int
    uva: int  # frontend user virtual start
    mmap_offset: int  # where the region starts inside its fd


def _describe(regions: Sequence[Region]) -> str:
    if not regions:
        return "no regions"
    return ", ".join(
        f"gpa 0x{r.gpa:x}-0x{r.gpa + r.size - 1:x} (uva 0x{r.uva:x}, size 0x{r.size:x})"
        for r in regions)


class GuestMemory:
    """The mapped regions of one memory table.

    Does not own the fds it is given (mmap keeps its own duplicate); the
    caller closes them.  ``close()`` unmaps.  A mapping that a memoryview
    still exports cannot be unmapped right away: ``close()`` then drops its
    reference, and the kernel mapping goes away when the last view is released
    (CPython's mmap unmaps when its object dies).  SplitVring keeps one small
    view (used->flags and used->idx, stored whole) and releases it in
    ``release()``, which its owner calls before closing the memory.
    """

    def __init__(self, regions: Sequence[Region], fds: Sequence[int]):
        regions = tuple(regions)
        if len(regions) != len(fds):
            raise GuestMemoryError(
                f"memory table has {len(regions)} regions but {len(fds)} fds were "
                "passed: expected one fd per region")
        for i, r in enumerate(regions):
            if r.size <= 0:
                raise GuestMemoryError(f"memory region {i} has size {r.size}: expected > 0")
            if r.mmap_offset < 0 or not 0 <= r.gpa < _U64 or not 0 <= r.uva < _U64:
                raise GuestMemoryError(
                    f"memory region {i} ({_describe([r])}, mmap_offset 0x{r.mmap_offset:x}) "
                    "has an address or offset outside 0..2^64-1")
            if r.gpa + r.size > _U64 or r.uva + r.size > _U64:
                raise GuestMemoryError(
                    f"memory region {i} ({_describe([r])}) wraps around the 64-bit "
                    "address space")
        by_gpa = sorted(range(len(regions)), key=lambda i: regions[i].gpa)
        for a, b in zip(by_gpa, by_gpa[1:]):
            ra, rb = regions[a], regions[b]
            if ra.gpa + ra.size > rb.gpa:
                raise GuestMemoryError(
                    f"memory regions {a} and {b} overlap in guest-physical space: "
                    f"{_describe([ra])} and {_describe([rb])}")
        for i, (r, fd) in enumerate(zip(regions, fds)):
            try:
                st_size = os.fstat(fd).st_size
            except OSError as e:
                raise GuestMemoryError(f"memory region {i}: fd {fd} is unusable: {e}") from None
            if st_size < r.mmap_offset + r.size:
                raise GuestMemoryError(
                    f"memory region {i}: fd {fd} holds {st_size} bytes but the region "
                    f"needs mmap_offset 0x{r.mmap_offset:x} + size 0x{r.size:x} = "
                    f"{r.mmap_offset + r.size} bytes")

        maps: list[mmap.mmap] = []
        try:
            for i, (r, fd) in enumerate(zip(regions, fds)):
                try:
                    maps.append(mmap.mmap(fd, r.mmap_offset + r.size, mmap.MAP_SHARED,
                                          mmap.PROT_READ | mmap.PROT_WRITE))
                except (OSError, ValueError, OverflowError) as e:
                    raise GuestMemoryError(
                        f"memory region {i} ({_describe([r])}): cannot map fd {fd} "
                        f"for {r.mmap_offset + r.size} bytes: {e}") from None
        except BaseException:
            for m in maps:
                m.close()
            raise

        self.regions: tuple[Region, ...] = regions
        self._maps: list[mmap.mmap] | None = maps
        #: Translation tables, in guest-physical and frontend-virtual space.
        #: SplitVring caches entries of ``gpa_spans`` for its fast path.
        self.gpa_spans: tuple[Span, ...] = tuple(
            (r.gpa, r.gpa + r.size, r.mmap_offset - r.gpa, m) for r, m in zip(regions, maps))
        self.uva_spans: tuple[Span, ...] = tuple(
            (r.uva, r.uva + r.size, r.mmap_offset - r.uva, m) for r, m in zip(regions, maps))

    def gpa(self, addr: int, length: int) -> tuple[mmap.mmap, int]:
        """(mapping, offset) of guest-physical [addr, addr+length); an empty range
        must still start inside a region."""
        return self._translate(self.gpa_spans, "guest-physical", addr, length)

    def uva(self, addr: int, length: int) -> tuple[mmap.mmap, int]:
        """(mapping, offset) of frontend-virtual [addr, addr+length)."""
        return self._translate(self.uva_spans, "frontend-virtual", addr, length)

    def _translate(self, spans: tuple[Span, ...], space: str, addr: int,
                   length: int) -> tuple[mmap.mmap, int]:
        if length >= 0:
            end = addr + length
            for lo, hi, delta, m in spans:
                if lo <= addr < hi and end <= hi:
                    return m, addr + delta
        if self._maps is None:
            raise GuestMemoryError(f"{space} address 0x{addr:x}: the guest memory is unmapped")
        raise GuestMemoryError(
            f"{space} range 0x{addr:x}+{length} is not inside one memory region "
            f"(regions: {_describe(self.regions)})")

    def close(self) -> None:
        """Unmap every region; harmless to call again."""
        maps, self._maps = self._maps, None
        self.gpa_spans = self.uva_spans = ()
        for m in maps or ():
            try:
                m.close()
            except BufferError:
                # A memoryview still exports it: it is unmapped when that view
                # and this object are gone; we only let go of our reference.
                pass

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
