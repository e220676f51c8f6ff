"""The glue between the OpenFlow bridges and the one datapath they share
(OVS's ofproto-dpif "backer").

Every bridge's ports are ports of one datapath, numbered in one space; the
backer maps a datapath port back to (bridge, OpenFlow port) and answers the
datapath's upcalls by running xlate on that bridge.  Its ``generation``
moves whenever an answer may change (flow tables, ports, learned MACs), which
is how datapaths know to drop their cached flows.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ovsd.dpif import drops as D
from ovsd.dpif.datapath import Datapath, Upcall
from ovsd.dpif.flow import DpFlow
from ovsd.netdev.base import Netdev
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.ofproto.xlate import XlateResult, xlate
from ovsd.packet import key as K

log = logging.getLogger(__name__)

LOCAL_ODP_BASE = 100
_IN_PORT_MASK = K.FIELDS["in_port"].mask
_IN_PORT_SHIFT = K.FIELDS["in_port"].offset


class Backer:
    """``eager_stats``: credit rule counters after every burst (the control
    process); PMDs credit once a second instead."""

    def __init__(self, eager_stats: bool = True):
        self.bridges: dict[str, Ofproto] = {}
        self._by_odp: dict[int, tuple[Ofproto, int]] = {}
        self._gen = 0
        # Told about every MAC NORMAL learned or saw again: a PMD reports them
        # to the control process, which owns the MAC tables.
        self.on_learned: Callable[[Ofproto, int, int, int], None] | None = None
        self.dp = Datapath(self.upcall, lambda: self.generation,
                           on_flow_removed=self.credit_flow, eager_stats=eager_stats)

    @property
    def generation(self) -> int:
        """Moves on every change that may change a forwarding decision."""
        return self._gen + sum(o.version for o in self.bridges.values())

    def changed(self) -> None:
        self._gen += 1

    # -- bridges and ports --------------------------------------------------------

    def add_bridge(self, ofproto: Ofproto) -> None:
        self.bridges[ofproto.name] = ofproto
        self.changed()

    def del_bridge(self, name: str) -> list[Netdev]:
        ofproto = self.bridges[name]
        netdevs = [self.del_port(ofproto, ofport) for ofport in list(ofproto.ports)]
        del self.bridges[name]
        # Keep the generation moving forward though this bridge's versions leave the sum.
        self._gen += ofproto.version + 1
        return netdevs

    def add_port(self, ofproto: Ofproto, port: OfPort, netdev: Netdev,
                 odp_port: int | None = None) -> OfPort:
        """Put ``netdev`` in the datapath and on the bridge; the datapath
        number follows the OpenFlow number when that one is free (reserved
        ports such as LOCAL get numbers from 100 up, as OVS's dummy datapath).
        A replica passes the number the control process chose."""
        preferred = odp_port if odp_port is not None else \
            port.ofport if port.ofport < 0xFF00 else LOCAL_ODP_BASE
        port.odp_port = self.dp.add_port(port.name, netdev, preferred)
        if odp_port is not None and port.odp_port != odp_port:
            raise ValueError(f"datapath port {odp_port} is taken")
        self._by_odp[port.odp_port] = (ofproto, port.ofport)
        ofproto.add_port(port)
        return port

    def del_port(self, ofproto: Ofproto, ofport: int) -> Netdev:
        port = ofproto.del_port(ofport)
        self._by_odp.pop(port.odp_port, None)
        return self.dp.del_port(port.odp_port)

    def bridge_of_odp(self, odp_port: int) -> tuple[Ofproto, int] | None:
        return self._by_odp.get(odp_port)

    # -- the slow path ------------------------------------------------------------

    def upcall(self, key: int, frame) -> Upcall:
        """The datapath missed: translate ``key`` on the bridge of its input port."""
        odp_in = (key & _IN_PORT_MASK) >> _IN_PORT_SHIFT
        owner = self._by_odp.get(odp_in)
        if owner is None:
            return Upcall((), _IN_PORT_MASK, drop_reason=D.NO_OUTPUT)
        ofproto, ofport = owner
        flow = (key & ~_IN_PORT_MASK) | (ofport << _IN_PORT_SHIFT)
        result = xlate(ofproto, flow, packet_len=len(frame))
        if result.error:
            log.warning("bridge %s: translation failed (%s), packet dropped",
                        ofproto.name, result.error)
        if result.mac_changed:
            self.changed()
        learned = tuple((ofproto, mac, vlan, port) for mac, vlan, port in result.learned)
        if self.on_learned is not None:
            for fact in learned:
                self.on_learned(*fact)
        return Upcall(result.actions, result.mask & K.PACKET_MASK, tuple(result.rules),
                      learned, result.drop_reason)

    def translate(self, ofproto: Ofproto, flow: int, **kwargs) -> XlateResult:
        """xlate without side effects on counters (trace)."""
        return xlate(ofproto, flow, **kwargs)

    # -- what the fast path owes the slow path -------------------------------------

    def credit_flow(self, flow: DpFlow) -> None:
        """Give the OpenFlow rules behind ``flow`` the packets it forwarded since
        the last credit, and keep the MACs NORMAL learned for it from ageing
        out while it is used (what OVS's revalidators do)."""
        dp = flow.n_packets - flow.credited_packets
        if not dp:
            return
        db = flow.n_bytes - flow.credited_bytes
        flow.credited_packets, flow.credited_bytes = flow.n_packets, flow.n_bytes
        now = time.time()
        for rule in flow.rules:
            rule.credit(dp, db, now)
        for ofproto, mac, vlan, port in flow.learned:
            if ofproto.mac_table.learn(mac, vlan, port):
                self.changed()
            if self.on_learned is not None:
                self.on_learned(ofproto, mac, vlan, port)

    def sync_stats(self) -> None:
        """Credit every cached flow; forget MACs that aged out (their flows
        are revalidated)."""
        for flow in self.dp.flows():
            self.credit_flow(flow)
        for ofproto in self.bridges.values():
            if ofproto.mac_table.expire_now():
                self.changed()
