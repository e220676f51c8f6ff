"""The diagnosis: (forwarding, why, do, notes) as a function of a port's facts
alone (see facts.py), so every case is testable without a switch or a
kernel.  Every diagnosis names the fact it rests on; when the facts do not
explain a state, it says so rather than guess."""

from __future__ import annotations

import errno as E
import os
import re
import time
from dataclasses import dataclass, field

NETNS_DIR = "/run/netns"
KERNEL_TYPES = ("system", "afxdp")
VHOST_TYPES = ("dpdkvhostuser", "dpdkvhostuserclient")
_BACKTICKED = re.compile(r"`([^`]+)`")


# -- the diagnosis: functions of the facts ----------------------------------------------

@dataclass
class Diagnosis:
    forwarding: bool
    why: str
    do: str | None = None
    notes: list[str] = field(default_factory=list)


def diagnose(f: dict) -> Diagnosis:
    """What the facts ``f`` (see ``gather``) say about the port."""
    if not f["opened"]:
        d = _not_opened(f)
    elif f["type"] in KERNEL_TYPES:
        d = _kernel_port(f)
    elif f["type"] in VHOST_TYPES:
        d = _vhost(f)
    elif f["type"] == "internal":
        d = _internal(f)
    elif f["type"] == "dummy":
        d = Diagnosis(True, "a dummy port: frames enter only by `ofctl inject` and what the "
                            "switch sends on it goes nowhere (or to options:tx_pcap)")
    else:
        d = Diagnosis(f["state"] == "up", f"the port is open, its link is {f['state']}")
    if f["opened"] and f.get("error"):
        # The device runs with its previous options after a rejected change.
        d.notes.insert(0, f"the last options change was rejected and the port runs with "
                          f"its previous options: {f['error']}")
    d.notes.extend(_drop_notes(f))
    return d


def _not_opened(f: dict) -> Diagnosis:
    name, error = f["port"], f.get("error") or "the port is not open"
    retry = ("ovsd opens it by itself as soon as it exists" if f["type"] in KERNEL_TYPES
             else "ovsd tries again on the next configuration change")
    remove = f"or remove the port: `ofctl del-port {name}`"
    if "no network interface named" in error or "disappeared" in error:
        why = f"there is no network interface {name} in ovsd's network namespace; the " \
              f"port's error: {error}"
        do = (f"create it (a veth: `ip link add {name} type veth peer name PEER`), or "
              f"move it back into this namespace; {retry}; {remove}")
        return Diagnosis(False, why, do)
    commands = _BACKTICKED.findall(error)
    if commands:
        do = "; ".join(f"`{c}`" for c in commands) + f", then {retry}; {remove}"
    else:
        do = f"fix what the error says; {retry} (e.g. `ofctl set Interface {name} " \
             f"options:...`); {remove}"
    return Diagnosis(False, f"the port could not be opened: {error}", do)


def _kernel_port(f: dict) -> Diagnosis:
    name, link = f["port"], f.get("link") or {}
    if not link.get("exists"):
        return Diagnosis(False, f"the interface {name} no longer exists in ovsd's network "
                                "namespace (deleted, or moved to another namespace)",
                         f"create it again or move it back; ovsd reopens the port within a "
                         f"second; or remove the port: `ofctl del-port {name}`")
    if not link.get("admin_up"):
        return Diagnosis(False, f"the interface {name} is administratively down",
                         f"`ip link set {name} up`")
    if not link.get("carrier"):
        return _no_carrier(name, link)
    d = Diagnosis(True, f"the interface {name} is up and has carrier")
    if f["type"] == "afxdp":
        x = f.get("afxdp") or {}
        d.why += f"; XDP mode {x.get('xdp_mode')} (requested {x.get('requested')})"
        for mode, reason in x.get("refused") or []:
            d.notes.append(f"{mode} refused: {reason}"
                           + ("; a veth has no zero-copy support, native is its best"
                              if mode == "native-with-zerocopy" and link.get("kind") == "veth"
                              else ""))
        if x.get("xdp_mode") == "generic" and x.get("refused"):
            d.do = ("generic mode copies every frame through the kernel stack: fix the "
                    "reason native was refused above (driver, MTU) for speed")
    return d


