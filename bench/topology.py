"""The afpacket benchmarks' wiring: a generator and a sink namespace, each
behind a veth whose outer end a switch under test owns; trafgen in the
generator; exact counters read inside the namespaces.

    trafgen (gen ns, core 0) -> gen.inner ==veth== gen.outer -> switch (core 1)
        -> sink.outer ==veth== sink.inner (sink ns: counts and drops)

Namespaces and veths come from tests/integration/netns.py (unique names,
IPv6 off, checksum offload off on the inner ends, deleted on exit).  Frames
go to a MAC that no stack owns, so the sink's kernel drops them right after
counting them and nothing ever answers: the counters are exact.

On a veth, one end's rx counters are its peer's tx counters, so "what trafgen
put on the wire" is the generator end's tx_packets and "what arrived" is the
sink end's rx_packets, both read over rtnetlink from a socket made inside the
namespace (sysfs would show the namespace it was mounted in).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.integration.netns import Netns, Veth, netns, sweep_stale, unavailable_reason, veth

GEN_CPU = 0
SWITCH_CPU = 1
FRAME_LEN = 64
SRC_MAC = "02:aa:00:00:00:01"
DST_MAC = "02:bb:00:00:00:02"  # nobody's: the sink's stack counts the frame and drops it
DST_IP = "10.2.0.1"
DST_PORT = 9

# rtnetlink, just enough to read one link's 64-bit counters.
NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
IFLA_IFNAME, IFLA_STATS64 = 3, 23
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
STAT_NAMES = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes",
              "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")


def _align4(n: int) -> int:
    return (n + 3) & ~3


def getlink_request(ifname: str, seq: int) -> bytes:
    """An RTM_GETLINK request for the link called ``ifname``."""
    name = ifname.encode() + b"\0"
    attr = _RTATTR.pack(_RTATTR.size + len(name), IFLA_IFNAME) + name
    attr += bytes(_align4(len(attr)) - len(attr))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body


def parse_link_stats(reply: bytes) -> dict[str, int]:
    """The counters of an RTM_NEWLINK reply (IFLA_STATS64); an NLMSG_ERROR
    reply raises OSError with the kernel's errno."""
    length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(reply)
    if kind == NLMSG_ERROR:
        errno = -struct.unpack_from("=i", reply, _NLMSGHDR.size)[0]
        raise OSError(errno, f"RTM_GETLINK: {os.strerror(errno)}")
    if kind != RTM_NEWLINK:
        raise ValueError(f"expected an RTM_NEWLINK reply, got message type {kind}")
    off = _NLMSGHDR.size + _IFINFOMSG.size
    end = min(length, len(reply))
    while off + _RTATTR.size <= end:
        alen, atype = _RTATTR.unpack_from(reply, off)
        if alen < _RTATTR.size:
            break
        if atype & 0x3FFF == IFLA_STATS64:
            values = struct.unpack_from(f"={len(STAT_NAMES)}Q", reply, off + _RTATTR.size)
            return dict(zip(STAT_NAMES, values))
        off += _align4(alen)
    raise ValueError("RTM_NEWLINK reply without IFLA_STATS64")


class LinkCounters:
    """Reads one interface's counters through a netlink socket of the
    namespace the socket was made in (one request, one reply: microseconds)."""

    def __init__(self, sock: socket.socket, ifname: str):
        self._sock = sock
        self.ifname = ifname
        self._seq = 0
        sock.bind((0, 0))
        sock.settimeout(5.0)

    def read(self) -> dict[str, int]:
        self._seq += 1
        self._sock.send(getlink_request(self.ifname, self._seq))
        return parse_link_stats(self._sock.recv(65536))


