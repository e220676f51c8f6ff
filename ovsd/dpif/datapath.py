"""The datapath: ports by datapath port number, and the packet walk.

    rx burst -> extract keys -> EMC -> megaflow cache -> upcall (slow path)
             -> execute per flow batch -> tx burst per port

The upcall is a callable handed in by the owner: ``upcall(key, frame) ->
Upcall | None``; the datapath never imports ofproto.  ``generation`` is a
callable returning a number that changes whenever the answers the slow path
would give may have changed (a flow table, a port, a learned MAC): before
each burst the datapath compares it and drops every cached flow if it moved,
so no packet after a change is forwarded by a stale entry.

Each PMD process has its own Datapath (its own caches); ports no PMD polls
(dummy ports, injected frames) are run by the control process's Datapath, as
OVS's non-PMD thread does.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Callable, NamedTuple

from ovsd.dpif import drops as D
from ovsd.dpif.capture import Taps
from ovsd.dpif.emc import Emc
from ovsd.dpif.execute import execute_batch
from ovsd.dpif.flow import DpFlow
from ovsd.dpif.megaflow import MegaflowCache
from ovsd.dpif.simple_match import IPV4_NOFRAG, SimpleMatch, simple_key, uniform_ipv4
from ovsd.netdev.base import Netdev
from ovsd.packet import key as K
from ovsd.packet.parse import OneLengthBurst, extract_keys, shared_key

log = logging.getLogger(__name__)

MAX_PORTS = 65535
# Frames per rx burst: large enough that per-burst work (cache generation
# check, output batching, one send per port) is small per packet in Python;
# OVS uses 32 because its per-burst overhead is a few nanoseconds.
BURST = 256
IN_PORT_SHIFT = K.IN_PORT_SHIFT
_IN_PORT_MASK = K.FIELDS["in_port"].mask
# Counters of bursts forwarded whole (see Datapath._place) reach
# their flows at least this often, so a flow's ``used`` is late by no more.
FOLD_INTERVAL = 0.1
_OUT_PORT = attrgetter("out_port")


def _one_port(found: list) -> int | None:
    """The output port all the flows in ``found`` have as their only action,
    if there is one (None: a flow does something else, or a frame missed)."""
    try:
        outs = list(map(_OUT_PORT, found))
    except AttributeError:  # a miss: None has no out_port
        return None
    port = outs[0]
    return port if port is not None and outs.count(port) == len(outs) else None


class Upcall(NamedTuple):
    """The slow path's answer for one missed key."""

    actions: tuple
    mask: int
    rules: tuple = ()  # credited with the megaflow's packets
    learned: tuple = ()  # NORMAL facts the megaflow keeps fresh while used
    drop_reason: str | None = None  # why the packet goes nowhere (drops.*)


class DatapathError(Exception):
    pass


@dataclass
class DpStats:
    """The counters pmd-stats-show prints."""

    n_packets: int = 0
    n_simple_hit: int = 0
    n_emc_hit: int = 0
    n_megaflow_hit: int = 0
    n_subtable_probes: int = 0
    n_upcalls: int = 0
    n_lost: int = 0  # upcall failed: the packet was dropped
    n_userspace: int = 0  # packets a controller action would have sent up
    n_tx_unknown_port: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


@dataclass(eq=False)
class DpPort:
    port_no: int
    name: str
    netdev: Netdev


