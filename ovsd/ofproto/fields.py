"""Match and set fields: OVS's field names mapped onto the flow key.

Each :class:`MField` describes one field the way ``ovs-ofctl`` knows it
(canonical name, aliases, NXM/OXM names, how its value is written and read
back) and where its bits live in the one-int flow key of
:mod:`ovsd.packet.key`.  Values are always handled in the field's own units
(``ip_dscp=46``, ``vlan_vid=0x1005``, ``icmp_type=8``) and converted to key
bits with :meth:`MField.to_key` / :meth:`MField.from_key`.

Several OVS fields are views of one key field:

* ``vlan_tci`` (16 bits, the 0x1000 bit means "tagged"), ``dl_vlan`` (VID
  only), ``vlan_vid`` (VID plus the present bit, OXM style), ``dl_vlan_pcp``
  and ``vlan_pcp`` (the top 3 bits);
* ``nw_tos`` (the DSCP bits of the TOS byte, ECN forced to 0), ``ip_dscp``
  (the same bits shifted right by 2) and ``nw_ecn``;
* ``arp_op`` lives in ``nw_proto``, ``arp_spa``/``arp_tpa`` in
  ``nw_src``/``nw_dst``, ``nd_sll``/``nd_tll`` in ``arp_sha``/``arp_tha``,
  ICMP type/code in ``tp_src``/``tp_dst``.

:class:`SubField` is the ``NXM_NX_REG0[8..15]`` syntax of ``load``,
``move`` and ``output``.  The value syntaxes themselves live in
:mod:`ovsd.ofproto.values`; OpenFlow port numbers and the usable flow
format bits (``P_*``) are re-exported here for convenience.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field as dc_field
from typing import TYPE_CHECKING

from ovsd.ofproto.protocols import (P_ANY, P_NXM, P_NXM_OF11_UP, P_NXM_OXM, P_OF10,
                                    P_OF10_ANY, P_OF11, P_OF11_UP, P_OF12, P_OF12_UP,
                                    P_OF13, P_OF13_UP, P_OF14, P_OF15, P_OXM)
from ovsd.ofproto.values import (OFPP_ALL, OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT,
                                 OFPP_LOCAL, OFPP_MAX, OFPP_NONE, OFPP_NORMAL, OFPP_TABLE,
                                 OFPP_UNSET, FlowSyntaxError, PortNamer, PortResolver,
                                 format_frag, format_ipv4_masked, format_ipv6_masked,
                                 format_mac, format_port, format_tcp_flags, hex_bytes,
                                 parse_int_string, parse_ipv4_masked, parse_ipv6_masked,
                                 parse_mac, parse_port, parse_tcp_flags, port_from_ofp11,
                                 port_to_ofp11, FRAG_TYPES)
from ovsd.packet import key as K

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ovsd.ofproto.match import Match


class FieldError(FlowSyntaxError):
    """An unknown field name or a value the field cannot hold."""


__all__ = [
    "MField", "SubField", "FieldError", "FlowSyntaxError", "FIELDS", "lookup", "find",
    "parse_subfield", "parse_subfield_prefix", "format_subfield",
    # OpenFlow ports and flow formats, re-exported for callers of this module
    "OFPP_MAX", "OFPP_UNSET", "OFPP_IN_PORT", "OFPP_TABLE", "OFPP_NORMAL", "OFPP_FLOOD",
    "OFPP_ALL", "OFPP_CONTROLLER", "OFPP_LOCAL", "OFPP_NONE",
    "P_OF10", "P_NXM", "P_OF11", "P_OF12", "P_OF13", "P_OF14", "P_OF15", "P_OXM",
    "P_ANY", "P_NXM_OXM", "P_NXM_OF11_UP", "P_OF11_UP", "P_OF12_UP", "P_OF13_UP",
    "P_OF10_ANY", "PortResolver", "PortNamer",
]


# -- fields ----------------------------------------------------------------------

# Prerequisite kinds, as in OVS's mf_prereqs.
PRE_NONE, PRE_ARP, PRE_IPV4, PRE_IPV6, PRE_IP_ANY, PRE_VLAN = (
    "none", "arp", "ipv4", "ipv6", "ip_any", "vlan_vid")
PRE_TCP, PRE_UDP, PRE_SCTP, PRE_ICMPV4, PRE_ICMPV6 = "tcp", "udp", "sctp", "icmpv4", "icmpv6"
PRE_ND, PRE_ND_SOLICIT, PRE_ND_ADVERT = "nd", "nd_solicit", "nd_advert"

ETH_TYPE_IP, ETH_TYPE_ARP, ETH_TYPE_IPV6, ETH_TYPE_RARP = 0x0800, 0x0806, 0x86DD, 0x8035
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMPV6 = 1, 6, 17, 132, 58
ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 135, 136


def _prereq_alternatives(kind: str) -> tuple[tuple, tuple[str, ...]]:
    """(alternatives, each a tuple of (key field, value[, mask]), fields
    whose value must be 0)."""
    ip, ip6 = ("dl_type", ETH_TYPE_IP), ("dl_type", ETH_TYPE_IPV6)
    table = {
        PRE_NONE: ((), ()),
        PRE_ARP: (((("dl_type", ETH_TYPE_ARP),), (("dl_type", ETH_TYPE_RARP),)), ()),
        PRE_IPV4: (((ip,),), ()),
        PRE_IPV6: (((ip6,),), ()),
        PRE_IP_ANY: (((ip,), (ip6,)), ()),
        PRE_VLAN: (((("vlan_tci", K.VLAN_CFI, K.VLAN_CFI),),), ()),
        PRE_ICMPV4: (((ip, ("nw_proto", IPPROTO_ICMP)),), ()),
        PRE_ICMPV6: (((ip6, ("nw_proto", IPPROTO_ICMPV6)),), ()),
    }
    if kind in table:
        return table[kind]
    if kind in (PRE_TCP, PRE_UDP, PRE_SCTP):
        proto = {PRE_TCP: IPPROTO_TCP, PRE_UDP: IPPROTO_UDP, PRE_SCTP: IPPROTO_SCTP}[kind]
        return ((ip, ("nw_proto", proto)), (ip6, ("nw_proto", proto))), ("nw_frag_later",)
    icmp6 = (ip6, ("nw_proto", IPPROTO_ICMPV6))
    types = {PRE_ND: (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT),
             PRE_ND_SOLICIT: (ND_NEIGHBOR_SOLICIT,),
             PRE_ND_ADVERT: (ND_NEIGHBOR_ADVERT,)}[kind]
    return tuple(icmp6 + (("tp_src", t),) for t in types), ("tp_dst",)


@dataclass(frozen=True, eq=False)
class MField:
    """One OVS match/set field.

    ``shift``/``key_mask`` place the field inside ``key_field`` of the flow
    key; ``width`` is OVS's bit width of the field (what ``[]`` covers in
    subfield syntax) and ``n_bytes`` its wire size, which bounds the
    numbers its text syntax accepts."""

    name: str
    key_field: str
    shift: int
    width: int
    n_bytes: int
    kind: str  # decimal hex mac ipv4 ipv6 port port32 frag tcp_flags
    maskable: bool
    prereq_kind: str
    writable: bool
    usable_exact: int
    usable_cidr: int
    usable_bitwise: int
    aliases: tuple[str, ...] = ()
    nxm_names: tuple[str, ...] = ()
    key_bits: int = 0  # bits covered in the key field; 0 = width
    key_mask_override: int = 0
    _key_offset: int = dc_field(default=0, init=False, repr=False)
    key_mask: int = dc_field(default=0, init=False)

    def __post_init__(self) -> None:
        off = K.FIELDS[self.key_field].offset
        object.__setattr__(self, "_key_offset", off + self.shift)
        if self.key_mask_override:
            mask = self.key_mask_override << off
        else:
            mask = ((1 << (self.key_bits or self.width)) - 1) << (off + self.shift)
        object.__setattr__(self, "key_mask", mask)

    def __repr__(self) -> str:
        return f"MField({self.name})"

    def __reduce__(self):
        # Fields are singletons: pickling/deep-copying refers back to the table.
        return (lookup, (self.name,))

    @property
    def all_ones(self) -> int:
        """The exact-match mask in field units (all ``n_bytes``)."""
        return (1 << (8 * self.n_bytes)) - 1

    @property
    def nxm_name(self) -> str:
        """The name OVS prints in subfield syntax (NXM if there is one)."""
        return self.nxm_names[0] if self.nxm_names else self.name

    # -- key conversion -------------------------------------------------------
    def to_key(self, value: int) -> int:
        """Key bits for a field value (truncated to what the key holds)."""
        if self.kind == "port32":
            value = port_from_ofp11(value)
            if value is None:
                value = OFPP_NONE
        return (value << self._key_offset) & self.key_mask

    def from_key(self, key: int) -> int:
        value = (key & self.key_mask) >> self._key_offset
        if self.kind == "port32":
            return port_to_ofp11(value)
        return value

    def read(self, key: int) -> int:
        """This field's value in a flow key (field units)."""
        return self.from_key(key)

    def write(self, key: int, value: int, mask: int | None = None) -> int:
        """``key`` with this field set to ``value`` where ``mask`` (field
        units, default all ones) has 1-bits: what a set_field/load does.
        Bits the key does not hold (ECN for nw_tos, the high byte of
        arp_op) are left alone or dropped, as OVS's flow fields do."""
        if mask is None:
            mask = self.all_ones
        if self.kind == "port32":  # a port is all or nothing
            return ((key & ~self.key_mask) | self.to_key(value)) if mask else key
        key_bits = self.to_key(mask)
        return (key & ~key_bits) | (self.to_key(value & mask) & key_bits)

    # -- prerequisites -----------------------------------------------------------
    @functools.cached_property
    def prereq(self) -> tuple["Match", ...]:
        """Alternatives (any one must hold) that a flow must match for this
        field to be meaningful; ``()`` means no prerequisite.  See also
        :attr:`prereq_zero`."""
        from ovsd.ofproto.match import Match
        alts, _ = _prereq_alternatives(self.prereq_kind)
        out = []
        for alt in alts:
            value = mask = 0
            for fname, fvalue, *fmask in alt:
                f = K.FIELDS[fname]
                value |= fvalue << f.offset
                mask |= fmask[0] << f.offset if fmask else f.mask
            out.append(Match(value, mask))
        return tuple(out)

    @functools.cached_property
    def prereq_zero(self) -> int:
        """Key bits that must read 0 besides :attr:`prereq` (TCP/UDP/SCTP
        ports need "not a later fragment"; ND fields need ICMP code 0)."""
        _, zeros = _prereq_alternatives(self.prereq_kind)
        bits = 0
        for z in zeros:
            bits |= (K.NW_FRAG_LATER << K.FIELDS["nw_frag"].offset
                     if z == "nw_frag_later" else K.FIELDS[z].mask)
        return bits

    def prereqs_ok(self, value: int) -> bool:
        """Whether a flow key (or a match's value) meets the prerequisites."""
        if value & self.prereq_zero:
            return False
        alts = self.prereq
        return not alts or any(value & m.mask == m.value for m in alts)

    # -- text -------------------------------------------------------------------------
    def parse(self, text: str, port_resolver: PortResolver | None = None) -> tuple[int, int]:
        """``value[/mask]`` in this field's syntax -> (value, mask), field units.

        ``*`` is a wildcard (mask 0).  Errors (FieldError) quote the text
        like OVS."""
        try:
            return self._parse(text, port_resolver)
        except FieldError:
            raise
        except FlowSyntaxError as e:
            raise FieldError(str(e)) from None

    def _parse(self, text: str, port_resolver: PortResolver | None) -> tuple[int, int]:
        if text == "*":
            return 0, 0
        kind = self.kind
        if kind in ("decimal", "hex"):
            value, rest, problem = parse_int_string(text, self.n_bytes)
            if value is not None and rest[:1] not in ("", "/"):
                value, problem = None, "syntax"
            if value is None:
                raise self._syntax_error(text, "value", problem)
            mask = self.all_ones
            if rest.startswith("/"):
                mask, tail, problem = parse_int_string(rest[1:], self.n_bytes)
                if mask is not None and tail:
                    mask, problem = None, "syntax"
                if mask is None:
                    raise self._syntax_error(text, "mask", problem)
        elif kind == "mac":
            head, slash, tail = text.partition("/")
            value = parse_mac(head)
            mask = parse_mac(tail) if slash else 0xFFFFFFFFFFFF
            if value is None or mask is None:
                raise FieldError(f"{text}: invalid Ethernet address")
        elif kind == "ipv4":
            value, mask = parse_ipv4_masked(text)
        elif kind == "ipv6":
            value, mask = parse_ipv6_masked(text)
        elif kind == "port":
            port = parse_port(text, port_resolver)
            if port is None:
                raise FieldError(f"{text}: invalid or unknown port for {self.name}")
            value, mask = port, 0xFFFF
        elif kind == "port32":
            port = parse_port(text, port_resolver)
            if port is None:
                raise FieldError(f"{text}: port value out of range for {self.name}")
            value, mask = port_to_ofp11(port), 0xFFFFFFFF
        elif kind == "frag":
            for name, m, v in FRAG_TYPES:
                if text.lower() == name:
                    # OVS forces the unused high bits on so "no" counts as exact.
                    value, mask = v, m | 0xFC
                    break
            else:
                raise FieldError(f'{text}: unknown fragment type (valid types are "no", '
                                 '"yes", "first", "later", "not_later"')
        elif kind == "tcp_flags":
            value, mask = parse_tcp_flags(text)
        else:  # pragma: no cover - table invariant
            raise AssertionError(kind)
        if not self.maskable and mask not in (0, self.all_ones):
            raise FieldError(f"{text}: invalid mask for field {self.name}")
        return value, mask

    def _syntax_error(self, text: str, what: str, problem: str) -> FieldError:
        if problem == "range":
            return FieldError(f"{text}: {what} too large for {self.n_bytes}-byte field "
                              f"{self.name}")
        return FieldError(f"{text}: bad syntax for {self.name} {what}")

    def is_value_valid(self, value: int) -> bool:
        """OVS's mf_is_value_valid: values a set_field may write."""
        limits = {"ip_dscp": 0x3F, "nw_ecn": 0x3, "ip_frag": 0x3, "tcp_flags": 0xFFF,
                  "arp_op": 0xFF, "dl_vlan": 0xFFF, "vlan_vid": 0x1FFF,
                  "dl_vlan_pcp": 7, "vlan_pcp": 7, "ipv6_label": 0xFFFFF}
        if self.name == "nw_tos":
            return not value & 3
        if self.kind == "port32":
            return port_from_ofp11(value) is not None
        limit = limits.get(self.name)
        return limit is None or not value & ~limit

    def format(self, value: int, mask: int | None = None,
               port_namer: PortNamer | None = None) -> str:
        """A value (and optional mask) as OVS's mf_format prints it."""
        if mask is not None:
            if mask == 0:
                return "ANY"
            if mask == self.all_ones:
                mask = None
        kind = self.kind
        if kind == "port" and mask is None:
            return format_port(value, port_namer)
        if kind == "port32" and mask is None:
            port = port_from_ofp11(value)
            return format_port(OFPP_NONE if port is None else port, port_namer)
        if kind in ("decimal", "hex", "port", "port32"):
            text = hex_bytes(value, self.n_bytes) if kind == "hex" else str(value)
            return text if mask is None else f"{text}/{hex_bytes(mask, self.n_bytes)}"
        if kind == "mac":
            text = format_mac(value)
            return text if mask is None else f"{text}/{format_mac(mask)}"
        if kind == "ipv4":
            return format_ipv4_masked(value, 0xFFFFFFFF if mask is None else mask)
        if kind == "ipv6":
            return format_ipv6_masked(value, (1 << 128) - 1 if mask is None else mask)
        if kind == "frag":
            return format_frag(value, 0xFF if mask is None else mask)
        if kind == "tcp_flags":
            return format_tcp_flags(value, 0xFFFF if mask is None else mask)
        raise AssertionError(kind)  # pragma: no cover


