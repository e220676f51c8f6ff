"""The switches the afpacket benchmarks compare, each forwarding from the
topology's ingress veth (OpenFlow port 1) to its egress veth (port 2) on
core SWITCH_CPU:

- ``Ovsd``: ovsd with pmd-cpu-mask on that core and the veths as system ports;
- ``OvsNetdev``: Open vSwitch's userspace datapath (a datapath_type=netdev
  bridge, the veths as type=system ports) in a private sandbox, the whole
  ovs-vswitchd pinned with taskset (OVS polls system ports from its main
  thread, not from PMDs, so pmd-cpu-mask alone would not place it);
- ``Bare``: bench/bare_forwarder.py, the floor of Python over AF_PACKET.

Each has ``missing()`` (why it cannot run here, or None) and ``running(topo,
flows)``, a context manager yielding a handle with ``before_window()`` and
``after_window() -> dict``.  Everything a contender starts is stopped by PID
on exit, whatever happened, and its temporary files are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bench.ovs_sandbox import SCHEMA, OvsSandbox
from bench.topology import SWITCH_CPU, Topology, descendants, signals_deferred, stop_pids

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
CMD_TIMEOUT = 30.0
START_TIMEOUT = 20.0
PMD_MASK = hex(1 << SWITCH_CPU)


class ContenderError(RuntimeError):
    """A contender failed to start or to answer; the message says how."""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ContenderError(f"{' '.join(cmd)}: no answer within {CMD_TIMEOUT:.0f} s")
    if proc.returncode:
        raise ContenderError(f"{' '.join(cmd)}: exit {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n    ".join(text.strip().splitlines()[-lines:])


def _link_del(ifname: str) -> None:
    if os.path.exists(f"/sys/class/net/{ifname}"):
        subprocess.run(["ip", "link", "del", ifname], capture_output=True, timeout=10)


def write_flows(directory: Path, flows: list[str]) -> Path:
    path = directory / "bench.flows"
    path.write_text("\n".join(flows) + "\n")
    return path


# -- ovsd ----------------------------------------------------------------------------

class OvsdHandle:
    def __init__(self, rundir: Path, bridge: str):
        self.rundir, self.bridge = rundir, bridge

    def ofctl(self, *args: str) -> str:
        return _run([str(BIN / "ofctl"), "--rundir", str(self.rundir), *args])

    def before_window(self) -> None:
        self.ofctl("pmd-stats-clear")

    def after_window(self) -> dict:
        """The PMD on SWITCH_CPU: pmd-stats-show's counters for the window."""
        stats = json.loads(self.ofctl("--json", "pmd-stats-show"))
        pmds = [p for p in stats.get("pmds", []) if p.get("core") == SWITCH_CPU]
        if len(pmds) != 1:
            raise ContenderError(f"pmd-stats-show: expected one PMD on core {SWITCH_CPU}, "
                                 f"got {stats.get('pmds')}")
        return pmd_figures(pmds[0])

    def megaflows(self) -> int:
        """How many megaflows the datapath holds now (dump-dp-flows lines)."""
        text = self.ofctl("dump-dp-flows")
        return sum(1 for line in text.splitlines() if "actions:" in line)


def pmd_figures(pmd: dict) -> dict:
    """pmd-stats-show's JSON for one PMD -> the figures the tables print."""
    packets = pmd.get("packets", 0)
    busy, idle = pmd.get("busy_ns", 0), pmd.get("idle_ns", 0)
    return {
        "packets": packets,
        "simple_hits": pmd.get("simple_hits", 0),
        "emc_hits": pmd.get("emc_hits", 0),
        "megaflow_hits": pmd.get("megaflow_hits", 0),
        "upcalls": pmd.get("upcalls", 0),
        "lost": pmd.get("lost", 0),
        "subtable_probes": pmd.get("subtable_probes", 0),
        "ns_per_packet": busy / packets if packets else None,
        "idle_share": idle / (busy + idle) if busy + idle else None,
    }


