"""Parsing ovs-ofctl action text, and the checks OVS applies to actions.

:func:`parse_actions` turns ``actions=`` text into the stored action tuple
of :mod:`ovsd.ofproto.actions`, reproducing what happens between
``ovs-ofctl -O V add-flow`` and the switch:

1. ovs-ofctl parses the text (:func:`parse_ofctl_actions`) and checks it
   against the match (:func:`check_actions`): hard errors (a set_field
   whose prerequisites the match lacks, a bad output port) always refuse
   the flow; "inconsistent" actions (``strip_vlan`` without a VLAN match,
   ``mod_tp_dst`` without tcp/udp, ``dec_ttl`` without ip) are only
   accepted in OpenFlow 1.0.
2. The actions are encoded in the negotiated OpenFlow version and decoded
   by the switch (:func:`~ovsd.ofproto.actions.wire_actions`), which is
   where ``mod_vlan_vid`` becomes ``push_vlan`` + ``set_field`` in
   OpenFlow 1.3, and the switch checks them again (:func:`store_actions`).
"""

from __future__ import annotations

import re
from dataclasses import replace

from ovsd.ofproto import actions as A
from ovsd.ofproto import fields as F
from ovsd.ofproto import values as V
from ovsd.ofproto.fields import FlowSyntaxError, PortResolver
from ovsd.ofproto.match import CATCHALL, Match, split_key_values
from ovsd.ofproto.protocols import choose_protocol, protocol_version, version_number
from ovsd.packet import key as K

__all__ = ["parse_actions", "parse_ofctl_actions", "check_actions", "store_actions",
           "FlowSyntaxError"]

# OVS actions this switch does not implement: refused with a clear message
# rather than "unknown action".
UNSUPPORTED = {
    "group", "bundle", "bundle_load", "push", "pop", "set_mpls_label", "set_mpls_tc",
    "set_mpls_ttl", "dec_mpls_ttl", "push_mpls", "pop_mpls", "dec_nsh_ttl",
    "delete_field", "encap", "decap", "set_tunnel", "set_tunnel64", "fin_timeout",
    "learn", "conjunction", "multipath", "sample", "unroll_xlate", "ct", "ct_clear",
    "nat", "output_trunc", "clone", "check_pkt_larger", "debug_recirc", "debug_slow",
    "meter",
}
_REASONS = ("no_match", "action", "invalid_ttl", "action_set", "group", "packet_out")
_MAX_PORTS = V.OFPP_MAX


def _str_to_int(text: str, name: str, bits: int) -> int:
    """OVS's str_to_u8/str_to_u16 (decimal, 0x hex, 0 octal)."""
    return V.parse_small_int(text, name, bits)


def _str_to_u32(text: str, bits: int = 32) -> int:
    """OVS's str_to_u32/str_to_u64 (strtoul: the whole string)."""
    if not text:
        raise FlowSyntaxError("missing required numeric argument")
    value = V.parse_uint(text, bits)
    if value is None:
        raise FlowSyntaxError(f"invalid numeric format {text}")
    return value


def _parse_hex_bytes(text: str) -> bytes | None:
    """ofpbuf_put_hex: pairs of hex digits, '.' and blanks between them."""
    out = bytearray()
    i = 0
    while True:
        while i < len(text) and text[i] in " .\t\r\n":
            i += 1
        pair = text[i:i + 2]
        if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            return bytes(out) if i >= len(text) else None
        out.append(int(pair, 16))
        i += 2


def _split_arrow(arg: str) -> tuple[str, str]:
    value, arrow, key = arg.partition("->")
    if not arrow:
        raise FlowSyntaxError(f"{arg}: missing `->'")
    if not key:
        raise FlowSyntaxError(f"{arg}: missing field name following `->'")
    return value, key


