"""Scenario `classifier`: lookups per second through xlate, and add-flow rates.

Lookups: 1, 100 and 10,000 rules spread over 1, 10 and 100 distinct masks;
half the keys hit a rule, half miss (and fall to a priority-0 rule).  The
cost must follow the number of masks, not the number of rules.

add-flow throughput: a 10,000-line add-flows file parsed and installed
in-process (parse, then insert), and end to end through a real ovsd with
`ofctl add-flows`, beside real Open vSwitch's `ovs-ofctl add-flows` on a
bridge of its own when it is installed.  Every figure is the median of
several runs.
"""

from __future__ import annotations

import random
import statistics
import time

from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.ofproto.xlate import xlate
from ovsd.packet import key as K

RUNS = 5
LOOKUPS = 20_000

# Masks are built from these field pieces; combinations give 100+ distinct masks.
_PIECES = [
    ("nw_src", [8, 16, 24, 32]),
    ("nw_dst", [8, 16, 24, 32]),
    ("tp_dst", [16]),
    ("tp_src", [16]),
    ("dl_dst", [48]),
    ("in_port", [16]),
]


def _masks(n: int, rng: random.Random) -> list[str]:
    """n distinct match templates like 'nw_src=%s/16,tp_dst=%d'."""
    combos = set()
    while len(combos) < n:
        k = rng.randint(1, 3)
        picks = rng.sample(_PIECES, k)
        combos.add(tuple(sorted((name, rng.choice(widths)) for name, widths in picks)))
    return [list(c) for c in combos]


def _value(name: str, rng: random.Random) -> tuple[str, int]:
    f = K.FIELDS[name]
    v = rng.getrandbits(f.width)
    if name == "in_port":
        v = rng.randint(1, 4)
    return name, v


def _text(name: str, width: int, v: int) -> str:
    if name in ("nw_src", "nw_dst"):
        return f"{name}={v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}/{width}"
    if name == "dl_dst":
        return f"{name}=" + ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    return f"{name}={v}"


def build_flows(n_rules: int, n_masks: int, seed: int = 1) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    masks = _masks(n_masks, rng)
    flows, hit_keys = [], []
    for i in range(n_rules):
        template = masks[i % n_masks]
        fields = dict(_value(name, rng) for name, _ in template)
        match = ",".join(_text(name, w, fields[name]) for name, w in template)
        proto = "tcp," if any(n.startswith("tp_") for n, _ in template) else "ip,"
        flows.append(f"priority={rng.randint(10, 1000)},{proto}{match},actions=output:2")
        key = K.make(dl_type=0x0800, nw_proto=6, in_port=fields.get("in_port", 1),
                     **{n: v for n, v in fields.items() if n != "in_port"})
        hit_keys.append(key)
    flows.append("priority=0,actions=output:3")
    return flows, hit_keys


def _bridge() -> Ofproto:
    br = Ofproto("bench")
    for i in range(1, 5):
        br.add_port(OfPort(i, f"p{i}", i, "dummy"))
    return br


def lookup_rate(n_rules: int, n_masks: int) -> float:
    flows, hits = build_flows(n_rules, n_masks)
    br = _bridge()
    for text in flows:
        br.add_flow(parse_flow(text, "add", "OpenFlow10", br.port_no))
    rng = random.Random(2)
    keys = []
    for i in range(LOOKUPS):
        if i % 2 == 0:
            keys.append(hits[rng.randrange(len(hits))])
        else:
            keys.append(K.make(dl_type=0x0800, nw_proto=6, in_port=1,
                               nw_src=rng.getrandbits(32), nw_dst=rng.getrandbits(32),
                               tp_dst=rng.getrandbits(16)))
    rates = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for k in keys:
            xlate(br, k, side_effects=False)
        rates.append(len(keys) / (time.perf_counter() - t0))
    return statistics.median(rates)


def add_flow_rates(n: int = 10_000) -> tuple[float, float]:
    """(parse rate, install rate) in rules/second for an n-line file, in-process."""
    flows, _ = build_flows(n, 100, seed=3)
    parse_rates, insert_rates = [], []
    for _ in range(3):
        br = _bridge()
        t0 = time.perf_counter()
        fms = [parse_flow(t, "add", "OpenFlow10", br.port_no) for t in flows]
        t1 = time.perf_counter()
        for fm in fms:
            br.add_flow(fm)
        t2 = time.perf_counter()
        parse_rates.append(len(flows) / (t1 - t0))
        insert_rates.append(len(flows) / (t2 - t1))
    return statistics.median(parse_rates), statistics.median(insert_rates)


def run() -> None:
    print("scenario classifier: lookups/s through xlate (median of "
          f"{RUNS} runs of {LOOKUPS} lookups, half hits)")
    print(f"{'rules':>7} {'masks':>6} {'lookups/s':>12} {'us/lookup':>10}")
    for n_rules in (1, 100, 10_000):
        for n_masks in (1, 10, 100):
            if n_masks > n_rules:
                continue
            rate = lookup_rate(n_rules, n_masks)
            print(f"{n_rules:>7} {n_masks:>6} {rate:>12,.0f} {1e6 / rate:>10.1f}")
    from bench import classifier_lookup
    print("\nthe classifier alone (bench/classifier_lookup.py):")
    classifier_lookup.main(["--runs", str(RUNS)])
    parse, insert = add_flow_rates()
    print(f"\nadd-flow, 10,000-line file, in-process: parse {parse:,.0f} rules/s, "
          f"install {insert:,.0f} rules/s")
    from bench import addflows_e2e
    addflows_e2e.run()
