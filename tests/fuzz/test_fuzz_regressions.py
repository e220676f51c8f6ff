"""Crashes the fuzz targets found, as plain tests with their minimized inputs.

(The same inputs also sit in tests/fuzz/corpus/TARGET/regress-*, replayed
through the whole target by test_fuzz_short.py.)
"""

from __future__ import annotations

import os

import pytest

from ovsd.netdev.vhost_user import protocol as P
from ovsd.netdev.vhost_user.vring import RingCounters
from ovsd.ofproto.fields import FlowSyntaxError
from ovsd.ofproto.flow_syntax import parse_flow


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _devnull() -> int:
    return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)


def test_fds_on_a_request_that_takes_none_are_closed():
    # vhost_protocol: GET_FEATURES carrying two fds; device.py never closes a
    # message's fds, so the session must.
    before = _open_fds()
    session = P.Session(RingCounters(bytearray(64)))
    msg = P.Decoder().feed(P.encode(P.Req.GET_FEATURES), [_devnull(), _devnull()])[0]
    session.handle(msg)
    assert _open_fds() == before


def test_fds_of_a_refused_request_are_closed():
    before = _open_fds()
    session = P.Session(RingCounters(bytearray(64)), max_queue_pairs=1)
    payload = P.VRING_STATE.pack(31, 8)  # ring 31 of a 2-ring port
    msg = P.Decoder().feed(P.encode(P.Req.SET_VRING_NUM, payload), [_devnull()])[0]
    with pytest.raises(P.ProtocolError):
        session.handle(msg)
    assert _open_fds() == before


def test_decoder_error_closes_fds_of_messages_decoded_before_it():
    # vhost_protocol: a good message with fds, then a bad header in the same
    # read: feed raises, so the caller never sees the good message.
    before = _open_fds()
    d = P.Decoder()
    good = P.encode(P.Req.GET_FEATURES)
    bad = P.HEADER.pack(P.Req.GET_FEATURES, 0, 0)  # protocol version 0
    with pytest.raises(P.ProtocolError):
        d.feed(good + bad, [_devnull()])
    d.close()
    assert _open_fds() == before


@pytest.mark.parametrize("version", ["OpenFlow10", "OpenFlow13", "OpenFlow15"])
@pytest.mark.parametrize("action", ["load:0->dl_vlan", "load:1->dl_vlan_pcp",
                                    "load:5->dl_vlan[0..3]"])
def test_load_into_dl_vlan_is_refused_like_set_field(action, version):
    # flow_text: it was accepted and dumped as set_field:0/0xfff->dl_vlan,
    # which set_field refuses (tests/data/flow_syntax: dl_vlan_set_field).
    with pytest.raises(FlowSyntaxError, match="mod_vlan_vid"):
        parse_flow(f"actions={action},output:2", "add", version)
