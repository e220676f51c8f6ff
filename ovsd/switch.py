"""The running switch: the database, the bridges, the datapath, and the loop
that keeps them in step.

Every committed user change to the database triggers ``reconfigure`` (the
counterpart of ovs-vswitchd's bridge_reconfigure), which makes bridges and
ports match the database and writes back what it learned (``ofport``,
``error``, link state, ``cur_cfg``).  OpenFlow rules live in the bridges and
are saved beside the tables in the same database file after every change.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from dataclasses import dataclass

from ovsd.config import Config
from ovsd.dpif import perf
from ovsd.dpif.emc import DEFAULT_INSERT_INV_PROB
from ovsd.db.store import Database, DatabaseError, DatabaseLoadError, DatabaseLockedError
from ovsd.netdev.base import Netdev, NetdevError
from ovsd.capture import Captures
from ovsd.dpif.auto_lb import AutoLbConfig
from ovsd.netdev.registry import iface_types, open_netdev, set_run_dir
from ovsd.ofproto.backer import Backer
from ovsd.ofproto.fields import OFPP_LOCAL, OFPP_MAX, FlowSyntaxError
from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.mac_learning import DEFAULT_AGING, DEFAULT_MAX_ENTRIES
from ovsd.ofproto.normal_vlan import PortVlan
from ovsd.ofproto.ofproto import OfPort, Ofproto, OfprotoError
from ovsd.ofproto.persist import PersistError, decode_bridges, encode_bridges
from ovsd.pmds import PmdManager, parse_cpu_mask

log = logging.getLogger(__name__)

VERSION = "0.1.0"
DEFAULT_FLOW = "priority=0,actions=NORMAL"
EXPIRY_INTERVAL = 1.0
STATS_INTERVAL = 5.0
DEFAULT_MAX_IDLE_MS = 10_000  # other_config:max-idle, as in OVS
# Port types on an existing kernel interface: they go down when it is deleted
# and are reopened when an interface of that name exists again.
KERNEL_IFACE_TYPES = ("system", "afxdp")


class StartupError(Exception):
    pass


@dataclass(eq=False)
class Iface:
    """A port the switch has opened (or tried to)."""

    name: str
    bridge: str
    type: str
    options: dict
    netdev: Netdev | None = None
    ofport: int = -1
    error: str | None = None
    last_ofport: int = -1  # kept while the device is gone, to come back as it was
    retry_ifindex: int | None = None


def _options(row) -> dict[str, str]:
    return dict(row["options"])


def _ifindex(name: str) -> int | None:
    """The ifindex of interface ``name`` in the daemon's namespace, or None."""
    try:
        with open(f"/sys/class/net/{name}/ifindex") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


