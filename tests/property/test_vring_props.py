"""Split virtqueue properties, with a real guest driver on shared memory.

- Whatever chain layouts a guest uses, dequeue returns exactly its frames, in
  order, and enqueue delivers exactly the prefix of frames that fits the
  buffers posted (a reference model says which), with the right num_buffers.
- A guest that writes garbage into its rings gets VringError and nothing
  else, and the device never writes outside the used ring and the write-only
  buffers the guest gave it.
- The 16-bit indices wrap, and notifications follow the suppression rules.
"""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ovsd.netdev.vhost_user.vring import (
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, RingCounters, VringError,
    all_within, lane_bounds, plain_one_shape)
from tests.support.virtq_driver import DESC, GuestRam, VirtqDriver

NEXT, WRITE, INDIRECT = VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT
RSIZE = 64 * 1024
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

start_indices = st.one_of(st.integers(65500, 65535), st.integers(0, 65535))


def _inside(ranges: list[tuple[int, int]], allowed: list[tuple[int, int]]) -> bool:
    """Every [a, b) in ``ranges`` is covered by the union of ``allowed``."""
    union: list[list[int]] = []
    for lo, hi in sorted(r for r in allowed if r[0] < r[1]):
        if union and lo <= union[-1][1]:
            union[-1][1] = max(union[-1][1], hi)
        else:
            union.append([lo, hi])
    return all(any(lo <= a and b <= hi for lo, hi in union) for a, b in ranges)


