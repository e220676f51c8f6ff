"""ofctl doctor's verdicts, from facts made up here: each broken host is a
value, not a machine to break."""

from __future__ import annotations

import json
import os

import pytest

from ofctl import doctor as D
from ofctl.doctor import FAIL, OK, SKIP, WARN, Check, DaemonFacts, PathInfo, User

LIBVIRT_QEMU = User("libvirt-qemu", 64055, frozenset({108}))


def d(path: str, mode: int, uid: int = 0, gid: int = 0) -> PathInfo:
    return PathInfo(path, True, True, mode, uid, gid)


def sock(path: str, mode: int, uid: int = 0, gid: int = 0) -> PathInfo:
    return PathInfo(path, True, False, mode, uid, gid)


# -- parsing the host's files ----------------------------------------------------------

def test_cpu_lists_round_trip():
    assert D.parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert D.parse_cpu_list("\n") == set()
    assert D.parse_cpu_list(None) == set()
    assert D.format_cpu_list({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert D.format_cpu_list(set()) == "none"
    assert D.cpu_mask([1, 2]) == "0x6"


def test_meminfo_mounts_limits_kernel():
    mi = D.parse_meminfo("MemTotal: 100 kB\nHugePages_Total:     512\nHugePages_Free:  "
                         "   500\nHugepagesize:    2048 kB\n")
    assert (mi["HugePages_Total"], mi["HugePages_Free"], mi["Hugepagesize"]) == (512, 500, 2048)
    mounts = ("proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n"
              "none /mnt/huge1G hugetlbfs rw,pagesize=1G 0 0\n")
    assert D.hugetlbfs_mounts(mounts) == ["/dev/hugepages", "/mnt/huge1G"]
    limits = ("Limit                     Soft Limit           Hard Limit           Units\n"
              "Max locked memory         65536                65536                bytes\n")
    assert D.parse_memlock(limits) == 65536
    assert D.parse_memlock(limits.replace("65536 ", "unlimited ")) == -1
    assert D.parse_memlock("nothing\n") is None
    assert D.kernel_version("6.18.44-fc-v1147") == (6, 18)
    assert D.kernel_version("5.10.0-28-amd64") == (5, 10)


# -- the daemon ----------------------------------------------------------------------

def test_ovsd_not_running_fails_with_how_to_start_it():
    c = D.check_ovsd(DaemonFacts(False, error="cannot connect to ovsd at /r/ovsd.sock: "
                                 "No such file or directory"), "/r", "0.1.0")
    assert c.status == FAIL
    assert "no ovsd answers on /r/ovsd.sock (No such file or directory)" in c.fact
    assert c.fix.startswith("ovsd --rundir /r") and "make run" in c.fix


def test_ovsd_stale_pidfile_and_hung_daemon():
    gone = D.check_ovsd(DaemonFacts(False, pid=4242, pid_alive=False), "/r", None)
    assert gone.status == FAIL and "pid 4242, which is gone" in gone.fact
    hung = D.check_ovsd(DaemonFacts(False, pid=4242, pid_alive=True), "/r", None)
    assert hung.status == FAIL and hung.fix.startswith("kill 4242; ovsd --rundir /r")


def test_ovsd_running_and_its_version():
    ok = D.check_ovsd(DaemonFacts(True, version="0.1.0", pid=7), "/r", "0.1.0")
    assert ok.status == OK and ok.fact == "ovsd 0.1.0 running (pid 7) on /r/ovsd.sock"
    other = D.check_ovsd(DaemonFacts(True, version="0.2.0", pid=7), "/r", "0.1.0")
    assert other.status == WARN and "this ofctl is 0.1.0" in other.fact


# -- the rundir and its sockets ------------------------------------------------------

def test_rundir_good():
    assert D.check_rundir(d("/var/run/ovsd", 0o755), 0, True).status == OK


def test_rundir_world_writable_fails_naming_chmod():
    c = D.check_rundir(d("/var/run/ovsd", 0o777), 0, True)
    assert c.status == FAIL and c.fix == "chmod 0755 /var/run/ovsd"
    assert "world-writable" in c.fact and "0777" in c.fact
    # the sticky bit does not help: others can still create a port's socket first
    assert D.check_rundir(d("/r", 0o1777), 0, True).status == FAIL


def test_rundir_owner_and_group():
    c = D.check_rundir(d("/r", 0o755, uid=1000), 0, True)
    assert c.status == FAIL and c.fix == "chown root:root /r"
    # a non-root ovsd may own its own rundir
    assert D.check_rundir(d("/r", 0o755, uid=1000), 1000, True).status == OK
    g = D.check_rundir(d("/r", 0o775, gid=100), 0, True)
    assert g.status == WARN and g.fix == "chmod 0755 /r"
    assert D.check_rundir(d("/r", 0o775, gid=0), 0, True).status == OK


def test_rundir_missing_or_not_a_directory():
    missing = PathInfo("/r", False)
    assert D.check_rundir(missing, 0, False).status == WARN
    assert D.check_rundir(missing, 0, True).status == FAIL
    assert D.check_rundir(missing, 0, True).fix == "mkdir -p -m 0755 /r"
    assert D.check_rundir(sock("/r", 0o644), 0, False).status == FAIL


def test_control_socket_mode():
    assert D.check_control_socket(sock("/r/ovsd.sock", 0o660)).status == OK
    c = D.check_control_socket(sock("/r/ovsd.sock", 0o666))
    assert c.status == FAIL and c.fix.startswith("chmod 0660 /r/ovsd.sock")
    assert D.check_control_socket(PathInfo("/r/ovsd.sock", False)).status == SKIP


def test_qemu_access_without_a_qemu_user():
    assert D.check_qemu_access(None, [d("/r", 0o700)], [], []).status == OK


def test_qemu_user_blocked_by_a_directory_above():
    chain = [d("/var/run/ovsd", 0o755), d("/var/run", 0o700), d("/var", 0o755), d("/", 0o755)]
    # a vhost-user port its guest cannot reach: the guest has no network
    c = D.check_qemu_access(LIBVIRT_QEMU, chain, [sock("/var/run/ovsd/vhu0", 0o660)], ["vhu0"])
    assert c.status == FAIL and c.fix == "chmod o+x /var/run" and "vhu0" in c.fact
    assert D.check_qemu_access(LIBVIRT_QEMU, chain, [], []).status == WARN


def test_qemu_user_through_group_or_ownership():
    chain = [d("/r", 0o750, gid=108), d("/", 0o755)]
    assert D.check_qemu_access(LIBVIRT_QEMU, chain, [], []).status == OK
    chain = [d("/r", 0o700, uid=64055), d("/", 0o755)]
    assert D.check_qemu_access(LIBVIRT_QEMU, chain, [], []).status == OK
    root = User("root", 0, frozenset({0}))
    assert D.check_qemu_access(root, [d("/r", 0o700)], [], []).status == OK


def test_qemu_user_cannot_write_the_socket():
    chain = [d("/r", 0o755), d("/", 0o755)]
    c = D.check_qemu_access(LIBVIRT_QEMU, chain, [sock("/r/vhu0", 0o660)], ["vhu0"])
    assert c.status == WARN
    assert c.fix == "ofctl set Interface vhu0 options:vhost-sock-owner=libvirt-qemu"
    owned = sock("/r/vhu0", 0o660, uid=64055)
    assert D.check_qemu_access(LIBVIRT_QEMU, chain, [owned], ["vhu0"]).status == OK


# -- hugepages -----------------------------------------------------------------------

GOOD_MEM = {"HugePages_Total": 512, "HugePages_Free": 512, "Hugepagesize": 2048}
NO_MEM = {"HugePages_Total": 0, "HugePages_Free": 0, "Hugepagesize": 2048}


def test_hugepages_good():
    c = D.check_hugepages(GOOD_MEM, ["/dev/hugepages"], [])
    assert c.status == OK and "512 of 512" in c.fact and "/dev/hugepages" in c.fact


def test_no_hugepages_is_a_warning_with_the_commands():
    c = D.check_hugepages(NO_MEM, [], [])
    assert c.status == WARN and "ovsd needs none" in c.fact
    assert c.fix == ("echo 1024 > /proc/sys/vm/nr_hugepages; mkdir -p /dev/hugepages; "
                     "mount -t hugetlbfs none /dev/hugepages")
    assert D.check_hugepages(NO_MEM, ["/dev/hugepages"], None).fix == \
        "echo 1024 > /proc/sys/vm/nr_hugepages"
    assert D.check_hugepages(GOOD_MEM, [], None).fix == \
        "mkdir -p /dev/hugepages; mount -t hugetlbfs none /dev/hugepages"


def test_no_hugepages_with_vhost_ports_names_them_and_memfd():
    # Still a warn: a memfd-backed guest needs no hugepages, and doctor cannot see it.
    c = D.check_hugepages(NO_MEM, [], ["vhu0", "vhu1"])
    assert c.status == WARN
    assert "vhu0, vhu1" in c.fact and "memfd" in c.fact and "share=on" in c.fact


def test_hugepages_all_in_use():
    c = D.check_hugepages({**GOOD_MEM, "HugePages_Free": 0}, ["/dev/hugepages"], ["vhu0"])
    assert c.status == WARN and "all in use" in c.fact
    assert c.fix == "echo 1536 > /proc/sys/vm/nr_hugepages"


# -- PMD cores -----------------------------------------------------------------------

def test_pmd_mask_unset_is_the_highest_core():
    c = D.check_pmd_mask(None, {0, 1, 2, 3}, set(), None)
    assert c.status == OK and "one PMD on core 3" in c.fact
    assert D.pmd_cores(None, {0, 1, 2, 3}) == [3]


def test_pmd_mask_with_an_offline_core_fails():
    c = D.check_pmd_mask("0x4", {0, 1}, set(), None)
    assert c.status == FAIL and "core(s) 2 not online" in c.fact
    assert c.fix == "ofctl set Open_vSwitch . other_config:pmd-cpu-mask=0x2"
    # isolated cores are what to suggest
    c = D.check_pmd_mask("0x100", {0, 1, 2, 3}, {2, 3}, None)
    assert c.fix == "ofctl set Open_vSwitch . other_config:pmd-cpu-mask=0xc"


def test_pmd_mask_not_hex_or_empty():
    assert D.check_pmd_mask("zz", {0, 1}, set(), None).status == FAIL
    assert D.check_pmd_mask("0x0", {0, 1}, set(), None).status == FAIL


def test_pmd_mask_outside_ovsd_affinity():
    c = D.check_pmd_mask("0x8", {0, 1, 2, 3}, set(), {0, 1})
    assert c.status == FAIL and "affinity" in c.fact
    assert c.fix.startswith("ofctl set Open_vSwitch . other_config:pmd-cpu-mask=0x2")


def test_pmd_isolation():
    c = D.check_pmd_isolation([1, 2], {2})
    assert c.status == WARN and "core(s) 1 not isolated" in c.fact
    assert "isolcpus=1" in c.fix
    assert D.check_pmd_isolation([2, 3], {2, 3}).status == OK


def test_pmd_spare_cpu():
    c = D.check_pmd_spare([0, 1], {0, 1})
    assert c.status == WARN
    assert c.fix == "ofctl set Open_vSwitch . other_config:pmd-cpu-mask=0x2"
    assert D.check_pmd_spare([0], {0}).fix == "give the host a second CPU"
    assert D.check_pmd_spare([1], {0, 1}).status == OK


# -- locked memory ---------------------------------------------------------------------

LIMITS_64K = "Max locked memory         65536                65536                bytes\n"


def test_memlock_does_not_matter_from_5_11():
    c = D.check_memlock(LIMITS_64K, "6.1.0-18-amd64", 4)
    assert c.status == OK and "64 KiB" in c.fact and "memory cgroup" in c.fact


def test_memlock_too_low_on_an_old_kernel():
    c = D.check_memlock(LIMITS_64K, "5.10.0-28-amd64", 2)
    assert c.status == FAIL and "LimitMEMLOCK=infinity" in c.fix and "ulimit -l" in c.fix
    assert D.check_memlock(LIMITS_64K, "5.10.0", 0).status == WARN
    unlimited = LIMITS_64K.replace("65536 ", "unlimited ")
    assert D.check_memlock(unlimited, "5.10.0", 2).status == OK
    assert D.check_memlock(None, "5.10.0", 2).status == WARN


# -- afxdp interfaces ------------------------------------------------------------------

def port(name="eth1", **kw):
    base = {"name": name, "bridge": "br0", "type": "afxdp", "state": "up", "error": None,
            "afxdp": {"xdp_mode": "native-with-zerocopy", "requested": "best-effort",
                      "n_rxq": 4, "use_need_wakeup": True, "refused": None}}
    return {**base, **kw}


def test_afxdp_native():
    c = D.check_afxdp_port(port(), True, "i40e")
    assert c.status == OK and c.name == "afxdp eth1"
    assert "native-with-zerocopy" in c.fact and "driver i40e" in c.fact


def test_afxdp_missing_interface_fails_with_the_fix():
    c = D.check_afxdp_port(port(state="down", error="no network interface", afxdp=None),
                           False, None)
    assert c.status == FAIL and "no interface eth1" in c.fact
    assert "ip link add eth1" in c.fix and "ofctl del-port br0 eth1" in c.fix


def test_afxdp_port_down_for_another_reason():
    c = D.check_afxdp_port(port(state="down", error="xdp-mode=native cannot be used",
                                afxdp=None), True, "e1000")
    assert c.status == FAIL and "xdp-mode=native cannot be used" in c.fact


def test_afxdp_generic():
    asked = port(afxdp={"xdp_mode": "generic", "requested": "generic", "n_rxq": 1})
    c = D.check_afxdp_port(asked, True, "veth")
    assert c.status == WARN and c.fix == "ofctl set Interface eth1 options:xdp-mode=best-effort"
    forced = port(afxdp={"xdp_mode": "generic", "requested": "best-effort", "n_rxq": 1,
                         "refused": "native: Operation not supported"})
    c = D.check_afxdp_port(forced, True, "e1000")
    assert c.status == WARN and "no native XDP" in c.fact
    assert "Operation not supported" in c.fact and "native XDP" in c.fix


# -- the whole run, with facts given -----------------------------------------------------

def fake_root(tmp_path, meminfo: str, mounts: str = "proc /proc proc rw 0 0\n"):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(meminfo)
    (root / "proc" / "mounts").write_text(mounts)
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-3\n")
    (root / "sys/devices/system/cpu/isolated").write_text("2-3\n")
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-18-amd64\n")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                     "libvirt-qemu:x:64055:108::/var/lib/libvirt:/bin/false\n")
    (root / "etc/group").write_text("kvm:x:108:\nlibvirt:x:109:libvirt-qemu\n")
    return D.Host(str(root))


def test_host_reads_the_fake_tree_and_falls_back(tmp_path):
    host = fake_root(tmp_path, "HugePages_Total: 0\n")
    assert host.read("/proc/meminfo") == "HugePages_Total: 0\n"
    assert host.kernel_release() == "6.1.0-18-amd64"
    # what the fake tree lacks comes from the host
    assert host.path("/proc/cpuinfo") == "/proc/cpuinfo"
    assert host.read("/proc/no-such-file") is None
    users = host.users()
    assert users["libvirt-qemu"] == User("libvirt-qemu", 64055, frozenset({108, 109}))


def test_host_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OVSD_DOCTOR_ROOT", str(tmp_path))
    assert D.Host().root == str(tmp_path)
    monkeypatch.delenv("OVSD_DOCTOR_ROOT")
    assert D.Host().root is None


def test_run_without_a_daemon_skips_what_needs_it(tmp_path):
    host = fake_root(tmp_path, "HugePages_Total: 0\nHugePages_Free: 0\n")
    rundir = tmp_path / "run"
    checks = D.run_checks(str(rundir), host, facts=DaemonFacts(False, error="refused"))
    by = {c.name: c for c in checks}
    assert by["ovsd"].status == FAIL
    assert by["hugepages"].status == WARN
    for name in ("pmd-cpu-mask", "pmd-isolation", "pmd-spare-cpu", "memlock", "afxdp"):
        assert by[name].status == SKIP and by[name].fact == "skipped: ovsd not running"
    assert D.worst(checks) == FAIL


def test_run_with_daemon_facts(tmp_path):
    host = fake_root(tmp_path, "HugePages_Total: 0\nHugePages_Free: 0\n")
    rundir = tmp_path / "run"
    rundir.mkdir()
    os.chmod(rundir, 0o700)  # fine for root's ovsd; closed to libvirt-qemu (the fake passwd)
    facts = DaemonFacts(True, version="0.1.0", pmd_mask="0xc", ports=[
        {"name": "vhu0", "bridge": "br0", "type": "dpdkvhostuser", "state": "up",
         "error": None}])
    checks = D.run_checks(str(rundir), host, facts=facts)
    by = {c.name: c for c in checks}
    assert by["pmd-cpu-mask"].status == OK     # cores 2-3, online 0-3 in the fake tree
    assert by["pmd-isolation"].status == OK    # and isolated there
    assert by["pmd-spare-cpu"].status == OK
    assert by["memlock"].status == OK          # fake kernel 6.1
    assert by["afxdp"].status == OK
    assert by["hugepages"].status == WARN and "vhu0" in by["hugepages"].fact
    assert by["rundir"].status == OK
    assert by["qemu-access"].status == FAIL and by["qemu-access"].fix == f"chmod o+x {rundir}"


def test_text_is_one_line_per_check_and_json_is_data():
    checks = [Check("ovsd", OK, "ovsd 0.1.0 running"),
              Check("rundir", FAIL, "/r is world-writable", "chmod 0755 /r"),
              Check("hugepages", WARN, "none", "echo 1024 > /proc/sys/vm/nr_hugepages"),
              Check("memlock", SKIP, "skipped: ovsd not running")]
    lines = D.format_text(checks).splitlines()
    assert lines[0].split() == ["ok", "ovsd", "ovsd", "0.1.0", "running"]
    assert lines[1].startswith("FAIL  rundir") and lines[1].endswith("-- fix: chmod 0755 /r")
    assert lines[2].startswith("warn  hugepages")
    assert lines[-1] == "doctor: 1 FAIL, 1 warn, 1 ok, 1 skip"
    assert len(lines) == len(checks) + 1
    data = json.loads(D.as_json(checks, "/r"))
    assert data["ok"] is False
    assert data["checks"][1] == {"name": "rundir", "status": "FAIL",
                                 "fact": "/r is world-writable", "fix": "chmod 0755 /r"}
    assert json.loads(D.as_json(checks[2:], "/r"))["ok"] is True


@pytest.mark.parametrize("statuses,expected", [
    ([OK, SKIP], OK), ([OK, WARN], WARN), ([WARN, FAIL, OK], FAIL), ([], OK)])
def test_worst(statuses, expected):
    assert D.worst([Check("x", s, "") for s in statuses]) == expected
