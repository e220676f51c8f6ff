"""Translation: run a flow key through a bridge's OpenFlow tables.

The result is what the datapath needs: the datapath actions for the packet
and the wildcard mask of every key bit the translation depended on (so the
result can be cached as a megaflow), plus the rules that matched (for their
counters).  Semantics follow OVS 3.1's ofproto-dpif-xlate.c where users can
see them: outputs to the input port are skipped unless asked for with
``in_port``, ``dec_ttl`` on TTL <= 1 ends the current action list, a
resubmit loop or too many resubmits drops the whole packet, the OpenFlow 1.3
action set runs after the pipeline, NORMAL learns and floods per VLAN.

The flow key inside xlate has OpenFlow port numbers in ``in_port``; the
caller maps datapath ports in and out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ovsd.dpif import drops as D
from ovsd.dpif import odp_actions as odp
from ovsd.ofproto import actions as A
from ovsd.ofproto import fields as F
from ovsd.ofproto.commit import Committer
from ovsd.ofproto.normal_vlan import PCP_MASK, VID_MASK, is_multicast, is_reserved_multicast
from ovsd.ofproto.trace import ACTION, DETAIL, ERROR, TABLE, WARN, TraceNode
from ovsd.packet import key as K

MAX_DEPTH = 64
MAX_RESUBMITS = 4096

_OFF = {name: f.offset for name, f in K.FIELDS.items()}
_MAX = {name: (1 << f.width) - 1 for name, f in K.FIELDS.items()}
_MASK = {name: f.mask for name, f in K.FIELDS.items()}

ETH_TYPE_IP = F.ETH_TYPE_IP
ETH_TYPE_IPV6 = F.ETH_TYPE_IPV6
ETH_TYPE_VLAN = 0x8100
VLAN_TPIDS = (0x8100, 0x88A8)
DSCP_MASK = 0xFC
ECN_MASK = 0x03

# Always part of the megaflow, as in OVS: the input port, the ethertype and
# whether a VLAN tag is present (OVS's datapath keys cannot wildcard the
# header structure; here it matters because strip_vlan on an untagged packet
# changes nothing while on a tagged one it pops).
_BASE_WC = _MASK["in_port"] | _MASK["dl_type"] | K.VLAN_CFI << _OFF["vlan_tci"]


class XlateError(Exception):
    """Translation gave up (recursion too deep, too many resubmits): the
    whole packet is dropped."""


@dataclass
class XlateResult:
    actions: tuple
    mask: int
    rules: list
    final_flow: int
    error: str | None = None
    mac_changed: bool = False
    n_userspace: int = 0
    learned: list = field(default_factory=list)  # (mac, vlan, port) NORMAL learned
    #: Why the packet goes nowhere (a drops.* reason), None when it goes somewhere.
    drop_reason: str | None = None


def _get(key: int, name: str) -> int:
    return (key >> _OFF[name]) & _MAX[name]


def _put(key: int, name: str, value: int) -> int:
    return (key & ~_MASK[name]) | ((value & _MAX[name]) << _OFF[name])


class Xlate:
    """One translation.  ``ofproto`` is the bridge (ovsd.ofproto.ofproto.Ofproto)."""

    def __init__(self, ofproto, flow: int, *, packet_len: int = 0,
                 side_effects: bool = True, trace: TraceNode | None = None,
                 odp_port_of=None):
        self.ofproto = ofproto
        self.flow = flow
        self.initial_flow = flow
        self.inner_vlan = (0, 0)  # a second tag, only known after a push
        self.wc = _BASE_WC
        if _get(flow, "dl_type") in (ETH_TYPE_IP, ETH_TYPE_IPV6):
            self.wc |= _MASK["nw_frag"]
        self.committer = Committer(flow)
        self.odp: list = []
        self.action_set: list = []
        self.rules: list = []
        self.packet_len = packet_len
        self.side_effects = side_effects
        self.depth = 0
        self.resubmits = 0
        self.table_id = 0
        self.exit = False
        self.error: str | None = None
        self.drop_reason: str | None = None  # the first place a path ended in a drop
        self.mac_changed = False
        self.n_userspace = 0
        self.learned: list = []
        self._trace = trace.subs if trace is not None else None
        self._odp_port_of = odp_port_of or (lambda port: port.odp_port)

    # -- entry point ------------------------------------------------------------

    def run(self) -> XlateResult:
        try:
            self._table_lookup(self._in_port(), 0, top=True)
            if not self.exit:
                self._execute_action_set()
        except XlateError as e:
            self.error = str(e)
            self.odp.clear()
            self.drop_reason = D.RESUBMIT_LOOP
        drop = None
        if not any(a[0] == odp.OUTPUT or a[0] == odp.USERSPACE for a in self.odp):
            drop = self.drop_reason or D.NO_OUTPUT
        return XlateResult(tuple(self.odp), self.wc, self.rules, self.flow, self.error,
                           self.mac_changed, self.n_userspace, self.learned, drop)

    def _dropped(self, reason: str) -> None:
        """A path through the pipeline ended without output, for ``reason``;
        it names the packet's drop if no other path outputs it."""
        if self.drop_reason is None:
            self.drop_reason = reason

    # -- reporting --------------------------------------------------------------

    def _report(self, kind: str, text: str) -> TraceNode | None:
        if self._trace is None:
            return None
        node = TraceNode(kind, text)
        self._trace.append(node)
        return node

    # -- field access -----------------------------------------------------------

    def _in_port(self) -> int:
        return _get(self.flow, "in_port")

    def _read(self, name: str) -> int:
        """A field's value, recording that the translation depended on it."""
        self.wc |= _MASK[name]
        return _get(self.flow, name)

    def _write(self, name: str, value: int, mask: int | None = None) -> None:
        """Write a key field (under ``mask``, in field units)."""
        if mask is None:
            mask = _MAX[name]
        off = _OFF[name]
        self.wc |= mask << off
        self.flow = (self.flow & ~(mask << off)) | ((value & mask) << off)

    def _is_ip_any(self) -> bool:
        return _get(self.flow, "dl_type") in (ETH_TYPE_IP, ETH_TYPE_IPV6)

    # -- tables -----------------------------------------------------------------

    def _table_lookup(self, in_port: int, table_id: int, top: bool = False) -> None:
        if self.depth >= MAX_DEPTH:
            self._report(ERROR, f"over max translation depth {MAX_DEPTH}")
            raise XlateError("Recursion too deep")
        if self.resubmits >= MAX_RESUBMITS:
            self._report(ERROR, f"over {MAX_RESUBMITS} resubmit actions")
            raise XlateError("Too many resubmits")
        old_table = self.table_id
        self.table_id = table_id
        lookup_key = self.flow
        if in_port != self._in_port():
            lookup_key = _put(lookup_key, "in_port", in_port)
        rule, wc = self.ofproto.tables[table_id].lookup(lookup_key)
        self.wc |= wc
        saved_trace = self._trace
        if saved_trace is not None:
            text = self._rule_text(rule) if rule is not None else "No match."
            self._trace = self._report(TABLE, f"{table_id:2d}. {text}").subs
        if rule is None:
            self._report(ACTION, "drop")
            self._dropped(D.TABLE_MISS)
        else:
            self.rules.append(rule)
            if not top:
                self.resubmits += 1
            deepens = not top and table_id <= old_table
            self.depth += deepens
            self._do_actions(rule.actions)
            self.depth -= deepens
        self._trace = saved_trace
        self.table_id = old_table

    def _rule_text(self, rule) -> str:
        from ovsd.ofproto.match import format_match
        text = format_match(rule.match)
        text = f"{text}, priority {rule.priority}" if text else f"priority {rule.priority}"
        if rule.cookie:
            text += f", cookie {rule.cookie:#x}"
        return text

    # -- actions ----------------------------------------------------------------

    def _do_actions(self, actions) -> None:
        if not actions:
            self._report(ACTION, "drop")
            self._dropped(D.DROP_ACTION)
            return
        for a in actions:
            if self.exit:
                return
            if self._trace is not None:
                self._report(ACTION, A.format_action(a))
            handler = _HANDLERS.get(type(a))
            if handler is None:
                self._report(WARN, f"action {type(a).__name__} is not supported, ignored")
                continue
            if handler(self, a) is False:
                return  # the action ended this action list (dec_ttl)

    def _execute_action_set(self) -> None:
        actions = _action_set_order(self.action_set)
        self.action_set = []
        if not actions:
            return
        saved = self._trace
        node = self._report(TABLE, "--. Executing action set:")
        if node is not None:
            self._trace = node.subs
        self._do_actions(actions)
        self._trace = saved

    def _report_action_set(self, verb: str) -> None:
        if self._trace is None:
            return
        actions = _action_set_order(self.action_set)
        if actions:
            text = ",".join(A.format_action(a) for a in actions)
            self._report(DETAIL, f"action set {verb}: {text}")
        else:
            self._report(DETAIL, f"action set {verb} empty")

    # -- outputs -----------------------------------------------------------------

    def output(self, port: int) -> None:
        in_port = self._in_port()
        if port == F.OFPP_IN_PORT:
            self._compose_output(in_port)
        elif port == F.OFPP_TABLE:
            self._table_lookup(in_port, 0)
        elif port == F.OFPP_NORMAL:
            self._normal()
        elif port == F.OFPP_FLOOD:
            self._flood()
        elif port == F.OFPP_ALL:
            self._flood()
        elif port == F.OFPP_CONTROLLER:
            self._userspace("action")
        elif port == F.OFPP_NONE:
            pass
        elif port != in_port:
            self._compose_output(port)
        else:
            self._report(WARN, "skipping output to input port")
            self._dropped(D.OUTPUT_TO_INPUT_PORT)

    def _compose_output(self, ofport: int) -> None:
        port = self.ofproto.ports.get(ofport)
        if port is None:
            self._report(WARN, "Nonexistent output port")
            self._dropped(D.OUTPUT_PORT_UNKNOWN)
            return
        odp_port = self._odp_port_of(port)
        if odp_port is None:
            self._report(WARN, "output port is not in the datapath (down?), skipping")
            self._dropped(D.OUTPUT_PORT_DOWN)
            return
        self.wc = self.committer.commit(self.flow, self.inner_vlan, self.wc, self.odp)
        self.odp.append(odp.output(odp_port))

    def _flood(self) -> None:
        in_port = self._in_port()
        for ofport in sorted(self.ofproto.ports):
            if ofport != in_port:
                self._compose_output(ofport)

    def _userspace(self, reason: str) -> None:
        self.wc = self.committer.commit(self.flow, self.inner_vlan, self.wc, self.odp)
        self.odp.append(odp.userspace(reason))
        self.n_userspace += 1

    # -- NORMAL -------------------------------------------------------------------

    def _normal(self) -> None:
        # The decision reads the MACs and the whole tag (PCP and TPID are
        # carried to the output ports).
        self.wc |= _MASK["dl_src"] | _MASK["dl_dst"] | _MASK["vlan_tci"] | _MASK["vlan_tpid"]
        in_port = self._in_port()
        in_ofport = self.ofproto.ports.get(in_port)
        if in_ofport is None:
            self._report(WARN, "no input bundle, dropping")
            return
        dl_type = _get(self.flow, "dl_type")
        tci = _get(self.flow, "vlan_tci")
        if dl_type in VLAN_TPIDS and not tci & K.VLAN_CFI:
            self._report(WARN, "partial VLAN tag, dropping")
            return
        vid = tci & VID_MASK if tci & K.VLAN_CFI else 0
        vlan = in_ofport.vlan.input_vlan(vid)
        if vlan is None:
            self._report(WARN, "disallowed VLAN VID for this input port, dropping")
            return
        dl_dst = _get(self.flow, "dl_dst")
        if is_reserved_multicast(dl_dst):
            self._report(DETAIL, "packet has reserved destination MAC, dropping")
            return
        dl_src = _get(self.flow, "dl_src")
        if self.side_effects and not is_multicast(dl_src):
            self.learned.append((dl_src, vlan, in_port))
            if self.ofproto.mac_table.learn(dl_src, vlan, in_port):
                self.mac_changed = True
        if is_multicast(dl_dst):
            self._report(DETAIL, "multicast traffic, flooding" if dl_dst != 0xFFFFFFFFFFFF
                         else "no learned MAC for destination, flooding")
            self._normal_flood(in_port, vlan)
            return
        out = self.ofproto.mac_table.lookup(dl_dst, vlan)
        if out is None:
            self._report(DETAIL, "no learned MAC for destination, flooding")
            self._normal_flood(in_port, vlan)
        elif out == in_port:
            self._report(DETAIL, "learned port is input port, dropping")
            self._dropped(D.OUTPUT_TO_INPUT_PORT)
        elif out not in self.ofproto.ports:
            self._report(WARN, "learned port is unknown, dropping")
            self._dropped(D.OUTPUT_PORT_UNKNOWN)
        else:
            self._report(DETAIL, "forwarding to learned port")
            self._normal_output(out, vlan)

    def _normal_flood(self, in_port: int, vlan: int) -> None:
        for ofport in sorted(self.ofproto.ports):
            if ofport != in_port and self.ofproto.ports[ofport].vlan.carries(vlan):
                self._normal_output(ofport, vlan)

    def _normal_output(self, ofport: int, vlan: int) -> None:
        port = self.ofproto.ports[ofport]
        tci = _get(self.flow, "vlan_tci")
        pcp = tci & PCP_MASK if tci & K.VLAN_CFI else 0
        out_tci = port.vlan.output_tci(vlan, pcp)
        saved = self.flow, self.inner_vlan
        if out_tci:
            tpid = _get(self.flow, "vlan_tpid") or ETH_TYPE_VLAN
            self.flow = _put(_put(self.flow, "vlan_tci", out_tci), "vlan_tpid", tpid)
        else:
            self.flow = _put(_put(self.flow, "vlan_tci", 0), "vlan_tpid", 0)
        self.inner_vlan = (0, 0)
        self._compose_output(ofport)
        self.flow, self.inner_vlan = saved

    # -- VLAN helpers ---------------------------------------------------------------

    def _push_vlan(self, tpid: int) -> None:
        tci = _get(self.flow, "vlan_tci")
        self.wc |= K.VLAN_CFI << _OFF["vlan_tci"]
        if tci & K.VLAN_CFI:
            self.wc |= _MASK["vlan_tci"] | _MASK["vlan_tpid"]
            self.inner_vlan = (_get(self.flow, "vlan_tpid") or ETH_TYPE_VLAN, tci)
        else:
            self.inner_vlan = (0, 0)
        self.flow = _put(_put(self.flow, "vlan_tci", K.VLAN_CFI), "vlan_tpid", tpid)

    def _pop_vlan(self) -> None:
        tpid, tci = self.inner_vlan
        self.flow = _put(_put(self.flow, "vlan_tci", tci), "vlan_tpid", tpid)
        self.inner_vlan = (0, 0)


