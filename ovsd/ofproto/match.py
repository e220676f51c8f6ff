"""Flow matches in key space, parsed and printed like ovs-ofctl.

A :class:`Match` is a (value, mask) pair of flow-key ints
(:mod:`ovsd.packet.key`).  :class:`MatchBuilder` applies ``field=value``
settings with OVS's semantics (``dl_vlan=5`` also requires a tag,
``ip_dscp=46`` sets the DSCP bits of ``nw_tos``, ``*`` wildcards, a later
setting overrides an earlier one) and tracks which OpenFlow flow formats
can carry the result.  :func:`format_match` prints a match as
``ovs-ofctl dump-flows`` does (shorthands such as ``tcp`` replace
``dl_type``/``nw_proto``, CIDR prefixes, OVS's field order).

What the switch stores is not always what was typed: see
:mod:`ovsd.ofproto.match_wire` for the trip through OpenFlow encodings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ovsd.ofproto import fields as F
from ovsd.ofproto import values as V
from ovsd.ofproto.fields import FlowSyntaxError, PortNamer, PortResolver
from ovsd.ofproto.protocols import choose_protocol
from ovsd.ofproto.values import split_key_values
from ovsd.packet import key as K

__all__ = ["Match", "MatchBuilder", "parse_match", "format_match", "format_flow_key",
           "format_megaflow", "flow_key_match", "split_key_values", "PROTOCOLS",
           "FlowSyntaxError", "CATCHALL"]


@dataclass(frozen=True)
class Match:
    """A match in key space: ``key & mask == value`` (value is kept masked)."""

    value: int
    mask: int

    def __post_init__(self) -> None:
        if self.value & ~self.mask:
            object.__setattr__(self, "value", self.value & self.mask)

    def matches(self, key: int) -> bool:
        """Whether a flow key matches."""
        return key & self.mask == self.value

    def get(self, name: str) -> tuple[int, int]:
        """(value, mask) of a key.py field."""
        return K.get(self.value, name), K.get(self.mask, name)

    def __str__(self) -> str:
        return format_match(self)


CATCHALL = Match(0, 0)

# Shorthand keywords: name -> (dl_type, nw_proto or 0).
PROTOCOLS: dict[str, tuple[int, int]] = {
    "ip": (F.ETH_TYPE_IP, 0), "ipv4": (F.ETH_TYPE_IP, 0), "ip4": (F.ETH_TYPE_IP, 0),
    "arp": (F.ETH_TYPE_ARP, 0),
    "icmp": (F.ETH_TYPE_IP, F.IPPROTO_ICMP), "tcp": (F.ETH_TYPE_IP, F.IPPROTO_TCP),
    "udp": (F.ETH_TYPE_IP, F.IPPROTO_UDP), "sctp": (F.ETH_TYPE_IP, F.IPPROTO_SCTP),
    "ipv6": (F.ETH_TYPE_IPV6, 0), "ip6": (F.ETH_TYPE_IPV6, 0),
    "icmp6": (F.ETH_TYPE_IPV6, F.IPPROTO_ICMPV6), "tcp6": (F.ETH_TYPE_IPV6, F.IPPROTO_TCP),
    "udp6": (F.ETH_TYPE_IPV6, F.IPPROTO_UDP), "sctp6": (F.ETH_TYPE_IPV6, F.IPPROTO_SCTP),
    "rarp": (F.ETH_TYPE_RARP, 0), "mpls": (0x8847, 0), "mplsm": (0x8848, 0),
}

_KF = K.FIELDS
_IPPROTO_IGMP = 2
VLAN_VID_MASK, VLAN_CFI, VLAN_PCP_MASK = 0x0FFF, 0x1000, 0xE000
IP_DSCP_MASK, IP_ECN_MASK = 0xFC, 0x03


def _kbits(name: str, bits: int) -> int:
    return bits << _KF[name].offset


# -- setting fields (OVS's mf_set semantics) -------------------------------------

class MatchBuilder:
    """Accumulates ``field=value`` settings into a :class:`Match`.

    ``usable`` is the set of OpenFlow flow formats (``fields.P_*`` bits)
    that can still express what has been set."""

    def __init__(self, match: Match = CATCHALL) -> None:
        self.value = match.value
        self.mask = match.mask
        self.usable = F.P_ANY

    def match(self) -> Match:
        """What has been set so far."""
        return Match(self.value, self.mask)

    # low-level: key.py fields, no OVS semantics ---------------------------------
    def put_raw(self, name: str, value: int, mask: int, keep: int = 0) -> None:
        """Set key.py field ``name`` to value/mask, keeping its bits ``keep``."""
        kf = _KF[name]
        full = (1 << kf.width) - 1
        clear = (full & ~keep) << kf.offset
        self.value = (self.value & ~clear) | ((value & mask & full & ~keep) << kf.offset)
        self.mask = (self.mask & ~clear) | ((mask & full & ~keep) << kf.offset)

    def get_raw(self, name: str) -> tuple[int, int]:
        """(value, mask) of key.py field ``name``."""
        return K.get(self.value, name), K.get(self.mask, name)

    # mf_set ------------------------------------------------------------------
    def set(self, mf: F.MField, value: int, mask: int) -> int:
        """Apply ``mf=value/mask`` (field units); returns the usable formats
        for this setting (0 if no flow format can express it)."""
        if mask == mf.all_ones:
            self._set_exact(mf, value)
            return mf.usable_exact
        if mask == 0:
            self._set_wild(mf)
            return F.P_ANY
        if not mf.maskable:
            return 0
        self._set_masked(mf, value, mask)
        if mf.kind == "ipv4" and V.cidr_bits(mask, 32) is None:
            return mf.usable_bitwise
        return mf.usable_cidr

    def _set_exact(self, mf: F.MField, v: int) -> None:
        name = mf.name
        tci, tmask = self.get_raw("vlan_tci")
        if name == "vlan_tci":
            self.put_raw("vlan_tci", v, 0xFFFF)
        elif name == "dl_vlan":
            if v == 0xFFFF:
                self.put_raw("vlan_tci", 0, 0xFFFF)
            else:
                tci = (tci & ~VLAN_VID_MASK) | VLAN_CFI | (v & VLAN_VID_MASK)
                self.put_raw("vlan_tci", tci, tmask | VLAN_VID_MASK | VLAN_CFI)
        elif name == "vlan_vid":
            self._set_vid_masked(v, VLAN_VID_MASK | VLAN_CFI)
        elif name in ("dl_vlan_pcp", "vlan_pcp"):
            self._set_pcp(v)
        elif name in ("nw_tos", "ip_dscp"):
            tos = v if name == "nw_tos" else v << 2
            self.put_raw("nw_tos", tos, IP_DSCP_MASK, keep=IP_ECN_MASK)
        elif name == "nw_ecn":
            self.put_raw("nw_tos", v, IP_ECN_MASK, keep=IP_DSCP_MASK)
        elif name == "ip_frag":
            self.put_raw("nw_frag", v, 3)
        elif name == "ipv6_label":
            if v >> 20:
                raise FlowSyntaxError(
                    f"ipv6_label={v:#x}: the switch rejects it (OFPBMC_BAD_VALUE): "
                    "an IPv6 flow label has only 20 bits")
            self.put_raw("ipv6_label", v, 0xFFFFF)
        else:
            kf = _KF[mf.key_field]
            km = mf.key_mask >> kf.offset
            self.put_raw(mf.key_field, mf.to_key(v) >> kf.offset, km,
                         keep=((1 << kf.width) - 1) & ~km)

    def _set_vid_masked(self, v: int, m: int) -> None:
        tci, tmask = self.get_raw("vlan_tci")
        m &= VLAN_VID_MASK | VLAN_CFI
        tci = (tci & ~(VLAN_VID_MASK | VLAN_CFI)) | (v & m)
        self.put_raw("vlan_tci", tci, m | (tmask & VLAN_PCP_MASK))

    def _set_pcp(self, pcp: int) -> None:
        tci, tmask = self.get_raw("vlan_tci")
        tci = (tci & ~VLAN_PCP_MASK) | ((pcp & 7) << 13) | VLAN_CFI
        self.put_raw("vlan_tci", tci, tmask | VLAN_CFI | VLAN_PCP_MASK)

    def _set_wild(self, mf: F.MField) -> None:
        name = mf.name
        tci, tmask = self.get_raw("vlan_tci")
        if name in ("dl_vlan", "vlan_vid"):
            if tmask & VLAN_PCP_MASK:
                self.put_raw("vlan_tci", tci & ~VLAN_VID_MASK, tmask & ~VLAN_VID_MASK)
            else:
                self.put_raw("vlan_tci", 0, 0)
        elif name in ("dl_vlan_pcp", "vlan_pcp"):
            if tmask & VLAN_VID_MASK:
                self.put_raw("vlan_tci", tci & ~VLAN_PCP_MASK, tmask & ~VLAN_PCP_MASK)
            else:
                self.put_raw("vlan_tci", 0, 0)
        elif name in ("nw_tos", "ip_dscp"):
            self.put_raw("nw_tos", 0, 0, keep=IP_ECN_MASK)
        elif name == "nw_ecn":
            self.put_raw("nw_tos", 0, 0, keep=IP_DSCP_MASK)
        else:
            kf = _KF[mf.key_field]
            self.put_raw(mf.key_field, 0, 0,
                         keep=((1 << kf.width) - 1) & ~(mf.key_mask >> kf.offset))

    def _set_masked(self, mf: F.MField, v: int, m: int) -> None:
        name = mf.name
        if name == "vlan_tci":
            self.put_raw("vlan_tci", v, m)
        elif name == "vlan_vid":
            self._set_vid_masked(v, m)
        elif name == "ipv6_label" and m & 0xFFFFF == 0xFFFFF:
            self._set_exact(mf, v)
        else:
            off = _KF[mf.key_field].offset
            km = mf.key_mask >> off
            full = (1 << _KF[mf.key_field].width) - 1
            self.put_raw(mf.key_field, mf.to_key(v & m) >> off, mf.to_key(m) >> off,
                         keep=full & ~km)

    # text ------------------------------------------------------------------------
    def set_protocol(self, name: str) -> None:
        """A shorthand such as ``tcp``: dl_type and, for some, nw_proto."""
        dl_type, proto = PROTOCOLS[name]
        self.put_raw("dl_type", dl_type, 0xFFFF)
        if proto:
            self.put_raw("nw_proto", proto, 0xFF)

    def add(self, key: str, text: str, port_resolver: PortResolver | None = None) -> bool:
        """Apply one ``key=text`` pair if it is a match setting; returns
        False if ``key`` is not a match keyword (the caller decides)."""
        if key in PROTOCOLS:
            self.set_protocol(key)
            return True
        if key == "eth":  # packet_type=Ethernet: the only kind this switch has
            return True
        mf = F.find(key)
        if mf is not None:
            value, mask = mf.parse(text or "0/0", port_resolver)
            self.usable &= self.set(mf, value, mask)
            return True
        if "[" in key:
            self._add_subfield(key, text)
            return True
        return False

    def _add_subfield(self, key: str, text: str) -> None:
        sf = F.parse_subfield(key)
        mf = sf.field
        value, rest, _ = V.parse_int_string(text, mf.n_bytes)
        if value is None or rest or not text:
            raise FlowSyntaxError(f"{key}: cannot parse integer value: {text}")
        if value >> sf.n_bits:
            raise FlowSyntaxError(f"{key}: value {mf.format(value)} does not fit into "
                                  f"{sf.n_bits} bits")
        cur_v, cur_m = self._field_value(mf)
        bits = sf.value_mask
        new_v = (cur_v & ~bits) | (value << sf.start)
        self.usable &= self.set(mf, new_v, cur_m | bits)

    def _field_value(self, mf: F.MField) -> tuple[int, int]:
        """OVS's mf_get: the field's current value and mask, field units."""
        return mf.from_key(self.value), mf.from_key(self.mask)

    def finish(self) -> Match:
        """The match, after OVS's protocol interdependency checks."""
        if K.get(self.value, "dl_type") == F.ETH_TYPE_IPV6:
            # Only NXM and OXM can match L3/L4 fields inside IPv6.
            if self.mask & (_KF["nw_proto"].mask | _KF["nw_tos"].mask
                            | _KF["tp_src"].mask | _KF["tp_dst"].mask):
                self.usable &= F.P_NXM_OXM
        return self.match()