def cpu_times() -> dict[int, tuple[int, ...]]:
    """Per CPU: jiffies of user, nice, system, idle, iowait, irq, softirq, steal."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            head, *rest = line.split()
            if head.startswith("cpu") and head[3:].isdigit():
                times[int(head[3:])] = tuple(int(v) for v in rest[:8])
    return times


@dataclass(frozen=True)
class CpuShare:
    """How one CPU spent an interval, as shares of it."""
    busy: float          # running anything: user + system + irq + softirq
    steal: float         # the hypervisor gave it to someone else
    user: float = 0.0    # user space (Python, trafgen's packet copying), nice included
    system: float = 0.0  # system calls (the ring flushes, the veth transmits)
    softirq: float = 0.0  # the kernel's receive work (backlog -> sockets, the sink's stack)


def cpu_shares(before: tuple[int, ...], after: tuple[int, ...]) -> CpuShare:
    delta = [b - a for a, b in zip(before, after)]
    delta += [0] * (8 - len(delta))
    total = sum(delta)
    if total <= 0:
        return CpuShare(0.0, 0.0)
    user, nice, system, idle, iowait, _irq, softirq, steal = delta[:8]
    return CpuShare((total - idle - iowait - steal) / total, steal / total,
                    (user + nice) / total, system / total, softirq / total)


PF_KTHREAD = 0x00200000


def process_ticks() -> dict[int, tuple[str, int, bool]]:
    """Every process: (name, user + system clock ticks so far, is a kernel thread)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue  # gone meanwhile
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): flags is field 9, utime 14, stime 15.
        out[int(entry)] = (name, int(fields[11]) + int(fields[12]),
                           bool(int(fields[6]) & PF_KTHREAD))
    return out


def foreign_cpu(before: dict[int, tuple[str, int, bool]],
                after: dict[int, tuple[str, int, bool]], ours: set[int],
                seconds: float) -> dict[str, float]:
    """CPU (in cores) that user processes other than ``ours`` used between two
    process_ticks() samples, by process name, largest first."""
    hz = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid, (name, ticks, kthread) in after.items():
        if kthread or pid in ours or seconds <= 0:
            continue
        start = before.get(pid, (name, 0, False))[1] if pid in before else 0
        share = (ticks - start) / hz / seconds
        if share > 0:
            used[name] = used.get(name, 0.0) + share
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


@dataclass
class Topology:
    gen: Netns
    sink: Netns
    gen_link: Veth
    sink_link: Veth
    offered_counter: LinkCounters    # the generator end (tx_packets: what trafgen sent)
    delivered_counter: LinkCounters  # the sink end (rx_packets: what arrived)

    @property
    def in_if(self) -> str:
        """The switch's ingress interface (OpenFlow port 1)."""
        return self.gen_link.outer

    @property
    def out_if(self) -> str:
        """The switch's egress interface (OpenFlow port 2)."""
        return self.sink_link.outer

    def offered(self) -> tuple[int, int]:
        """(frames trafgen put on the wire, frames the veth refused)."""
        c = self.offered_counter.read()
        return c["tx_packets"], c["tx_dropped"]

    def delivered(self) -> int:
        return self.delivered_counter.read()["rx_packets"]


def missing() -> str | None:
    """Why the topology cannot be built here, or None."""
    reason = unavailable_reason()
    if reason:
        return reason
    if not os.path.exists(f"/sys/devices/system/cpu/cpu{SWITCH_CPU}"):
        return f"needs CPUs {GEN_CPU} and {SWITCH_CPU} (generator and switch cores)"
    return None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (a second Ctrl-C must
    not cut a cleanup short); processes started inside inherit the mask, so
    start none that must be stopped by a signal."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """Both namespaces and veths, up and quiet; all deleted on exit."""
    sweep_stale()
    stack = contextlib.ExitStack()
    try:
        gen = stack.enter_context(netns())
        sink = stack.enter_context(netns())
        gen_link = stack.enter_context(veth(gen))
        sink_link = stack.enter_context(veth(sink))
        offered = LinkCounters(gen.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE),
                               gen_link.inner)
        delivered = LinkCounters(sink.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                             NETLINK_ROUTE), sink_link.inner)
        yield Topology(gen, sink, gen_link, sink_link, offered, delivered)
    finally:
        with signals_deferred():
            stack.close()


# -- traffic -------------------------------------------------------------------------

def ipv4_text(addr: int) -> str:
    return ".".join(str(addr >> s & 255) for s in (24, 16, 8, 0))


def trafgen_config(flows: list[tuple[int, int]]) -> str:
    """A trafgen configuration with one 64-byte UDP frame per (source IPv4
    address, source port) in ``flows``: trafgen sends them round robin, and
    their checksums are computed once, at compile time."""
    if not flows:
        raise ValueError("trafgen_config needs at least one (source address, port) flow")
    payload = FRAME_LEN - 14 - 20 - 8
    lines = []
    for addr, sport in flows:
        if not (0 <= addr < 1 << 32 and 0 <= sport < 1 << 16):
            raise ValueError(f"flow ({addr}, {sport}): expected an IPv4 address as an int "
                             "and a port from 0 to 65535")
        lines.append(f"{{ eth(da={DST_MAC}, sa={SRC_MAC}, type=0x0800), "
                     f"ipv4(saddr={ipv4_text(addr)}, daddr={DST_IP}, ttl=64), "
                     f"udp(sp={sport}, dp={DST_PORT}), fill(0x00, {payload}) }}")
    return "\n".join(lines) + "\n"


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found += kids
            todo += kids
    return found


def stop_pids(pids: list[int], sig: int = signal.SIGTERM, timeout: float = 10.0,
              reap: subprocess.Popen | None = None) -> None:
    """Send ``sig`` to each pid, wait up to ``timeout`` for all to go, then
    SIGKILL the rest.  ``reap`` is the Popen among them (waited for, so it
    leaves no zombie)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid, reap) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid, reap):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if reap is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            reap.wait(timeout=5)


