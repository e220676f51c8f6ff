"""The vhost-user back-end protocol, driven by scripted exchanges (no sockets).

The sequences follow what dpdk-testpmd's virtio_user and QEMU really send
(order, flags, fds), as recorded in the reference traces.
"""

import os
import struct

import pytest

from ovsd.netdev.vhost_user.protocol import (FLAG_NEED_REPLY, FLAG_REPLY, HEADER,
                                             MEM_REGION, OFFERED_FEATURES, OFFERED_PROTOCOL,
                                             U64, VERSION, VRING_ADDR, VRING_NOFD,
                                             VRING_STATE, Decoder, F, Message, P,
                                             ProtocolError, Req, RingState, Session, bits,
                                             encode)
from ovsd.netdev.vhost_user.vring import RingCounters

MEM_SIZE = 1 << 20
GPA = 0x100000000
UVA = 0x7F0000000000


@pytest.fixture
def session():
    s = Session(RingCounters(bytearray(4096)), max_queue_pairs=4)
    yield s
    s.reset()
    s.release_retired()


def msg(req, payload=b"", fds=(), need_reply=False):
    return Message(int(req), VERSION | (FLAG_NEED_REPLY if need_reply else 0), payload,
                   list(fds))


def memfd(size=MEM_SIZE):
    fd = os.memfd_create("guest")
    os.ftruncate(fd, size)
    return fd


def mem_table(regions):
    payload = struct.pack("<II", len(regions), 0)
    for gpa, size, uva, off in regions:
        payload += MEM_REGION.pack(gpa, size, uva, off)
    return payload


def u64_reply(data):
    req, flags, size = HEADER.unpack_from(data)
    assert flags == VERSION | FLAG_REPLY and size == 8
    return req, U64.unpack_from(data, HEADER.size)[0]


def eventfd():
    return os.eventfd(0, os.EFD_NONBLOCK)


def handshake(s, rings=(0, 1), protocol=bits(P.MQ, P.REPLY_ACK),
              features=bits(F.VERSION_1, F.NET_MRG_RXBUF, F.PROTOCOL_FEATURES)):
    """testpmd's order: owner, features, protocol, calls before SET_FEATURES, memory,
    then num/base/addr/kick per ring, then enable."""
    s.handle(msg(Req.SET_OWNER))
    assert u64_reply(s.handle(msg(Req.GET_FEATURES)).reply)[1] == OFFERED_FEATURES
    assert u64_reply(s.handle(msg(Req.GET_PROTOCOL_FEATURES)).reply)[1] == OFFERED_PROTOCOL
    s.handle(msg(Req.SET_PROTOCOL_FEATURES, U64.pack(protocol)))
    for i in rings:
        s.handle(msg(Req.SET_VRING_CALL, U64.pack(i), [eventfd()]))
    s.handle(msg(Req.SET_FEATURES, U64.pack(features)))
    step = s.handle(msg(Req.SET_MEM_TABLE, mem_table([(GPA, MEM_SIZE, UVA, 0)]),
                        [memfd()], need_reply=True))
    assert step.sync
    if protocol & bits(P.REPLY_ACK):
        assert u64_reply(step.reply) == (Req.SET_MEM_TABLE, 0)
    else:
        assert step.reply is None
    for i in rings:
        s.handle(msg(Req.SET_VRING_NUM, VRING_STATE.pack(i, 256)))
        s.handle(msg(Req.SET_VRING_BASE, VRING_STATE.pack(i, 0)))
        base = UVA + 0x10000 * (i + 1)
        s.handle(msg(Req.SET_VRING_ADDR, VRING_ADDR.pack(i, 0, base, base + 0x2000,
                                                         base + 0x1000, 0)))
        assert s.handle(msg(Req.SET_VRING_KICK, U64.pack(i), [eventfd()])).sync
    for i in rings:
        s.handle(msg(Req.SET_VRING_ENABLE, VRING_STATE.pack(i, 1)))


