"""make bench [SCENARIO=name]: run the benchmark scenarios (all by default)."""

import sys

SCENARIOS = {
    "classifier": "bench.scenario_classifier",
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
        importlib.import_module(SCENARIOS[name]).run()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
