"""A PMD worker process: ``python -m ovsd.pmd_main --fd N --pmd-id I [--core C]``.

It holds a replica of every bridge (flow tables with the control process's
rule ids, ports, MAC table) so an upcall never leaves the process, its own
Datapath (EMC + megaflow cache) and the PMD loop.  Everything arrives as
messages on the channel (fd N); everything it learns (rule counters, MACs,
its own counters) goes back on it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from ovsd.dpif.channel import Channel
from ovsd.dpif.flow import DpFlow
from ovsd.dpif.pmd import PmdLoop, PolledQueue
from ovsd.netdev.base import NetdevStats
from ovsd.ofproto.backer import Backer
from ovsd.ofproto.mac_learning import MacTable
from ovsd.ofproto.normal_vlan import PortVlan
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.ofproto.persist import decode_rule
from ovsd.dpif.odp_actions import format_actions

log = logging.getLogger("ovsd.pmd")

REPORT_EVERY_HOUSEKEEPING = 1  # stats go up once a second
# Captured bytes per message, well under the channel's message limit.
CAPTURE_CHUNK_BYTES = 100_000


class _ControlTx:
    """A port this process cannot transmit on itself (dummy, internal): frames
    go to the control process, which sends them."""

    def __init__(self, replica: "Replica", odp_port: int):
        self.replica = replica
        self.odp_port = odp_port
        self.stats = NetdevStats()

    def tx_burst(self, qid: int, frames: list) -> int:
        self.replica.send({"t": "tx", "odp": self.odp_port,
                           "frames": [bytes(f) for f in frames]})
        return len(frames)


class _SystemTx:
    """A system port's transmit side, with this process's own socket and ring."""

    def __init__(self, tx_info: dict):
        from ovsd.netdev.afpacket.tx import TxQueue
        self.queue = TxQueue.from_info(tx_info)
        self.stats = NetdevStats()

    def tx_burst(self, qid: int, frames: list) -> int:
        return self.queue.tx_burst(frames)

    @property
    def tx_drop_reason(self) -> str:
        return self.queue.tx_drop_reason

    def flush(self) -> None:
        if self.queue.unsent:
            self.queue.flush()

    def close(self) -> None:
        self.queue.close()


VHOST_TYPES = ("dpdkvhostuser", "dpdkvhostuserclient")


class Replica:
    """The PMD's copy of the bridges, kept in step by control messages."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.backer = Backer(eager_stats=False)
        self.dp = self.backer.dp
        self.loop: PmdLoop | None = None
        # (bridge, mac, vlan) -> port: what NORMAL learned or saw again since
        # the last report, once each.
        self._learned: dict[tuple[str, int, int], int] = {}
        self.backer.on_learned = self._note_learned
        self.vhost: dict = {}  # odp -> VhostMapping, for vhost-user ports
        self._capture_lost: dict[int, int] = {}  # tap id -> packets not sent up

    def send(self, msg: dict) -> None:
        self.channel.send(msg)

    def _note_learned(self, ofproto: Ofproto, mac: int, vlan: int, port: int) -> None:
        self._learned[(ofproto.name, mac, vlan)] = port

    # -- messages from the control process ------------------------------------

    def handle(self, msg: dict, fds: list[int]) -> None:
        kind = msg["t"]
        handler = getattr(self, "_on_" + kind, None)
        if handler is None:
            log.error("pmd: unknown control message %r", kind)
            for fd in fds:
                os.close(fd)
            return
        handler(msg, fds)

    def _on_bridge_add(self, msg: dict, fds) -> None:
        # The control process's table ages and evicts entries; the replica
        # only follows its journal.
        self.backer.add_bridge(Ofproto(msg["name"], MacTable(max_entries=1 << 30,
                                                             aging=float("inf"))))

    def _on_bridge_del(self, msg: dict, fds) -> None:
        for netdev in self.backer.del_bridge(msg["name"]):
            close = getattr(netdev, "close", None)
            if close:
                close()
        for odp in [o for o in self.vhost if o not in self.dp.ports]:
            self.vhost.pop(odp).close()

    def _on_rules(self, msg: dict, fds) -> None:
        ofproto = self.backer.bridges[msg["bridge"]]
        index = ofproto.rule_index()
        for rule_id in msg.get("del", ()):
            rule = index.get(rule_id)
            if rule is not None:
                ofproto.tables[rule.table_id].remove(rule)
        for data in msg.get("add", ()):
            rule = decode_rule(data)
            rule.id = data["id"]
            ofproto.tables[rule.table_id].insert(rule)
        ofproto.version += 1

    def _on_port_add(self, msg: dict, fds) -> None:
        ofproto = self.backer.bridges[msg["bridge"]]
        if msg["ofport"] in ofproto.ports:
            self._drop_port(ofproto, msg["ofport"])
        if msg["type"] == "system":
            tx = _SystemTx(msg["tx"])
        elif msg["type"] == "afxdp":
            from ovsd.netdev.afxdp.queues import AfxdpTx, DroppingTx
            try:
                tx = AfxdpTx(fds, msg["tx"]) if fds else DroppingTx()
            except Exception as e:
                log.error("pmd: cannot transmit on %s: %s", msg["name"], e)
                tx = DroppingTx()
        elif msg["type"] in VHOST_TYPES:
            from ovsd.netdev.vhost_user.tx import VhostTx
            tx = VhostTx(self._mapping(msg["odp"], msg["name"]))
        else:
            tx = _ControlTx(self, msg["odp"])
        vlan = PortVlan(**msg["vlan"])
        port = OfPort(msg["ofport"], msg["name"], 0, msg["type"], vlan)
        self.backer.add_port(ofproto, port, tx, odp_port=msg["odp"])

    def _on_port_del(self, msg: dict, fds) -> None:
        ofproto = self.backer.bridges.get(msg["bridge"])
        if ofproto is not None and msg["ofport"] in ofproto.ports:
            self._drop_port(ofproto, msg["ofport"])

    def _drop_port(self, ofproto: Ofproto, ofport: int) -> None:
        odp = ofproto.ports[ofport].odp_port
        netdev = self.backer.del_port(ofproto, ofport)
        close = getattr(netdev, "close", None)
        if close:
            close()
        mapping = self.vhost.pop(odp, None)
        if mapping is not None:
            mapping.close()

    def _mapping(self, odp: int, name: str):
        mapping = self.vhost.get(odp)
        if mapping is None:
            from ovsd.netdev.vhost_user.mapping import VhostMapping
            mapping = self.vhost[odp] = VhostMapping(name, odp, self._vhost_error)
        return mapping

    def _vhost_error(self, odp: int, reason: str) -> None:
        log.warning("pmd: %s", reason)
        self.send({"t": "vhost_error", "odp": odp, "reason": reason})

    def _on_vhost(self, msg: dict, fds: list[int]) -> None:
        self._mapping(msg["odp"], msg["name"]).update(msg, fds, msg["tx_rank"], msg["tx_n"])

    def _on_taps(self, msg: dict, fds) -> None:
        self.dp.taps.set(msg["taps"])
        self._capture_lost = {}

    def _send_captured(self) -> None:
        """What the taps copied, in messages that fit the channel, sent only if
        the channel has room: otherwise the packets count as lost (reported
        with the next message that goes)."""
        lost = self._capture_lost
        for tap_id, packets, n_lost in self.dp.taps.drain():
            lost[tap_id] = lost.get(tap_id, 0) + n_lost
            for chunk in _chunks(packets):
                msg = {"t": "captured", "taps": [[tap_id, chunk, lost.get(tap_id, 0)]]}
                if self.channel.try_send(msg):
                    lost[tap_id] = 0
                else:
                    lost[tap_id] = lost.get(tap_id, 0) + len(chunk)

    def _on_tx_out(self, msg: dict, fds) -> None:
        if msg["odp"] in self.dp.ports:
            self.dp.transmit({msg["odp"]: msg["frames"]})

    def _open_rxq(self, msg: dict, fds: list[int]):
        if msg["type"] == "system":
            from ovsd.netdev.afpacket.rx import RxQueue
            return RxQueue(fds[0], msg.get("block"), msg.get("skip", 0),
                           ring=msg.get("ring"), close_fd=True)
        if msg["type"] == "afxdp":
            from ovsd.netdev.afxdp.queues import AfxdpRxQueue
            return AfxdpRxQueue(fds, msg["layout"])
        for fd in fds:
            os.close(fd)
        if msg["type"] in VHOST_TYPES:
            from ovsd.netdev.vhost_user.rx import VhostRxQueue
            return VhostRxQueue(self._mapping(msg["odp"], msg["port"]), msg["qid"])
        raise ValueError(f"ports of type {msg['type']} have no PMD rx queues")

    def _on_rxq_add(self, msg: dict, fds: list[int]) -> None:
        try:
            queue = self._open_rxq(msg, fds)
        except Exception as e:
            log.error("pmd: cannot poll %s queue %d: %s", msg["port"], msg["qid"], e)
            return
        self.loop.add_queue(PolledQueue(msg["odp"], msg["port"], msg["qid"], queue))

    def _on_rxq_del(self, msg: dict, fds) -> None:
        q = self.loop.remove_queue(msg["odp"], msg["qid"])
        block, skip = None, 0
        if q is not None:
            block, skip = q.queue.position
            q.queue.close()
        self.send({"t": "rxq_released", "odp": msg["odp"], "qid": msg["qid"],
                   "block": block, "skip": skip})

    def _on_mac(self, msg: dict, fds) -> None:
        ofproto = self.backer.bridges.get(msg["bridge"])
        if ofproto is not None and ofproto.mac_table.replay(msg["changes"]):
            self.backer.changed()

    def _on_config(self, msg: dict, fds) -> None:
        if "emc_insert_inv_prob" in msg:
            self.dp.emc.insert_inv_prob = msg["emc_insert_inv_prob"]
        if "max_idle" in msg:
            self.max_idle = msg["max_idle"] / 1000.0

    def _on_barrier(self, msg: dict, fds) -> None:
        self.send({"t": "ack", "seq": msg["seq"]})

    def _on_stats_req(self, msg: dict, fds) -> None:
        self.report()
        self.send({"t": "ack", "seq": msg["seq"]})

    def _on_stats_clear(self, msg: dict, fds) -> None:
        self.dp.stats.clear()
        self.dp.megaflows.subtable_probes = 0
        state = self.loop.state
        state.busy_ns = state.idle_ns = state.batches = 0
        for q in state.queues:
            q.busy_ns = 0

    def _on_flows_req(self, msg: dict, fds) -> None:
        flows = [_flow_dict(f, self.dp.clock()) for f in self.dp.flows()]
        for i in range(0, max(len(flows), 1), 200):
            self.send({"t": "flows", "seq": msg["seq"], "flows": flows[i:i + 200],
                       "last": i + 200 >= len(flows)})

    def _on_stop(self, msg: dict, fds) -> None:
        self.loop.running = False

    # -- what goes back ---------------------------------------------------------

    max_idle = 10.0

    def housekeeping(self) -> None:
        self.dp.expire(self.max_idle)
        self.dp.megaflows.rerank()
        self.report()

    def tick(self) -> None:
        """Between polls: push out transmissions a full send buffer held back,
        and send MACs learned by upcalls up at once, so other PMDs stop flooding."""
        for port in self.dp.ports.values():
            flush = getattr(port.netdev, "flush", None)
            if flush is not None:
                flush()
        if self._learned:
            learned = [(b, mac, vlan, port) for (b, mac, vlan), port in self._learned.items()]
            self._learned.clear()
            self.send({"t": "learned", "learned": learned})
        if self.dp.taps:
            self._send_captured()

    def report(self) -> None:
        """Rule counters, learned MACs and this PMD's counters, to the control process."""
        self.backer.sync_stats()
        credits = []
        for ofproto in self.backer.bridges.values():
            for rule in ofproto.rule_index().values():
                if rule.n_packets or rule.n_bytes:
                    credits.append((rule.id, rule.n_packets, rule.n_bytes, rule.last_used))
                    rule.n_packets = rule.n_bytes = 0
        learned = [(b, mac, vlan, port) for (b, mac, vlan), port in self._learned.items()]
        self._learned.clear()
        loop = self.loop
        self.send({"t": "stats", "counters": loop.counters(), "credits": credits,
                   "learned": learned, "n_flows": self.dp.megaflows.n_flows,
                   "ports": self._port_counts(), "drops": self._drops(),
                   "rxqs": [{"odp": q.odp_port, "qid": q.qid, "port": q.port_name,
                             "busy_ns": q.busy_ns} for q in loop.state.queues]})


    def _drops(self) -> list[list]:
        """[[odp, reason, packets], ...] since the last report."""
        out = self.dp.drops.take()
        for odp, mapping in self.vhost.items():
            out.extend([odp, reason, n] for reason, n in mapping.drops.items() if n)
            mapping.drops.clear()
        return out

    def _port_counts(self) -> list[list[int]]:
        """[odp, rx packets, rx bytes, tx packets, tx bytes, tx dropped, rx dropped
        (, tx retries, tx failure drops: vhost-user ports)] since the last report,
        for the ports whose rings only PMDs touch."""
        totals: dict[int, list[int]] = {}

        def add(odp: int, take) -> None:
            delta = take() if take is not None else None
            if delta is not None:
                acc = totals.setdefault(odp, [0] * 6)
                acc.extend([0] * (len(delta) - len(acc)))
                for i, v in enumerate(delta):
                    acc[i] += v

        for odp, mapping in self.vhost.items():
            add(odp, mapping.take_stats)
        for q in self.loop.state.queues:
            add(q.odp_port, getattr(q.queue, "take_stats", None))
        for odp, port in self.dp.ports.items():
            add(odp, getattr(port.netdev, "take_stats", None))
        return [[odp, *delta] for odp, delta in totals.items()]


