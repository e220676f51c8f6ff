"""port_status's diagnosis as a function of the facts: each case is the facts
a real port would show, and the words and fix the user must get."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from ovsd.rpc import port_status as PS

STATS = dict.fromkeys(("rx_packets", "rx_bytes", "rx_dropped", "rx_errors", "tx_packets",
                       "tx_bytes", "tx_dropped", "tx_errors"), 0)


def facts(type_="system", opened=True, **extra) -> dict:
    f = {"port": "eth9", "type": type_, "bridge": "br0", "ofport": 3, "opened": opened,
         "error": None, "state": "up" if opened else "down", "options": {},
         "statistics": dict(STATS) if opened else {}, "drops": {}}
    f.update(extra)
    return f


def link(**kw) -> dict:
    out = {"exists": True, "ifindex": 7, "admin_up": True, "carrier": True,
           "operstate": "UP", "mtu": 1500, "kind": "veth"}
    out.update(kw)
    return out


def result(f: dict) -> dict:
    d = PS.diagnose(f)
    r = {"port": f["port"], "type": f["type"], "bridge": f["bridge"], "ofport": f["ofport"],
         "forwarding": d.forwarding, "why": d.why, "do": d.do,
         "facts": {**f, "notes": d.notes}}
    r["text"] = PS.render(r)
    return r


# -- ports that could not be opened ---------------------------------------------------------

def test_missing_interface_says_create_it_or_delete_the_port():
    f = facts(opened=False, error="system port eth9: no network interface named 'eth9' in "
                                  "this network namespace (see `ip link`); create it first",
              link={"exists": False})
    d = PS.diagnose(f)
    assert not d.forwarding
    assert "no network interface eth9" in d.why
    assert "ip link add eth9" in d.do and "ofctl del-port eth9" in d.do
    assert "by itself" in d.do


def test_error_with_a_command_in_it_gives_that_command():
    f = facts("afxdp", opened=False,
              error="afxdp port eth9: an XDP program (id 12, native mode) is already "
                    "attached to eth9 by someone else; ovsd does not replace it: detach it "
                    "with `ip link set dev eth9 xdp off` (xdpgeneric off for generic mode)")
    d = PS.diagnose(f)
    assert not d.forwarding and "could not be opened" in d.why
    assert d.do.startswith("`ip link set dev eth9 xdp off`")


def test_rejected_options_change_is_a_note_not_a_failure():
    f = facts("dummy", error="dummy port eth9: pcap path 'x' must be absolute", dummy={})
    d = PS.diagnose(f)
    assert d.forwarding
    assert "previous options" in d.notes[0] and "must be absolute" in d.notes[0]


# -- system and afxdp ------------------------------------------------------------------------

def test_up_with_carrier_forwards():
    d = PS.diagnose(facts(link=link()))
    assert d.forwarding and d.do is None and "up and has carrier" in d.why


def test_admin_down():
    d = PS.diagnose(facts(state="link-down", link=link(admin_up=False, carrier=False)))
    assert not d.forwarding
    assert "administratively down" in d.why and d.do == "`ip link set eth9 up`"


def test_veth_peer_down_in_named_namespace():
    peer = {"ifindex": 2, "netns": "ns1", "netns_name": "ns1", "name": "vin",
            "admin_up": False}
    d = PS.diagnose(facts(state="link-down", link=link(carrier=False, operstate="DOWN",
                                                       peer=peer)))
    assert not d.forwarding
    assert "peer vin in network namespace ns1 is down" in d.why
    assert d.do == "`ip netns exec ns1 ip link set vin up`"


def test_veth_peer_down_in_this_namespace():
    peer = {"ifindex": 2, "netns": None, "netns_name": None, "name": "vin",
            "admin_up": False}
    d = PS.diagnose(facts(state="link-down", link=link(carrier=False, peer=peer)))
    assert "in this namespace is down" in d.why and d.do == "`ip link set vin up`"


def test_veth_peer_in_unnamed_namespace_is_not_guessed_as_down():
    peer = {"ifindex": 2, "netns": "nsid 4", "netns_name": None, "name": None,
            "admin_up": None}
    d = PS.diagnose(facts(state="link-down", link=link(carrier=False, peer=peer)))
    assert "not named under /run/netns" in d.why and "cannot see its state" in d.why


def test_no_carrier_on_a_nic():
    d = PS.diagnose(facts(state="link-down", link=link(carrier=False, kind=None,
                                                       operstate="DOWN")))
    assert "no cable" in d.why and "ethtool eth9" in d.do


def test_interface_gone_while_port_open():
    d = PS.diagnose(facts(state="link-down", link={"exists": False}))
    assert not d.forwarding and "no longer exists" in d.why and "del-port eth9" in d.do


def test_afxdp_mode_and_refusals():
    x = {"xdp_mode": "native", "requested": "best-effort", "n_rxq": 1,
         "use_need_wakeup": True,
         "refused": [["native-with-zerocopy", "bind: Operation not supported"]]}
    f = facts("afxdp", link=link(), afxdp=x)
    r = result(f)
    assert r["forwarding"] and "XDP mode native (requested best-effort)" in r["why"]
    assert any("native-with-zerocopy refused: bind" in n for n in r["facts"]["notes"])
    assert "refused:    native-with-zerocopy: bind: Operation not supported" in r["text"]


def test_afxdp_generic_after_refusals_says_what_to_fix():
    x = {"xdp_mode": "generic", "requested": "best-effort", "n_rxq": 1,
         "use_need_wakeup": True,
         "refused": [["native-with-zerocopy", "no"], ["native", "MTU too large"]]}
    d = PS.diagnose(facts("afxdp", link=link(kind=None), afxdp=x))
    assert d.forwarding and "generic" in d.do and "native refused: MTU too large" in d.notes


def test_system_facts_in_text():
    f = facts(link=link(), system={"n_rxq": 2, "rx_ring_blocks": 64,
                                   "rx_block_size": 65536, "rx_ring_bytes": 64 * 65536,
                                   "tx_ring_frames": 1024},
              drops={"rx_ring_overrun": 5})
    r = result(f)
    lines = r["text"].splitlines()
    assert lines[0] == "eth9 (system) on bridge br0, OpenFlow port 3: forwarding"
    assert lines[1].startswith("why: ")
    assert "n_rxq=2, rx 64 blocks x 65536 bytes (4096 KiB per queue), tx 1024 frames" \
        in r["text"]
    assert "drops:      rx_ring_overrun=5" in r["text"]
    assert any("rx_ring_blocks" in n for n in r["facts"]["notes"])


def test_internal_down():
    d = PS.diagnose(facts("internal", link=link(admin_up=False, kind="tun")))
    assert not d.forwarding and d.do == "`ip link set eth9 up`"


# -- vhost-user ------------------------------------------------------------------------------

def vhost(mode="server", state="waiting", **kw) -> dict:
    v = {"mode": mode, "socket": "/run/ovsd/vhu0", "state": state,
         "connected_since": None, "connections": 0 if mode == "client" else None,
         "features": None, "feature_names": [], "last_error": None,
         "last_error_time": None, "memory_regions": 0, "queues": [],
         "socket_file": {"exists": True, "is_socket": True, "mode": "0660", "uid": 0,
                         "gid": 0, "user": "root", "group": "root"},
         "frontends": []}
    if mode == "server":
        v["configured"] = {"mode": "0660", "owner": None}
    else:
        v["attempts"] = 3
        v["connect_error"] = None
    v.update(kw)
    return v


def vfacts(v: dict, type_=None) -> dict:
    t = type_ or ("dpdkvhostuser" if v["mode"] == "server" else "dpdkvhostuserclient")
    return facts(t, state="up" if v["state"] == "ready" else "link-down", vhost=v)


def test_server_nobody_connected_says_how_to_point_qemu():
    r = result(vfacts(vhost()))
    assert not r["forwarding"]
    assert "waiting for QEMU or a DPDK application to connect to /run/ovsd/vhu0" in r["why"]
    assert "-chardev socket,id=char0,path=/run/ovsd/vhu0" in r["do"]
    assert "only root and group root may connect" in r["do"]
    assert "vhost-sock-owner" in r["do"]
    assert "NOT forwarding" in r["text"].splitlines()[0]


def test_server_frontend_without_permission():
    fe = {"pid": 42, "comm": "qemu-system-x86", "uid": 64055, "user": "libvirt-qemu",
          "can_connect": False, "blocked": "the socket is 0660 root:root and ...",
          "blocked_dir": None}
    d = PS.diagnose(vfacts(vhost(frontends=[fe])))
    assert "qemu-system-x86 (pid 42, user libvirt-qemu)" in d.why
    assert "may not connect" in d.why
    assert "options:vhost-sock-owner=libvirt-qemu" in d.do


def test_server_socket_mode_changed_behind_ovsd():
    v = vhost()
    v["socket_file"]["mode"] = "0600"
    d = PS.diagnose(vfacts(v))
    assert any("chmod 0660 /run/ovsd/vhu0" in n for n in d.notes)


def test_server_socket_removed():
    d = PS.diagnose(vfacts(vhost(socket_file={"exists": False})))
    assert "is gone" in d.why and "del-port" in d.do


def test_server_waiting_after_reset_says_why_and_when():
    v = vhost(last_error="ring 1: descriptor 9 out of range",
              last_error_time=time.time() - 5)
    d = PS.diagnose(vfacts(v))
    assert "the last connection was reset at" in d.why
    assert "ring 1: descriptor 9 out of range" in d.why


def test_features_refused():
    v = vhost(last_error="SET_FEATURES acks features that were not offered: GUEST_UFO",
              last_error_time=time.time())
    d = PS.diagnose(vfacts(v))
    assert "acked features ovsd did not offer" in d.why and "GUEST_UFO" in d.why


@pytest.mark.parametrize("code, words", [
    (errno.ENOENT, "the file does not exist"),
    (errno.ECONNREFUSED, "exists but nobody listens"),
    (errno.EACCES, "permission denied"),
    (errno.ECONNRESET, "ECONNRESET"),
])
def test_client_connect_errors(code, words):
    ce = {"errno": code, "name": errno.errorcode[code], "text": os.strerror(code),
          "time": time.time()}
    d = PS.diagnose(vfacts(vhost("client", connect_error=ce)))
    assert not d.forwarding and words in d.why
    assert d.do


def test_client_enoent_does_not_repeat_the_connect_error_as_a_reset():
    ce = {"errno": errno.ENOENT, "name": "ENOENT", "text": "x", "time": time.time()}
    v = vhost("client", connect_error=ce,
              last_error="cannot connect to /run/ovsd/vhu0: No such file or directory")
    d = PS.diagnose(vfacts(v))
    assert "reset" not in d.why and "server=on" in d.do


def test_connected_guest_driver_not_up():
    queues = [{"ring": 0, "size": 256, "enabled": False, "state": "waiting"},
              {"ring": 1, "size": 256, "enabled": False, "state": "waiting"}]
    d = PS.diagnose(vfacts(vhost(state="connected", features=1 << 32, memory_regions=1,
                                 queues=queues)))
    assert not d.forwarding
    assert "ring 0 (queue 0, ovsd to guest) waits for its first kick" in d.why
    assert "ip link set eth0 up" in d.do


def test_connected_before_features():
    d = PS.diagnose(vfacts(vhost(state="connected")))
    assert "has not finished the handshake" in d.why


def test_ready_with_an_unused_queue_pair():
    queues = [{"ring": i, "size": 256, "enabled": i < 2,
               "state": "ready" if i < 2 else "disabled"} for i in range(4)]
    r = result(vfacts(vhost(state="ready", features=1 << 32, memory_regions=1,
                            queues=queues), ))
    assert r["forwarding"] and "1 of 2 queue pairs are ready" in r["why"]
    assert any("ethtool -L eth0 combined 2" in n for n in r["facts"]["notes"])
    assert "ring 3:     size=256 state=disabled enabled=no" in r["text"]


# -- facts read from the system ---------------------------------------------------------------

def test_may_connect_by_mode_and_owner():
    import tempfile
    from pathlib import Path
    # Not under pytest's tmp_path: its base directory is 0700, which is the
    # very thing being checked.
    box = tempfile.TemporaryDirectory(dir="/tmp")
    tmp_path = Path(box.name)
    path = str(tmp_path / "sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
        os.chmod(tmp_path, 0o755)
        os.chmod(path, 0o660)
        assert PS.may_connect(path, 0, {0}) == (None, None)
        assert PS.may_connect(path, 12345, {12345})[0] is not None
        os.chown(path, 12345, 0)
        assert PS.may_connect(path, 12345, {12345}) == (None, None)
        os.chmod(path, 0o666)
        assert PS.may_connect(path, 23456, {23456}) == (None, None)
        os.chmod(tmp_path, 0o700)
        why, blocked = PS.may_connect(path, 23456, {23456})
        assert blocked == str(tmp_path) and "not searchable" in why
        info = PS.socket_file(path)
        assert info["exists"] and info["is_socket"] and info["mode"] == "0666"
    finally:
        s.close()
        box.cleanup()


def test_frontends_finds_a_process_naming_the_socket(tmp_path):
    import subprocess
    import sys
    path = str(tmp_path / "vhu-sock")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             f"socket,id=c0,path={path},reconnect=1"])
    try:
        deadline = time.monotonic() + 5
        while True:
            found = [fe for fe in PS.frontends(path) if fe["pid"] == proc.pid]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert found and found[0]["uid"] == os.getuid()
        assert PS.frontends(path + "x") == []  # a longer path is another socket
    finally:
        proc.kill()
        proc.wait()