# -- the field table -------------------------------------------------------------

def _f(name, key_field, width, n_bytes, kind, maskable, prereq, writable, usable,
       *, shift=0, aliases=(), nxm=(), key_bits=0, key_mask=0) -> MField:
    exact, cidr, bitwise = usable
    return MField(name=name, key_field=key_field, shift=shift, width=width,
                  n_bytes=n_bytes, kind=kind, maskable=maskable, prereq_kind=prereq,
                  writable=writable, usable_exact=exact, usable_cidr=cidr,
                  usable_bitwise=bitwise, aliases=tuple(aliases), nxm_names=tuple(nxm),
                  key_bits=key_bits, key_mask_override=key_mask)


# usable (exact, cidr, bitwise) for OVS's "OF1.0/OF1.1" support lines.
_U_ANY = (P_ANY, 0, 0)
_U_ANY_MASKED11 = (P_ANY, P_NXM_OF11_UP, P_NXM_OF11_UP)  # OF1.0 exact, OF1.1 bitwise
_U_ANY_CIDR = (P_ANY, P_ANY, P_NXM_OF11_UP)  # OF1.0 CIDR, OF1.1 bitwise
_U_ANY_EXACT_BOTH = (P_ANY, P_NXM_OXM, P_NXM_OXM)  # maskable, exact-only in OF1.0/1.1
_U_NXM_OXM = (P_NXM_OXM, P_NXM_OXM, P_NXM_OXM)
_U_OF11 = (P_NXM_OF11_UP, P_NXM_OF11_UP, P_NXM_OF11_UP)
_U_OF11_EXACT = (P_NXM_OF11_UP, P_NXM_OXM, P_NXM_OXM)


