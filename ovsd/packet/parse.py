"""Frames -> flow keys, with the semantics of OVS 3.1's ``miniflow_extract``.

The rules followed (with ``vlan-limit=1``):

- A frame shorter than an Ethernet header has no packet fields at all.
- Only the outermost VLAN tag (TPID 0x8100 or 0x88a8) is parsed, and only
  when the tag and the ethertype after it are both present; ``vlan_tci``
  gets the CFI bit 0x1000.  The ethertype after the tag is ``dl_type`` even
  when it is another TPID.
- An 802.3 length field gives ``dl_type`` 0x05ff unless an LLC/SNAP header
  with OUI 0 carries a real ethertype, which is then parsed as usual.
- IPv4 needs IHL >= 5, the header inside the frame and a total length that
  covers the header and fits the frame; otherwise the frame keeps
  ``dl_type`` 0x0800 and no L3/L4 field.  The version nibble and the header
  checksum are not checked.  Bytes past the total length are padding.
- IPv6 needs the fixed header and the payload length inside the frame.
  Extension headers (hop-by-hop, routing, destination options, AH,
  fragment) are walked; a truncated one leaves only the addresses set.
- Later fragments (IPv4 offset != 0, IPv6 fragment offset != 0) carry no L4
  fields; an IPv6 later fragment's ``nw_proto`` is 44.
- L4 fields need the whole fixed header inside the L3 payload: TCP 20 bytes
  and a data offset between 5 and the payload (else ports and flags stay
  0), UDP 8, SCTP 12, ICMP/IGMP 8, ICMPv6 8.  As in OVS the L4 branch is
  chosen by ``nw_proto`` alone, whichever IP version carries it.
- ICMPv6 neighbor discovery (type 135/136, code 0): ``nd_target``, the
  first source/target link-layer options into ``arp_sha``/``arp_tha`` and
  the type of the first of them into ``tcp_flags`` (OVS's
  ``nd_options_type``).  A repeated link-layer option makes the message
  invalid: target and addresses go back to 0.
- ARP/RARP only with hardware type 1, protocol 0x0800 and lengths 6/4;
  the opcode goes into ``nw_proto`` when it fits a byte.

Nothing here raises on any input: garbage parses as far as it is valid.
"""

from __future__ import annotations

import struct
from typing import Iterable, NamedTuple

from ovsd.packet import key as _key

_F = _key.FIELDS
_IMAGE_SHIFT_L3 = (_key.IMAGE_BYTES - 34) * 8  # IPv4 header bytes land at image byte 14
_MACS = _F["dl_src"].offset  # dl_dst sits right above dl_src: one 96-bit field
_DL_TYPE = _F["dl_type"].offset
_NW_FRAG = _F["nw_frag"].offset
_NW_TOS = _F["nw_tos"].offset
_LABEL = _F["ipv6_label"].offset
_NW_TTL = _F["nw_ttl"].offset
_NW_PROTO = _F["nw_proto"].offset
_NW_SRC = _F["nw_src"].offset
_NW_DST = _F["nw_dst"].offset
_TP_SRC = _F["tp_src"].offset
_TP_DST = _F["tp_dst"].offset
_PORTS = _TP_DST  # tp_src:tp_dst as one 32-bit wire-order field
_VLAN_TCI = _F["vlan_tci"].offset
_VLAN_TPID = _F["vlan_tpid"].offset
_TCP_FLAGS = _F["tcp_flags"].offset
_ARP_SHA = _F["arp_sha"].offset
_ARP_THA = _F["arp_tha"].offset
_IPV6_SRC = _F["ipv6_src"].offset
_IPV6_DST = _F["ipv6_dst"].offset
_ND_TARGET = _F["nd_target"].offset

assert _F["dl_dst"].offset == _MACS + 48
assert _F["tp_src"].offset == _PORTS + 16

_L3_IMAGE = (_F["dl_dst"].mask | _F["dl_src"].mask | _F["dl_type"].mask
             | _F["nw_tos"].mask | _F["nw_ttl"].mask | _F["nw_proto"].mask
             | _F["nw_src"].mask | _F["nw_dst"].mask)