def parse_match(text: str | Iterable[tuple[str, str]],
                port_resolver: PortResolver | None = None,
                version: str | int | None = None) -> Match:
    """The match part of a flow (``tcp,in_port=1,tp_dst=80``).

    Accepts a string or already split (key, value) pairs.  Without
    ``version`` the result is what ovs-ofctl parsed; with a version
    ("OpenFlow13", ...) it is what a switch stores after the match went
    through that version's encoding (fields lacking prerequisites dropped,
    as OVS does silently)."""
    pairs = split_key_values(text) if isinstance(text, str) else text
    b = MatchBuilder()
    for key, value in pairs:
        if not b.add(key, value, port_resolver):
            raise FlowSyntaxError(f"unknown keyword {key} (expected a match field such as "
                                  "in_port, dl_src, nw_dst, tp_dst or a shorthand such "
                                  "as ip, tcp, arp)")
    match = b.finish()
    if version is None:
        return match
    # match_wire builds on this module, so it can only be imported here.
    from ovsd.ofproto.match_wire import wire_match
    if not b.usable:
        raise FlowSyntaxError("no OpenFlow flow format can express this match "
                              "(a partial mask on a field that cannot be masked)")
    return wire_match(match, choose_protocol(version, b.usable))


def dl_type_of(value: int) -> int:
    """The Ethernet type in a key or a match value."""
    return K.get(value, "dl_type")


