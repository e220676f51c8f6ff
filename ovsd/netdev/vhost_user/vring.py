"""Split virtqueues, device side: moving frames between PMDs and guest memory.

Layout (virtio 1.x, "Split Virtqueues"), all little endian:

- descriptor table: ``num`` x {u64 addr, u32 len, u16 flags, u16 next}
- avail ring: u16 flags, u16 idx, u16 ring[num], u16 used_event
- used ring: u16 flags, u16 idx, {u32 id, u32 len} ring[num], u16 avail_event

The guest owns every byte of it and may scribble anything at any moment, so
each value read from it is copied into a local first and checked before it
is used, and every address goes through the memory table.  A ring the guest
broke raises ``VringError`` before the burst publishes anything.

The hot path is one burst at a time, and one used->idx store per burst.
A burst whose avail entries are consecutive descriptors, each one buffer
(DPDK hands them out so), is checked by whole-burst operations on its raw
descriptors read as one int; when all its buffers also have one length,
dequeue copies its frames out by one C call through the slices it keeps for
the buffers it has seen (slices.py) and enqueue writes them with one store
each, or a big burst of small frames all at once by the kernel (kcopy.py).
Other bursts are walked descriptor by descriptor, with a fast path for the
chain of one buffer in the memory region the previous one was in; chains,
indirect tables and frames spread over several receive buffers take the
general walk.

Device indices (last_avail_idx, used_idx) live only in ``RingCounters``,
read once when a burst starts and written once when it ends, so any process
holding the counters area can take a ring over or report its base.

We never read kicks: PMDs poll.  used->flags gets VRING_USED_F_NO_NOTIFY
and, with EVENT_IDX, avail_event is left alone (as DPDK does), which costs a
guest one kick per 64K buffers at most.
"""

from __future__ import annotations

import os
import threading
from struct import Struct
from typing import Sequence

from ovsd.netdev.vhost_user import kcopy
from ovsd.netdev.vhost_user.memory import GuestMemory, GuestMemoryError, Span
from ovsd.netdev.vhost_user.slices import FrameSlices
from ovsd.packet.parse import OneLengthBurst

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_USED_F_NO_NOTIFY = 1
VRING_AVAIL_F_NO_INTERRUPT = 1

MAX_RING_SIZE = 32768
#: No frame longer than this ever leaves dequeue (longer ones are dropped).
MAX_FRAME = 65535

COUNTERS_STRIDE = 8

_DESC = Struct("<QIHH")
_U16 = Struct("<H")
_EVENTFD_ONE = (1).to_bytes(8, "little")

# Memory ordering.  x86 keeps stores in program order and loads in program
# order, and CPython performs ours in program order: so avail->idx is read
# before the avail entries it covers, and descriptors' data and used entries
# are written before the used->idx store.  Reads of a shared index go through
# struct (on a little-endian host one native load).  Stores that another CPU
# may be reading at that moment (used->idx, used->flags, the ring counters)
# go through a memoryview cast to the field's type: one native store.  Never
# Struct.pack_into for those: it zeroes the destination before writing the
# value, and a guest that reads used->idx == 0 in between believes tens of
# thousands of entries were used and walks stale slots (DPDK's virtio driver
# did, under `make soak`).  The one
# reordering x86 does allow, a later load passing an earlier store, matters
# between our used->idx store and our read of the guest's interrupt
# suppression: taking a lock executes a locked instruction, which is a full
# barrier, so _fence() goes between them.
_fence_lock = threading.Lock()


def _fence() -> None:
    _fence_lock.acquire()
    _fence_lock.release()


# Burst-sized structs, built on first use: "<nH" for n avail entries, for n
# used entries "<2nI" (id, len pairs) or "<n(I4x)" (ids, lens zero), and
# "<n(QI4x)" for the addresses and lengths of n consecutive descriptors (their
# flags are checked whole, as one int, and their next fields are not needed).
_HEADS: dict[int, Struct] = {}
_USED: dict[int, Struct] = {}
_USED_IDS: dict[int, Struct] = {}
_DESCS: dict[int, Struct] = {}
#: Per ring size: avail entries 0, 1, ..., num-1 twice, as the avail ring holds
#: them when the guest hands out descriptors in order (DPDK does).
_IN_ORDER: dict[int, bytes] = {}


def _heads_struct(n: int) -> Struct:
    s = _HEADS.get(n)
    if s is None:
        s = _HEADS[n] = Struct(f"<{n}H")
    return s


def _descs_struct(n: int) -> Struct:
    s = _DESCS.get(n)
    if s is None:
        s = _DESCS[n] = Struct("<" + "QI4x" * n)
    return s


#: Per ring size: 0, 1, ..., num-1 twice, as ints.
_IN_ORDER_IDS: dict[int, tuple[int, ...]] = {}


def _in_order_ids(num: int) -> tuple[int, ...]:
    t = _IN_ORDER_IDS.get(num)
    if t is None:
        t = _IN_ORDER_IDS[num] = (*range(num), *range(num))
    return t


def _in_order(num: int) -> bytes:
    b = _IN_ORDER.get(num)
    if b is None:
        b = _IN_ORDER[num] = _heads_struct(2 * num).pack(*range(num), *range(num))
    return b


