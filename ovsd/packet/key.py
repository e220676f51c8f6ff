"""The flow key: every header field the switch can match, packed into one int.

Why one int: masking is a single ``&``, hashing is the int's own hash, and a
dict keyed on ints is the fastest exact-match table CPython has.  The EMC, the
megaflow cache and the OpenFlow classifier all use this one representation.

Why this particular layout: the low 384 bits are laid out like the wire image
of the commonest frame, untagged Ethernet + IPv4 without options + the first
14 bytes of TCP/UDP.  For such a frame the key is
``int.from_bytes(frame[:48], 'big') & SHAPE_MASK | in_port_bits``: one
conversion and two int operations, no per-field work.  Bytes of that image
that are not match fields (IP version/IHL, total length, id, fragment word,
checksums, TCP sequence numbers) are masked to zero; some of those holes
carry fields that are not at that position on the wire (in_port,
vlan_tci, nw_frag, ipv6_label), which the fast extractor ORs in.

Fields that only other frame shapes have (ARP hardware addresses, IPv6
addresses, ND target) sit above bit 384, so IPv4 keys stay small.  Pipeline
registers (metadata, reg0-reg15) sit above every packet field: they are always
zero when a packet enters the datapath and never part of a megaflow
(``PACKET_MASK`` keeps only packet bits).

Semantics follow OVS's ``struct flow``:
- ``vlan_tci`` has the CFI bit (0x1000) set when a tag is present;
  ``vlan_tpid`` is that tag's TPID (0x8100 or 0x88a8), 0 when untagged.  It is
  not a match field: xlate needs it to re-create a tag it pops and pushes.
- ARP: ``arp_op`` lives in ``nw_proto`` (when the opcode fits a byte),
  ``arp_spa``/``arp_tpa`` in ``nw_src``/``nw_dst``.
- IPv6: ``nw_tos`` is the traffic class, ``nw_ttl`` the hop limit,
  ``nw_proto`` the last next-header.
- ICMP/ICMPv6: the type is in ``tp_src`` and the code in ``tp_dst``.
- ND: ``arp_sha``/``arp_tha`` hold the source/target link-layer options.
- ``nw_frag``: bit 0 = any fragment, bit 1 = a later (non-first) fragment.
"""

from __future__ import annotations

from typing import NamedTuple


class Field(NamedTuple):
    name: str
    offset: int  # bit position of the field's least significant bit
    width: int  # bits

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.offset


# Offset of a field that sits at wire byte ``byte`` of the 48-byte image.
def _wire(byte: int, nbytes: int) -> int:
    return (IMAGE_BYTES - byte - nbytes) * 8


IMAGE_BYTES = 48
IMAGE_BITS = IMAGE_BYTES * 8

NW_FRAG_ANY = 1
NW_FRAG_LATER = 2

_FIELDS = [
    # -- the wire image (low 384 bits) --------------------------------------
    Field("dl_dst", _wire(0, 6), 48),
    Field("dl_src", _wire(6, 6), 48),
    Field("dl_type", _wire(12, 2), 16),
    Field("nw_frag", _wire(14, 1), 8),  # wire: IP version/IHL
    Field("nw_tos", _wire(15, 1), 8),
    Field("ipv6_label", _wire(17, 3), 20),  # wire: IPv4 total length + id
    Field("nw_ttl", _wire(22, 1), 8),
    Field("nw_proto", _wire(23, 1), 8),
    Field("nw_src", _wire(26, 4), 32),
    Field("nw_dst", _wire(30, 4), 32),
    Field("tp_src", _wire(34, 2), 16),
    Field("tp_dst", _wire(36, 2), 16),
    Field("in_port", _wire(38, 2), 16),  # wire: TCP sequence number
    Field("vlan_tci", _wire(40, 2), 16),  # wire: TCP acknowledgement
    Field("vlan_tpid", _wire(42, 2), 16),  # wire: TCP acknowledgement
    Field("tcp_flags", _wire(46, 2), 12),  # wire: TCP data offset + flags
    # -- other frame shapes -------------------------------------------------
    Field("arp_sha", IMAGE_BITS, 48),
    Field("arp_tha", IMAGE_BITS + 48, 48),
    Field("ipv6_src", IMAGE_BITS + 96, 128),
    Field("ipv6_dst", IMAGE_BITS + 224, 128),
    Field("nd_target", IMAGE_BITS + 352, 128),
]

PACKET_BITS = IMAGE_BITS + 480

# -- pipeline-only fields (never set by a packet, never in a megaflow) ------
_FIELDS.append(Field("metadata", PACKET_BITS, 64))
REGS_OFFSET = PACKET_BITS + 64
N_REGS = 16
# reg0 is the most significant so that xreg0 = reg0:reg1 and
# xxreg0 = reg0:reg1:reg2:reg3 are contiguous, as in OVS.
for _i in range(N_REGS):
    _FIELDS.append(Field(f"reg{_i}", REGS_OFFSET + 32 * (N_REGS - 1 - _i), 32))
for _i in range(N_REGS // 2):
    _FIELDS.append(Field(f"xreg{_i}", REGS_OFFSET + 32 * (N_REGS - 2 - 2 * _i), 64))
for _i in range(N_REGS // 4):
    _FIELDS.append(Field(f"xxreg{_i}", REGS_OFFSET + 32 * (N_REGS - 4 - 4 * _i), 128))

KEY_BITS = REGS_OFFSET + 32 * N_REGS

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}

PACKET_MASK = (1 << PACKET_BITS) - 1
ALL_MASK = (1 << KEY_BITS) - 1

IN_PORT_SHIFT = FIELDS["in_port"].offset
VLAN_TCI_SHIFT = FIELDS["vlan_tci"].offset
VLAN_CFI = 0x1000


def field_mask(name: str) -> int:
    return FIELDS[name].mask


def get(key: int, name: str) -> int:
    f = FIELDS[name]
    return (key >> f.offset) & ((1 << f.width) - 1)


def put(key: int, name: str, value: int) -> int:
    """Return ``key`` with field ``name`` replaced by ``value``."""
    f = FIELDS[name]
    m = f.mask
    return (key & ~m) | ((value << f.offset) & m)


def make(**fields: int) -> int:
    """Build a key from field values (tests and the slow path; never per packet)."""
    key = 0
    for name, value in fields.items():
        key = put(key, name, value)
    return key


def unpack(key: int) -> dict[str, int]:
    """Every packet and pipeline field of ``key`` (for display and tests)."""
    return {name: get(key, name) for name in FIELDS
            if not name.startswith(("xreg", "xxreg"))}


def _check_layout() -> None:
    # The packet fields must not overlap: a write to one would corrupt another.
    used = 0
    for f in _FIELDS:
        if f.name.startswith(("reg", "xreg", "xxreg")):
            continue
        assert not (used & f.mask), f"field {f.name} overlaps another"
        used |= f.mask


_check_layout()