def _build() -> list[MField]:
    fs = [
        _f("metadata", "metadata", 64, 8, "hex", True, PRE_NONE, True, _U_OF11,
           nxm=("OXM_OF_METADATA",)),
        _f("in_port", "in_port", 16, 2, "port", False, PRE_NONE, True, _U_ANY,
           nxm=("NXM_OF_IN_PORT",)),
        _f("in_port_oxm", "in_port", 32, 4, "port32", False, PRE_NONE, True,
           (P_NXM_OF11_UP, 0, 0), nxm=("OXM_OF_IN_PORT",), key_bits=16),
    ]
    for i in range(K.N_REGS):
        fs.append(_f(f"reg{i}", f"reg{i}", 32, 4, "hex", True, PRE_NONE, True,
                     _U_NXM_OXM, nxm=(f"NXM_NX_REG{i}",)))
    for i in range(K.N_REGS // 2):
        fs.append(_f(f"xreg{i}", f"xreg{i}", 64, 8, "hex", True, PRE_NONE, True,
                     _U_NXM_OXM, nxm=(f"OXM_OF_PKT_REG{i}",)))
    for i in range(K.N_REGS // 4):
        fs.append(_f(f"xxreg{i}", f"xxreg{i}", 128, 16, "hex", True, PRE_NONE, True,
                     _U_NXM_OXM, nxm=(f"NXM_NX_XXREG{i}",)))
    fs += [
        _f("eth_src", "dl_src", 48, 6, "mac", True, PRE_NONE, True, _U_ANY_MASKED11,
           aliases=("dl_src",), nxm=("NXM_OF_ETH_SRC", "OXM_OF_ETH_SRC")),
        _f("eth_dst", "dl_dst", 48, 6, "mac", True, PRE_NONE, True, _U_ANY_MASKED11,
           aliases=("dl_dst",), nxm=("NXM_OF_ETH_DST", "OXM_OF_ETH_DST")),
        _f("eth_type", "dl_type", 16, 2, "hex", False, PRE_NONE, False, _U_ANY,
           aliases=("dl_type",), nxm=("NXM_OF_ETH_TYPE", "OXM_OF_ETH_TYPE")),
        _f("vlan_tci", "vlan_tci", 16, 2, "hex", True, PRE_NONE, True, _U_ANY_EXACT_BOTH,
           nxm=("NXM_OF_VLAN_TCI",)),
        _f("dl_vlan", "vlan_tci", 12, 2, "decimal", False, PRE_NONE, True, _U_ANY),
        _f("vlan_vid", "vlan_tci", 12, 2, "decimal", True, PRE_NONE, True,
           _U_ANY_EXACT_BOTH, nxm=("OXM_OF_VLAN_VID",), key_bits=13),
        _f("dl_vlan_pcp", "vlan_tci", 3, 1, "decimal", False, PRE_NONE, True, _U_ANY,
           shift=13),
        _f("vlan_pcp", "vlan_tci", 3, 1, "decimal", False, PRE_VLAN, True, _U_ANY,
           shift=13, nxm=("OXM_OF_VLAN_PCP",)),
        _f("ip_src", "nw_src", 32, 4, "ipv4", True, PRE_IPV4, True, _U_ANY_CIDR,
           aliases=("nw_src",), nxm=("NXM_OF_IP_SRC", "OXM_OF_IPV4_SRC")),
        _f("ip_dst", "nw_dst", 32, 4, "ipv4", True, PRE_IPV4, True, _U_ANY_CIDR,
           aliases=("nw_dst",), nxm=("NXM_OF_IP_DST", "OXM_OF_IPV4_DST")),
        _f("ipv6_src", "ipv6_src", 128, 16, "ipv6", True, PRE_IPV6, True, _U_NXM_OXM,
           nxm=("NXM_NX_IPV6_SRC", "OXM_OF_IPV6_SRC")),
        _f("ipv6_dst", "ipv6_dst", 128, 16, "ipv6", True, PRE_IPV6, True, _U_NXM_OXM,
           nxm=("NXM_NX_IPV6_DST", "OXM_OF_IPV6_DST")),
        _f("ipv6_label", "ipv6_label", 20, 4, "hex", True, PRE_IPV6, True, _U_NXM_OXM,
           nxm=("NXM_NX_IPV6_LABEL", "OXM_OF_IPV6_FLABEL")),
        _f("nw_proto", "nw_proto", 8, 1, "decimal", False, PRE_IP_ANY, False, _U_ANY,
           aliases=("ip_proto",), nxm=("NXM_OF_IP_PROTO", "OXM_OF_IP_PROTO")),
        _f("nw_tos", "nw_tos", 8, 1, "decimal", False, PRE_IP_ANY, True, _U_ANY,
           nxm=("NXM_OF_IP_TOS",), key_mask=0xFC),
        _f("ip_dscp", "nw_tos", 6, 1, "decimal", False, PRE_IP_ANY, True, _U_ANY,
           shift=2, nxm=("OXM_OF_IP_DSCP",)),
        _f("nw_ecn", "nw_tos", 2, 1, "decimal", False, PRE_IP_ANY, True,
           (P_NXM_OF11_UP, 0, 0), aliases=("ip_ecn",), nxm=("NXM_NX_IP_ECN", "OXM_OF_IP_ECN")),
        _f("nw_ttl", "nw_ttl", 8, 1, "decimal", False, PRE_IP_ANY, True,
           (P_NXM_OXM, 0, 0), nxm=("NXM_NX_IP_TTL",)),
        _f("ip_frag", "nw_frag", 2, 1, "frag", True, PRE_IP_ANY, False, _U_NXM_OXM,
           aliases=("nw_frag",), nxm=("NXM_NX_IP_FRAG",)),
        _f("arp_op", "nw_proto", 16, 2, "decimal", False, PRE_ARP, True, _U_ANY,
           nxm=("NXM_OF_ARP_OP", "OXM_OF_ARP_OP"), key_bits=8),
        _f("arp_spa", "nw_src", 32, 4, "ipv4", True, PRE_ARP, True, _U_ANY_CIDR,
           nxm=("NXM_OF_ARP_SPA", "OXM_OF_ARP_SPA")),
        _f("arp_tpa", "nw_dst", 32, 4, "ipv4", True, PRE_ARP, True, _U_ANY_CIDR,
           nxm=("NXM_OF_ARP_TPA", "OXM_OF_ARP_TPA")),
        _f("arp_sha", "arp_sha", 48, 6, "mac", True, PRE_ARP, True, _U_NXM_OXM,
           nxm=("NXM_NX_ARP_SHA", "OXM_OF_ARP_SHA")),
        _f("arp_tha", "arp_tha", 48, 6, "mac", True, PRE_ARP, True, _U_NXM_OXM,
           nxm=("NXM_NX_ARP_THA", "OXM_OF_ARP_THA")),
        _f("tcp_src", "tp_src", 16, 2, "decimal", True, PRE_TCP, True, _U_ANY_EXACT_BOTH,
           aliases=("tp_src",), nxm=("NXM_OF_TCP_SRC", "OXM_OF_TCP_SRC")),
        _f("tcp_dst", "tp_dst", 16, 2, "decimal", True, PRE_TCP, True, _U_ANY_EXACT_BOTH,
           aliases=("tp_dst",), nxm=("NXM_OF_TCP_DST", "OXM_OF_TCP_DST")),
        _f("tcp_flags", "tcp_flags", 12, 2, "tcp_flags", True, PRE_TCP, False, _U_NXM_OXM,
           nxm=("NXM_NX_TCP_FLAGS", "ONFOXM_ET_TCP_FLAGS", "OXM_OF_TCP_FLAGS")),
        _f("udp_src", "tp_src", 16, 2, "decimal", True, PRE_UDP, True, _U_ANY_EXACT_BOTH,
           nxm=("NXM_OF_UDP_SRC", "OXM_OF_UDP_SRC")),
        _f("udp_dst", "tp_dst", 16, 2, "decimal", True, PRE_UDP, True, _U_ANY_EXACT_BOTH,
           nxm=("NXM_OF_UDP_DST", "OXM_OF_UDP_DST")),
        _f("sctp_src", "tp_src", 16, 2, "decimal", True, PRE_SCTP, True, _U_OF11_EXACT,
           nxm=("OXM_OF_SCTP_SRC",)),
        _f("sctp_dst", "tp_dst", 16, 2, "decimal", True, PRE_SCTP, True, _U_OF11_EXACT,
           nxm=("OXM_OF_SCTP_DST",)),
        _f("icmp_type", "tp_src", 8, 1, "decimal", False, PRE_ICMPV4, True, _U_ANY,
           nxm=("NXM_OF_ICMP_TYPE", "OXM_OF_ICMPV4_TYPE"), key_bits=16),
        _f("icmp_code", "tp_dst", 8, 1, "decimal", False, PRE_ICMPV4, True, _U_ANY,
           nxm=("NXM_OF_ICMP_CODE", "OXM_OF_ICMPV4_CODE"), key_bits=16),
        _f("icmpv6_type", "tp_src", 8, 1, "decimal", False, PRE_ICMPV6, True,
           (P_NXM_OXM, 0, 0), nxm=("NXM_NX_ICMPV6_TYPE", "OXM_OF_ICMPV6_TYPE"), key_bits=16),
        _f("icmpv6_code", "tp_dst", 8, 1, "decimal", False, PRE_ICMPV6, True,
           (P_NXM_OXM, 0, 0), nxm=("NXM_NX_ICMPV6_CODE", "OXM_OF_ICMPV6_CODE"), key_bits=16),
        _f("nd_target", "nd_target", 128, 16, "ipv6", True, PRE_ND, True, _U_NXM_OXM,
           nxm=("NXM_NX_ND_TARGET", "OXM_OF_IPV6_ND_TARGET")),
        _f("nd_sll", "arp_sha", 48, 6, "mac", True, PRE_ND_SOLICIT, True, _U_NXM_OXM,
           nxm=("NXM_NX_ND_SLL", "OXM_OF_IPV6_ND_SLL")),
        _f("nd_tll", "arp_tha", 48, 6, "mac", True, PRE_ND_ADVERT, True, _U_NXM_OXM,
           nxm=("NXM_NX_ND_TLL", "OXM_OF_IPV6_ND_TLL")),
    ]
    return fs


FIELDS: tuple[MField, ...] = tuple(_build())
_BY_NAME: dict[str, MField] = {}
_BY_NXM: dict[str, MField] = {}
for _mf in FIELDS:
    for _n in (_mf.name, *_mf.aliases):
        _BY_NAME[_n] = _mf
    for _n in _mf.nxm_names:
        _BY_NXM[_n] = _mf
del _mf, _n


def lookup(name: str, *, allow_nxm: bool = True) -> MField:
    """The field called ``name``: an OVS name or alias (``dl_src``,
    ``tp_dst``) or, unless ``allow_nxm`` is false, an NXM/OXM name
    (``NXM_OF_ETH_SRC``, ``OXM_OF_METADATA``).  Raises FieldError."""
    mf = _BY_NAME.get(name)
    if mf is None and allow_nxm:
        mf = _BY_NXM.get(name)
    if mf is None:
        raise FieldError(f"unknown field `{name}' (expected an OVS field name such as "
                         "in_port, dl_src, nw_dst, tp_dst, reg0 or an NXM/OXM name "
                         "such as NXM_NX_REG0)")
    return mf


def find(name: str, *, allow_nxm: bool = False) -> MField | None:
    """Like :func:`lookup` but returns None for unknown names."""
    mf = _BY_NAME.get(name)
    if mf is None and allow_nxm:
        mf = _BY_NXM.get(name)
    return mf


# -- subfields ---------------------------------------------------------------------

@dataclass(frozen=True)
class SubField:
    """Bits ``start .. start+n_bits-1`` of a field (``NXM_NX_REG3[8..15]``)."""

    field: MField
    start: int
    n_bits: int

    @property
    def value_mask(self) -> int:
        """The subfield's bits in field units."""
        return ((1 << self.n_bits) - 1) << self.start

    @property
    def key_mask(self) -> int:
        """The subfield's bits in key space."""
        if self.field.kind == "port32":  # port numbers do not split into bits
            return self.field.key_mask
        return self.field.to_key(self.value_mask)

    def read(self, key: int) -> int:
        """The subfield's bits in a flow key, as an integer."""
        return (self.field.from_key(key) >> self.start) & ((1 << self.n_bits) - 1)

    def write(self, key: int, value: int) -> int:
        """``key`` with the subfield set to ``value`` (extra bits dropped)."""
        value &= (1 << self.n_bits) - 1
        return self.field.write(key, value << self.start, self.value_mask)

    def __str__(self) -> str:
        return format_subfield(self)


def parse_subfield_prefix(text: str) -> tuple[SubField, str]:
    """Parse ``NAME[...]`` at the start of ``text``; returns the rest.

    NAME may be an NXM/OXM name (optionally with OVS's ``_W`` suffix) or an
    OVS field name; the brackets hold nothing (whole field), one bit, or an
    inclusive ``start..end`` range; without brackets the whole field."""
    name_len = len(re.match(r"[^\[\-]*", text).group(0))
    name = text[:name_len]
    mf = _BY_NXM.get(name[:-2] if name.endswith("_W") and len(name) > 2 else name)
    if mf is None:
        mf = _BY_NAME.get(name)
    if mf is None:
        raise FieldError(f"{text}: unknown field `{name}'")
    rest = text[name_len:]
    start, end = 0, mf.width - 1
    if rest.startswith("["):
        m = (re.match(r"\[\]", rest) or re.match(r"\[([+-]?\d+)\.\.([+-]?\d+)\]", rest)
             or re.match(r"\[([+-]?\d+)\]", rest))
        if not m:
            raise FieldError(f"{text}: syntax error expecting [] or [<bit>] or "
                             "[<start>..<end>]")
        if m.groups():
            start = int(m.group(1))
            end = int(m.group(2)) if m.lastindex == 2 else start
        rest = rest[m.end():]
    if start > end:
        raise FieldError(f"{text}: starting bit {start} is after ending bit {end}")
    if start >= mf.width:
        raise FieldError(f"{text}: starting bit {start} is not valid because field is "
                         f"only {mf.width} bits wide")
    if end >= mf.width:
        raise FieldError(f"{text}: ending bit {end} is not valid because field is "
                         f"only {mf.width} bits wide")
    if start < 0:
        raise FieldError(f"{text}: starting bit {start} is not valid")
    return SubField(mf, start, end - start + 1), rest


def parse_subfield(text: str) -> SubField:
    """A whole string in subfield syntax (``reg0[0..7]``, ``NXM_OF_ETH_DST[]``)."""
    sf, rest = parse_subfield_prefix(text)
    if rest:
        raise FieldError(f"{text}: unexpected input following field syntax")
    return sf


def format_subfield(sf: SubField) -> str:
    """``NXM_NX_REG0[]``, ``NXM_NX_REG0[3]`` or ``NXM_NX_REG0[0..7]``."""
    name = sf.field.nxm_name
    if sf.start == 0 and sf.n_bits == sf.field.width:
        return f"{name}[]"
    if sf.n_bits == 1:
        return f"{name}[{sf.start}]"
    return f"{name}[{sf.start}..{sf.start + sf.n_bits - 1}]"