#: Per (ring size, used length): used entries {id 0, len}, {id 1, len}, ...,
#: {id num-1, len} twice, as an in-order run of one frame size returns them;
#: a run's entries are then one slice of it.  Few sizes occur (dequeue's len
#: is 0; enqueue's is a frame size), and the cache is emptied if many do.
_IN_ORDER_USED: dict[tuple[int, int], bytes] = {}


def _in_order_used(num: int, length: int) -> bytes:
    b = _IN_ORDER_USED.get((num, length))
    if b is None:
        if len(_IN_ORDER_USED) >= 64:
            _IN_ORDER_USED.clear()
        b = _IN_ORDER_USED[num, length] = Struct(f"<{4 * num}I").pack(
            *[v for i in range(2 * num) for v in (i & (num - 1), length)])
    return b


#: Per burst size n, as ints over n raw descriptors: every flags field, and
#: every flags field set to WRITE.
_FLAGS: dict[int, tuple[int, int]] = {}


def _flag_words(n: int) -> tuple[int, int]:
    f = _FLAGS.get(n)
    if f is None:
        f = _FLAGS[n] = (int.from_bytes(_DESC.pack(0, 0, 0xFFFF, 0) * n, "little"),
                         int.from_bytes(_DESC.pack(0, 0, VRING_DESC_F_WRITE, 0) * n,
                                        "little"))
    return f


#: Per burst size n, over n raw descriptors read as one little-endian int
#: (a 128-bit lane each): every address bit, bit 64 of every lane, and a 1 at
#: the bottom of every lane (to repeat a constant in all lanes).
_LANES: dict[int, tuple[int, int, int]] = {}


def _lanes(n: int) -> tuple[int, int, int]:
    lanes = _LANES.get(n)
    if lanes is None:
        ones = int.from_bytes((1).to_bytes(16, "little") * n, "little")
        lanes = _LANES[n] = (ones * 0xFFFF_FFFF_FFFF_FFFF, ones << 64, ones)
    return lanes


def lane_bounds(n: int, longest: int, lo: int, hi: int) -> tuple[int, int] | None:
    """The constants with which ``all_within`` tests n descriptors against the
    region [lo, hi) for buffers of up to ``longest`` bytes; None when no such
    buffer fits in it."""
    last = min(hi - longest, (1 << 64) - 1)  # the highest start that fits
    if last < lo:
        return None
    ones = _lanes(n)[2]
    return ones * ((1 << 64) - lo), ones * ((1 << 64) - 1 - last)


def all_within(x: int, n: int, bounds: tuple[int, int]) -> bool:
    """Whether every one of n raw descriptors, read as one little-endian int
    ``x``, has lo <= addr <= hi - longest (``bounds`` from lane_bounds).

    Lane arithmetic: an address a (bits 0-63 of its 128-bit lane, the rest
    cleared) plus 2**64 - lo carries into bit 64 exactly when a >= lo, and
    plus 2**64 - 1 - (hi - longest) exactly when a + longest > hi.  The sums
    stay below 2**65, so no lane spills into the next.  Two big-int
    additions, a third of the time of min() and max() over the addresses."""
    amask, bit64, _ = _lanes(n)
    a = x & amask
    return (a + bounds[0]) & bit64 == bit64 and not (a + bounds[1]) & bit64


_IOV_LANES: dict[tuple[int, int, int], int] = {}


def iovecs(x: int, n: int, delta: int, length: int) -> bytes:
    """n raw descriptors, read as one little-endian int ``x``, as n iovecs of
    ``length`` bytes at each descriptor's address + ``delta``.  A descriptor
    is 16 bytes, {u64 addr, u32 len, u16 flags, u16 next}, and so is an
    iovec, {u64 base, u64 len}: keeping each lane's address bits and adding
    delta to them and length above them makes the array.  The caller has
    checked every address + delta lies in a mapping, so no base leaves
    0..2^64-1 and no lane spills into the next."""
    amask, _, ones = _lanes(n)
    key = (n, delta, length)
    add = _IOV_LANES.get(key)
    if add is None:
        if len(_IOV_LANES) >= 64:
            _IOV_LANES.clear()
        add = _IOV_LANES[key] = ones * (delta + (length << 64))
    return ((x & amask) + add).to_bytes(n << 4, "little")


#: The address's high word and the length of a descriptor (bytes 4 to 11).
_HI_LEN = Struct("<II")
_LOWS: dict[int, Struct] = {}
_HI_LEN_MASKS: dict[int, int] = {}


def _lows_struct(n: int) -> Struct:
    """The low words of the addresses of n raw descriptors."""
    s = _LOWS.get(n)
    if s is None:
        s = _LOWS[n] = Struct("<" + "I12x" * n)
    return s


def _one_hi_len(x: int, n: int) -> bool:
    """Whether n raw descriptors, read as one int ``x``, all have the address high
    word and the length of the first: each lane is compared with the next."""
    m = _HI_LEN_MASKS.get(n)
    if m is None:  # those fields of lanes 0..n-2
        m = _HI_LEN_MASKS[n] = _lanes(n - 1)[2] * (0xFFFF_FFFF_FFFF_FFFF << 32)
    return not (x ^ x >> 128) & m


_NO_FLAGS: dict[int, memoryview] = {}


