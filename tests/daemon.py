"""Start the real ovsd and drive it with the real ofctl (subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_VENV_BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> list[str]:
    """The installed console script, else the module run by this Python."""
    exe = _VENV_BIN / name
    if exe.exists():
        return [str(exe)]
    module = {"ovsd": "ovsd.daemon", "ofctl": "ofctl.cli"}[name]
    return [sys.executable, "-m", module]


class OfctlError(AssertionError):
    def __init__(self, args, proc):
        super().__init__(f"ofctl {' '.join(args)} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr}")
        self.proc = proc


class Daemon:
    """One ovsd on its own rundir; stopped by PID."""

    def __init__(self, rundir: Path, *extra: str, cwd: Path | None = None):
        self.rundir = Path(rundir)
        self.extra = extra
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def sock(self) -> Path:
        return self.rundir / "ovsd.sock"

    def start(self, timeout: float = 30.0) -> "Daemon":
        self.rundir.mkdir(parents=True, exist_ok=True)
        # A killed daemon leaves its socket: waiting for the file would not
        # wait for this one.  (A live daemon on the rundir makes ours exit.)
        self.sock.unlink(missing_ok=True)
        self.stderr = open(self.rundir / "stderr.log", "ab")
        self.proc = subprocess.Popen(tool("ovsd") + ["--rundir", str(self.rundir),
                                                     *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while not self.sock.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"ovsd exited with {self.proc.returncode}:\n"
                                   + (self.rundir / "stderr.log").read_text())
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("ovsd did not create its socket in time")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        rc = self.proc.returncode
        self.proc = None
        self.stderr.close()
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def ofctl_run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(tool("ofctl") + ["--rundir", str(self.rundir), *args],
                              capture_output=True, text=True, input=input, timeout=120)

    def ofctl(self, *args: str, input: str | None = None) -> str:
        proc = self.ofctl_run(*args, input=input)
        if proc.returncode != 0:
            raise OfctlError(args, proc)
        return proc.stdout

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
