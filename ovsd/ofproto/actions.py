"""OpenFlow actions: the data model xlate executes, and how OVS prints it.

Each action is a frozen dataclass with its arguments resolved (ports as
ints, fields as :class:`~ovsd.ofproto.fields.MField`/``SubField``), in the
form an OVS switch stores after decoding a flow_mod (OVS's "ofpacts").  An
action list is a tuple; the empty tuple is ``drop``.

Semantics xlate needs to know:

* ``Output.port`` may be a reserved port (``fields.OFPP_IN_PORT``,
  ``OFPP_ALL``, ``OFPP_FLOOD``, ``OFPP_NORMAL``, ``OFPP_LOCAL``,
  ``OFPP_CONTROLLER``, ``OFPP_TABLE``).
* ``SetVlanVid``/``SetVlanPcp`` with ``push_vlan_if_needed`` (OpenFlow 1.0's
  mod_vlan_vid) push a tag (TPID 0x8100, TCI 0) on an untagged packet
  first; without it they only modify an existing tag.
* ``SetField`` writes ``value`` under ``mask`` (field units) into
  ``field`` (``field.write(key, value, mask)`` does it on a flow key);
  ``style`` only affects printing (``load:`` vs ``set_field:``).  Writing
  ``vlan_tci`` with the 0x1000 bit clear removes the tag.
* ``RegMove``/``OutputReg`` use :class:`~ovsd.ofproto.fields.SubField`
  (``read(key)``/``write(key, value)``).
* ``SetIPDscp.tos`` is the TOS byte value (``mod_nw_tos:184``), i.e. the
  DSCP shifted left by 2; the ECN bits are kept.
* ``DecTtl.controller_ids`` are the controllers told about TTL expiry.
* ``Resubmit.in_port`` is ``OFPP_IN_PORT`` for "keep the in_port";
  ``table`` 255 means "this table".
* ``WriteActions`` holds the action set to merge; ``ClearActions`` empties
  it; ``GotoTable`` continues in a later table.

:func:`format_actions` prints a list exactly as ``ovs-ofctl [-O V]
dump-flows`` would, which requires knowing how the actions are re-encoded in
that OpenFlow version (:func:`wire_actions`); :func:`format_action` prints
one stored action as ofproto/trace shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from ovsd.ofproto import fields as F
from ovsd.ofproto import values as V
from ovsd.ofproto.fields import FlowSyntaxError, MField, PortNamer, SubField
from ovsd.ofproto.protocols import version_number
from ovsd.packet import key as K


class Action:
    """Base class of all actions."""

    __slots__ = ()


@dataclass(frozen=True)
class Output(Action):
    port: int
    max_len: int = 0


@dataclass(frozen=True)
class OutputReg(Action):
    src: SubField
    max_len: int = 0xFFFF


@dataclass(frozen=True)
class Controller(Action):
    """``controller(...)`` with options; plain ``controller:N`` is an
    :class:`Output` to ``OFPP_CONTROLLER``."""

    max_len: int = 0xFFFF
    reason: str = "action"
    controller_id: int = 0
    userdata: bytes = b""
    pause: bool = False


@dataclass(frozen=True)
class Enqueue(Action):
    port: int
    queue: int


@dataclass(frozen=True)
class SetVlanVid(Action):
    vid: int
    push_vlan_if_needed: bool
    flow_has_vlan: bool = False


@dataclass(frozen=True)
class SetVlanPcp(Action):
    pcp: int
    push_vlan_if_needed: bool
    flow_has_vlan: bool = False


@dataclass(frozen=True)
class StripVlan(Action):
    """Remove the outer tag; ``pop`` only picks the spelling (pop_vlan)."""

    pop: bool = False


@dataclass(frozen=True)
class PushVlan(Action):
    ethertype: int = 0x8100


@dataclass(frozen=True)
class SetEthSrc(Action):
    mac: int


@dataclass(frozen=True)
class SetEthDst(Action):
    mac: int


@dataclass(frozen=True)
class SetIPv4Src(Action):
    addr: int


@dataclass(frozen=True)
class SetIPv4Dst(Action):
    addr: int


@dataclass(frozen=True)
class SetIPDscp(Action):
    tos: int


@dataclass(frozen=True)
class SetIPEcn(Action):
    ecn: int


@dataclass(frozen=True)
class SetIPTtl(Action):
    ttl: int


@dataclass(frozen=True)
class SetL4SrcPort(Action):
    port: int
    flow_ip_proto: int = 0


@dataclass(frozen=True)
class SetL4DstPort(Action):
    port: int
    flow_ip_proto: int = 0


@dataclass(frozen=True)
class RegMove(Action):
    src: SubField
    dst: SubField


@dataclass(frozen=True)
class SetField(Action):
    field: MField
    value: int
    mask: int
    style: str = "set_field"  # or "load" (NXAST_REG_LOAD) / "load2"
    flow_has_vlan: bool = False


@dataclass(frozen=True)
class DecTtl(Action):
    controller_ids: tuple[int, ...] = (0,)
    explicit_ids: bool = False


@dataclass(frozen=True)
class SetQueue(Action):
    queue_id: int


@dataclass(frozen=True)
class PopQueue(Action):
    pass


@dataclass(frozen=True)
class Resubmit(Action):
    in_port: int = V.OFPP_IN_PORT
    table: int = 255


@dataclass(frozen=True)
class Note(Action):
    data: bytes


@dataclass(frozen=True)
class Exit(Action):
    pass


@dataclass(frozen=True)
class ClearActions(Action):
    pass


@dataclass(frozen=True)
class WriteActions(Action):
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class WriteMetadata(Action):
    metadata: int
    mask: int = (1 << 64) - 1


@dataclass(frozen=True)
class GotoTable(Action):
    table: int


Actions = tuple[Action, ...]

# -- printing ----------------------------------------------------------------------



def _hexdump(data: bytes) -> str:
    return ".".join(f"{b:02x}" for b in data)


def load_segments(sf: SetField) -> list[tuple[SubField, int]]:
    """The NXAST_REG_LOAD pieces of a masked write: runs of contiguous mask
    bits, at most 64 bits each (OVS's next_load_segment)."""
    out = []
    n_bits = sf.field.width
    start = 0
    while start < n_bits:
        ofs = start
        while ofs < n_bits and not sf.mask >> ofs & 1:
            ofs += 1
        if ofs >= n_bits:
            break
        end = ofs + 1
        limit = min(ofs + 64, n_bits)
        while end < limit and sf.mask >> end & 1:
            end += 1
        n = end - ofs
        out.append((SubField(sf.field, ofs, n), (sf.value >> ofs) & ((1 << n) - 1)))
        start = end
    return out


def format_action(a: Action, port_namer: PortNamer | None = None) -> str:
    """One action as OVS prints it (``output:2``, ``set_field:..->ip_src``)."""
    port = lambda p: V.format_port(p, port_namer)  # noqa: E731
    if isinstance(a, Output):
        if a.port == V.OFPP_CONTROLLER:
            return f"CONTROLLER:{a.max_len}"
        return f"output:{port(a.port)}" if a.port < V.OFPP_MAX else port(a.port)
    if isinstance(a, OutputReg):
        return f"output:{F.format_subfield(a.src)}"
    if isinstance(a, Controller):
        if (a.reason == "action" and not a.controller_id and not a.userdata
                and not a.pause):
            return f"CONTROLLER:{a.max_len}"
        parts = []
        if a.reason != "action":
            parts.append(f"reason={a.reason}")
        if a.max_len != 0xFFFF:
            parts.append(f"max_len={a.max_len}")
        if a.controller_id:
            parts.append(f"id={a.controller_id}")
        if a.userdata:
            parts.append(f"userdata={_hexdump(a.userdata)}")
        if a.pause:
            parts.append("pause")
        return f"controller({','.join(parts)})"
    if isinstance(a, Enqueue):
        return f"enqueue:{port(a.port)}:{a.queue}"
    if isinstance(a, SetVlanVid):
        return f"{'mod' if a.push_vlan_if_needed else 'set'}_vlan_vid:{a.vid}"
    if isinstance(a, SetVlanPcp):
        return f"{'mod' if a.push_vlan_if_needed else 'set'}_vlan_pcp:{a.pcp}"
    if isinstance(a, StripVlan):
        return "pop_vlan" if a.pop else "strip_vlan"
    if isinstance(a, PushVlan):
        return f"push_vlan:{a.ethertype:#x}"
    if isinstance(a, SetEthSrc):
        return f"mod_dl_src:{V.format_mac(a.mac)}"
    if isinstance(a, SetEthDst):
        return f"mod_dl_dst:{V.format_mac(a.mac)}"
    if isinstance(a, SetIPv4Src):
        return f"mod_nw_src:{V.format_ipv4(a.addr)}"
    if isinstance(a, SetIPv4Dst):
        return f"mod_nw_dst:{V.format_ipv4(a.addr)}"
    if isinstance(a, SetIPDscp):
        return f"mod_nw_tos:{a.tos}"
    if isinstance(a, SetIPEcn):
        return f"mod_nw_ecn:{a.ecn}"
    if isinstance(a, SetIPTtl):
        return f"mod_nw_ttl:{a.ttl}"
    if isinstance(a, SetL4SrcPort):
        return f"mod_tp_src:{a.port}"
    if isinstance(a, SetL4DstPort):
        return f"mod_tp_dst:{a.port}"
    if isinstance(a, RegMove):
        return f"move:{F.format_subfield(a.src)}->{F.format_subfield(a.dst)}"
    if isinstance(a, SetField):
        if a.style == "load":
            return ",".join(f"load:{_c_hex(v)}->{F.format_subfield(sub)}"
                            for sub, v in load_segments(a))
        return f"set_field:{a.field.format(a.value, a.mask, port_namer)}->{a.field.name}"
    if isinstance(a, DecTtl):
        if a.explicit_ids:
            return f"dec_ttl({','.join(str(i) for i in a.controller_ids)})"
        return "dec_ttl"
    if isinstance(a, SetQueue):
        return f"set_queue:{a.queue_id}"
    if isinstance(a, PopQueue):
        return "pop_queue"
    if isinstance(a, Resubmit):
        if a.in_port != V.OFPP_IN_PORT and a.table == 255:
            return f"resubmit:{port(a.in_port)}"
        in_port = port(a.in_port) if a.in_port != V.OFPP_IN_PORT else ""
        table = str(a.table) if a.table != 255 else ""
        return f"resubmit({in_port},{table})"
    if isinstance(a, Note):
        return f"note:{_hexdump(a.data)}"
    if isinstance(a, Exit):
        return "exit"
    if isinstance(a, ClearActions):
        return "clear_actions"
    if isinstance(a, WriteActions):
        return f"write_actions({_format_list(a.actions, port_namer)})"
    if isinstance(a, WriteMetadata):
        text = f"write_metadata:{_c_hex(a.metadata)}"
        if a.mask != (1 << 64) - 1:
            text += f"/{_c_hex(a.mask)}"
        return text
    if isinstance(a, GotoTable):
        return f"goto_table:{a.table}"
    raise TypeError(f"not an action: {a!r}")


def _c_hex(value: int) -> str:
    """C's ``%#x``: 0 prints as "0"."""
    return f"{value:#x}" if value else "0"


def _format_list(actions: Iterable[Action], port_namer: PortNamer | None) -> str:
    text = ",".join(format_action(a, port_namer) for a in actions)
    return text or "drop"


def format_actions(actions: Iterable[Action], version: str | int | None = "OpenFlow10",
                   port_namer: PortNamer | None = None) -> str:
    """An action list as ``ovs-ofctl -O version dump-flows`` prints it
    (``drop`` when empty).  ``version=None`` prints the stored form."""
    actions = tuple(actions)
    if version is not None:
        actions = wire_actions(actions, version_number(version), strict=False)
    return _format_list(actions, port_namer)


# -- the OpenFlow wire: what each version can express ---------------------------------

_ETH_TYPE_VLAN = 0x8100


def _note_padded(data: bytes) -> bytes:
    """A note comes back with the zero padding its NXAST_NOTE needed."""
    total = 10 + len(data)
    padded = max(16, (total + 7) // 8 * 8)
    return data + bytes(padded - total)


def _nxast_load(sf: SetField) -> list[Action]:
    if sf.style == "load2" or not sf.field.nxm_names:
        return [replace(sf, style="load2", flow_has_vlan=False)]
    return [SetField(sf.field, v << sub.start, sub.value_mask, "load")
            for sub, v in load_segments(sf)]


def _check_decoded_set_field(mf: MField, value: int, mask: int) -> None:
    """What a switch verifies when it decodes an OpenFlow 1.2+ set_field."""
    if mf.name == "in_port_oxm" or not mf.writable:
        raise FlowSyntaxError(f"set_field:{value:#x}->{mf.name}: the switch rejects it "
                              f"(OFPBAC_BAD_SET_ARGUMENT): {mf.name} cannot be set")
    if not mf.is_value_valid(value) or (
            mf.name == "vlan_vid" and not value & mask & K.VLAN_CFI):
        raise FlowSyntaxError(
            f"set_field:{mf.format(value)}->{mf.name}: the switch rejects it "
            "(OFPBAC_BAD_SET_ARGUMENT): invalid value"
            + (" (a vlan_vid set_field needs the 0x1000 'present' bit)"
               if mf.name == "vlan_vid" else ""))


def _legacy_set_field(sf: SetField, v: int, strict: bool) -> list[Action]:
    """OpenFlow 1.0/1.1 have no set_field: OVS uses the old actions."""
    name, value = sf.field.name, sf.value
    if name == "vlan_tci":
        vid, pcp = value & 0xFFF, value >> 13 & 7
        if v == 1:
            if value & K.VLAN_CFI:
                return [SetVlanVid(vid, True), SetVlanPcp(pcp, True)]
            return [StripVlan(pop=False)]
        if value & K.VLAN_CFI:
            push = [] if sf.flow_has_vlan else [PushVlan(_ETH_TYPE_VLAN)]
            return push + [SetVlanVid(vid, False), SetVlanPcp(pcp, False)]
        return [StripVlan(pop=True)]
    if name == "vlan_vid":
        return [SetVlanVid(value & 0xFFF, v == 1)]
    if name == "vlan_pcp":
        return [SetVlanPcp(value & 7, v == 1)]
    simple = {"eth_src": SetEthSrc, "eth_dst": SetEthDst,
              "ip_src": SetIPv4Src, "ip_dst": SetIPv4Dst}
    if name in simple:
        return [simple[name](value)]
    if name == "nw_tos":
        return [SetIPDscp(value)]
    if name == "ip_dscp":
        return [SetIPDscp(value << 2 & 0xFF)]
    if name == "nw_ecn":
        return _wire_one(SetIPEcn(value), v, strict)
    if name in ("tcp_src", "udp_src"):
        return [SetL4SrcPort(value)]
    if name in ("tcp_dst", "udp_dst"):
        return [SetL4DstPort(value)]
    return _nxast_load(sf)


def _wire_set_field(sf: SetField, v: int, strict: bool) -> list[Action]:
    mf = sf.field
    if v >= 6:
        if strict:
            _check_decoded_set_field(mf, sf.value, sf.mask)
        return [SetField(mf, sf.value, sf.mask, "set_field")]
    if sf.style in ("load", "load2"):
        return _nxast_load(sf)
    if v < 3:
        return _legacy_set_field(sf, v, strict)
    if sf.mask == mf.all_ones:
        if strict:
            _check_decoded_set_field(mf, sf.value, sf.mask)
        return [SetField(mf, sf.value, sf.mask, "set_field")]
    return _nxast_load(sf)


def _wire_one(a: Action, v: int, strict: bool = True) -> list[Action]:
    if isinstance(a, Enqueue):
        if v == 1:
            return [a]
        return [SetQueue(a.queue), Output(a.port, 0xFFFF), PopQueue()]
    if isinstance(a, (SetVlanVid, SetVlanPcp)):
        push = ([PushVlan(_ETH_TYPE_VLAN)]
                if v > 1 and a.push_vlan_if_needed and not a.flow_has_vlan else [])
        is_vid = isinstance(a, SetVlanVid)
        arg = a.vid if is_vid else a.pcp
        if v == 1:
            return [type(a)(arg, True)]
        if v == 2:
            return push + [type(a)(arg, False)]
        if is_vid:
            return push + [SetField(F.lookup("vlan_vid"), arg | K.VLAN_CFI, 0xFFFF)]
        return push + [SetField(F.lookup("vlan_pcp"), arg, 0xFF)]
    if isinstance(a, StripVlan):
        return [StripVlan(pop=v > 1)]
    if isinstance(a, PushVlan):
        return [] if v == 1 else [a]
    if isinstance(a, (SetEthSrc, SetEthDst)):
        if v < 3:
            return [a]
        name = "eth_src" if isinstance(a, SetEthSrc) else "eth_dst"
        return [SetField(F.lookup(name), a.mac, 0xFFFFFFFFFFFF)]
    if isinstance(a, (SetIPv4Src, SetIPv4Dst)):
        if v < 3:
            return [a]
        name = "ip_src" if isinstance(a, SetIPv4Src) else "ip_dst"
        return [SetField(F.lookup(name), a.addr, 0xFFFFFFFF)]
    if isinstance(a, SetIPDscp):
        return [a] if v < 3 else [SetField(F.lookup("ip_dscp"), a.tos >> 2, 0xFF)]
    if isinstance(a, SetIPEcn):
        if v == 1:
            return [SetField(F.lookup("nw_ecn"), a.ecn, 0x3, "load")]
        return [a] if v == 2 else [SetField(F.lookup("nw_ecn"), a.ecn, 0xFF)]
    if isinstance(a, SetIPTtl):
        return [a] if v > 1 else [SetField(F.lookup("nw_ttl"), a.ttl, 0xFF, "load")]
    if isinstance(a, (SetL4SrcPort, SetL4DstPort)):
        protos = {F.IPPROTO_TCP: "tcp", F.IPPROTO_UDP: "udp", F.IPPROTO_SCTP: "sctp"}
        if v >= 3 and a.flow_ip_proto in protos:
            suffix = "src" if isinstance(a, SetL4SrcPort) else "dst"
            return [SetField(F.lookup(f"{protos[a.flow_ip_proto]}_{suffix}"), a.port, 0xFFFF)]
        return [type(a)(a.port)]
    if isinstance(a, SetField):
        return _wire_set_field(a, v, strict)
    if isinstance(a, DecTtl):
        if a.explicit_ids or a.controller_ids != (0,):
            return [DecTtl(a.controller_ids, True)]
        return [DecTtl()]
    if isinstance(a, Note):
        return [Note(_note_padded(a.data))]
    if isinstance(a, ClearActions):
        return [] if v == 1 else [a]
    if isinstance(a, WriteActions):
        if v == 1:
            return []
        inner = tuple(wire_actions(a.actions, v, strict=strict))
        for x in inner:
            if strict and not allowed_in_action_set(x):
                raise FlowSyntaxError(
                    f"write_actions({format_action(x)}): the switch rejects it "
                    "(OFPBAC_BAD_TYPE): that action cannot be in an action set")
        return [WriteActions(inner)] if inner else []
    if isinstance(a, GotoTable):
        return [Resubmit(V.OFPP_IN_PORT, a.table)] if v == 1 else [a]
    # Output, OutputReg, Controller, RegMove, SetQueue, PopQueue, Resubmit,
    # Exit and WriteMetadata look the same in every version.
    return [a]


def wire_actions(actions: Iterable[Action], version: int, *, strict: bool = True
                 ) -> tuple[Action, ...]:
    """The actions after encoding in OpenFlow ``version`` (1..6) and
    decoding again: what a switch stores for a flow_mod in that version, or
    what a dump in that version shows.  With ``strict``, raises
    FlowSyntaxError where a switch would refuse to decode the result."""
    out: list[Action] = []
    for a in actions:
        out.extend(_wire_one(a, version, strict))
    return tuple(out)


_SET_OR_MOVE = (SetField, RegMove, SetEthDst, SetEthSrc, SetIPDscp, SetIPEcn, SetIPTtl,
                SetIPv4Dst, SetIPv4Src, SetL4DstPort, SetL4SrcPort, SetQueue,
                SetVlanPcp, SetVlanVid)


def allowed_in_action_set(a: Action) -> bool:
    return isinstance(a, (StripVlan, PushVlan, DecTtl, Resubmit, Output) + _SET_OR_MOVE)


# -- instructions --------------------------------------------------------------------

INSTRUCTION_ORDER = ("meter", "apply_actions", "clear_actions", "write_actions",
                     "write_metadata", "goto_table")


def instruction_of(a: Action) -> str:
    if isinstance(a, ClearActions):
        return "clear_actions"
    if isinstance(a, WriteActions):
        return "write_actions"
    if isinstance(a, WriteMetadata):
        return "write_metadata"
    if isinstance(a, GotoTable):
        return "goto_table"
    return "apply_actions"


def verify_instructions(actions: Iterable[Action], allowed: Iterable[str] = INSTRUCTION_ORDER
                        ) -> None:
    """OVS's instruction ordering rules (apply, clear, write, metadata,
    goto; each at most once)."""
    allowed = set(allowed)
    inst = "meter"
    for i, a in enumerate(actions):
        nxt = instruction_of(a)
        if i:
            ni, ci = INSTRUCTION_ORDER.index(nxt), INSTRUCTION_ORDER.index(inst)
            if ni < ci if inst == "apply_actions" else ni <= ci:
                if nxt == inst:
                    raise FlowSyntaxError(f"duplicate {inst} instruction not allowed, for "
                                          "OpenFlow 1.1+ compatibility")
                raise FlowSyntaxError(f"invalid instruction ordering: {nxt} must appear "
                                      f"before {inst}, for OpenFlow 1.1+ compatibility")
        if nxt not in allowed:
            raise FlowSyntaxError(f"{nxt} instruction not allowed here")
        inst = nxt