class _Parser:
    """ovs-ofctl's action parser; ``usable`` collects the flow formats the
    parsed actions allow (push_vlan needs OpenFlow 1.1+, and so on)."""

    def __init__(self, port_resolver: PortResolver | None) -> None:
        self.port_resolver = port_resolver
        self.usable = F.P_ANY

    def port(self, text: str) -> int | None:
        return V.parse_port(text, self.port_resolver)

    # -- individual actions ------------------------------------------------------
    def output(self, arg: str) -> A.Action:
        if "port" in arg and "max_len" in arg:
            raise FlowSyntaxError(f"output({arg}): truncating output is not supported "
                                  "by ovsd")
        port = self.port(arg)
        if port is not None:
            return A.Output(port, 0xFFFF if port == V.OFPP_CONTROLLER else 0)
        try:
            return A.OutputReg(F.parse_subfield(arg))
        except FlowSyntaxError:
            raise FlowSyntaxError(f"{arg}: output to unknown port (expected a port "
                                  "number, a port name, a reserved port such as "
                                  "LOCAL, or a register field such as "
                                  "NXM_NX_REG0[0..15])") from None

    def controller(self, arg: str) -> A.Action:
        reason, cid, max_len, userdata, pause = "action", 0, 0xFFFF, b"", False
        if not arg:
            pass
        elif re.fullmatch(r"[0-9]+", arg):
            max_len = _str_to_int(arg, "max_len", 16)
        else:
            for key, value in split_key_values(arg):
                if key == "reason":
                    if value not in _REASONS:
                        raise FlowSyntaxError(f'unknown reason "{value}"')
                    reason = value
                elif key == "max_len":
                    max_len = _str_to_int(value, "max_len", 16)
                elif key == "id":
                    cid = _str_to_int(value, "id", 16)
                elif key == "userdata":
                    data = _parse_hex_bytes(value)
                    if data is None:
                        raise FlowSyntaxError("bad hex digit in `controller' action "
                                              "`userdata'")
                    userdata = data
                elif key == "pause":
                    pause = True
                elif key == "meter_id":
                    raise FlowSyntaxError("controller(meter_id=...): meters are not "
                                          "supported by ovsd")
                else:
                    raise FlowSyntaxError(f'unknown key "{key}" parsing controller action')
        if reason == "action" and not cid and not userdata and not pause:
            return A.Output(V.OFPP_CONTROLLER, max_len)
        return A.Controller(max_len, reason, cid, userdata, pause)

    def enqueue(self, arg: str) -> A.Action:
        # strtok(arg, ":q,") for the port, then everything after its delimiter.
        text = arg.lstrip(":q,")
        port_s = re.match(r"[^:q,]*", text).group(0)
        queue_s = text[len(port_s) + 1:]
        if not port_s or not queue_s:
            raise FlowSyntaxError('"enqueue" syntax is "enqueue:PORT:QUEUE" or '
                                  '"enqueue(PORT,QUEUE)"')
        port = self.port(port_s)
        if port is None:
            raise FlowSyntaxError(f"{port_s}: enqueue to unknown port")
        return A.Enqueue(port, _str_to_u32(queue_s))

    def set_field(self, arg: str) -> A.Action:
        value_text, name = _split_arrow(arg)
        mf = F.find(name)
        if mf is None:
            raise FlowSyntaxError(f"{name} is not a valid OXM field name (expected an "
                                  "OVS field name such as ip_src or reg0)")
        if not mf.writable:
            raise FlowSyntaxError(f"{name} is read-only")
        if mf.name in ("dl_vlan", "dl_vlan_pcp"):
            # OVS has no wire encoding for these (its set_field silently turns
            # into something else); point at the fields that work.
            raise FlowSyntaxError(f"set_field:{arg}: {name} cannot be a set_field "
                                  "target; use mod_vlan_vid/mod_vlan_pcp or "
                                  "vlan_vid/vlan_pcp")
        value, mask = mf.parse(value_text, self.port_resolver)
        if not mf.is_value_valid(value):
            raise FlowSyntaxError(f"{value_text} is not a valid value for field {name}")
        self.usable &= mf.usable_exact
        return A.SetField(mf, value, mask, "set_field")

    def load(self, arg: str) -> A.Action:
        value_text, dst_text = _split_arrow(arg)
        dst = F.parse_subfield(dst_text)
        mf = dst.field
        if mf.name in ("dl_vlan", "dl_vlan_pcp"):
            # Stored as a set_field, which these fields cannot be (see set_field).
            raise FlowSyntaxError(f"load:{arg}: {mf.name} cannot be a load target; use "
                                  "mod_vlan_vid/mod_vlan_pcp or vlan_vid/vlan_pcp")
        value, _rest, _ = V.parse_int_string(value_text, mf.n_bytes)
        if value is None:
            raise FlowSyntaxError(f"{arg}: cannot parse integer value")
        if value >> dst.n_bits:
            raise FlowSyntaxError(f"{arg}: value {mf.format(value)} does not fit into "
                                  f"{dst.n_bits} bits")
        return A.SetField(mf, value << dst.start, dst.value_mask, "load")

    def move(self, arg: str) -> A.Action:
        src, rest = F.parse_subfield_prefix(arg)
        if not rest.startswith("->"):
            raise FlowSyntaxError(f"{arg}: missing `->' following source")
        dst = F.parse_subfield(rest[2:])
        if src.n_bits != dst.n_bits:
            raise FlowSyntaxError(f"{arg}: source field is {src.n_bits} bits wide but "
                                  f"destination is {dst.n_bits} bits wide")
        return A.RegMove(src, dst)

    def vlan_vid(self, arg: str, push: bool) -> A.Action:
        vid = _str_to_int(arg, "VLAN VID", 16)
        if vid & ~0xFFF:
            raise FlowSyntaxError(f"{arg}: not a valid VLAN VID")
        return A.SetVlanVid(vid, push)

    def vlan_pcp(self, arg: str, push: bool) -> A.Action:
        pcp = _str_to_int(arg, "VLAN PCP", 8)
        if pcp & ~7:
            raise FlowSyntaxError(f"{arg}: not a valid VLAN PCP")
        return A.SetVlanPcp(pcp, push)

    def push_vlan(self, arg: str) -> A.Action:
        self.usable &= F.P_OF11_UP
        tpid = _str_to_int(arg, "ethertype", 16)
        if tpid not in (0x8100, 0x88A8):
            raise FlowSyntaxError(f"{arg}: not a valid VLAN ethertype (expected 0x8100 "
                                  "or 0x88a8)")
        return A.PushVlan(tpid)

    def mac(self, arg: str, cls: type[A.SetEthSrc] | type[A.SetEthDst]) -> A.Action:
        value = V.parse_mac(arg)
        if value is None:
            raise FlowSyntaxError(f"invalid mac address {arg}")
        return cls(value)

    def ip(self, arg: str, cls: type[A.SetIPv4Src] | type[A.SetIPv4Dst]) -> A.Action:
        value = V.parse_ipv4_strict(arg)
        if value is None:
            raise FlowSyntaxError(f"{arg}: could not convert to IP address")
        return cls(value)

    def nw_tos(self, arg: str) -> A.Action:
        tos = _str_to_int(arg, "TOS", 8)
        if tos & 3:
            raise FlowSyntaxError(f"{arg}: not a valid TOS")
        return A.SetIPDscp(tos)

    def nw_ecn(self, arg: str) -> A.Action:
        ecn = _str_to_int(arg, "ECN", 8)
        if ecn & ~3:
            raise FlowSyntaxError(f"{arg}: not a valid ECN")
        return A.SetIPEcn(ecn)

    def dec_ttl(self, arg: str) -> A.Action:
        if not arg:
            return A.DecTtl()
        # Controller ids are read with C's atoi: leading digits, else 0.
        ids = []
        for tok in re.split(r"[, ]+", arg):
            if tok:
                m = re.match(r"[+-]?[0-9]+", tok)
                ids.append(int(m.group(0)) & 0xFFFF if m else 0)
        if not ids:
            raise FlowSyntaxError("dec_ttl_cnt_ids: expected at least one controller id.")
        return A.DecTtl(tuple(ids), True)

    def resubmit(self, arg: str) -> A.Action:
        parts = arg.split(",")
        in_port_s = parts[0] if parts else ""
        table_s = parts[1] if len(parts) > 1 else ""
        ct_s = parts[2] if len(parts) > 2 else ""
        in_port = V.OFPP_IN_PORT
        if in_port_s:
            port = self.port(in_port_s)
            if port is None:
                raise FlowSyntaxError(f"{in_port_s}: resubmit to unknown port")
            in_port = port
        table = 255
        if table_s:
            t = V.parse_table(table_s)
            if t is None:
                raise FlowSyntaxError(f"{table_s}: resubmit to unknown table")
            table = t
        if ct_s:
            if ct_s != "ct":
                raise FlowSyntaxError(f"{ct_s}: unknown parameter")
            raise FlowSyntaxError(f"resubmit({arg}): the ct option needs connection "
                                  "tracking, which is not supported by ovsd")
        if in_port == V.OFPP_IN_PORT and table == 255:
            raise FlowSyntaxError('at least one "in_port" or "table" must be specified '
                                  "on resubmit")
        return A.Resubmit(in_port, table)

    def note(self, arg: str) -> A.Action:
        data = _parse_hex_bytes(arg)
        if data is None:
            raise FlowSyntaxError("bad hex digit in `note' argument")
        return A.Note(data)

    def write_metadata(self, arg: str) -> A.Action:
        self.usable &= F.P_NXM_OF11_UP
        value_s, slash, mask_s = arg.partition("/")
        mask = _str_to_u32(mask_s, 64) if slash else (1 << 64) - 1
        return A.WriteMetadata(_str_to_u32(value_s, 64), mask)

    def goto_table(self, arg: str) -> A.Action:
        t = V.parse_table(arg)
        if t is None:
            raise FlowSyntaxError(f'unknown table "{arg}"')
        return A.GotoTable(t)

    def write_actions(self, arg: str) -> A.Action:
        return A.WriteActions(self.parse(arg, nested=True))

    # -- a whole list --------------------------------------------------------------
    def _one(self, key: str, arg: str) -> A.Action | None:
        """One ``key[:=(]arg`` action; None for ``drop``."""
        name = key.lower()
        with_arg = {
            "output": self.output, "output_reg": self.output,
            "controller": self.controller, "enqueue": self.enqueue,
            "set_field": self.set_field, "load": self.load, "move": self.move,
            "push_vlan": self.push_vlan, "mod_nw_tos": self.nw_tos,
            "mod_nw_ecn": self.nw_ecn, "dec_ttl": self.dec_ttl,
            "resubmit": self.resubmit, "note": self.note,
            "write_metadata": self.write_metadata, "goto_table": self.goto_table,
            "write_actions": self.write_actions,
            "set_vlan_vid": lambda x: self.vlan_vid(x, False),
            "mod_vlan_vid": lambda x: self.vlan_vid(x, True),
            "set_vlan_pcp": lambda x: self.vlan_pcp(x, False),
            "mod_vlan_pcp": lambda x: self.vlan_pcp(x, True),
            "mod_dl_src": lambda x: self.mac(x, A.SetEthSrc),
            "mod_dl_dst": lambda x: self.mac(x, A.SetEthDst),
            "mod_nw_src": lambda x: self.ip(x, A.SetIPv4Src),
            "mod_nw_dst": lambda x: self.ip(x, A.SetIPv4Dst),
            "mod_nw_ttl": lambda x: A.SetIPTtl(_str_to_int(x, "TTL", 8)),
            "set_nw_ttl": lambda x: A.SetIPTtl(_str_to_int(x, "TTL", 8)),
            "mod_tp_src": lambda x: A.SetL4SrcPort(_str_to_int(x, "source port", 16)),
            "mod_tp_dst": lambda x: A.SetL4DstPort(_str_to_int(x, "destination port", 16)),
            "set_queue": lambda x: A.SetQueue(_str_to_u32(x)),
        }
        no_arg = {"strip_vlan": A.StripVlan(pop=False), "pop_vlan": A.StripVlan(pop=True),
                  "pop_queue": A.PopQueue(), "exit": A.Exit(),
                  "clear_actions": A.ClearActions()}
        if name in with_arg:
            return with_arg[name](arg)
        if name in no_arg:
            return no_arg[name]
        if name == "drop":
            return None
        if name == "apply_actions":
            raise FlowSyntaxError("apply_actions is the default instruction")
        if name in UNSUPPORTED:
            raise FlowSyntaxError(f"action {key} is not supported by ovsd")
        port = self.port(key)
        if port is None:
            raise FlowSyntaxError(
                f"unknown action {key} (expected an action such as output:PORT, "
                "resubmit(,TABLE), set_field:VALUE->FIELD, or a port)")
        return A.Output(port)

    def parse(self, text: str, nested: bool = False) -> tuple[A.Action, ...]:
        out: list[A.Action] = []
        drop = False
        for key, arg in split_key_values(text):
            action = self._one(key, arg)
            if action is None:
                drop = True
            else:
                out.append(action)
        if drop and out:
            raise FlowSyntaxError('"drop" must not be accompanied by any other action '
                                  "or instruction")
        if nested:
            A.verify_instructions(out, ("meter", "apply_actions"))
        else:
            A.verify_instructions(out)
        return tuple(out)


