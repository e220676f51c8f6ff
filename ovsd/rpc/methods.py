"""The JSON-RPC methods: everything ofctl (or an orchestration tool) can do.

Method names are ofctl's verbs with '-' and '/' turned into '_' (``add-br``
-> ``add_br``, ``fdb/show`` -> ``fdb_show``); docs/rpc.md documents each.
Results are JSON objects; where OVS prints something users know
(``dump-flows``, ``show``, ``ofproto/trace``), the result carries that text
in ``text`` beside the structured data.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ovsd.db import vsctl
from ovsd.db.schema import ColumnValueError
from ovsd.db.store import TransactionError
from ovsd.db.vsctl import VsctlError
from ovsd.dpif.odp_actions import format_actions as format_odp_actions
from ovsd.netdev.dummy.device import DummyNetdev
from ovsd.ofproto import trace as T
from ovsd.ofproto.fields import OFPP_LOCAL, FlowSyntaxError, format_port
from ovsd.ofproto.flow_syntax import format_flow_stats, parse_flow, parse_trace_flow
from ovsd.ofproto.mac_learning import format_fdb
from ovsd.ofproto.match import Match, format_flow_key, format_megaflow
from ovsd.ofproto.ofproto import Ofproto, OfprotoError
from ovsd.ofproto.xlate import Xlate
from ovsd.packet import key as K
from ovsd.packet.parse import extract_key
from ovsd.rpc.server import E_EXISTS, E_FAILED, E_INVALID, E_NOT_FOUND, RpcError

if TYPE_CHECKING:
    from ovsd.switch import Switch

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
PROTOCOL_DEFAULT = "OpenFlow10"
MIN_FRAME = 14
MAX_FRAME = 65535

ERROR_CODES = {
    FlowSyntaxError: E_INVALID,
    OfprotoError: E_INVALID,
    VsctlError: E_INVALID,
    ColumnValueError: E_INVALID,
    TransactionError: E_INVALID,
}


def _not_found(what: str, name: str, hint: str = "") -> RpcError:
    return RpcError(E_NOT_FOUND, f"no {what} named {name}" + (f"; {hint}" if hint else ""))


def _bridge(switch: "Switch", name: str) -> Ofproto:
    ofproto = switch.backer.bridges.get(name)
    if ofproto is None:
        known = ", ".join(sorted(switch.backer.bridges)) or "none"
        raise _not_found("bridge", name, f"bridges: {known}")
    return ofproto


def _check_name(kind: str, name: str) -> None:
    if not _NAME_RE.match(name):
        raise RpcError(E_INVALID, f"invalid {kind} name {name!r}: use 1 to 15 letters, "
                                  "digits, '.', '_', ':' or '-' (it may become a kernel "
                                  "interface name)")


# -- bridges -----------------------------------------------------------------------

def add_bridge(switch: "Switch", bridge: str, may_exist: bool = False) -> dict:
    """Create a bridge as ovs-vsctl add-br does: Bridge + its own internal Port
    and Interface (the LOCAL port), and the default NORMAL flow."""
    _check_name("bridge", bridge)
    db = switch.db
    if db.lookup("Bridge", bridge) is not None:
        if may_exist:
            return {"bridge": bridge, "created": False}
        raise RpcError(E_EXISTS, f"bridge {bridge} already exists "
                                 "(use --may-exist to ignore that)")
    if db.lookup("Port", bridge) is not None or db.lookup("Interface", bridge) is not None:
        raise RpcError(E_EXISTS, f"cannot create bridge {bridge}: a port named {bridge} "
                                 "already exists on another bridge")
    with db.transaction() as txn:
        iface = txn.insert("Interface", {"name": bridge, "type": "internal"})
        port = txn.insert("Port", {"name": bridge, "interfaces": [iface]})
        br = txn.insert("Bridge", {"name": bridge, "ports": [port],
                                   "datapath_type": "netdev"})
        txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])
        _bump_next_cfg(txn)
    switch.save_flows()
    return {"bridge": bridge, "created": True}


def _bump_next_cfg(txn) -> None:
    root = txn.get("Open_vSwitch", txn.root_uuid)
    txn.update("Open_vSwitch", txn.root_uuid, {"next_cfg": root["next_cfg"] + 1})


def del_bridge(switch: "Switch", bridge: str, if_exists: bool = False) -> dict:
    db = switch.db
    uid = db.lookup("Bridge", bridge)
    if uid is None:
        if if_exists:
            return {"bridge": bridge, "deleted": False}
        raise _not_found("bridge", bridge)
    with db.transaction() as txn:
        txn.mutate_remove("Open_vSwitch", txn.root_uuid, "bridges", [uid])
        txn.delete("Bridge", uid)
        _bump_next_cfg(txn)
    switch.save_flows()
    return {"bridge": bridge, "deleted": True}


# -- ports -----------------------------------------------------------------------------

def _port_bridge(switch: "Switch", port: str) -> str | None:
    db = switch.db
    port_uuid = db.lookup("Port", port)
    if port_uuid is None:
        return None
    for br in db.rows("Bridge").values():
        if port_uuid in br["ports"]:
            return br["name"]
    return None


def add_port(switch: "Switch", bridge: str, port: str, settings: list[str] | None = None,
             may_exist: bool = False) -> dict:
    """Add PORT to BRIDGE with one Interface of the same name; ``settings`` are
    Interface columns in ovs-vsctl syntax ("type=dummy", "options:k=v")."""
    _check_name("port", port)
    db = switch.db
    br_uuid = db.lookup("Bridge", bridge)
    if br_uuid is None:
        raise _not_found("bridge", bridge, "create it with add-br")
    owner = _port_bridge(switch, port)
    if owner is not None or db.lookup("Interface", port) is not None:
        if may_exist and owner == bridge:
            return {"port": port, "created": False, "ofport": switch.ifaces[port].ofport
                    if port in switch.ifaces else -1}
        where = f"on bridge {owner}" if owner else "as an interface"
        raise RpcError(E_EXISTS, f"cannot create a port named {port} because a port named "
                                 f"{port} already exists {where}")
    try:
        with db.transaction() as txn:
            iface = txn.insert("Interface", {"name": port})
            vsctl.apply_assignments(txn, "Interface", iface, settings or [])
            row = txn.get("Interface", iface)
            _check_ofport_request(switch, txn, bridge, port, row["ofport_request"])
            port_uuid = txn.insert("Port", {"name": port, "interfaces": [iface]})
            txn.mutate_add("Bridge", br_uuid, "ports", [port_uuid])
            _bump_next_cfg(txn)
    except VsctlError as e:
        raise RpcError(E_INVALID, f"add-port {bridge} {port}: {e}") from None
    state = switch.ifaces.get(port)
    if state is None or state.error or state.netdev is None:
        error = (state.error if state else None) or "the port was not created"
        # Leave nothing half-made behind: the port goes away with its error.
        _remove_port(switch, port)
        raise RpcError(E_FAILED, f"add-port {bridge} {port} failed: {error}; "
                                 "nothing was added")
    return {"port": port, "created": True, "ofport": state.ofport}


def _check_ofport_request(switch: "Switch", txn, bridge: str, port: str,
                          requested: int | None) -> None:
    if requested is None:
        return
    br = txn.get("Bridge", txn.lookup("Bridge", bridge))
    for port_uuid in br["ports"]:
        for iface_uuid in txn.get("Port", port_uuid)["interfaces"]:
            other = txn.get("Interface", iface_uuid)
            if other["name"] == port:
                continue
            used = other["ofport_request"] if other["ofport_request"] is not None \
                else other["ofport"]
            if used == requested:
                raise RpcError(E_EXISTS, f"ofport_request={requested} is already taken by "
                                         f"port {other['name']} on bridge {bridge}; choose "
                                         "another number or leave it out")


def _remove_port(switch: "Switch", port: str) -> None:
    db = switch.db
    port_uuid = db.lookup("Port", port)
    with db.transaction() as txn:
        for br_uuid, br in txn.rows("Bridge"):
            if port_uuid in br["ports"]:
                txn.mutate_remove("Bridge", br_uuid, "ports", [port_uuid])
        _bump_next_cfg(txn)


def del_port(switch: "Switch", port: str, bridge: str | None = None,
             if_exists: bool = False) -> dict:
    owner = _port_bridge(switch, port)
    if owner is None or (bridge is not None and owner != bridge):
        if if_exists:
            return {"port": port, "deleted": False}
        if owner is not None:
            raise _not_found("port", port, f"it is on bridge {owner}, not {bridge}")
        raise _not_found("port", port)
    if owner == port:
        raise RpcError(E_INVALID, f"{port} is bridge {owner}'s own port; delete the bridge "
                                  "with del-br instead")
    _remove_port(switch, port)
    return {"port": port, "deleted": True}


def _port_info(switch: "Switch", ofproto: Ofproto, name: str) -> dict:
    iface = switch.ifaces.get(name)
    row = switch.db.get("Interface", switch.db.lookup("Interface", name))
    info: dict[str, Any] = {"name": name, "type": row["type"] or "system" if row else "",
                            "ofport": iface.ofport if iface else -1,
                            "error": iface.error if iface else None}
    dev = iface.netdev if iface else None
    info["state"] = ("down" if dev is None else "up" if dev.link_up else "link-down")
    info["statistics"] = dev.stats.as_dict() if dev else {}
    info["mac"] = ":".join(f"{b:02x}" for b in dev.mac) if dev is not None and dev.mac \
        else None
    details = getattr(dev, "details", None)
    if details is not None:
        from ovsd.netdev.vhost_user.show import summary
        d = details()
        info["vhost"] = {"state": d["state"], "mode": d["mode"], "socket": d["socket"],
                         "features": d["features"],
                         "queues": [(q["ring"], q["state"]) for q in d["queues"]],
                         "summary": summary(d)}
    if dev is not None and dev.type == "afxdp":
        st = dev.status()
        info["afxdp"] = {"xdp_mode": st["xdp-mode"], "requested": st["xdp-mode-requested"],
                         "n_rxq": dev.n_rxq, "use_need_wakeup": st["use-need-wakeup"] == "true",
                         "refused": st.get("xdp-modes-refused")}
    return info


def list_ports(switch: "Switch", bridge: str) -> dict:
    ofproto = _bridge(switch, bridge)
    db = switch.db
    names = []
    for port_uuid in db.get("Bridge", db.lookup("Bridge", bridge))["ports"]:
        name = db.get("Port", port_uuid)["name"]
        if name != bridge:  # the bridge's own port is not listed, as in ovs-vsctl
            names.append(name)
    return {"ports": [_port_info(switch, ofproto, n) for n in sorted(names)]}


def show(switch: "Switch", bridge: str) -> dict:
    ofproto = _bridge(switch, bridge)
    db = switch.db
    names = [db.get("Port", p)["name"]
             for p in db.get("Bridge", db.lookup("Bridge", bridge))["ports"]]
    ports = [_port_info(switch, ofproto, n) for n in names]
    ports.sort(key=lambda p: (p["ofport"] == OFPP_LOCAL, p["ofport"], p["name"]))
    lines = [f"{bridge}: n_tables:254, n_flows:{ofproto.n_rules()}"]
    for p in ports:
        num = "LOCAL" if p["ofport"] == OFPP_LOCAL else str(p["ofport"])
        lines.append(f" {num}({p['name']}): addr:{p['mac'] or '00:00:00:00:00:00'}, "
                     f"type:{p['type']}")
        lines.append(f"     state:      {p['state'].upper()}")
        if p["error"]:
            lines.append(f"     error:      {p['error']}")
        if "vhost" in p:
            lines.append(f"     {p['vhost']['summary']}")
        if "afxdp" in p:
            x = p["afxdp"]
            lines.append(f"     xdp-mode:   {x['xdp_mode']} (requested {x['requested']}), "
                         f"n_rxq={x['n_rxq']}, use-need-wakeup="
                         f"{str(x['use_need_wakeup']).lower()}")
        s = p["statistics"]
        if s:
            lines.append(f"     rx pkts={s['rx_packets']}, bytes={s['rx_bytes']}, "
                         f"drop={s['rx_dropped']}, errs={s['rx_errors']}")
            lines.append(f"     tx pkts={s['tx_packets']}, bytes={s['tx_bytes']}, "
                         f"drop={s['tx_dropped']}, errs={s['tx_errors']}")
    return {"bridge": bridge, "n_flows": ofproto.n_rules(), "ports": ports,
            "text": "\n".join(lines) + "\n"}


# -- the database ------------------------------------------------------------------------

def db_set(switch: "Switch", table: str, record: str, assignments: list[str]) -> dict:
    vsctl.db_set(switch.db, table, record, assignments)
    return {}


def db_get(switch: "Switch", table: str, record: str, columns: list[str],
           if_exists: bool = False) -> dict:
    text = vsctl.db_get(switch.db, table, record, columns, if_exists=if_exists)
    return {"text": text}


def db_list(switch: "Switch", table: str, records: list[str] | None = None,
            columns: list[str] | None = None) -> dict:
    text = vsctl.db_list(switch.db, table, records or (), columns)
    return {"text": text}


def db_remove(switch: "Switch", table: str, record: str, column: str,
              values: list[str]) -> dict:
    vsctl.db_remove(switch.db, table, record, column, values)
    return {}


def db_clear(switch: "Switch", table: str, record: str, columns: list[str]) -> dict:
    vsctl.db_clear(switch.db, table, record, columns)
    return {}


# -- flows ------------------------------------------------------------------------------

def _flow_error(e: Exception, what: str) -> RpcError:
    return RpcError(E_INVALID, f"{what}: {e}")


def add_flow(switch: "Switch", bridge: str, flow: str,
             protocol: str = PROTOCOL_DEFAULT) -> dict:
    ofproto = _bridge(switch, bridge)
    try:
        fm = parse_flow(flow, "add", protocol, ofproto.port_no)
        ofproto.add_flow(fm)
    except (FlowSyntaxError, OfprotoError) as e:
        raise _flow_error(e, f"bad flow {flow!r}") from None
    switch.save_flows()
    return {"n_flows": ofproto.n_rules()}


def add_flows(switch: "Switch", bridge: str, flows: list,
              protocol: str = PROTOCOL_DEFAULT) -> dict:
    """Add many flows, all or nothing.  ``flows`` holds strings or
    [line_number, text] pairs (line numbers appear in errors)."""
    ofproto = _bridge(switch, bridge)
    fms = []
    for i, item in enumerate(flows, 1):
        lineno, text = (item if isinstance(item, list) and len(item) == 2 else (i, item))
        if not isinstance(text, str):
            raise RpcError(E_INVALID, f"flow #{i} is not a string")
        try:
            fms.append((lineno, text, parse_flow(text, "add", protocol, ofproto.port_no)))
        except FlowSyntaxError as e:
            raise RpcError(E_INVALID, f"line {lineno}: bad flow {text!r}: {e}; "
                                      "no flow was added") from None
    saved = [(r.table_id, r) for r in ofproto.rules()]
    try:
        for lineno, text, fm in fms:
            try:
                ofproto.add_flow(fm)
            except OfprotoError as e:
                raise RpcError(E_INVALID, f"line {lineno}: {text!r}: {e}; "
                                          "no flow was added") from None
    except RpcError:
        for table in ofproto.tables:
            for r in list(table):
                table.remove(r)
        for table_id, r in saved:
            ofproto.tables[table_id].insert(r)
        ofproto.version += 1
        raise
    switch.save_flows()
    return {"added": len(fms), "n_flows": ofproto.n_rules()}


def mod_flows(switch: "Switch", bridge: str, flow: str, strict: bool = False,
              protocol: str = PROTOCOL_DEFAULT) -> dict:
    ofproto = _bridge(switch, bridge)
    try:
        fm = parse_flow(flow, "modify_strict" if strict else "modify", protocol,
                        ofproto.port_no)
        n = ofproto.modify_flows(fm, strict)
    except (FlowSyntaxError, OfprotoError) as e:
        raise _flow_error(e, f"bad flow {flow!r}") from None
    switch.save_flows()
    return {"modified": n}


def del_flows(switch: "Switch", bridge: str, match: str = "", strict: bool = False,
              protocol: str = PROTOCOL_DEFAULT) -> dict:
    ofproto = _bridge(switch, bridge)
    try:
        fm = parse_flow(match, "delete_strict" if strict else "delete", protocol,
                        ofproto.port_no)
        gone = ofproto.delete_flows(fm, strict)
    except (FlowSyntaxError, OfprotoError) as e:
        raise _flow_error(e, f"bad match {match!r}") from None
    switch.save_flows()
    return {"deleted": len(gone)}


def dump_flows(switch: "Switch", bridge: str, match: str = "",
               protocol: str = PROTOCOL_DEFAULT) -> dict:
    ofproto = _bridge(switch, bridge)
    try:
        fm = parse_flow(match, "dump", protocol, ofproto.port_no)
        rules = ofproto.dump_flows(fm)
    except (FlowSyntaxError, OfprotoError) as e:
        raise _flow_error(e, f"bad match {match!r}") from None
    now = time.time()
    lines = [format_flow_stats(r, protocol, now) for r in rules]
    flows = [{"table": r.table_id, "priority": r.priority, "cookie": r.cookie,
              "n_packets": r.n_packets, "n_bytes": r.n_bytes,
              "duration": round(now - r.created, 3), "text": line.strip()}
             for r, line in zip(rules, lines)]
    return {"flows": flows, "text": "".join(line + "\n" for line in lines)}


# -- trace ---------------------------------------------------------------------------------

def trace(switch: "Switch", bridge: str, flow: str, packet: str | None = None) -> dict:
    """ovs-appctl ofproto/trace: FLOW in flow syntax, or FLOW giving in_port
    (and nothing else needed) plus PACKET as hex."""
    ofproto = _bridge(switch, bridge)
    try:
        key = parse_trace_flow(flow, ofproto.port_no)
    except FlowSyntaxError as e:
        raise RpcError(E_INVALID, f"bad flow for trace: {e}") from None
    if packet is not None:
        frame = _frame(packet)
        key = extract_key(frame, K.get(key, "in_port")) | (key & ~K.PACKET_MASK)
    root = T.TraceNode(T.BRIDGE, f'bridge("{bridge}")')
    result = Xlate(ofproto, key, side_effects=False, trace=root).run()
    final = ("unchanged" if result.final_flow == key
             else format_flow_key(result.final_flow))
    shown = result.mask & K.PACKET_MASK
    if shown & K.FIELDS["vlan_tci"].mask == K.VLAN_CFI << K.FIELDS["vlan_tci"].offset:
        # Only "tagged or not" was read: OVS's datapath keys carry that in
        # their structure and its Megaflow line does not print it.
        shown &= ~K.FIELDS["vlan_tci"].mask
    megaflow = format_megaflow(Match(key & shown, shown))
    actions = format_odp_actions(result.actions)
    text = (f"Flow: {format_flow_key(key)}\n" + T.format_tree([root]) +
            f"\nFinal flow: {final}\nMegaflow: {megaflow}\nDatapath actions: {actions}\n")
    if result.error:
        text += f"\nTranslation failed ({result.error}), packet is dropped.\n"
    return {"text": text, "datapath_actions": actions, "megaflow": megaflow,
            "error": result.error}


# -- MAC learning and injection --------------------------------------------------------

def fdb_show(switch: "Switch", bridge: str) -> dict:
    ofproto = _bridge(switch, bridge)
    entries = ofproto.mac_table.entries()
    namer = lambda p: format_port(p, ofproto.port_name) if p == OFPP_LOCAL else str(p)  # noqa
    return {"entries": [{"port": e.port, "vlan": e.vlan, "age": e.age,
                         "mac": ":".join(f"{b:02x}" for b in e.mac.to_bytes(6, "big"))}
                        for e in entries],
            "text": format_fdb(entries, namer)}


def fdb_flush(switch: "Switch", bridge: str | None = None) -> dict:
    bridges = [_bridge(switch, bridge)] if bridge else list(switch.backer.bridges.values())
    n = sum(b.mac_table.flush() for b in bridges)
    for b in bridges:
        b.version += 1
    return {"flushed": n}


def _frame(hex_text: str) -> bytes:
    text = hex_text.strip().replace(" ", "")
    if text.startswith(("0x", "0X")):
        text = text[2:]
    try:
        frame = bytes.fromhex(text)
    except ValueError:
        raise RpcError(E_INVALID, "packet must be hexadecimal digits (two per byte, no "
                                  "separators), e.g. ffffffffffff0200000000010800...") from None
    if not MIN_FRAME <= len(frame) <= MAX_FRAME:
        raise RpcError(E_INVALID, f"packet is {len(frame)} bytes; an Ethernet frame needs "
                                  f"{MIN_FRAME} to {MAX_FRAME} bytes")
    return frame


def inject(switch: "Switch", bridge: str, port: str, packet: str) -> dict:
    """The frame enters the datapath on PORT and is fully processed (outputs
    written to pcap files) before this returns."""
    ofproto = _bridge(switch, bridge)
    frame = _frame(packet)
    iface = switch.ifaces.get(port)
    if iface is None or iface.bridge != bridge:
        raise _not_found("port", port, f"it is not a port of bridge {bridge}")
    if not isinstance(iface.netdev, DummyNetdev):
        raise RpcError(E_INVALID, f"port {port} is of type {iface.type}; inject works on "
                                  "dummy ports (add one with type=dummy)")
    odp_port = ofproto.ports[iface.ofport].odp_port
    if not iface.netdev.receive(frame):
        raise RpcError(E_FAILED, f"port {port}'s receive queue is full")
    before = {p: dp.netdev.stats.tx_packets for p, dp in switch.backer.dp.ports.items()}
    switch.backer.dp.poll_port(odp_port)
    sent = {switch.backer.dp.ports[p].name: dp.netdev.stats.tx_packets - before.get(p, 0)
            for p, dp in switch.backer.dp.ports.items()
            if dp.netdev.stats.tx_packets - before.get(p, 0)}
    return {"sent": sent}


def version(switch: "Switch") -> dict:
    from ovsd.switch import VERSION
    return {"version": VERSION}


# -- PMDs and the datapath -------------------------------------------------------------

def pmd_stats_show(switch: "Switch") -> dict:
    """ovs-appctl dpif-netdev/pmd-stats-show: per PMD and for the main thread."""
    from ovsd.dpif import perf
    entries, text = [], []
    for pmd in sorted(switch.pmds.pmds.values(), key=lambda p: p.core):
        c = perf.minus(pmd.counters, pmd.baseline)
        entries.append({"pmd_id": pmd.pmd_id, "core": pmd.core, "pid": pmd.pid,
                        "alive": pmd.alive, "restarts": pmd.restarts, **c})
        text.append(perf.format_pmd_stats(f"pmd thread numa_id 0 core_id {pmd.core}", c))
    main = perf.minus(switch.main_counters(), switch.main_baseline)
    entries.append({"pmd_id": None, "core": None, **main})
    text.append(perf.format_pmd_stats("main thread", main, with_times=False))
    return {"pmds": entries, "text": "".join(text)}


async def pmd_stats_clear(switch: "Switch") -> dict:
    await switch.pmds.clear_stats()
    switch.main_baseline = switch.main_counters()
    return {}


def vhost_show(switch: "Switch", port: str) -> dict:
    from ovsd.netdev.vhost_user.show import details_text
    iface = switch.ifaces.get(port)
    if iface is None:
        raise _not_found("port", port)
    if not iface.type.startswith("dpdkvhostuser"):
        raise RpcError(E_INVALID, f"port {port} is of type {iface.type}, not a vhost-user "
                                  "port (dpdkvhostuser or dpdkvhostuserclient)")
    if iface.netdev is None:
        raise RpcError(E_FAILED, f"port {port} could not be opened: {iface.error}")
    d = iface.netdev.details()
    return {**d, "text": details_text(d)}


def pmd_rxq_show(switch: "Switch") -> dict:
    from ovsd.dpif import perf
    pmds = []
    for pmd in sorted(switch.pmds.pmds.values(), key=lambda p: p.core):
        rxqs = [{"port": port, "qid": q[1], "busy_ns": busy,
                 "placed": pmd.rxq_why.get(q, "")}
                for q, (port, busy) in sorted(pmd.rxq_load.items(),
                                              key=lambda kv: (kv[1][0], kv[0][1]))]
        c = perf.minus(pmd.counters, pmd.baseline)
        pmds.append({"pmd_id": pmd.pmd_id, "core": pmd.core, "rxqs": rxqs,
                     "busy_ns": c["busy_ns"], "idle_ns": c["idle_ns"]})
    return {"pmds": pmds, "text": perf.format_rxq_show(pmds)}


async def dump_dp_flows(switch: "Switch") -> dict:
    """ovs-appctl dpctl/dump-flows: every datapath's megaflows, with their masks."""
    from ovsd.dpif.odp_actions import format_actions as fmt_actions
    from ovsd.dpif.odp_format import format_dp_flow
    now = switch.backer.dp.clock()
    sections, text = [], []
    main_flows = [format_dp_flow(f.key, f.mask, f.n_packets, f.n_bytes,
                                 (now - f.used) if f.used else -1.0, fmt_actions(f.actions))
                  for f in switch.backer.dp.flows()]
    for pmd, flows in await switch.pmds.dump_flows():
        lines = [format_dp_flow(int.from_bytes(f["key"], "big"),
                                int.from_bytes(f["mask"], "big"), f["packets"], f["bytes"],
                                f["used"], f["actions"]) for f in flows]
        sections.append({"pmd_id": pmd.pmd_id, "core": pmd.core, "flows": lines})
        text.append(f"flow-dump from pmd on cpu core: {pmd.core}\n")
        text.extend(line + "\n" for line in lines)
    sections.append({"pmd_id": None, "core": None, "flows": main_flows})
    text.append("flow-dump from the main thread:\n")
    text.extend(line + "\n" for line in main_flows)
    return {"datapaths": sections, "text": "".join(text)}


