"""The guest side of split virtqueues, for tests that play the frontend.

``GuestRam`` is guest memory the way QEMU hands it to a vhost-user back end:
regions in memfds, each region at a nonzero offset inside its fd, at guest-
physical addresses with holes between them and frontend-virtual addresses
that differ from those.  The bytes of each fd before and after its region
are canaries, and the regions start out filled with a pattern, so a test can
tell exactly which bytes the device wrote.

``VirtqDriver`` is the driver half of the virtio split-ring protocol,
writing descriptors, the avail ring and its notification fields, and
reading the used ring, through its own mapping of that shared memory (the
back end maps the same fds separately, as a vhost-user back end would).
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Sequence

from ovsd.netdev.vhost_user.memory import GuestMemory, Region
from ovsd.netdev.vhost_user.vring import (
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    RingCounters, SplitVring)

DESC = struct.Struct("<QIHH")
U16 = struct.Struct("<H")
USED_ELEM = struct.Struct("<II")

CANARY = bytes(range(256)) * 16  # 4096 bytes, not a repeated single byte
FILL = 0x5A
UVA_BASE = 0x7F3A_0000_0000
PAGE = 4096


class _Heap:
    """First-fit allocator over [start, end) with coalescing frees."""

    def __init__(self, start: int, end: int):
        self.free: list[tuple[int, int]] = [(start, end)]
        self.used: dict[int, int] = {}

    def alloc(self, size: int, align: int) -> int | None:
        size = max(size, 1)
        for i, (lo, hi) in enumerate(self.free):
            at = -(-lo // align) * align
            if at + size <= hi:
                del self.free[i]
                if at + size < hi:
                    self.free.insert(i, (at + size, hi))
                if lo < at:
                    self.free.insert(i, (lo, at))
                self.used[at] = size
                return at
        return None

    def release(self, at: int) -> None:
        size = self.used.pop(at)
        lo, hi = at, at + size
        i = bisect.bisect(self.free, (lo, hi))
        if i < len(self.free) and self.free[i][0] == hi:
            hi = self.free.pop(i)[1]
        if i and self.free[i - 1][1] == lo:
            lo = self.free.pop(i - 1)[0]
            i -= 1
        self.free.insert(i, (lo, hi))


class GuestRam:
    """Guest memory in memfds: ``sizes`` gives each region's size (1 to 3 regions)."""

    def __init__(self, sizes: Sequence[int] = (1 << 20,), *, gpa_base: int = 0):
        """``gpa_base``: the guest address of the first region (DPDK's virtio_user
        uses its virtual addresses, mostly above 4 GiB)."""
        if not 1 <= len(sizes) <= 3:
            raise ValueError("GuestRam: 1 to 3 regions")
        self.regions: list[Region] = []
        self.fds: list[int] = []
        self.maps: list[mmap.mmap] = []
        self.heaps: list[_Heap] = []
        gpa = gpa_base
        for i, size in enumerate(sizes):
            offset = PAGE * (i + 1)  # like QEMU's offsets into one backing file
            fd = os.memfd_create(f"guest-ram-{i}", os.MFD_CLOEXEC)
            os.ftruncate(fd, offset + size + len(CANARY))
            mm = mmap.mmap(fd, offset + size + len(CANARY))
            mm[:offset] = (CANARY * (offset // len(CANARY) + 1))[:offset]
            mm[offset:offset + size] = bytes([FILL]) * size
            mm[offset + size:] = CANARY
            self.regions.append(Region(gpa=gpa, size=size,
                                       uva=UVA_BASE + 0x1_0000_0000 * i + 0x20_0000,
                                       mmap_offset=offset))
            self.fds.append(fd)
            self.maps.append(mm)
            self.heaps.append(_Heap(gpa, gpa + size))
            # A hole after every region, as below QEMU's PCI hole.
            gpa = -(-(gpa + size + 0x10_0000) // 0x10_0000) * 0x10_0000
        self._snapshot_canaries = self._canaries()

    # -- views ----------------------------------------------------------------------

    def memory(self) -> GuestMemory:
        """The back end's view: a GuestMemory mapping the same fds."""
        return GuestMemory(self.regions, self.fds)

    def _where(self, gpa: int, length: int) -> tuple[mmap.mmap, int]:
        for r, mm in zip(self.regions, self.maps):
            if r.gpa <= gpa and gpa + length <= r.gpa + r.size:
                return mm, r.mmap_offset + gpa - r.gpa
        raise ValueError(f"guest: 0x{gpa:x}+{length} is not in guest RAM")

    def write(self, gpa: int, data: bytes) -> None:
        mm, off = self._where(gpa, len(data))
        mm[off:off + len(data)] = data

    def read(self, gpa: int, length: int) -> bytes:
        mm, off = self._where(gpa, length)
        return mm[off:off + length]

    def uva_of(self, gpa: int) -> int:
        for r in self.regions:
            if r.gpa <= gpa < r.gpa + r.size:
                return gpa - r.gpa + r.uva
        raise ValueError(f"guest: 0x{gpa:x} is not in guest RAM")

    def alloc(self, size: int, *, align: int = 8, region: int = 0) -> int:
        at = self.heaps[region].alloc(size, align)
        if at is None:
            raise MemoryError(f"guest RAM region {region} is full ({size} bytes asked)")
        return at

    def free(self, gpa: int) -> None:
        for r, heap in zip(self.regions, self.heaps):
            if r.gpa <= gpa < r.gpa + r.size:
                heap.release(gpa)
                return
        raise ValueError(f"guest: free of 0x{gpa:x} outside guest RAM")

    # -- what changed ---------------------------------------------------------------

    def _canaries(self) -> list[bytes]:
        return [mm[:r.mmap_offset] + mm[r.mmap_offset + r.size:]
                for r, mm in zip(self.regions, self.maps)]

    def canaries_intact(self) -> bool:
        """Nothing outside the regions (inside their fds) was written."""
        return self._canaries() == self._snapshot_canaries

    def snapshot(self) -> list[bytes]:
        return [mm[r.mmap_offset:r.mmap_offset + r.size]
                for r, mm in zip(self.regions, self.maps)]

    def changed(self, before: list[bytes]) -> list[tuple[int, int]]:
        """Guest-physical [start, end) ranges whose bytes differ from ``before``."""
        out: list[tuple[int, int]] = []
        block = 256
        for r, old, new in zip(self.regions, before, self.snapshot()):
            if old == new:
                continue
            for b in range(0, r.size, block):
                if old[b:b + block] == new[b:b + block]:
                    continue
                for i in range(b, min(b + block, r.size)):
                    if old[i] != new[i]:
                        a = r.gpa + i
                        if out and out[-1][1] == a:
                            out[-1] = (out[-1][0], a + 1)
                        else:
                            out.append((a, a + 1))
        return out

    def close(self) -> None:
        for mm in self.maps:
            mm.close()
        for fd in self.fds:
            os.close(fd)
        self.maps, self.fds = [], []

    def __enter__(self) -> GuestRam:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_guest_memory(nregions: int = 1, size: int = 1 << 20) -> tuple[GuestRam, GuestMemory]:
    """Guest RAM of 1 to 3 regions and the back end's GuestMemory of it."""
    ram = GuestRam([size] * nregions)
    return ram, ram.memory()


@dataclass
class _Chain:
    descs: list[int]  # ring descriptor indices
    buffers: list[tuple[int, int]]  # (gpa, len) in chain order
    allocations: list[int] = field(default_factory=list)  # gpas to free


@dataclass
class RxFrame:
    header: bytes
    data: bytes
    num_buffers: int  # from the header (1 when the header has no such field)
    buffers: int  # used entries the frame took


class VirtqDriver:
    """The guest driver of one split virtqueue laid out in ``ram``."""

    def __init__(self, ram: GuestRam, num: int, *, start_idx: int = 0, region: int = 0,
                 buffer_regions: Sequence[int] | None = None):
        self.ram = ram
        self.num = num
        self.desc = ram.alloc(16 * num, align=16, region=region)
        self.avail = ram.alloc(6 + 2 * num, align=2, region=region)
        self.used = ram.alloc(6 + 8 * num, align=4, region=region)
        ram.write(self.desc, bytes(16 * num))
        ram.write(self.avail, U16.pack(0) + U16.pack(start_idx) + bytes(2 * num + 2))
        ram.write(self.used, U16.pack(0) + U16.pack(start_idx) + bytes(8 * num + 2))
        self.avail_idx = start_idx  # the driver's shadow of avail->idx
        self.last_used = start_idx
        self.start_idx = start_idx
        self.free_descs = list(range(num))
        self.chains: dict[int, _Chain] = {}
        #: Regions that buffers are allocated in, round robin.
        self.buffer_regions = list(buffer_regions or [region])
        self._next_region = 0

    # -- the back end's parameters ----------------------------------------------------

    @property
    def addrs(self) -> tuple[int, int, int]:
        """desc, avail, used as frontend-virtual addresses (what SET_VRING_ADDR sends)."""
        return (self.ram.uva_of(self.desc), self.ram.uva_of(self.avail),
                self.ram.uva_of(self.used))

    def vring(self, mem: GuestMemory, counters: RingCounters, index: int = 0, *,
              event_idx: bool = False, indirect: bool = True,
              call_fd: int | None = None) -> SplitVring:
        """The back end's SplitVring for this queue, indices set as SET_VRING_BASE would."""
        counters.set(index, self.start_idx, self.start_idx)
        return SplitVring(mem, index, self.num, *self.addrs, counters,
                          event_idx=event_idx, indirect=indirect, call_fd=call_fd)

    # -- building chains ----------------------------------------------------------------

    def _buffer(self, data_or_size: bytes | int, align: int = 8) -> int:
        region = self.buffer_regions[self._next_region % len(self.buffer_regions)]
        self._next_region += 1
        size = data_or_size if isinstance(data_or_size, int) else len(data_or_size)
        gpa = self.ram.alloc(size, align=align, region=region)
        if not isinstance(data_or_size, int):
            self.ram.write(gpa, data_or_size)
        return gpa

    def add_chain(self, buffers: Sequence[tuple[int, int, bool]], *, indirect: bool = False,
                  publish: bool = True, allocations: Sequence[int] = ()) -> int:
        """Make a chain of (gpa, len, write-only) buffers available; returns its head."""
        if not buffers:
            raise ValueError("a chain needs at least one buffer")
        allocs = list(allocations)
        if indirect:
            table = self._buffer(16 * len(buffers), align=16)
            allocs.append(table)
            entries = b"".join(
                DESC.pack(gpa, ln, (VRING_DESC_F_WRITE if w else 0)
                          | (VRING_DESC_F_NEXT if i + 1 < len(buffers) else 0), i + 1)
                for i, (gpa, ln, w) in enumerate(buffers))
            self.ram.write(table, entries)
            head = self._take_descs(1)[0]
            self.write_desc(head, table, 16 * len(buffers), VRING_DESC_F_INDIRECT, 0)
            descs = [head]
        else:
            if len(buffers) > len(self.free_descs):
                raise MemoryError("no free descriptors")
            descs = self._take_descs(len(buffers))
            # Scatter the chain over the table, as a driver that reuses freed
            # descriptors does: next pointers are what links them.
            for i, (gpa, ln, w) in enumerate(buffers):
                last = i + 1 == len(buffers)
                self.write_desc(descs[i], gpa, ln, (VRING_DESC_F_WRITE if w else 0)
                                | (0 if last else VRING_DESC_F_NEXT),
                                0 if last else descs[i + 1])
            head = descs[0]
        self.chains[head] = _Chain(descs, [(g, n) for g, n, _ in buffers], allocs)
        self.push_avail(head, publish=publish)
        return head

    def _take_descs(self, n: int) -> list[int]:
        if n > len(self.free_descs):
            raise MemoryError("no free descriptors")
        taken, self.free_descs = self.free_descs[:n], self.free_descs[n:]
        return taken

    def add_tx(self, frame: bytes, *, hdr_len: int = 12, header: bytes | None = None,
               split: Sequence[int] | None = None, indirect: bool = False,
               publish: bool = True) -> int:
        """Transmit ``frame``: header + frame cut into buffers of the sizes in ``split``
        (the last takes the rest; default one buffer)."""
        payload = (header if header is not None else bytes(hdr_len)) + frame
        pieces = []
        at = 0
        for size in split or ():
            pieces.append(payload[at:at + size])
            at += size
        pieces.append(payload[at:])
        if len(pieces) > 1 and not pieces[-1]:
            pieces.pop()
        gpas = [self._buffer(p) for p in pieces]
        return self.add_chain([(g, len(p), False) for g, p in zip(gpas, pieces)],
                              indirect=indirect, publish=publish, allocations=gpas)

    def add_rx(self, sizes: Sequence[int], *, indirect: bool = False,
               publish: bool = True) -> int:
        """Post one receive chain of write-only buffers of the given sizes."""
        gpas = [self._buffer(s) for s in sizes]
        return self.add_chain([(g, s, True) for g, s in zip(gpas, sizes)],
                              indirect=indirect, publish=publish, allocations=gpas)

    # -- raw ring access (for broken guests) ------------------------------------------

    def write_desc(self, i: int, addr: int, ln: int, flags: int, nxt: int) -> None:
        self.ram.write(self.desc + 16 * i, DESC.pack(addr, ln, flags, nxt))

    def push_avail(self, head: int, *, publish: bool = True) -> None:
        self.ram.write(self.avail + 4 + 2 * (self.avail_idx % self.num), U16.pack(head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        if publish:
            self.publish()

    def publish(self) -> None:
        """Store avail->idx (after the entries, as a driver must)."""
        self.ram.write(self.avail + 2, U16.pack(self.avail_idx))

    def set_avail_idx(self, value: int) -> None:
        self.ram.write(self.avail + 2, U16.pack(value & 0xFFFF))

    # -- notification suppression -------------------------------------------------------

    def set_no_interrupt(self, on: bool) -> None:
        self.ram.write(self.avail, U16.pack(VRING_AVAIL_F_NO_INTERRUPT if on else 0))

    def set_used_event(self, value: int) -> None:
        self.ram.write(self.avail + 4 + 2 * self.num, U16.pack(value & 0xFFFF))

    @property
    def used_flags(self) -> int:
        return U16.unpack(self.ram.read(self.used, 2))[0]

    @property
    def used_idx(self) -> int:
        return U16.unpack(self.ram.read(self.used + 2, 2))[0]

    # -- completions ---------------------------------------------------------------------

    def collect_used(self) -> list[tuple[int, int]]:
        """New used entries (id, len) since the last call; their chains are recycled."""
        out = []
        idx = self.used_idx
        while self.last_used != idx:
            slot = self.used + 4 + 8 * (self.last_used % self.num)
            out.append(USED_ELEM.unpack(self.ram.read(slot, 8)))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out

    def chain_bytes(self, head: int, length: int) -> bytes:
        """The first ``length`` bytes of the buffers of chain ``head``."""
        data = b"".join(self.ram.read(g, n) for g, n in self.chains[head].buffers)
        if length > len(data):
            raise AssertionError(f"used len {length} is beyond chain {head}'s "
                                 f"{len(data)} bytes")
        return data[:length]

    def recycle(self, head: int) -> None:
        chain = self.chains.pop(head)
        for gpa in chain.allocations:
            self.ram.free(gpa)
        self.free_descs.extend(chain.descs)

    def read_rx(self, hdr_len: int = 12, *, mergeable: bool = False) -> list[RxFrame]:
        """Frames the device put into receive buffers since the last call."""
        entries = self.collect_used()
        frames = []
        i = 0
        while i < len(entries):
            head, length = entries[i]
            data = self.chain_bytes(head, length)
            header = data[:hdr_len]
            nbuf = U16.unpack(header[10:12])[0] if hdr_len == 12 else 1
            count = nbuf if mergeable else 1
            if i + count > len(entries):
                raise AssertionError(f"num_buffers {nbuf} but only {len(entries) - i} "
                                     "used entries")
            body = [data[hdr_len:]]
            for h, n in entries[i + 1:i + count]:
                body.append(self.chain_bytes(h, n))
            for h, _ in entries[i:i + count]:
                self.recycle(h)
            frames.append(RxFrame(header, b"".join(body), nbuf, count))
            i += count
        return frames

    def reap_tx(self) -> list[tuple[int, int]]:
        """Used entries of a transmit queue; recycles their chains."""
        entries = self.collect_used()
        for head, _ in entries:
            if head in self.chains:
                self.recycle(head)
        return entries