def parse_ofctl_actions(text: str, port_resolver: PortResolver | None = None
                        ) -> tuple[tuple[A.Action, ...], int]:
    """What ovs-ofctl parses from ``text``: (actions, usable flow formats)."""
    p = _Parser(port_resolver)
    acts = p.parse(text)
    return acts, p.usable


# -- checking against the match (OVS's ofpacts_check) ---------------------------------

class ActionCheckError(FlowSyntaxError):
    """An action that can never be valid with the flow's match."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"actions are invalid with specified match ({code}): {detail}")
        self.code = code
        self.detail = detail


class _Flow:
    """The match's values as the checker sees them, with two VLAN levels."""

    def __init__(self, match: Match) -> None:
        self.value = match.value
        self.tci = [K.get(match.value, "vlan_tci"), 0]

    def key(self) -> int:
        return K.put(self.value, "vlan_tci", self.tci[0])

    @property
    def dl_type(self) -> int:
        return K.get(self.value, "dl_type")

    @property
    def nw_proto(self) -> int:
        return K.get(self.value, "nw_proto")

    def is_ip(self) -> bool:
        return self.dl_type in (F.ETH_TYPE_IP, F.ETH_TYPE_IPV6)


def _check_port(port: int, what: str) -> None:
    if port in (V.OFPP_IN_PORT, V.OFPP_TABLE, V.OFPP_NORMAL, V.OFPP_FLOOD, V.OFPP_ALL,
                V.OFPP_CONTROLLER, V.OFPP_LOCAL) or port < _MAX_PORTS:
        return
    raise ActionCheckError("OFPBAC_BAD_OUT_PORT", f"{what}: port {V.format_port(port)} "
                           f"is not a valid output port")


