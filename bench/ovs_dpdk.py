"""A private OVS-DPDK for side-by-side benchmarks: Debian's ovs-vswitchd-dpdk
(package openvswitch-switch-dpdk) with its own ovsdb-server and database in a
temporary directory.

    with OvsDpdk(pmd_cpu=1) as ovs:
        ovs.add_bridge("br")
        ovs.add_vhost_client("br", "vh0", "/tmp/x/vh0.sock", ofport=1)
        ovs.ofctl("add-flow", "br", "in_port=1,actions=output:2")

The system's own Open vSwitch is never touched: the DPDK build is run by its
path (the ``ovs-vswitchd`` alternative keeps pointing where it pointed), every
OVS_*DIR points into the temporary directory, and DPDK gets a --file-prefix of
its own, --no-pci and a small hugepage budget.  Both daemons are children of
this process that die with it (PR_SET_PDEATHSIG), are stopped by PID, and
everything they leave (DPDK runtime directory, hugepage files, the bridge's tap
device, the temporary directory) is removed on exit, also after a failure.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.ovs_sandbox import SCHEMA
from tests.interop.hugepages import MOUNTPOINT
from tests.interop.process import LoggedProcess, pid_alive

PACKAGE = "openvswitch-switch-dpdk"
VSWITCHD = Path("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")
RUNTIME_DIR = Path("/var/run/dpdk")
PREFIX_STEM = "ovsbench"   # DPDK file prefixes: ovsbench<our pid>_<n>
DIR_STEM = "ovs-dpdk-"     # temporary directories: ovs-dpdk-<our pid>-<random>
CMD_TIMEOUT = 30.0
START_TIMEOUT = 60.0
INSTALL_TIMEOUT = 900.0

_instances = itertools.count(1)


class OvsDpdkError(RuntimeError):
    """OVS-DPDK could not be installed, started or configured; says why."""


# -- installation ---------------------------------------------------------------------

def install() -> None:
    """``apt-get install -y openvswitch-switch-dpdk`` when ovs-vswitchd-dpdk is
    missing.  Debian registers it as an ``ovs-vswitchd`` alternative of lower
    priority than the plain build, so the system's choice does not change."""
    if VSWITCHD.exists():
        return
    if os.geteuid() != 0:
        raise OvsDpdkError(f"{VSWITCHD} is missing and installing {PACKAGE} needs root")
    if shutil.which("apt-get") is None:
        raise OvsDpdkError(f"{VSWITCHD} is missing and there is no apt-get to install "
                           f"{PACKAGE} with")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", PACKAGE],
                              capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise OvsDpdkError(f"apt-get install {PACKAGE}: not done after "
                           f"{INSTALL_TIMEOUT:.0f} s") from None
    if proc.returncode or not VSWITCHD.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise OvsDpdkError(f"apt-get install {PACKAGE} failed (exit {proc.returncode}):\n"
                           f"{tail}")


