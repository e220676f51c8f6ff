"""Target ``vhost_protocol``: message sequences into the sans-I/O vhost-user side.

The input is a script of messages.  Each one takes a header byte (which
request, from the real ones plus a few unknown numbers), flags, how many fds
travel with it (memfds of a few pages, or /dev/null, which cannot be
mapped), how the bytes are split across reads, and a payload; payloads of
structured requests (SET_MEM_TABLE, SET_VRING_ADDR, ...) are built from
fuzzer bytes around valid-looking values so the handlers are reached.

Documented outcomes only: Decoder.feed returns messages or raises
ProtocolError; Session.handle returns a Step or raises ProtocolError with a
reason (then the connection is reset: Session.reset); a Step's reply is a
well-formed reply header for the request asked.  Any other exception is a
bug.  Every fd is closed by the time the script ends (checked in
/proc/self/fd).
"""

from __future__ import annotations

import os

from ovsd.netdev.vhost_user import protocol as P
from ovsd.netdev.vhost_user.vring import RingCounters

MAX_LEN = 2048
PAGE = 4096
_REQS = [int(r) for r in P.Req] + [0, 26, 99, 0xFFFFFFFF]
_MEMFD_PAGES = 4
_UVA = 0x7F00_0000_0000


class _Bytes:
    """Consumes fuzzer bytes; zeros once they run out."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out + bytes(n - len(out))

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")


def _pick(b: _Bytes, plausible: list[int], bits: int) -> int:
    """Mostly a plausible value, sometimes anything of ``bits`` bits."""
    sel = b.u8()
    if sel < 200:
        return plausible[sel % len(plausible)]
    return int.from_bytes(b.take(bits // 8), "little")


def _payload(b: _Bytes, req: int, nfds: int) -> bytes:
    kind = b.u8()
    if kind >= 224:  # raw bytes, any length
        return b.take(b.u8() % 96)
    ring = _pick(b, [0, 1, 2, 3, 31, 32, 255], 32)
    if req == P.Req.SET_MEM_TABLE:
        n = _pick(b, [nfds, nfds, 1, 0, 9], 32)
        body = P.VRING_STATE.pack(n & 0xFFFFFFFF, 0)
        for i in range(min(n, 9)):
            size = _pick(b, [PAGE, 2 * PAGE, _MEMFD_PAGES * PAGE, 0, 1 << 40], 64)
            gpa = _pick(b, [i * 0x100000, 0, (1 << 64) - PAGE, 0x1000], 64)
            uva = _pick(b, [_UVA + i * 0x100000, 0, (1 << 64) - 1], 64)
            off = _pick(b, [0, PAGE, 3 * PAGE, 1 << 62], 64)
            body += P.MEM_REGION.pack(size=None, *()) if False else \
                P.MEM_REGION.pack(gpa, size, uva, off)
        return body[:8 + 32 * 9]
    if req == P.Req.SET_VRING_ADDR:
        addrs = [_UVA + o for o in (0, 0x400, 0x800, 0x1000, 0x2FF0)] + [0, 1, (1 << 64) - 8]
        return P.VRING_ADDR.pack(ring, b.u32(), _pick(b, addrs, 64), _pick(b, addrs, 64),
                                 _pick(b, addrs, 64), b.u64())
    if req in (P.Req.SET_VRING_NUM, P.Req.SET_VRING_BASE, P.Req.GET_VRING_BASE,
               P.Req.SET_VRING_ENABLE):
        return P.VRING_STATE.pack(ring, _pick(b, [0, 1, 8, 64, 256, 32768, 65535, 3], 32))
    if req in (P.Req.SET_VRING_KICK, P.Req.SET_VRING_CALL, P.Req.SET_VRING_ERR):
        return P.U64.pack(ring & 0xFF | _pick(b, [0, P.VRING_NOFD], 16) << 0 | 0)
    if req in (P.Req.SET_FEATURES, P.Req.SET_PROTOCOL_FEATURES, P.Req.SET_STATUS):
        return P.U64.pack(_pick(b, [P.OFFERED_FEATURES, P.OFFERED_PROTOCOL, 0,
                                    1 << P.F.VERSION_1, 1 << P.P.REPLY_ACK], 64))
    return b.take(kind % 16)


def _make_fd(kind: int) -> int:
    if kind & 1:
        return os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    fd = os.memfd_create("fuzz-guest", os.MFD_CLOEXEC)
    os.ftruncate(fd, _MEMFD_PAGES * PAGE)
    return fd


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def setup() -> None:
    pass


def _check_reply(out: bytes, request: int) -> None:
    assert len(out) >= P.HEADER.size, out
    req, flags, size = P.HEADER.unpack_from(out)
    assert req == request, (req, request)
    assert flags == P.VERSION | P.FLAG_REPLY, flags
    assert size == len(out) - P.HEADER.size, (size, len(out))


def _handle(session: P.Session, msg: P.Message) -> None:
    try:
        step = session.handle(msg)
    except P.ProtocolError as e:
        # Like device.py: no clean-up of the message here; Session owns its fds.
        assert str(e), "ProtocolError without a reason"
        session.reset()
        session.release_retired()
        return
    assert isinstance(step, P.Step)
    out = step.finish() if step.finish is not None else step.reply
    if out is not None:
        _check_reply(out, msg.request)
    if step.sync:
        session.release_retired()
    for v in session.vrings.values():
        session.ring_state(v.index)
    _ = session.hdr_len, session.n_queue_pairs


def _script(data: bytes) -> None:
    b = _Bytes(data)
    counters = RingCounters(bytearray(8 * 64))
    session = P.Session(counters, max_queue_pairs=b.u8() % 17 + 1)
    decoder = P.Decoder()
    try:
        while b.left() > 0:
            req = _REQS[b.u8() % len(_REQS)]
            flags = _pick(b, [P.VERSION, P.VERSION | P.FLAG_NEED_REPLY, P.VERSION | 0x4,
                              0, 2], 32)
            nfds = b.u8() % 4 if b.u8() < 128 else 0
            fds = [_make_fd(b.u8()) for _ in range(nfds)]
            payload = _payload(b, req, nfds)
            size = len(payload) if b.u8() < 230 else b.u32()
            raw = P.HEADER.pack(req, flags & 0xFFFFFFFF, size & 0xFFFFFFFF) + payload
            cut = b.u8() % (len(raw) + 1) if b.u8() < 40 else len(raw)
            chunks = [(raw[:cut], []), (raw[cut:], fds)] if cut < len(raw) else [(raw, fds)]
            for i, (chunk, chunk_fds) in enumerate(chunks):
                try:
                    msgs = decoder.feed(chunk, chunk_fds)
                except P.ProtocolError as e:
                    # As device.py does: the connection is reset (and the
                    # fds of reads that never happen are ours to close).
                    assert str(e), "ProtocolError without a reason"
                    for _, later in chunks[i + 1:]:
                        for fd in later:
                            os.close(fd)
                    decoder.close()
                    decoder = P.Decoder()
                    session.reset()
                    session.release_retired()
                    break
                for msg in msgs:
                    _handle(session, msg)
    finally:
        decoder.close()
        session.reset()
        session.release_retired()


def one_input(data: bytes) -> None:
    before = _open_fds()
    _script(data)
    leaked = _open_fds() - before
    assert not leaked, f"fds left open: {sorted(leaked)}"


def seeds() -> list[bytes]:
    # A plausible connection: features, protocol features, memory, one ring.
    def msg(req_index: int, *rest: int) -> bytes:
        return bytes([req_index, 0, 0, *rest])
    idx = {r: i for i, r in enumerate(_REQS)}
    return [
        bytes([3]) + msg(idx[P.Req.GET_FEATURES], 0, 0, 0)
        + msg(idx[P.Req.SET_FEATURES], 0, 0, 0, 0)
        + msg(idx[P.Req.SET_MEM_TABLE], 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        + msg(idx[P.Req.SET_VRING_NUM], 0, 0, 0, 0, 2)
        + msg(idx[P.Req.SET_VRING_ADDR], 0, 0, 0, 0, 0, 0, 0, 0, 0)
        + msg(idx[P.Req.SET_VRING_KICK], 0, 0, 0, 0, 1),
        bytes(64),
    ]
