"""Receiving from a TPACKET_V3 ring: the side a PMD runs.

``RxQueue(fd)`` maps the ring of an AF_PACKET socket that somebody else set
up (SystemNetdev, possibly in another process: the fd travels with
SCM_RIGHTS) and hands out the frames the kernel put there.

The ring is ``block_nr`` blocks.  The kernel fills them in order and hands a
block to user space (block_status has TP_STATUS_USER) when it is full or its
timeout expired; user space gives it back by writing TP_STATUS_KERNEL.  The
reader therefore only needs one position: the block it is reading (``block``)
and how many of that block's frames it already returned (``skip``).  That
pair is all a queue's new owner needs to continue where the old one stopped:
``RxQueue(fd, block=old.block, skip=old.skip)`` after ``old.close()``.
Without a position (a fresh socket, or the previous reader died) the queue
starts at the oldest block the kernel handed over and nobody gave back (a
block a dead reader was in the middle of is then read again whole).

Frames are returned as ``bytes`` copied out of the ring (copying a 64-byte
frame costs less than making a memoryview of it, and key extraction is faster
on bytes), so they never become invalid and a block is released as soon as
its last frame has been returned.

Hot path: one struct unpack, one slice and two tests per frame, one block
header per handed-over block; no syscall.
"""

from __future__ import annotations

import os
from typing import Callable

from ovsd.netdev.base import NetdevError
from ovsd.netdev.afpacket.ring import (BLOCK_HDR, BLOCK_SEQ, BLOCK_STATUS_OFFSET,
                                       TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID,
                                       TP_STATUS_VLAN_VALID, TPACKET_V3, V3_PKT_HDR, V3_VLAN,
                                       V3_VLAN_OFFSET, RxRing, map_ring, socket_rings)

_RELEASE = bytes(4)  # TP_STATUS_KERNEL as a u32
#: Block headers a reader without a position reads at most to find where to
#: start (~12 ms per 65536 here): the biggest ring gets a few scans, not a
#: PMD stalled for seconds.
SCAN_BUDGET = 1 << 18


