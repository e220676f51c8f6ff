"""A short run of every fuzz target, and a replay of its committed corpus.

Each run is a subprocess: libFuzzer ends its process, and the vring target
must be able to die on a guard page without taking pytest with it.  Longer
runs: ``make fuzz TARGET=name SECONDS=n``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import NAMES

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"packet": 10000, "flow_text": 10000, "vhost_protocol": 10000, "vring": 20000,
        "jsonrpc": 2000}
SECONDS = 10  # a cap on each short run, whatever its RUNS
TIMEOUT = 120

pytest.importorskip("atheris")


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FUZZ_ARTIFACTS": str(tmp_path / "artifacts"),
           "FUZZ_TMP": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.run", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"fuzz run {args} did not end in {TIMEOUT}s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out)


@pytest.mark.parametrize("target", NAMES)
def test_corpus_replays(target, tmp_path):
    """Seeds and minimized crash inputs (tests/fuzz/corpus/TARGET) stay fixed."""
    r = _run([target, "--replay"], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]


@pytest.mark.parametrize("target", NAMES)
def test_short_fuzz_run(target, tmp_path):
    r = _run([target, "--runs", str(RUNS[target]), "--seconds", str(SECONDS),
              "--work", str(tmp_path / "corpus")], tmp_path)
    crashes = sorted((tmp_path / "artifacts").glob("*")) if (tmp_path / "artifacts").exists() \
        else []
    assert r.returncode == 0 and not crashes, (
        f"exit {r.returncode}, crash inputs {[str(c) for c in crashes]}:\n{r.stdout[-4000:]}")


def test_vring_guard_pages_catch_stray_accesses(tmp_path):
    """The vring target's guard pages work: touching one kills the process."""
    code = ("from tests.fuzz.targets import vring as v\n"
            "v.setup()\n"
            "big, (r0, r1) = v._STATE['big'], v._STATE['offsets']\n"
            "big[r0]; big[r1 + v.SIZES[1] - 1]\n"
            "print('inside ok', flush=True)\n"
            "big[r0 + v.SIZES[0]]\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert "inside ok" in r.stdout
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr)
