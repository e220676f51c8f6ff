"""The real ovs-vsctl and the OVS Python IDL configure ovsd over OVSDB
(RUNDIR/db.sock), and what they do is what ofctl sees, and the other way
round.  ovs-vsctl runs without --no-wait: it returns only once ovsd has
applied the change and advanced cur_cfg."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import frames, udp_frame

VSCTL = shutil.which("ovs-vsctl") or "/usr/bin/ovs-vsctl"

# ovs-vsctl knows OVS's whole schema; ovsd serves the part it implements, and
# the OVS IDL warns about each table or column it does not find.
MISSING_WARNING = re.compile(r"^\S+\|\d+\|ovsdb_idl\|WARN\|.* lacks .* \(database needs "
                             r"upgrade\?\)$")


def db_sock(d):
    return d.rundir / "db.sock"


def wait_db(d, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(db_sock(d)))
                return
            except (FileNotFoundError, ConnectionRefusedError):
                pass
        assert time.monotonic() < deadline, "ovsd does not serve db.sock"
        time.sleep(0.02)


def vsctl_run(d, *args):
    return subprocess.run([VSCTL, f"--db=unix:{db_sock(d)}", "--timeout=30", *args],
                          capture_output=True, text=True, timeout=60)


def vsctl(d, *args) -> str:
    proc = vsctl_run(d, *args)
    other = [ln for ln in proc.stderr.splitlines() if not MISSING_WARNING.match(ln)]
    assert proc.returncode == 0 and not other, \
        f"ovs-vsctl {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def d(daemon):
    wait_db(daemon)
    return daemon


class Raw:
    """A bare OVSDB client on a socket, for what ovs-vsctl never sends."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(str(path))
        self.buf = b""
        self.dec = json.JSONDecoder()
        self.n = 0

    def send(self, data: bytes):
        self.sock.sendall(data)

    def recv(self):
        """The next message, or None at EOF."""
        while True:
            text = self.buf.decode(errors="replace").lstrip()
            if text:
                try:
                    value, end = self.dec.raw_decode(text)
                    self.buf = text[end:].encode()
                    return value
                except ValueError:
                    pass
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.buf += data

    def call(self, method, *params):
        self.n += 1
        self.send(json.dumps({"method": method, "params": list(params), "id": self.n})
                  .encode())
        while True:
            msg = self.recv()
            assert msg is not None, "connection closed"
            if msg.get("id") == self.n:
                return msg

    def close(self):
        self.sock.close()


def ofctl_lines(d, *args):
    return d.ofctl(*args).split()


def test_bridges(d):
    vsctl(d, "add-br", "br0")
    vsctl(d, "add-br", "br1")
    assert vsctl(d, "list-br").split() == ["br0", "br1"]
    assert ofctl_lines(d, "list-br") == ["br0", "br1"]
    assert "LOCAL(br0)" in d.ofctl("show", "br0")
    assert vsctl_run(d, "br-exists", "br0").returncode == 0
    assert vsctl_run(d, "br-exists", "nope").returncode == 2
    assert vsctl_run(d, "add-br", "br0").returncode != 0
    vsctl(d, "--may-exist", "add-br", "br0")
    vsctl(d, "del-br", "br1")
    vsctl(d, "--if-exists", "del-br", "br1")
    assert vsctl_run(d, "del-br", "br1").returncode != 0
    assert ofctl_lines(d, "list-br") == ["br0"]
    # ovsd wrote cur_cfg back for every change, or ovs-vsctl would have hung.
    cur = int(vsctl(d, "get", "Open_vSwitch", ".", "cur_cfg"))
    assert cur == int(vsctl(d, "get", "Open_vSwitch", ".", "next_cfg")) and cur >= 3


def test_ports_forward(d):
    vsctl(d, "add-br", "br0")
    pcaps = {}
    for n, name in enumerate(["p1", "p2"], 1):
        pcaps[name] = d.rundir / f"{name}.pcap"
        vsctl(d, "add-port", "br0", name, "--", "set", "Interface", name, "type=dummy",
              f"ofport_request={n}", f"options:tx_pcap={pcaps[name]}")
    vsctl(d, "--may-exist", "add-port", "br0", "p1")
    assert vsctl(d, "list-ports", "br0").split() == ["p1", "p2"]
    assert ofctl_lines(d, "list-ports", "br0") == ["p1", "p2"]
    show = d.ofctl("show", "br0")
    assert " 1(p1):" in show and " 2(p2):" in show
    assert vsctl(d, "get", "Interface", "p1", "ofport").strip() == "1"
    assert vsctl(d, "get", "Interface", "p2", "type").strip() == "dummy"
    shown = vsctl(d, "show")
    assert 'Port p1' in shown and 'type: dummy' in shown and 'Bridge br0' in shown
    d.ofctl("inject", "br0", "p1", udp_frame())
    assert len(frames(pcaps["p2"])) == 1
    vsctl(d, "del-port", "br0", "p2")
    vsctl(d, "--if-exists", "del-port", "br0", "p2")
    assert vsctl_run(d, "del-port", "br0", "p2").returncode != 0
    assert ofctl_lines(d, "list-ports", "br0") == ["p1"]
    assert " 2(p2):" not in d.ofctl("show", "br0")