def _no_carrier(name: str, link: dict) -> Diagnosis:
    peer = link.get("peer")
    if link.get("kind") == "veth" and peer is not None:
        if peer.get("netns") is None:
            where = "in this namespace"
        elif peer.get("netns_name"):
            where = f"in network namespace {peer['netns_name']}"
        else:
            where = f"in another network namespace ({peer['netns']}, not named under " \
                    f"{NETNS_DIR})"
        pname = peer.get("name") or f"ifindex {peer.get('ifindex')}"
        if peer.get("admin_up") is False:
            cmd = f"ip link set {pname} up"
            ns = peer.get("netns_name")
            if peer.get("netns") is not None:
                cmd = f"ip netns exec {ns} {cmd}" if ns else f"{cmd} (in its namespace)"
            return Diagnosis(False, f"{name} is up but has no carrier: it is a veth and its "
                                    f"peer {pname} {where} is down", f"`{cmd}`")
        if peer.get("admin_up") is None:
            return Diagnosis(False, f"{name} is up but has no carrier: it is a veth and its "
                                    f"peer {pname} {where} is most likely down (ovsd cannot "
                                    "see its state from here)",
                             f"bring the peer up in its namespace (`ip link set {pname} up`)")
        return Diagnosis(False, f"{name} is up but has no carrier although its veth peer "
                                f"{pname} {where} is up (operstate "
                                f"{link.get('operstate')})",
                         f"look at `ip -d link show {name}`; deleting and re-creating the "
                         "pair resets it")
    return Diagnosis(False, f"{name} is up but has no carrier (operstate "
                            f"{link.get('operstate')}): no cable, or the other end of the "
                            "link is down",
                     "check the cable or the link partner (`ethtool " + name + "`)")


def _internal(f: dict) -> Diagnosis:
    name, link = f["port"], f.get("link") or {}
    if link.get("exists") and not link.get("admin_up"):
        return Diagnosis(False, f"the tap {name} is down in the host (internal ports are "
                                "created down, as in OVS): what the switch sends to it is "
                                "dropped and the host sends nothing", f"`ip link set {name} up`")
    return Diagnosis(True, f"the tap {name} is up: the host's stack and the bridge "
                           "exchange frames through it")


# Per ring state: what the ring waits for, in plain words.
def _ring_wait(q: dict, features_set: bool, has_memory: bool) -> str:
    guest = "ovsd to guest" if q["ring"] % 2 == 0 else "guest to ovsd"
    ring = f"ring {q['ring']} (queue {q['ring'] // 2}, {guest})"
    if q["state"] == "waiting":
        if not features_set:
            return f"{ring} waits for the frontend to set the features"
        if not has_memory:
            return f"{ring} waits for the guest memory table"
        if not q.get("size"):
            return f"{ring} waits for the frontend to configure it (size, addresses)"
        return (f"{ring} waits for its first kick: the guest's virtio-net driver has not "
                "started the queue")
    if q["state"] == "stopped":
        return f"{ring} was stopped by the frontend (guest reset or reboot, migration)"
    if q["state"] == "disabled":
        return f"{ring} is disabled by the frontend"
    return f"{ring} is {q['state']}"


def _vhost(f: dict) -> Diagnosis:
    v = f["vhost"]
    name = f["port"]
    if v["state"] == "ready":
        return _vhost_ready(f)
    if v["state"] == "connected":
        return _vhost_connected(f)
    if v["mode"] == "server":
        d = _vhost_server_waiting(name, v)
    else:
        d = _vhost_client_waiting(name, v)
    error = v.get("last_error")
    # A failed connect is the waiting itself; anything else ended a connection.
    if error and not error.startswith("cannot connect to") and error not in d.why:
        d.why += (f"; the last connection was reset {_when(v.get('last_error_time'))} "
                  f"because: {error}")
    return d


def _last_error_text(v: dict) -> str | None:
    if not v.get("last_error"):
        return None
    return f"{v['last_error']} ({_when(v.get('last_error_time'))})"


def _features_refused(error: str | None) -> bool:
    return bool(error) and ("SET_FEATURES acks" in error or "SET_PROTOCOL_FEATURES" in error)


def _vhost_server_waiting(name: str, v: dict) -> Diagnosis:
    sock = v["socket"]
    sf = v.get("socket_file") or {}
    if not sf.get("exists"):
        return Diagnosis(False, f"the socket {sock} is gone (removed by someone): no "
                                "frontend can connect",
                         f"re-create the port: `ofctl del-port {name}` then add it again "
                         "(or restart ovsd)")
    if not sf.get("is_socket"):
        return Diagnosis(False, f"{sock} is not a socket any more (something replaced it)",
                         f"remove {sock}, then `ofctl del-port {name}` and add the port again")
    cfg = v.get("configured") or {}
    if cfg.get("mode") and sf.get("mode") and int(cfg["mode"], 8) != int(sf["mode"], 8):
        # ovsd applies the options only when they change.
        d_note = (f"{sock} is mode {sf['mode']} but options:vhost-sock-mode is "
                  f"{cfg['mode']}: something changed it after ovsd set it; "
                  f"`chmod {cfg['mode']} {sock}` puts it back")
    else:
        d_note = None
    d = _vhost_server_waiting_cause(name, v, sf)
    if d_note:
        d.notes.append(d_note)
    return d