def plain_one_shape(raw: bytes, n: int) -> bool:
    """Whether n raw descriptors are all plain buffers (flags 0) with the
    address high word and the length of the first.  Big bursts compare
    strided views in C: 1.7 us for 256 descriptors, where reading them as
    one int and two lane tests take 4.4; below 48 the int is cheaper."""
    if n < 48:
        x = int.from_bytes(raw, "little")
        return not x & _flag_words(n)[0] and _one_hi_len(x, n)
    zeros = _NO_FLAGS.get(n)
    if zeros is None:
        if len(_NO_FLAGS) >= 64:
            _NO_FLAGS.clear()
        zeros = _NO_FLAGS[n] = memoryview(bytes(2 * n)).cast("H")
    view = memoryview(raw)
    words = view.cast("I")
    return (view.cast("H")[6::8] == zeros
            and words[1::4] == memoryview(raw[4:8] * n).cast("I")
            and words[2::4] == memoryview(raw[8:12] * n).cast("I"))


def _used_struct(n: int, ids_only: bool) -> Struct:
    cache = _USED_IDS if ids_only else _USED
    s = cache.get(n)
    if s is None:
        s = cache[n] = Struct("<" + "I4x" * n) if ids_only else Struct(f"<{2 * n}I")
    return s


def _rx_header(hdr_len: int, num_buffers: int) -> bytes:
    """A zeroed virtio-net header, num_buffers set when the header has the field."""
    if hdr_len == 12:
        return bytes(10) + num_buffers.to_bytes(2, "little")
    return bytes(hdr_len)


_ONE_BUFFER_HDR = {10: _rx_header(10, 1), 12: _rx_header(12, 1)}


class VringError(Exception):
    """The guest broke the ring protocol; the message says what and where."""


class RingCounters:
    """Per-ring device-side indices in a small shared buffer (a memfd mapping shared
    between the control process and PMD processes; here any writable buffer).
    Ring i's slot at offset 8*i: u16 last_avail_idx, u16 used_idx (little endian),
    4 bytes reserved.

    Both indices of a ring are one 32-bit word, loaded and stored whole, so a
    process reading them while another updates them sees the old pair or the
    new one.  ``release()`` before unmapping the buffer."""

    def __init__(self, buf) -> None:
        self.slots = len(buf) // COUNTERS_STRIDE
        #: Ring i's word is words[2 * i]: last_avail | used << 16 (little-endian host).
        self.words = memoryview(buf).cast("B")[:self.slots * COUNTERS_STRIDE].cast("I")

    def release(self) -> None:
        self.words.release()

    def _offset(self, ring: int) -> int:
        if not 0 <= ring < self.slots:
            raise ValueError(f"ring {ring}: the counters area holds rings 0 to "
                             f"{self.slots - 1}")
        return ring * COUNTERS_STRIDE

    def get(self, ring: int) -> tuple[int, int]:
        """(last_avail_idx, used_idx) of ``ring``."""
        word = self.words[self._offset(ring) >> 2]
        return word & 0xFFFF, word >> 16

    def set(self, ring: int, last_avail: int, used: int) -> None:
        for name, value in (("last_avail", last_avail), ("used", used)):
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"ring {ring}: {name}={value}: expected 0 to 65535")
        self.words[self._offset(ring) >> 2] = last_avail | used << 16