def is_ip_any(value: int) -> bool:
    """IPv4 or IPv6 (OVS's is_ip_any)."""
    return dl_type_of(value) in (F.ETH_TYPE_IP, F.ETH_TYPE_IPV6)


def is_nd(value: int) -> bool:
    """An IPv6 neighbor solicitation or advertisement (OVS's is_nd)."""
    return (dl_type_of(value) == F.ETH_TYPE_IPV6
            and K.get(value, "nw_proto") == F.IPPROTO_ICMPV6
            and K.get(value, "tp_dst") == 0
            and K.get(value, "tp_src") in (F.ND_NEIGHBOR_SOLICIT, F.ND_NEIGHBOR_ADVERT))


# -- printing ------------------------------------------------------------------------

def _fmt_masked_int(name: str, value: int, mask: int, full: int) -> str:
    """OVS's format_be16_masked: decimal when exact, else hex value/mask."""
    if mask == full:
        return f"{name}={value}"
    return f"{name}={value:#x}/{mask:#x}"


def _fmt_hex_masked(name: str, value: int, mask: int, full: int) -> str:
    """OVS's format_uint32_masked / format_be64_masked (``%#x``)."""
    text = f"{name}={value:#x}" if value else f"{name}=0"
    if mask != full:
        text += f"/{mask:#x}"
    return text