# -- action handlers: return False to end the current action list -----------------

def _h_output(x: Xlate, a) -> None:
    x.output(a.port)


def _h_output_reg(x: Xlate, a: A.OutputReg) -> None:
    x.wc |= a.src.key_mask
    port = (a.src.field.from_key(x.flow) >> a.src.start) & ((1 << a.src.n_bits) - 1)
    if port <= 0xFFFF:
        x.output(port)


def _h_controller(x: Xlate, a: A.Controller) -> None:
    x._userspace(a.reason)


def _h_enqueue(x: Xlate, a: A.Enqueue) -> None:
    x.output(a.port)


def _h_set_vlan_vid(x: Xlate, a: A.SetVlanVid) -> None:
    x.wc |= (VID_MASK | K.VLAN_CFI) << _OFF["vlan_tci"] | _MASK["vlan_tpid"]
    tci = _get(x.flow, "vlan_tci")
    if tci & K.VLAN_CFI or a.push_vlan_if_needed:
        if not _get(x.flow, "vlan_tpid"):
            x.flow = _put(x.flow, "vlan_tpid", ETH_TYPE_VLAN)
        x.flow = _put(x.flow, "vlan_tci", (tci & ~VID_MASK) | a.vid | K.VLAN_CFI)


def _h_set_vlan_pcp(x: Xlate, a: A.SetVlanPcp) -> None:
    x.wc |= (PCP_MASK | K.VLAN_CFI) << _OFF["vlan_tci"] | _MASK["vlan_tpid"]
    tci = _get(x.flow, "vlan_tci")
    if tci & K.VLAN_CFI or a.push_vlan_if_needed:
        if not _get(x.flow, "vlan_tpid"):
            x.flow = _put(x.flow, "vlan_tpid", ETH_TYPE_VLAN)
        x.flow = _put(x.flow, "vlan_tci", (tci & ~PCP_MASK) | (a.pcp << 13) | K.VLAN_CFI)


