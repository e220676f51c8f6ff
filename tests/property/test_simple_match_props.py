"""The simple-match key must be exactly what the full parser puts in those
fields, whenever it answers at all."""

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsd.dpif.simple_match import SIMPLE_MASK, simple_key, uniform_ipv4
from ovsd.packet.parse import OneLengthBurst
from ovsd.packet import key as K
from ovsd.packet.parse import extract_key

ETHERTYPES = [b"\x08\x00", b"\x08\x06", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x00\x40",
              b"\x05\xff", b"\x06\x00", b"\x12\x34"]


@st.composite
def frames(draw):
    """Ethernet frames with realistic and unrealistic tags, types and IPv4 headers."""
    macs = draw(st.binary(min_size=12, max_size=12))
    parts = [macs]
    for _ in range(draw(st.integers(0, 2))):
        parts.append(draw(st.sampled_from([b"\x81\x00", b"\x88\xa8"])))
        parts.append(draw(st.binary(min_size=2, max_size=2)))
    ethertype = draw(st.sampled_from(ETHERTYPES))
    parts.append(ethertype)
    if ethertype == b"\x86\xdd" and draw(st.booleans()):
        # IPv6 carrying a fragment header: only the full parser sees nw_frag.
        offset = draw(st.sampled_from([0, 8]))
        parts.append(b"\x60\x00\x00\x00" + (16).to_bytes(2, "big") + b"\x2c\x40"
                     + bytes(32) + b"\x11\x00" + (offset << 3 | 1).to_bytes(2, "big")
                     + b"\x00\x00\x00\x01" + bytes(8))
    elif draw(st.booleans()):
        ihl = draw(st.sampled_from([0x45, 0x46, 0x44, 0x4f, 0x65]))
        tot = draw(st.integers(0, 120))
        frag = draw(st.sampled_from([b"\x00\x00", b"\x40\x00", b"\x20\x00", b"\x00\x05",
                                     b"\x3f\xff"]))
        parts.append(bytes([ihl, 0]) + tot.to_bytes(2, "big") + b"\x00\x01" + frag
                     + bytes([64, draw(st.sampled_from([6, 17, 1, 0]))]))
    parts.append(draw(st.binary(max_size=80)))
    frame = b"".join(parts)
    return frame[:draw(st.integers(0, len(frame)))] if draw(st.booleans()) else frame


@settings(max_examples=3000, deadline=None)
@given(frames(), st.integers(1, 0xFFFE))
def test_simple_key_agrees_with_the_parser(frame, in_port):
    skey = simple_key(frame, in_port << K.IN_PORT_SHIFT)
    if skey is not None:
        assert skey == extract_key(frame, in_port) & SIMPLE_MASK


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=14, max_size=100), st.integers(1, 0xFFFE))
def test_simple_key_on_arbitrary_bytes(frame, in_port):
    skey = simple_key(frame, in_port << K.IN_PORT_SHIFT)
    if skey is not None:
        assert skey == extract_key(frame, in_port) & SIMPLE_MASK


def _one_ipv4_nofrag(frame) -> bool:
    """The per-frame test of the simple walk: untagged IPv4, not a fragment."""
    return frame[12:14] == b"\x08\x00" and len(frame) >= 22 and not (frame[20] & 0x3F
                                                                     or frame[21])


@st.composite
def bursts(draw):
    """Bursts of mostly equal-length frames whose judged bytes vary a little."""
    size = draw(st.sampled_from([14, 21, 22, 23, 60, 64]))
    base = bytearray(draw(st.binary(min_size=size, max_size=size)))
    if size >= 14 and draw(st.booleans()):
        base[12:14] = b"\x08\x00"
    if size >= 22 and draw(st.booleans()):
        base[20:22] = draw(st.sampled_from([b"\x00\x00", b"\x40\x00", b"\xc0\x00"]))
    burst = []
    for _ in range(draw(st.integers(2, 12))):
        frame = bytearray(base)
        if draw(st.integers(0, 5)) == 0 and size:
            i = draw(st.sampled_from([i for i in (12, 13, 20, 21, 0, size - 1) if i < size]))
            frame[i] = draw(st.integers(0, 255))
        if draw(st.integers(0, 9)) == 0:
            frame += b"\x00"
        burst.append(bytes(frame))
    return burst


@settings(max_examples=2000, deadline=None)
@given(bursts())
def test_uniform_ipv4_is_the_per_frame_test_of_every_frame(burst):
    same_length = len(set(map(len, burst))) == 1
    assert uniform_ipv4(burst) == (same_length and all(map(_one_ipv4_nofrag, burst)))
    if same_length:   # as a ring that knows the length hands it over
        assert uniform_ipv4(OneLengthBurst(burst)) == uniform_ipv4(burst)
