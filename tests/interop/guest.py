"""A tiny Linux guest under QEMU (TCG) with one vhost-user virtio-net NIC.

    image = build_guest()          # once; cached (OVSD_GUEST_CACHE overrides the place)
    with Guest(image, sock, workdir=tmp, ip="10.0.0.1/24",
               command=ping_cmd("10.0.0.2", 3)) as g:
        g.wait_for("GUEST-READY", 60)
        line = g.wait_for("PING-RESULT", 60)

The image is built from Debian packages only: the cloud kernel (whose .deb is
fetched with ``apt-get download``), its virtio modules, busybox-static, and
``guest_init.sh`` as /init.  The guest's command runs after the network is up;
it may use the shell functions /init defines (ping_report, ping_loop,
tcp_send, tcp_recv: the ``*_cmd`` helpers below build those calls, the
``parse_*`` helpers read their markers back from the console).

QEMU choices that matter (each one was needed on this QEMU 7.2, TCG-only host):
``vectors=0`` on the NIC (TCG + vhost-user + MSI-X crashes QEMU when the guest
sets DRIVER_OK), guest RAM as a ``share=on`` file on /dev/shm (the back-end maps
it; hugepages are shared with other jobs and often short), and
``no_timer_check`` (a starved TCG guest can otherwise hang on the 8254 check).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import itertools
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from tests.interop.process import LoggedProcess, ProcessError

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "guest_init.sh"
DEFAULT_CACHE = Path("/var/cache/ovsd-tests/guest")
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
# the NIC's drivers; their dependencies come from each module's .modinfo
ROOT_MODULES = {"VIRTIO_PCI": "virtio_pci", "VIRTIO_NET": "virtio_net"}
BUILD_FORMAT = 1   # bump when the image layout changes: new cache key
QEMU = "qemu-system-x86_64"
CMDLINE_MAX = 2048  # x86 COMMAND_LINE_SIZE

_guests = itertools.count(1)


class GuestError(ProcessError):
    """Building or running the guest failed."""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str
    modules: tuple[str, ...]   # load order, dependencies first


# -- building the image -------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("OVSD_GUEST_CACHE") or DEFAULT_CACHE)


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GuestError(f"{' '.join(argv)}: {e}") from e
    if proc.returncode:
        raise GuestError(f"{' '.join(argv)} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()}")
    return proc.stdout


def kernel_package(metapackage: str = KERNEL_METAPACKAGE) -> str | None:
    """The versioned image package the metapackage depends on
    (linux-image-6.1.0-NN-cloud-amd64), or None if apt does not know it."""
    try:
        out = _run(["apt-cache", "depends", metapackage], timeout=60)
    except GuestError:
        return None
    m = re.search(r"Depends: (linux-image-\d\S*)", out)
    return m.group(1) if m else None


def _cached_deb(debs: Path, package: str) -> Path | None:
    found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def fetch_deb(debs: Path, package: str) -> Path:
    """``package``'s .deb in ``debs``, downloaded with apt-get if missing."""
    deb = _cached_deb(debs, package)
    if deb is None:
        debs.mkdir(parents=True, exist_ok=True)
        argv = ["apt-get", "download", "-q"]
        if os.geteuid() == 0:
            argv += ["-o", "APT::Sandbox::User=root"]   # _apt may not write here
        _run(argv + [package], cwd=debs)
        deb = _cached_deb(debs, package)
        if deb is None:
            raise GuestError(f"apt-get download {package} left no .deb in {debs}")
    return deb


def _kernel_deb(debs: Path) -> Path:
    pkg = kernel_package()
    if pkg is not None:
        return fetch_deb(debs, pkg)
    # apt has no lists (offline machine): any cloud kernel fetched before will do
    cached = sorted(debs.glob("linux-image-[0-9]*-cloud-amd64_*.deb"))
    if cached:
        return cached[-1]
    raise GuestError(f"cannot resolve {KERNEL_METAPACKAGE} (run apt-get update) and no "
                     f"cloud kernel .deb is cached in {debs}")


