"""Run one fuzz target under atheris/libFuzzer, or replay inputs through it.

    python -m tests.fuzz.run TARGET [--seconds N] [--runs N] [--work DIR]
    python -m tests.fuzz.run TARGET --replay FILE...   # no fuzzing, just the inputs

The committed corpus (tests/fuzz/corpus/TARGET: minimized crash inputs) is
read but never written: new inputs go to ``--work``, crash files to
``--artifacts``.  Without ``--work`` the fuzzer runs in a child process over a
scratch directory this process removes afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.fuzz.targets import NAMES

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def load(name: str, instrument: bool):
    if instrument:
        import atheris
        # Coverage feedback only pays where the bugs would be: ovsd itself.
        # setup() imports too (lazily, for the heavy targets).
        with atheris.instrument_imports(include=["ovsd"]):
            mod = importlib.import_module(f"tests.fuzz.targets.{name}")
            mod.setup()
        return mod
    mod = importlib.import_module(f"tests.fuzz.targets.{name}")
    mod.setup()
    return mod


def corpus_files(name: str) -> list[Path]:
    d = CORPUS / name
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def replay(name: str, files: list[Path]) -> int:
    mod = load(name, instrument=False)
    inputs = [(f"seed {i}", s) for i, s in enumerate(mod.seeds())]
    inputs += [(str(f), f.read_bytes()) for f in files]
    for label, data in inputs:
        try:
            mod.one_input(data)
        except Exception:
            print(f"{name}: input {label} fails:", file=sys.stderr)
            raise
    print(f"{name}: {len(inputs)} inputs replayed, all fine")
    return 0


def fuzz(args) -> None:
    import atheris
    mod = load(args.target, instrument=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(mod.seeds()):
        (work / f"seed-{i:04d}").write_bytes(s)
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(work)]
    if (CORPUS / args.target).is_dir():
        argv.append(str(CORPUS / args.target))
    argv += [f"-artifact_prefix={artifacts}/{args.target}-",
             f"-timeout={args.timeout}", "-rss_limit_mb=3072",
             f"-max_len={args.max_len or getattr(mod, 'MAX_LEN', 4096)}",
             "-print_final_stats=1"]
    if args.seconds:
        argv.append(f"-max_total_time={args.seconds}")
    if args.runs:
        argv.append(f"-runs={args.runs}")
    argv += args.libfuzzer
    kwargs = {}
    if hasattr(mod, "custom_mutator"):
        kwargs["custom_mutator"] = mod.custom_mutator
    atheris.Setup(argv, mod.one_input, **kwargs)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    p.add_argument("target", choices=NAMES)
    p.add_argument("--seconds", type=int, default=0, help="stop after this long")
    p.add_argument("--runs", type=int, default=0, help="stop after this many executions")
    p.add_argument("--work", help="corpus directory the fuzzer adds to (default: a temp dir)")
    p.add_argument("--artifacts", default=os.environ.get("FUZZ_ARTIFACTS", "/tmp/ovsd-fuzz"),
                   help="where crash/timeout inputs are written")
    p.add_argument("--timeout", type=int, default=10, help="seconds per input before a hang")
    p.add_argument("--max-len", type=int, default=0)
    p.add_argument("--replay", nargs="*", metavar="FILE",
                   help="run the seeds, the committed corpus and FILEs once, no fuzzing")
    p.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags (after --)")
    args = p.parse_args(argv)
    if not args.seconds and not args.runs and args.replay is None:
        args.seconds = 60
    if args.replay is not None:
        return replay(args.target, corpus_files(args.target) + [Path(f) for f in args.replay])
    if args.work:
        fuzz(args)
        return 0
    # libFuzzer ends its process with exit(), past Python's clean-up: the
    # scratch directory (corpus, the targets' own files) is removed from here.
    scratch = tempfile.mkdtemp(prefix=f"ovsd-fuzz-{args.target}-")
    child = [a for a in (argv if argv is not None else sys.argv[1:])]
    cmd = [sys.executable, "-m", "tests.fuzz.run", *child, "--work", f"{scratch}/corpus"]
    try:
        return subprocess.call(cmd, env={**os.environ, "FUZZ_TMP": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