def _h_strip_vlan(x: Xlate, a) -> None:
    x._pop_vlan()


def _h_push_vlan(x: Xlate, a: A.PushVlan) -> None:
    x._push_vlan(a.ethertype)


def _h_set_eth_src(x: Xlate, a: A.SetEthSrc) -> None:
    x._write("dl_src", a.mac)


def _h_set_eth_dst(x: Xlate, a: A.SetEthDst) -> None:
    x._write("dl_dst", a.mac)


def _h_set_ipv4_src(x: Xlate, a: A.SetIPv4Src) -> None:
    if _get(x.flow, "dl_type") == ETH_TYPE_IP:
        x._write("nw_src", a.addr)


def _h_set_ipv4_dst(x: Xlate, a: A.SetIPv4Dst) -> None:
    if _get(x.flow, "dl_type") == ETH_TYPE_IP:
        x._write("nw_dst", a.addr)


def _h_set_ip_dscp(x: Xlate, a: A.SetIPDscp) -> None:
    if x._is_ip_any():
        x._write("nw_tos", a.tos, DSCP_MASK)


def _h_set_ip_ecn(x: Xlate, a: A.SetIPEcn) -> None:
    if x._is_ip_any():
        x._write("nw_tos", a.ecn, ECN_MASK)


def _h_set_ip_ttl(x: Xlate, a: A.SetIPTtl) -> None:
    if x._is_ip_any():
        x._write("nw_ttl", a.ttl)


