"""Network namespaces and veth pairs for integration tests.

    with netns() as ns, veth(ns) as link:
        # link.outer lives in this process's namespace (give it to the switch),
        # link.inner lives in ns (the "host" behind the port)
        with link.inner_socket() as s:       # raw AF_PACKET socket in ns on link.inner
            s.send(frame)
        ns.run("ip", "addr", "add", "10.0.0.1/24", "dev", link.inner)

Names carry this process's pid and a counter (unique per run, at most 15
characters for interfaces), every context manager undoes what it did even
when the body fails, and ``sweep_stale()`` removes what a killed run left
behind.  Everything runs ``ip`` with a timeout; sockets inside a namespace
are made by a short-lived thread that enters it (setns), so no process is
started for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

from tests.interop.process import pid_alive

T = TypeVar("T")

PREFIX = "ovt"
IP_TIMEOUT = 10.0
ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
CLONE_NEWNET = 0x40000000
SIOCETHTOOL = 0x8946
SIOCGIFHWADDR = 0x8927
ETHTOOL_STXCSUM = 0x00000017

_counter = itertools.count(1)
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def unique_name(kind: str = "n") -> str:
    """A name no other test run uses: PREFIX, our pid in hex, ``kind``, a counter.
    ``kind`` must not be a hex digit (it separates the pid from the counter)."""
    return f"{PREFIX}{os.getpid():x}{kind}{next(_counter):x}"


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, AF_PACKET)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    name = unique_name("p")
    try:
        proc = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns add` failed: {e}"
    if proc.returncode:
        return f"`ip netns add` failed: {proc.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None



def sweep_stale() -> None:
    """Delete namespaces and links left by test runs whose process is gone."""
    pattern = re.compile(rf"^{PREFIX}([0-9a-f]+)[g-z]")
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pattern.match(name)
        if m and not pid_alive(int(m.group(1), 16)):
            _kill_members(name)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = pattern.match(name)
        if m and not pid_alive(int(m.group(1), 16)):
            _ip("link", "del", name, check=False)


def _kill_members(ns_name: str) -> None:
    pids = _ip("netns", "pids", ns_name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that joined the network namespace at ``path``."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name="netns-enter", daemon=True)
    thread.start()
    thread.join(IP_TIMEOUT)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    if "value" not in box:
        raise TimeoutError(f"entering {path} took longer than {IP_TIMEOUT} s")
    return box["value"]  # type: ignore[return-value]


@dataclass
class Netns:
    """A network namespace made by ``netns()``."""

    name: str
    _sockets: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def run(self, *cmd: str, check: bool = True,
            timeout: float = IP_TIMEOUT) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the namespace (ip netns exec), bounded by ``timeout``."""
        proc = subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} in {self.name}: "
                               f"{(proc.stderr or proc.stdout).strip()}")
        return proc

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        """Start ``cmd`` inside the namespace; it is killed when the namespace goes."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` run from inside the namespace (what it creates lives there)."""
        return _in_netns(self.path, fn)

    def socket(self, family: int, type_: int, proto: int = 0) -> socket.socket:
        """A socket of this namespace; closed with the namespace if still open."""
        sock = self.call(lambda: socket.socket(family, type_, proto))
        self._sockets.append(sock)
        return sock

    def packet_socket(self, ifname: str) -> socket.socket:
        """A raw AF_PACKET socket bound to ``ifname`` in this namespace: send()
        puts a whole Ethernet frame on the wire, recv() gets each frame that
        arrives (VLAN tags are in the kernel's auxdata, not in the frame)."""
        sock = self.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # Only what arrives, not the frames this namespace sends.
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        # Room for a test's whole burst even when the reader is slow to run
        # (a loaded machine): a full socket buffer drops frames silently.
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sock.bind((ifname, ETH_P_ALL))
        return sock

    def disable_tx_offloads(self, ifname: str) -> None:
        """Checksum (and with it segmentation) offload off, so the frames the
        namespace's stack sends are complete on the wire, as a switch that
        forwards them with AF_PACKET needs (OVS's advice for veths as well)."""
        def apply() -> None:
            value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0), 8)
            ifr = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(value))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                fcntl.ioctl(s, SIOCETHTOOL, ifr)
        self.call(apply)

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()


@contextlib.contextmanager
def netns() -> Iterator[Netns]:
    """A fresh network namespace (with lo up), deleted on exit with every
    process still running in it."""
    ns = Netns(unique_name("n"))
    _ip("netns", "add", ns.name)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        ns._close_sockets()
        _kill_members(ns.name)
        _ip("netns", "del", ns.name, check=False)


@dataclass
class Veth:
    """A veth pair: ``outer`` in the caller's namespace, ``inner`` in ``ns``."""

    outer: str
    inner: str
    ns: Netns

    @property
    def outer_mac(self) -> bytes:
        return _read_mac(self.outer)

    @property
    def inner_mac(self) -> bytes:
        return self.ns.call(lambda: _read_mac(self.inner))

    def inner_socket(self) -> socket.socket:
        """A raw AF_PACKET socket on ``inner`` (see Netns.packet_socket)."""
        return self.ns.packet_socket(self.inner)

    def set_up(self, up: bool = True) -> None:
        _ip("link", "set", self.outer, "up" if up else "down")


def _disable_ipv6(ifname: str) -> None:
    # /proc/sys/net answers for the opening thread's namespace.
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")


def _read_mac(ifname: str) -> bytes:
    """By ioctl: /sys shows the namespace it was mounted in, not the caller's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        reply = fcntl.ioctl(s, SIOCGIFHWADDR, struct.pack("16s24x", ifname.encode()))
    return reply[18:24]


@contextlib.contextmanager
def veth(ns: Netns, *, mtu: int | None = None, tx_offloads: bool = False,
         queues: int | None = None) -> Iterator[Veth]:
    """A veth pair, both ends up, ``inner`` moved into ``ns``; deleted on exit
    (if the test did not delete it already).  By default the inner end does
    not offload checksums (see Netns.disable_tx_offloads).  ``queues``: rx and
    tx queues of each end (the kernel's default is one)."""
    outer, inner = unique_name("v"), unique_name("v")
    nq = [] if queues is None else ["numrxqueues", str(queues), "numtxqueues", str(queues)]
    _ip("link", "add", outer, *nq, "type", "veth", "peer", "name", inner, *nq,
        "netns", ns.name)
    try:
        if mtu is not None:
            _ip("link", "set", outer, "mtu", str(mtu))
            ns.run("ip", "link", "set", inner, "mtu", str(mtu))
        if not tx_offloads:
            ns.disable_tx_offloads(inner)
        # No IPv6 autoconfiguration chatter (router solicitations, MLD): the
        # only frames on the link are the ones the test sends.
        _disable_ipv6(outer)
        ns.call(lambda: _disable_ipv6(inner))
        ns.run("ip", "link", "set", inner, "up")
        _ip("link", "set", outer, "up")
        yield Veth(outer, inner, ns)
    finally:
        _ip("link", "del", outer, check=False)