def format_match(match: Match, port_namer: PortNamer | None = None,
                 priority: int | None = None) -> str:
    """The match as ``ovs-ofctl dump-flows`` prints it (``priority=N,`` first
    when ``priority`` is given and is not the default 32768)."""
    return ",".join(_match_items(match, port_namer, priority))


_SHORTHANDS = {
    F.ETH_TYPE_IP: ("ip", {F.IPPROTO_ICMP: "icmp", F.IPPROTO_TCP: "tcp",
                           F.IPPROTO_UDP: "udp", F.IPPROTO_SCTP: "sctp"}),
    F.ETH_TYPE_IPV6: ("ipv6", {F.IPPROTO_ICMPV6: "icmp6", F.IPPROTO_TCP: "tcp6",
                               F.IPPROTO_UDP: "udp6", F.IPPROTO_SCTP: "sctp6"}),
    F.ETH_TYPE_ARP: ("arp", {}), F.ETH_TYPE_RARP: ("rarp", {}),
    0x8847: ("mpls", {}), 0x8848: ("mplsm", {}),
}


class _Printer:
    """OVS's match_format over the fields of the flow key, in OVS's order."""

    def __init__(self, match: Match, port_namer: PortNamer | None) -> None:
        self.v, self.m = match.value, match.mask
        self.port_namer = port_namer
        self.out: list[str] = []
        self.dl_type, self.dl_mask = self.g("dl_type")
        self.proto, self.proto_mask = self.g("nw_proto")

    def g(self, name: str) -> tuple[int, int]:
        return K.get(self.v, name), K.get(self.m, name)

    def add(self, text: str) -> None:
        self.out.append(text)

    def shorthand(self) -> tuple[bool, bool]:
        """``tcp``, ``ipv6``, ``arp``...: returns (type shown, proto shown)."""
        if not self.dl_mask or self.dl_type not in _SHORTHANDS:
            return False, False
        name, by_proto = _SHORTHANDS[self.dl_type]
        if self.proto_mask and self.proto in by_proto:
            self.add(by_proto[self.proto])
            return True, True
        self.add(name)
        return True, False

    def metadata(self) -> None:
        for i in range(K.N_REGS):
            rv, rm = self.g(f"reg{i}")
            if rm:
                self.add(_fmt_hex_masked(f"reg{i}", rv, rm, 0xFFFFFFFF))
        mv, mm = self.g("metadata")
        if mm:
            self.add(_fmt_hex_masked("metadata", mv, mm, (1 << 64) - 1))
        pv, pm = self.g("in_port")
        if pm:
            self.add(f"in_port={V.format_port(pv, self.port_namer)}")

    def vlan(self, flow_key: bool) -> None:
        tci, tmask = self.g("vlan_tci")
        if not tmask:
            return
        vid_mask, pcp_mask = tmask & VLAN_VID_MASK, tmask & VLAN_PCP_MASK
        if (tmask & VLAN_CFI and tci & VLAN_CFI and vid_mask in (0, VLAN_VID_MASK)
                and pcp_mask in (0, VLAN_PCP_MASK) and (vid_mask or pcp_mask)):
            if vid_mask:
                self.add(f"dl_vlan={tci & VLAN_VID_MASK}")
            if pcp_mask:
                self.add(f"dl_vlan_pcp={tci >> 13}")
        elif tmask == 0xFFFF:
            self.add(f"vlan_tci=0x{tci:04x}")
        else:
            self.add(f"vlan_tci=0x{tci:04x}/0x{tmask:04x}")
        if flow_key and tci & VLAN_CFI:
            # OVS shows the (absent) second tag of a tagged packet.
            self.add("vlan_tci1=0x0000")

    def macs(self, pairs) -> None:
        for name, kname in pairs:
            ev, em = self.g(kname)
            if em:
                self.add(f"{name}={_mac_masked(ev, em)}")

    def l3(self, is_arp: bool) -> None:
        if self.dl_type == F.ETH_TYPE_IPV6:
            for name in ("ipv6_src", "ipv6_dst"):
                av, am = self.g(name)
                if am:
                    self.add(f"{name}={V.format_ipv6_masked(av, am)}")
            lv, lm = self.g("ipv6_label")
            if lm:
                self.add(f"ipv6_label=0x{lv:05x}" if lm == 0xFFFFF
                         else f"ipv6_label=0x{lv:05x}/0x{lm:05x}")
        else:
            names = ("arp_spa", "arp_tpa") if is_arp else ("nw_src", "nw_dst")
            for name, kname in zip(names, ("nw_src", "nw_dst")):
                av, am = self.g(kname)
                if am:
                    self.add(f"{name}={V.format_ipv4_masked(av, am)}")

    def ip(self) -> None:
        tos, tosmask = self.g("nw_tos")
        if tosmask & IP_DSCP_MASK:
            self.add(f"nw_tos={tos & IP_DSCP_MASK}")
        if tosmask & IP_ECN_MASK:
            self.add(f"nw_ecn={tos & IP_ECN_MASK}")
        ttl, ttlmask = self.g("nw_ttl")
        if ttlmask:
            self.add(f"nw_ttl={ttl}")
        frag, fmask = self.g("nw_frag")
        if fmask & 3:
            self.add(f"nw_frag={V.format_frag(frag, fmask)}")

    def l4(self) -> None:
        sv, sm = self.g("tp_src")
        dv, dm = self.g("tp_dst")
        icmp4 = self.dl_type == F.ETH_TYPE_IP and self.proto == F.IPPROTO_ICMP
        icmp6 = self.dl_type == F.ETH_TYPE_IPV6 and self.proto == F.IPPROTO_ICMPV6
        prefix = "icmp_" if icmp4 or icmp6 else "tp_"
        if sm:
            self.add(_fmt_masked_int(prefix + ("type" if prefix == "icmp_" else "src"),
                                     sv, sm, 0xFFFF))
        if dm:
            self.add(_fmt_masked_int(prefix + ("code" if prefix == "icmp_" else "dst"),
                                     dv, dm, 0xFFFF))
        if icmp6:
            nv, nm = self.g("nd_target")
            if nm:
                self.add(f"nd_target={V.format_ipv6_masked(nv, nm)}")
            self.macs((("nd_sll", "arp_sha"), ("nd_tll", "arp_tha")))
        fv, fm = self.g("tcp_flags")
        if is_ip_any(self.v) and self.proto == F.IPPROTO_TCP and fm:
            self.add("tcp_flags=" + V.format_tcp_flags(fv, fm))