_MACS_IMAGE = _F["dl_dst"].mask | _F["dl_src"].mask
_PORTS_IMAGE = _L3_IMAGE | _F["tp_src"].mask | _F["tp_dst"].mask
_TCP_IMAGE = _PORTS_IMAGE | _F["tcp_flags"].mask
# What the IPv4 header contributes when it is shifted into image bytes 14..33.
_IP4_HDR_BITS = (_F["nw_tos"].mask | _F["nw_ttl"].mask | _F["nw_proto"].mask
                 | _F["nw_src"].mask | _F["nw_dst"].mask)

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_RARP = 0x8035
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_VLAN = 0x8100
ETH_TYPE_VLAN_8021AD = 0x88A8
ETH_TYPE_MIN = 0x0600
DL_TYPE_NONE = 0x05FF  # OVS's dl_type for 802.3 frames without SNAP

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
IPPROTO_SCTP = 132

ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_TARGET_LINKADDR = 2

NW_FRAG_ANY = _key.NW_FRAG_ANY
NW_FRAG_LATER = _key.NW_FRAG_LATER

_IPV6_EXT = frozenset((IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS,
                       IPPROTO_AH, IPPROTO_FRAGMENT))
# Bytes of L4 header needed before OVS reads any field of that protocol.
L4_MIN_LEN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_SCTP: 12,
              IPPROTO_ICMP: 8, IPPROTO_IGMP: 8, IPPROTO_ICMPV6: 8}
_SNAP_ETHERNET = b"\xaa\xaa\x03\x00\x00\x00"
_ARP_ETH_IP4 = b"\x00\x01\x08\x00\x06\x04"
_PORT_MASK = 0xFFFF
_U128 = (1 << 128) - 1
_IP6_FIXED = struct.Struct("!IHBB")  # version/class/label, payload length, next header, hop limit


class HeaderOffsets(NamedTuple):
    """Where a frame's headers start, by the same rules as ``extract_key``."""

    vlan: int  # offset of the outermost VLAN tag's TPID, -1 when untagged
    l3: int  # offset of the L3 header (after tag/SNAP), -1 if no Ethernet header
    dl_type: int  # the ethertype the L3 header has (0 if no Ethernet header)
    l3_ok: bool  # IPv4/IPv6 passed the sanity checks, or ARP is Ethernet/IPv4
    l4: int  # offset of the L4 header (after IPv6 extension headers), -1 if none
    l4_end: int  # end of the L3 payload (padding starts here), -1 if none
    nw_proto: int  # the L4 protocol (44 for an IPv6 later fragment)
    l4_ok: bool  # the fixed header of nw_proto is all there (not a later fragment)
    nw_frag: int  # NW_FRAG_ANY | NW_FRAG_LATER bits


def _sig(ethertype: int, ver_ihl: int, proto: int) -> int:
    # Byte i of the 48-byte image sits at bit (47 - i) * 8.
    return ethertype << 272 | ver_ihl << 264 | proto << 192


# The frame bytes that decide the fast path: ethertype, IPv4 version/IHL,
# the fragment bits and the protocol.
_SIG_MASK = _sig(0xFFFF, 0xFF, 0xFF) | 0x3FFF << 208
_SIG_TCP = _sig(ETH_TYPE_IP, 0x45, IPPROTO_TCP)
_SIG_UDP = _sig(ETH_TYPE_IP, 0x45, IPPROTO_UDP)


def _fast_image(frame, n: int, image: int) -> int:
    """The image bits of a key the fast path makes from a frame of n bytes
    (48 to 0xFFFF) whose first 48 bytes are ``image``: _PORTS_IMAGE (UDP),
    _TCP_IMAGE, or 0 when the general parser must judge.  (extract_keys
    inlines this test: a call per packet would cost half as much again.)"""
    sig = image & _SIG_MASK
    if sig == _SIG_UDP:
        if 28 <= (frame[16] << 8 | frame[17]) <= n - 14:
            return _PORTS_IMAGE
    elif sig == _SIG_TCP:
        doff = frame[46] >> 2 & 0x3C
        if 20 <= doff and 20 + doff <= (frame[16] << 8 | frame[17]) <= n - 14:
            return _TCP_IMAGE
    return 0


