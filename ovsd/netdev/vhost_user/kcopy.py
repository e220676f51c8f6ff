"""Burst copies done by the kernel: a whole burst into guest buffers by one preadv.

Writing 256 frames into a guest's receive buffers is 256 slice stores in
the interpreter, each one waiting on cache lines the guest's core last
touched.  Here the burst is laid out once (header, frame, header, frame...: the
first header, then the frames joined with the header between them) in a
staging file, and one ``preadv`` from it scatters the pieces to the
buffers: the kernel's copy loop keeps many of those line transfers in
flight at once, where the interpreter waits for them one store at a time.

The iovec array is the burst's raw descriptors themselves, turned into
iovecs by whole-burst integer operations (vring's iovecs()), with no work
per frame.

Addresses handed to the kernel are raw, so the caller proves each buffer lies
inside one mapped region first (vring's all_within), and holds an export of
the mapping (``anchor``) for as long as it uses the addresses: a mapping
with an export cannot be unmapped (GuestMemory.close lets go of it instead),
so a ring never writes into memory that is no longer the guest's.  A copy
the kernel cannot complete (EFAULT, say) reports False; then nothing is
published and the caller's exact walk redoes the burst.
"""

from __future__ import annotations

import ctypes
import mmap
import os

#: Where the kernel's copy wins (bench/vring_micro's sizes, cache-warm, per
#: frame: at 256 frames of 64 bytes 135 against 157 ns, of 256 bytes 162
#: against 170; at 32 frames, or with 512-byte frames, the interpreter's
#: stores win): bursts of at least MIN_BURST frames of at most MAX_PIECE
#: bytes with their header.  Laying the burst out costs two copies more
#: than the interpreter's one, which big frames pay for.
MIN_BURST = 64
MAX_PIECE = 300
#: The staging file's size and the kernel's limit on iovecs per call (UIO_MAXIOV):
#: bursts past either take the interpreter's path.
STAGE_BYTES = 1 << 21
MAX_IOVECS = 1024


def _preadv():
    try:
        fn = ctypes.CDLL(None, use_errno=True).preadv
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_long]
    fn.restype = ctypes.c_ssize_t
    return fn


_libc_preadv = _preadv()


def anchor(mm: mmap.mmap) -> tuple[ctypes.c_char, int]:
    """An export of ``mm`` that keeps it mapped while held, and its address."""
    c = ctypes.c_char.from_buffer(mm)
    return c, ctypes.addressof(c)


class BurstCopier:
    """The staging file of one process; ``scatter`` is its one operation."""

    __slots__ = ("_fd", "_stage")

    def __init__(self) -> None:
        self._fd = os.memfd_create("ovsd-vhost-stage", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._fd, STAGE_BYTES)
            self._stage = mmap.mmap(self._fd, STAGE_BYTES)
        except BaseException:
            os.close(self._fd)
            raise

    def scatter(self, iov: bytes, n: int, length: int, data: bytes,
                head: bytes = b"") -> bool:
        """Write ``head`` + ``data`` (n pieces of ``length`` bytes, one after the
        other) through ``iov``, n iovecs of ``length`` bytes each (vring's
        iovecs()).  Every iovec must be known to lie in a mapping the caller
        anchors."""
        total = n * length
        start = len(head)
        if start + len(data) != total or total > STAGE_BYTES or n > MAX_IOVECS:
            return False
        self._stage[:start] = head
        self._stage[start:total] = data
        return _libc_preadv(self._fd, iov, n, 0) == total

    def close(self) -> None:
        self._stage.close()
        os.close(self._fd)


_copier: BurstCopier | None = None


def _forget_in_child() -> None:
    # A forked child shares the staging file's pages with its parent: two
    # processes laying bursts out in it at once would mix their frames.
    global _copier
    _copier = None


os.register_at_fork(after_in_child=_forget_in_child)


def copier() -> BurstCopier | None:
    """This process's BurstCopier (made on first use), or None where the kernel
    offers no preadv or memfd."""
    global _copier
    if _copier is None and _libc_preadv is not None:
        try:
            _copier = BurstCopier()
        except OSError:
            return None
    return _copier