def drop_stats(switch: "Switch", target: str | None = None, all: bool = False) -> dict:
    """Packets dropped, by reason: in total and per port, for every port, the
    ports of bridge ``target`` or the port ``target``."""
    from ovsd.rpc import drop_stats as DS
    ports = DS.ports_of(switch, target)
    if ports is None:
        raise RpcError(E_NOT_FOUND, f"no bridge or port named {target}")
    return DS.report(DS.drop_counts(switch), ports, all)


from ovsd.rpc.capture import capture_read, capture_start, capture_stop  # noqa: E402
from ovsd.rpc.port_status import port_status  # noqa: E402


# Methods after which PMDs must have every change before the caller hears back.
_CHANGES = {"add_br", "del_br", "add_port", "del_port", "db_set", "db_remove", "db_clear",
            "add_flow", "add_flows", "mod_flows", "del_flows", "fdb_flush", "inject",
            "capture_start", "capture_stop"}
# Methods that report counters PMDs keep: ask them first.
_READS_STATS = {"dump_flows", "show", "list_ports", "fdb_show", "pmd_stats_show",
                "pmd_rxq_show", "vhost_show", "drop_stats", "port_status"}


def build_methods(switch: "Switch") -> dict:
    """The method table for the RPC server, bound to ``switch``."""
    import inspect

    def bind(name, fn):
        async def method(*args, **kwargs):
            if name in _READS_STATS:
                await switch.pmds.collect_stats()
            result = fn(switch, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if name in _CHANGES:
                await switch.settle()
            return result
        method.__signature__ = _without_switch(fn)
        method.__name__ = fn.__name__
        method.__doc__ = fn.__doc__
        method.__annotations__ = {k: v for k, v in getattr(fn, "__annotations__", {}).items()
                                  if k != "switch"}
        return method

    table = {
        "add_br": add_bridge, "del_br": del_bridge,
        "list_br": lambda s: {"bridges": sorted(s.backer.bridges)},
        "add_port": add_port, "del_port": del_port, "list_ports": list_ports,
        "show": show,
        "db_set": db_set, "db_get": db_get, "db_list": db_list, "db_remove": db_remove,
        "db_clear": db_clear,
        "add_flow": add_flow, "add_flows": add_flows, "mod_flows": mod_flows,
        "del_flows": del_flows, "dump_flows": dump_flows,
        "trace": trace, "fdb_show": fdb_show, "fdb_flush": fdb_flush, "inject": inject,
        "pmd_stats_show": pmd_stats_show, "pmd_stats_clear": pmd_stats_clear,
        "pmd_rxq_show": pmd_rxq_show, "dump_dp_flows": dump_dp_flows,
        "vhost_show": vhost_show, "drop_stats": drop_stats, "version": version,
        "port_status": port_status,
        "capture_start": capture_start, "capture_read": capture_read,
        "capture_stop": capture_stop,
    }
    return {name: bind(name, fn) for name, fn in table.items()}


def _without_switch(fn):
    import inspect
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]
    return sig.replace(parameters=params)