class Ovsd:
    """ovsd with the veths as ``port_type`` ports (system: AF_PACKET; afxdp);
    with ``capturing``, an `ofctl capture` of the input port runs throughout."""
    name = "ovsd"

    def __init__(self, port_type: str = "system", options: tuple[str, ...] = (),
                 capturing: bool = False):
        self.port_type, self.options, self.capturing = port_type, options, capturing

    @staticmethod
    def missing() -> str | None:
        for tool in ("ovsd", "ofctl"):
            if not (BIN / tool).exists():
                return f"{BIN / tool} is missing (run make setup)"
        return None

    @contextlib.contextmanager
    def running(self, topo: Topology, flows: list[str]) -> Iterator[OvsdHandle]:
        rundir = Path(tempfile.mkdtemp(prefix="ovsd-afpacket-"))
        bridge = f"bo{os.getpid():x}"
        log = open(rundir / "stdout.log", "w")
        proc = subprocess.Popen([str(BIN / "ovsd"), "--rundir", str(rundir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        handle = OvsdHandle(rundir, bridge)
        pmds: list[int] = []
        capture: subprocess.Popen | None = None
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not (rundir / "ovsd.sock").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ContenderError(f"ovsd did not come up (exit {proc.poll()}):\n    "
                                         f"{_tail(rundir / 'stdout.log')}")
                time.sleep(0.05)
            handle.ofctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={PMD_MASK}")
            handle.ofctl("add-br", bridge)
            for port, ofport in ((topo.in_if, 1), (topo.out_if, 2)):
                handle.ofctl("add-port", bridge, port, f"type={self.port_type}",
                             *self.options, f"ofport_request={ofport}")
            handle.ofctl("del-flows", bridge)
            handle.ofctl("add-flows", bridge, str(write_flows(rundir, flows)))
            pmds = descendants(proc.pid)
            if self.capturing:
                capture = subprocess.Popen(
                    [str(BIN / "ofctl"), "--rundir", str(rundir), "capture", topo.in_if,
                     "--rx", "-w", os.devnull], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=log)
            yield handle
        finally:
            with signals_deferred():
                if capture is not None:
                    stop_pids([capture.pid], signal.SIGINT, timeout=10.0, reap=capture)
                pmds = sorted(set(pmds) | set(descendants(proc.pid)))
                stop_pids([proc.pid], signal.SIGTERM, timeout=15.0, reap=proc)
                # PMDs whose daemon had to be killed must not stay behind.
                stop_pids([p for p in pmds if p != proc.pid], signal.SIGKILL, timeout=5.0)
                log.close()
                _link_del(bridge)
                shutil.rmtree(rundir, ignore_errors=True)


# -- Open vSwitch, userspace datapath ---------------------------------------------------

class OvsNetdevSandbox(OvsSandbox):
    """OvsSandbox with real (not dummy) netdevs and ovs-vswitchd on one core."""

    def __init__(self, cpu: int):
        super().__init__()
        self.cpu = cpu

    def __enter__(self) -> "OvsNetdevSandbox":
        d = self.dir
        try:
            self._run("ovsdb-tool", "create", str(d / "conf.db"), SCHEMA)
            self._run("ovsdb-server", f"--remote=punix:{self.db_sock}", "--detach",
                      f"--pidfile={d / 'ovsdb.pid'}", f"--log-file={d / 'ovsdb.log'}",
                      str(d / "conf.db"))
            self._pids.append(int((d / "ovsdb.pid").read_text()))
            self.vsctl("--no-wait", "init")
            self._run("taskset", "-c", str(self.cpu), "ovs-vswitchd", f"unix:{self.db_sock}",
                      "--detach", f"--pidfile={d / 'vswitchd.pid'}",
                      f"--log-file={d / 'vswitchd.log'}")
            self._pids.append(int((d / "vswitchd.pid").read_text()))
        except BaseException:
            self.__exit__()
            raise
        return self

    def appctl(self, *args: str) -> str:
        pid = (self.dir / "vswitchd.pid").read_text().strip()
        return self._run("ovs-appctl", "-t", str(self.dir / f"ovs-vswitchd.{pid}.ctl"), *args)

    def __exit__(self, *exc) -> None:
        with signals_deferred():
            super().__exit__(*exc)


class OvsHandle:
    def __init__(self, ovs: OvsNetdevSandbox, bridge: str, section: str):
        self.ovs, self.bridge, self.section = ovs, bridge, section

    def before_window(self) -> None:
        self.ovs.appctl("dpif-netdev/pmd-stats-clear")

    def after_window(self) -> dict:
        """The counters of the thread that polls the ports: the main thread for
        system ports, the PMD on SWITCH_CPU for afxdp ports."""
        return parse_ovs_pmd_stats(self.ovs.appctl("dpif-netdev/pmd-stats-show"),
                                   self.section)

    def pids(self) -> list[int]:
        """ovsdb-server and ovs-vswitchd (daemons: not our descendants)."""
        return list(self.ovs._pids)

    def megaflows(self) -> int:
        text = self.ovs.appctl("dpctl/dump-flows", "netdev@ovs-netdev")
        return sum(1 for line in text.splitlines() if "actions:" in line)


def parse_ovs_pmd_stats(text: str, section_start: str = "main thread:") -> dict:
    """OVS's dpif-netdev/pmd-stats-show, the section whose heading starts with
    ``section_start`` -> counters."""
    names = {"packets received": "packets", "simple match hits": "simple_hits",
             "emc hits": "emc_hits",
             "smc hits": "smc_hits", "megaflow hits": "megaflow_hits",
             "miss with success upcall": "upcalls", "miss with failed upcall": "failed_upcalls"}
    out: dict = {}
    section = None
    for line in text.splitlines():
        if not line.startswith(" "):
            section = line.strip()
            continue
        if section is None or not section.startswith(section_start):
            continue
        key, _, value = line.strip().partition(":")
        if key in names:
            out[names[key]] = int(value.split()[0])
    return out


class OvsNetdev:
    """Open vSwitch's userspace datapath with the veths as ``port_type`` ports
    (system: polled by the main thread; afxdp: by a PMD on SWITCH_CPU)."""
    name = "OVS netdev"

    def __init__(self, port_type: str = "system", options: tuple[str, ...] = ()):
        self.port_type, self.options = port_type, options

    @staticmethod
    def missing() -> str | None:
        for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl",
                     "ovs-appctl", "taskset"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (Debian package openvswitch-switch)"
        if not os.path.exists(SCHEMA):
            return f"{SCHEMA} is missing (Debian package openvswitch-common)"
        return None

    @staticmethod
    def version() -> str:
        try:
            out = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.split()[-1] if out.split() else ""

    @contextlib.contextmanager
    def running(self, topo: Topology, flows: list[str]) -> Iterator[OvsHandle]:
        bridge = f"bv{os.getpid():x}"
        try:
            with OvsNetdevSandbox(SWITCH_CPU) as ovs:
                try:
                    ovs.vsctl("--timeout=20", "add-br", bridge, "--", "set", "bridge", bridge,
                              "datapath_type=netdev")
                    ovs.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                              f"other_config:pmd-cpu-mask={PMD_MASK}")
                    for port, ofport in ((topo.in_if, 1), (topo.out_if, 2)):
                        ovs.vsctl("--timeout=20", "add-port", bridge, port, "--", "set",
                                  "interface", port, f"type={self.port_type}",
                                  *self.options, f"ofport_request={ofport}")
                    ovs.ofctl("del-flows", bridge)
                    ovs.ofctl("add-flows", bridge, str(write_flows(ovs.dir, flows)))
                    section = ("main thread:" if self.port_type == "system" else
                               f"pmd thread numa_id 0 core_id {SWITCH_CPU}:")
                    yield OvsHandle(ovs, bridge, section)
                finally:
                    with signals_deferred():
                        # Deleting the bridge first lets OVS remove its tap device.
                        with contextlib.suppress(subprocess.SubprocessError, OSError):
                            subprocess.run(["ovs-vsctl", f"--db=unix:{ovs.db_sock}",
                                            "--timeout=10", "--if-exists", "del-br", bridge],
                                           env=ovs.env, capture_output=True, timeout=15)
        except subprocess.CalledProcessError as e:
            raise ContenderError(f"{' '.join(e.cmd)}: exit {e.returncode}: "
                                 f"{(e.stderr or e.stdout or '').strip()}") from None
        finally:
            _link_del(bridge)


# -- bare forwarder -------------------------------------------------------------------

class BareHandle:
    def before_window(self) -> None:
        pass

    def after_window(self) -> dict:
        return {}


class Bare:
    name = "bare forwarder"

    @staticmethod
    def missing() -> str | None:
        if not (BIN / "python").exists():
            return f"{BIN / 'python'} is missing (run make setup)"
        return None

    @contextlib.contextmanager
    def running(self, topo: Topology, flows: list[str]) -> Iterator[BareHandle]:
        # It forwards everything from IN to OUT: ``flows`` has nothing to say to it.
        out = tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([str(BIN / "python"), "-m", "bench.bare_forwarder",
                                 topo.in_if, topo.out_if, "--cpu", str(SWITCH_CPU)],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield BareHandle()
            if proc.poll() is not None:
                out.seek(0)
                raise ContenderError(f"the bare forwarder exited with status "
                                     f"{proc.returncode}: {out.read().strip()[-500:]}")
        finally:
            with signals_deferred():
                stop_pids([proc.pid], signal.SIGTERM, timeout=10.0, reap=proc)
                out.close()


CONTENDERS = {"ovsd": Ovsd, "OVS netdev": OvsNetdev, "bare forwarder": Bare}