def modinfo_depends(module: bytes) -> list[str]:
    """The ``depends=`` list of a kernel module's .modinfo ELF section (what
    ``modinfo -F depends`` prints; the .deb ships no modules.dep)."""
    if module[:4] != b"\x7fELF" or module[4] != 2 or module[5] != 1:
        raise GuestError("not a little-endian ELF64 kernel module")
    shoff, = struct.unpack_from("<Q", module, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", module, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, off, size = struct.unpack_from(
            "<IIQQQQ", module, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        end = module.index(b"\0", stroff + name)
        if module[stroff + name:end] == b".modinfo":
            for entry in module[off:off + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    return [d for d in entry[8:].decode().split(",") if d]
            return []
    raise GuestError("kernel module without a .modinfo section")


def _module_bytes(path: Path) -> bytes:
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".zst":
        if shutil.which("zstd") is None:
            raise GuestError(f"{path.name} is zstd-compressed; install zstd")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True,
                              timeout=60).stdout
    return path.read_bytes()


def resolve_modules(moddir: Path, config: str) -> list[tuple[str, bytes]]:
    """The modules the NIC needs, dependencies first: each root driver that
    the kernel config builds as a module (=m; =y is in vmlinuz already)."""
    files = {}
    for f in moddir.rglob("*.ko*"):
        files[re.sub(r"\.ko(\.xz|\.zst)?$", "", f.name).replace("-", "_")] = f
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in files:
            raise GuestError(f"kernel module {name} not found under {moddir}")
        data = _module_bytes(files[name])
        for dep in modinfo_depends(data):
            visit(dep.replace("-", "_"))
        order.append((name, data))

    for symbol, module in ROOT_MODULES.items():
        setting = re.search(rf"^CONFIG_{symbol}=(\w)", config, re.M)
        if setting is None:
            raise GuestError(f"the guest kernel lacks CONFIG_{symbol} (needed for {module})")
        if setting.group(1) == "m":
            visit(module)
    return order


class Cpio:
    """An initramfs archive in the "newc" format the kernel unpacks.  Written
    in Python so device nodes need no root and the archive is reproducible."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        fields = (self._ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data),
                  0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._ino += 1
        self._out += b"070701" + b"".join(b"%08X" % v for v in fields)
        self._out += name.encode() + b"\0"
        self._out += b"\0" * (-len(self._out) % 4)
        self._out += data
        self._out += b"\0" * (-len(self._out) % 4)

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self._out += b"\0" * (-len(self._out) % 512)
        return bytes(self._out)


def _initramfs(busybox: bytes, applets: Iterable[str], modules: list[tuple[str, bytes]],
               init: bytes) -> bytes:
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "root", "lib", "lib/modules"):
        c.dir(d)
    # the kernel opens /dev/console for /init before anything is mounted
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", busybox, 0o755)
    for a in sorted(set(applets) - {"busybox"}):
        c.symlink(f"bin/{a}", "busybox")
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("etc/group", b"root:x:0:\n")
    c.file("etc/hosts", b"127.0.0.1 localhost\n")
    for name, data in modules:
        c.file(f"lib/modules/{name}.ko", data)
    c.file("lib/modules/order", "".join(f"{n}\n" for n, _ in modules).encode())
    c.file("init", init, 0o755)
    return gzip.compress(c.finish(), compresslevel=6, mtime=0)


def build_guest(cache_dir: str | os.PathLike | None = None) -> GuestImage:
    """vmlinuz + initramfs for the test guest, built once per (kernel,
    busybox, /init) and cached in ``cache_dir`` (default: $OVSD_GUEST_CACHE or
    /var/cache/ovsd-tests/guest; the .debs are kept in its debs/)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    debs = cache / "debs"
    kernel_deb = _kernel_deb(debs)
    busybox_deb = fetch_deb(debs, "busybox-static")
    init = INIT_SCRIPT.read_bytes()
    key = hashlib.sha256(b"\0".join([str(BUILD_FORMAT).encode(), kernel_deb.name.encode(),
                                     busybox_deb.name.encode(), init])).hexdigest()[:16]
    out = cache / f"image-{key}"
    meta = out / "image.txt"
    if not meta.exists():
        _build(out, kernel_deb, busybox_deb, init)
        for old in cache.glob("image-*"):   # images of an older /init or kernel
            if old != out:
                shutil.rmtree(old, ignore_errors=True)
    kver, modules = meta.read_text().splitlines()[:2]
    return GuestImage(out / "vmlinuz", out / "initramfs.cpio.gz", kver,
                      tuple(modules.split()))


def _build(out: Path, kernel_deb: Path, busybox_deb: Path, init: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        t = Path(tmp)
        _run(["dpkg-deb", "-x", str(kernel_deb), str(t / "kernel")])
        _run(["dpkg-deb", "-x", str(busybox_deb), str(t / "busybox")])
        vmlinuz = sorted((t / "kernel/boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise GuestError(f"{kernel_deb.name} has no boot/vmlinuz-*")
        kver = vmlinuz[-1].name.removeprefix("vmlinuz-")
        config = (t / f"kernel/boot/config-{kver}").read_text()
        modules = resolve_modules(t / f"kernel/lib/modules/{kver}", config)
        busybox = t / "busybox/bin/busybox"
        applets = _run([str(busybox), "--list"]).split()
        staged = t / "image"
        staged.mkdir()
        shutil.copyfile(vmlinuz[-1], staged / "vmlinuz")
        (staged / "initramfs.cpio.gz").write_bytes(
            _initramfs(busybox.read_bytes(), applets, modules, init))
        (staged / "image.txt").write_text(
            f"{kver}\n{' '.join(n for n, _ in modules)}\n"
            f"built from {kernel_deb.name} {busybox_deb.name}\n")
        try:
            staged.rename(out)   # atomic: a concurrent build of the same key wins or loses whole
        except OSError:
            if not (out / "image.txt").exists():
                raise


# -- guest commands (run by the guest's /init, see guest_init.sh) -----------------------------

def _addr(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise ValueError(f"expected an IP address for the guest command, got {ip!r}") from None


def ping_cmd(ip: str, count: int) -> str:
    """COUNT pings, then ``PING-RESULT ip= sent= received=`` (parse_ping)."""
    return f"ping_report {_addr(ip)} {int(count)}"


def ping_loop_cmd(ip: str, seconds: int, interval_ms: int = 500) -> str:
    """One ping at a time for SECONDS: a ``PING-LOOP seq= ok|lost uptime=`` line
    per ping (parse_ping_loop), so a test sees replies stop and resume."""
    return f"ping_loop {_addr(ip)} {int(seconds)} {int(interval_ms)}"


def tcp_recv_cmd(port: int, timeout: int = 120) -> str:
    """Accept one TCP connection on PORT; ``TCP-RECV bytes= md5=`` at its end."""
    return f"tcp_recv {int(port)} {int(timeout)}"


def tcp_send_cmd(ip: str, port: int, nbytes: int) -> str:
    """NBYTES random bytes to IP:PORT; ``TCP-SEND bytes= md5=`` first."""
    return f"tcp_send {_addr(ip)} {int(port)} {int(nbytes)}"


def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def parse_ping(console: str) -> tuple[int, int]:
    """(sent, received) of the last ping_report."""
    lines = [ln for ln in console.splitlines() if ln.startswith("PING-RESULT ")]
    if not lines:
        raise GuestError("no PING-RESULT on the console")
    f = _fields(lines[-1])
    return int(f["sent"]), int(f["received"])


def parse_tcp(console: str, marker: str) -> tuple[int, str]:
    """(bytes, md5) of the last ``TCP-SEND`` or ``TCP-RECV`` line."""
    lines = [ln for ln in console.splitlines() if ln.startswith(marker + " ")]
    if not lines:
        raise GuestError(f"no {marker} on the console")
    f = _fields(lines[-1])
    return int(f["bytes"]), f["md5"]


def parse_ping_loop(console: str) -> list[tuple[int, bool, float]]:
    """(seq, replied, guest uptime) per ping of ping_loop."""
    return [(int(m[0]), m[1] == "ok", float(m[2])) for m in
            re.findall(r"^PING-LOOP seq=(\d+) (ok|lost) uptime=([\d.]+)", console, re.M)]


# -- running it ---------------------------------------------------------------------------

class Guest:
    """One QEMU process: ``mode="client"`` connects to a listening back-end
    (ovsd's dpdkvhostuser, testpmd net_vhost client=0; start the back-end first,
    or pass ``reconnect=N`` seconds), ``mode="server"`` listens on ``sock``
    (server=on,wait=off; QEMU still runs the guest only once the back-end has
    connected).  Stopped by PID (``close``)."""

    def __init__(self, image: GuestImage, sock: str | os.PathLike, *,
                 workdir: str | os.PathLike, name: str | None = None, mode: str = "client",
                 reconnect: int | None = None, mac: str = "52:54:00:00:00:01",
                 ip: str = "10.0.0.1/24", command: str | None = None,
                 arp: Mapping[str, str] | None = None, hold: bool = False,
                 queues: int = 1, smp: int = 1, mem_mb: int = 256,
                 mem_path: str = "/dev/shm", link_wait: int = 30, ipv6: bool = False,
                 device_opts: str = "", append: str = ""):
        """``ipv6=False`` boots with ipv6.disable=1: the guest then sends only
        what its command sends (plus ARP), no router or neighbour solicitations,
        so frame counts are exact."""
        if mode not in ("client", "server"):
            raise ValueError(f"mode must be 'client' or 'server', got {mode!r}")
        if reconnect is not None and mode != "client":
            raise ValueError("reconnect= applies to mode='client' only")
        self.sock = Path(sock)
        if len(os.fsencode(self.sock)) >= 108:
            raise ValueError(f"unix socket path {self.sock} is too long (limit 107 bytes)")
        self.image = image
        self.workdir = Path(workdir)
        self.name = name or f"guest{os.getpid()}_{next(_guests)}"
        self.log_path = self.workdir / f"qemu-{self.name}.log"
        self.mode, self.reconnect = mode, reconnect
        self.mac, self.ip, self.command, self.hold = mac, ip, command, hold
        self.arp = dict(arp or {})
        self.queues, self.smp, self.mem_mb, self.mem_path = queues, smp, mem_mb, mem_path
        self.link_wait, self.device_opts, self.append = link_wait, device_opts, append
        self.ipv6 = ipv6
        self._proc: LoggedProcess | None = None

    def kernel_cmdline(self) -> str:
        parts = ["console=ttyS0", "quiet", "panic=-1", "no_timer_check",
                 f"guest_ip={self.ip}", f"guest_linkwait={self.link_wait}"]
        if not self.ipv6:
            parts.append("ipv6.disable=1")
        if self.arp:
            parts.append("guest_arp=" + ",".join(f"{ip}@{mac}" for ip, mac in self.arp.items()))
        if self.command:
            # base64: no quoting rules of the kernel command line to get wrong
            parts.append("guest_cmd64=" + base64.b64encode(self.command.encode()).decode())
        if self.hold:
            parts.append("guest_hold=1")
        if self.append:
            parts.append(self.append)
        line = " ".join(parts)
        if len(line) >= CMDLINE_MAX:
            raise ValueError(f"kernel command line is {len(line)} bytes (limit {CMDLINE_MAX}); "
                             "shorten the guest command")
        return line

    def argv(self) -> list[str]:
        if self.mem_path == "memfd":
            mem = f"memory-backend-memfd,id=mem,size={self.mem_mb}M,share=on"
        else:
            mem = (f"memory-backend-file,id=mem,size={self.mem_mb}M,"
                   f"mem-path={self.mem_path},share=on")
        chardev = f"socket,id=chr0,path={self.sock}"
        if self.mode == "server":
            chardev += ",server=on,wait=off"
        elif self.reconnect is not None:
            chardev += f",reconnect={int(self.reconnect)}"
        netdev = "vhost-user,id=net0,chardev=chr0"
        device = f"virtio-net-pci,netdev=net0,mac={self.mac},vectors=0"
        if self.queues > 1:
            netdev += f",queues={self.queues}"
            device += ",mq=on"
        if self.device_opts:
            device += "," + self.device_opts
        return [QEMU, "-machine", "q35", "-accel", "tcg", "-cpu", "max",
                "-smp", str(self.smp), "-m", f"{self.mem_mb}M",
                "-object", mem, "-numa", "node,memdev=mem",
                "-chardev", chardev, "-netdev", netdev, "-device", device,
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-monitor", "none", "-no-reboot",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", self.kernel_cmdline()]

    def start(self) -> "Guest":
        """Spawn QEMU and return at once (QEMU may be waiting for the back-end)."""
        if shutil.which(QEMU) is None:
            raise GuestError(f"{QEMU} not found (Debian package qemu-system-x86)")
        if self._proc is not None:
            raise GuestError(f"guest {self.name} was already started")
        if self.mode == "server" and self.sock.is_socket():
            self.sock.unlink()   # left by a killed run; QEMU's bind would fail
        self._proc = LoggedProcess(self.argv(), self.log_path, label=f"qemu {self.name}")
        self._proc.spawn()
        return self

    def wait_for(self, marker: str | re.Pattern, timeout: float, start: int = 0) -> str:
        """The first console line (from offset ``start``) containing ``marker``
        (a plain string, or a compiled regex); raises GuestError with the
        console tail on timeout or when QEMU exits first."""
        if self._proc is None:
            raise GuestError(f"guest {self.name} was not started")
        rx = marker if isinstance(marker, re.Pattern) else re.compile(re.escape(marker))
        line = re.compile(rf"^[^\n]*(?:{rx.pattern})[^\n]*(?=\r?\n)", rx.flags | re.M)
        try:
            m = self._proc.wait_for(line, timeout, start=start, what=rx.pattern)
        except ProcessError as e:
            raise GuestError(str(e)) from None
        return m.group(0).rstrip("\r")

    def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        """Fields of the GUEST-READY line (ip, mac, carrier, uptime)."""
        return _fields(self.wait_for("GUEST-READY", timeout))

    def wait_command(self, timeout: float) -> int:
        """The exit status of the guest's command (GUEST-CMD-RC)."""
        return int(self.wait_for(re.compile(r"GUEST-CMD-RC=\d+"), timeout)
                   .split("GUEST-CMD-RC=")[1].split()[0])

    def wait_exit(self, timeout: float) -> int:
        """QEMU's exit status once the guest powered off."""
        rc = self._proc.wait_exit(timeout) if self._proc else None
        if rc is None:
            raise GuestError(f"guest {self.name} still running after {timeout:g} s\n"
                             + self.tail())
        return rc

    def console(self) -> str:
        """Everything on the serial console so far (CRs removed)."""
        return self._proc.text().replace("\r", "") if self._proc else ""

    def offset(self) -> int:
        return self._proc.offset() if self._proc else 0

    def tail(self, lines: int = 40) -> str:
        return self._proc.tail(lines) if self._proc else ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def close(self) -> int | None:
        """SIGTERM, then SIGKILL, by PID; removes the socket QEMU listened on."""
        if self._proc is None:
            return None
        rc = self._proc.stop()
        if self.mode == "server" and self.sock.is_socket():
            self.sock.unlink(missing_ok=True)
        return rc

    def __enter__(self) -> "Guest":
        return self.start() if self._proc is None else self

    def __exit__(self, *exc) -> None:
        self.close()