def _set_l4_port(x: Xlate, name: str, port: int) -> None:
    if x._is_ip_any() and not _get(x.flow, "nw_frag") & K.NW_FRAG_LATER:
        x.wc |= _MASK["nw_proto"]
        x._write(name, port)


def _h_set_l4_src(x: Xlate, a: A.SetL4SrcPort) -> None:
    _set_l4_port(x, "tp_src", a.port)


def _h_set_l4_dst(x: Xlate, a: A.SetL4DstPort) -> None:
    _set_l4_port(x, "tp_dst", a.port)


def _subfield_bits(sf) -> tuple[int, int]:
    """(key offset of the subfield's bit 0, width) for reading/writing it."""
    mask = sf.key_mask
    offset = (mask & -mask).bit_length() - 1
    return offset, sf.n_bits


def _prereqs_ok(x: Xlate, mf) -> bool:
    """Whether the flow has ``mf`` (OVS's mf_are_prereqs_ok), noting what that read."""
    for m in mf.prereq:
        x.wc |= m.mask
    x.wc |= mf.prereq_zero
    return mf.prereqs_ok(x.flow)


def _h_reg_move(x: Xlate, a: A.RegMove) -> None:
    if not (_prereqs_ok(x, a.src.field) and _prereqs_ok(x, a.dst.field)):
        x._report(WARN, "unmet prerequisites for move, ignored")
        return
    src_off, n = _subfield_bits(a.src)
    dst_off, _ = _subfield_bits(a.dst)
    value = (x.flow >> src_off) & ((1 << n) - 1)
    dst_mask = ((1 << n) - 1) << dst_off
    x.wc |= a.src.key_mask | dst_mask
    x.flow = (x.flow & ~dst_mask) | (value << dst_off)


