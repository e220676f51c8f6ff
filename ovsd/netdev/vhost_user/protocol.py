"""The vhost-user protocol, back-end side, without I/O.

``Decoder`` turns the bytes and fds read from the socket into ``Message``s;
``Session`` applies one message at a time to the port's device state (features,
memory table, vrings) and says what to answer.  The socket code around them
(device.py) stays thin, and tests drive a Session with scripted exchanges.

A message that changes what the datapath may touch (memory, a ring starting or
stopping) sets ``Step.sync``: the caller makes every PMD apply the new state
before it sends the reply, so after GET_VRING_BASE returns no PMD reads that
ring, and after SET_MEM_TABLE returns nobody uses the old mapping.

Spec: QEMU's docs/interop/vhost-user.rst.  The frontends we meet (QEMU, DPDK
virtio_user) and the order they send things in are recorded in
shared/reference/vhost-user-traces; e.g. SET_VRING_CALL and SET_VRING_ENABLE
arrive before SET_FEATURES, and SET_MEM_TABLE comes again while rings exist.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass, field
from typing import Callable

from ovsd.netdev.vhost_user.memory import GuestMemory, GuestMemoryError, Region
from ovsd.netdev.vhost_user.vring import RingCounters

HEADER = struct.Struct("<III")
U64 = struct.Struct("<Q")
VRING_STATE = struct.Struct("<II")
VRING_ADDR = struct.Struct("<IIQQQQ")  # index, flags, desc, used, avail, log
MEM_REGION = struct.Struct("<QQQQ")  # gpa, size, uva, mmap_offset

VERSION = 0x1
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
MAX_PAYLOAD = 4096  # every message we accept is far smaller
MAX_REGIONS = 8  # VHOST_MEMORY_BASELINE_NREGIONS
VRING_NOFD = 0x100  # in SET_VRING_KICK/CALL/ERR: no fd travels (polling)
VRING_IDX_MASK = 0xFF


class Req(enum.IntEnum):
    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


def req_name(request: int) -> str:
    try:
        return Req(request).name
    except ValueError:
        return f"request {request}"


# Requests whose answer is a message of its own (not just REPLY_ACK's u64):
# refusing one without an answer would leave the frontend waiting forever.
ANSWERED = {Req.GET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.GET_VRING_BASE,
            Req.GET_QUEUE_NUM, Req.GET_CONFIG, Req.GET_INFLIGHT_FD,
            Req.GET_MAX_MEM_SLOTS, Req.GET_STATUS}


class F(enum.IntEnum):
    """virtio and vhost feature bits (virtio 1.x spec, vhost-user.rst)."""
    NET_MRG_RXBUF = 15
    NET_CTRL_VQ = 17
    NET_MQ = 22
    NOTIFY_ON_EMPTY = 24
    ANY_LAYOUT = 27
    RING_INDIRECT_DESC = 28
    RING_EVENT_IDX = 29
    PROTOCOL_FEATURES = 30
    VERSION_1 = 32


class P(enum.IntEnum):
    """vhost-user protocol feature bits."""
    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    NET_MTU = 4
    BACKEND_REQ = 5
    CONFIG = 9
    STATUS = 16


def bits(*names: enum.IntEnum) -> int:
    out = 0
    for n in names:
        out |= 1 << n
    return out


# Only what the datapath implements.  CTRL_VQ: both QEMU and virtio_user run the
# control queue themselves (it never reaches the back-end), and Linux only uses
# several queue pairs when it is there.
OFFERED_FEATURES = bits(F.NET_MRG_RXBUF, F.NET_CTRL_VQ, F.NET_MQ, F.ANY_LAYOUT,
                        F.RING_INDIRECT_DESC, F.RING_EVENT_IDX, F.PROTOCOL_FEATURES,
                        F.VERSION_1)
OFFERED_PROTOCOL = bits(P.MQ, P.REPLY_ACK, P.STATUS)

FEATURE_NAMES = {1 << b.value: b.name.lower() for b in F}
PROTOCOL_NAMES = {1 << b.value: b.name.lower() for b in P}


def feature_names(mask: int, names: dict[int, str]) -> list[str]:
    out = []
    for bit in range(64):
        if mask >> bit & 1:
            out.append(names.get(1 << bit, f"bit{bit}"))
    return out


class ProtocolError(Exception):
    """The frontend broke the protocol; the connection is reset with this reason."""


@dataclass
class Message:
    request: int
    flags: int
    payload: bytes
    fds: list[int] = field(default_factory=list)

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)

    def close_fds(self) -> None:
        for fd in self.fds:
            _close(fd)
        self.fds = []


def encode(request: int, payload: bytes = b"", flags: int = VERSION) -> bytes:
    return HEADER.pack(request, flags, len(payload)) + payload


def reply(msg: Message, payload: bytes) -> bytes:
    return encode(msg.request, payload, VERSION | FLAG_REPLY)


class Decoder:
    """Reassembles messages from a stream socket.

    The fds of a message travel with the sendmsg() that carries it.  On a unix
    stream socket one recvmsg() may return several messages, but it stops right
    after the data that carried fds, so the fds of a read belong to the message
    holding the read's last byte.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # stream offset of _buf[0]
        self._fds: list[tuple[int, list[int]]] = []  # (stream offset of last byte, fds)

    def feed(self, data: bytes, fds: list[int] = ()) -> list[Message]:
        self._buf += data
        if fds:
            self._fds.append((self._start + len(self._buf) - 1, list(fds)))
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            request, flags, size = HEADER.unpack_from(self._buf)
            bad = None
            if flags & 0x3 != VERSION:
                bad = f"{req_name(request)}: protocol version {flags & 0x3}, expected {VERSION}"
            elif size > MAX_PAYLOAD:
                bad = (f"{req_name(request)}: payload of {size} bytes "
                       f"(at most {MAX_PAYLOAD} expected)")
            if bad is not None:
                # The caller never sees the messages decoded before this one:
                # their fds would leak.
                for m in out:
                    m.close_fds()
                raise ProtocolError(bad)
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            last = self._start + end - 1
            mine: list[int] = []
            while self._fds and self._fds[0][0] <= last:
                mine.extend(self._fds.pop(0)[1])
            out.append(Message(request, flags, bytes(self._buf[HEADER.size:end]), mine))
            del self._buf[:end]
            self._start += end
        return out

    @property
    def partial(self) -> bool:
        return bool(self._buf)

    def close(self) -> None:
        for _, fds in self._fds:
            for fd in fds:
                _close(fd)
        self._fds = []
        self._buf.clear()


