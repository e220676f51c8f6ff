"""The glue between the OpenFlow bridges and the one datapath they share
(OVS's ofproto-dpif "backer").

Every bridge's ports are ports of one datapath, numbered in one space; the
backer maps a datapath port back to (bridge, OpenFlow port) and answers the
datapath's upcalls by running xlate on that bridge.
"""

from __future__ import annotations

import logging
import time

from ovsd.dpif.datapath import Datapath
from ovsd.netdev.base import Netdev
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.ofproto.xlate import XlateResult, xlate
from ovsd.packet import key as K

log = logging.getLogger(__name__)

LOCAL_ODP_BASE = 100
_IN_PORT_MASK = K.FIELDS["in_port"].mask
_IN_PORT_SHIFT = K.FIELDS["in_port"].offset


class Backer:
    def __init__(self):
        self.dp = Datapath(self.upcall)
        self.bridges: dict[str, Ofproto] = {}
        self._by_odp: dict[int, tuple[Ofproto, int]] = {}

    # -- bridges and ports --------------------------------------------------------

    def add_bridge(self, ofproto: Ofproto) -> None:
        self.bridges[ofproto.name] = ofproto

    def del_bridge(self, name: str) -> list[Netdev]:
        ofproto = self.bridges.pop(name)
        return [self.del_port(ofproto, ofport) for ofport in list(ofproto.ports)]

    def add_port(self, ofproto: Ofproto, port: OfPort, netdev: Netdev) -> OfPort:
        """Put ``netdev`` in the datapath and on the bridge; the datapath
        number follows the OpenFlow number when that one is free (reserved
        ports such as LOCAL get numbers from 100 up, as OVS's dummy datapath)."""
        preferred = port.ofport if port.ofport < 0xFF00 else LOCAL_ODP_BASE
        port.odp_port = self.dp.add_port(port.name, netdev, preferred)
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

    def upcall(self, key: int, frame) -> tuple[tuple, int]:
        """The datapath missed: translate ``key`` on the bridge of its input port."""
        odp_in = (key & _IN_PORT_MASK) >> _IN_PORT_SHIFT
        owner = self._by_odp.get(odp_in)
        if owner is None:
            return (), _IN_PORT_MASK
        ofproto, ofport = owner
        flow = (key & ~_IN_PORT_MASK) | (ofport << _IN_PORT_SHIFT)
        result = xlate(ofproto, flow, packet_len=len(frame))
        if result.error:
            log.warning("bridge %s: translation failed (%s), packet dropped",
                        ofproto.name, result.error)
        now = time.time()
        n_bytes = len(frame)
        for rule in result.rules:
            rule.credit(1, n_bytes, now)
        return result.actions, result.mask & K.PACKET_MASK

    def translate(self, ofproto: Ofproto, flow: int, **kwargs) -> XlateResult:
        """xlate without side effects on counters (trace)."""
        return xlate(ofproto, flow, **kwargs)