def _check_subfield(sf: F.SubField, flow: _Flow, role: str) -> None:
    if not sf.field.prereqs_ok(flow.key()):
        raise ActionCheckError("OFPBAC_MATCH_INCONSISTENT",
                               f"{role} field {sf.field.name} lacks correct prerequisites")


def check_actions(actions: tuple[A.Action, ...], match: Match, table_id: int = 255
                  ) -> tuple[tuple[A.Action, ...], int]:
    """OVS's ofpacts_check: errors for impossible actions, the flow
    formats in which the actions are consistent with the match, and the
    actions annotated with what the match guarantees (``flow_has_vlan``,
    ``flow_ip_proto``) for later re-encoding."""
    flow = _Flow(match)
    usable = F.P_ANY
    out = []

    def inconsistent():
        nonlocal usable
        usable &= F.P_OF10_ANY

    for a in actions:
        if isinstance(a, A.Output):
            _check_port(a.port, A.format_action(a))
        elif isinstance(a, A.Enqueue):
            if a.port >= _MAX_PORTS and a.port not in (V.OFPP_IN_PORT, V.OFPP_LOCAL):
                raise ActionCheckError("OFPBAC_BAD_OUT_PORT",
                                       f"{A.format_action(a)}: not a valid queue port")
        elif isinstance(a, A.OutputReg):
            _check_subfield(a.src, flow, "source")
        elif isinstance(a, (A.SetVlanVid, A.SetVlanPcp)):
            has = bool(flow.tci[0] & K.VLAN_CFI)
            a = replace(a, flow_has_vlan=has)
            if not has and not a.push_vlan_if_needed:
                inconsistent()
            flow.tci[0] |= K.VLAN_CFI
        elif isinstance(a, A.StripVlan):
            if not flow.tci[0] & K.VLAN_CFI:
                inconsistent()
            flow.tci = [flow.tci[1], 0]
        elif isinstance(a, A.PushVlan):
            if flow.tci[1] & K.VLAN_CFI:
                raise ActionCheckError("OFPBAC_BAD_TAG",
                                       "push_vlan: at most two VLAN tags are supported")
            flow.tci = [K.VLAN_CFI, flow.tci[0]]
        elif isinstance(a, (A.SetIPv4Src, A.SetIPv4Dst)):
            if flow.dl_type != F.ETH_TYPE_IP:
                inconsistent()
        elif isinstance(a, (A.SetIPDscp, A.SetIPEcn, A.SetIPTtl, A.DecTtl)):
            if not flow.is_ip():
                inconsistent()
        elif isinstance(a, (A.SetL4SrcPort, A.SetL4DstPort)):
            if (not flow.is_ip() or K.get(flow.value, "nw_frag") & K.NW_FRAG_LATER
                    or flow.nw_proto not in (F.IPPROTO_TCP, F.IPPROTO_UDP, F.IPPROTO_SCTP)):
                inconsistent()
            a = type(a)(a.port, flow.nw_proto)
        elif isinstance(a, A.RegMove):
            _check_subfield(a.src, flow, "source")
            _check_subfield(a.dst, flow, "destination")
            if not a.dst.field.writable:
                raise ActionCheckError("OFPBAC_BAD_SET_ARGUMENT",
                                       f"destination field {a.dst.field.name} is not writable")
        elif isinstance(a, A.SetField):
            mf = a.field
            has = bool(flow.tci[0] & K.VLAN_CFI)
            if not mf.prereqs_ok(flow.key()) or (mf.name == "vlan_vid" and not has):
                raise ActionCheckError("OFPBAC_MATCH_INCONSISTENT",
                                       f"set_field {mf.name} lacks correct prerequisites")
            a = A.SetField(mf, a.value, a.mask, a.style, has)
            if mf.name == "vlan_tci":
                flow.tci[0] = a.value
        elif isinstance(a, A.WriteActions):
            inner, _ = check_actions(a.actions, Match(flow.key(), match.mask), table_id)
            a = A.WriteActions(inner)
        elif isinstance(a, A.GotoTable):
            if table_id != 255 and a.table <= table_id:
                raise ActionCheckError("OFPBIC_BAD_TABLE_ID",
                                       f"goto_table:{a.table} must go to a table after "
                                       f"table {table_id}")
        out.append(a)
    return tuple(out), usable


