"""shared_key answers for a whole burst only when every frame's key under the
mask is the first frame's (extract_keys is the reference), and it does answer
for bursts of copies of one TCP or UDP frame."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsd.packet import key as K
from ovsd.packet.parse import OneLengthBurst, extract_keys, shared_key

FIELDS = ["dl_dst", "dl_src", "dl_type", "nw_frag", "nw_tos", "nw_ttl", "nw_proto", "nw_src",
          "nw_dst", "tp_src", "tp_dst", "in_port", "vlan_tci", "tcp_flags", "ipv6_src"]


def ip_frame(proto: int, payload: bytes, tot_delta: int, ihl: int, frag: int, doff: int):
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", 1000, 80, 1, 2, doff << 4, 0x18, 512, 0, 0) + payload
    else:
        l4 = struct.pack("!HHHH", 1000, 80, 8 + len(payload), 0) + payload
    tot = max(0, 20 + len(l4) + tot_delta)
    ip = struct.pack("!BBHHHBBH4s4s", ihl, 0, tot, 7, frag, 64, proto, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + l4


@st.composite
def bursts(draw, counts=st.integers(2, 10), align: bool = False):
    """A frame and copies of it with a few bytes changed (some a byte longer).
    ``align``: a big burst as the word-at-a-time comparison takes it: the
    frame padded to a multiple of 4 or 8 bytes, all copies that long, and a
    few bytes changed in the whole burst rather than in each copy."""
    proto = draw(st.sampled_from([6, 17, 1]))
    base = ip_frame(proto, draw(st.binary(min_size=0, max_size=40)),
                    draw(st.sampled_from([0, 0, 0, -30, 5])),
                    draw(st.sampled_from([0x45, 0x45, 0x46])),
                    draw(st.sampled_from([0, 0x4000, 0x2000])),
                    draw(st.sampled_from([5, 5, 4, 15])))
    base = base + bytes(draw(st.integers(0, 20)))  # Ethernet padding
    if align:
        base += bytes(-len(base) % draw(st.sampled_from([4, 8])))
    n = draw(counts)
    if align:
        burst = [bytearray(base) for _ in range(n)]
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(base) - 1))
            burst[draw(st.integers(0, n - 1))][i] = draw(st.integers(0, 255))
        return [bytes(f) for f in burst]
    burst = []
    for _ in range(n):
        frame = bytearray(base)
        for _ in range(draw(st.integers(0, 2))):
            i = draw(st.integers(0, len(frame) - 1))
            frame[i] = draw(st.integers(0, 255))
        if draw(st.integers(0, 9)) == 0:
            frame += b"\x00"
        burst.append(bytes(frame))
    return burst


masks = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5).map(
    lambda names: sum({K.FIELDS[n].mask for n in names} | {K.FIELDS["in_port"].mask}))


@settings(max_examples=3000, deadline=None)
@given(bursts(), masks, st.integers(1, 0xFFFE))
def test_a_shared_key_is_every_frames_key_under_the_mask(burst, mask, in_port):
    _check(burst, mask, in_port)


@settings(max_examples=1500, deadline=None)
@given(bursts(st.integers(16, 40), align=True), masks, st.integers(1, 0xFFFE))
def test_a_shared_key_of_a_big_burst_is_every_frames_key(burst, mask, in_port):
    """Bursts big enough to be compared a word of every frame at a time."""
    _check(burst, mask, in_port)


def _check(burst: list, mask: int, in_port: int) -> None:
    got = shared_key(burst, in_port, mask)
    keys = extract_keys(burst, in_port)
    if got is not None:
        assert got == keys[0]
        assert all(k & mask == got & mask for k in keys)
    if len(set(map(len, burst))) == 1:   # as a ring that knows the length hands it over
        assert shared_key(OneLengthBurst(burst), in_port, mask) == got


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([6, 17]), st.binary(min_size=0, max_size=40), masks,
       st.integers(2, 12))
def test_copies_of_a_fast_path_frame_share_their_key(proto, payload, mask, n):
    frame = ip_frame(proto, payload, 0, 0x45, 0, 5) + bytes(8)
    # frames may be bytes, bytearrays or memoryviews (extract_key takes all three)
    for burst in ([bytes(bytearray(frame)) for _ in range(n)], [frame] * (16 * n),
                  [bytearray(frame)] * (16 * n), [memoryview(frame)] * (16 * n)):
        assert shared_key(burst, 3, mask) == extract_keys(burst[:1], 3)[0]
