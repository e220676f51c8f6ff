"""A bare forwarder: the floor of what Python over AF_PACKET can do here.

    python -m bench.bare_forwarder IN OUT [SECONDS] [--cpu N]

Every frame that arrives on interface IN leaves on OUT: a TPACKET_V3 rx ring,
a dict lookup on the destination MAC, a tx ring flushed once per burst.  It
uses the same RxQueue/TxQueue as ovsd's system ports, so comparing ovsd with
it measures what the switch adds (parse, caches, actions, stats) and nothing
else.  Runs for SECONDS (until SIGTERM/SIGINT without it), then prints
"forwarded N packets in S s (R Mpps)" and its drops.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from ovsd.netdev.afpacket.device import SystemNetdev
from ovsd.netdev.afpacket.rx import RxQueue
from ovsd.netdev.afpacket.tx import TxQueue

BURST = 256


def forward(in_if: str, out_if: str, seconds: float | None) -> tuple[int, float, TxQueue]:
    port_in = SystemNetdev(in_if, {})
    port_out = SystemNetdev(out_if, {})
    rxq = RxQueue(port_in.rxq_fds()[0], **port_in.detach_rxq(0))
    txq = TxQueue.from_info(port_out.tx_info())
    # Destination MAC -> the output batch it joins.  Nothing is learned: every
    # frame takes the miss path to OUT, but it pays for the lookup.
    out_batch: list = []
    table: dict[bytes, list] = {}
    lookup = table.get
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    deadline = time.monotonic() + seconds if seconds else float("inf")
    forwarded = 0
    first = last = 0.0
    try:
        while not stop:
            frames = rxq.rx_burst(BURST)
            now = time.monotonic()
            if not frames:
                if now > deadline:
                    break
                continue
            if not first:
                first = now
            for frame in frames:
                lookup(frame[:6], out_batch).append(frame)
            forwarded += txq.tx_burst(out_batch)
            out_batch.clear()
            last = now
            if now > deadline:
                break
    finally:
        rxq.close()
        txq.close()
        port_in.close()
        port_out.close()
    # The rate is over the time traffic flowed, not the wait before it.
    elapsed = last - first if last > first else 0.0
    return forwarded, elapsed, txq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("in_if", metavar="IN")
    ap.add_argument("out_if", metavar="OUT")
    ap.add_argument("seconds", metavar="SECONDS", type=float, nargs="?",
                    help="run this long (default: until SIGTERM)")
    ap.add_argument("--cpu", type=int, help="pin to this CPU")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    n, elapsed, txq = forward(args.in_if, args.out_if, args.seconds)
    rate = n / elapsed / 1e6 if elapsed else 0.0
    print(f"forwarded {n} packets in {elapsed:.2f} s ({rate:.3f} Mpps); "
          f"tx drops: {txq.dropped_full} ring full, {txq.dropped_size} size, "
          f"{txq.dropped_down} link down", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