class OneLengthBurst(list):
    """A received burst whose frames all have one length, built by a receive
    path that knows it without measuring them (a ring whose descriptors all
    give one length): the whole-burst tests below then take it on trust
    rather than spending a pass over the burst on it."""

    __slots__ = ()


def joined_if_one_length(frames: list, size: int) -> bytes | None:
    """The frames joined, when every one of them is ``size`` bytes long (then
    byte i of every frame is one strided slice, ``joined[i::size]``).
    ``size`` is the length of ``frames[0]``."""
    joined = b"".join(frames)
    if type(frames) is OneLengthBurst:
        return joined
    # n frames of at most ``size`` bytes that add up to n * size are all that long.
    if len(joined) != len(frames) * size or max(map(len, frames)) != size:
        return None
    return joined


def extract_key(frame, in_port: int = 0) -> int:
    """The flow key of one Ethernet frame (bytes, bytearray or memoryview, no FCS)."""
    port_bits = (in_port & _PORT_MASK) << _key.IN_PORT_SHIFT
    n = len(frame)
    # Fast path: untagged TCP/UDP over IPv4 without options, not a fragment,
    # at least the 48 bytes of the key's wire image: one int conversion, the
    # checks on that int, and a mask.  (Past 64 KiB the padding after the
    # datagram can be too long for OVS: the general parser checks that.)
    if 48 <= n <= 0xFFFF:
        image = int.from_bytes(frame[:48], "big")
        fast = _fast_image(frame, n, image)
        if fast:
            return image & fast | port_bits
        return _extract(frame, n, image & _MACS_IMAGE) | port_bits
    # A runt's key has no input port, as in extract_keys.
    return _extract(frame, n, -1) | port_bits if n >= 14 else 0


def extract_keys(frames: Iterable, in_port: int = 0, *, _from_bytes=int.from_bytes,
                 _sig_mask=_SIG_MASK, _sig_udp=_SIG_UDP, _sig_tcp=_SIG_TCP,
                 _udp_image=_PORTS_IMAGE, _tcp_image=_TCP_IMAGE,
                 _macs_image=_MACS_IMAGE) -> list[int]:
    """Keys of a batch of frames received on ``in_port``, in order.

    The keyword-only arguments are constants bound as locals: this loop
    runs once per packet, and a local is cheaper than a global."""
    port_bits = (in_port & _PORT_MASK) << _key.IN_PORT_SHIFT
    keys = []
    append = keys.append
    for frame in frames:
        # extract_key's fast path, inlined: a call per packet would cost
        # half as much again.
        n = len(frame)
        if n >= 48:
            image = _from_bytes(frame[:48])  # big-endian, the default: no argument to parse
            sig = image & _sig_mask
            if sig == _sig_udp:
                if 28 <= (frame[16] << 8 | frame[17]) <= n - 14 and n <= 0xFFFF:
                    append(image & _udp_image | port_bits)
                    continue
            elif sig == _sig_tcp:
                doff = frame[46] >> 2 & 0x3C
                if 20 <= doff and 20 + doff <= (frame[16] << 8 | frame[17]) <= n - 14 \
                        and n <= 0xFFFF:
                    append(image & _tcp_image | port_bits)
                    continue
            append(_extract(frame, n, image & _macs_image) | port_bits)
        else:
            # A runt gets no input port: its key then matches no megaflow
            # (every mask has in_port) and the datapath drops it at the upcall.
            append(_extract(frame, n, -1) | port_bits if n >= 14 else 0)
    return keys


# -- a burst that shares one key ---------------------------------------------

# The bytes that decide extract_keys' fast path besides the frame's length:
# ethertype, version/IHL, total length, fragment bits, protocol (and for TCP
# the data offset, byte 46).
_FAST_PATH_BYTES = (12, 13, 14, 16, 17, 20, 21, 23)
_SHARED_POSITIONS: dict[tuple[int, bool], tuple[int, ...]] = {}


