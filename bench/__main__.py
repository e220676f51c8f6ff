"""make bench [SCENARIO=name]: run the benchmark scenarios (all by default)."""

import sys

SCENARIOS = {
    "classifier": "bench.scenario_classifier",
    "afpacket-p2p": "bench.scenario_afpacket:run_p2p",
    "afpacket-10k": "bench.scenario_afpacket:run_10k",
    "afxdp-p2p": "bench.scenario_afpacket:run_afxdp_p2p",
    "vhost-p2p": "bench.scenario_vhost:run_p2p",
    "vhost-p2p-normal": "bench.scenario_vhost:run_p2p_normal",
    "vring-micro": "bench.vring_micro:run",
    "drop-accounting": "bench.drop_accounting:run",
}


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            print(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}",
                  file=sys.stderr)
            return 2
    import importlib
    for name in names:
        # "module" runs module.run(); "module:function" runs that function.
        module, _, function = SCENARIOS[name].partition(":")
        getattr(importlib.import_module(module), function or "run")()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