def _check_loads_writable(actions: tuple[A.Action, ...]) -> None:
    for a in actions:
        if isinstance(a, A.WriteActions):
            _check_loads_writable(a.actions)
        elif isinstance(a, A.SetField) and not a.field.writable:
            raise FlowSyntaxError(
                f"{A.format_action(a)}: the switch rejects it (OFPBAC_BAD_SET_ARGUMENT): "
                f"destination field {a.field.name} is not writable")


def store_actions(actions: tuple[A.Action, ...], protocol: int, match: Match,
                  table_id: int) -> tuple[A.Action, ...]:
    """What a switch keeps for ``actions`` sent in flow format ``protocol``
    for a rule in ``table_id`` with (stored) ``match``, after its own
    decoding and checks."""
    version = protocol_version(protocol)
    decoded = A.wire_actions(actions, version)
    _check_loads_writable(decoded)
    if version == 1:
        try:
            A.verify_instructions(decoded)
        except FlowSyntaxError as e:
            raise FlowSyntaxError(f"the switch rejects the flow (OFPBAC_UNSUPPORTED_ORDER, "
                                  f"which OpenFlow 1.0 reports as NXBRC_UNENCODABLE_ERROR): "
                                  f"in OpenFlow 1.0 {e}") from None
    try:
        checked, usable = check_actions(decoded, match, table_id)
    except ActionCheckError as e:
        raise FlowSyntaxError(f"the switch rejects the flow ({e.code}): {e.detail}") from None
    if not usable & protocol:
        raise FlowSyntaxError("the switch rejects the flow (OFPBAC_MATCH_INCONSISTENT): "
                              "the actions are not consistent with the match")
    return checked


def parse_actions(text: str, version: str | int | None = "OpenFlow10",
                  match: Match = CATCHALL, port_resolver: PortResolver | None = None,
                  *, table_id: int = 255, match_usable: int = F.P_ANY
                  ) -> tuple[A.Action, ...]:
    """``actions=`` text -> the action tuple a switch stores for it, as
    ``ovs-ofctl [-O version] add-flow`` would have it (see module doc).

    ``match`` is the flow's match (its prerequisites decide what is
    consistent), ``table_id`` the rule's table (255: not given), and
    ``match_usable`` the flow formats the match itself allows."""
    acts, usable = parse_ofctl_actions(text, port_resolver)
    checked, check_usable = check_actions(acts, match, table_id)
    usable &= check_usable & match_usable
    if not usable:
        raise FlowSyntaxError("actions are invalid with specified match "
                              "(OFPBAC_MATCH_INCONSISTENT): no OpenFlow flow format can "
                              "express this match together with these actions")
    protocol = choose_protocol(version_number(version), usable)
    return store_actions(checked, protocol, match, 0 if table_id == 255 else table_id)
