"""A private Open vSwitch (ovsdb-server + ovs-vswitchd with dummy datapaths)
in a temporary directory, for side-by-side benchmarks.  Stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class OvsSandbox:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ovs-sandbox-"))
        self.env = dict(os.environ, OVS_RUNDIR=str(self.dir), OVS_LOGDIR=str(self.dir),
                        OVS_DBDIR=str(self.dir), OVS_SYSCONFDIR=str(self.dir))
        self.db_sock = self.dir / "db.sock"
        self._pids: list[int] = []

    def _run(self, *args: str) -> str:
        return subprocess.run(args, env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def __enter__(self) -> "OvsSandbox":
        d = self.dir
        self._run("ovsdb-tool", "create", str(d / "conf.db"), SCHEMA)
        self._run("ovsdb-server", f"--remote=punix:{self.db_sock}", "--detach",
                  f"--pidfile={d / 'ovsdb.pid'}", f"--log-file={d / 'ovsdb.log'}",
                  str(d / "conf.db"))
        self._pids.append(int((d / "ovsdb.pid").read_text()))
        self.vsctl("--no-wait", "init")
        self._run("ovs-vswitchd", "--enable-dummy=override", f"unix:{self.db_sock}",
                  "--detach", f"--pidfile={d / 'vswitchd.pid'}",
                  f"--log-file={d / 'vswitchd.log'}")
        self._pids.append(int((d / "vswitchd.pid").read_text()))
        return self

    def vsctl(self, *args: str) -> str:
        return self._run("ovs-vsctl", f"--db=unix:{self.db_sock}", *args)

    def ofctl(self, *args: str) -> str:
        return self._run("ovs-ofctl", *args)

    def __exit__(self, *exc) -> None:
        for pid in reversed(self._pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)