def _match_items(match: Match, port_namer: PortNamer | None,
                 priority: int | None, megaflow: bool = False,
                 flow_key: bool = False) -> list[str]:
    p = _Printer(match, port_namer)
    if priority is not None and priority != 32768:
        p.add(f"priority={priority}")
    if megaflow:
        p.add("recirc_id=0")
        p.add("eth")
    type_shown, proto_shown = p.shorthand()
    p.metadata()
    p.vlan(flow_key)
    p.macs((("dl_src", "dl_src"), ("dl_dst", "dl_dst")))
    if p.dl_mask and not type_shown:
        p.add(f"dl_type=0x{p.dl_type:04x}")
    is_arp = p.dl_type in (F.ETH_TYPE_ARP, F.ETH_TYPE_RARP)
    p.l3(is_arp)
    if p.proto_mask and not proto_shown:
        p.add(f"{'arp_op' if is_arp else 'nw_proto'}={p.proto}")
    if is_arp:
        p.macs((("arp_sha", "arp_sha"), ("arp_tha", "arp_tha")))
    p.ip()
    p.l4()
    return p.out


def _mac_masked(value: int, mask: int) -> str:
    text = V.format_mac(value)
    return text if mask == 0xFFFFFFFFFFFF else f"{text}/{V.format_mac(mask)}"