def test_generic_verbs(d):
    vsctl(d, "add-br", "br0")
    vsctl(d, "add-port", "br0", "p1", "--", "set", "Interface", "p1", "type=dummy")
    vsctl(d, "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x1")
    assert d.ofctl("get", "Open_vSwitch", ".", "other_config:pmd-cpu-mask").strip() in (
        '"0x1"', "0x1")
    vsctl(d, "set", "Interface", "p1", "options:color=blue", "external_ids:k=v")
    assert d.ofctl("get", "Interface", "p1", "options:color").strip() in ('"blue"', "blue")
    vsctl(d, "set", "Port", "p1", "tag=10")
    assert d.ofctl("get", "Port", "p1", "tag").strip() == "10"
    vsctl(d, "set", "Bridge", "br0", "fail_mode=secure", "external_ids:x=y")
    assert vsctl(d, "get", "Bridge", "br0", "fail_mode").strip() == "secure"
    assert d.ofctl("get", "Bridge", "br0", "fail_mode").strip() == "secure"
    listed = vsctl(d, "list", "Interface", "p1")
    assert re.search(r"^name\s+: p1$", listed, re.M)
    assert re.search(r"^ofport\s+: 1$", listed, re.M)
    assert re.search(r'^options\s+: \{color=blue\}$', listed, re.M)
    assert vsctl(d, "--bare", "--columns=name", "find", "Interface",
                 "type=dummy").split() == ["p1"]
    assert vsctl(d, "--bare", "--columns=name", "find", "Port", "tag=10").split() == ["p1"]
    assert "br0" in vsctl(d, "list", "Bridge")
    assert "pmd-cpu-mask" in vsctl(d, "list", "Open_vSwitch")
    assert vsctl(d, "get", "Open_vSwitch", ".", "iface_types").strip().startswith("[")
    assert "dummy" in vsctl(d, "get", "Open_vSwitch", ".", "iface_types")
    # A value outside the schema is refused by ovs-vsctl or ovsd; nothing changes.
    assert vsctl_run(d, "set", "Interface", "p1", "ofport_request=0").returncode != 0
    assert vsctl(d, "get", "Interface", "p1", "ofport_request").strip() == "[]"


def test_ofctl_changes_appear_in_ovsdb(d):
    d.ofctl("add-br", "brx")
    d.ofctl("add-port", "brx", "q1", "type=dummy")
    assert vsctl(d, "list-br").split() == ["brx"]
    assert vsctl(d, "list-ports", "brx").split() == ["q1"]
    assert vsctl(d, "get", "Interface", "q1", "type").strip() == "dummy"


IDL_SCRIPT = r"""
import sys, time, json
import ovs.db.idl, ovs.poller
helper = ovs.db.idl.SchemaHelper(location=sys.argv[2])
helper.register_table("Interface")
idl = ovs.db.idl.Idl(sys.argv[1], helper)
seen = {}
deadline = time.time() + 40
print("ready", flush=True)
while time.time() < deadline:
    idl.run()
    now = {r.name: list(r.ofport) for r in idl.tables["Interface"].rows.values()}
    if now != seen:
        seen = now
        print(json.dumps(now), flush=True)
        if now.get("m1") == [7]:
            break
    p = ovs.poller.Poller(); idl.wait(p); p.timer_wait(100); p.block()
idl.close()
"""


