"""The PMD supervisor in the control process.

Starts one PMD process per core of ``other_config:pmd-cpu-mask``, keeps each
one's replica of the bridges in step with the control process's (rule,
port and MAC changes are pushed as differences), assigns rx queues to PMDs
and moves them when ports or PMDs change, merges what PMDs report (rule
counters, learned MACs, their own counters), and restarts a PMD that dies.

``sync()`` pushes every pending change and waits until each PMD has
acknowledged it: when it returns, no PMD will forward a packet by the old
state.  The RPC layer awaits it before answering a request that changed
something.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import ovsd
from ovsd.dpif import perf
from ovsd.dpif.channel import Channel, ChannelClosed
from ovsd.dpif.auto_lb import AutoLbConfig, plan
from ovsd.dpif.rxq_sched import assign_rxqs
from ovsd.ofproto.mac_learning import FLUSH, LEARN
from ovsd.ofproto.persist import encode_rule

log = logging.getLogger(__name__)

RULES_PER_MESSAGE = 100
RESTART_DELAY = 0.5
HELLO_TIMEOUT = 30.0
ACK_TIMEOUT = 30.0

#: The directory the running ovsd package was imported from.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ovsd.__file__)))


def parse_cpu_mask(text: str | None, online: set[int]) -> list[int]:
    """Cores of a pmd-cpu-mask ("0x6", "6"): always hex, as OVS reads it.
    Without a mask: one PMD on the highest online core (the others are left
    to the control process and the host)."""
    if not text:
        return [max(online)]
    try:
        mask = int(text, 16)
    except ValueError:
        raise ValueError(f"pmd-cpu-mask {text!r} is not a hexadecimal CPU mask "
                         "(e.g. 0x2 for core 1)") from None
    cores = [c for c in range(mask.bit_length()) if mask >> c & 1]
    missing = [c for c in cores if c not in online]
    if missing:
        raise ValueError(f"pmd-cpu-mask {text} names core(s) {missing} that this process "
                         f"cannot use (usable cores: {sorted(online)})")
    return cores


def _pmd_port_type(type_: str, tx_info: dict) -> str:
    """How a PMD transmits on a port: itself (system ports with their tx
    info, vhost-user ports through their shared rings) or via the control
    process ("control": dummy and internal ports)."""
    if tx_info or type_ in ("dpdkvhostuser", "dpdkvhostuserclient"):
        return type_
    return "control"


@dataclass(eq=False)
class Pmd:
    pmd_id: int
    core: int
    proc: subprocess.Popen | None = None
    channel: Channel | None = None
    pid: int = 0
    ready: asyncio.Future | None = None
    alive: bool = False
    rules: dict = field(default_factory=dict)  # bridge -> {rule id: rev} as sent
    ports: dict = field(default_factory=dict)  # (bridge, ofport) -> info as sent
    bridges: set = field(default_factory=set)
    rxqs: dict = field(default_factory=dict)  # (odp, qid) polled -> socket epoch
    mac_seq: dict = field(default_factory=dict)  # bridge -> MAC journal seq sent
    config: dict = field(default_factory=dict)  # datapath knobs as sent
    vhost: dict = field(default_factory=dict)  # odp -> (epoch, tx rank, tx count) sent
    taps: list = field(default_factory=list)  # capture taps as sent
    rxq_why: dict = field(default_factory=dict)  # (odp, qid) -> why it was placed here
    counters: dict = field(default_factory=perf.new_counters)
    baseline: dict = field(default_factory=perf.new_counters)  # pmd-stats-clear
    rxq_load: dict = field(default_factory=dict)  # (odp, qid) -> (port, busy_ns)
    n_flows: int = 0
    started: float = 0.0
    restarts: int = 0


class PmdManager:
    def __init__(self, switch):
        self.switch = switch
        #: (port name, drops.* reason) -> packets PMDs dropped (their reports).
        self.drops: Counter = Counter()
        self.pmds: dict[int, Pmd] = {}
        self._seq = itertools.count(1)
        self._waiters: dict[int, tuple[asyncio.Future, set[int]]] = {}
        self._flow_replies: dict[int, list] = {}
        self._releases: dict[tuple[int, int], asyncio.Future] = {}
        # Where queues of stopped PMDs were, for their next owner.
        self._positions: dict[tuple, tuple[int, int]] = {}
        self._lock = asyncio.Lock()
        self._closing = False
        self.error: str | None = None
        self.config: dict = {}
        self.taps: list[dict] = []  # running captures (ovsd.capture)
        self.auto_lb = AutoLbConfig()
        self._lb_mark: tuple[float, dict] | None = None  # (when, queue busy ns) last check
        self._lb_forced: tuple[dict, str] | None = None  # a placement auto-lb chose

    # -- life cycle ---------------------------------------------------------------

    async def set_cores(self, cores: list[int]) -> None:
        """Have exactly one PMD per core in ``cores``."""
        wanted = set(cores)
        for pmd in [p for p in self.pmds.values() if p.core not in wanted]:
            self.pmds.pop(pmd.pmd_id, None)
            await self._stop(pmd)
        have = {p.core for p in self.pmds.values()}
        for core in sorted(wanted - have):
            pmd_id = next(i for i in itertools.count() if i not in self.pmds)
            pmd = Pmd(pmd_id, core)
            self.pmds[pmd_id] = pmd
            await self._start(pmd)
        await self.sync()

    async def _start(self, pmd: Pmd) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = Channel.pair()
        # -P: `python -m` would put the working directory first on sys.path,
        # and a PMD started from a directory holding another `ovsd` package
        # would run that code (it did: "PMD on core 1 did not start").  The
        # PMD imports the package the daemon itself was imported from.
        cmd = [sys.executable, "-P", "-m", "ovsd.pmd_main", "--fd", str(theirs.fileno()),
               "--pmd-id", str(pmd.pmd_id), "--core", str(pmd.core),
               "--log-level", logging.getLevelName(logging.getLogger().level).lower()]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")))))
        pmd.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], close_fds=True, env=env)
        theirs.close()
        pmd.channel = ours
        pmd.ready = loop.create_future()
        pmd.rules, pmd.ports, pmd.bridges, pmd.rxqs = {}, {}, set(), {}
        pmd.mac_seq = {}
        pmd.config = {}
        pmd.vhost = {}
        pmd.taps = []
        pmd.started = time.monotonic()
        loop.add_reader(ours.fileno(), self._on_readable, pmd)
        try:
            await asyncio.wait_for(asyncio.shield(pmd.ready), HELLO_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("pmd %d (core %d) did not start within %d s", pmd.pmd_id, pmd.core,
                      HELLO_TIMEOUT)
            self._reap(pmd)
            raise RuntimeError(f"PMD on core {pmd.core} did not start") from None
        pmd.alive = True
        log.info("pmd %d started on core %d (pid %d)", pmd.pmd_id, pmd.core, pmd.pid)

    async def _stop(self, pmd: Pmd) -> None:
        if pmd.alive:
            await self._release_all(pmd)
            try:
                self._send(pmd, {"t": "stop"})
            except ChannelClosed:
                pass
        self._reap(pmd, wait=True)

    def _reap(self, pmd: Pmd, wait: bool = False) -> None:
        pmd.alive = False
        if pmd.channel is not None:
            try:
                asyncio.get_running_loop().remove_reader(pmd.channel.fileno())
            except (RuntimeError, ValueError):
                pass
            pmd.channel.close()
            pmd.channel = None
        if pmd.proc is not None:
            try:
                pmd.proc.wait(timeout=5 if wait else 0.5)
            except subprocess.TimeoutExpired:
                pmd.proc.kill()
                pmd.proc.wait()
            pmd.proc = None
        for fut, pending in self._waiters.values():
            pending.discard(pmd.pmd_id)
            if not pending and not fut.done():
                fut.set_result(None)

    async def close(self) -> None:
        self._closing = True
        for pmd in list(self.pmds.values()):
            await self._stop(pmd)
        self.pmds.clear()

    # -- messages from PMDs ---------------------------------------------------------

    def _on_readable(self, pmd: Pmd) -> None:
        try:
            while pmd.channel is not None:
                got = pmd.channel.recv(block=False)
                if got is None:
                    return
                msg, fds = got
                for fd in fds:
                    os.close(fd)
                self._dispatch(pmd, msg)
        except ChannelClosed:
            self._died(pmd)

    def _dispatch(self, pmd: Pmd, msg: dict) -> None:
        kind = msg["t"]
        if kind == "hello":
            pmd.pid = msg["pid"]
            if not pmd.ready.done():
                pmd.ready.set_result(None)
        elif kind == "ack":
            waiter = self._waiters.get(msg["seq"])
            if waiter is not None:
                fut, pending = waiter
                pending.discard(pmd.pmd_id)
                if not pending and not fut.done():
                    fut.set_result(None)
        elif kind == "stats":
            self._take_stats(pmd, msg)
        elif kind == "learned":
            self._take_learned(msg["learned"])
        elif kind == "captured":
            self.switch.captures.deliver(msg["taps"])
        elif kind == "tx":
            frames = msg["frames"]
            self.switch.backer.dp.transmit({msg["odp"]: frames})
        elif kind == "flows":
            self._flow_replies.setdefault(msg["seq"], []).append((pmd, msg))
        elif kind == "vhost_error":
            netdev = self._vhost_netdev(msg["odp"])
            if netdev is not None:
                netdev.guest_error(msg["reason"])
        elif kind == "rxq_released":
            fut = self._releases.pop((msg["odp"], msg["qid"]), None)
            if fut is not None and not fut.done():
                fut.set_result((msg["block"], msg["skip"]))
        else:
            log.warning("pmd %d sent an unknown message %r", pmd.pmd_id, kind)

    def _take_stats(self, pmd: Pmd, msg: dict) -> None:
        pmd.counters = msg["counters"]
        pmd.n_flows = msg["n_flows"]
        pmd.rxq_load = {(q["odp"], q["qid"]): (q["port"], q["busy_ns"]) for q in msg["rxqs"]}
        index = {}
        for ofproto in self.switch.backer.bridges.values():
            index.update(ofproto.rule_index())
        for rule_id, packets, n_bytes, used in msg["credits"]:
            rule = index.get(rule_id)
            if rule is not None:
                rule.credit(packets, n_bytes, time.time())
        self._take_learned(msg["learned"])
        ports = self.switch.backer.dp.ports
        for odp, reason, n in msg.get("drops", ()):
            port = ports.get(odp)
            self.drops[(port.name if port is not None else f"odp port {odp}", reason)] += n
        # Ports whose rings only PMDs touch (vhost-user, afxdp): their counts.
        for odp, *counts in msg.get("ports", ()):
            port = self.switch.backer.dp.ports.get(odp)
            if port is not None and port.netdev.pmd_counted:
                port.netdev.stats.add_counts(*counts)

    def _vhost_netdev(self, odp: int):
        port = self.switch.backer.dp.ports.get(odp)
        netdev = port.netdev if port is not None else None
        return netdev if hasattr(netdev, "vhost_info") else None

    def _take_learned(self, learned) -> None:
        changed = False
        bridges = self.switch.backer.bridges
        for bridge, mac, vlan, port in learned:
            ofproto = bridges.get(bridge)
            if ofproto is not None and ofproto.mac_table.learn(mac, vlan, port):
                changed = True
        if changed:
            self.switch.backer.changed()
            self.request_sync()

    def _died(self, pmd: Pmd) -> None:
        if not pmd.alive:
            return
        proc = pmd.proc
        rc = proc.poll() if proc else None
        if rc is None and proc is not None:
            try:
                rc = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                rc = None
        how = (f"killed by signal {-rc}" if rc is not None and rc < 0
               else f"exit status {rc}" if rc is not None else "channel closed")
        self._reap(pmd)
        if self._closing or pmd.pmd_id not in self.pmds:
            return
        log.error("pmd %d (core %d, pid %d) died (%s); restarting it", pmd.pmd_id,
                  pmd.core, pmd.pid, how)
        pmd.restarts += 1
        asyncio.get_running_loop().create_task(self._restart(pmd))

    async def _restart(self, pmd: Pmd) -> None:
        await asyncio.sleep(RESTART_DELAY)
        if self._closing or self.pmds.get(pmd.pmd_id) is not pmd:
            return
        try:
            await self._start(pmd)
        except Exception as e:
            log.error("pmd %d could not be restarted: %s; trying again", pmd.pmd_id, e)
            asyncio.get_running_loop().create_task(self._restart(pmd))
            return
        await self.sync()

    # -- pushing state to PMDs ---------------------------------------------------------

    def _send(self, pmd: Pmd, msg: dict, fds: list[int] = ()) -> None:
        if pmd.channel is None:
            raise ChannelClosed("pmd is not running")
        pmd.channel.send(msg, fds)

    def request_sync(self) -> None:
        """Push changes soon (for changes that no caller waits for)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.create_task(self.sync())

    async def sync(self) -> None:
        """Push every change to every PMD and wait until all have applied it."""
        async with self._lock:
            live = [p for p in self.pmds.values() if p.alive]
            for pmd in live:
                try:
                    self._push(pmd)
                except ChannelClosed:
                    self._died(pmd)
            await self._place_rxqs()
            await self._barrier([p for p in live if p.alive])

    async def _barrier(self, pmds: list[Pmd], kind: str = "barrier") -> None:
        if not pmds:
            return
        seq = next(self._seq)
        fut = asyncio.get_running_loop().create_future()
        self._waiters[seq] = (fut, {p.pmd_id for p in pmds})
        try:
            for pmd in pmds:
                try:
                    self._send(pmd, {"t": kind, "seq": seq})
                except ChannelClosed:
                    self._died(pmd)
            await asyncio.wait_for(fut, ACK_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("PMDs did not acknowledge a change within %d s", ACK_TIMEOUT)
        finally:
            self._waiters.pop(seq, None)

    def set_taps(self, taps: list[dict]) -> None:
        """Capture taps for every PMD, sent at once (a capture should not wait
        for the next change) and again to PMDs that start later."""
        self.taps = taps
        for pmd in self.pmds.values():
            if pmd.alive:
                try:
                    self._push_taps(pmd)
                except ChannelClosed:
                    self._died(pmd)

    def _push_taps(self, pmd: Pmd) -> None:
        if pmd.taps != self.taps:
            self._send(pmd, {"t": "taps", "taps": self.taps})
            pmd.taps = list(self.taps)

    def _push(self, pmd: Pmd) -> None:
        if pmd.config != self.config:
            self._send(pmd, {"t": "config", **self.config})
            pmd.config = dict(self.config)
        self._push_taps(pmd)
        backer = self.switch.backer
        for name in sorted(pmd.bridges - set(backer.bridges)):
            self._send(pmd, {"t": "bridge_del", "name": name})
            pmd.bridges.discard(name)
            pmd.rules.pop(name, None)
            for key in [k for k in pmd.ports if k[0] == name]:
                del pmd.ports[key]
        for name, ofproto in backer.bridges.items():
            if name not in pmd.bridges:
                self._send(pmd, {"t": "bridge_add", "name": name})
                pmd.bridges.add(name)
                pmd.rules[name] = {}
                pmd.mac_seq[name] = -1  # unknown: start from the whole table
            self._push_ports(pmd, ofproto)
            self._push_rules(pmd, ofproto)
        self._push_macs(pmd)
        self._push_vhost(pmd)

    def _push_vhost(self, pmd: Pmd) -> None:
        """Each vhost-user port's memory and rings, when they changed; every
        PMD gets them (every PMD may transmit to the port)."""
        rank, n_live = self._tx_rank(pmd)
        present = set()
        for odp, port in self.switch.backer.dp.ports.items():
            netdev = port.netdev
            if not hasattr(netdev, "vhost_info"):
                continue
            present.add(odp)
            sent = (netdev.epoch, rank, n_live)
            if pmd.vhost.get(odp) == sent:
                continue
            info, fds = netdev.vhost_info()
            self._send(pmd, {"t": "vhost", "odp": odp, "name": netdev.name,
                             "tx_rank": rank, "tx_n": n_live, **info}, fds)
            pmd.vhost[odp] = sent
        for odp in set(pmd.vhost) - present:
            del pmd.vhost[odp]

    def _tx_rank(self, pmd: Pmd) -> tuple[int, int]:
        """This PMD's place among the live ones, and how many there are: which
        of a port's shared transmit rings it takes."""
        live = sorted(p.pmd_id for p in self.pmds.values() if p.alive)
        return (live.index(pmd.pmd_id) if pmd.pmd_id in live else 0), len(live)

    def send_tx(self, odp: int, frames: list) -> None:
        """Frames the control process sends to a port only PMDs can write
        (vhost-user): the first live PMD transmits them."""
        for pmd in sorted(self.pmds.values(), key=lambda p: p.pmd_id):
            if pmd.alive:
                try:
                    self._send(pmd, {"t": "tx_out", "odp": odp,
                                     "frames": [bytes(f) for f in frames]})
                    return
                except ChannelClosed:
                    self._died(pmd)

    def _push_rules(self, pmd: Pmd, ofproto) -> None:
        sent = pmd.rules[ofproto.name]
        current = ofproto.rule_index()
        gone = [rid for rid, rev in sent.items()
                if rid not in current or current[rid].rev != rev]
        new = [r for rid, r in current.items() if sent.get(rid) != r.rev]
        for rid in gone:
            del sent[rid]
        first = True
        for i in range(0, len(new), RULES_PER_MESSAGE):
            chunk = new[i:i + RULES_PER_MESSAGE]
            add = []
            for r in chunk:
                data = encode_rule(r)
                data["id"] = r.id
                add.append(data)
                sent[r.id] = r.rev
            self._send(pmd, {"t": "rules", "bridge": ofproto.name,
                             "del": gone if first else [], "add": add})
            first = False
        if first and gone:
            self._send(pmd, {"t": "rules", "bridge": ofproto.name, "del": gone, "add": []})

    def _push_ports(self, pmd: Pmd, ofproto) -> None:
        current = {}
        fds: dict[tuple[str, int], list[int]] = {}
        rank, n_live = self._tx_rank(pmd)
        for port in ofproto.ports.values():
            iface = self.switch.ifaces.get(port.name)
            netdev = iface.netdev if iface else None
            tx = netdev.tx_info() if netdev is not None and hasattr(netdev, "tx_info") \
                else {}
            handover = getattr(netdev, "tx_handover", None)
            if handover is not None:  # afxdp: the socket this PMD transmits on
                more, fds[(ofproto.name, port.ofport)] = handover(rank, n_live)
                tx = {**tx, **more}
            vlan = {"mode": port.vlan.mode, "tag": port.vlan.tag,
                    "trunks": sorted(port.vlan.trunks)}
            current[(ofproto.name, port.ofport)] = {
                "bridge": ofproto.name, "name": port.name, "ofport": port.ofport,
                "odp": port.odp_port, "type": _pmd_port_type(port.type, tx), "vlan": vlan,
                "tx": tx}
        for key in [k for k in pmd.ports if k[0] == ofproto.name and k not in current]:
            self._send(pmd, {"t": "port_del", "bridge": key[0], "ofport": key[1]})
            del pmd.ports[key]
        for key, info in current.items():
            if pmd.ports.get(key) != info:
                self._send(pmd, {"t": "port_add", **info}, fds.get(key, []))
                pmd.ports[key] = info

    def _push_macs(self, pmd: Pmd) -> None:
        for name, ofproto in self.switch.backer.bridges.items():
            table = ofproto.mac_table
            seen = pmd.mac_seq.get(name, 0)
            changes = table.journal_since(seen)
            if changes is None:  # too far behind: the whole table
                entries = [(LEARN, e.mac, e.vlan, e.port) for e in table.entries()]
                changes = [(FLUSH, 0, 0, -1)] + entries
            for i in range(0, len(changes), 2000):
                self._send(pmd, {"t": "mac", "bridge": name, "changes": changes[i:i + 2000]})
            pmd.mac_seq[name] = table.seq

    # -- rx queues -------------------------------------------------------------------------

    def rxqs(self) -> dict[tuple[int, int], tuple[str, object, int, int]]:
        """Every rx queue PMDs should poll: (odp, qid) -> (port name, netdev, fd,
        socket epoch)."""
        out = {}
        for iface in self.switch.ifaces.values():
            netdev = iface.netdev
            if netdev is None or not netdev.pmd_polled:
                continue
            ofproto = self.switch.backer.bridges.get(iface.bridge)
            port = ofproto.ports.get(iface.ofport) if ofproto else None
            if port is None:
                continue
            for qid, fd in enumerate(netdev.rxq_fds()):
                out[(port.odp_port, qid)] = (iface.name, netdev, fd, netdev.rxq_epoch)
        return out

    async def _place_rxqs(self) -> None:
        live = [p for p in self.pmds.values() if p.alive]
        queues = self.rxqs()
        # A queue whose port is gone, or whose socket was replaced
        # (reconfigured), is dropped by its PMD; its position means nothing now.
        for pmd in live:
            for q, epoch in list(pmd.rxqs.items()):
                if q not in queues or queues[q][3] != epoch:
                    await self._release(pmd, q)
        if not live:
            return
        current = {q: p.pmd_id for p in live for q in p.rxqs}
        loads = {q: busy for p in live for q, (_, busy) in p.rxq_load.items()}
        why: dict = {}
        wanted = assign_rxqs(sorted(queues, key=lambda q: (queues[q][0], q[1])),
                             [p.pmd_id for p in live], current, loads,
                             self.config.get("rxq_assign", "roundrobin"), why)
        if self._lb_forced is not None:
            forced, reason = self._lb_forced
            self._lb_forced = None
            for q, pmd_id in forced.items():
                if q in wanted and pmd_id in self.pmds and self.pmds[pmd_id].alive \
                        and wanted[q] != pmd_id:
                    wanted[q] = pmd_id
                    why[q] = f"auto-lb: {reason}"
        for q, pmd_id in wanted.items():
            if current.get(q) == pmd_id:
                continue
            name, netdev, fd, epoch = queues[q]
            fds = [] if fd is None else [fd]
            if fd is None:  # vhost-user, afxdp: positions are in the shared rings
                if q in current:
                    await self._release(self.pmds[current[q]], q)
                handover = getattr(netdev, "rxq_handover", None)
                start, fds = handover(q[1]) if handover is not None else ({}, [])
            elif q in current:
                # Moving: the new owner continues exactly where the old one stopped.
                block, skip = await self._release(self.pmds[current[q]], q)
                start = {"block": block, "skip": skip, "ring": netdev.rx_ring.as_dict()}
            else:
                start = netdev.detach_rxq(q[1])
                known = self._positions.pop((q, epoch), None)
                if known is not None:  # a stopped PMD's queue: continue where it was
                    start.update(block=known[0], skip=known[1])
            new = self.pmds[pmd_id]
            new.rxq_why[q] = why.get(q, "placed here")
            self._send(new, {"t": "rxq_add", "odp": q[0], "qid": q[1], "port": name,
                             "type": netdev.type, **start}, fds)
            new.rxqs[q] = epoch
            log.info("%s rx queue %d: polled by pmd %d (core %d): %s", name, q[1], pmd_id,
                     new.core, new.rxq_why[q])

    def auto_lb_check(self) -> None:
        """Every second: once per rebal interval, measure each queue's busy time
        since the last check and let auto-lb decide whether to move queues."""
        cfg = self.auto_lb
        if not cfg.enabled:
            self._lb_mark = None
            return
        now = time.monotonic()
        live = [p for p in self.pmds.values() if p.alive]
        busy = {q: b for p in live for q, (_, b) in p.rxq_load.items()}
        if self._lb_mark is None:
            self._lb_mark = (now, busy)
            return
        since, before = self._lb_mark
        if now - since < cfg.interval_s:
            return
        self._lb_mark = (now, busy)
        # A counter that went back (stats cleared, queue moved) counts from zero.
        delta = {q: b - before[q] if b >= before.get(q, 0) else b for q, b in busy.items()}
        assignment = {q: p.pmd_id for p in live for q in p.rxqs}
        new, why = plan(assignment, delta, [p.pmd_id for p in live],
                        int((now - since) * 1e9), cfg)
        if new is None:
            log.debug("pmd auto-lb: no change: %s", why)
            return
        log.info("pmd auto-lb: rebalancing rx queues: %s", why)
        self._lb_forced = (new, why)
        self.request_sync()

    async def _release(self, pmd: Pmd, q: tuple[int, int]) -> tuple[int | None, int]:
        """Take queue ``q`` from ``pmd``; returns where it stopped reading."""
        fut = asyncio.get_running_loop().create_future()
        self._releases[q] = fut
        pmd.rxqs.pop(q, None)
        try:
            self._send(pmd, {"t": "rxq_del", "odp": q[0], "qid": q[1]})
            return await asyncio.wait_for(fut, ACK_TIMEOUT)
        except (ChannelClosed, asyncio.TimeoutError):
            return None, 0
        finally:
            self._releases.pop(q, None)

    async def _release_all(self, pmd: Pmd) -> None:
        for q, epoch in list(pmd.rxqs.items()):
            position = await self._release(pmd, q)
            if position[0] is not None:
                self._positions[(q, epoch)] = position

    # -- what users ask ---------------------------------------------------------------

    async def collect_stats(self) -> None:
        """Ask every PMD for its counters (rule counters included) and wait."""
        await self._barrier([p for p in self.pmds.values() if p.alive], "stats_req")

    async def clear_stats(self) -> None:
        for pmd in self.pmds.values():
            if pmd.alive:
                self._send(pmd, {"t": "stats_clear"})
                pmd.baseline = perf.new_counters()
        await self.collect_stats()

    async def dump_flows(self) -> list[tuple[Pmd, list[dict]]]:
        live = [p for p in self.pmds.values() if p.alive]
        if not live:
            return []
        seq = next(self._seq)
        self._flow_replies[seq] = []
        for pmd in live:
            self._send(pmd, {"t": "flows_req", "seq": seq})
        deadline = time.monotonic() + ACK_TIMEOUT
        while time.monotonic() < deadline:
            replies = self._flow_replies[seq]
            done = {p.pmd_id for p, m in replies if m["last"]}
            if done >= {p.pmd_id for p in live if p.alive}:
                break
            await asyncio.sleep(0.005)
        replies = self._flow_replies.pop(seq, [])
        out: dict[int, list] = {}
        for pmd, msg in replies:
            out.setdefault(pmd.pmd_id, []).extend(msg["flows"])
        return [(self.pmds[i], flows) for i, flows in sorted(out.items()) if i in self.pmds]