class Datapath:
    def __init__(self, upcall: Callable[[int, object], Upcall | None],
                 generation: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.monotonic,
                 on_flow_removed: Callable[[DpFlow], None] | None = None,
                 eager_stats: bool = False):
        self.upcall = upcall
        self.generation = generation
        # Called for every flow leaving the cache, so that its last packets
        # still reach the OpenFlow rules' counters; with ``eager_stats`` also
        # after every burst (the control process, where traffic is light and
        # counters should be exact at once).
        self.on_flow_removed = on_flow_removed
        self.eager_stats = eager_stats and on_flow_removed is not None
        self.clock = clock
        self.ports: dict[int, DpPort] = {}
        self._by_name: dict[str, DpPort] = {}
        self.stats = DpStats()
        self.drops = D.DropCounts()
        self.taps = Taps()  # ofctl capture; empty (false) unless a capture runs
        self.emc = Emc()
        self.megaflows = MegaflowCache()
        self.simple = SimpleMatch()
        self._seen_generation = generation()
        # Packets not yet added to their flows' counters (see _count_whole):
        # frame length -> Counter of flows, Counter of (flow, length) for
        # bursts of mixed lengths, and when the last of them arrived.
        self._pending: defaultdict[int, Counter] = defaultdict(Counter)
        self._pending_mixed: Counter = Counter()
        self._pending_used = 0.0
        self._folded = 0.0
        # The batch that took a whole burst of frames of one length (simple
        # match or one megaflow) in the current process(): its bytes are
        # counted by a product rather than a pass over it, and it goes out
        # as a OneLengthBurst (a vhost port then lays it out without
        # measuring the frames) unless other frames joined it on the way.
        self._whole: OneLengthBurst | None = None
        self._whole_len = 0

    # -- ports ----------------------------------------------------------------

    def add_port(self, name: str, netdev: Netdev, port_no: int | None = None) -> int:
        if name in self._by_name:
            raise DatapathError(f"datapath already has a port named {name}")
        if port_no is None:
            port_no = 1
        if port_no in self.ports:
            free = (n for n in range(port_no, MAX_PORTS) if n not in self.ports)
            port_no = next(free, None) or next(n for n in range(1, MAX_PORTS)
                                               if n not in self.ports)
        port = DpPort(port_no, name, netdev)
        self.ports[port_no] = port
        self._by_name[name] = port
        return port_no

    def del_port(self, port_no: int) -> Netdev:
        port = self.ports.pop(port_no)
        del self._by_name[port.name]
        self.flush()
        return port.netdev

    def port_by_name(self, name: str) -> DpPort | None:
        return self._by_name.get(name)

    # -- caches ---------------------------------------------------------------

    def flush(self) -> None:
        """Forget every cached flow (revalidation by starting over)."""
        self._fold()
        if self.on_flow_removed is not None:
            for f in self.megaflows.flows():
                self.on_flow_removed(f)
        self.megaflows.clear()
        self.emc.clear()
        self.simple.clear()
        self._seen_generation = self.generation()

    def flows(self) -> list[DpFlow]:
        """The cached flows, with up-to-date counters."""
        self._fold()
        return self.megaflows.flows()

    def _fold(self) -> None:
        """Add the packets counted per burst (not yet per flow) to their flows.
        Everything that reads flow counters goes through here first."""
        pending = self._pending
        for (flow, length), count in self._pending_mixed.items():
            pending[length][flow] += count
        self._pending_mixed.clear()
        used = self._pending_used
        for length, by_flow in pending.items():
            for flow, count in by_flow.items():
                flow.n_packets += count
                flow.n_bytes += count * length
                flow.used = used
        pending.clear()
        self._folded = used

    def expire(self, max_idle: float) -> int:
        """Remove megaflows idle for ``max_idle`` seconds; returns how many."""
        self._fold()
        cutoff = self.clock() - max_idle
        old = [f for f in self.megaflows.flows() if max(f.used, f.created) < cutoff]
        for f in old:
            self.megaflows.remove(f)
            self.simple.remove((f.key & _IN_PORT_MASK) >> IN_PORT_SHIFT, f)
            if self.on_flow_removed is not None:
                self.on_flow_removed(f)
        return len(old)

    # -- the packet walk ----------------------------------------------------

    def process(self, in_port: int, frames: list) -> None:
        """Run one received burst to completion and transmit what it produced."""
        if self.generation() != self._seen_generation:
            self.flush()
        stats = self.stats
        batches: dict[DpFlow, list] = {}
        outputs: dict[int, list] = {}
        now = self.clock()
        self._whole = None
        simple = self.simple.tables(in_port)
        if simple is not None:
            frames = self._simple_walk(in_port, frames, simple, batches)
        stats.n_packets += len(frames)
        if frames:
            self._full_walk(in_port, frames, batches, outputs, now)
        if self.taps:
            self._tap_rx(in_port, batches)
        whole = self._whole
        for flow, batch in batches.items():
            nb = len(batch)
            flow.n_packets += nb
            if nb == 1:
                flow.n_bytes += len(batch[0])
            elif batch is whole:  # frames of one length: no pass over them
                flow.n_bytes += nb * len(batch[0])
            else:
                flow.n_bytes += sum(map(len, batch))
            flow.used = now
            ports = flow.out_ports
            if ports is None:
                stats.n_userspace += execute_batch(batch, flow.actions, outputs)
                if flow.drop_reason is not None:
                    self.drops.add(in_port, flow.drop_reason, nb)
            elif not ports:
                self.drops.add(in_port, flow.drop_reason or D.NO_OUTPUT, nb)
            elif len(ports) == 1:
                out = outputs.get(ports[0])
                if out is None:
                    outputs[ports[0]] = batch  # this batch list is not used again
                else:
                    out.extend(batch)
            else:
                for port in ports:
                    out = outputs.get(port)
                    if out is None:
                        outputs[port] = list(batch)
                    else:
                        out.extend(batch)
        if whole is not None and len(whole) != self._whole_len:
            # Other flows' frames were added to it: no longer of one length.
            for port, out in outputs.items():
                if out is whole:
                    outputs[port] = list(out)
        self.transmit(outputs)
        if self.eager_stats:
            for flow in batches:
                self.on_flow_removed(flow)

    def _tap_rx(self, in_port: int, batches: dict) -> None:
        """A capture runs: the received frames, by flow, the dropped ones with
        their reason (before the batches become output lists)."""
        taps = self.taps
        for flow, batch in batches.items():
            reason = flow.drop_reason or (D.NO_OUTPUT if flow.out_ports == () else None)
            if reason is None:
                taps.rx(in_port, batch)
            else:
                taps.dropped(in_port, batch, reason)

    def _simple_walk(self, in_port: int, frames: list, tables, batches: dict) -> list:
        """Packets whose flow the simple-match tables answer; returns the rest."""
        port_bits = in_port << IN_PORT_SHIFT
        ipv4 = port_bits | IPV4_NOFRAG
        if len(frames) > 1 and uniform_ipv4(frames):
            for mask, table in tables:
                flow = table.get(ipv4 & mask)
                if flow is not None:
                    # The caller keeps its list; uniform_ipv4 saw one length.
                    batches[flow] = self._whole = OneLengthBurst(frames)
                    self._whole_len = len(frames)
                    self.stats.n_packets += len(frames)
                    self.stats.n_simple_hit += len(frames)
                    return []
            return frames
        last_key = last_batch = None
        rest = []
        for frame in frames:
            # The common case inline: untagged IPv4, not a fragment.
            if frame[12:14] == b"\x08\x00" and len(frame) >= 22 \
                    and not (frame[20] & 0x3F or frame[21]):
                skey = ipv4
            else:
                skey = simple_key(frame, port_bits)
                if skey is None:
                    rest.append(frame)
                    continue
            if skey == last_key:
                last_batch.append(frame)
                continue
            for mask, table in tables:
                flow = table.get(skey & mask)
                if flow is not None:
                    break
            else:
                rest.append(frame)
                continue
            last_key = skey
            last_batch = batches.get(flow)
            if last_batch is None:
                last_batch = batches[flow] = []
            last_batch.append(frame)
        n = len(frames) - len(rest)
        self.stats.n_packets += n
        self.stats.n_simple_hit += n
        return rest

    def _full_walk(self, in_port: int, frames: list, batches: dict, outputs: dict,
                   now: float) -> None:
        """The flow of every frame (key extraction, then the caches), then
        each frame placed by its flow (_place)."""
        subtables = self.megaflows.order
        if len(frames) > 1 and subtables and self._one_megaflow(in_port, frames, batches):
            return
        keys = extract_keys(frames, in_port)
        if len(subtables) != 1:
            found = self._emc_walk(in_port, frames, keys)
        else:
            # With one subtable the megaflow lookup is one masked probe of a
            # small dict: the EMC, one probe of a big one plus insertions on
            # its misses, cannot make it cheaper, and with more flows than it
            # holds it thrashes (afpacket-10k).  So it is bypassed, up to the
            # first miss: the upcall may add a subtable, and the rest of the
            # burst takes the EMC walk.
            st = subtables[0]
            found = list(map(st.flows.get, [key & st.mask for key in keys]))
            n = found.index(None) if None in found else len(found)
            st.hits += n
            self.stats.n_megaflow_hit += n
            self.megaflows.subtable_probes += n
            if n < len(found):
                found[n:] = self._emc_walk(in_port, frames[n:], keys[n:])
        self._place(frames, found, batches, outputs, now)

    def _one_megaflow(self, in_port: int, frames: list, batches: dict) -> bool:
        """Batch the whole burst under one megaflow when its frames share their
        key under every subtable's mask (shared_key) and a subtable holds it;
        then every subtable gives each frame the answer it gives the first.
        False, with nothing done, otherwise (also when the key would need
        an upcall: the megaflow it installs may look at more)."""
        subtables = self.megaflows.order
        mask = 0
        for st in subtables:
            mask |= st.mask
        key = shared_key(frames, in_port, mask)
        if key is None:
            return False
        for rank, st in enumerate(subtables, 1):
            flow = st.flows.get(key & st.mask)
            if flow is not None:
                n = len(frames)
                st.hits += n
                self.stats.n_megaflow_hit += n
                # As many subtables per packet as the per-frame walk visits.
                self.megaflows.subtable_probes += n * rank
                batch = batches.get(flow)
                if batch is None:
                    # The caller keeps its list; shared_key saw one length.
                    batches[flow] = self._whole = OneLengthBurst(frames)
                    self._whole_len = len(frames)
                else:
                    batch.extend(frames)
                return True
        return False

    def _emc_walk(self, in_port: int, frames: list, keys: list) -> list:
        """The flow of each frame through the EMC, the megaflow subtables and
        upcalls; None for a frame the datapath dropped."""
        subtables = self.megaflows.order
        emc = self.emc.entries
        found = []
        put = found.append
        n_emc = n_mf = n_misses = 0
        for frame, key in zip(frames, keys):
            flow = emc.get(key)
            if flow is None or flow.dead:
                # The megaflow lookup, inline: a method call per packet costs
                # as much as a probe.
                for st in subtables:
                    flow = st.flows.get(key & st.mask)
                    if flow is not None:
                        st.hits += 1
                        n_mf += 1
                        break
                    n_misses += 1
                else:
                    flow = self._miss(key, frame, in_port)
                    if flow is None:
                        put(None)
                        continue
                self.emc.maybe_insert(key, flow)
            else:
                n_emc += 1
            put(flow)
        self.stats.n_emc_hit += n_emc
        self.stats.n_megaflow_hit += n_mf
        # Subtables visited per megaflow hit (pmd-stats-show); a miss visits
        # them all, which counts here too, as in OVS.
        self.megaflows.subtable_probes += n_mf + n_misses
        return found

    def _place(self, frames: list, found: list, batches: dict, outputs: dict,
               now: float) -> None:
        """Each frame into its flow's batch (``found[i]`` is the flow of
        ``frames[i]``, None when it was dropped).

        With many flows of few packets each per burst (afpacket-10k: most
        batches would hold one frame) the per-flow work of process() is a
        per-packet cost.  So when all the flows found output to the same
        single port, the burst goes to that port as it is, and its packets
        are counted per flow in C (_count_whole); _fold() adds them to the
        flows before anything reads a flow's counters.  A capture needs the
        per-flow batches, and eager_stats credits rules after each burst:
        both take the per-flow way."""
        port = None if self.taps or self.eager_stats else _one_port(found)
        if port is not None:
            self._count_whole(found, frames, now)
            # The burst's first placing (outputs is empty): a copy, since
            # process() extends output lists and the caller's list is its own.
            outputs[port] = list(frames)
            return
        for frame, flow in zip(frames, found):
            if flow is None:
                continue
            batch = batches.get(flow)
            if batch is None:
                batches[flow] = [frame]
            else:
                batch.append(frame)

    def _count_whole(self, found: list, frames: list, now: float) -> None:
        """Count a burst forwarded whole: packets per flow by Counter (in C),
        kept by frame length so that bytes follow; _fold() moves them to the
        flows."""
        lens = list(map(len, frames))
        if lens.count(lens[0]) == len(lens):
            self._pending[lens[0]].update(found)
        else:
            self._pending_mixed.update(zip(found, lens))
        self._pending_used = now
        if now - self._folded > FOLD_INTERVAL:
            self._fold()

    def _miss(self, key: int, frame, in_port: int) -> DpFlow | None:
        if not key & _IN_PORT_MASK:  # a runt (extract_keys): nothing to translate
            self.drops.add(in_port, D.RUNT_FRAME)
            if self.taps:
                self.taps.dropped(in_port, [frame], D.RUNT_FRAME)
            return None
        self.stats.n_upcalls += 1
        try:
            up = self.upcall(key, frame)
        except Exception:
            # A bug in the slow path must cost one packet, not the switch.
            log.exception("upcall failed; dropping the packet")
            up = None
        if up is None:
            self.stats.n_lost += 1
            self.drops.add(in_port, D.UPCALL_FAILED)
            if self.taps:
                self.taps.dropped(in_port, [frame], D.UPCALL_FAILED)
            return None
        flow = DpFlow(key & up.mask, up.mask, up.actions, up.rules, up.learned,
                      self.clock(), up.drop_reason)
        flow = self.megaflows.insert(flow)
        self.simple.add((key & _IN_PORT_MASK) >> IN_PORT_SHIFT, flow)
        return flow

    def transmit(self, outputs: dict[int, list]) -> None:
        if self.taps:
            for port_no, frames in outputs.items():
                self.taps.tx(port_no, frames)
        for port_no, frames in outputs.items():
            port = self.ports.get(port_no)
            if port is None:
                self.stats.n_tx_unknown_port += len(frames)
                self.drops.add(port_no, D.OUTPUT_PORT_UNKNOWN, len(frames))
                continue
            netdev = port.netdev
            sent = netdev.tx_burst(0, frames)
            if sent < len(frames):
                netdev.stats.tx_dropped += len(frames) - sent
                # The port knows why its last burst fell short.
                self.drops.add(port_no, getattr(netdev, "tx_drop_reason", D.TX_QUEUE_FULL),
                               len(frames) - sent)

    def poll_port(self, port_no: int, qid: int = 0) -> int:
        """Drain a non-PMD port's queue; returns the number of frames processed."""
        port = self.ports[port_no]
        total = 0
        while True:
            frames = port.netdev.rx_burst(qid, BURST)
            if not frames:
                return total
            self.process(port_no, frames)
            total += len(frames)

    @property
    def subtable_probes(self) -> int:
        return self.megaflows.subtable_probes