def _alive(pid: int, reap: subprocess.Popen | None) -> bool:
    if reap is not None and pid == reap.pid:
        return reap.poll() is None
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


class Trafgen:
    """One trafgen process (``--cpus 1``: a parent and one sender, both on
    ``cpu``) sending ``config`` out of ``ifname`` in namespace ``ns`` as fast
    as it can.  It leaves the host's socket memory settings and IRQ
    affinities alone."""

    def __init__(self, ns: Netns, ifname: str, config: str, cpu: int = GEN_CPU):
        self.ns, self.ifname, self.config, self.cpu = ns, ifname, config, cpu
        self._dir: Path | None = None
        self._log = None
        self._proc: subprocess.Popen | None = None

    @staticmethod
    def missing() -> str | None:
        from shutil import which
        if which("trafgen") is None:
            return "trafgen is not installed (Debian package netsniff-ng)"
        if which("taskset") is None:
            return "taskset is not installed (Debian package util-linux)"
        return None

    def __enter__(self) -> "Trafgen":
        self._dir = Path(tempfile.mkdtemp(prefix="trafgen-"))
        conf = self._dir / "frames.cfg"
        conf.write_text(self.config)
        self._log = open(self._dir / "trafgen.log", "w+")
        try:
            self._proc = self.ns.popen(
                "taskset", "-c", str(self.cpu), "trafgen", "--dev", self.ifname,
                "--conf", str(conf), "--cpus", "1", "--no-sock-mem", "--notouch-irq",
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True)
            self._wait_sending()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_sending(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"trafgen exited with status {self._proc.returncode}: "
                                   f"{self.log_tail()}")
            if "Running!" in self.log_tail():
                return
            time.sleep(0.02)
        raise RuntimeError(f"trafgen did not start sending within {timeout:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        self._log.flush()
        text = (self._dir / "trafgen.log").read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def __exit__(self, *exc) -> None:
        with signals_deferred():
            if self._proc is not None:
                # SIGINT is trafgen's stop; the parent does not pass it on to
                # its sender, so both get it, the sender first.
                pids = [*reversed(descendants(self._proc.pid)), self._proc.pid]
                stop_pids(pids, signal.SIGINT, timeout=5.0, reap=self._proc)
                self._proc = None
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._dir is not None:
                for p in self._dir.iterdir():
                    p.unlink()
                self._dir.rmdir()
                self._dir = None


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def print_foreign(windows: list[dict[str, float]]) -> None:
    """How much CPU other processes took during the measured windows (each a
    {process name: cores} from foreign_cpu): the median and the worst."""
    if not windows:
        return
    totals = [sum(w.values()) for w in windows]
    worst = windows[totals.index(max(totals))]
    top = ", ".join(f"{name} {share:.2f}" for name, share in list(worst.items())[:4]
                    if share >= 0.01)
    print(f"other processes (not this benchmark's) used a median of "
          f"{statistics.median(totals):.2f} cores during the windows, at most {max(totals):.2f}"
          + (f" ({top})" if top else "") + (": the figures are disturbed" if max(totals) > 0.1
                                            else ""))