class RingState(enum.Enum):
    WAITING = "waiting"  # not all of num/addr/kick known yet
    STOPPED = "stopped"  # GET_VRING_BASE stopped it
    DISABLED = "disabled"  # started, but SET_VRING_ENABLE 0
    READY = "ready"


@dataclass
class Vring:
    index: int
    num: int = 0
    desc: int = 0
    used: int = 0
    avail: int = 0
    has_addr: bool = False
    base: int = 0
    kick_fd: int | None = None
    call_fd: int | None = None
    err_fd: int | None = None
    started: bool = False  # a kick (or "no fd": polling) arrived since the last stop
    stopped: bool = False  # GET_VRING_BASE stopped it and no kick came since
    enabled: bool = False

    def close_fds(self) -> None:
        for name in ("kick_fd", "call_fd", "err_fd"):
            fd = getattr(self, name)
            if fd is not None:
                _close(fd)
                setattr(self, name, None)


@dataclass
class Step:
    """What to do after a message: wait for the datapath (``sync``), then send
    ``reply``, or the bytes ``finish()`` gives (answers that must be read after
    the datapath let go of a ring)."""
    reply: bytes | None = None
    sync: bool = False
    finish: Callable[[], bytes] | None = None


class Session:
    """One frontend connection's device state."""

    def __init__(self, counters: RingCounters, *, max_queue_pairs: int = 16,
                 features: int = OFFERED_FEATURES, protocol: int = OFFERED_PROTOCOL):
        self.counters = counters
        self.max_queue_pairs = max_queue_pairs
        self.offered = features
        self.offered_protocol = protocol
        self.features = 0  # acked by SET_FEATURES
        self.features_set = False
        self.protocol = 0
        self.owner = False
        self.status = 0
        self.memory: GuestMemory | None = None
        self.memory_fds: list[int] = []
        self.mem_gen = 0
        self.vrings: dict[int, Vring] = {}
        self._retired: list[GuestMemory] = []
        #: Things worth a log line that are not errors (the device logs them).
        self.notes: list[str] = []

    # -- derived facts ----------------------------------------------------------------

    def has(self, feature: int) -> bool:
        return bool(self.features >> feature & 1)

    @property
    def hdr_len(self) -> int:
        # virtio 1.x and mergeable buffers both carry num_buffers.
        return 12 if self.has(F.VERSION_1) or self.has(F.NET_MRG_RXBUF) else 10

    @property
    def n_queue_pairs(self) -> int:
        return (max(self.vrings) // 2 + 1) if self.vrings else 0

    def ring_state(self, index: int) -> RingState:
        v = self.vrings.get(index)
        if v is None or not (v.num and v.has_addr and self.memory and self.features_set):
            return RingState.WAITING
        if not v.started:
            return RingState.STOPPED if v.stopped else RingState.WAITING
        # Without PROTOCOL_FEATURES a ring runs as soon as it starts; with it,
        # only after SET_VRING_ENABLE 1 (vhost-user.rst, "Ring states").
        if self.has(F.PROTOCOL_FEATURES) and not v.enabled:
            return RingState.DISABLED
        return RingState.READY

    def ready(self, index: int) -> bool:
        return self.ring_state(index) is RingState.READY

    # -- the messages -----------------------------------------------------------------

    def handle(self, msg: Message) -> Step:
        """Apply ``msg``.  Raises ProtocolError when the connection must be reset.
        Fds of the message are owned by the session from here on."""
        try:
            req = Req(msg.request)
        except ValueError:
            req = None
        handler = getattr(self, f"_{req.name.lower()}", None) if req else None
        if handler is None:
            msg.close_fds()
            return self._refuse(msg, "is not supported by this back-end")
        try:
            step = handler(msg)
        except (struct.error, IndexError):
            raise ProtocolError(f"{req.name}: malformed payload of {len(msg.payload)} "
                                "bytes") from None
        finally:
            # Handlers take the fds they keep out of msg.fds; nobody else
            # closes the rest (fds on a request that has none, or on one the
            # handler refused with ProtocolError).
            msg.close_fds()
        if step.reply is None and step.finish is None and msg.need_reply \
                and self.protocol & bits(P.REPLY_ACK):
            step.reply = reply(msg, U64.pack(0))
        return step

    def _refuse(self, msg: Message, why: str) -> Step:
        name = req_name(msg.request)
        if msg.need_reply and self.protocol & bits(P.REPLY_ACK):
            return Step(reply=reply(msg, U64.pack(1)))
        if msg.request in ANSWERED:
            raise ProtocolError(f"{name} {why}")
        return Step()

    def _get_features(self, msg: Message) -> Step:
        return Step(reply=reply(msg, U64.pack(self.offered)))

    def _set_features(self, msg: Message) -> Step:
        (features,) = U64.unpack_from(msg.payload)
        extra = features & ~self.offered
        if extra:
            raise ProtocolError(f"SET_FEATURES acks features that were not offered: "
                                f"{', '.join(feature_names(extra, FEATURE_NAMES))}")
        changed = features != self.features or not self.features_set
        self.features, self.features_set = features, True
        return Step(sync=changed)

    def _get_protocol_features(self, msg: Message) -> Step:
        return Step(reply=reply(msg, U64.pack(self.offered_protocol)))

    def _set_protocol_features(self, msg: Message) -> Step:
        (proto,) = U64.unpack_from(msg.payload)
        extra = proto & ~self.offered_protocol
        if extra:
            raise ProtocolError(f"SET_PROTOCOL_FEATURES acks protocol features that "
                                f"were not offered: "
                                f"{', '.join(feature_names(extra, PROTOCOL_NAMES))}")
        self.protocol = proto
        return Step()

    def _set_owner(self, msg: Message) -> Step:
        self.owner = True
        return Step()

    def _reset_owner(self, msg: Message) -> Step:
        self.reset()
        return Step(sync=True)

    def _get_queue_num(self, msg: Message) -> Step:
        return Step(reply=reply(msg, U64.pack(self.max_queue_pairs)))

    def _set_status(self, msg: Message) -> Step:
        (self.status,) = U64.unpack_from(msg.payload)
        return Step()

    def _get_status(self, msg: Message) -> Step:
        return Step(reply=reply(msg, U64.pack(self.status)))

    def _set_mem_table(self, msg: Message) -> Step:
        nregions, _pad = VRING_STATE.unpack_from(msg.payload)
        fds, msg.fds = msg.fds, []
        try:
            if not 1 <= nregions <= MAX_REGIONS:
                raise ProtocolError(f"SET_MEM_TABLE with {nregions} regions "
                                    f"(1 to {MAX_REGIONS} expected)")
            if len(fds) != nregions:
                raise ProtocolError(f"SET_MEM_TABLE: {nregions} regions but "
                                    f"{len(fds)} fds came with it")
            if len(msg.payload) < 8 + nregions * MEM_REGION.size:
                raise ProtocolError(f"SET_MEM_TABLE: payload of {len(msg.payload)} bytes "
                                    f"is too short for {nregions} regions")
            regions = [Region(*MEM_REGION.unpack_from(msg.payload, 8 + i * MEM_REGION.size))
                       for i in range(nregions)]
            memory = GuestMemory(regions, fds)
        except (ProtocolError, GuestMemoryError) as e:
            for fd in fds:
                _close(fd)
            raise ProtocolError(str(e)) from None
        if self.memory is not None:
            # PMDs still map the old table until the sync: unmap it after.
            self._retired.append(self.memory)
        for fd in self.memory_fds:
            _close(fd)
        self.memory, self.memory_fds = memory, fds
        self.mem_gen += 1
        self._check_rings()
        return Step(sync=True)

    def _vring(self, index: int, what: str) -> Vring:
        if index >= 2 * self.max_queue_pairs:
            raise ProtocolError(f"{what}: ring index {index} is out of range "
                                f"(this port has at most {2 * self.max_queue_pairs} rings)")
        v = self.vrings.get(index)
        if v is None:
            v = self.vrings[index] = Vring(index)
        return v

    def _set_vring_num(self, msg: Message) -> Step:
        index, num = VRING_STATE.unpack_from(msg.payload)
        v = self._vring(index, "SET_VRING_NUM")
        if not 1 <= num <= 32768 or num & (num - 1):
            raise ProtocolError(f"SET_VRING_NUM: ring {index} size {num} is not a power "
                                "of two from 1 to 32768")
        if v.started:
            raise ProtocolError(f"SET_VRING_NUM: ring {index} is running")
        v.num = num
        return Step()

    def _set_vring_addr(self, msg: Message) -> Step:
        index, _flags, desc, used, avail, _log = VRING_ADDR.unpack_from(msg.payload)
        v = self._vring(index, "SET_VRING_ADDR")
        v.desc, v.used, v.avail, v.has_addr = desc, used, avail, True
        self._check_ring(v)
        return Step(sync=v.started)

    def _set_vring_base(self, msg: Message) -> Step:
        index, base = VRING_STATE.unpack_from(msg.payload)
        v = self._vring(index, "SET_VRING_BASE")
        if v.started:
            raise ProtocolError(f"SET_VRING_BASE: ring {index} is running")
        v.base = base & 0xFFFF
        self.counters.set(index, v.base, v.base)
        return Step()

    def _get_vring_base(self, msg: Message) -> Step:
        (index, _) = VRING_STATE.unpack_from(msg.payload)
        v = self._vring(index, "GET_VRING_BASE")
        was_started = v.started
        v.started, v.stopped = False, True
        if v.kick_fd is not None:
            _close(v.kick_fd)
            v.kick_fd = None

        def finish() -> bytes:
            last_avail, _used = self.counters.get(index)
            v.base = last_avail
            return reply(msg, VRING_STATE.pack(index, last_avail))
        return Step(sync=was_started, finish=finish)

    def _fd_arg(self, msg: Message, what: str) -> tuple[Vring, int | None]:
        (value,) = U64.unpack_from(msg.payload)
        index = value & VRING_IDX_MASK
        fds, msg.fds = msg.fds, []
        nofd = bool(value & VRING_NOFD)
        if len(fds) != (0 if nofd else 1):
            for fd in fds:
                _close(fd)
            raise ProtocolError(f"{what}: ring {index} "
                                f"{'says no fd but' if nofd else 'expects one fd but'} "
                                f"{len(fds)} came")
        try:
            v = self._vring(index, what)
        except ProtocolError:
            for fd in fds:
                _close(fd)
            raise
        return v, (None if nofd else fds[0])

    def _set_vring_kick(self, msg: Message) -> Step:
        v, fd = self._fd_arg(msg, "SET_VRING_KICK")
        if v.kick_fd is not None:
            _close(v.kick_fd)
        # PMDs poll: the kick fd is only kept so the frontend's writes succeed.
        v.kick_fd = fd
        v.started, v.stopped = True, False
        self._check_ring(v)
        self._adopt_used_idx(v)
        return Step(sync=True)

    def _adopt_used_idx(self, v: Vring) -> None:
        """A frontend that outlived its back-end (virtio_user server mode after
        ovsd restarted) sends base 0 for rings that moved on; what the guest
        memory says we used is the truth, as DPDK's vhost library decides too."""
        if not (v.has_addr and v.num and self.memory):
            return
        mm, off = self.memory.uva(v.used + 2, 2)
        used = int.from_bytes(mm[off:off + 2], "little")
        last_avail, used_idx = self.counters.get(v.index)
        if used != used_idx:
            self.notes.append(f"ring {v.index}: base {last_avail} but the used ring "
                              f"is at {used}; continuing from {used} (frames in flight "
                              "may be lost or sent again)")
            self.counters.set(v.index, used, used)

    def _set_vring_call(self, msg: Message) -> Step:
        v, fd = self._fd_arg(msg, "SET_VRING_CALL")
        if v.call_fd is not None:
            _close(v.call_fd)
        v.call_fd = fd
        return Step(sync=v.started)

    def _set_vring_err(self, msg: Message) -> Step:
        v, fd = self._fd_arg(msg, "SET_VRING_ERR")
        if v.err_fd is not None:
            _close(v.err_fd)
        v.err_fd = fd
        return Step()

    def _set_vring_enable(self, msg: Message) -> Step:
        index, enable = VRING_STATE.unpack_from(msg.payload)
        v = self._vring(index, "SET_VRING_ENABLE")
        changed = v.enabled != bool(enable)
        v.enabled = bool(enable)
        return Step(sync=changed)

    def _send_rarp(self, msg: Message) -> Step:
        return Step()  # only sent when RARP was negotiated; we never offer it

    # -- checks ---------------------------------------------------------------------

    def _check_ring(self, v: Vring) -> None:
        """Ring areas must lie in the memory table: a bad address resets the
        connection here instead of surfacing in a PMD."""
        if not (v.has_addr and v.num and self.memory):
            return
        try:
            self.memory.uva(v.desc, 16 * v.num)
            self.memory.uva(v.avail, 6 + 2 * v.num)
            self.memory.uva(v.used, 6 + 8 * v.num)
        except GuestMemoryError as e:
            raise ProtocolError(f"ring {v.index}: {e}") from None

    def _check_rings(self) -> None:
        for v in self.vrings.values():
            self._check_ring(v)

    # -- lifetime -----------------------------------------------------------------------

    def release_retired(self) -> None:
        """Unmap memory tables no PMD uses any more (call after a sync)."""
        for mem in self._retired:
            mem.close()
        self._retired.clear()

    def reset(self) -> None:
        """Back to a fresh device: rings, memory and features forgotten.  The
        caller syncs the datapath, then calls release_retired()."""
        for v in self.vrings.values():
            v.close_fds()
        self.vrings.clear()
        if self.memory is not None:
            self._retired.append(self.memory)
            self.memory = None
        for fd in self.memory_fds:
            _close(fd)
        self.memory_fds = []
        self.mem_gen += 1
        self.features, self.features_set, self.protocol = 0, False, 0
        self.status, self.owner = 0, False


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