def format_megaflow(match: Match, port_namer: PortNamer | None = None) -> str:
    """ofproto/trace's ``Megaflow:`` line (``recirc_id=0,eth,...``)."""
    return ",".join(_match_items(match, port_namer, None, megaflow=True))


def flow_key_match(key: int) -> Match:
    """The fields a packet with this key has, as OVS's
    flow_wildcards_init_for_packet selects them (zero in_port, registers and
    metadata are left out)."""
    mask = 0
    for name in ("dl_dst", "dl_src", "dl_type", "vlan_tci"):
        mask |= _KF[name].mask
    if K.get(key, "in_port"):
        mask |= _KF["in_port"].mask
    for i in range(K.N_REGS):
        if K.get(key, f"reg{i}"):
            mask |= _KF[f"reg{i}"].mask
    if K.get(key, "metadata"):
        mask |= _KF["metadata"].mask
    dl_type = K.get(key, "dl_type")
    if dl_type == F.ETH_TYPE_IP:
        mask |= _KF["nw_src"].mask | _KF["nw_dst"].mask
    elif dl_type == F.ETH_TYPE_IPV6:
        mask |= _KF["ipv6_src"].mask | _KF["ipv6_dst"].mask | _KF["ipv6_label"].mask
        if is_nd(key):
            mask |= _KF["arp_sha"].mask | _KF["arp_tha"].mask | _KF["nd_target"].mask
    elif dl_type in (F.ETH_TYPE_ARP, F.ETH_TYPE_RARP):
        for name in ("nw_src", "nw_dst", "nw_proto", "arp_sha", "arp_tha"):
            mask |= _KF[name].mask
        return Match(key & mask, mask)
    else:
        return Match(key & mask, mask)
    mask |= (_kbits("nw_frag", 3) | _KF["nw_tos"].mask | _KF["nw_ttl"].mask
             | _KF["nw_proto"].mask)
    proto = K.get(key, "nw_proto")
    if not K.get(key, "nw_frag") & K.NW_FRAG_LATER and proto in (
            F.IPPROTO_ICMP, F.IPPROTO_ICMPV6, F.IPPROTO_TCP, F.IPPROTO_UDP, F.IPPROTO_SCTP,
            _IPPROTO_IGMP):
        mask |= _KF["tp_src"].mask | _KF["tp_dst"].mask
        if proto == F.IPPROTO_TCP:
            mask |= _KF["tcp_flags"].mask
    return Match(key & mask, mask)


def format_flow_key(key: int, port_namer: PortNamer | None = None) -> str:
    """ofproto/trace's ``Flow:`` line for a flow key."""
    return ",".join(_match_items(flow_key_match(key), port_namer, None, flow_key=True))