def test_decoder_reassembles_and_gives_fds_to_the_message_that_carried_them():
    d = Decoder()
    a = encode(Req.SET_FEATURES, U64.pack(5))
    b = encode(Req.SET_VRING_KICK, U64.pack(1))
    c = encode(Req.SET_VRING_CALL, U64.pack(1))
    assert d.feed(a[:5]) == []
    r, w = os.pipe()
    try:
        out = d.feed(a[5:] + b[:3], [])
        assert [m.request for m in out] == [Req.SET_FEATURES] and out[0].fds == []
        out = d.feed(b[3:], [r])
        assert out[0].request == Req.SET_VRING_KICK and out[0].fds == [r]
        # One read with a message without fds, then the one that carried them.
        out = d.feed(a + c, [w])
        assert [(m.request, m.fds) for m in out] == [(Req.SET_FEATURES, []),
                                                     (Req.SET_VRING_CALL, [w])]
        assert not d.partial
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("header, why", [
    (HEADER.pack(1, 0x2, 0), "version"),
    (HEADER.pack(1, VERSION, 1 << 20), "payload"),
])
def test_decoder_rejects_bad_headers(header, why):
    with pytest.raises(ProtocolError, match=why):
        Decoder().feed(header)


def test_handshake_makes_rings_ready_in_order(session):
    s = session
    handshake(s)
    assert s.hdr_len == 12 and s.n_queue_pairs == 1
    assert [s.ring_state(i) for i in (0, 1)] == [RingState.READY] * 2


def test_ring_not_ready_until_enabled_with_protocol_features(session):
    s = session
    handshake(s, rings=(0, 1))
    s.handle(msg(Req.SET_VRING_ENABLE, VRING_STATE.pack(1, 0)))
    assert s.ring_state(1) is RingState.DISABLED and s.ring_state(0) is RingState.READY


def test_without_protocol_features_a_started_ring_runs(session):
    s = session
    handshake(s, protocol=0, features=bits(F.NET_MRG_RXBUF))
    for i in (0, 1):
        s.handle(msg(Req.SET_VRING_ENABLE, VRING_STATE.pack(i, 0)))
    assert s.ready(0) and s.ready(1) and s.hdr_len == 12
    s.reset()
    handshake(s, protocol=0, features=0)
    assert s.hdr_len == 10


def test_qemu_enables_rings_before_anything_else(session):
    s = session
    s.handle(msg(Req.SET_VRING_ENABLE, VRING_STATE.pack(0, 1)))
    assert s.ring_state(0) is RingState.WAITING
    handshake(s)
    assert s.ready(0)


def test_get_vring_base_stops_the_ring_and_reports_the_shared_index(session):
    s = session
    handshake(s)
    s.counters.set(1, 77, 77)  # where the PMD got to
    mm, off = s.memory.uva(UVA + 0x20000 + 0x2000 + 2, 2)
    mm[off:off + 2] = (77).to_bytes(2, "little")  # and published to the guest
    step = s.handle(msg(Req.GET_VRING_BASE, VRING_STATE.pack(1, 0)))
    assert step.sync and step.reply is None
    assert s.ring_state(1) is RingState.STOPPED
    data = step.finish()
    assert VRING_STATE.unpack_from(data, HEADER.size) == (1, 77)
    # Restarting the ring: base and kick again.
    s.handle(msg(Req.SET_VRING_BASE, VRING_STATE.pack(1, 77)))
    s.handle(msg(Req.SET_VRING_KICK, U64.pack(1), [eventfd()]))
    assert s.ready(1) and s.counters.get(1) == (77, 77)


def test_memory_table_replaced_keeps_the_old_mapping_until_released(session):
    s = session
    handshake(s)
    old = s.memory
    gen = s.mem_gen
    step = s.handle(msg(Req.SET_MEM_TABLE, mem_table([(GPA, MEM_SIZE, UVA, 0)]), [memfd()]))
    assert step.sync and s.mem_gen == gen + 1 and s.memory is not old
    assert old in s._retired
    s.release_retired()
    assert s._retired == []


def test_polling_kick_and_call_without_fds(session):
    s = session
    handshake(s, rings=(0,))
    step = s.handle(msg(Req.SET_VRING_CALL, U64.pack(0 | VRING_NOFD)))
    assert s.vrings[0].call_fd is None and step.sync


