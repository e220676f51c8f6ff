"""Scenario `drop-accounting`: what drop counting and the idle capture
facility cost the packet walk, measured in one process, A/B.

Datapath.process on bursts of 256 UDP frames of one flow (the simple-match
path), with the flow forwarding to a sink port and with the flow dropping.
Three builds of the same datapath, timed interleaved (5 rounds, medians):
as built; with drop counting replaced by a no-op; with the capture check
replaced by a constant False.  A forwarded burst runs no counting code at
all, so its "counting off" row shows the noise floor of the comparison.
"""

from __future__ import annotations

import statistics
import struct
import time

from ovsd.dpif import drops as D
from ovsd.dpif.capture import Taps
from ovsd.dpif.datapath import _IN_PORT_MASK, Datapath, Upcall
from ovsd.dpif.odp_actions import output
from ovsd.netdev.base import NetdevStats

BURST = 256
ROUNDS = 5
BURSTS_PER_TIMING = 2000


class _Sink:
    """A port that takes every frame (the transmit cost is not what is measured)."""

    def __init__(self) -> None:
        self.stats = NetdevStats()
        self.tx_drop_reason = None

    def tx_burst(self, qid: int, frames: list) -> int:
        return len(frames)


class _NoTaps(Taps):
    def __bool__(self) -> bool:
        return False


class _NoDropCounts(D.DropCounts):
    def add(self, port: int, reason: str, n: int = 1) -> None:
        pass


def _frame(i: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 1, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return (bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip
            + struct.pack("!HHHH", 1000 + i, 80, 26, 0) + bytes(18))


def _datapath(actions: tuple, reason: str | None) -> Datapath:
    dp = Datapath(lambda key, frame: Upcall(actions, _IN_PORT_MASK, drop_reason=reason))
    dp.add_port("in", _Sink(), 1)
    dp.add_port("out", _Sink(), 2)
    return dp


def _ns_per_burst(dp: Datapath, frames: list) -> float:
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(BURSTS_PER_TIMING):
        dp.process(1, frames)
    return (clock() - t0) / BURSTS_PER_TIMING


def run() -> None:
    frames = [_frame(i) for i in range(BURST)]
    print(f"drop accounting and the idle capture check, Datapath.process on bursts of "
          f"{BURST} frames of one flow (median of {ROUNDS} interleaved rounds)")
    print(f"{'flow':<11}{'build':<22}{'ns/burst':>10}{'ns/pkt':>9}{'vs as built':>13}")
    for label, actions, reason in (("forwarding", (output(2),), None),
                                   ("dropping", (), D.DROP_ACTION)):
        builds = {"as built": _datapath(actions, reason),
                  "counting off": _datapath(actions, reason),
                  "capture check off": _datapath(actions, reason)}
        builds["counting off"].drops = _NoDropCounts()
        builds["capture check off"].taps = _NoTaps()
        times: dict[str, list[float]] = {name: [] for name in builds}
        for dp in builds.values():
            dp.process(1, frames)   # the upcall, and the flow into the caches
        for _ in range(ROUNDS):
            for name, dp in builds.items():
                times[name].append(_ns_per_burst(dp, frames))
        base = statistics.median(times["as built"])
        for name, values in times.items():
            m = statistics.median(values)
            print(f"{label:<11}{name:<22}{m:>10,.0f}{m / BURST:>9.1f}{m / base - 1:>+13.1%}")


if __name__ == "__main__":
    run()