def _vhost_server_waiting_cause(name: str, v: dict, sf: dict) -> Diagnosis:
    sock = v["socket"]
    for fe in v.get("frontends") or []:
        if not fe["can_connect"]:
            return Diagnosis(
                False, f"{fe['comm']} (pid {fe['pid']}, user {fe['user']}) names {sock} but "
                       f"may not connect to it: {fe['blocked']}",
                _perm_fix(name, fe, sf))
    if _features_refused(v.get("last_error")):
        return _features_diagnosis(v)
    if v.get("frontends"):
        fe = v["frontends"][0]
        return Diagnosis(False, f"{fe['comm']} (pid {fe['pid']}) names {sock} and may "
                                "connect to it, but no connection is open",
                         "check that process's log; QEMU needs `reconnect=1` on the "
                         "chardev to come back by itself after ovsd restarts")
    why = f"no frontend is connected: waiting for QEMU or a DPDK application to connect to {sock}"
    do = (f"point QEMU at it: `-chardev socket,id=char0,path={sock},reconnect=1 "
          f"-netdev vhost-user,id=net0,chardev=char0 -device virtio-net-pci,netdev=net0` "
          f"(guest RAM shared: `-object memory-backend-file,...,share=on`), or a DPDK "
          f"application: `--vdev=net_virtio_user0,path={sock}`")
    who = _who_may_connect(sf)
    if who != "everyone":
        do += (f"; only {who} may connect (mode {sf['mode']} {sf['user']}:{sf['group']}): "
               f"for a frontend running as another user set "
               f"`ofctl set Interface {name} options:vhost-sock-owner=USER[:GROUP]`")
    return Diagnosis(False, why, do)


def _perm_fix(name: str, fe: dict, sf: dict) -> str:
    if fe.get("blocked_dir"):
        return (f"let user {fe['user']} search {fe['blocked_dir']} (`chmod o+x "
                f"{fe['blocked_dir']}`), or run the frontend as a user that may")
    return (f"`ofctl set Interface {name} options:vhost-sock-owner={fe['user']}` (or a "
            f"group of that user: USER:GROUP with options:vhost-sock-mode=0660), or run the "
            f"frontend as {sf['user']}")


def _features_diagnosis(v: dict) -> Diagnosis:
    return Diagnosis(False, f"the frontend acked features ovsd did not offer and its "
                            f"connection was reset: {_last_error_text(v)}",
                     "configure the frontend without those features (QEMU: `-device "
                     "virtio-net-pci,...,FEATURE=off`; DPDK: drop the matching devarg) "
                     "and reconnect it")


def _vhost_client_waiting(name: str, v: dict) -> Diagnosis:
    sock = v["socket"]
    ce = v.get("connect_error")
    serve = (f"start the frontend as the server on that path: QEMU `-chardev "
             f"socket,id=char0,path={sock},server=on`, testpmd `--vdev=net_virtio_user0,"
             f"path={sock},server=1`; or point the port elsewhere: "
             f"`ofctl set Interface {name} options:vhost-server-path=PATH`")
    tries = f" ({v['attempts']} attempts since the last connection)" if v.get("attempts") \
        else ""
    if _features_refused(v.get("last_error")):
        return _features_diagnosis(v)
    if ce is None:
        if v.get("connections"):
            return Diagnosis(False, f"the connection to {sock} ended; ovsd is about to "
                                    "connect again", None)
        return Diagnosis(False, f"ovsd has not tried to connect to {sock} yet", None)
    code = ce["errno"]
    if code == E.ENOENT:
        return Diagnosis(False, f"nothing listens at {sock}: the file does not exist (the "
                                f"frontend is not started, or listens on another path); ovsd "
                                f"keeps trying{tries}", serve)
    if code == E.ECONNREFUSED:
        return Diagnosis(False, f"{sock} exists but nobody listens on it (a frontend that "
                                f"exited left it behind); ovsd keeps trying{tries}",
                         "restart the frontend as the server on that path (it replaces the "
                         f"stale socket); or point the port elsewhere: `ofctl set Interface "
                         f"{name} options:vhost-server-path=PATH`")
    if code in (E.EACCES, E.EPERM):
        sf = v.get("socket_file") or {}
        owner = f" ({sf['mode']} {sf['user']}:{sf['group']})" if sf.get("exists") else ""
        return Diagnosis(False, f"permission denied connecting to {sock}{owner}: ovsd "
                                f"(uid {os.getuid()}) may not write the socket or search a "
                                f"directory above it",
                         f"let ovsd's user write the socket (`chmod g+w {sock}` with a "
                         "shared group, or the frontend's own socket permission option)")
    if code == E.ENOTSOCK:
        return Diagnosis(False, f"{sock} is not a socket", serve)
    return Diagnosis(False, f"connecting to {sock} fails: {ce['name']} "
                            f"({ce['text']}); ovsd keeps trying{tries}", serve)


