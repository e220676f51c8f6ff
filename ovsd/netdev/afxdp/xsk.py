"""AF_XDP sockets: a UMEM in shared memory and the four rings, from Python.

The control process creates each socket (``XskSocket.create``): a UMEM of
``n_frames`` chunks in a memfd, registered with the socket, the rings sized,
every receive frame put on the fill ring, the socket bound to one queue.
The PMD process that polls the queue receives the socket fd and the memfd
(SCM_RIGHTS) and maps the UMEM and the rings itself (``XskQueue``).

UMEM layout: the first half of the frames is for receive and circulates
between the fill and rx rings; the second half is for transmit.  Transmit
frames are never tracked in a list: the frame of tx producer index p is
``tx_base + (p mod tx_frames) * frame_size``, and it is free while fewer
than tx_frames descriptors are in flight (p - completion consumer index).
In copy mode the kernel copies a frame into an skb when it takes the
descriptor, so a frame is reusable whatever order completions come in; a
zero-copy driver completes a queue's descriptors in order.  (A descriptor
the kernel rejects as invalid is never completed and would keep its frame
forever; we never write invalid ones, and tx_invalid_descs would show it.)
So every index is in the shared rings, and a queue moves between processes,
or several processes transmit on one socket under an external lock, without
anything going stale.

Memory ordering.  Each ring has one producer and one consumer; the kernel
side publishes with store-release and reads with load-acquire.  On x86
(TSO) stores become visible in program order and loads are not reordered
with older loads, and CPython performs our struct and memoryview accesses in
program order: so reading the producer index before the descriptors it
covers, and writing descriptors (and frame data) before the producer index
store, is enough, with no fence, as for a virtio ring.  Index words are
read and written through a memoryview cast to "I", one aligned 4-byte load
or store each, so the other side never sees half an index.  The one
reordering x86 allows, a later load passing an earlier store, can make us
read a tx ring's NEED_WAKEUP flag before our producer store is visible, and
miss a wakeup the kernel asked for just then: every later tx_burst, even an
empty one, kicks again while descriptors wait, so frames are delayed by one
poll, never lost.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import struct

from ovsd.netdev.afxdp.bpf import queue_counts

AF_XDP = 44
SOL_XDP = 283
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7

XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3
XDP_RING_NEED_WAKEUP = 1 << 0

XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

ETH_HLEN = 14
_U32 = 0xFFFFFFFF

SOCKADDR_XDP = struct.Struct("<HHIII")  # family, flags, ifindex, queue_id, shared_umem_fd
UMEM_REG = struct.Struct("<QQIII4x")  # addr, len, chunk_size, headroom, flags
# struct xdp_mmap_offsets: rx, tx, fill, completion; each producer, consumer,
# desc, flags.
MMAP_OFFSETS = struct.Struct("<16Q")
STATISTICS = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
              "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
DESC_SIZE = 16  # struct xdp_desc: u64 addr, u32 len, u32 options
ADDR_SIZE = 8  # fill and completion entries: u64 addr

_libc = ctypes.CDLL(None, use_errno=True)


class XskError(OSError):
    """Setting up an XDP socket failed; str() is the whole explanation."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)

    def __str__(self) -> str:
        return self.strerror


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex {ifindex}"


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def explain_bind(err: int, iface: str, queue_id: int, zerocopy: bool,
                 rx_queues: int | None = None) -> str:
    text = f"bind an XDP socket to queue {queue_id} of {iface}: {os.strerror(err)}"
    if err == errno.EBUSY:
        return f"{text}; queue {queue_id} of {iface} already has an XDP socket"
    if err == errno.EINVAL and rx_queues is not None and queue_id >= rx_queues:
        return (f"{text}; {iface} has {rx_queues} rx queue{'s' if rx_queues != 1 else ''} "
                f"(0 to {rx_queues - 1})")
    if err == errno.EOPNOTSUPP and zerocopy:
        return f"{text}; driver cannot do zero-copy: use xdp-mode=native or generic"
    if err in (errno.ENODEV, errno.ENXIO):
        return f"{text}; the interface does not exist (any more)"
    return text


