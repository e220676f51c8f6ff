"""A child process whose merged stdout/stderr is both logged and searchable.

testpmd (interactive prompt) and QEMU (serial console on stdio) are driven the
same way: a reader thread copies everything the child prints into a log file
and into an in-memory transcript, and callers wait, with a deadline, for a
pattern to appear after a given offset of that transcript.  The child is
stopped by its PID only (never by name), first politely, then SIGTERM, then
SIGKILL, each step bounded.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # runs in the child between fork and exec: if the test process dies without
    # cleaning up (killed by a timeout), the child gets SIGTERM instead of
    # busy-polling a core forever.  Tied to the thread that forked: spawn from
    # a thread that outlives the child.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ProcessError(RuntimeError):
    """A harness child failed; the message carries the tail of its log."""


class LoggedProcess:
    """Runs ``argv`` with stdout+stderr going to ``log_path`` and a transcript."""

    def __init__(self, argv: Sequence[str], log_path: Path, *, stdin_pipe: bool = False,
                 env: dict[str, str] | None = None, label: str | None = None):
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.label = label or Path(self.argv[0]).name
        self._stdin_pipe = stdin_pipe
        self._env = env
        self._text = ""
        self._cond = threading.Condition()
        self._eof = False
        self._reader: threading.Thread | None = None
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(f"### {' '.join(self.argv)}\n".encode())
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE if self._stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env,
                # own session: a Ctrl-C meant for pytest does not hit the child first,
                # and the child cannot grab our terminal
                start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            self._log.close()
            raise ProcessError(f"cannot start {self.label} ({self.argv[0]}): {e}") from e
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.label}",
                                        daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self._log.write(chunk)
            with self._cond:
                self._text += chunk.decode("utf-8", "replace")
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def write(self, data: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise ProcessError(f"{self.label}: no stdin pipe")
        try:
            self.proc.stdin.write(data.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise self.error(f"{self.label} is gone (writing {data.strip()!r}): {e}") from e

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if the child still runs after ``timeout``."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, polite: Callable[[], None] | None = None, grace: float = 10.0) -> int | None:
        """End the child by PID: ``polite()`` first (e.g. send "quit"), then
        SIGTERM, then SIGKILL, each with a bounded wait.  Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and polite is not None:
            try:
                polite()
            except (ProcessError, OSError):
                pass
            self.wait_exit(grace)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                break
            self.wait_exit(wait)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.poll()

    # -- transcript ------------------------------------------------------------------

    def text(self, start: int = 0) -> str:
        with self._cond:
            return self._text[start:]

    def offset(self) -> int:
        with self._cond:
            return len(self._text)

    def wait_for(self, pattern: str | re.Pattern, timeout: float, start: int = 0,
                 what: str | None = None) -> re.Match:
        """The first match of ``pattern`` in the transcript from ``start``;
        raises ProcessError (with the log tail) on timeout or child exit."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._text, start)
                if m:
                    return m
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        why = "exited" if self._eof else f"timed out after {timeout:g} s"
        rc = self.returncode()
        raise self.error(f"{self.label} {why} waiting for {what or rx.pattern!r}"
                         + (f" (exit status {rc})" if rc is not None else ""))

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def error(self, message: str) -> ProcessError:
        return ProcessError(f"{message}\n--- last lines of {self.log_path} ---\n{self.tail()}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
