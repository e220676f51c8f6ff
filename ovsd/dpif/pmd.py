"""The PMD loop: one process pinned to one core, busy-polling its rx queues
and running every burst to completion through its own Datapath.

The loop knows nothing of OpenFlow: the wiring (ovsd/pmd_main.py) builds the
Datapath with an upcall into a replica of the flow tables and hands the
loop a ``handle(msg, fds)`` callback for control messages.  Control messages
are read between polls, never while a burst is in flight, which is what lets
the control process treat an acknowledged message as applied to every packet
that follows.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ovsd.dpif.channel import Channel, ChannelClosed
from ovsd.dpif.datapath import BURST, Datapath
from ovsd.dpif.perf import pmd_counters

# Control messages and housekeeping are checked every this many polls of all
# queues (a poll of an idle queue costs about a microsecond).
CONTROL_EVERY = 64
HOUSEKEEPING_NS = 1_000_000_000


@dataclass(eq=False)
class PolledQueue:
    odp_port: int
    port_name: str
    qid: int
    queue: object  # anything with rx_burst(max_frames) -> list
    busy_ns: int = 0


@dataclass
class PmdState:
    busy_ns: int = 0
    idle_ns: int = 0
    batches: int = 0
    queues: list[PolledQueue] = field(default_factory=list)


class PmdLoop:
    def __init__(self, pmd_id: int, core: int | None, dp: Datapath, channel: Channel,
                 handle: Callable[[dict, list[int]], None],
                 housekeeping: Callable[[], None] = lambda: None,
                 tick: Callable[[], None] = lambda: None):
        self.pmd_id = pmd_id
        self.core = core
        self.dp = dp
        self.channel = channel
        self.handle = handle
        self.housekeeping = housekeeping
        self.tick = tick  # after each check for control messages
        self.state = PmdState()
        self.running = True

    def pin(self) -> None:
        if self.core is not None:
            os.sched_setaffinity(0, {self.core})

    def add_queue(self, q: PolledQueue) -> None:
        self.state.queues.append(q)

    def remove_queue(self, odp_port: int, qid: int) -> PolledQueue | None:
        for q in self.state.queues:
            if q.odp_port == odp_port and q.qid == qid:
                self.state.queues.remove(q)
                return q
        return None

    def counters(self) -> dict:
        s = self.state
        c = pmd_counters(self.dp.stats, s.busy_ns, s.idle_ns, s.batches)
        c["subtable_probes"] = self.dp.megaflows.subtable_probes
        return c

    def run(self) -> None:
        """Poll until told to stop or the control process goes away."""
        self.pin()
        dp = self.dp
        state = self.state
        clock = time.perf_counter_ns
        next_housekeeping = clock() + HOUSEKEEPING_NS
        try:
            while self.running:
                for _ in range(CONTROL_EVERY):
                    for q in state.queues:
                        t0 = clock()
                        frames = q.queue.rx_burst(BURST)
                        if frames:
                            dp.process(q.odp_port, frames)
                            spent = clock() - t0
                            q.busy_ns += spent
                            state.busy_ns += spent
                            state.batches += 1
                        else:
                            state.idle_ns += clock() - t0
                    if not state.queues:
                        t0 = clock()
                        time.sleep(0.001)  # nothing to poll: do not burn the core
                        state.idle_ns += clock() - t0
                        break
                self._read_control()
                self.tick()
                now = clock()
                if now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_NS
                    self.housekeeping()
        except ChannelClosed:
            pass

    def _read_control(self) -> None:
        while self.running:
            got = self.channel.recv(block=False)
            if got is None:
                return
            msg, fds = got
            self.handle(msg, fds)
