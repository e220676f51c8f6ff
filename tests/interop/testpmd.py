"""Drive dpdk-testpmd interactively: a real virtio-user frontend (and a real
vhost-user back-end, net_vhost) for interop tests and benchmarks.

    with Testpmd([Testpmd.virtio_user(sock, server=False)], workdir=tmp) as tp:
        tp.wait_link_up(0)
        tp.send_exact(1000)            # exactly 1000 frames of 64 bytes on port 0

How to send EXACTLY N packets (testpmd's txonly engine has no packet count):
``start tx_first`` runs the txonly engine exactly once per forwarding stream
(one burst of ``set burst B`` frames of ``set txpkts S`` bytes on every
port/queue stream) *before* the prompt comes back, then starts the configured
engine.  So with the configured engine set to ``rxonly`` (which never
transmits), ``set burst B`` + ``start tx_first`` + ``stop`` transmits B frames
per stream and no others, and the ``TX-packets`` of ``stop``'s forward
statistics is the number the device accepted (txonly drops, and counts as
TX-dropped, what a full ring refuses; it never retries).  ``send_exact`` repeats
that round with the remaining count until exactly N were accepted.  With Q
queue pairs there are Q streams per port, so N must be a multiple of
``fwd_streams()``; ``show port xstats`` then shows N/Q on every queue.

Counting on the receiving side: use ``port_stats()`` (the PMD's own counters).
``start`` first drains the rx queues without forwarding (testpmd's rx flush):
frames already waiting are counted by the port, not by ``stop``'s forward stats.
``clear_stats`` only while forwarding is stopped (see there).

testpmd's stdout is a pipe, where C stdio buffers whole blocks: its command
output would arrive long after the prompt.  ``stdbuf -oL`` makes it line
buffered, so every command's output is complete when the next prompt shows.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tests.interop.hugepages import MOUNTPOINT, free_hugepages, hugetlbfs_mounted, HugepageError
from tests.interop.process import LoggedProcess, ProcessError, pid_alive

TESTPMD = "dpdk-testpmd"
PROMPT = re.compile(r"testpmd> ")
RUNTIME_DIR = Path("/var/run/dpdk")
MAX_BURST = 512                    # testpmd's MAX_PKT_BURST
DEFAULT_MBUFS = 16384              # 34 MiB of mbufs: fits -m 256 (testpmd's default wants ~600 MiB)
FWD_MODES = ("io", "mac", "macswap", "flowgen", "rxonly", "txonly", "csum", "icmpecho",
             "5tuple_swap", "noisy", "ieee1588", "shared-rxq")
ERRORS = ("Bad arguments", "Command not found", "Invalid", "Error")

_instances = itertools.count(1)


class TestpmdError(ProcessError):
    """testpmd failed, refused a command, or did not answer in time."""

    __test__ = False  # not a pytest test class despite the name


@dataclass(frozen=True)
class Vdev:
    """One ``--vdev`` of testpmd: a driver (``net_virtio_user``, ``net_vhost``)
    and its arguments.  ``Testpmd`` numbers them per driver on its command line."""

    driver: str
    args: tuple[tuple[str, str], ...]
    listens: bool            # this side creates the unix socket (server)
    path: Path
    queues: int

    def spec(self, index: int) -> str:
        return ",".join([f"{self.driver}{index}"] + [f"{k}={v}" for k, v in self.args])


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if len(os.fsencode(p)) >= 108:
        raise ValueError(f"unix socket path {p} is {len(os.fsencode(p))} bytes; "
                         "the limit is 107")
    if "," in str(p):
        raise ValueError(f"socket path {p} contains ',', which ends a vdev argument")
    return p


class Testpmd:
    """One interactive dpdk-testpmd, with its own --file-prefix, a log file,
    and every wait bounded.  Ended by PID (``close``)."""

    __test__ = False

    # -- vdev descriptions -----------------------------------------------------------

    @staticmethod
    def virtio_user(path: str | os.PathLike, *, server: bool, queues: int = 1,
                    mrg_rxbuf: bool = True, in_order: bool = False, packed_vq: bool = False,
                    mac: str | None = None, queue_size: int = 256) -> Vdev:
        """A virtio-user frontend on ``path``: ``server=True`` listens there
        (the back-end connects: ovsd's dpdkvhostuserclient), ``server=False``
        connects (the back-end listens: ovsd's dpdkvhostuser)."""
        p = _check_path(path)
        if queues < 1:
            raise ValueError(f"queues must be >= 1, got {queues}")
        args = [("path", str(p)), ("server", _flag(server)), ("queues", str(queues)),
                ("mrg_rxbuf", _flag(mrg_rxbuf)), ("in_order", _flag(in_order)),
                ("packed_vq", _flag(packed_vq)), ("queue_size", str(queue_size))]
        if mac is not None:
            args.append(("mac", mac))
        return Vdev("net_virtio_user", tuple(args), server, p, queues)

    @staticmethod
    def vhost(path: str | os.PathLike, *, client: bool = False, queues: int = 1) -> Vdev:
        """DPDK's own vhost-user back-end on ``path``: listens (``client=False``,
        like OVS dpdkvhostuser) or connects to a listening frontend (``client=True``)."""
        p = _check_path(path)
        if queues < 1:
            raise ValueError(f"queues must be >= 1, got {queues}")
        args = (("iface", str(p)), ("queues", str(queues)), ("client", _flag(client)))
        return Vdev("net_vhost", args, not client, p, queues)

    # -- process ---------------------------------------------------------------------

    def __init__(self, vdevs: Sequence[Vdev], *, workdir: str | os.PathLike,
                 name: str | None = None, lcores: str = "0,1", memory_mb: int = 256,
                 nohuge_memory_mb: int = 1024, hugepages: bool | None = None,
                 total_mbufs: int = DEFAULT_MBUFS, rxq: int | None = None,
                 txq: int | None = None, eth_peers: Mapping[int, str] | None = None,
                 app_args: Sequence[str] = (), eal_args: Sequence[str] = ()):
        """``hugepages``: True = require them, False = ``--no-huge``, None = use
        them when enough are free, else fall back to ``--no-huge``.  ``rxq``/``txq``
        default to the largest ``queues`` of the vdevs."""
        if not vdevs:
            raise ValueError("testpmd needs at least one vdev (it runs with --no-pci)")
        if len(lcores.replace("-", ",").split(",")) < 2:
            raise ValueError(f"lcores {lcores!r}: testpmd needs two (main + one forwarding)")
        self.vdevs = list(vdevs)
        self.workdir = Path(workdir)
        self.prefix = f"ovsdt{os.getpid()}_{next(_instances)}"
        self.name = name or self.prefix
        self.log_path = self.workdir / f"testpmd-{self.name}.log"
        self.lcores = lcores
        self.memory_mb = memory_mb
        self.nohuge_memory_mb = nohuge_memory_mb
        self.hugepages = hugepages
        self.total_mbufs = total_mbufs
        q = max(v.queues for v in self.vdevs)
        self.rxq = rxq or q
        self.txq = txq or q
        self.eth_peers = dict(eth_peers or {})
        self.app_args = list(app_args)
        self.eal_args = list(eal_args)
        self.used_hugepages: bool | None = None   # what the running instance got
        #: The process of the current start attempt, as soon as it exists (a test
        #: may end it while ``launch`` still waits for it).
        self.spawned_pid: int | None = None
        self.fwd_mode = "io"                      # testpmd's default engine
        self.forwarding = False
        self._proc: LoggedProcess | None = None
        self._last: LoggedProcess | None = None   # kept after close, for its transcript
        self._ready = False
        self._lock = threading.RLock()

    def argv(self, use_hugepages: bool) -> list[str]:
        counters: dict[str, int] = {}
        vdev_args = []
        for v in self.vdevs:
            i = counters.get(v.driver, 0)
            counters[v.driver] = i + 1
            vdev_args.append(f"--vdev={v.spec(i)}")
        mem = (["-m", str(self.memory_mb), "--single-file-segments"] if use_hugepages
               else ["--no-huge", "-m", str(self.nohuge_memory_mb)])
        app = ["-i", f"--rxq={self.rxq}", f"--txq={self.txq}",
               f"--total-num-mbufs={self.total_mbufs}", "--no-mlockall"]
        app += [f"--eth-peer={port},{mac}" for port, mac in sorted(self.eth_peers.items())]
        # stdbuf: see the module docstring (line-buffered stdout through a pipe)
        return (["stdbuf", "-oL", TESTPMD, "-l", self.lcores, "--file-prefix", self.prefix,
                 "--no-pci", *mem, *vdev_args, *self.eal_args, "--", *app, *self.app_args])

    def _hugepages_available(self) -> bool:
        try:
            return hugetlbfs_mounted() and free_hugepages() >= self.memory_mb // 2 + 8
        except HugepageError:
            return False

    def launch(self, timeout: float = 60.0) -> "Testpmd":
        """Spawn testpmd and return once it is usable *or* blocked on a peer:
        at the ``testpmd>`` prompt, or when every socket it listens on exists
        (a ``virtio_user`` with ``server=1`` waits in device probe, before the
        prompt, until the back-end connects: start the back-end, then call
        ``wait_ready``).  With ``hugepages=None`` a hugepage start that fails
        (pages taken meanwhile) is retried once with ``--no-huge``."""
        if shutil.which(TESTPMD) is None:
            raise TestpmdError(f"{TESTPMD} not found (Debian package dpdk-dev)")
        if self._proc is not None:
            raise TestpmdError(f"testpmd {self.name} was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for v in self.vdevs:
            if v.listens:
                _remove_stale_socket(v.path)
        if self.hugepages is None:
            attempts = [True, False] if self._hugepages_available() else [False]
        else:
            attempts = [self.hugepages]
        for n, huge in enumerate(attempts):
            proc = LoggedProcess(self.argv(huge), self.log_path, stdin_pipe=True,
                                 label=f"testpmd {self.name}")
            proc.spawn()
            self.spawned_pid = proc.pid
            deadline = time.monotonic() + timeout
            listening = [v.path for v in self.vdevs if v.listens]
            while True:
                if PROMPT.search(proc.text()):
                    self._ready = True
                    break
                if not proc.alive():
                    break
                if listening and all(p.is_socket() for p in listening):
                    break
                if time.monotonic() > deadline:
                    err = proc.error(f"testpmd {self.name}: neither a prompt nor its "
                                     f"sockets after {timeout:g} s")
                    proc.stop()
                    self._cleanup_files()
                    raise TestpmdError(str(err))
                time.sleep(0.05)
            if proc.alive():
                self._proc = proc
                self.used_hugepages = huge
                return self
            err = proc.error(f"testpmd {self.name} exited during start "
                             f"(exit status {proc.returncode()})")
            proc.stop()
            self._cleanup_files()
            if n + 1 == len(attempts):
                raise TestpmdError(str(err))
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = 60.0) -> "Testpmd":
        """Wait for the first ``testpmd>`` prompt."""
        if self._proc is None:
            raise TestpmdError(f"testpmd {self.name} was not launched")
        if not self._ready:
            try:
                self._proc.wait_for(PROMPT, timeout, what="the testpmd> prompt")
            except ProcessError as e:
                raise TestpmdError(str(e)) from None
            self._ready = True
        return self

    def start(self, timeout: float = 60.0) -> "Testpmd":
        """``launch`` + ``wait_ready``: returns at the prompt or raises with the
        log tail."""
        deadline = time.monotonic() + timeout
        self.launch(timeout)
        try:
            return self.wait_ready(max(1.0, deadline - time.monotonic()))
        except TestpmdError:
            self.close()
            raise

    def close(self) -> int | None:
        """``quit``, then SIGTERM/SIGKILL by PID if it hangs; removes the
        runtime dir, hugepage files and the sockets this instance listened on."""
        if self._proc is None:
            return None
        proc, self._proc = self._proc, None
        self._last = proc
        # "quit" is only read at the prompt; one blocked in device probe gets SIGTERM
        polite = (lambda: proc.write("quit\n")) if self._ready else None
        self._ready = False
        self.forwarding = False
        rc = proc.stop(polite=polite, grace=15.0)
        self._cleanup_files()
        return rc

    def _cleanup_files(self) -> None:
        # EAL leaves its hugepage file (kept for secondary processes) and runtime dir
        if MOUNTPOINT.is_dir():
            for f in MOUNTPOINT.glob(f"{self.prefix}map_*"):
                f.unlink(missing_ok=True)
        shutil.rmtree(RUNTIME_DIR / self.prefix, ignore_errors=True)
        for v in self.vdevs:
            if v.listens and v.path.is_socket():
                v.path.unlink(missing_ok=True)

    def __enter__(self) -> "Testpmd":
        # a launched instance may be waiting for its peer: do not block here
        return self.start() if self._proc is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def log_tail(self, lines: int = 40) -> str:
        proc = self._proc or self._last
        return proc.tail(lines) if proc else ""

    def transcript(self) -> str:
        """Everything testpmd printed so far (also in ``log_path``), also after close."""
        proc = self._proc or self._last
        return proc.text() if proc else ""

    # -- commands --------------------------------------------------------------------

    def cmd(self, text: str, timeout: float = 10.0) -> str:
        """Send one command line; return what testpmd printed before the next
        prompt (the echo of the command removed)."""
        if "\n" in text:
            raise ValueError(f"one command per call, got {text!r}")
        with self._lock:
            if not self._ready:
                self.wait_ready()
            if self._proc is None or not self._proc.alive():
                raise TestpmdError(f"testpmd {self.name} is not running (command {text!r})"
                                   + (f"\n{self._proc.tail()}" if self._proc else ""))
            start = self._proc.offset()
            self._proc.write(text + "\n")
            try:
                m = self._proc.wait_for(PROMPT, timeout, start=start, what=f"output of {text!r}")
            except ProcessError as e:
                raise TestpmdError(str(e)) from None
            out = self._proc.text(start)[: m.start() - start]
        lines = out.replace("\r", "").split("\n")
        for i, line in enumerate(lines):
            if line.strip() == text.strip():   # the line editor's echo
                del lines[i]
                break
        return "\n".join(lines)

    def checked(self, text: str, timeout: float = 10.0) -> str:
        """``cmd`` that raises TestpmdError when testpmd reports an error."""
        out = self.cmd(text, timeout)
        for marker in ERRORS:
            if marker in out:
                raise TestpmdError(f"testpmd {self.name} refused {text!r}:\n{out.strip()}")
        return out

    def set_fwd(self, mode: str) -> None:
        if mode.split()[0] not in FWD_MODES:
            raise ValueError(f"unknown forwarding mode {mode!r}; one of {', '.join(FWD_MODES)}")
        out = self.cmd(f"set fwd {mode}")
        if not re.search(r"Set \S+ packet forwarding mode", out):
            raise TestpmdError(f"testpmd {self.name}: 'set fwd {mode}' failed:\n{out.strip()}")
        self.fwd_mode = mode

    def start_fwd(self, tx_first: int | None = None, timeout: float = 30.0) -> str:
        """``start`` (or ``start tx_first [N]``: N bursts of txonly on every
        stream, sent before this returns, then the configured engine)."""
        if tx_first is None:
            line = "start"
        elif tx_first < 1:
            raise ValueError(f"tx_first must be >= 1, got {tx_first}")
        else:
            line = "start tx_first" if tx_first == 1 else f"start tx_first {tx_first}"
        out = self.cmd(line, timeout)
        if "already started" in out or "Either rxq or txq are 0" in out:
            raise TestpmdError(f"testpmd {self.name}: {line!r}:\n{out.strip()}")
        self.forwarding = True
        return out

    def stop_fwd(self, timeout: float = 30.0) -> dict[int, dict[str, int]]:
        """``stop``; the per-port forward statistics of the run that ended
        (rx_packets, rx_dropped, rx_total, tx_packets, tx_dropped, tx_total, ...).
        Empty when forwarding was not started."""
        out = self.cmd("stop", timeout)
        self.forwarding = False
        return parse_fwd_stats(out)

    def port_stats(self) -> dict[int, dict[str, int]]:
        """``show port stats all``: rx_packets, rx_bytes, rx_errors, rx_missed,
        rx_nombuf, tx_packets, tx_bytes, tx_errors, rx_pps, tx_pps, rx_bps, tx_bps."""
        return parse_port_stats(self.cmd("show port stats all"))

    def xstats(self, port: int) -> dict[str, int]:
        """``show port xstats``: per-queue counters such as rx_q1_packets."""
        out = self.cmd(f"show port xstats {port}")
        if "extended statistics for port" not in out:
            raise TestpmdError(f"testpmd {self.name}: no xstats for port {port}:\n{out.strip()}")
        return {k: int(v) for k, v in re.findall(r"^(\w+): (\d+)$", out, re.M)}

    def clear_stats(self) -> None:
        """``clear port stats all``; only while forwarding is stopped: the PMDs
        add to their counters on every poll (+= 0 included) without atomics, so
        a reset from the main core while a forwarding core polls is lost as
        often as not (seen: a "cleared" net_vhost rx counter kept 9472).  While
        forwarding, compare two ``port_stats()`` snapshots instead."""
        if self.forwarding:
            raise TestpmdError(f"testpmd {self.name}: stop forwarding before clearing "
                               "stats (the reset races the polling core)")
        self.checked("clear port stats all")

    def port_info(self, port: int) -> dict[str, str]:
        out = self.cmd(f"show port info {port}")
        if "Infos for port" not in out:
            raise TestpmdError(f"testpmd {self.name}: no port {port}:\n{out.strip()}")
        return parse_port_info(out)

    def mac(self, port: int) -> str:
        """The port's Ethernet address, lower case."""
        return self.port_info(port)["MAC address"].lower()

    def link_status(self, port: int) -> str:
        """"up" or "down"."""
        return self.port_info(port)["Link status"]

    def wait_link_up(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.link_status(port) != "up":
            if time.monotonic() > deadline:
                raise TestpmdError(f"testpmd {self.name}: port {port} link still down after "
                                   f"{timeout:g} s\n{self.log_tail()}")
            time.sleep(0.1)

    def set_eth_peer(self, port: int, mac: str) -> None:
        self.checked(f"set eth-peer {port} {mac}")

    def fwd_streams(self) -> int:
        """How many forwarding streams (port x queue) the engine runs."""
        out = self.cmd("show config fwd")
        m = re.search(r"streams=(\d+)", out)
        if not m:
            raise TestpmdError(f"testpmd {self.name}: no stream count in:\n{out.strip()}")
        return int(m.group(1))

    def send_exact(self, count: int, *, size: int = 64, max_burst: int = 64,
                   timeout: float = 30.0) -> int:
        """Transmit exactly ``count`` frames of ``size`` bytes (txonly's UDP
        template) spread over all forwarding streams; returns ``count``.
        ``count`` must be a multiple of ``fwd_streams()``.  Frames a full ring
        refuses are not counted and are sent again in the next round."""
        if self.forwarding:
            raise TestpmdError(f"testpmd {self.name}: stop forwarding before send_exact")
        if not 1 <= max_burst <= MAX_BURST:
            raise ValueError(f"max_burst must be in 1..{MAX_BURST}, got {max_burst}")
        streams = self.fwd_streams()
        if count < 0 or count % streams:
            raise ValueError(f"count {count} is not a multiple of the {streams} forwarding "
                             "streams (tx_first sends one burst on each)")
        previous = self.fwd_mode
        self.checked(f"set txpkts {size}")
        self.set_fwd("rxonly")   # the engine after tx_first must not transmit
        sent = 0
        deadline = time.monotonic() + timeout
        try:
            while sent < count:
                remaining = count - sent
                if remaining % streams:
                    raise TestpmdError(f"testpmd {self.name}: {sent} of {count} sent; the "
                                       f"ring refused {remaining % streams} frame(s) of one "
                                       f"stream, so {streams} streams cannot send exactly "
                                       "the rest")
                burst = min(max_burst, remaining // streams)
                self.checked(f"set burst {burst}")
                self.start_fwd(tx_first=1)
                stats = self.stop_fwd()
                got = sum(s.get("tx_packets", 0) for s in stats.values())
                if got > burst * streams:
                    raise TestpmdError(f"testpmd {self.name}: sent {got} frames in one "
                                       f"round of {burst} x {streams}: {stats}")
                sent += got
                if got < burst * streams:
                    if time.monotonic() > deadline:
                        raise TestpmdError(f"testpmd {self.name}: only {sent} of {count} "
                                           f"frames accepted in {timeout:g} s")
                    time.sleep(0.02)   # let the peer drain the ring
        finally:
            self.checked("set burst 32")
            self.set_fwd(previous)
        return sent


def _remove_stale_socket(path: Path) -> None:
    """A socket file nobody listens on (left by a killed run) makes bind() fail."""
    if not path.is_socket():
        if path.exists():
            raise TestpmdError(f"{path} exists and is not a socket")
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            return
        except OSError:
            return
    raise TestpmdError(f"something already listens on {path}")


def sweep_stale() -> list[str]:
    """Remove hugepage files and runtime dirs that testpmd instances of test
    processes no longer alive left behind (prefix ovsdt<pid>_<n>); returns them."""
    removed = []
    for base, pattern in ((MOUNTPOINT, "ovsdt*_*map_*"), (RUNTIME_DIR, "ovsdt*_*")):
        if not base.is_dir():
            continue
        for f in base.glob(pattern):
            m = re.match(r"ovsdt(\d+)_", f.name)
            if not m or pid_alive(int(m.group(1))):
                continue
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
            removed.append(str(f))
    return removed



# -- output parsers ----------------------------------------------------------------------

_COUNTER = re.compile(r"([A-Za-z]+(?:-[A-Za-z]+)?):\s+(\d+)")
_FWD_PORT = re.compile(r"Forward statistics for port (\d+)\s*-+\n(.*?)\n\s*-{20,}", re.S)
_NIC_PORT = re.compile(r"NIC statistics for port (\d+)\s*#+\n(.*?)\n\s*#{20,}", re.S)


def _counters(block: str) -> dict[str, int]:
    return {k.lower().replace("-", "_"): int(v) for k, v in _COUNTER.findall(block)}


def parse_fwd_stats(text: str) -> dict[int, dict[str, int]]:
    """Per-port blocks of ``stop``'s "Forward statistics for port N"."""
    return {int(p): _counters(body) for p, body in _FWD_PORT.findall(text)}


def parse_port_stats(text: str) -> dict[int, dict[str, int]]:
    """Per-port blocks of ``show port stats``."""
    return {int(p): _counters(body) for p, body in _NIC_PORT.findall(text)}


def parse_port_info(text: str) -> dict[str, str]:
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.strip() and not key.startswith(" "):
            info.setdefault(key.strip(), value.strip())
    return info