def explain_setup(what: str, err: int) -> str:
    text = f"{what}: {os.strerror(err)}"
    if err == errno.EAFNOSUPPORT:
        return f"{text}; the kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)"
    if err == errno.EPERM and what.startswith("socket"):
        return f"{text}; AF_XDP sockets need CAP_NET_RAW: run ovsd as root"
    if err in (errno.ENOMEM, errno.ENOBUFS, errno.EPERM) and "UMEM" in what:
        return (f"{text}; the UMEM is pinned memory charged to RLIMIT_MEMLOCK without "
                "CAP_IPC_LOCK: raise the limit (`ulimit -l`, LimitMEMLOCK=infinity) or "
                "use fewer frames")
    if err == errno.EINVAL and "UMEM" in what:
        return f"{text}; frame_size must be a power of two from 2048 to the page size"
    return text


def _setup(what: str, fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        raise XskError(e.errno, explain_setup(what, e.errno)) from None


def _ring_sizes(n_frames: int, ring_size: int) -> dict[str, int]:
    """Fill and completion rings hold every frame of their half, so producing
    on them never has to check for room."""
    half = n_frames // 2
    big = max(ring_size, half)
    return {"fill_size": big, "comp_size": big, "rx_size": ring_size, "tx_size": ring_size}


class XskSocket:
    """An XDP socket bound to one queue, with its UMEM (control side)."""

    def __init__(self, sock: socket.socket, umem_fd: int, ifindex: int, queue_id: int,
                 layout: dict):
        self._sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.umem_fd = umem_fd
        self.ifindex = ifindex
        self.queue_id = queue_id
        self.zerocopy = layout["zerocopy"]
        self._layout = layout

    @classmethod
    def create(cls, ifindex: int, queue_id: int, *, zerocopy: bool, need_wakeup: bool,
               n_frames: int = 4096, frame_size: int = 2048,
               ring_size: int = 2048) -> "XskSocket":
        if not _is_pow2(n_frames) or n_frames < 2:
            raise ValueError(f"n_frames={n_frames}: expected a power of two, at least 2")
        if not _is_pow2(frame_size) or not 2048 <= frame_size <= mmap.PAGESIZE:
            raise ValueError(f"frame_size={frame_size}: expected a power of two from 2048 "
                             f"to {mmap.PAGESIZE}")
        if not _is_pow2(ring_size):
            raise ValueError(f"ring_size={ring_size}: expected a power of two")
        iface = _ifname(ifindex)
        layout = {"frame_size": frame_size, "n_frames": n_frames,
                  "rx_frames": n_frames // 2, "tx_frames": n_frames // 2,
                  **_ring_sizes(n_frames, ring_size),
                  "need_wakeup": bool(need_wakeup), "zerocopy": bool(zerocopy),
                  "ifindex": ifindex, "queue_id": queue_id}
        sock = _setup("socket(AF_XDP)", socket.socket, AF_XDP, socket.SOCK_RAW, 0)
        umem_fd = -1
        try:
            umem_fd = os.memfd_create(f"ovsd-umem-{iface}-q{queue_id}", os.MFD_CLOEXEC)
            size = n_frames * frame_size
            os.ftruncate(umem_fd, size)
            with mmap.mmap(umem_fd, size, mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE) as umem:
                # The kernel pins the pages here; our mapping is not needed after.
                addr = ctypes.addressof(ctypes.c_char.from_buffer(umem))
                _setup("register the UMEM (XDP_UMEM_REG)", sock.setsockopt, SOL_XDP,
                       XDP_UMEM_REG, UMEM_REG.pack(addr, size, frame_size, 0, 0))
            for opt, key, name in ((XDP_UMEM_FILL_RING, "fill_size", "fill"),
                                   (XDP_UMEM_COMPLETION_RING, "comp_size", "completion"),
                                   (XDP_RX_RING, "rx_size", "rx"),
                                   (XDP_TX_RING, "tx_size", "tx")):
                _setup(f"size the {name} ring ({layout[key]} entries)", sock.setsockopt,
                       SOL_XDP, opt, layout[key])
            _fill_initial(sock, layout)
            flags = XDP_ZEROCOPY if zerocopy else XDP_COPY
            if need_wakeup:
                flags |= XDP_USE_NEED_WAKEUP
            addr_buf = ctypes.create_string_buffer(
                SOCKADDR_XDP.pack(AF_XDP, flags, ifindex, queue_id, 0), SOCKADDR_XDP.size)
            if _libc.bind(sock.fileno(), addr_buf, SOCKADDR_XDP.size) != 0:
                err = ctypes.get_errno()
                try:
                    rxq = queue_counts(ifindex)[0] if err == errno.EINVAL else None
                except OSError:
                    rxq = None
                raise XskError(err, explain_bind(err, iface, queue_id, zerocopy, rxq))
            return cls(sock, umem_fd, ifindex, queue_id, layout)
        except BaseException:
            sock.close()
            if umem_fd >= 0:
                os.close(umem_fd)
            raise

    def layout(self) -> dict:
        """What XskQueue needs besides the two fds (plain ints and bools)."""
        return dict(self._layout)

    def statistics(self) -> dict[str, int]:
        """The kernel's counters for this socket (not clear-on-read)."""
        if self._sock is None:
            raise XskError(errno.EBADF, "XDP socket is closed")
        raw = self._sock.getsockopt(SOL_XDP, XDP_STATISTICS, 8 * len(STATISTICS))
        raw = raw + bytes(8 * len(STATISTICS) - len(raw))  # older kernels: fewer fields
        return dict(zip(STATISTICS, struct.unpack(f"<{len(STATISTICS)}Q", raw)))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            os.close(self.umem_fd)
            self.fd = self.umem_fd = -1

    def __enter__(self) -> "XskSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _offsets(sock: socket.socket) -> dict[str, tuple[int, int, int, int]]:
    raw = _setup("read the ring offsets (XDP_MMAP_OFFSETS)", sock.getsockopt, SOL_XDP,
                 XDP_MMAP_OFFSETS, MMAP_OFFSETS.size)
    if len(raw) < MMAP_OFFSETS.size:
        raise XskError(errno.EOPNOTSUPP, "XDP_MMAP_OFFSETS without ring flags: the kernel "
                       "is older than 5.4 (need_wakeup support is required)")
    v = MMAP_OFFSETS.unpack(raw)
    return {"rx": v[0:4], "tx": v[4:8], "fill": v[8:12], "comp": v[12:16]}


def _map_ring(fd: int, pgoff: int, desc_off: int, entries: int, entry_size: int,
              name: str) -> mmap.mmap:
    return _setup(f"map the {name} ring", mmap.mmap, fd, desc_off + entries * entry_size,
                  mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                  mmap.PROT_READ | mmap.PROT_WRITE, 0, pgoff)


def _fill_initial(sock: socket.socket, layout: dict) -> None:
    """Every receive frame onto the fill ring, through a mapping of our own."""
    prod_off, _cons, desc, _flags = _offsets(sock)["fill"]
    n, fs = layout["rx_frames"], layout["frame_size"]
    ring = _map_ring(sock.fileno(), XDP_UMEM_PGOFF_FILL_RING, desc, layout["fill_size"],
                     ADDR_SIZE, "fill")
    try:
        struct.pack_into(f"<{n}Q", ring, desc, *range(0, n * fs, fs))
        words = memoryview(ring).cast("I")
        words[prod_off // 4] = n
        words.release()
    finally:
        ring.close()


_DESCS: dict[int, struct.Struct] = {}
_ADDRS: dict[int, struct.Struct] = {}


def _descs(n: int) -> struct.Struct:
    s = _DESCS.get(n)
    if s is None:
        s = _DESCS[n] = struct.Struct("<" + "QI4x" * n)
    return s


def _addrs(n: int) -> struct.Struct:
    s = _ADDRS.get(n)
    if s is None:
        s = _ADDRS[n] = struct.Struct(f"<{n}Q")
    return s


class XskQueue:
    """The rings and UMEM of one XDP socket, mapped in this process (PMD side).

    ``fd`` and ``umem_fd`` become the queue's when it is built (closed by
    close() when ``close_fds``); if building fails they stay the caller's.
    """

    def __init__(self, fd: int, umem_fd: int, layout: dict, *, close_fds: bool = True):
        self._fds = (fd, umem_fd)
        self._close_fds = close_fds
        self._maps: list[mmap.mmap] = []
        self._views: list[memoryview] = []
        self.rx_packets = self.rx_bytes = 0
        self.tx_packets = self.tx_bytes = 0
        self.tx_oversize = self.tx_runt = 0
        #: Kicks the kernel refused with something other than "busy, try later".
        self.tx_kick_errors = 0
        self.last_error = ""
        self._sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0, fileno=fd)
        try:
            self._map(fd, umem_fd, layout)
        except BaseException:
            # Until the queue exists, the fds stay the caller's to close.
            self._close_fds = False
            self.close()
            raise

    def _map(self, fd: int, umem_fd: int, layout: dict) -> None:
        fs = self.frame_size = layout["frame_size"]
        self.need_wakeup = layout["need_wakeup"]
        self._tx_frames = layout["tx_frames"]
        self._tx_base = layout["rx_frames"] * fs
        self._tx_limit = min(self._tx_frames, layout["tx_size"], layout["comp_size"])
        self._tx_slots = list(range(self._tx_base, self._tx_base + self._tx_frames * fs, fs))
        # Copy mode takes fill buffers as frames arrive: only a zero-copy
        # driver ever waits for a wakeup on the fill ring.
        self._rx_wake = self.need_wakeup and layout["zerocopy"]
        self._umem = _setup("map the UMEM", mmap.mmap, umem_fd, layout["n_frames"] * fs,
                            mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._maps.append(self._umem)
        offs = _offsets(self._sock)
        specs = (("rx", XDP_PGOFF_RX_RING, layout["rx_size"], DESC_SIZE),
                 ("tx", XDP_PGOFF_TX_RING, layout["tx_size"], DESC_SIZE),
                 ("fill", XDP_UMEM_PGOFF_FILL_RING, layout["fill_size"], ADDR_SIZE),
                 ("comp", XDP_UMEM_PGOFF_COMPLETION_RING, layout["comp_size"], ADDR_SIZE))
        for name, pgoff, entries, esize in specs:
            prod, cons, desc, flags = offs[name]
            ring = _map_ring(fd, pgoff, desc, entries, esize, name)
            self._maps.append(ring)
            words = memoryview(ring).cast("I")
            self._views.append(words)
            setattr(self, f"_{name}", ring)
            setattr(self, f"_{name}_w", words)
            # Word indices of the ring's producer, consumer and flags.
            setattr(self, f"_{name}_p", prod // 4)
            setattr(self, f"_{name}_c", cons // 4)
            setattr(self, f"_{name}_f", flags // 4)
            setattr(self, f"_{name}_desc", desc)
            setattr(self, f"_{name}_size", entries)

    # -- receive ----------------------------------------------------------------------

    def rx_burst(self, max_frames: int = 32) -> list[bytes]:
        """Up to ``max_frames`` received frames, copied out; their UMEM frames
        go straight back on the fill ring."""
        rw = self._rx_w
        cons = rw[self._rx_c]
        avail = (rw[self._rx_p] - cons) & _U32
        if not avail:
            if self._rx_wake and self._fill_w[self._fill_f] & XDP_RING_NEED_WAKEUP:
                self._wake_rx()
            return []
        n = avail if avail < max_frames else max_frames
        size = self._rx_size
        i = cons & (size - 1)
        first = n if n <= size - i else size - i
        vals = _descs(first).unpack_from(self._rx, self._rx_desc + i * DESC_SIZE)
        if first < n:
            vals += _descs(n - first).unpack_from(self._rx, self._rx_desc)
        addrs = vals[0::2]
        lens = vals[1::2]
        umem = self._umem
        frames = [umem[a:a + ln] for a, ln in zip(addrs, lens)]
        self._refill(addrs, n)
        rw[self._rx_c] = (cons + n) & _U32
        self.rx_packets += n
        self.rx_bytes += sum(lens)
        return frames

    def _refill(self, addrs: tuple, n: int) -> None:
        # The fill ring holds all receive frames, so it always has room for these.
        fw, fp = self._fill_w, self._fill_p
        prod = fw[fp]
        size = self._fill_size
        j = prod & (size - 1)
        first = n if n <= size - j else size - j
        if first == n:
            _addrs(n).pack_into(self._fill, self._fill_desc + j * ADDR_SIZE, *addrs)
        else:
            _addrs(first).pack_into(self._fill, self._fill_desc + j * ADDR_SIZE,
                                    *addrs[:first])
            _addrs(n - first).pack_into(self._fill, self._fill_desc, *addrs[first:])
        fw[fp] = (prod + n) & _U32

    def _wake_rx(self) -> None:
        try:
            self._sock.recv(1, socket.MSG_DONTWAIT)
        except OSError:
            pass  # a wakeup that could not be delivered is retried at the next poll

    # -- transmit ---------------------------------------------------------------------

    def tx_burst(self, frames: list) -> int:
        """Queue ``frames`` for transmission; returns how many were accepted.
        Frames are copied.  The rest (no free frame; too long: tx_oversize;
        shorter than an Ethernet header: tx_runt) are the caller's to count
        as dropped.  An empty burst only kicks the kernel when descriptors
        are still waiting in the tx ring (a refused or missed kick)."""
        tw = self._tx_w
        prod = tw[self._tx_p]
        n = 0
        if frames:
            cw = self._comp_w
            done = cw[self._comp_p]
            if done != cw[self._comp_c]:
                # Only the count matters: the frame of each index is implied.
                cw[self._comp_c] = done
            room = self._tx_limit - ((prod - done) & _U32)
            if room > 0:
                n = self._queue(frames, prod, room)
        if n or tw[self._tx_c] != prod:
            if not self.need_wakeup or tw[self._tx_f] & XDP_RING_NEED_WAKEUP:
                self._kick_tx()
        return n

    def _queue(self, frames: list, prod: int, room: int) -> int:
        if len(frames) > room:
            frames = frames[:room]
        lens = list(map(len, frames))
        if max(lens) > self.frame_size or min(lens) < ETH_HLEN:
            frames, lens = self._checked(frames, lens)
            if not frames:
                return 0
        n = len(frames)
        slots = self._tx_slots
        s = prod & (self._tx_frames - 1)
        addrs = slots[s:s + n]
        if len(addrs) < n:
            addrs += slots[:n - len(addrs)]
        umem = self._umem
        for a, f, ln in zip(addrs, frames, lens):
            umem[a:a + ln] = f
        flat = [0] * (2 * n)
        flat[0::2] = addrs
        flat[1::2] = lens
        size = self._tx_size
        i = prod & (size - 1)
        first = n if n <= size - i else size - i
        if first == n:
            _descs(n).pack_into(self._tx, self._tx_desc + i * DESC_SIZE, *flat)
        else:
            _descs(first).pack_into(self._tx, self._tx_desc + i * DESC_SIZE,
                                    *flat[:2 * first])
            _descs(n - first).pack_into(self._tx, self._tx_desc, *flat[2 * first:])
        self._tx_w[self._tx_p] = (prod + n) & _U32
        self.tx_packets += n
        self.tx_bytes += sum(lens)
        return n

    def _checked(self, frames: list, lens: list[int]) -> tuple[list, list[int]]:
        """The frames that fit a UMEM frame and hold an Ethernet header."""
        fs = self.frame_size
        keep = [i for i, ln in enumerate(lens) if ETH_HLEN <= ln <= fs]
        self.tx_oversize += sum(1 for ln in lens if ln > fs)
        self.tx_runt += sum(1 for ln in lens if ln < ETH_HLEN)
        return [frames[i] for i in keep], [lens[i] for i in keep]

    def _kick_tx(self) -> None:
        """sendto() until the kernel took every descriptor: in copy mode one
        call transmits at most 32 of them and answers EAGAIN for the rest."""
        tw = self._tx_w
        pending = (tw[self._tx_p] - tw[self._tx_c]) & _U32
        for _ in range(pending // 32 + 2):
            try:
                self._sock.send(b"", socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                if tw[self._tx_c] == tw[self._tx_p]:
                    return
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOBUFS):
                    # Link down or gone: the descriptors wait in the ring for
                    # the next kick; counted rather than raised in a PMD loop.
                    self.tx_kick_errors += 1
                    self.last_error = e.strerror or str(e)
                return

    def tx_in_flight(self) -> int:
        """Frames queued or being sent, not yet completed."""
        return (self._tx_w[self._tx_p] - self._comp_w[self._comp_c]) & _U32

    # -- teardown ---------------------------------------------------------------------

    def close(self) -> None:
        for view in self._views:
            view.release()
        self._views = []
        for mm in self._maps:
            mm.close()
        self._maps = []
        sock, self._sock = getattr(self, "_sock", None), None
        if sock is None:
            return
        if self._close_fds:
            sock.close()
            os.close(self._fds[1])
        else:
            sock.detach()

    def __enter__(self) -> "XskQueue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
