"""add-flows end to end: a 10,000-line file through a real ovsd and ofctl,
beside real Open vSwitch's ovs-ofctl add-flows when it is installed."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scenario_classifier import build_flows

RUNS = 3
ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.05)


def ovsd_rate(flow_file: Path, n: int) -> float:
    rates = []
    for _ in range(RUNS):
        run = Path(tempfile.mkdtemp(prefix="ovsd-bench-"))
        proc = subprocess.Popen([str(BIN / "ovsd"), "--rundir", str(run)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(run / "ovsd.sock")
            ofctl = [str(BIN / "ofctl"), "--rundir", str(run)]
            subprocess.run(ofctl + ["add-br", "bench"], check=True)
            for i in range(1, 5):
                subprocess.run(ofctl + ["add-port", "bench", f"p{i}", "type=dummy",
                                        f"ofport_request={i}"], check=True)
            t0 = time.perf_counter()
            subprocess.run(ofctl + ["add-flows", "bench", str(flow_file)], check=True)
            rates.append(n / (time.perf_counter() - t0))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            shutil.rmtree(run, ignore_errors=True)
    return statistics.median(rates)


def ovs_rate(flow_file: Path, n: int) -> float | None:
    if not shutil.which("ovs-vswitchd"):
        return None
    from bench.ovs_sandbox import OvsSandbox
    rates = []
    with OvsSandbox() as ovs:
        ovs.vsctl("add-br", "bench", "--", "set", "bridge", "bench", "datapath_type=dummy")
        for i in range(1, 5):
            ovs.vsctl("add-port", "bench", f"p{i}", "--", "set", "interface", f"p{i}",
                      "type=dummy", f"ofport_request={i}")
        for _ in range(RUNS):
            ovs.ofctl("del-flows", "bench")
            t0 = time.perf_counter()
            ovs.ofctl("add-flows", "bench", str(flow_file))
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def run() -> None:
    flows, _ = build_flows(10_000, 100, seed=3)
    with tempfile.NamedTemporaryFile("w", suffix=".flows", delete=False) as f:
        f.write("\n".join(flows) + "\n")
        path = Path(f.name)
    try:
        mine = ovsd_rate(path, len(flows))
        print(f"add-flows end to end (ofctl -> ovsd, parse + install + persist): "
              f"{mine:,.0f} rules/s")
        theirs = ovs_rate(path, len(flows))
        if theirs is None:
            print("Open vSwitch is not installed here: no side-by-side figure")
        else:
            print(f"Open vSwitch 3.x ovs-ofctl add-flows (same file, same run): "
                  f"{theirs:,.0f} rules/s; ratio ovsd/OVS = {mine / theirs:.2f}")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(run())
