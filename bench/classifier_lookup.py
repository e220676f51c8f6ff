"""Classifier lookups per second as rules and distinct masks grow.

Tuple space search probes one dict per subtable (distinct mask), so the cost
of a lookup should follow the number of masks and stay flat in the number of
rules.  Rules are random within their masks and have random priorities; half
the keys hit some rule, half are random packets that mostly miss.

Run: python bench/classifier_lookup.py [--runs 5] [--keys 20000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass

from ovsd.ofproto.classifier import Classifier
from ovsd.packet import key as K

RULE_COUNTS = (1, 100, 10_000)
MASK_COUNTS = (1, 10, 100)

# Fields flow tables commonly match on; masks are drawn as combinations of these.
_FIELDS = ("in_port", "dl_dst", "dl_src", "dl_type", "vlan_tci", "nw_proto", "nw_tos",
           "tp_src", "tp_dst", "reg0", "metadata")
_NW_SRC = K.FIELDS["nw_src"]
_NW_DST = K.FIELDS["nw_dst"]


@dataclass(eq=False, slots=True)
class BenchRule:
    value: int
    mask: int
    priority: int


def _prefix(field: K.Field, plen: int) -> int:
    return (((1 << plen) - 1) << (32 - plen)) << field.offset


def distinct_masks(n: int, rnd: random.Random) -> list[int]:
    """``n`` different masks built from field combinations and IP prefixes."""
    masks: list[int] = []
    seen: set[int] = set()
    while len(masks) < n:
        mask = 0
        for name in rnd.sample(_FIELDS, rnd.randint(1, 4)):
            mask |= K.field_mask(name)
        if rnd.random() < 0.6:
            mask |= _prefix(_NW_SRC, rnd.randint(8, 32))
        if rnd.random() < 0.4:
            mask |= _prefix(_NW_DST, rnd.randint(8, 32))
        if mask not in seen:
            seen.add(mask)
            masks.append(mask)
    return masks


def build(n_rules: int, n_masks: int, n_keys: int, seed: int = 1
          ) -> tuple[Classifier, list[int]]:
    rnd = random.Random(seed)
    masks = distinct_masks(n_masks, rnd)
    cls = Classifier()
    rules = []
    for i in range(n_rules):
        mask = masks[i % n_masks]
        r = BenchRule(rnd.getrandbits(K.KEY_BITS) & mask, mask, rnd.randint(0, 0xFFFF))
        cls.insert(r)
        rules.append(r)
    keys = []
    for i in range(n_keys):
        # Registers and metadata are zero when a packet enters the pipeline.
        noise = rnd.getrandbits(K.PACKET_BITS)
        if i % 2 == 0:
            r = rnd.choice(rules)
            keys.append(r.value | (noise & ~r.mask))
        else:
            keys.append(noise)
    return cls, keys


def time_lookups(cls: Classifier, keys: list[int], runs: int) -> float:
    """Median lookups per second over ``runs`` passes over ``keys``."""
    lookup = cls.lookup
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for k in keys:
            lookup(k)
        rates.append(len(keys) / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed passes; the median is shown")
    ap.add_argument("--keys", type=int, default=20_000, help="keys per pass")
    args = ap.parse_args(argv)

    print(f"classifier lookup: median of {args.runs} runs x {args.keys} keys "
          "(half hit a rule, half random)")
    header = (f"{'rules':>7} {'masks':>6} {'subtables':>9} {'hit %':>6} "
              f"{'lookups/s':>11} {'ns/lookup':>10} {'ns/subtable':>12}")
    print(header)
    print("-" * len(header))
    for n_masks in MASK_COUNTS:
        for n_rules in RULE_COUNTS:
            cls, keys = build(n_rules, n_masks, args.keys)
            hits = sum(cls.lookup(k)[0] is not None for k in keys) * 100 / len(keys)
            rate = time_lookups(cls, keys, args.runs)
            print(f"{n_rules:>7} {n_masks:>6} {cls.n_subtables:>9} {hits:>6.1f} "
                  f"{rate:>11,.0f} {1e9 / rate:>10.0f} {1e9 / rate / cls.n_subtables:>12.0f}")


if __name__ == "__main__":
    main()