def _h_set_field(x: Xlate, a: A.SetField) -> None:
    mf = a.field
    if not _prereqs_ok(x, mf):
        x._report(WARN, f"unmet prerequisites for {mf.name}, set_field ignored")
        return
    key_mask = mf.to_key(a.mask) if mf.kind != "port32" else mf.key_mask
    x.wc |= key_mask
    x.flow = (x.flow & ~key_mask) | (mf.to_key(a.value) & key_mask)
    if mf.key_field == "vlan_tci" and key_mask & _MASK["vlan_tci"]:
        x.wc |= _MASK["vlan_tci"] | _MASK["vlan_tpid"]
        tci = _get(x.flow, "vlan_tci")
        if tci & K.VLAN_CFI and not _get(x.flow, "vlan_tpid"):
            x.flow = _put(x.flow, "vlan_tpid", ETH_TYPE_VLAN)
        elif not tci & K.VLAN_CFI:
            x.flow = _put(x.flow, "vlan_tpid", 0)


def _h_dec_ttl(x: Xlate, a: A.DecTtl):
    if not x._is_ip_any():
        return None
    ttl = x._read("nw_ttl")
    if ttl > 1:
        x.flow = _put(x.flow, "nw_ttl", ttl - 1)
        return None
    version = 4 if _get(x.flow, "dl_type") == ETH_TYPE_IP else 6
    x._report(WARN, f"IPv{version} decrement TTL exception")
    x._dropped(D.TTL_EXPIRED)
    return False