def test_python_idl_sees_rows_and_ofport(d):
    from ovsd.db.schema import DEFAULT_SCHEMA_PATH
    proc = subprocess.Popen([sys.executable, "-c", IDL_SCRIPT, f"unix:{db_sock(d)}", str(DEFAULT_SCHEMA_PATH)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        d.ofctl("add-br", "br0")
        vsctl(d, "add-port", "br0", "m1", "--", "set", "Interface", "m1", "type=dummy",
              "ofport_request=7")
        out, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    states = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert states and states[-1].get("m1") == [7], (out, err)
    assert states[-1].get("br0") == [65534]


def test_two_clients_and_a_client_gone_mid_transaction(d):
    watcher = Raw(db_sock(d))
    init = watcher.call("monitor_cond", "Open_vSwitch", "w",
                        {"Bridge": [{"columns": ["name"]}]})
    assert init["result"] == {}
    # A client sends half a transaction and disconnects: nothing happens.
    half = Raw(db_sock(d))
    half.send(b'{"method":"transact","params":["Open_vSwitch",{"op":"insert",'
              b'"table":"Bridge","row":{"name":"ghost"}')
    half.close()
    vsctl(d, "add-br", "br0")
    note = watcher.recv()
    assert note["method"] == "update2"
    assert [e["insert"]["name"] for e in note["params"][1]["Bridge"].values()] == ["br0"]
    assert vsctl(d, "list-br").split() == ["br0"]
    watcher.close()


def test_schema_violations_get_rfc_errors_and_change_nothing(d):
    vsctl(d, "add-br", "br0")
    c = Raw(db_sock(d))
    before = vsctl(d, "list", "Bridge")
    res = c.call("transact", "Open_vSwitch",
                 {"op": "update", "table": "Bridge", "where": [["name", "==", "br0"]],
                  "row": {"external_ids": ["map", [["a", "b"]]]}},
                 {"op": "update", "table": "Bridge", "where": [],
                  "row": {"fail_mode": "sometimes"}})["result"]
    assert res[0] == {"count": 1}
    assert res[1]["error"] == "constraint violation"
    res = c.call("transact", "Open_vSwitch",
                 {"op": "mutate", "table": "Bridge", "where": [],
                  "mutations": [["ports", "insert",
                                 ["uuid", "11111111-2222-3333-4444-555555555555"]]]})
    assert res["result"][1]["error"] == "referential integrity violation"
    res = c.call("transact", "Open_vSwitch", {"op": "select", "table": "Mirror",
                                              "where": []})
    assert res["result"][0]["error"] == "syntax error"
    res = c.call("transact", "Open_vSwitch", {"op": "insert", "table": "Bridge",
                                              "row": {"name": 5}})
    assert res["result"][0]["error"] == "syntax error"
    res = c.call("transact", "Open_vSwitch", {"op": "insert", "table": "Bridge",
                                              "row": {"colour": "red"}})
    assert res["result"][0]["error"] == "unknown column"
    assert c.call("no_such_method")["error"] == "unknown method"
    assert vsctl(d, "list", "Bridge") == before
    assert ofctl_lines(d, "list-br") == ["br0"]
    c.close()


def test_bad_input_drops_only_that_client(d):
    good = Raw(db_sock(d))
    assert good.call("echo", "hi")["result"] == ["hi"]
    for junk in (b'{"method": "echo", "params": [], "id": 1]', b"}}}", b"hello",
                 b'{"method":"echo","params":[],"id":1,"x":"\xff"}', b"[1, 2]",
                 b"[" * 10000):
        bad = Raw(db_sock(d))
        bad.send(junk)
        msg = bad.recv()
        assert msg is None or msg["error"]["error"] == "syntax error"
        assert bad.recv() is None  # closed
        bad.close()
    # A request over the size limit (64 MiB) is refused as it arrives.
    big = Raw(db_sock(d))
    try:
        big.send(b'{"method":"echo","params":["' + b"x" * (65 << 20) + b'"],"id":1}')
    except (BrokenPipeError, ConnectionResetError):
        pass
    big.close()
    assert good.call("echo", "still here")["result"] == ["still here"]
    vsctl(d, "add-br", "br0")
    good.close()
    assert d.proc.poll() is None
    assert "dropping the connection" in (d.rundir / "ovsd.log").read_text()


def test_server_database_and_echo_from_the_server_side(d):
    c = Raw(db_sock(d))
    assert c.call("list_dbs")["result"] == ["Open_vSwitch", "_Server"]
    schema = c.call("get_schema", "Open_vSwitch")["result"]
    real = json.load(open("/usr/share/openvswitch/vswitch.ovsschema"))
    assert schema["version"] == real["version"]
    for t, table in schema["tables"].items():
        for col, spec in table["columns"].items():
            assert col in real["tables"][t]["columns"], (t, col)
    c.close()


@pytest.mark.parametrize("from_config", [False, True], ids=["option", "config-file"])
def test_ptcp_on_loopback(daemons, tmp_path, from_config):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if from_config:
        cfg = tmp_path / "tcp.toml"
        cfg.write_text(f"[ovsd]\novsdb_tcp = {port}\n")
        d = daemons.start(None, "--config", str(cfg))
    else:
        d = daemons.start(None, "--ovsdb-tcp", str(port))
    wait_db(d)
    proc = subprocess.run([VSCTL, f"--db=tcp:127.0.0.1:{port}", "--timeout=30",
                           "add-br", "brt"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert vsctl(d, "list-br").split() == ["brt"]
    assert ofctl_lines(d, "list-br") == ["brt"]
