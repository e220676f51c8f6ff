"""`ofctl doctor` against a real daemon: a good setup exits 0; a world-writable
rundir, a PMD mask naming an offline core, a vanished afxdp interface and a
stopped daemon each FAIL with their fix (exit 1); no hugepages is a warn
with the commands, shown through a fake /proc (OVSD_DOCTOR_ROOT), since the
machine's own pool is shared with other tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.daemon import Daemon, tool
from tests.interop.hugepages import ensure_hugepages


def doctor(d: Daemon, *args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("OVSD_DOCTOR_ROOT", None)
    if root is not None:
        env["OVSD_DOCTOR_ROOT"] = str(root)
    return subprocess.run(tool("ofctl") + ["--rundir", str(d.rundir), "doctor", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def line(out: str, name: str) -> str:
    found = [ln for ln in out.splitlines() if ln.split()[1:2] == [name]]
    assert len(found) == 1, f"no single {name!r} line in:\n{out}"
    return found[0]


def statuses(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return {c["name"]: c["status"] for c in json.loads(proc.stdout)["checks"]}


@pytest.fixture(scope="module", autouse=True)
def hugepages():
    ensure_hugepages(512)


def test_good_setup_exits_0(daemon):
    r = doctor(daemon)
    assert r.returncode == 0, r.stdout + r.stderr
    assert line(r.stdout, "ovsd").startswith("ok    ovsd")
    assert f"running (pid {daemon.proc.pid}) on {daemon.sock}" in line(r.stdout, "ovsd")
    for name in ("rundir", "ovsd.sock", "hugepages", "pmd-cpu-mask", "memlock", "afxdp"):
        assert line(r.stdout, name).startswith("ok "), r.stdout
    assert "FAIL" not in r.stdout
    j = doctor(daemon, "--json")
    assert j.returncode == 0
    data = json.loads(j.stdout)
    assert data["ok"] is True and data["rundir"] == str(daemon.rundir)
    assert statuses(j)["ovsd"] == "ok"


def test_world_writable_rundir_fails_naming_chmod(daemon):
    os.chmod(daemon.rundir, 0o777)
    r = doctor(daemon)
    assert r.returncode == 1, r.stdout
    bad = line(r.stdout, "rundir")
    assert bad.startswith("FAIL  rundir") and "world-writable" in bad
    assert bad.endswith(f"-- fix: chmod 0755 {daemon.rundir}")
    assert statuses(doctor(daemon, "--json"))["rundir"] == "FAIL"
    # the fix it names is the fix
    os.chmod(daemon.rundir, 0o755)
    assert doctor(daemon).returncode == 0


def test_no_hugepages_warns_with_the_commands(daemon, tmp_path):
    fake = tmp_path / "fakeroot"
    (fake / "proc").mkdir(parents=True)
    (fake / "proc/meminfo").write_text("HugePages_Total:       0\nHugePages_Free:        0\n"
                                       "Hugepagesize:       2048 kB\n")
    (fake / "proc/mounts").write_text("proc /proc proc rw,nosuid 0 0\n")
    r = doctor(daemon, root=fake)
    assert r.returncode == 0, r.stdout  # a warn: ovsd itself needs no hugepages
    warn = line(r.stdout, "hugepages")
    assert warn.startswith("warn  hugepages") and "no hugepages reserved" in warn
    assert "ovsd needs none" in warn
    assert warn.endswith("-- fix: echo 1024 > /proc/sys/vm/nr_hugepages; mkdir -p "
                         "/dev/hugepages; mount -t hugetlbfs none /dev/hugepages")
    # with a vhost-user port, the message is about its guest
    daemon.ofctl("add-br", "br0")
    daemon.ofctl("add-port", "br0", "vhu0", "type=dpdkvhostuser")
    warn = line(doctor(daemon, root=fake).stdout, "hugepages")
    assert "the guests of vhu0 need RAM they share with ovsd" in warn and "memfd" in warn
    # and without the fake tree, the machine's reserved pages are fine
    assert line(doctor(daemon).stdout, "hugepages").startswith("ok ")


def test_pmd_mask_with_an_offline_core_fails_and_its_fix_works(daemon):
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    top = max(int(part.split("-")[-1]) for part in online.split(","))
    daemon.ofctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={1 << (top + 1):#x}")
    r = doctor(daemon)
    assert r.returncode == 1, r.stdout
    bad = line(r.stdout, "pmd-cpu-mask")
    assert bad.startswith("FAIL") and f"core(s) {top + 1} not online" in bad
    fix = bad.split("-- fix: ")[1]
    assert fix.startswith("ofctl set Open_vSwitch . other_config:pmd-cpu-mask=0x")
    daemon.ofctl(*fix.split()[1:])
    r = doctor(daemon)
    assert r.returncode == 0, r.stdout
    assert line(r.stdout, "pmd-cpu-mask").startswith("ok ")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def test_afxdp_interface_reported_then_missing(daemon):
    name = f"dr{os.getpid() % 100000}"
    _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    try:
        _ip("link", "set", name, "up")
        _ip("link", "set", f"{name}p", "up")
        daemon.ofctl("add-br", "br0")
        daemon.ofctl("add-port", "br0", name, "type=afxdp")
        r = doctor(daemon)
        assert r.returncode == 0, r.stdout
        good = line(r.stdout, "afxdp")  # the check is named "afxdp NAME"
        assert good.startswith(f"ok    afxdp {name}"), r.stdout
        assert "driver veth" in good and "native XDP available" in good
        assert "xdp-mode " in good and "requested best-effort" in good
        _ip("link", "del", name)
        r = doctor(daemon)
        assert r.returncode == 1, r.stdout
        bad = [ln for ln in r.stdout.splitlines() if f"afxdp {name}" in ln]
        assert len(bad) == 1 and bad[0].startswith("FAIL"), r.stdout
        assert f"no interface {name}" in bad[0] and f"ofctl del-port br0 {name}" in bad[0]
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)


def test_no_daemon_fails_and_skips_the_rest(tmp_path):
    d = Daemon(tmp_path / "never-started")
    r = doctor(d)
    assert r.returncode == 1
    bad = line(r.stdout, "ovsd")
    assert bad.startswith("FAIL  ovsd") and f"no ovsd answers on {d.sock}" in bad
    assert f"-- fix: ovsd --rundir {d.rundir}" in bad
    for name in ("pmd-cpu-mask", "pmd-isolation", "pmd-spare-cpu", "memlock", "afxdp"):
        assert line(r.stdout, name).endswith("skipped: ovsd not running")
    j = doctor(d, "--json")
    assert j.returncode == 1 and json.loads(j.stdout)["ok"] is False


def test_killed_daemon_is_named_by_its_pidfile(daemons):
    d = daemons.start()
    pid = d.proc.pid
    d.kill()
    r = doctor(d)
    assert r.returncode == 1
    assert f"ovsd.pid names pid {pid}, which is gone" in line(r.stdout, "ovsd")