def _h_nothing(x: Xlate, a) -> None:
    return None


def _h_resubmit(x: Xlate, a: A.Resubmit) -> None:
    in_port = x._in_port() if a.in_port == F.OFPP_IN_PORT else a.in_port
    table = x.table_id if a.table == 255 else a.table
    x._table_lookup(in_port, table)


def _h_exit(x: Xlate, a) -> None:
    x.exit = True


def _h_clear_actions(x: Xlate, a) -> None:
    x._report_action_set("was")
    x.action_set = []


def _h_write_actions(x: Xlate, a: A.WriteActions) -> None:
    x.action_set.extend(a.actions)
    x._report_action_set("is")


def _h_write_metadata(x: Xlate, a: A.WriteMetadata) -> None:
    off = _OFF["metadata"]
    x.flow = (x.flow & ~(a.mask << off)) | ((a.metadata & a.mask) << off)


def _h_goto_table(x: Xlate, a: A.GotoTable) -> None:
    x._table_lookup(x._in_port(), a.table)


_HANDLERS = {
    A.Output: _h_output,
    A.OutputReg: _h_output_reg,
    A.Controller: _h_controller,
    A.Enqueue: _h_enqueue,
    A.SetVlanVid: _h_set_vlan_vid,
    A.SetVlanPcp: _h_set_vlan_pcp,
    A.StripVlan: _h_strip_vlan,
    A.PushVlan: _h_push_vlan,
    A.SetEthSrc: _h_set_eth_src,
    A.SetEthDst: _h_set_eth_dst,
    A.SetIPv4Src: _h_set_ipv4_src,
    A.SetIPv4Dst: _h_set_ipv4_dst,
    A.SetIPDscp: _h_set_ip_dscp,
    A.SetIPEcn: _h_set_ip_ecn,
    A.SetIPTtl: _h_set_ip_ttl,
    A.SetL4SrcPort: _h_set_l4_src,
    A.SetL4DstPort: _h_set_l4_dst,
    A.RegMove: _h_reg_move,
    A.SetField: _h_set_field,
    A.DecTtl: _h_dec_ttl,
    A.SetQueue: _h_nothing,
    A.PopQueue: _h_nothing,
    A.Note: _h_nothing,
    A.Resubmit: _h_resubmit,
    A.Exit: _h_exit,
    A.ClearActions: _h_clear_actions,
    A.WriteActions: _h_write_actions,
    A.WriteMetadata: _h_write_metadata,
    A.GotoTable: _h_goto_table,
}

# The OpenFlow 1.3 action set: strip/push/dec_ttl once each (the last one
# written), then every set/move in order, then one final action (output wins
# over resubmit; the last written of its kind).  Nothing runs without a final
# action.
_SLOTS = (A.StripVlan, A.PushVlan, A.DecTtl)
_FINAL_RANK = {A.Resubmit: 1, A.Output: 2}


def _action_set_order(action_set: list) -> tuple:
    slots: dict[type, object] = {}
    sets = []
    final, final_rank = None, 0
    for a in action_set:
        kind = type(a)
        if kind in _SLOTS:
            slots[kind] = a
        elif kind in _FINAL_RANK:
            if _FINAL_RANK[kind] >= final_rank:
                final, final_rank = a, _FINAL_RANK[kind]
        elif A.allowed_in_action_set(a):
            sets.append(a)
    if final is None:
        return ()
    return tuple(slots[k] for k in _SLOTS if k in slots) + tuple(sets) + (final,)


def xlate(ofproto, flow: int, **kwargs) -> XlateResult:
    return Xlate(ofproto, flow, **kwargs).run()


def now() -> float:
    return time.time()
