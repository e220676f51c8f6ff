"""GuestMemory: mapping a vhost-user memory table and translating addresses."""

from __future__ import annotations

import mmap
import os
import weakref

import pytest

from ovsd.netdev.vhost_user import memory as memory_mod
from ovsd.netdev.vhost_user.memory import GuestMemory, GuestMemoryError, Region
from tests.support.virtq_driver import GuestRam, make_guest_memory


@pytest.fixture
def ram():
    with GuestRam([64 * 1024, 128 * 1024, 32 * 1024]) as r:
        yield r


def _memfd(size: int) -> int:
    fd = os.memfd_create("t", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


def test_layout_is_like_qemu(ram):
    # Nonzero offsets into the fds, holes between regions, gpa != uva.
    regions = ram.regions
    assert all(r.mmap_offset > 0 for r in regions)
    assert all(r.gpa != r.uva for r in regions)
    assert regions[1].gpa > regions[0].gpa + regions[0].size


@pytest.mark.parametrize("nregions", [1, 2, 3])
def test_make_guest_memory(nregions):
    ram, mem = make_guest_memory(nregions, 8192)
    try:
        assert len(mem.regions) == nregions
        for r in mem.regions:
            ram.write(r.gpa + 8190, b"zz")
            mm, off = mem.uva(r.uva + 8190, 2)
            assert mm[off:off + 2] == b"zz"
    finally:
        mem.close()
        ram.close()


def test_gpa_translation_honours_mmap_offset(ram):
    with ram.memory() as mem:
        for r in ram.regions:
            ram.write(r.gpa + 100, b"hello")
            mm, off = mem.gpa(r.gpa + 100, 5)
            assert off == r.mmap_offset + 100
            assert mm[off:off + 5] == b"hello"
            # Writes through the back end's mapping are seen by the guest.
            mm[off:off + 5] = b"HELLO"
            assert ram.read(r.gpa + 100, 5) == b"HELLO"
        assert ram.canaries_intact()


def test_uva_translation(ram):
    with ram.memory() as mem:
        r = ram.regions[2]
        ram.write(r.gpa + r.size - 4, b"tail")
        mm, off = mem.uva(r.uva + r.size - 4, 4)
        assert mm[off:off + 4] == b"tail"
        # A guest-physical address is not a frontend-virtual one.
        with pytest.raises(GuestMemoryError):
            mem.uva(r.gpa, 4)


@pytest.mark.parametrize("where", ["gpa", "uva"])
def test_ranges_must_lie_inside_one_region(ram, where):
    with ram.memory() as mem:
        translate = getattr(mem, where)
        r0, r1 = ram.regions[0], ram.regions[1]
        base0, base1 = getattr(r0, where), getattr(r1, where)
        translate(base0, r0.size)  # the whole region
        translate(base0 + r0.size - 1, 1)  # its last byte
        translate(base0 + 10, 0)  # an empty range inside
        for addr, length in [(base0 + r0.size - 1, 2), (base0 + r0.size, 1),
                             (base0 - 1, 1), (base0 + r0.size - 8, 16 + base1 - base0),
                             (base1 + r1.size, 0), (base0, -1), (-5, 10),
                             (2**64 - 1, 2), (base0, 2**64)]:
            with pytest.raises(GuestMemoryError):
                translate(addr, length)


def test_error_names_the_range_and_regions(ram):
    with ram.memory() as mem:
        with pytest.raises(GuestMemoryError) as exc:
            mem.gpa(0xDEAD0000, 64)
        text = str(exc.value)
        assert "0xdead0000+64" in text
        for r in ram.regions:
            assert f"gpa 0x{r.gpa:x}-" in text


def test_region_spanning_two_regions_is_refused_even_when_adjacent():
    fds = [_memfd(8192), _memfd(8192)]
    try:
        regions = [Region(0, 4096, 0x10000, 0), Region(4096, 4096, 0x11000, 0)]
        with GuestMemory(regions, fds) as mem:
            mem.gpa(0, 4096)
            mem.gpa(4096, 4096)
            with pytest.raises(GuestMemoryError):
                mem.gpa(4000, 200)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("regions, sizes, message", [
    ([Region(0, 4096, 0, 0)], [], "1 regions but 0 fds"),
    ([Region(0, 0, 0, 0)], [4096], "size 0"),
    ([Region(0, 8192, 0, 0), Region(4096, 4096, 0x100000, 0)], [8192, 4096], "overlap"),
    ([Region(0, 8192, 0, 4096)], [8192], "needs mmap_offset"),
    ([Region(0, 4096, 0, -1)], [8192], "outside 0..2"),
    ([Region(2**64 - 4096, 8192, 0, 0)], [8192], "wraps"),
])
def test_bad_tables_are_refused(regions, sizes, message):
    fds = [_memfd(s) for s in sizes]
    try:
        with pytest.raises(GuestMemoryError, match=message):
            GuestMemory(regions, fds)
    finally:
        for fd in fds:
            os.close(fd)


def test_bad_fd_is_refused():
    fd = _memfd(4096)
    os.close(fd)
    with pytest.raises(GuestMemoryError, match="unusable"):
        GuestMemory([Region(0, 4096, 0, 0)], [fd])


def test_failed_mapping_closes_the_ones_already_made(monkeypatch):
    made = []
    real_mmap = mmap.mmap

    def flaky_mmap(*args, **kwargs):
        if made:
            raise OSError(12, "Cannot allocate memory")
        m = real_mmap(*args, **kwargs)
        made.append(m)
        return m

    monkeypatch.setattr(memory_mod.mmap, "mmap", flaky_mmap)
    fds = [_memfd(4096), _memfd(4096)]
    try:
        with pytest.raises(GuestMemoryError, match="cannot map"):
            GuestMemory([Region(0, 4096, 0, 0), Region(8192, 4096, 0x8000, 0)], fds)
        assert len(made) == 1 and made[0].closed
    finally:
        for fd in fds:
            os.close(fd)


def test_fds_stay_the_callers(ram):
    mem = ram.memory()
    mem.close()
    for fd in ram.fds:
        os.fstat(fd)  # still open
    # ... and the mapping did not depend on them staying open either.
    fd = _memfd(4096)
    mem = GuestMemory([Region(0, 4096, 0, 0)], [fd])
    os.close(fd)
    mm, off = mem.gpa(0, 4)
    mm[off:off + 4] = b"abcd"
    assert mm[off:off + 4] == b"abcd"
    mem.close()


def test_close_is_idempotent_and_stops_translation(ram):
    mem = ram.memory()
    maps = [m for _, _, _, m in mem.gpa_spans]
    mem.close()
    mem.close()
    assert all(m.closed for m in maps)
    with pytest.raises(GuestMemoryError, match="unmapped"):
        mem.gpa(0, 1)
    with pytest.raises(GuestMemoryError, match="unmapped"):
        mem.uva(ram.regions[0].uva, 1)


def test_close_with_an_exported_view_unmaps_when_the_view_goes(ram):
    mem = ram.memory()
    mm, off = mem.gpa(0, 16)
    view = memoryview(mm)[off:off + 16]
    gone = weakref.ref(mm)
    del mm
    mem.close()  # does not raise although the view pins the mapping
    assert view[0] == 0x5A  # still readable: the mapping is alive
    assert gone() is not None
    view.release()
    assert gone() is None  # unmapped with the last reference