class RxQueue:
    """One receive queue: the rx ring of one AF_PACKET socket.

    ``ring`` is the ring's geometry; when omitted it is asked from the kernel
    (sock_diag), which also checks that ``fd`` is a TPACKET_V3 socket with an
    rx ring.  With ``close_fd`` the queue owns ``fd`` and closes it on close()
    (a PMD that received the fd over SCM_RIGHTS); otherwise the fd stays the
    caller's.
    """

    def __init__(self, fd: int, block: int | None = None, skip: int = 0, *,
                 ring: RxRing | dict | None = None, close_fd: bool = False):
        self._mm = None
        self._fd = fd
        self._close_fd = close_fd
        try:
            self._open(fd, block, skip, ring)
        except BaseException:
            self.close()  # an owned fd is not leaked when the queue cannot be built
            raise

    def _open(self, fd: int, block: int | None, skip: int,
              ring: RxRing | dict | None) -> None:
        if isinstance(ring, dict):
            ring = RxRing(**ring)
        if ring is None:
            info = socket_rings(fd)
            if info.version != TPACKET_V3 or info.rx is None:
                raise NetdevError(f"fd {fd} has no TPACKET_V3 rx ring")
            ring = info.rx
        if block is not None and not 0 <= block < ring.block_nr:
            raise NetdevError(f"rx queue start block {block}: the ring has blocks "
                              f"0 to {ring.block_nr - 1}")
        if skip < 0:
            raise NetdevError(f"rx queue skip={skip}: expected a frame count >= 0")
        self.ring = ring
        try:
            self._mm = map_ring(fd, ring.size)
        except OSError as e:
            raise NetdevError(f"cannot map the rx ring of fd {fd}: {e.strerror}") from None
        self._block_size = ring.block_size
        self._block_nr = ring.block_nr
        if block is None:
            block, skip = self._first_unread(), 0
        #: Index of the block being read, or the next one the kernel will hand over.
        self.block = block
        #: Frames of ``block`` already returned (the new owner's starting point).
        self.skip = skip
        self._left = 0  # frames of the open block not yet returned; 0: none open
        self._pos = 0  # ring offset of the next frame's header
        #: Frames returned, and frames dropped here because the kernel truncated them.
        self.packets = 0
        self.truncated = 0

    @property
    def position(self) -> tuple[int, int]:
        """(block, skip): where a new owner of this queue starts."""
        return self.block, self.skip

    def fileno(self) -> int:
        """Readable (poll/select) when the kernel has handed over a block."""
        return self._fd

    def rx_burst(self, max_frames: int = 32) -> list[bytes]:
        """Up to ``max_frames`` frames, in arrival order ([] when none is ready),
        from as many handed-over blocks as it takes.

        A block goes to user space when full or 1 ms after it was opened, so
        light traffic fills blocks with a frame or two: a burst that stopped
        at a block's end would take one block per poll, and a PMD whose loop
        over its queues takes longer than that timeout (busy vhost ports
        beside this one) would fall further behind at every poll until the
        ring overflows.
        """
        frames: list[bytes] = []
        while len(frames) < max_frames and self._read_block(frames, max_frames - len(frames)):
            pass
        return frames

    def _read_block(self, frames: list, max_frames: int) -> bool:
        """Append up to ``max_frames`` frames of the open block (opening the
        next one if it has been handed over); False when none is ready."""
        mm = self._mm
        left = self._left
        if left:
            pos = self._pos
        else:
            boff = self.block * self._block_size
            if not mm[boff + BLOCK_STATUS_OFFSET] & TP_STATUS_USER:
                return False
            _status, num, first = BLOCK_HDR.unpack_from(mm, boff + BLOCK_STATUS_OFFSET)
            pos = boff + first
            left = num
            if self.skip:
                pos, left = self._skip(pos, num)
                if not left:
                    self._release()
                    return True
        n = left if left < max_frames else max_frames
        unpack = V3_PKT_HDR.unpack_from
        append = frames.append
        odd = TP_STATUS_VLAN_VALID
        had = len(frames)
        for _ in range(n):
            nxt, snap, length, status, mac = unpack(mm, pos)
            start = pos + mac
            append(mm[start:start + snap])
            if status & odd or length != snap:
                self._fix_last(frames, pos, status, length != snap)
            pos += nxt
        left -= n
        self.packets += len(frames) - had
        if left:
            self._left = left
            self._pos = pos
            self.skip += n
        else:
            self._release()
        return True

    def _first_unread(self) -> int:
        return first_unread(self._block_states, max(2, SCAN_BUDGET // self._block_nr))

    def _block_states(self) -> list[tuple[int, int]]:
        """Each block's (status, sequence number), as the kernel left them."""
        mm = self._mm
        size = self._block_size
        return [BLOCK_SEQ.unpack_from(mm, i * size + BLOCK_STATUS_OFFSET)
                for i in range(self._block_nr)]

    def _skip(self, pos: int, num: int) -> tuple[int, int]:
        """Step over the frames a previous owner already returned."""
        skip = min(self.skip, num)
        unpack = V3_PKT_HDR.unpack_from
        for _ in range(skip):
            pos += unpack(self._mm, pos)[0]
        return pos, num - skip

    def _fix_last(self, frames: list, hdr: int, status: int, truncated: bool) -> None:
        """The rare frames: put back a VLAN tag the kernel took out of the frame
        into the ring header; drop frames cut short by the block size."""
        if truncated:
            frames.pop()
            self.truncated += 1
            return
        tci, tpid = V3_VLAN.unpack_from(self._mm, hdr + V3_VLAN_OFFSET)
        if not status & TP_STATUS_VLAN_TPID_VALID:
            tpid = 0x8100
        frame = frames[-1]
        frames[-1] = (frame[:12] + tpid.to_bytes(2, "big") + (tci & 0xFFFF).to_bytes(2, "big")
                      + frame[12:])

    def _release(self) -> None:
        boff = self.block * self._block_size + BLOCK_STATUS_OFFSET
        self._mm[boff:boff + 4] = _RELEASE
        self._left = 0
        self.skip = 0
        self.block = self.block + 1 if self.block + 1 < self._block_nr else 0

    def close(self) -> None:
        """Unmap the ring (and close the fd if owned).  The position stays readable
        so the queue can be reopened elsewhere at ``position``."""
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._close_fd and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "RxQueue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def first_unread(states: Callable[[], list[tuple[int, int]]], tries: int) -> int:
    """Where reading starts when the previous reader's position is unknown (a
    fresh socket, or a PMD that died): the oldest block handed to user space
    and not given back, else the block the kernel is filling (the most
    recently opened).  Blocks carry the sequence number of their opening; a
    block the kernel never opened has 0.

    ``states()`` reads every block's (status, sequence number).  The kernel
    keeps filling while they are read: a scan that saw block 0 still open,
    then block 1 opened after block 0 was handed over, would start at block 1
    and never read block 0's frames.  So the scan is repeated until two in a
    row agree: as a block's header only moves forward, they then show the
    ring as it was at one moment.  Agreement takes two scans unless a block
    changes during them; ``tries`` bounds the rescans of a ring that keeps
    changing faster than it can be read (a huge ring under light traffic,
    a block handed over every millisecond): then the last scan is taken.
    """
    seen = states()
    for _ in range(tries):
        again = states()
        if again == seen:
            break
        seen = again
    oldest = newest = None
    for i, (status, seq) in enumerate(seen):
        if status & TP_STATUS_USER and (oldest is None or seq < oldest[0]):
            oldest = (seq, i)
        if newest is None or seq > newest[0]:
            newest = (seq, i)
    return (oldest or newest)[1]