def _shared_positions(masked_image: int, tcp: bool) -> tuple[int, ...]:
    """The frame bytes two frames of one length must agree on for their keys
    to agree under a mask (``masked_image``: the fast path's image bits the
    mask keeps): the masked ones from the end of the header (ports and
    addresses tell flows apart more often than MACs), then the deciding ones."""
    positions = _SHARED_POSITIONS.get((masked_image, tcp))
    if positions is None:
        if len(_SHARED_POSITIONS) >= 256:
            _SHARED_POSITIONS.clear()
        masked = [i for i in range(_key.IMAGE_BYTES - 1, -1, -1)
                  if masked_image >> (_key.IMAGE_BYTES - 1 - i) * 8 & 0xFF]
        deciding = _FAST_PATH_BYTES + ((46,) if tcp else ())
        positions = tuple(masked + [i for i in deciding if i not in masked])
        _SHARED_POSITIONS[masked_image, tcp] = positions
    return positions


def shared_key(frames: list, in_port: int, mask: int) -> int | None:
    """The key of ``frames[0]`` when every frame of the burst has that key under
    ``mask``, else None (also when only the general parser could tell).

    It answers for bursts of one frame length on extract_keys' fast path
    (untagged TCP/UDP over IPv4): such frames have equal keys under the
    mask exactly when they agree on the bytes the mask keeps and on those
    that choose the fast path.  A stream between two guests is such a burst
    under NORMAL's megaflows (MACs, ethertype, in_port) even though IP ids,
    checksums and payloads differ.  The test reads each byte of all frames
    at once, by a strided slice of the joined burst: a few C calls per byte
    instead of a key extraction per frame.  The last frame is compared first,
    so that a burst of many flows costs a few byte comparisons."""
    first = frames[0]
    size = len(first)
    if not 48 <= size <= 0xFFFF:
        return None
    image = int.from_bytes(first[:48])
    fast = _fast_image(first, size, image)
    if not fast:
        return None
    positions = _shared_positions(fast & mask, fast == _TCP_IMAGE)
    last = frames[-1]
    if len(last) != size:
        return None
    for i in positions:
        if last[i] != first[i]:
            return None
    joined = joined_if_one_length(frames, size)
    if joined is None:
        return None
    if not _all_agree(joined, size, len(frames), first, positions):
        return None
    return image & fast | (in_port & _PORT_MASK) << _key.IN_PORT_SHIFT


# Comparing a whole word of every frame at once (a strided memoryview against
# the first frame's word repeated, ~0.5 us for 256 frames) costs about two
# byte checks (a strided slice and a count, ~0.3 us): worth it for words
# holding three positions or more, in bursts big enough to pay for the cast.
_WORDS_FROM_FRAMES = 16
_WORD_PLANS: dict[tuple[tuple[int, ...], int], tuple] = {}