def _vhost_connected(f: dict) -> Diagnosis:
    v = f["vhost"]
    queues = v.get("queues") or []
    waits = [_ring_wait(q, v["features"] is not None, bool(v.get("memory_regions")))
             for q in queues if q["state"] != "ready"]
    if v["features"] is None or not queues:
        why = ("a frontend is connected but has not finished the handshake (features, "
               "memory table, rings)")
        if waits:
            why += ": " + "; ".join(waits[:2])
        return Diagnosis(False, why, "wait a moment; if it stays so, the guest's "
                                     "virtio-net driver is not loaded or the frontend is "
                                     "stuck: look at its log")
    q0 = [w for w in waits if "(queue 0," in w]
    why = "connected, but no queue pair is ready: " + "; ".join((q0 or waits)[:2])
    disabled = any(q["state"] == "disabled" for q in queues)
    unkicked = any(q["state"] == "waiting" and q.get("size") for q in queues)
    if unkicked or disabled:
        do = ("in the guest, bring the interface up (`ip link set eth0 up`) and check that "
              "virtio_net is loaded (`dmesg | grep virtio`)")
    else:
        do = "the guest is resetting the device: wait for it to finish (reboot, migration)"
    return Diagnosis(False, why, do)


def _vhost_ready(f: dict) -> Diagnosis:
    v = f["vhost"]
    queues = v.get("queues") or []
    pairs: dict[int, list[str]] = {}
    for q in queues:
        pairs.setdefault(q["ring"] // 2, []).append(q["state"])
    ready = [p for p, s in pairs.items() if len(s) == 2 and all(x == "ready" for x in s)]
    d = Diagnosis(True, f"the frontend is connected and {len(ready)} of {len(pairs)} "
                        "queue pairs are ready")
    if len(ready) < len(pairs):
        d.notes.append("the guest uses fewer queues than it configured: `ethtool -L eth0 "
                       f"combined {len(pairs)}` in the guest uses them all")
    return d


_DROP_HINTS = {
    "rx_ring_overrun": "the receive ring overflowed: the PMD fell behind; for a system "
                       "port raise options:rx_ring_blocks, or add queues (options:n_rxq) "
                       "and PMD cores",
    "guest_ring_full": "the guest did not post receive buffers fast enough (not reading "
                       "its ring, or its interface is down)",
    "tx_queue_full": "the transmit ring was full: the interface sends slower than the "
                     "switch forwards",
    "mtu_exceeded": "frames longer than the port's MTU were dropped: raise the MTU "
                    "(`ip link set IF mtu N`) or the sender's",
    "vhost_descriptor_error": "the guest broke its ring and the connection was reset",
    "output_port_down": "frames were sent to the port while it could not send",
}


def _drop_notes(f: dict) -> list[str]:
    drops = f.get("drops") or {}
    return [f"{n} dropped as {r}: {_DROP_HINTS[r]}" for r, n in drops.items()
            if n and r in _DROP_HINTS]


def _who_may_connect(sf: dict) -> str:
    mode = int(sf["mode"], 8)
    if mode & 0o002:
        return "everyone"
    who = ["root"]
    if mode & 0o200 and sf["user"] != "root":
        who.append(f"user {sf['user']}")
    if mode & 0o020:
        who.append(f"group {sf['group']}")
    return " and ".join(who)


def _when(ts: float | None) -> str:
    if ts is None:
        return "time unknown"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"at {stamp}, {max(0.0, time.time() - ts):.0f} s ago"


# -- the text ----------------------------------------------------------------------------