def _chunks(packets: list) -> list[list]:
    """Captured packets in groups that fit one channel message (at least one
    group, so a loss-only report goes too)."""
    out, group, size = [], [], 0
    for p in packets:
        if group and size + len(p[2]) > CAPTURE_CHUNK_BYTES:
            out.append(group)
            group, size = [], 0
        group.append(p)
        size += len(p[2]) + 64
    out.append(group)
    return out


def _flow_dict(f: DpFlow, now: float) -> dict:
    return {"key": f.key.to_bytes((f.key.bit_length() + 7) // 8, "big"),
            "mask": f.mask.to_bytes((f.mask.bit_length() + 7) // 8, "big"),
            "packets": f.n_packets, "bytes": f.n_bytes,
            "used": (now - f.used) if f.used else -1.0,
            "actions": format_actions(f.actions)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="ovsd-pmd")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--pmd-id", type=int, required=True)
    p.add_argument("--core", type=int)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s|pmd{args.pmd_id}|%(levelname)s|%(message)s")
    # The control process stops PMDs with a message; a terminal's Ctrl-C goes
    # to the daemon, which stops them in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = Channel.from_fd(args.fd)
    replica = Replica(channel)
    loop = PmdLoop(args.pmd_id, args.core, replica.dp, channel, replica.handle,
                   replica.housekeeping, replica.tick)
    replica.loop = loop
    channel.send({"t": "hello", "pmd_id": args.pmd_id, "pid": os.getpid()})
    loop.run()
    try:
        replica.report()
    except Exception:  # the control process may already be gone
        pass


if __name__ == "__main__":
    main()