def _word_plan(positions: tuple[int, ...], k: int) -> tuple:
    """(words, singles): the k-byte words holding three or more of
    ``positions``, each as (word index, its positions), in the order their
    first position comes; and the positions in no such word."""
    plan = _WORD_PLANS.get((positions, k))
    if plan is None:
        if len(_WORD_PLANS) >= 256:
            _WORD_PLANS.clear()
        by_word: dict[int, list[int]] = {}
        for i in positions:
            by_word.setdefault(i // k, []).append(i)
        words = tuple((w, tuple(inside)) for w, inside in by_word.items() if len(inside) >= 3)
        grouped = {i for _, inside in words for i in inside}
        plan = _WORD_PLANS[positions, k] = (
            words, tuple(i for i in positions if i not in grouped))
    return plan


def _all_agree(joined: bytes, size: int, n: int, first, positions: tuple[int, ...]) -> bool:
    """Whether each of the n frames of ``joined`` (``size`` bytes each) has
    the byte of ``first`` at every one of ``positions``."""
    if n >= _WORDS_FROM_FRAMES and not size & 3:
        k, fmt = (8, "Q") if not size & 7 else (4, "I")
        words, singles = _word_plan(positions, k)
        view = memoryview(joined).cast(fmt)
        stride = size // k
        for w, inside in words:
            at = w * k
            if view[w::stride] != memoryview(bytes(first[at:at + k]) * n).cast(fmt):
                # Some byte of the word differs: maybe not one of ours.
                for i in inside:
                    if joined[i::size].count(first[i]) != n:
                        return False
        positions = singles
    for i in positions:
        if joined[i::size].count(first[i]) != n:
            return False
    return True


# -- the general parser ------------------------------------------------------

def _llc(frame, n: int, off: int) -> tuple[int, int]:
    """(dl_type, L3 offset) of an 802.3 frame whose length field ends at ``off``."""
    if n - off >= 8 and frame[off:off + 6] == _SNAP_ETHERNET:
        snap_type = frame[off + 6] << 8 | frame[off + 7]
        if snap_type >= ETH_TYPE_MIN:
            return snap_type, off + 8
    return DL_TYPE_NONE, off


def _l2(frame, n: int) -> tuple[int, int, int]:
    """(VLAN tag offset or -1, dl_type, L3 offset) of a frame of n >= 14 bytes."""
    dl_type = frame[12] << 8 | frame[13]
    vlan = -1
    off = 14
    # The tag counts only if the ethertype after it is there too.
    if (dl_type == ETH_TYPE_VLAN or dl_type == ETH_TYPE_VLAN_8021AD) and n >= 18:
        vlan = 12
        dl_type = frame[16] << 8 | frame[17]
        off = 18
    if dl_type < ETH_TYPE_MIN:
        dl_type, off = _llc(frame, n, off)
    return vlan, dl_type, off


def _ipv4_lengths(frame, off: int, n: int) -> tuple[int, int] | None:
    """(header length, total length) if the IPv4 header at ``off`` is sane."""
    size = n - off
    if size < 20:
        return None
    ihl = (frame[off] & 0x0F) * 4
    if ihl < 20 or size < ihl:
        return None
    tot = frame[off + 2] << 8 | frame[off + 3]
    if tot > size or ihl > tot or size - tot > 0xFFFF:
        return None
    return ihl, tot


def _ipv6_payload_len(frame, off: int, n: int) -> int:
    """The payload length if the IPv6 header at ``off`` is sane, else -1."""
    size = n - off
    if size < 40:
        return -1
    plen = frame[off + 4] << 8 | frame[off + 5]
    if plen + 40 > size or size - plen - 40 > 0xFFFF:
        return -1
    return plen


def _ipv6_ext(frame, p: int, end: int, proto: int) -> tuple[int, int, int] | None:
    """Walk extension headers from ``p``: (L4 offset, nw_proto, nw_frag) or None."""
    frag = 0
    while proto in _IPV6_EXT:
        if end - p < 8:
            return None
        nxt = frame[p]
        if proto == IPPROTO_FRAGMENT:
            offlg = frame[p + 2] << 8 | frame[p + 3]
            p += 8
            proto = nxt
            if offlg:
                frag = NW_FRAG_ANY
                if offlg & 0xFFF8:
                    return p, IPPROTO_FRAGMENT, NW_FRAG_ANY | NW_FRAG_LATER
            continue
        if proto == IPPROTO_AH:
            hlen = (frame[p + 1] + 2) * 4
        else:
            hlen = (frame[p + 1] + 1) * 8
        if end - p < hlen:
            return None
        p += hlen
        proto = nxt
    return p, proto, frag


def _l4_fields(frame, proto: int, p: int, end: int) -> int:
    """Key bits of the L4 header at ``p`` (the L3 payload ends at ``end``)."""
    size = end - p
    if proto == IPPROTO_TCP:
        if size >= 20:
            hlen = frame[p + 12] >> 2 & 0x3C
            if hlen >= 20 and size >= hlen:
                return (int.from_bytes(frame[p:p + 4], "big") << _PORTS
                        | ((frame[p + 12] & 0x0F) << 8 | frame[p + 13]) << _TCP_FLAGS)
        return 0
    if proto == IPPROTO_UDP:
        return int.from_bytes(frame[p:p + 4], "big") << _PORTS if size >= 8 else 0
    if proto == IPPROTO_ICMP or proto == IPPROTO_IGMP:
        return frame[p] << _TP_SRC | frame[p + 1] << _TP_DST if size >= 8 else 0
    if proto == IPPROTO_SCTP:
        return int.from_bytes(frame[p:p + 4], "big") << _PORTS if size >= 12 else 0
    if proto == IPPROTO_ICMPV6 and size >= 8:
        icmp_type = frame[p]
        code = frame[p + 1]
        bits = icmp_type << _TP_SRC | code << _TP_DST
        if code == 0 and (icmp_type == ND_NEIGHBOR_SOLICIT
                          or icmp_type == ND_NEIGHBOR_ADVERT):
            bits |= _nd_fields(frame, p + 8, end)
        return bits
    return 0


def _nd_fields(frame, p: int, end: int) -> int:
    """Key bits of an NS/NA body (target and options) starting at ``p``."""
    if end - p < 16:
        return 0
    target = int.from_bytes(frame[p:p + 16], "big")
    p += 16
    sll = tll = 0
    opt_type = 0
    while end - p >= 8:
        otype = frame[p]
        olen = frame[p + 1] * 8
        if not olen or olen > end - p:
            break
        if olen == 8 and (otype == ND_OPT_SOURCE_LINKADDR
                          or otype == ND_OPT_TARGET_LINKADDR):
            mac = int.from_bytes(frame[p + 2:p + 8], "big")
            # A second option of a kind already seen (with a non-zero
            # address) spoils the message, but the type noted stays.
            if otype == ND_OPT_SOURCE_LINKADDR:
                if sll:
                    return opt_type << _TCP_FLAGS
                sll = mac
            else:
                if tll:
                    return opt_type << _TCP_FLAGS
                tll = mac
            if not opt_type:
                opt_type = otype
        p += olen
    return (target << _ND_TARGET | sll << _ARP_SHA | tll << _ARP_THA
            | opt_type << _TCP_FLAGS)


def _extract(frame, n: int, macs: int) -> int:
    """The key without in_port, for any frame.

    ``macs`` is the key's dl_dst and dl_src when the caller already has them
    from the wire image, else -1.  The Ethernet and IP checks are written out
    here rather than shared with header_offsets: each helper call would cost
    a tenth of the budget.
    """
    if n < 14:
        return 0
    key = macs if macs >= 0 else int.from_bytes(frame[:12], "big") << _MACS
    dl_type = frame[12] << 8 | frame[13]
    off = 14
    if (dl_type == ETH_TYPE_VLAN or dl_type == ETH_TYPE_VLAN_8021AD) and n >= 18:
        tag = ((frame[14] << 8 | frame[15] | _key.VLAN_CFI) << _VLAN_TCI
               | dl_type << _VLAN_TPID)
        if n >= 52:
            # Tagged TCP/UDP over plain IPv4: the untagged fast path on the
            # frame with the tag cut out.
            image = key | int.from_bytes(frame[16:52], "big")
            sig = image & _SIG_MASK
            if sig == _SIG_UDP:
                if 28 <= (frame[20] << 8 | frame[21]) <= n - 18:
                    return image & _PORTS_IMAGE | tag
            elif sig == _SIG_TCP:
                doff = frame[50] >> 2 & 0x3C
                if 20 <= doff and 20 + doff <= (frame[20] << 8 | frame[21]) <= n - 18:
                    return image & _TCP_IMAGE | tag
        key |= tag
        dl_type = frame[16] << 8 | frame[17]
        off = 18
    if dl_type < ETH_TYPE_MIN:
        dl_type, off = _llc(frame, n, off)
    key |= dl_type << _DL_TYPE

    if dl_type == ETH_TYPE_IP:
        size = n - off
        if size < 20:
            return key
        ihl = (frame[off] & 0x0F) << 2
        tot = frame[off + 2] << 8 | frame[off + 3]
        if ihl < 20 or ihl > size or tot > size or ihl > tot or size - tot > 0xFFFF:
            return key
        key |= int.from_bytes(frame[off:off + 20], "big") << _IMAGE_SHIFT_L3 & _IP4_HDR_BITS
        if frame[off + 6] & 0x3F or frame[off + 7]:
            if frame[off + 6] & 0x1F or frame[off + 7]:
                return key | (NW_FRAG_ANY | NW_FRAG_LATER) << _NW_FRAG
            key |= NW_FRAG_ANY << _NW_FRAG
        return key | _l4_fields(frame, frame[off + 9], off + ihl, off + tot)

    if dl_type == ETH_TYPE_IPV6:
        size = n - off
        if size < 40:
            return key
        flow, plen, proto, hlim = _IP6_FIXED.unpack_from(frame, off)
        if plen + 40 > size or size - plen - 40 > 0xFFFF:
            return key
        addrs = int.from_bytes(frame[off + 8:off + 40], "big")
        key |= (addrs >> 128) << _IPV6_SRC | (addrs & _U128) << _IPV6_DST
        l4 = off + 40
        end = l4 + plen
        frag = 0
        if proto in _IPV6_EXT:
            walked = _ipv6_ext(frame, l4, end, proto)
            if walked is None:
                return key
            l4, proto, frag = walked
        key |= ((flow >> 20 & 0xFF) << _NW_TOS | (flow & 0xFFFFF) << _LABEL
                | hlim << _NW_TTL | proto << _NW_PROTO | frag << _NW_FRAG)
        if frag & NW_FRAG_LATER:
            return key
        return key | _l4_fields(frame, proto, l4, end)

    if dl_type == ETH_TYPE_ARP or dl_type == ETH_TYPE_RARP:
        if n - off >= 28 and frame[off:off + 6] == _ARP_ETH_IP4:
            key |= (int.from_bytes(frame[off + 14:off + 18], "big") << _NW_SRC
                    | int.from_bytes(frame[off + 24:off + 28], "big") << _NW_DST
                    | int.from_bytes(frame[off + 8:off + 14], "big") << _ARP_SHA
                    | int.from_bytes(frame[off + 18:off + 24], "big") << _ARP_THA)
            if not frame[off + 6]:
                key |= frame[off + 7] << _NW_PROTO
    return key


def header_offsets(frame) -> HeaderOffsets:
    """Header positions and validity for a frame that needs a rewrite."""
    n = len(frame)
    if n < 14:
        return _NO_HEADERS
    vlan, dl_type, off = _l2(frame, n)

    if dl_type == ETH_TYPE_IP:
        lengths = _ipv4_lengths(frame, off, n)
        if lengths is None:
            return _new_offsets(HeaderOffsets, (vlan, off, dl_type, False, -1, -1, 0, False, 0))
        ihl, tot = lengths
        l4 = off + ihl
        end = off + tot
        proto = frame[off + 9]
        frag_word = frame[off + 6] << 8 | frame[off + 7]
        nw_frag = 0
        if frag_word & 0x3FFF:
            nw_frag = NW_FRAG_ANY | (NW_FRAG_LATER if frag_word & 0x1FFF else 0)
    elif dl_type == ETH_TYPE_IPV6:
        plen = _ipv6_payload_len(frame, off, n)
        if plen < 0:
            return _new_offsets(HeaderOffsets, (vlan, off, dl_type, False, -1, -1, 0, False, 0))
        end = off + 40 + plen
        walked = _ipv6_ext(frame, off + 40, end, frame[off + 6])
        if walked is None:
            return _new_offsets(HeaderOffsets, (vlan, off, dl_type, True, -1, -1, 0, False, 0))
        l4, proto, nw_frag = walked
    else:
        l3_ok = ((dl_type == ETH_TYPE_ARP or dl_type == ETH_TYPE_RARP)
                 and n - off >= 28 and frame[off:off + 6] == _ARP_ETH_IP4)
        return _new_offsets(HeaderOffsets, (vlan, off, dl_type, l3_ok, -1, -1, 0, False, 0))

    size = end - l4
    l4_ok = not nw_frag & NW_FRAG_LATER and size >= L4_MIN_LEN.get(proto, 0x10000)
    if l4_ok and proto == IPPROTO_TCP:
        l4_ok = 20 <= frame[l4 + 12] >> 2 & 0x3C <= size
    return _new_offsets(HeaderOffsets, (vlan, off, dl_type, True, l4, end, proto, l4_ok, nw_frag))


# Building the tuple directly skips NamedTuple's keyword-handling __new__.
_new_offsets = tuple.__new__
_NO_HEADERS = HeaderOffsets(-1, -1, 0, False, -1, -1, 0, False, 0)