def missing() -> str | None:
    """Why OVS-DPDK cannot run here (after installing it if it is absent), or None."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package openvswitch-switch)"
    if not os.path.exists(SCHEMA):
        return f"{SCHEMA} is missing (Debian package openvswitch-common)"
    if os.geteuid() != 0:
        return "OVS-DPDK needs root (hugepages, vhost-user sockets)"
    try:
        install()
    except OvsDpdkError as e:
        return str(e)
    return None


def version() -> str:
    try:
        out = subprocess.run([str(VSWITCHD), "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first.split() else ""


def sweep_stale() -> list[str]:
    """Remove what instances in processes no longer alive left behind (a run
    killed with SIGKILL: its daemons died with it, their files did not): DPDK
    runtime directories, hugepage files, temporary directories.  Returns them."""
    removed = []
    places = ((RUNTIME_DIR, PREFIX_STEM, "_"), (MOUNTPOINT, PREFIX_STEM, "_"),
              (Path(tempfile.gettempdir()), DIR_STEM, "-"))
    for base, stem, sep in places:
        if not base.is_dir():
            continue
        for path in base.glob(f"{stem}*{sep}*"):
            m = re.match(rf"{re.escape(stem)}(\d+){sep}", path.name)
            if not m or pid_alive(int(m.group(1))):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


def sweep_stale_taps(stem: str) -> list[str]:
    """Delete tap devices named ``stem`` + a pid in hex (bridge local ports of
    OVS's userspace datapath, which OVS makes persistent) whose pid is gone."""
    removed = []
    for dev in Path("/sys/class/net").iterdir():
        m = re.fullmatch(rf"{re.escape(stem)}([0-9a-f]+)", dev.name)
        if not m or not (dev / "tun_flags").exists() or pid_alive(int(m.group(1), 16)):
            continue
        subprocess.run(["ip", "link", "del", dev.name], capture_output=True, timeout=10)
        removed.append(dev.name)
    return removed



# -- pmd-stats-show -------------------------------------------------------------------

_PMD_HEADER = re.compile(r"^pmd thread numa_id (\d+) core_id (\d+):")
_COUNTERS = {
    "packets received": "packets",
    "simple match hits": "simple_hits",
    "emc hits": "emc_hits",
    "smc hits": "smc_hits",
    "megaflow hits": "megaflow_hits",
    "miss with success upcall": "upcalls",
    "miss with failed upcall": "failed_upcalls",
    "idle cycles": "idle_cycles",
    "processing cycles": "processing_cycles",
}


def parse_pmd_stats(text: str, core: int) -> dict[str, int]:
    """The counters of the PMD on ``core`` in ``dpif-netdev/pmd-stats-show``
    output (integers; the percentages and averages are left out)."""
    out: dict[str, int] = {}
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            m = _PMD_HEADER.match(line)
            inside = bool(m) and int(m.group(2)) == core
            continue
        if not inside:
            continue
        key, _, value = line.strip().partition(":")
        if key in _COUNTERS and value.split():
            out[_COUNTERS[key]] = int(value.split()[0])
    if not out:
        raise OvsDpdkError(f"pmd-stats-show has no PMD on core {core}:\n{text.strip()}")
    return out


# -- the daemons ----------------------------------------------------------------------

class OvsDpdk:
    """ovsdb-server + ovs-vswitchd-dpdk in a temporary directory; one PMD on
    ``pmd_cpu``; ``socket_mem_mb`` of hugepages for DPDK (its mbuf pool
    shrinks to fit)."""

    def __init__(self, *, pmd_cpu: int, socket_mem_mb: int = 256):
        if pmd_cpu < 0:
            raise ValueError(f"pmd_cpu must be a CPU number >= 0, got {pmd_cpu}")
        if socket_mem_mb < 64:
            raise ValueError(f"socket_mem_mb must be at least 64, got {socket_mem_mb}")
        self.pmd_cpu = pmd_cpu
        self.socket_mem_mb = socket_mem_mb
        self.prefix = f"{PREFIX_STEM}{os.getpid()}_{next(_instances)}"
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        self._db: LoggedProcess | None = None
        self._vswitchd: LoggedProcess | None = None
        self._bridges: list[str] = []

    # -- paths --------------------------------------------------------------------------

    @property
    def db_sock(self) -> Path:
        return self._path("db.sock")

    @property
    def ctl(self) -> Path:
        return self._path("vswitchd.ctl")

    def _path(self, name: str) -> Path:
        if self.dir is None:
            raise OvsDpdkError("OVS-DPDK is not started")
        return self.dir / name

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> "OvsDpdk":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "OvsDpdk":
        if self.dir is not None:
            raise OvsDpdkError("OVS-DPDK was already started")
        self.dir = Path(tempfile.mkdtemp(prefix=f"{DIR_STEM}{os.getpid()}-"))
        d = self.dir
        self.env = dict(os.environ, OVS_RUNDIR=str(d), OVS_LOGDIR=str(d), OVS_DBDIR=str(d),
                        OVS_SYSCONFDIR=str(d), OVS_PKGDATADIR=str(Path(SCHEMA).parent))
        try:
            self._run("ovsdb-tool", "create", str(d / "conf.db"), SCHEMA)
            self._db = LoggedProcess(
                ["ovsdb-server", f"--remote=punix:{self.db_sock}",
                 f"--unixctl={d / 'ovsdb.ctl'}", "--no-chdir", str(d / "conf.db")],
                d / "ovsdb-server.log", env=self.env, label="ovsdb-server")
            self._db.spawn()
            self._wait(lambda: self.db_sock.is_socket(), self._db, "its socket")
            self.vsctl("--no-wait", "init")
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       "other_config:dpdk-init=true",
                       f'other_config:dpdk-extra="--file-prefix={self.prefix} --no-pci"',
                       f"other_config:dpdk-socket-mem={self.socket_mem_mb}",
                       f"other_config:dpdk-socket-limit={self.socket_mem_mb}",
                       f"other_config:pmd-cpu-mask={1 << self.pmd_cpu:#x}")
            self._vswitchd = LoggedProcess(
                [str(VSWITCHD), f"unix:{self.db_sock}", f"--unixctl={self.ctl}",
                 "--no-chdir", f"--log-file={d / 'vswitchd.log'}"],
                d / "vswitchd.out", env=self.env, label="ovs-vswitchd-dpdk")
            self._vswitchd.spawn()
            self._wait(self._dpdk_initialized, self._vswitchd, "DPDK to initialize")
        except BaseException:
            self.close()
            raise
        return self

    def _dpdk_initialized(self) -> bool:
        if not self.ctl.is_socket():
            return False
        return self.vsctl("--no-wait", "get", "Open_vSwitch", ".",
                          "dpdk_initialized").strip() == "true"

    def _wait(self, done, proc: LoggedProcess, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not done():
            if not proc.alive():
                raise OvsDpdkError(f"{proc.label} exited (status {proc.returncode()}) "
                                   f"before {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise OvsDpdkError(f"{proc.label}: no {what} after {START_TIMEOUT:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def close(self) -> None:
        """Delete the bridges, stop both daemons by PID, remove what they left."""
        if self._vswitchd is not None and self._vswitchd.alive():
            for bridge in self._bridges:
                # Deleting the bridge lets OVS remove its (persistent) tap device.
                with contextlib.suppress(OvsDpdkError):
                    self.vsctl("--timeout=10", "--if-exists", "del-br", bridge)
        for proc in (self._vswitchd, self._db):
            if proc is not None:
                proc.stop(grace=10.0)
        self._vswitchd = self._db = None
        shutil.rmtree(RUNTIME_DIR / self.prefix, ignore_errors=True)
        if MOUNTPOINT.is_dir():
            for f in MOUNTPOINT.glob(f"{self.prefix}map_*"):
                f.unlink(missing_ok=True)
        for bridge in self._bridges:
            if os.path.exists(f"/sys/class/net/{bridge}"):
                subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10)
        self._bridges = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def pids(self) -> list[int]:
        return [p.pid for p in (self._db, self._vswitchd) if p is not None and p.pid]

    def log_tail(self, lines: int = 15) -> str:
        path = self.dir / "vswitchd.log" if self.dir else None
        try:
            text = path.read_text(errors="replace") if path else ""
        except OSError:
            text = ""
        if not text and self._vswitchd is not None:
            text = self._vswitchd.text()
        if not text and self._db is not None:
            text = self._db.text()
        return "\n".join(text.strip().splitlines()[-lines:]) or "(no log)"

    # -- commands -----------------------------------------------------------------------

    def _run(self, *args: str) -> str:
        try:
            proc = subprocess.run(args, env=self.env, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise OvsDpdkError(f"{' '.join(args)}: no answer within {CMD_TIMEOUT:.0f} s") \
                from None
        if proc.returncode:
            raise OvsDpdkError(f"{' '.join(args)}: exit {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def vsctl(self, *args: str) -> str:
        return self._run("ovs-vsctl", f"--db=unix:{self.db_sock}", *args)

    def ofctl(self, *args: str) -> str:
        return self._run("ovs-ofctl", *args)

    def appctl(self, *args: str) -> str:
        return self._run("ovs-appctl", "-t", str(self.ctl), *args)

    def add_bridge(self, bridge: str) -> None:
        """A bridge on the userspace datapath (its local port is a tap device
        named ``bridge``: pick a name no one else uses)."""
        self._bridges.append(bridge)
        self.vsctl("--timeout=20", "add-br", bridge, "--", "set", "bridge", bridge,
                   "datapath_type=netdev")

    def add_vhost_client(self, bridge: str, port: str, path: str | os.PathLike,
                         ofport: int) -> None:
        """A dpdkvhostuserclient port connecting to the frontend listening on ``path``."""
        self.vsctl("--timeout=20", "add-port", bridge, port, "--", "set", "interface", port,
                   "type=dpdkvhostuserclient", f"options:vhost-server-path={path}",
                   f"ofport_request={ofport}")

    def pmd_stats(self) -> dict[str, int]:
        """The PMD's counters since the last ``pmd_stats_clear``."""
        return parse_pmd_stats(self.appctl("dpif-netdev/pmd-stats-show"), self.pmd_cpu)

    def pmd_stats_clear(self) -> None:
        self.appctl("dpif-netdev/pmd-stats-clear")

