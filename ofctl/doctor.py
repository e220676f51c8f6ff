"""`ofctl doctor`: does this host have what ovsd needs, and what to change if not.

Each check is a small function over facts already read (file contents, stat
results, the daemon's answers) that returns a ``Check``: ``ok``, ``warn``,
``FAIL`` or ``skip``, the fact it measured, and for anything not ok the
command or setting that fixes it.  Reading the facts is kept apart
(``Host``, ``gather_daemon``) so that every verdict can be tested without a
broken host.

``OVSD_DOCTOR_ROOT=DIR`` makes ``Host`` read a file such as /proc/meminfo from
DIR/proc/meminfo when that exists (the host's own file otherwise): a fake
proc or sys tree for tests, which must not take the machine's hugepages away
from everything else running on it.  The rundir and the daemon are always
the real ones.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field

from ofctl.client import OfctlError, RpcClient

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
_RANK = {OK: 0, SKIP: 0, WARN: 1, FAIL: 2}

# Users QEMU runs as when libvirt starts it (Debian/Ubuntu, then Fedora/RHEL/SUSE).
QEMU_USERS = ("libvirt-qemu", "qemu")
VHOST_TYPES = ("dpdkvhostuser", "dpdkvhostuserclient")
# Drivers with native XDP (ndo_bpf) in mainline Linux; anything else gets generic XDP,
# which goes through an skb for every frame.
NATIVE_XDP_DRIVERS = frozenset({
    "bnxt_en", "bond", "dpaa2-eth", "ena", "enetc", "fec", "gve", "hv_netvsc", "i40e",
    "iavf", "ice", "igb", "igc", "ixgbe", "ixgbevf", "lan966x-switch", "mlx4_en",
    "mlx5_core", "mvneta", "mvpp2", "netdevsim", "nfp", "nicvf", "qede", "sfc", "stmmac",
    "tsnep", "tun", "veth", "virtio_net", "xennet",
})
# One UMEM per rx queue: xsk.py's 4096 frames of 2048 bytes.
UMEM_BYTES = 4096 * 2048
# Kernels from 5.11 charge UMEM and BPF maps to the memory cgroup, not RLIMIT_MEMLOCK.
MEMCG_ACCOUNTING = (5, 11)
HUGEPAGES_FIX_PAGES = 1024


@dataclass
class Check:
    name: str
    status: str
    fact: str
    fix: str | None = None

    def line(self, width: int = 16) -> str:
        text = f"{self.status:<5} {self.name:<{width}} {self.fact}"
        if self.fix and self.status != OK:
            text += f" -- fix: {self.fix}"
        return text


def skipped(name: str, why: str = "ovsd not running") -> Check:
    return Check(name, SKIP, f"skipped: {why}")


# -- facts ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PathInfo:
    """What stat says about one path (``exists`` False: nothing else is meaningful)."""
    path: str
    exists: bool
    is_dir: bool = False
    mode: int = 0
    uid: int = 0
    gid: int = 0

    @classmethod
    def of(cls, path: str) -> "PathInfo":
        try:
            st = os.stat(path)
        except OSError:
            return cls(path, False)
        return cls(path, True, stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode),
                   st.st_uid, st.st_gid)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gids: frozenset[int]


class Host:
    """Reads the host's files, through ``root`` when one is given (see the module doc)."""

    def __init__(self, root: str | None = None):
        self.root = root if root is not None else os.environ.get("OVSD_DOCTOR_ROOT") or None

    def path(self, p: str) -> str:
        if self.root:
            fake = os.path.join(self.root, p.lstrip("/"))
            if os.path.lexists(fake):
                return fake
        return p

    def read(self, p: str) -> str | None:
        try:
            with open(self.path(p)) as f:
                return f.read()
        except OSError:
            return None

    def exists(self, p: str) -> bool:
        return os.path.exists(self.path(p))

    def kernel_release(self) -> str:
        return (self.read("/proc/sys/kernel/osrelease") or os.uname().release).strip()

    def driver(self, ifname: str) -> str | None:
        link = self.path(f"/sys/class/net/{ifname}/device/driver")
        try:
            return os.path.basename(os.readlink(link))
        except OSError:
            pass
        # Virtual interfaces (veth, tun) have no device/ in sysfs; ethtool -i still names them.
        try:
            from ovsd.netdev.afpacket.ring import if_driver
        except ImportError:
            return None
        return if_driver(ifname).get("driver_name")

    def users(self) -> dict[str, User]:
        members: dict[str, set[int]] = {}
        for line in (self.read("/etc/group") or "").splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[2].isdigit():
                for m in filter(None, parts[3].split(",")):
                    members.setdefault(m, set()).add(int(parts[2]))
        out = {}
        for line in (self.read("/etc/passwd") or "").splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
                gids = {int(parts[3])} | members.get(parts[0], set())
                out[parts[0]] = User(parts[0], int(parts[2]), frozenset(gids))
        return out


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0])
    return out


