"""The daemon's life: its socket and pidfile, clean stops on SIGTERM/SIGINT, one
daemon per rundir, the configuration surviving a restart, --config seeding a
fresh database, --db, and what it says when it cannot start."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon, tool
from tests.e2e.conftest import add_dummy_ports, frames, parse_flows, udp_frame


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"ovsd exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def run_ovsd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """ovsd expected to stop by itself (it could not start)."""
    return subprocess.run(tool("ovsd") + list(args), capture_output=True, text=True,
                          timeout=timeout)


def test_socket_pidfile_and_log(daemon):
    st = os.stat(daemon.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert (daemon.rundir / "ovsd.pid").read_text() == f"{daemon.proc.pid}\n"
    # "ready" is logged just after the socket starts accepting: allow for that.
    deadline = time.monotonic() + 10
    while "ovsd ready" not in (daemon.rundir / "stderr.log").read_text():
        assert time.monotonic() < deadline, "ovsd never logged that it was ready"
        time.sleep(0.05)
    assert "ovsd ready" in (daemon.rundir / "ovsd.log").read_text()
    assert (daemon.rundir / "conf.db").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(daemons, sig):
    d = daemons.start()
    d.ofctl("add-br", "brsig")
    add_dummy_ports(d, "brsig", ["s1"])
    os.kill(d.proc.pid, sig)
    assert d.proc.wait(20) == 0
    assert not d.sock.exists() and not (d.rundir / "ovsd.pid").exists()
    assert "stopped" in (d.rundir / "ovsd.log").read_text()
    assert "Traceback" not in (d.rundir / "stderr.log").read_text()
    proc = d.ofctl_run("list-br")
    assert proc.returncode == 1 and "Is ovsd running" in proc.stderr


def test_second_daemon_on_the_same_rundir_is_refused(daemon):
    daemon.ofctl("add-br", "brone")
    proc = run_ovsd("--rundir", str(daemon.rundir))
    assert proc.returncode == 1
    assert (f"another ovsd (pid {daemon.proc.pid}) is running with rundir {daemon.rundir}"
            in proc.stderr)
    # The first one is untouched and still serves.
    assert daemon.sock.exists()
    assert daemon.ofctl("list-br") == "brone\n"


def test_restart_brings_everything_back(daemons, tmp_path):
    run = daemons.rundir()
    d = daemons.start(run)
    d.ofctl("add-br", "brr")
    d.ofctl("add-br", "brr2")
    pcaps = add_dummy_ports(d, "brr", ["r1", "r2"])
    d.ofctl("add-port", "brr", "r7", "type=dummy", "ofport_request=7", "options:k=v")
    d.ofctl("add-port", "brr", "rauto", "type=dummy")  # got 3 by itself: keeps it
    d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x6")
    d.ofctl("set", "Port", "r7", "tag=30")
    d.ofctl("del-flows", "brr")
    flows = ["cookie=0x11,table=0,priority=100,in_port=1,actions=output:2",
             "cookie=0x22,table=3,priority=7,idle_timeout=500,hard_timeout=900,tcp,"
             "tp_dst=22,actions=drop",
             "cookie=0x33,table=9,priority=1,actions=resubmit(,3)"]
    for f in flows:
        d.ofctl("add-flow", "brr", f)
    d.ofctl("add-flow", "brr2", "cookie=0x44,priority=5,actions=drop")
    d.ofctl("inject", "brr", "r1", udp_frame())  # counters are not configuration
    before_ports = d.ofctl("list-ports", "brr")
    ofports = {p: d.ofctl("get", "Interface", p, "ofport") for p in ("r1", "r2", "r7", "rauto")}
    assert ofports["rauto"] == "3\n"
    assert d.stop() == 0

    d = daemons.start(run)
    assert d.ofctl("list-br") == "brr\nbrr2\n"
    assert d.ofctl("list-ports", "brr") == before_ports
    assert {p: d.ofctl("get", "Interface", p, "ofport") for p in ofports} == ofports
    assert d.ofctl("get", "Interface", "r7", "options") == "{k=v}\n"
    assert d.ofctl("get", "Interface", "r1", "options:tx_pcap") == f'"{pcaps["r1"]}"\n'
    assert d.ofctl("get", "Port", "r7", "tag") == "30\n"
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config:pmd-cpu-mask") == '"0x6"\n'
    got = {(f["cookie"], f["table"], f["priority"], f["match"], f["actions"],
            f["idle_timeout"], f["hard_timeout"]) for f in parse_flows(d.ofctl("dump-flows",
                                                                                 "brr"))}
    assert got == {(0x11, 0, 100, "in_port=1", "output:2", None, None),
                   (0x22, 3, 7, "tcp,tp_dst=22", "drop", "500", "900"),
                   (0x33, 9, 1, "", "resubmit(,3)", None, None)}
    assert [f["cookie"] for f in parse_flows(d.ofctl("dump-flows", "brr2"))] == [0x44, 0]
    # The restored ports and flows forward.
    d.ofctl("inject", "brr", "r1", udp_frame(dport=9))
    assert frames(pcaps["r2"])[-1].hex() == udp_frame(dport=9)
    assert " 7(r7): " in d.ofctl("show", "brr")


def test_fresh_rundir_is_a_fresh_switch(daemons):
    d = daemons.start()
    d.ofctl("add-br", "brold")
    other = daemons.start()
    assert other.ofctl("list-br") == ""
    assert other.ofctl("get", "Open_vSwitch", ".", "other_config") == "{}\n"


def test_db_option_puts_the_database_elsewhere(daemons, tmp_path):
    db = tmp_path / "elsewhere" / "switch.db"
    db.parent.mkdir()
    d = daemons.start(None, "--db", str(db))
    d.ofctl("add-br", "brdbx")
    d.ofctl("add-flow", "brdbx", "cookie=0x5,priority=5,actions=drop")
    assert db.exists() and not (d.rundir / "conf.db").exists()
    assert d.stop() == 0
    # Another rundir, the same database: the same switch.
    d2 = daemons.start(None, "--db", str(db))
    assert d2.ofctl("list-br") == "brdbx\n"
    assert 0x5 in [f["cookie"] for f in parse_flows(d2.ofctl("dump-flows", "brdbx"))]
    # Two daemons cannot share one database.
    proc = run_ovsd("--rundir", str(tmp_path / "third"), "--db", str(db))
    assert proc.returncode == 1 and str(db) in proc.stderr and "another ovsd" in proc.stderr


def _config_copy(tmp_path: Path, rundir: Path) -> Path:
    text = (ROOT / "configs" / "ovsd.toml").read_text()
    assert 'rundir = "/var/run/ovsd"' in text
    cfg = tmp_path / "ovsd.toml"
    cfg.write_text(text.replace('rundir = "/var/run/ovsd"', f'rundir = "{rundir}"'))
    return cfg


def test_config_file_seeds_a_fresh_database(tmp_path):
    run = tmp_path / "cfgrun"
    cfg = _config_copy(tmp_path, run)
    # No --rundir: the configuration file says where.
    proc = subprocess.Popen(tool("ovsd") + ["--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(run / "ovsd.sock", proc)
        d = Daemon(run)
        assert d.ofctl("list-br") == "br0\n"
        (flow,) = parse_flows(d.ofctl("dump-flows", "br0"))
        assert (flow["table"], flow["priority"], flow["match"], flow["actions"]) == \
            (0, 0, "", "NORMAL")
        assert d.ofctl("get", "Open_vSwitch", ".", "other_config:pmd-cpu-mask") == \
            '"0x2"\n'
        assert (run / "conf.db").exists() and (run / "ovsd.log").exists()
        d.ofctl("del-flows", "br0")
        d.ofctl("add-flow", "br0", "cookie=0x9,priority=9,actions=drop")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    # The seed is for a fresh database only: the changes stay after a restart.
    with Daemon(run, "--config", str(cfg)) as d:
        assert [(f["cookie"], f["actions"]) for f in parse_flows(d.ofctl("dump-flows",
                                                                         "br0"))] == \
            [(0x9, "drop")]


def test_config_bridge_with_its_own_flows(daemons, tmp_path):
    cfg = tmp_path / "two.toml"
    cfg.write_text('[other_config]\n"pmd-cpu-mask" = "0x4"\n\n'
                   '[[bridge]]\nname = "brc1"\n'
                   'flows = ["table=0,priority=5,in_port=LOCAL,actions=drop", '
                   '"table=1,priority=1,actions=NORMAL"]\n\n'
                   '[[bridge]]\nname = "brc2"\nflows = []\n')
    d = daemons.start(None, "--config", str(cfg))
    assert d.ofctl("list-br") == "brc1\nbrc2\n"
    assert [(f["table"], f["actions"]) for f in parse_flows(d.ofctl("dump-flows", "brc1"))] \
        == [(0, "drop"), (1, "NORMAL")]
    assert d.ofctl("dump-flows", "brc2") == ""
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config") == '{pmd-cpu-mask="0x4"}\n'


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    ("[ovsd\n", "is not valid TOML"),
    ('[ovsd]\nlog_level = "loud"\n', "log_level 'loud' is not one of"),
    ('[[bridge]]\nflows = ["actions=drop"]\n', "needs a name"),
    ('[ovsd]\nmetrics = "10.0.0.1:99999"\n', "[ovsd] metrics: '10.0.0.1:99999': the port must be a number"),
    ('[ovsd]\nmetrics = 9100\n', "'metrics' must be a str"),
    ('[ovsd]\novsdb_tcp = 70000\n', "ovsdb_tcp: 70000 is not a TCP port"),
    ('[ovsd]\nmetric = "9100"\n', "unknown key [ovsd] 'metric'"),
])
def test_bad_config_file(tmp_path, content, message):
    cfg = tmp_path / "bad.toml"
    if content is not None:
        cfg.write_text(content)
    proc = run_ovsd("--rundir", str(tmp_path / "run"), "--config", str(cfg))
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bridges,message", [
    ('name = "brbad"\nflows = ["priority=1,actions=drop", "actions=output:9x"]',
     "bridge brbad: bad flow 'actions=output:9x'"),
    ('name = "a-name-far-too-long"', "invalid bridge name"),
])
def test_bad_bridge_in_config_file(daemons, tmp_path, bridges, message):
    cfg = tmp_path / "badflow.toml"
    cfg.write_text(f'[[bridge]]\nname = "brok"\n\n[[bridge]]\n{bridges}\n')
    run = tmp_path / "run"
    proc = run_ovsd("--rundir", str(run), "--config", str(cfg))
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    # Nothing half-made: once the file is fixed, the database is seeded from it.
    assert not (run / "conf.db").exists() and not (run / "ovsd.sock").exists()
    cfg.write_text('[[bridge]]\nname = "brok"\n')
    d = daemons.start(run, "--config", str(cfg))
    assert d.ofctl("list-br") == "brok\n"


def test_rundir_socket_path_taken_by_a_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "ovsd.sock").write_text("not a socket")
    proc = run_ovsd("--rundir", str(run))
    assert proc.returncode == 1 and "is not a socket" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (run / "ovsd.sock").read_text() == "not a socket"


def test_unreadable_database_is_not_touched(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    junk = b"this is not a database\x00\xff"
    (run / "conf.db").write_bytes(junk)
    proc = run_ovsd("--rundir", str(run))
    assert proc.returncode == 1
    assert "move the file away" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "conf.db").read_bytes() == junk
    assert not (run / "ovsd.sock").exists() and not (run / "ovsd.pid").exists()


def test_restart_after_kill_9(daemons):
    run = daemons.rundir()
    d = daemons.start(run)
    d.ofctl("add-br", "brk")
    d.kill()
    assert d.sock.exists()  # left behind: the next daemon must cope
    d.stop()
    d = daemons.start(run)
    assert d.ofctl("list-br") == "brk\n"
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660