class SplitVring:
    """One split virtqueue of a vhost-user device, mapped in this process.

    Cheap to build: rebuild it when the frontend changes the ring, its call
    fd or the memory table (the indices are in ``counters``).  ``release()``
    it before closing the GuestMemory it was built on.  ``dropped_oversize``
    counts guest frames longer than MAX_FRAME that dequeue dropped;
    ``last_bytes`` is the length of the frames the last dequeue returned or the
    last enqueue delivered, virtio-net headers not counted (the ring knows it
    from descriptor lengths it has already read, cheaper than measuring the
    frames again).
    """

    __slots__ = ("mem", "index", "num", "event_idx", "indirect", "call_fd",
                 "dropped_oversize", "last_bytes", "_spans", "_fast", "_bounds", "_dmm",
                 "_doff", "_amm", "_aoff", "_umm", "_uoff", "_used_event_off", "_avail_ring",
                 "_bad_heads", "_words", "_word", "_used_hdr", "_in_order", "_slices",
                 "_anchors")

    def __init__(self, mem: GuestMemory, index: int, num: int, desc_uva: int,
                 avail_uva: int, used_uva: int, counters: RingCounters, *,
                 event_idx: bool, indirect: bool, call_fd: int | None):
        if not 1 <= num <= MAX_RING_SIZE or num & (num - 1):
            raise VringError(f"ring {index}: size {num} is not a power of two from 1 "
                             f"to {MAX_RING_SIZE}")
        for what, addr, align in (("descriptor table", desc_uva, 16),
                                  ("avail ring", avail_uva, 2), ("used ring", used_uva, 4)):
            if addr % align:
                raise VringError(f"ring {index}: {what} address 0x{addr:x} is not "
                                 f"{align}-byte aligned")
        if mem is None:
            raise VringError(f"ring {index}: no memory table was set")
        counters._offset(index)  # the slot must exist
        try:
            self._dmm, self._doff = mem.uva(desc_uva, 16 * num)
            self._amm, self._aoff = mem.uva(avail_uva, 6 + 2 * num)
            self._umm, self._uoff = mem.uva(used_uva, 6 + 8 * num)
        except GuestMemoryError as e:
            raise VringError(f"ring {index}: {e}") from None
        self.mem = mem
        self.index = index
        self.num = num
        self.event_idx = event_idx
        self.indirect = indirect
        #: Settable: the eventfd written to interrupt the guest (None: never).
        self.call_fd = call_fd
        self.dropped_oversize = 0
        self.last_bytes = 0
        self._spans: tuple[Span, ...] = mem.gpa_spans
        # Start with the largest region: that is where most buffers live.
        self._fast: Span = max(self._spans, key=lambda s: s[1] - s[0])
        #: (n, longest, lo, hi) -> the constants of _run_span's lane test
        self._bounds: dict[tuple[int, int, int, int], tuple[int, int] | None] = {}
        self._used_event_off = self._aoff + 4 + 2 * num
        self._avail_ring = self._aoff + 4
        # Bits that no valid avail entry has, in each of num 16-bit lanes.
        self._bad_heads = int.from_bytes((0xFFFF & ~(num - 1)).to_bytes(2, "little") * num,
                                         "little")
        self._in_order = _in_order(num)
        self._words = counters.words
        self._word = index * COUNTERS_STRIDE >> 2
        #: used->flags and used->idx, as two u16 a store each.
        self._used_hdr = memoryview(self._umm)[self._uoff:self._uoff + 4].cast("H")
        self._used_hdr[0] = VRING_USED_F_NO_NOTIFY
        #: Dequeue's slices of the frames of buffers it has seen (slices.py).
        self._slices = FrameSlices()
        #: span start -> (export keeping the span's mapping mapped, its address)
        self._anchors: dict[int, tuple] = {}

    def release(self) -> None:
        """Let go of the view into guest memory (before it is unmapped); the ring
        is unusable afterwards."""
        self._used_hdr.release()
        self._slices.clear()
        self._anchors.clear()

    # -- bursts -------------------------------------------------------------------

    def dequeue(self, max_frames: int, hdr_len: int) -> list[bytes]:
        """Guest-transmitted frames (a TX virtqueue), virtio-net header (hdr_len bytes,
        10 or 12) stripped; header and data may be spread over the chain.  Returns
        every consumed chain to the used ring (len 0), one used->idx store per burst;
        then notifies the guest (call fd) unless suppressed.  [] when nothing is
        available.  Frames longer than MAX_FRAME are dropped (``dropped_oversize``)."""
        if hdr_len != 12 and hdr_len != 10:
            raise ValueError(f"hdr_len={hdr_len}: expected 10 or 12")
        word = self._words[self._word]
        last_avail, used_idx = word & 0xFFFF, word >> 16
        amm = self._amm
        pending = (_U16.unpack_from(amm, self._aoff + 2)[0] - last_avail) & 0xFFFF
        if not pending or max_frames <= 0:
            self.last_bytes = 0
            return []
        num = self.num
        if pending > num:
            self._raise_too_many(last_avail, pending)
        n = pending if pending < max_frames else max_frames
        raw = self._avail_entries(last_avail, n)
        h0 = raw[0] | raw[1] << 8
        if h0 < num and raw == self._in_order[2 * h0:2 * (h0 + n)]:
            frames = self._dequeue_run(h0, n, hdr_len)
            if frames is not None:
                at = h0 << 3
                self._publish(last_avail + n, used_idx, n,
                              _in_order_used(num, 0)[at:at + (n << 3)])
                return frames
        heads = self._checked_heads(raw, last_avail)

        lo, hi, delta, mm = self._fast
        dmm = self._dmm
        doff = self._doff
        unpack = _DESC.unpack_from
        maxlen = hdr_len + MAX_FRAME
        frames: list[bytes] = []
        append = frames.append
        for head in heads:
            addr, ln, flags, _ = unpack(dmm, doff + (head << 4))
            if flags == 0 and hdr_len <= ln <= maxlen:
                if lo <= addr and addr + ln <= hi:
                    addr += delta
                    append(mm[addr + hdr_len:addr + ln])
                    continue
                span = self._span(addr, ln)
                if span is not None:
                    lo, hi, delta, mm = self._fast = span
                    addr += delta
                    append(mm[addr + hdr_len:addr + ln])
                    continue
            frame = self._tx_chain(head, hdr_len)
            if frame is not None:
                append(frame)

        self.last_bytes = sum(map(len, frames))
        self._complete(last_avail + n, used_idx, heads, True)
        return frames

    def enqueue(self, frames: list, hdr_len: int, mergeable: bool) -> int:
        """Put frames into guest receive buffers (an RX virtqueue); returns how many
        of ``frames`` (a prefix) were delivered.

        Each frame gets a zeroed virtio-net header of hdr_len bytes; with hdr_len 12
        num_buffers is set (1 without mergeable).  Without mergeable, one chain per
        frame.  A frame larger than the chain at the head of the ring stops the
        burst there, as in DPDK: the chain stays available for the next frame and
        this frame and the rest are the caller's to count as dropped.  With
        mergeable a frame takes as many heads as it needs, num_buffers = count.
        Stopping for lack of buffers works the same way.  One used->idx store and
        at most one notification per call."""
        if hdr_len != 12 and hdr_len != 10:
            raise ValueError(f"hdr_len={hdr_len}: expected 10 or 12")
        if mergeable and hdr_len != 12:
            raise ValueError("mergeable receive buffers need the 12-byte header")
        nframes = len(frames)
        word = self._words[self._word]
        last_avail, used_idx = word & 0xFFFF, word >> 16
        amm = self._amm
        pending = (_U16.unpack_from(amm, self._aoff + 2)[0] - last_avail) & 0xFFFF
        if not pending or not nframes:
            self.last_bytes = 0
            return 0
        num = self.num
        if pending > num:
            self._raise_too_many(last_avail, pending)
        n = pending if pending < nframes else nframes
        raw = self._avail_entries(last_avail, n)
        h0 = raw[0] | raw[1] << 8
        if h0 < num and raw == self._in_order[2 * h0:2 * (h0 + n)]:
            used = self._enqueue_run(h0, frames if n == nframes else frames[:n], hdr_len)
            if used is not None:
                self._publish(last_avail + n, used_idx, n, used)
                return n
        heads = self._checked_heads(raw, last_avail)

        hdr = _ONE_BUFFER_HDR[hdr_len]
        lo, hi, delta, mm = self._fast
        dmm = self._dmm
        doff = self._doff
        unpack = _DESC.unpack_from
        used: list[int] = []  # id, len, id, len, ...
        put = used.append
        for head, frame in zip(heads, frames):
            addr, ln, flags, _ = unpack(dmm, doff + (head << 4))
            need = hdr_len + len(frame)
            if flags != VRING_DESC_F_WRITE or need > ln:
                break
            if not (lo <= addr and addr + ln <= hi):
                span = self._span(addr, ln)
                if span is None:
                    break
                lo, hi, delta, mm = self._fast = span
            addr += delta
            if need <= 512:  # copying a small frame beats a second slice store
                mm[addr:addr + need] = hdr + frame
            else:
                mm[addr:addr + hdr_len] = hdr
                mm[addr + hdr_len:addr + need] = frame
            put(head)
            put(need)
        delivered = len(used) >> 1
        if delivered < n:
            delivered = self._enqueue_rest(frames, delivered, hdr_len, mergeable, heads,
                                           used, last_avail, pending)
        self.last_bytes = sum(map(len, frames[:delivered])) if delivered < nframes \
            else sum(map(len, frames))
        if used:
            self._complete(last_avail + (len(used) >> 1), used_idx, used, False)
        return delivered

    @property
    def avail_pending(self) -> int:
        """Available entries not yet consumed."""
        last_avail = self._words[self._word] & 0xFFFF
        return (_U16.unpack_from(self._amm, self._aoff + 2)[0] - last_avail) & 0xFFFF

    # -- burst pieces -------------------------------------------------------------

    def _read_heads(self, first: int, n: int) -> tuple[int, ...]:
        """Avail entries first..first+n-1 (free-running indices), all checked < num."""
        return self._checked_heads(self._avail_entries(first, n), first)

    def _avail_entries(self, first: int, n: int) -> bytes:
        """Avail entries first..first+n-1 as they lie in the ring (u16 little
        endian), unchecked: equal to a slice of _in_order they are all < num."""
        num = self.num
        start = first & (num - 1)
        amm = self._amm
        ring = self._avail_ring
        at = ring + 2 * start
        if start + n <= num:
            raw = amm[at:at + 2 * n]
        else:
            raw = amm[at:ring + 2 * num] + amm[ring:ring + 2 * (start + n - num)]
        return raw

    def _checked_heads(self, raw: bytes, first: int) -> tuple[int, ...]:
        """The avail entries ``raw`` (read from index ``first`` on) as ints, all < num."""
        heads = _heads_struct(len(raw) >> 1).unpack(raw)
        # One check for the whole burst: an entry >= num (a power of two) has a
        # bit set that _bad_heads has in every 16-bit lane.
        if int.from_bytes(raw, "little") & self._bad_heads:
            self._raise_bad_head(first, heads)
        return heads

    # The in-order runs: a burst whose heads are consecutive descriptors
    # (mod num), each a chain of one buffer inside one memory region, is
    # checked with a few whole-burst operations (one test of every flags
    # field, of one length and address high word, a lane test of the
    # addresses against the region or the slices kept for the buffers) and
    # copied by those slices, one preadv or one store per frame, instead of
    # an unpack and four tests per frame.  Anything else returns None, and the caller
    # walks the burst frame by frame: dequeue before reading guest memory;
    # enqueue possibly after writing buffers that are still the device's
    # (see _scatter).

    def _desc_run(self, h0: int, n: int) -> bytes:
        """The raw descriptors h0, h0+1, ... (mod num), n of them."""
        dmm, at = self._dmm, self._doff + (h0 << 4)
        k = self.num - h0
        if n <= k:
            return dmm[at:at + (n << 4)]
        return dmm[at:at + (k << 4)] + dmm[self._doff:self._doff + ((n - k) << 4)]

    def _run_span(self, x: int, addrs: tuple[int, ...], longest: int,
                  base: int = 0) -> Span | None:
        """The memory region holding every buffer of a run, or None.  ``x``: the
        run's raw descriptors as one little-endian int, with which the region
        the last runs used is tested for all buffers at once (all_within);
        the buffers are at base + addrs[i]."""
        span = self._lane_span(x, len(addrs), longest)
        if span is not None:
            return span
        first = base + min(addrs)
        end = base + max(addrs) + longest
        span = self._span(first, end - first)
        if span is not None:
            self._fast = span
        return span

    def _lane_span(self, x: int, n: int, longest: int) -> Span | None:
        """The region the last runs used, when it holds every buffer of this
        one (n raw descriptors read as the int ``x``, buffers of up to
        ``longest`` bytes); else None."""
        span = self._fast
        key = (n, longest, span[0], span[1])
        bounds = self._bounds.get(key, False)
        if bounds is False:
            if len(self._bounds) >= 16:
                self._bounds.clear()
            bounds = self._bounds[key] = lane_bounds(*key)
        if bounds is not None and all_within(x, n, bounds):
            return span
        return None

    def _dequeue_run(self, h0: int, n: int, hdr_len: int) -> list[bytes] | None:
        """The frames of the run, last_bytes set; or None (nothing read)."""
        raw = self._desc_run(h0, n)
        hi_word, ln = _HI_LEN.unpack_from(raw, 4)
        if hdr_len <= ln <= hdr_len + MAX_FRAME and n > 1 and plain_one_shape(raw, n):
            frames = self._slices.gather(_lows_struct(n).unpack(raw), hi_word << 32, ln,
                                         hdr_len, self._span)
            if frames is not None:
                self.last_bytes = n * (ln - hdr_len)
                return OneLengthBurst(frames)
        x = int.from_bytes(raw, "little")
        if x & _flag_words(n)[0]:
            return None   # chained, indirect or write-only: not one plain buffer
        vals = _descs_struct(n).unpack(raw)
        lens = vals[1::2]
        longest = max(lens)
        shortest = min(lens)
        if shortest < hdr_len or longest > hdr_len + MAX_FRAME:
            return None
        addrs = vals[0::2]
        span = self._run_span(x, addrs, longest)
        if span is None:
            return None
        _, _, delta, mm = span
        skip = delta + hdr_len
        if shortest == longest:  # a stream of one frame size: one addition less each
            self.last_bytes = n * (longest - hdr_len)
            end = delta + longest
            return [mm[a + skip:a + end] for a in addrs]
        self.last_bytes = sum(lens) - n * hdr_len
        return [mm[a + skip:a + delta + ln] for a, ln in zip(addrs, lens)]

    def _enqueue_run(self, h0: int, frames: list, hdr_len: int) -> bytes | None:
        """Write each frame with a one-buffer header into descriptors h0, h0+1, ...
        (mod num); the used entries as they go into the used ring (last_bytes
        set), or None: then nothing was published and the caller's exact walk
        does the burst."""
        n = len(frames)
        raw = self._desc_run(h0, n)
        flags, all_write = _flag_words(n)
        x = int.from_bytes(raw, "little")
        if x & flags != all_write:
            return None
        hi_word, ln = _HI_LEN.unpack_from(raw, 4)
        if _one_hi_len(x, n):
            used = self._scatter(x, raw, hi_word << 32, ln, frames, hdr_len, h0)
            if used is not None:
                return used
        vals = _descs_struct(n).unpack(raw)
        lens = vals[1::2]
        sizes = list(map(len, frames))
        longest = max(sizes)
        if hdr_len + longest > min(lens):
            return None   # some frame may not fit its buffer: the exact walk decides
        addrs = vals[0::2]
        span = self._run_span(x, addrs, max(lens))
        if span is None:
            return None
        _, _, delta, mm = span
        hdr = _ONE_BUFFER_HDR[hdr_len]
        needs = [hdr_len + size for size in sizes]
        for a, frame, need in zip(addrs, frames, needs):
            a += delta
            mm[a:a + need] = hdr + frame
        used = [0] * (2 * n)
        used[0::2] = _in_order_ids(self.num)[h0:h0 + n]
        used[1::2] = needs
        self.last_bytes = sum(sizes)
        return _used_struct(n, False).pack(*used)

    def _scatter(self, x: int, raw: bytes, base: int, ln: int, frames: list,
                 hdr_len: int, h0: int) -> bytes | None:
        """Write frames of one size, each with a one-buffer header, into the
        buffers of the raw descriptors ``raw`` (``x``: as one int), whose
        addresses all are base + a low word and whose lengths all are
        ``ln``; the used entries (last_bytes set), or None when the frames
        do not fit or differ in size or the buffers are not inside one
        memory region.  Then the exact walk redoes the burst: the buffers
        are still the device's until used->idx says otherwise, so what was
        written into them meanwhile is only overwritten.  Big bursts of
        small frames are copied by the kernel (kcopy.py), the rest by the
        interpreter."""
        size = len(frames[0])
        need = hdr_len + size
        if need > ln:
            return None
        n = len(frames)
        lows = None   # made only when needed: 2 us for 256 buffers
        span = self._lane_span(x, n, need)
        if span is None:
            lows = _lows_struct(n).unpack(raw)
            span = self._run_span(x, lows, need, base)
            if span is None:
                return None
        hdr = _ONE_BUFFER_HDR[hdr_len]
        if n < kcopy.MIN_BURST or need > kcopy.MAX_PIECE \
                or not self._kernel_scatter(x, n, span, need, size, frames, hdr):
            if lows is None:
                lows = _lows_struct(n).unpack(raw)
            # small when the region is: cheaper additions in the loop
            if not self._store(lows, base + span[2], span[3], frames, hdr, size):
                return None
        self.last_bytes = n * size
        return _in_order_used(self.num, need)[h0 << 3:(h0 + n) << 3]

    @staticmethod
    def _store(lows: tuple[int, ...], off: int, mm, frames: list, hdr: bytes,
               size: int) -> bool:
        """_scatter's copy by the interpreter, a store per frame (``off``: where
        address base + 0 is in ``mm``); False when a frame is not ``size``
        bytes long."""
        hdr_len = len(hdr)
        # A buffer that comes round again mostly still holds the header we
        # wrote last time (DPDK's drivers only read it): then it is left as
        # it is.  The header shares a cache line with the guest's data in
        # front of it, which the guest's core last touched; not writing it
        # spares fetching that line for ownership, the costliest part of
        # the copy in.
        try:
            for a, frame in zip(lows, frames):
                a += off
                b = a + hdr_len
                if mm[a:b] != hdr:
                    mm[a:b] = hdr
                mm[b:b + size] = frame
        except IndexError:  # a frame of another size (the slice is size bytes)
            return False
        return True

    def _kernel_scatter(self, x: int, n: int, span: Span, need: int, size: int,
                        frames: list, hdr: bytes) -> bool:
        """_scatter's copy by one preadv (kcopy.py), when the frames all are
        ``size`` bytes long; False when it was not done."""
        copier = kcopy.copier()
        if copier is None:
            return False
        rest = hdr.join(frames)   # frame, header, frame, ...: the first header goes before
        # n frames of at most size bytes that add up to n * size are all that long.
        if len(rest) != n * need - len(hdr) or (type(frames) is not OneLengthBurst
                                                and max(map(len, frames)) != size):
            return False
        held = self._anchors.get(span[0])
        if held is None:
            held = self._anchors[span[0]] = kcopy.anchor(span[3])
        return copier.scatter(iovecs(x, n, held[1] + span[2], need), n, need, rest,
                              head=hdr)

    def _raise_bad_head(self, first: int, heads: tuple[int, ...]) -> None:
        num = self.num
        i = next(i for i, h in enumerate(heads) if h >= num)
        raise VringError(
            f"ring {self.index}: avail entry {(first + i) & 0xFFFF} (slot "
            f"{(first + i) & (num - 1)}) holds descriptor index {heads[i]}, "
            f"beyond the ring size {num}")

    def _raise_too_many(self, last_avail: int, pending: int) -> None:
        raise VringError(
            f"ring {self.index}: avail->idx {(last_avail + pending) & 0xFFFF} is "
            f"{pending} entries ahead of last_avail_idx {last_avail}, more than the "
            f"ring size {self.num}")

    def _complete(self, new_avail: int, used_idx: int, entries: Sequence[int],
                  ids_only: bool) -> None:
        """Publish used entries and notify.  ``entries``: descriptor ids whose used
        length is 0 (``ids_only``), or id, len, id, len, ..."""
        n = len(entries) if ids_only else len(entries) >> 1
        self._publish(new_avail, used_idx, n, _used_struct(n, ids_only).pack(*entries))

    def _publish(self, new_avail: int, used_idx: int, n: int, entries: bytes) -> None:
        """Write n used entries (8 bytes each, as they lie in the ring) from
        used_idx on, then the indices, then notify."""
        num = self.num
        umm = self._umm
        ring = self._uoff + 4
        start = used_idx & (num - 1)
        at = ring + (start << 3)
        if start + n <= num:
            umm[at:at + (n << 3)] = entries
        else:  # the ring wraps
            cut = (num - start) << 3
            umm[at:at + cut] = entries[:cut]
            umm[ring:ring + (n << 3) - cut] = entries[cut:]
        new_used = (used_idx + n) & 0xFFFF
        # Counters before used->idx: a process that dies in between leaves a
        # successor that republishes these entries, never one that consumes
        # the same avail entries twice.
        self._words[self._word] = new_avail & 0xFFFF | new_used << 16
        self._used_hdr[1] = new_used
        fd = self.call_fd
        if fd is None:
            return
        _fence()
        if self.event_idx:
            # vring_need_event: notify when used_event lies in [old, new).
            event = _U16.unpack_from(self._amm, self._used_event_off)[0]
            if (new_used - event - 1) & 0xFFFF >= n:
                return
        elif _U16.unpack_from(self._amm, self._aoff)[0] & VRING_AVAIL_F_NO_INTERRUPT:
            return
        try:
            os.write(fd, _EVENTFD_ONE)
        except BlockingIOError:
            pass  # the counter is saturated: the guest has an interrupt pending anyway

    def _span(self, addr: int, length: int) -> Span | None:
        end = addr + length
        for span in self._spans:
            if span[0] <= addr < span[1] and end <= span[1]:
                return span
        return None

    def _tx_chain(self, head: int, hdr_len: int) -> bytes | None:
        """The frame in the transmit chain at ``head``; None if it is too long."""
        segs, total = self._walk(head, False)
        if total < hdr_len:
            raise VringError(f"ring {self.index}: transmit chain at head {head} holds "
                             f"{total} bytes, less than the {hdr_len}-byte virtio-net header")
        if total - hdr_len > MAX_FRAME:
            self.dropped_oversize += 1
            return None
        parts = []
        skip = hdr_len
        for mm, off, ln in segs:
            if skip >= ln:
                skip -= ln
                continue
            parts.append(mm[off + skip:off + ln])
            skip = 0
        return b"".join(parts)

    def _enqueue_rest(self, frames: list, first: int, hdr_len: int, mergeable: bool,
                      heads: tuple[int, ...], used: list[int], last_avail: int,
                      pending: int) -> int:
        """Deliver frames[first:] by the general walk after the fast loop gave up,
        adding to ``used`` (id, len for each head consumed, as in enqueue).
        Returns how many frames are delivered in all."""
        heads_list = list(heads)  # _rx_place reads more heads into it as needed
        delivered = first
        for i in range(first, len(frames)):
            if not self._rx_place(frames[i], hdr_len, mergeable, heads_list, used,
                                  last_avail, pending):
                break
            delivered += 1
        return delivered

    def _rx_place(self, frame, hdr_len: int, mergeable: bool, heads: list[int],
                  used: list[int], last_avail: int, pending: int) -> bool:
        """Write one frame into the receive chains from the next unused head on and add
        their used entries; False when the frame does not fit in what the guest
        made available (nothing is written then)."""
        need = hdr_len + len(frame)
        chains: list[tuple[int, list, int]] = []
        pos = len(used) >> 1
        got = 0
        while got < need:
            if pos == len(heads):
                if len(heads) == pending:
                    return False
                more = min(pending - len(heads), 64)
                heads.extend(self._read_heads(last_avail + len(heads), more))
            head = heads[pos]
            segs, cap = self._walk(head, True)
            if cap < hdr_len:
                raise VringError(
                    f"ring {self.index}: receive chain at head {head} holds {cap} bytes, "
                    f"less than the {hdr_len}-byte virtio-net header")
            pos += 1
            if not mergeable:
                if cap < need:
                    return False
                chains.append((head, segs, need))
                break
            take = min(cap, need - got)
            chains.append((head, segs, take))
            got += take
        payload = memoryview(b"".join((_rx_header(hdr_len, len(chains)), frame)))
        off = 0
        for head, segs, take in chains:
            used.append(head)
            used.append(take)
            for mm, start, ln in segs:
                if not take:
                    break
                k = ln if ln < take else take
                mm[start:start + k] = payload[off:off + k]
                off += k
                take -= k
        return True

    def _walk(self, head: int, write: bool) -> tuple[list[tuple], int]:
        """The buffers of the chain at ``head``, checked: [(mapping, offset, len)] and
        their total length.  ``write``: a receive chain (all write-only) rather
        than a transmit chain (all read-only)."""
        table_mm, table_off, count = self._dmm, self._doff, self.num
        idx = head
        addr, ln, flags, nxt = _DESC.unpack_from(table_mm, table_off + 16 * idx)
        in_table = False

        def fail(what: str) -> VringError:
            kind = "indirect descriptor" if in_table else "descriptor"
            return VringError(
                f"ring {self.index}: chain at head {head}: {kind} {idx} (addr 0x{addr:x}, "
                f"len {ln}, flags 0x{flags:x}): {what}")

        if flags & VRING_DESC_F_INDIRECT:
            if not self.indirect:
                raise fail("INDIRECT flag set but VIRTIO_F_INDIRECT_DESC was not negotiated")
            if flags & VRING_DESC_F_NEXT:
                raise fail("INDIRECT and NEXT flags together")
            if ln == 0 or ln % 16:
                raise fail("indirect table length is not a nonzero multiple of 16")
            if ln // 16 > self.num:
                raise fail(f"indirect table has more than the ring size ({self.num}) "
                           "descriptors")
            span = self._span(addr, ln)
            if span is None:
                raise fail("indirect table is outside guest memory")
            table_mm, table_off, count = span[3], addr + span[2], ln // 16
            in_table = True
            idx = 0
            addr, ln, flags, nxt = _DESC.unpack_from(table_mm, table_off)
        segs = []
        total = 0
        seen = 1
        while True:
            if flags & VRING_DESC_F_INDIRECT:
                raise fail("nested indirect table" if in_table
                           else "INDIRECT flag on a descriptor that is not a chain head")
            if flags & VRING_DESC_F_WRITE:
                if not write:
                    raise fail("write-only descriptor in a transmit chain")
            elif write:
                raise fail("read-only descriptor in a receive chain")
            span = self._span(addr, ln)
            if span is None:
                raise fail("buffer is outside guest memory")
            segs.append((span[3], addr + span[2], ln))
            total += ln
            if not flags & VRING_DESC_F_NEXT:
                return segs, total
            if nxt >= count:
                raise fail(f"next index {nxt} is beyond the "
                           f"{'table' if in_table else 'ring'} size {count}")
            seen += 1
            if seen > count:
                raise fail(f"chain is longer than {count} descriptors (a loop)")
            idx = nxt
            addr, ln, flags, nxt = _DESC.unpack_from(table_mm, table_off + 16 * idx)