class Switch:
    def __init__(self, db: Database, cfg: Config | None = None):
        self.db = db
        self.cfg = cfg
        self.backer = Backer()
        self.ifaces: dict[str, Iface] = {}
        self._stored_flows = self._load_flows()
        self._readers: set[int] = set()
        self._tasks: list[asyncio.Task] = []
        self._server = None
        self.started = time.time()
        self.pmds = PmdManager(self)
        self.captures = Captures(self)
        self._settle_lock = asyncio.Lock()
        self.pmd_error: str | None = None
        self.main_baseline = perf.new_counters()
        db.add_listener(self._on_commit)
        if cfg is not None:
            set_run_dir(cfg.rundir)  # vhost sockets beside ovsd.sock; afxdp leftovers
        self.reconfigure()

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open(cls, cfg: Config) -> "Switch":
        fresh = not os.path.exists(cfg.db_path)
        try:
            db = Database(cfg.db_path)
        except DatabaseLockedError as e:
            raise StartupError(f"{e}; is another ovsd using it?") from None
        except DatabaseLoadError as e:
            raise StartupError(f"{e}; move the file away to start with an empty "
                               "configuration (it is not touched)") from None
        except (DatabaseError, OSError) as e:
            raise StartupError(f"cannot open the database {cfg.db_path}: {e}") from None
        switch = cls(db, cfg)
        if fresh:
            try:
                switch.seed(cfg)
            except StartupError:
                # Leave no half-seeded database behind: the next start seeds afresh.
                switch.discard()
                os.unlink(cfg.db_path)
                raise
        return switch

    def discard(self) -> None:
        """Close what opening the switch opened (it never served)."""
        for iface in list(self.ifaces.values()):
            self._del_iface(iface)
        self.db.close()

    def seed(self, cfg: Config) -> None:
        """Fill a fresh database from the configuration file."""
        from ovsd.rpc import methods
        from ovsd.rpc.server import RpcError
        if cfg.other_config:
            with self.db.transaction() as txn:
                root = txn.root_uuid
                merged = {**txn.get("Open_vSwitch", root)["other_config"], **cfg.other_config}
                txn.update("Open_vSwitch", root, {"other_config": merged})
        for seed in cfg.bridges:
            try:
                methods.add_bridge(self, seed.name)
            except RpcError as e:
                raise StartupError(f"configuration: bridge {seed.name!r}: {e}") from None
            if seed.flows is not None and seed.flows != [DEFAULT_FLOW]:
                ofproto = self.backer.bridges[seed.name]
                for rule in list(ofproto.rules()):
                    ofproto.tables[rule.table_id].remove(rule)
                for text in seed.flows:
                    try:
                        ofproto.add_flow(parse_flow(text, "add", "OpenFlow13",
                                                    ofproto.port_no))
                    except (FlowSyntaxError, OfprotoError) as e:
                        raise StartupError(f"configuration: bridge {seed.name}: bad flow "
                                           f"{text!r}: {e}") from None
                self.save_flows()
        log.info("fresh database seeded from the configuration: %d bridge(s)",
                 len(cfg.bridges))

    # -- flows ----------------------------------------------------------------------

    def _load_flows(self) -> dict:
        try:
            return decode_bridges(self.db.get_aux("openflow"))
        except PersistError as e:
            raise StartupError(f"{self.db.path}: {e}") from None

    def save_flows(self) -> None:
        self.db.set_aux("openflow", encode_bridges(self.backer.bridges.values()))

    # -- reconfiguration ----------------------------------------------------------------

    def _on_commit(self, changes) -> None:
        if changes.writeback or not changes.rows:
            return
        self.reconfigure()
        self._schedule_settle()

    def _schedule_settle(self) -> None:
        """For changes nobody awaits (the RPC layer awaits settle() itself)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.create_task(self.settle())

    def reconfigure(self) -> None:
        """Make bridges and ports match the database, then report back."""
        db = self.db
        wanted: dict[str, dict] = {}
        other_config: dict[str, dict] = {}
        for br_row in db.rows("Bridge").values():
            ports = {}
            for port_uuid in br_row["ports"]:
                port_row = db.get("Port", port_uuid)
                if port_row is None:
                    continue
                vlan = PortVlan.from_port_columns(port_row["tag"], port_row["trunks"],
                                                  port_row["vlan_mode"])
                for iface_uuid in port_row["interfaces"]:
                    iface_row = db.get("Interface", iface_uuid)
                    if iface_row is not None:
                        ports[iface_row["name"]] = (iface_uuid, iface_row, vlan)
            wanted[br_row["name"]] = ports
            other_config[br_row["name"]] = br_row["other_config"]

        for name in [b for b in self.backer.bridges if b not in wanted]:
            self._del_bridge(name)
        for name, ports in wanted.items():
            ofproto = self.backer.bridges.get(name)
            if ofproto is None:
                ofproto = self._add_bridge(name)
            for iface in [i for i in self.ifaces.values() if i.bridge == name]:
                if iface.name not in ports:
                    self._del_iface(iface)
            for iname, (_, row, vlan) in ports.items():
                self._sync_iface(ofproto, row, vlan)
            self._configure_mac_table(ofproto, other_config[name])
        self._write_back()

    def _configure_mac_table(self, ofproto: Ofproto, other_config) -> None:
        """Bridge other_config:mac-aging-time and mac-table-size, as in OVS."""
        table = ofproto.mac_table
        for key, attr, default, low in (("mac-aging-time", "aging", DEFAULT_AGING, 1),
                                        ("mac-table-size", "max_entries",
                                         DEFAULT_MAX_ENTRIES, 10)):
            text = other_config.get(key)
            value = default
            if text is not None:
                try:
                    value = max(int(text), low)
                except ValueError:
                    log.warning("bridge %s: other_config:%s=%r is not a number; using %d",
                                ofproto.name, key, text, default)
            if getattr(table, attr) != value:
                setattr(table, attr, value)
                ofproto.version += 1

    def _add_bridge(self, name: str) -> Ofproto:
        ofproto = Ofproto(name)
        self.backer.add_bridge(ofproto)
        stored = self._stored_flows.pop(name, None)
        if stored is None:
            ofproto.add_flow(parse_flow(DEFAULT_FLOW, "add", "OpenFlow10", ofproto.port_no))
        else:
            for rule in stored:
                ofproto.tables[rule.table_id].insert(rule)
        log.info("bridge %s: created with %d flow(s)", name, ofproto.n_rules())
        return ofproto

    def _del_bridge(self, name: str) -> None:
        for iface in [i for i in self.ifaces.values() if i.bridge == name]:
            self._del_iface(iface)
        self.backer.del_bridge(name)
        log.info("bridge %s: deleted", name)

    def _sync_iface(self, ofproto: Ofproto, row, vlan: PortVlan) -> None:
        name, type_ = row["name"], row["type"] or "system"
        options = _options(row)
        iface = self.ifaces.get(name)
        requested = row["ofport_request"]
        # A port whose ofport_request changed is renumbered by re-adding it, as OVS does.
        renumbered = (iface is not None and iface.netdev is not None
                      and requested is not None and requested != iface.ofport)
        if iface is not None and (iface.bridge != ofproto.name or iface.type != type_
                                  or renumbered):
            self._del_iface(iface)
            iface = None
        if iface is None:
            iface = Iface(name, ofproto.name, type_, options)
            self.ifaces[name] = iface
            self._open_iface(ofproto, iface, row, vlan)
            return
        if iface.netdev is None:
            gone = iface.type in KERNEL_IFACE_TYPES and _ifindex(name) is None
            if options != iface.options or (iface.error and not gone):
                iface.options = options
                self._open_iface(ofproto, iface, row, vlan)
            return
        if options != iface.options:
            try:
                iface.netdev.reconfigure(options)
                iface.options = options
                iface.error = None
            except NetdevError as e:
                iface.error = str(e)
                log.warning("port %s: %s", name, e)
        port = ofproto.ports.get(iface.ofport)
        if port is not None and port.vlan != vlan:
            port.vlan = vlan
            ofproto.version += 1

    def _open_iface(self, ofproto: Ofproto, iface: Iface, row, vlan: PortVlan) -> None:
        try:
            netdev = open_netdev(iface.type, iface.name, iface.options)
        except NetdevError as e:
            iface.error, iface.netdev, iface.ofport = str(e), None, -1
            log.warning("port %s: %s", iface.name, e)
            return
        except Exception as e:
            # A bug in a port type must cost that port, not the reconfiguration.
            log.exception("port %s: opening it failed", iface.name)
            iface.error = f"opening the port failed unexpectedly: {type(e).__name__}: {e}"
            iface.netdev, iface.ofport = None, -1
            return
        ofport = self._choose_ofport(ofproto, iface, row)
        if ofport is None:
            netdev.close()
            iface.error = (f"ofport_request {row['ofport_request']} is already in use on "
                           f"bridge {ofproto.name}")
            iface.ofport = -1
            log.warning("port %s: %s", iface.name, iface.error)
            return
        port = OfPort(ofport, iface.name, 0, iface.type, vlan)
        self.backer.add_port(ofproto, port, netdev)
        iface.netdev, iface.ofport, iface.error = netdev, ofport, None
        iface.last_ofport = ofport
        self._watch(netdev, port.odp_port)
        log.info("bridge %s: added port %s (type %s) as OpenFlow port %d",
                 ofproto.name, iface.name, iface.type, ofport)

    def _choose_ofport(self, ofproto: Ofproto, iface: Iface, row) -> int | None:
        if iface.type == "internal" and iface.name == ofproto.name:
            return OFPP_LOCAL
        requested = row["ofport_request"]
        if requested is not None:
            return requested if requested not in ofproto.ports else None
        if 0 < iface.last_ofport < OFPP_MAX and iface.last_ofport not in ofproto.ports:
            return iface.last_ofport
        current = row["ofport"]
        if current is not None and 0 < current < OFPP_MAX and current not in ofproto.ports:
            return current  # keep the number across restarts, as OVS does
        taken = {r for r in (self._requested_ofports(ofproto.name))}
        return next(n for n in range(1, OFPP_MAX)
                    if n not in ofproto.ports and n not in taken)

    def _requested_ofports(self, bridge: str) -> set[int]:
        """Numbers other interfaces of the bridge ask for: never hand them out."""
        out = set()
        br_uuid = self.db.lookup("Bridge", bridge)
        if br_uuid is None:
            return out
        for port_uuid in self.db.get("Bridge", br_uuid)["ports"]:
            for iface_uuid in self.db.get("Port", port_uuid)["interfaces"]:
                req = self.db.get("Interface", iface_uuid)["ofport_request"]
                if req is not None:
                    out.add(req)
        return out

    def _del_iface(self, iface: Iface) -> None:
        self.ifaces.pop(iface.name, None)
        if iface.netdev is None:
            return
        self._close_iface(iface)
        log.info("bridge %s: deleted port %s", iface.bridge, iface.name)

    def _close_iface(self, iface: Iface, reason: str | None = None) -> None:
        """Take the device out of the datapath and close it; the port stays
        configured (and reports ``reason`` as its error) until deleted."""
        self.captures.port_gone(iface.name)
        ofproto = self.backer.bridges.get(iface.bridge)
        port = ofproto.ports.get(iface.ofport) if ofproto else None
        if port is not None:
            self._unwatch(port.odp_port, iface.netdev)
            self.backer.del_port(ofproto, iface.ofport)
        iface.netdev.close()
        iface.netdev = None
        iface.error = reason

    def check_ports(self) -> None:
        """Notice interfaces deleted under system and afxdp ports (the port goes
        down, the others keep forwarding) and interfaces that came back
        (reopened)."""
        changed = False
        for iface in list(self.ifaces.values()):
            if iface.type not in KERNEL_IFACE_TYPES:
                continue
            present = _ifindex(iface.name)
            if iface.netdev is not None:
                if present != getattr(iface.netdev, "ifindex", present):
                    log.warning("port %s: the interface %s disappeared; the port is down "
                                "until an interface of that name exists again",
                                iface.name, iface.name)
                    self._close_iface(iface, f"the interface {iface.name} disappeared "
                                             "(the port comes back when it exists again)")
                    changed = True
            elif present is not None and present != iface.retry_ifindex:
                iface.retry_ifindex = present  # one try per new interface, no log storm
                changed = True
        if changed:
            self.reconfigure()
            self._schedule_settle()

    def _write_back(self) -> None:
        db = self.db
        updates = []
        for uid, row in db.rows("Interface").items():
            iface = self.ifaces.get(row["name"])
            if iface is None:
                continue
            values = {"ofport": iface.ofport, "error": iface.error}
            dev = iface.netdev
            if dev is not None:
                values.update(admin_state="up",
                              link_state="up" if dev.link_up else "down",
                              status=dev.status())
                if dev.mac:
                    values["mac_in_use"] = ":".join(f"{b:02x}" for b in dev.mac)
            else:
                values.update(admin_state="down", link_state="down")
            updates.append(("Interface", uid, values))
        root = db.root
        updates.append(("Open_vSwitch", db.root_uuid, {
            "cur_cfg": root["next_cfg"], "ovs_version": VERSION,
            "iface_types": frozenset(iface_types()),
            "datapath_types": frozenset({"netdev"})}))
        db.writeback(updates)

    def write_stats(self) -> None:
        updates = []
        for uid, row in self.db.rows("Interface").items():
            iface = self.ifaces.get(row["name"])
            if iface is not None and iface.netdev is not None:
                updates.append(("Interface", uid,
                                {"statistics": iface.netdev.stats.as_dict()}))
        if updates:
            self.db.writeback(updates)

    # -- ports the control process polls -------------------------------------------------

    def _watch(self, netdev: Netdev, odp_port: int) -> None:
        control_tx = getattr(netdev, "set_control_tx", None)
        if control_tx is not None:  # afxdp: only PMDs hold its rings
            control_tx(functools.partial(self.pmds.send_tx, odp_port))
            return
        attach = getattr(netdev, "attach", None)
        if attach is not None:  # vhost-user: serve its socket on the event loop
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # not serving yet: start() attaches it
            from ovsd.netdev.vhost_user.device import Hooks
            attach(Hooks(sync=self.pmds.sync,
                         tx=functools.partial(self.pmds.send_tx, odp_port)))
            return
        fileno = getattr(netdev, "fileno", None)
        if fileno is None or netdev.pmd_polled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving yet: start() registers it
        loop.add_reader(fileno(), self._poll, odp_port)
        self._readers.add(odp_port)

    def _unwatch(self, odp_port: int, netdev: Netdev) -> None:
        if odp_port in self._readers:
            self._readers.discard(odp_port)
            asyncio.get_running_loop().remove_reader(netdev.fileno())

    def _poll(self, odp_port: int) -> None:
        if odp_port in self.backer.dp.ports:
            self.backer.dp.poll_port(odp_port)

    # -- serving ---------------------------------------------------------------------------

    async def start(self, sock_path: str) -> None:
        from ovsd.rpc.methods import ERROR_CODES, build_methods
        from ovsd.rpc.server import RpcServer
        for port in self.backer.dp.ports.values():
            self._watch(port.netdev, port.port_no)
        await self.settle()
        self._server = RpcServer(build_methods(self), sock_path, error_codes=ERROR_CODES)
        await self._server.start()
        self._tasks = [asyncio.create_task(self._periodic(EXPIRY_INTERVAL, self.expire)),
                       asyncio.create_task(self._periodic(EXPIRY_INTERVAL, self.check_ports)),
                       asyncio.create_task(self._periodic(EXPIRY_INTERVAL,
                                                          self.captures.expire)),
                       asyncio.create_task(self._periodic(STATS_INTERVAL, self.write_stats)),
                       asyncio.create_task(self._periodic(1.0, self.pmds.auto_lb_check))]

    # -- PMDs --------------------------------------------------------------------------

    def _datapath_config(self) -> dict:
        """other_config knobs of the datapath, as OVS names them."""
        oc = self.db.root["other_config"]
        cfg = {}
        for key, name, default, low, high in (
                ("emc-insert-inv-prob", "emc_insert_inv_prob", DEFAULT_INSERT_INV_PROB,
                 0, 1 << 32),
                ("max-idle", "max_idle", DEFAULT_MAX_IDLE_MS, 100, 1 << 31)):
            text = oc.get(key)
            value = default
            if text is not None:
                try:
                    value = min(max(int(text), low), high)
                except ValueError:
                    log.warning("other_config:%s=%r is not a number; using %d",
                                key, text, default)
            cfg[name] = value
        mode = oc.get("pmd-rxq-assign", "roundrobin")
        if mode not in ("roundrobin", "cycles"):
            log.warning("other_config:pmd-rxq-assign=%r is not roundrobin or cycles; "
                        "using roundrobin", mode)
            mode = "roundrobin"
        cfg["rxq_assign"] = mode
        self.pmds.auto_lb = AutoLbConfig.from_other_config(oc)
        return cfg

    def _pmd_cores(self) -> list[int]:
        text = self.db.root["other_config"].get("pmd-cpu-mask")
        try:
            return parse_cpu_mask(text, os.sched_getaffinity(0))
        except ValueError as e:
            if self.pmd_error != str(e):
                log.error("%s; keeping the PMDs as they are", e)
            self.pmd_error = str(e)
            return sorted({p.core for p in self.pmds.pmds.values()}) or \
                parse_cpu_mask(None, os.sched_getaffinity(0))

    def main_counters(self) -> dict:
        """The control process's datapath (dummy and internal ports), OVS's main thread."""
        dp = self.backer.dp
        c = perf.pmd_counters(dp.stats, 0, 0, 0)
        c["subtable_probes"] = dp.megaflows.subtable_probes
        return c

    async def settle(self) -> None:
        """Bring PMDs in line with the configuration and push every change to
        them; when this returns, no PMD forwards by an older state."""
        # One at a time: a commit's own settle task and the RPC that made the
        # commit both call this, and PMD starts and stops must not interleave.
        async with self._settle_lock:
            await self._settle()

    async def _settle(self) -> None:
        self.pmd_error = None
        cfg = self._datapath_config()
        self.backer.dp.emc.insert_inv_prob = cfg["emc_insert_inv_prob"]
        self.pmds.config = cfg
        needed = any(i.netdev is not None and i.netdev.pmd_polled
                     for i in self.ifaces.values())
        await self.pmds.set_cores(self._pmd_cores() if needed else [])

    async def _periodic(self, interval: float, fn) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                fn()
            except Exception:
                log.exception("periodic task %s failed", fn.__name__)

    def expire(self) -> None:
        self.backer.dp.expire(self.pmds.config.get("max_idle", DEFAULT_MAX_IDLE_MS) / 1000)
        self.backer.dp.megaflows.rerank()
        now = time.time()
        changed = False
        for ofproto in self.backer.bridges.values():
            for rule, why in ofproto.expire(now):
                changed = True
                log.debug("bridge %s: flow expired (%s timeout)", ofproto.name, why)
        if changed:
            self.save_flows()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            await self._server.close()
        await self.pmds.close()
        for iface in list(self.ifaces.values()):
            self._del_iface(iface)
        self.db.close()