class Guest:
    def __init__(self, num: int, start_idx: int, *, call: bool = False):
        self.ram = GuestRam([RSIZE, RSIZE, RSIZE])
        self.mem = self.ram.memory()
        self.counters = RingCounters(bytearray(8))
        self.drv = VirtqDriver(self.ram, num, start_idx=start_idx, region=1,
                               buffer_regions=[0, 2, 1])
        self.call_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if call else None
        self.used_ring = (self.drv.used, self.drv.used + 6 + 8 * num)

    def vring(self, **kw):
        return self.drv.vring(self.mem, self.counters, 0, call_fd=self.call_fd, **kw)

    def notifications(self) -> int:
        try:
            return os.eventfd_read(self.call_fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.mem.close()
        self.ram.close()
        if self.call_fd is not None:
            os.close(self.call_fd)


# -- dequeue: every layout gives back exactly the frames ---------------------------------

tx_frames = st.lists(st.tuples(
    st.binary(min_size=0, max_size=1600),
    st.one_of(st.none(), st.lists(st.integers(1, 200), min_size=1, max_size=3)),  # split
    st.booleans(),  # indirect
), min_size=1, max_size=40)


@SETTINGS
@given(tx_frames, start_indices, st.sampled_from([10, 12]),
       st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_dequeue_returns_exactly_the_frames(frames, start_idx, hdr_len, bursts):
    g = Guest(32, start_idx)
    try:
        vr = g.vring(indirect=True)
        sent, got = [], []
        todo = list(frames)
        turn = 0
        while todo or vr.avail_pending:
            # Post what fits in the free descriptors.
            while todo:
                data, split, indirect = todo[0]
                pieces = len(split) + 1 if split else 1
                if (1 if indirect else pieces) > len(g.drv.free_descs):
                    break
                header = bytes([0xC3]) * hdr_len
                g.drv.add_tx(data, hdr_len=hdr_len, header=header, split=split,
                             indirect=indirect)
                sent.append(data)
                todo.pop(0)
            before = g.ram.snapshot()
            out = vr.dequeue(bursts[turn % len(bursts)], hdr_len)
            turn += 1
            got += out
            assert vr.last_bytes == sum(map(len, out))
            assert _inside(g.ram.changed(before), [g.used_ring])
            assert all(length == 0 for _, length in g.drv.reap_tx())
        assert got == sent
        assert g.drv.used_idx == (start_idx + len(frames)) & 0xFFFF
        assert g.counters.get(0) == ((start_idx + len(frames)) & 0xFFFF,) * 2
        assert g.ram.canaries_intact()
    finally:
        g.close()


# -- enqueue: exactly the prefix that fits, with the right num_buffers ------------------

rx_chains = st.lists(st.tuples(
    st.lists(st.integers(1, 400), min_size=1, max_size=3).filter(lambda s: sum(s) >= 12),
    st.booleans(),  # indirect
), min_size=0, max_size=24)


def _expected(frames: list[bytes], caps: list[int], hdr_len: int,
              mergeable: bool) -> tuple[int, list[int]]:
    """Reference: frames delivered and the chains each took."""
    pos, taken = 0, []
    for f in frames:
        need = hdr_len + len(f)
        if mergeable:
            got, p = 0, pos
            while got < need and p < len(caps):
                got += caps[p]
                p += 1
            if got < need:
                break
        else:
            if pos == len(caps) or caps[pos] < need:
                break
            p = pos + 1
        taken.append(p - pos)
        pos = p
    return len(taken), taken


@SETTINGS
@given(st.lists(st.binary(min_size=0, max_size=900), min_size=0, max_size=12), rx_chains,
       rx_chains, start_indices, st.sampled_from([(12, True), (12, False), (10, False)]))
def test_enqueue_delivers_exactly_what_fits(frames, chains1, chains2, start_idx, mode):
    hdr_len, mergeable = mode
    g = Guest(128, start_idx)
    try:
        vr = g.vring(indirect=True)
        todo = list(frames)
        for chains in (chains1, chains2):
            heads = [g.drv.add_rx(sizes, indirect=ind) for sizes, ind in chains]
            pending = [h for h in g.drv.chains]  # posted and not yet used, in order
            caps = [sum(n for _, n in g.drv.chains[h].buffers) for h in pending]
            assert heads == pending[len(pending) - len(heads):]
            want, taken = _expected(todo, caps, hdr_len, mergeable)
            allowed = [g.used_ring] + [(gpa, gpa + n) for h in pending[:sum(taken)]
                                       for gpa, n in g.drv.chains[h].buffers]
            before = g.ram.snapshot()
            assert vr.enqueue(todo, hdr_len, mergeable) == want
            assert vr.last_bytes == sum(map(len, todo[:want]))
            assert _inside(g.ram.changed(before), allowed)
            got = g.drv.read_rx(hdr_len, mergeable=mergeable)
            assert [x.data for x in got] == todo[:want]
            assert [x.buffers for x in got] == taken
            if hdr_len == 12:
                assert [x.num_buffers for x in got] == taken
            assert all(x.header[:10] == bytes(10) for x in got)
            assert vr.avail_pending == len(pending) - sum(taken)
            todo = todo[want:]
        assert g.ram.canaries_intact()
    finally:
        g.close()


# -- garbage never escapes ----------------------------------------------------------------


def _addresses(ram: GuestRam) -> st.SearchStrategy[int]:
    """Buffer addresses a garbage descriptor may hold: mostly well inside regions 0
    and 2 (region 1 holds the rings and tables), sometimes their edges, the
    holes, far away."""
    r0, _, r2 = ram.regions
    edges = [r0.gpa, r0.gpa + r0.size - 1, r0.gpa + r0.size, r2.gpa - 1, r2.gpa,
             r2.gpa + r2.size - 12, r2.gpa + r2.size, 2**64 - 1, r2.uva]
    inner = st.one_of(st.integers(r0.gpa, r0.gpa + r0.size - 4096),
                      st.integers(r2.gpa, r2.gpa + r2.size - 4096))
    return st.one_of(inner, inner, inner, st.sampled_from(edges))


lengths = st.one_of(st.integers(0, 400), st.integers(0, 400), st.integers(0, 3000),
                    st.sampled_from([0, 11, 12, 65547, 70000, 2**32 - 1]))
# Per direction: flags that make chains the device accepts, most of the time.
TX_FLAGS = [0] * 6 + [NEXT] * 3 + [INDIRECT, INDIRECT | WRITE]
RX_FLAGS = [WRITE] * 6 + [WRITE | NEXT] * 3 + [INDIRECT, INDIRECT | WRITE]
BAD_FLAGS = [WRITE, 0, INDIRECT | NEXT, NEXT | WRITE, 8, 0xFFFF]


@st.composite
def garbage(draw):
    """A guest ring full of plausible and implausible values; returns
    (guest, indirect table addresses, transmit?)."""
    transmit = draw(st.booleans())
    num = draw(st.sampled_from([4, 8, 16]))
    start_idx = draw(start_indices)
    g = Guest(num, start_idx, call=draw(st.booleans()))
    tables = [g.ram.alloc(16 * 8, align=16, region=1) for _ in range(2)]
    addrs = _addresses(g.ram)
    flags = st.one_of(st.sampled_from(TX_FLAGS if transmit else RX_FLAGS),
                      st.sampled_from(TX_FLAGS if transmit else RX_FLAGS),
                      st.sampled_from(BAD_FLAGS))

    def desc(count: int):
        f = draw(flags)
        if f & INDIRECT and draw(st.integers(0, 3)):
            addr = draw(st.sampled_from(tables))
            ln = draw(st.sampled_from([16, 32, 48, 128] * 3 + [0, 8, 16 * num + 16]))
        else:
            addr, ln = draw(addrs), draw(lengths)
        nxt = draw(st.one_of(st.integers(0, count - 1), st.integers(0, count + 2)))
        return addr, ln, f, nxt

    for i in range(num):
        g.drv.write_desc(i, *desc(num))
    for t in tables:
        g.ram.write(t, b"".join(DESC.pack(*desc(8)) for _ in range(8)))
    heads = draw(st.lists(st.integers(0, num - 1), min_size=1, max_size=num))
    if draw(st.integers(0, 5)) == 5:  # one head out of range
        heads[draw(st.integers(0, len(heads) - 1))] = draw(st.integers(num, 0xFFFF))
    for h in heads:
        g.drv.push_avail(h, publish=False)
    pending = len(heads)
    if draw(st.integers(0, 5)) == 5:  # avail->idx too far ahead
        pending = draw(st.sampled_from([num + 1, num + 7, 65535]))
    g.drv.set_avail_idx(start_idx + pending)
    g.drv.set_no_interrupt(draw(st.booleans()))
    g.drv.set_used_event(draw(st.integers(0, 65535)))
    return g, tables, transmit


def _write_only_ranges(g: Guest, tables: list[int]) -> list[tuple[int, int]]:
    out = []
    raw = g.ram.read(g.drv.desc, 16 * g.drv.num) + b"".join(g.ram.read(t, 128) for t in tables)
    for off in range(0, len(raw), 16):
        addr, ln, flags, _ = DESC.unpack_from(raw, off)
        if flags & WRITE:
            out.append((addr, addr + ln))
    return out


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(garbage(), st.sampled_from([10, 12]), st.booleans(),
       st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6), st.booleans(),
       st.booleans())
def test_garbage_rings_only_raise_vring_error(guest, hdr_len, mergeable, frames, event_idx,
                                              indirect):
    g, tables, transmit = guest
    try:
        vr = g.vring(event_idx=event_idx, indirect=indirect)
        before = g.ram.snapshot()
        used_before = g.drv.used_idx
        counters_before = g.counters.get(0)
        allowed = [g.used_ring]
        if not transmit:
            allowed += _write_only_ranges(g, tables)
        try:
            if transmit:
                moved = len(vr.dequeue(32, hdr_len))
            else:
                # Frames of 0xFF bytes: whatever lands in a buffer cannot make a
                # valid descriptor out of another one.
                frames = [b"\xff" * len(f) for f in frames]
                moved = vr.enqueue(frames, 12 if mergeable else hdr_len, mergeable)
            event(f"{'dequeue' if transmit else 'enqueue'} moved {min(moved, 2)}+ frames")
        except VringError as e:
            event("VringError: " + re.sub(r"\d+|0x[0-9a-f]+", "N", str(e).split("): ")[-1]))
            assert str(e).startswith("ring 0: ")
            assert g.drv.used_idx == used_before
            assert g.counters.get(0) == counters_before
            if transmit:
                assert g.ram.changed(before) == []
        assert _inside(g.ram.changed(before), allowed)
        assert g.ram.canaries_intact()
    finally:
        g.close()


# -- notifications ------------------------------------------------------------------------


@SETTINGS
@given(start_indices, st.booleans(),
       st.lists(st.tuples(st.integers(0, 8),  # frames the guest adds
                          st.integers(1, 8),  # burst size
                          st.booleans(),  # NO_INTERRUPT
                          st.integers(-3, 10)),  # used_event relative to used idx
                min_size=1, max_size=12))
def test_notifications_follow_the_suppression_rules(start_idx, event_idx, steps):
    g = Guest(16, start_idx, call=True)
    try:
        vr = g.vring(event_idx=event_idx)
        for added, burst, no_interrupt, used_event in steps:
            for i in range(added):
                if g.drv.free_descs:
                    g.drv.add_tx(bytes([i]) * 20)
            g.drv.set_no_interrupt(no_interrupt)
            old = g.drv.used_idx
            g.drv.set_used_event(old + used_event)
            n = len(vr.dequeue(burst, 12))
            new = g.drv.used_idx
            assert new == (old + n) & 0xFFFF
            if n == 0:
                expect = 0
            elif event_idx:
                # vring_need_event(used_event, new, old)
                expect = int((new - (old + used_event) - 1) & 0xFFFF < ((new - old) & 0xFFFF))
            else:
                expect = int(not no_interrupt)
            assert g.notifications() == expect
            g.drv.reap_tx()
    finally:
        g.close()


# -- the lane test of a run's buffer addresses ------------------------------------------

_U64 = (1 << 64) - 1


@st.composite
def _runs(draw):
    lo = draw(st.sampled_from([0, 1, 0x1000, 0x1_0020_0000, _U64 - 0x10000]))
    size = draw(st.sampled_from([1, 76, 0x1000, 0x2600_0000, 1 << 64]))
    hi = lo + size
    longest = draw(st.sampled_from([0, 1, 76, 2048, 0x10000]))
    edges = [0, 1, lo - 1, lo, lo + 1, hi - longest - 1, hi - longest, hi - longest + 1, hi,
             _U64 - longest, _U64]
    addrs = draw(st.lists(st.one_of(st.sampled_from([e for e in edges if 0 <= e <= _U64]),
                                    st.integers(0, _U64)), min_size=1, max_size=9))
    # The other fields of each descriptor are arbitrary: the test must not see them.
    rest = draw(st.lists(st.integers(0, _U64), min_size=len(addrs), max_size=len(addrs)))
    raw = b"".join(a.to_bytes(8, "little") + r.to_bytes(8, "little")
                   for a, r in zip(addrs, rest))
    return raw, addrs, longest, lo, hi


@settings(max_examples=3000, deadline=None)
@given(_runs())
def test_the_lane_test_is_min_and_max_of_the_addresses(run):
    raw, addrs, longest, lo, hi = run
    bounds = lane_bounds(len(addrs), longest, lo, hi)
    inside = all(lo <= a and a + longest <= hi for a in addrs)
    if bounds is None:
        assert not inside
    else:
        assert all_within(int.from_bytes(raw, "little"), len(addrs), bounds) == inside


# -- the shape test of a transmit run's descriptors -----------------------------------------

@st.composite
def _shapes(draw):
    """n descriptors, mostly alike (one address high word, one length, flags 0),
    with a few fields changed: a bit of the high word, the length or the flags."""
    n = draw(st.sampled_from([2, 3, 47, 48, 49, 64, 256, 300]))
    hi = draw(st.sampled_from([0, 1, 0x7F, 0xFFFF_FFFF]))
    ln = draw(st.sampled_from([0, 12, 76, 0xFFFF_FFFF]))
    descs = [[hi << 32 | draw(st.integers(0, 0xFFFF_FFFF)), ln, 0,
              draw(st.integers(0, 0xFFFF))] for _ in range(n)]
    for _ in range(draw(st.integers(0, 2))):
        d = descs[draw(st.integers(0, n - 1))]
        field = draw(st.sampled_from(["hi", "len", "flags"]))
        bit = 1 << draw(st.integers(0, 31 if field != "flags" else 15))
        if field == "hi":
            d[0] ^= bit << 32
        elif field == "len":
            d[1] ^= bit
        else:
            d[2] ^= bit
    return n, b"".join(DESC.pack(*d) for d in descs), descs


@settings(max_examples=1000, deadline=None)
@given(_shapes())
def test_the_shape_test_is_flags_zero_and_one_high_word_and_length(shape):
    n, raw, descs = shape
    first = descs[0]
    want = all(d[2] == 0 and d[0] >> 32 == first[0] >> 32 and d[1] == first[1] for d in descs)
    assert plain_one_shape(raw, n) == want