def test_queue_num_and_mq(session):
    s = session
    step = s.handle(msg(Req.GET_QUEUE_NUM))
    assert u64_reply(step.reply)[1] == 4
    handshake(s, rings=(0, 1, 2, 3))
    assert s.n_queue_pairs == 2 and all(s.ready(i) for i in range(4))


@pytest.mark.parametrize("make, match", [
    (lambda: msg(Req.SET_FEATURES, U64.pack(1 << 5)), "not offered"),
    (lambda: msg(Req.SET_PROTOCOL_FEATURES, U64.pack(bits(P.CONFIG))), "not offered"),
    (lambda: msg(Req.SET_VRING_NUM, VRING_STATE.pack(0, 300)), "power of two"),
    (lambda: msg(Req.SET_VRING_NUM, VRING_STATE.pack(8, 256)), "out of range"),
    (lambda: msg(Req.SET_VRING_KICK, U64.pack(0)), "expects one fd"),
    (lambda: msg(Req.SET_VRING_NUM, b"\x01"), "malformed"),
    (lambda: msg(Req.SET_MEM_TABLE, mem_table([(0, MEM_SIZE, 0, 0)] * 2), [memfd()]),
     "2 regions but 1 fds"),
    (lambda: msg(Req.SET_MEM_TABLE, mem_table([(0, MEM_SIZE * 2, 0, 0)]), [memfd()]), None),
    (lambda: msg(Req.GET_CONFIG), "not supported"),
])
def test_bad_messages_reset_the_connection(session, make, match):
    with pytest.raises(ProtocolError, match=match):
        session.handle(make())


def test_ring_outside_memory_is_refused(session):
    s = session
    handshake(s, rings=(0,))
    with pytest.raises(ProtocolError, match="ring 0"):
        s.handle(msg(Req.SET_VRING_ADDR, VRING_ADDR.pack(0, 0, UVA + MEM_SIZE - 16,
                                                          UVA, UVA, 0)))


def test_unsupported_request_with_need_reply_is_nacked(session):
    s = session
    s.handle(msg(Req.SET_PROTOCOL_FEATURES, U64.pack(bits(P.REPLY_ACK))))
    step = s.handle(msg(Req.SET_LOG_BASE, b"", need_reply=True))
    assert u64_reply(step.reply) == (Req.SET_LOG_BASE, 1)
    step = s.handle(msg(99, b"", need_reply=True))
    assert u64_reply(step.reply) == (99, 1)
    # A request we accept, with NEED_REPLY, is acked with 0.
    step = s.handle(msg(Req.SET_OWNER, need_reply=True))
    assert u64_reply(step.reply) == (Req.SET_OWNER, 0)


def test_reset_closes_every_fd(session):
    s = session
    handshake(s)
    fds = [v.call_fd for v in s.vrings.values()] + [v.kick_fd for v in s.vrings.values()]
    fds += s.memory_fds
    s.reset()
    s.release_retired()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert s.memory is None and not s.vrings and not s.features_set


def test_fds_of_a_refused_message_are_closed(session):
    fd = eventfd()
    session.handle(msg(Req.SET_LOG_FD, b"", [fd]))
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_restarted_backend_continues_where_the_used_ring_is(session):
    """virtio_user in server mode sends base 0 after ovsd restarted; the used
    index in guest memory says where the rings really are."""
    s = session
    handshake(s, rings=(0,))
    ring_used = UVA + 0x10000 + 0x2000
    mm, off = s.memory.uva(ring_used + 2, 2)
    mm[off:off + 2] = (54976).to_bytes(2, "little")
    s.handle(msg(Req.GET_VRING_BASE, VRING_STATE.pack(0, 0))).finish()
    s.handle(msg(Req.SET_VRING_BASE, VRING_STATE.pack(0, 0)))
    s.handle(msg(Req.SET_VRING_KICK, U64.pack(0), [eventfd()]))
    assert s.counters.get(0) == (54976, 54976)
    assert "continuing from 54976" in s.notes[-1]