def hugetlbfs_mounts(mounts_text: str) -> list[str]:
    out = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "hugetlbfs":
            out.append(fields[1])
    return out


def parse_cpu_list(text: str | None) -> set[int]:
    """The kernel's CPU list syntax: "0-3,8,10-11" (empty: none)."""
    cpus: set[int] = set()
    for part in (text or "").strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpu_list(cpus) -> str:
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"


def cpu_mask(cpus) -> str:
    return hex(sum(1 << c for c in cpus))


def parse_memlock(limits_text: str) -> int | None:
    """The soft RLIMIT_MEMLOCK in /proc/PID/limits: bytes, -1 for unlimited, None if absent."""
    for line in limits_text.splitlines():
        if line.startswith("Max locked memory"):
            soft = line[len("Max locked memory"):].split()[0]
            return -1 if soft == "unlimited" else int(soft)
    return None


def kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


# -- the daemon's facts -------------------------------------------------------------

@dataclass
class DaemonFacts:
    running: bool
    error: str = ""
    version: str | None = None
    pid: int | None = None
    pid_alive: bool = False
    pmd_mask: str | None = None
    ports: list[dict] = field(default_factory=list)  # list_ports entries plus "bridge"


def read_pid(rundir: str) -> int | None:
    try:
        with open(os.path.join(rundir, "ovsd.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def gather_daemon(rundir: str, timeout: float = 10.0) -> DaemonFacts:
    pid = read_pid(rundir)
    facts = DaemonFacts(running=False, pid=pid,
                        pid_alive=pid is not None and os.path.exists(f"/proc/{pid}"))
    client = RpcClient(rundir, timeout)
    try:
        facts.version = client.call("version")["version"]
        facts.running = True
        text = client.call("db_get", table="Open_vSwitch", record=".",
                           columns=["other_config:pmd-cpu-mask"], if_exists=True)["text"]
        facts.pmd_mask = text.strip().strip('"') or None
        for br in client.call("list_br")["bridges"]:
            for p in client.call("list_ports", bridge=br)["ports"]:
                facts.ports.append({**p, "bridge": br})
    except OfctlError as e:
        facts.error = str(e).split("\n")[0]
    finally:
        client.close()
    return facts


# -- the checks -----------------------------------------------------------------------

def check_ovsd(facts: DaemonFacts, rundir: str, ofctl_version: str | None) -> Check:
    sock = os.path.join(rundir, "ovsd.sock")
    start = f"ovsd --rundir {rundir} (or `make run` for configs/ovsd.toml's /var/run/ovsd)"
    if not facts.running:
        fact = f"no ovsd answers on {sock}"
        if facts.error:
            fact += f" ({facts.error.removeprefix(f'cannot connect to ovsd at {sock}: ')})"
        if facts.pid is not None and not facts.pid_alive:
            fact += f"; {rundir}/ovsd.pid names pid {facts.pid}, which is gone (crashed?)"
        elif facts.pid is not None:
            fact += f"; pid {facts.pid} of {rundir}/ovsd.pid is alive but does not answer"
            return Check("ovsd", FAIL, fact, f"kill {facts.pid}; {start}")
        return Check("ovsd", FAIL, fact, start)
    who = f"pid {facts.pid}" if facts.pid is not None else "pid unknown"
    fact = f"ovsd {facts.version} running ({who}) on {sock}"
    if ofctl_version and facts.version != ofctl_version:
        return Check("ovsd", WARN, fact + f", but this ofctl is {ofctl_version}",
                     "run the ofctl of ovsd's own install (.venv/bin/ofctl), or restart "
                     "ovsd from this tree")
    return Check("ovsd", OK, fact)


def check_rundir(info: PathInfo, owner_uid: int, daemon_running: bool) -> Check:
    d = info.path
    if not info.exists:
        if daemon_running:
            return Check("rundir", FAIL, f"{d} does not exist", f"mkdir -p -m 0755 {d}")
        return Check("rundir", WARN, f"{d} does not exist (ovsd creates it when it starts)",
                     f"mkdir -p -m 0755 {d}")
    if not info.is_dir:
        return Check("rundir", FAIL, f"{d} is not a directory",
                     f"rm {d}; mkdir -m 0755 {d}")
    mode = f"mode {info.mode:04o}, owner uid {info.uid}"
    if info.uid not in (0, owner_uid):
        return Check("rundir", FAIL,
                     f"{d} ({mode}) is owned by uid {info.uid}, not root: that user can "
                     "replace ovsd.sock and the vhost-user sockets",
                     f"chown root:root {d}")
    if info.mode & stat.S_IWOTH:
        return Check("rundir", FAIL,
                     f"{d} is world-writable ({mode}): any local user can replace the "
                     "vhost-user sockets guests connect to",
                     f"chmod 0755 {d}")
    if info.mode & stat.S_IWGRP and info.gid != 0:
        return Check("rundir", WARN,
                     f"{d} is writable by group {info.gid} ({mode}): its members can replace "
                     "the vhost-user sockets", f"chmod 0755 {d}")
    return Check("rundir", OK, f"{d} ({mode}), not writable by others")


def check_control_socket(info: PathInfo) -> Check:
    name = os.path.basename(info.path)
    if not info.exists:
        return skipped(name, f"{info.path} does not exist")
    fact = f"{info.path} mode {info.mode:04o}"
    if info.mode & stat.S_IWOTH:
        return Check(name, FAIL, fact + ": any local user can connect and reconfigure the "
                     "switch", f"chmod 0660 {info.path} (ovsd creates it 0660)")
    return Check(name, OK, fact + ", root and its group only")


def _allowed(info: PathInfo, user: User, bits: tuple[int, int, int]) -> bool:
    if user.uid == 0:
        return True
    if info.uid == user.uid:
        return bool(info.mode & bits[0])
    if info.gid in user.gids:
        return bool(info.mode & bits[1])
    return bool(info.mode & bits[2])


_X = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
_W = (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH)


def check_qemu_access(user: User | None, chain: list[PathInfo], sockets: list[PathInfo],
                      server_ports: list[str]) -> Check:
    """``chain``: the rundir and each directory above it; ``sockets``: the
    dpdkvhostuser sockets ovsd listens on; ``server_ports`` their port names."""
    name = "qemu-access"
    if user is None:
        return Check(name, OK, f"no QEMU user ({', '.join(QEMU_USERS)}) on this host; QEMU "
                     "running as root reaches every socket")
    # A vhost-user port that QEMU cannot reach leaves its guest without a network.
    status = FAIL if server_ports else WARN
    for info in chain:
        if info.exists and not _allowed(info, user, _X):
            return Check(name, status,
                         f"{user.name} (uid {user.uid}) cannot enter {info.path} (mode "
                         f"{info.mode:04o}, uid {info.uid}, gid {info.gid}), so QEMU run by "
                         f"libvirt cannot reach the vhost-user sockets "
                         f"({', '.join(server_ports) or 'none configured yet'})",
                         f"chmod o+x {info.path}")
    blocked = [(s, p) for s, p in zip(sockets, server_ports)
               if s.exists and not _allowed(s, user, _W)]
    if blocked:
        s, port = blocked[0]
        return Check(name, WARN,
                     f"{user.name} cannot connect to {s.path} (mode {s.mode:04o}, uid {s.uid}, "
                     f"gid {s.gid}): a guest QEMU runs as {user.name} gets no network on "
                     f"{port}", f"ofctl set Interface {port} "
                     f"options:vhost-sock-owner={user.name}")
    return Check(name, OK, f"{user.name} can reach {chain[0].path if chain else 'the rundir'}"
                 + (f" and the sockets of {', '.join(server_ports)}" if server_ports else ""))


def hugepages_fix(total: int, mounted: bool) -> str:
    steps = []
    if total == 0:
        steps.append(f"echo {HUGEPAGES_FIX_PAGES} > /proc/sys/vm/nr_hugepages")
    if not mounted:
        steps.append("mkdir -p /dev/hugepages; mount -t hugetlbfs none /dev/hugepages")
    return "; ".join(steps)


def check_hugepages(meminfo: dict[str, int], mounts: list[str],
                    vhost_ports: list[str] | None) -> Check:
    """``vhost_ports`` None: unknown (ovsd not running).

    Missing hugepages is a warn, never a FAIL: ovsd itself uses none, and a guest
    can share its RAM with ovsd through memfd (memory-backend-memfd,share=on)
    just as well, which doctor cannot see from here."""
    total = meminfo.get("HugePages_Total", 0)
    free = meminfo.get("HugePages_Free", 0)
    size_kb = meminfo.get("Hugepagesize", 2048)
    mounted = bool(mounts)
    pool = (f"{free} of {total} hugepages of {size_kb} kB free" if total else
            "no hugepages reserved (HugePages_Total 0)")
    fact = pool + ", hugetlbfs " + (f"mounted on {', '.join(mounts)}" if mounted else
                                    "not mounted")
    if total and free and mounted:
        return Check("hugepages", OK, fact)
    if vhost_ports:
        why = (f"the guests of {', '.join(vhost_ports)} need RAM they share with ovsd: "
               "hugepages (-object memory-backend-file,mem-path=/dev/hugepages,share=on) or "
               "memfd (-object memory-backend-memfd,share=on)")
    else:
        why = ("ovsd needs none; QEMU guests on vhost-user ports will need shared memory: "
               "hugepages, or memfd instead")
    if total and not free and mounted:
        return Check("hugepages", WARN, f"{fact}, all in use; {why}",
                     f"echo {total + HUGEPAGES_FIX_PAGES} > /proc/sys/vm/nr_hugepages")
    return Check("hugepages", WARN, f"{fact}; {why}", hugepages_fix(total, mounted))


def pmd_cores(mask: str | None, usable: set[int]) -> list[int]:
    """The cores ovsd runs PMDs on for ``mask`` (as ovsd.pmds.parse_cpu_mask)."""
    if not mask:
        return [max(usable)] if usable else []
    value = int(mask, 16)
    return [c for c in range(value.bit_length()) if value >> c & 1]


def suggest_mask(online: set[int], isolated: set[int]) -> str:
    """Isolated online cores, else the highest online one, leaving core 0 when possible."""
    good = sorted((online & isolated) - ({0} if len(online) > 1 else set()))
    if good:
        return cpu_mask(good)
    return cpu_mask([max(online)]) if online else "0x1"


def _set_mask(mask: str) -> str:
    return f"ofctl set Open_vSwitch . other_config:pmd-cpu-mask={mask}"


def check_pmd_mask(mask: str | None, online: set[int], isolated: set[int],
                   affinity: set[int] | None) -> Check:
    """Every PMD core online and allowed to ovsd (its CPU affinity)."""
    name = "pmd-cpu-mask"
    usable = online & affinity if affinity else online
    try:
        cores = pmd_cores(mask, usable)
    except ValueError:
        return Check(name, FAIL, f"pmd-cpu-mask {mask!r} is not a hexadecimal CPU mask; "
                     "ovsd keeps its PMDs as they were",
                     _set_mask(suggest_mask(usable, isolated)))
    what = (f"pmd-cpu-mask={mask}: PMD cores {format_cpu_list(cores)}" if mask else
            f"pmd-cpu-mask not set: one PMD on core {format_cpu_list(cores)} (the highest "
            "usable)")
    fact = f"{what}; online CPUs {format_cpu_list(online)}"
    if not cores:
        return Check(name, FAIL, f"{fact}; the mask names no core",
                     _set_mask(suggest_mask(usable, isolated)))
    offline = [c for c in cores if c not in online]
    if offline:
        return Check(name, FAIL, f"{fact}; core(s) {format_cpu_list(offline)} not online, so "
                     "ovsd keeps its PMDs as they were",
                     _set_mask(suggest_mask(usable, isolated)))
    if affinity is not None:
        barred = [c for c in cores if c not in affinity]
        if barred:
            return Check(name, FAIL, f"{fact}; ovsd may only run on "
                         f"{format_cpu_list(affinity)} (its CPU affinity), not on "
                         f"{format_cpu_list(barred)}",
                         f"{_set_mask(suggest_mask(usable, isolated))}, or widen ovsd's "
                         "affinity (taskset, CPUAffinity= in its unit) and restart it")
    return Check(name, OK, fact)


def check_pmd_isolation(cores: list[int], isolated: set[int]) -> Check:
    name = "pmd-isolation"
    shared = [c for c in cores if c not in isolated]
    if not cores:
        return skipped(name, "no PMD cores")
    if shared:
        listed = format_cpu_list(shared)
        return Check(name, WARN,
                     f"PMD core(s) {listed} not isolated (isolated CPUs: "
                     f"{format_cpu_list(isolated)}): the kernel schedules other tasks there, "
                     "and they take turns with the busy-polling PMD",
                     f"add isolcpus={listed} to GRUB_CMDLINE_LINUX in /etc/default/grub, "
                     "update-grub, reboot")
    return Check(name, OK, f"PMD core(s) {format_cpu_list(cores)} isolated")


def check_pmd_spare(cores: list[int], online: set[int]) -> Check:
    name = "pmd-spare-cpu"
    if not cores:
        return skipped(name, "no PMD cores")
    spare = online - set(cores)
    if not spare:
        fact = (f"every online CPU ({format_cpu_list(online)}) runs a busy-polling PMD: "
                "nothing is left for ovsd's control process, QEMU and the kernel")
        if len(online) < 2:
            return Check(name, WARN, fact, "give the host a second CPU")
        return Check(name, WARN, fact, _set_mask(cpu_mask(sorted(online)[1:])))
    return Check(name, OK, f"CPU(s) {format_cpu_list(spare)} left for the control process "
                 "and the kernel")


def check_memlock(limits_text: str | None, release: str, afxdp_rxqs: int) -> Check:
    """``afxdp_rxqs``: the rx queues of every afxdp port (one UMEM each)."""
    name = "memlock"
    limit = parse_memlock(limits_text) if limits_text else None
    shown = ("unknown" if limit is None else "unlimited" if limit < 0 else _human(limit))
    if kernel_version(release) >= MEMCG_ACCOUNTING:
        return Check(name, OK, f"RLIMIT_MEMLOCK {shown}; does not limit AF_XDP: kernel "
                     f"{release} (>= 5.11) charges UMEM and BPF maps to the memory cgroup")
    need = afxdp_rxqs * UMEM_BYTES + (1 << 20)
    fact = (f"RLIMIT_MEMLOCK of ovsd {shown}; kernel {release} (< 5.11) counts AF_XDP UMEM "
            f"and BPF maps against it")
    fix = ("LimitMEMLOCK=infinity in ovsd's systemd unit, or `ulimit -l unlimited` in the "
           "shell that starts it; then restart ovsd")
    if limit is None:
        return Check(name, WARN, fact + "; cannot read ovsd's limit", fix)
    if limit >= 0 and limit < need:
        if afxdp_rxqs:
            return Check(name, FAIL, f"{fact}; its {afxdp_rxqs} afxdp rx queue(s) need about "
                         f"{_human(need)}", fix)
        return Check(name, WARN, f"{fact}; an afxdp port needs about "
                     f"{_human(UMEM_BYTES + (1 << 20))} per rx queue", fix)
    return Check(name, OK, fact)


def check_afxdp_port(port: dict, iface_exists: bool, driver: str | None) -> Check:
    name, br = port["name"], port["bridge"]
    label = f"afxdp {name}"
    drv = f"driver {driver}" if driver else "driver unknown"
    native = driver in NATIVE_XDP_DRIVERS if driver else None
    native_text = {True: "native XDP available", False: "no native XDP",
                   None: "native XDP unknown"}[native]
    if not iface_exists:
        return Check(label, FAIL, f"port {name} on {br}: no interface {name} on this host",
                     f"create it (e.g. ip link add {name} type veth peer name {name[:10]}-peer)"
                     f"; ovsd opens the port when it appears; or ofctl del-port {br} {name}")
    x = port.get("afxdp")
    if port.get("error") or x is None or not x.get("xdp_mode"):
        return Check(label, FAIL, f"port {name} on {br} is {port.get('state', 'down')}: "
                     f"{port.get('error') or 'not open'} ({drv})",
                     f"ofctl del-port {br} {name}, then add it again once the cause is gone")
    mode, requested = x["xdp_mode"], x.get("requested")
    fact = (f"{name} on {br}: xdp-mode {mode} (requested {requested}), n_rxq={x.get('n_rxq')}"
            f", {drv}, {native_text}")
    if x.get("refused"):
        fact += f"; refused: {x['refused']}"
    if mode == "generic":
        if requested == "generic" and native:
            return Check(label, WARN, fact + "; generic XDP copies every frame through an skb",
                         f"ofctl set Interface {name} options:xdp-mode=best-effort")
        return Check(label, WARN, fact + "; generic XDP copies every frame through an skb",
                     "a NIC whose driver has native XDP (i40e, ice, ixgbe, mlx5_core...)")
    return Check(label, OK, fact)


# -- running them -------------------------------------------------------------------

def _ofctl_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("ovsd")
    except Exception:  # not installed: no comparison to make
        return None


def _ancestors(path: str) -> list[PathInfo]:
    """The path and every directory above it, the path first."""
    out, p = [], os.path.abspath(path)
    while True:
        out.append(PathInfo.of(p))
        parent = os.path.dirname(p)
        if parent == p:
            return out
        p = parent


def _proc_status(host: Host, pid: int) -> dict[str, str]:
    out = {}
    for line in (host.read(f"/proc/{pid}/status") or "").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def run_checks(rundir: str, host: Host | None = None, timeout: float = 10.0,
               facts: DaemonFacts | None = None) -> list[Check]:
    host = host or Host()
    rundir = os.path.abspath(rundir)
    facts = facts or gather_daemon(rundir, timeout)
    checks = [check_ovsd(facts, rundir, _ofctl_version())]

    status = _proc_status(host, facts.pid) if facts.running and facts.pid else {}
    owner = int(status["Uid"].split()[1]) if status.get("Uid") else 0
    checks.append(check_rundir(PathInfo.of(rundir), owner, facts.running))
    checks.append(check_control_socket(PathInfo.of(os.path.join(rundir, "ovsd.sock"))))

    vhost = [p["name"] for p in facts.ports if p["type"] in VHOST_TYPES]
    servers = [p["name"] for p in facts.ports if p["type"] == "dpdkvhostuser"]
    users = host.users()
    qemu = next((users[u] for u in QEMU_USERS if u in users), None)
    checks.append(check_qemu_access(qemu, _ancestors(rundir),
                                    [PathInfo.of(os.path.join(rundir, n)) for n in servers],
                                    servers))

    checks.append(check_hugepages(parse_meminfo(host.read("/proc/meminfo") or ""),
                                  hugetlbfs_mounts(host.read("/proc/mounts") or ""),
                                  vhost if facts.running else None))

    if not facts.running:
        checks += [skipped(n) for n in ("pmd-cpu-mask", "pmd-isolation", "pmd-spare-cpu",
                                        "memlock", "afxdp")]
        return checks

    online = parse_cpu_list(host.read("/sys/devices/system/cpu/online"))
    isolated = parse_cpu_list(host.read("/sys/devices/system/cpu/isolated"))
    affinity = parse_cpu_list(status.get("Cpus_allowed_list")) or None
    mask_check = check_pmd_mask(facts.pmd_mask, online, isolated, affinity)
    checks.append(mask_check)
    if mask_check.status == FAIL:
        checks += [skipped(n, "pmd-cpu-mask unusable") for n in ("pmd-isolation",
                                                                 "pmd-spare-cpu")]
    else:
        cores = pmd_cores(facts.pmd_mask, online & affinity if affinity else online)
        checks.append(check_pmd_isolation(cores, isolated))
        checks.append(check_pmd_spare(cores, online))

    afxdp = [p for p in facts.ports if p["type"] == "afxdp"]
    rxqs = sum((p.get("afxdp") or {}).get("n_rxq") or 1 for p in afxdp)
    limits = host.read(f"/proc/{facts.pid}/limits") if facts.pid else None
    checks.append(check_memlock(limits, host.kernel_release(), rxqs))
    if not afxdp:
        checks.append(Check("afxdp", OK, "no afxdp ports configured"))
    for p in afxdp:
        exists = host.exists(f"/sys/class/net/{p['name']}")
        checks.append(check_afxdp_port(p, exists, host.driver(p["name"]) if exists else None))
    return checks


def worst(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=_RANK.__getitem__, default=OK)


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in (FAIL, WARN, OK, SKIP)}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return "doctor: " + ", ".join(parts)


def format_text(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    return "".join(c.line(width) + "\n" for c in checks) + summary(checks) + "\n"


def as_json(checks: list[Check], rundir: str) -> str:
    return json.dumps({"rundir": os.path.abspath(rundir), "ok": worst(checks) != FAIL,
                       "checks": [asdict(c) for c in checks]}, indent=2, sort_keys=True)
