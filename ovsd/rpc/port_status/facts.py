"""A port's facts: from the running switch, the kernel (netlink, the socket
file, /proc) and the drop counters, as plain data."""

from __future__ import annotations

import ctypes
import errno as E
import grp
import os
import pwd
import re
import stat
import threading
from typing import TYPE_CHECKING, Any, Callable

from ovsd.rpc.port_status.diagnose import KERNEL_TYPES, NETNS_DIR, VHOST_TYPES
from ovsd.rpc.server import E_NOT_FOUND, RpcError

if TYPE_CHECKING:
    from ovsd.switch import Switch

IFF_UP = 0x1
CLONE_NEWNET = 0x40000000


def gather(switch: "Switch", port: str) -> dict:
    """Every fact ``diagnose`` and ``render`` use, as JSON-able values."""
    from ovsd.rpc import drop_stats as DS
    iface = switch.ifaces.get(port)
    if iface is None:
        raise RpcError(E_NOT_FOUND, f"no port named {port}")
    dev = iface.netdev
    f: dict[str, Any] = {
        "port": port, "type": iface.type, "bridge": iface.bridge, "ofport": iface.ofport,
        "opened": dev is not None, "error": iface.error,
        "state": "down" if dev is None else "up" if dev.link_up else "link-down",
        "options": dict(iface.options),
        "statistics": dev.stats.as_dict() if dev is not None else {},
        "drops": {r: n for r, n in sorted(DS.drop_counts(switch).get(port, {}).items())
                  if n},
    }
    if iface.type in KERNEL_TYPES or iface.type == "internal":
        f["link"] = link_facts(port)
    if dev is None:
        return f
    if iface.type == "system":
        ring = dev.rx_ring
        f["system"] = {"n_rxq": dev.n_rxq, "rx_ring_blocks": ring.block_nr,
                       "rx_block_size": ring.block_size,
                       "rx_ring_bytes": ring.block_nr * ring.block_size,
                       "tx_ring_frames": dev.tx_info()["tx_ring_frames"]}
    elif iface.type == "afxdp":
        st = dev.status()
        f["afxdp"] = {"xdp_mode": st["xdp-mode"], "requested": st["xdp-mode-requested"],
                      "n_rxq": dev.n_rxq, "use_need_wakeup": st["use-need-wakeup"] == "true",
                      "refused": [list(x) for x in dev.refused]}
    elif iface.type in VHOST_TYPES:
        f["vhost"] = vhost_facts(dev)
    elif iface.type == "dummy":
        f["dummy"] = {k: iface.options.get(k) for k in ("rx_pcap", "tx_pcap", "pcap")}
    return f


def vhost_facts(dev) -> dict:
    d = dev.details()
    v = {k: d[k] for k in ("mode", "socket", "state", "connected_since", "connections",
                           "features", "feature_names", "last_error", "last_error_time")}
    v["memory_regions"] = len(d["memory_regions"])
    v["queues"] = [{k: q[k] for k in ("ring", "size", "enabled", "state")}
                   for q in d["queues"]]
    v["socket_file"] = socket_file(d["socket"])
    if d["mode"] == "server":
        v["configured"] = {"mode": dev.options.get("vhost-sock-mode", "0660"),
                           "owner": dev.options.get("vhost-sock-owner")}
    else:
        v["attempts"] = dev.backoff.attempts
        ce = getattr(dev, "connect_error", None)
        v["connect_error"] = None if ce is None else {
            "errno": ce[0], "name": E.errorcode.get(ce[0], str(ce[0])),
            "text": os.strerror(ce[0]), "time": ce[1]}
    v["frontends"] = frontends(d["socket"]) if d["state"] == "waiting" else []
    return v


def socket_file(path: str) -> dict:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"exists": False}
    except OSError as e:
        return {"exists": None, "error": e.strerror}
    return {"exists": True, "is_socket": stat.S_ISSOCK(st.st_mode),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "gid": st.st_gid,
            "user": _user(st.st_uid), "group": _group(st.st_gid)}


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def frontends(path: str) -> list[dict]:
    """Other processes whose command line names ``path`` (QEMU's -chardev,
    a DPDK --vdev), and whether each may connect to it."""
    needle = re.compile(re.escape(path.encode()) + rb"(?=[,\0 ]|$)")
    mine = {os.getpid(), os.getppid()}
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            if not needle.search(cmdline):
                continue
            with open(f"/proc/{entry}/status") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(f"/proc/{entry}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if comm.startswith("ovsd"):
            continue  # our own PMDs inherit nothing of the path, but be sure
        uid = int(status["Uid"].split()[1])
        gids = {int(status["Gid"].split()[1])} | {int(g) for g in status.get(
            "Groups", "").split()}
        blocked, blocked_dir = may_connect(path, uid, gids)
        out.append({"pid": int(entry), "comm": comm, "uid": uid, "user": _user(uid),
                    "can_connect": blocked is None, "blocked": blocked,
                    "blocked_dir": blocked_dir})
    return out


def may_connect(path: str, uid: int, gids: set[int]) -> tuple[str | None, str | None]:
    """(None, None) when ``uid``/``gids`` may connect to the socket ``path``,
    else (why not, the directory that stops it or None)."""
    if uid == 0:
        return None, None
    parts = os.path.abspath(path).split("/")
    for i in range(1, len(parts) - 1):
        d = "/".join(parts[:i + 1]) or "/"
        try:
            st = os.stat(d)
        except OSError:
            return None, None
        if not _allowed(st, uid, gids, 0o1):
            return (f"the directory {d} ({stat.S_IMODE(st.st_mode):04o} "
                    f"{_user(st.st_uid)}:{_group(st.st_gid)}) is not searchable by it", d)
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    if not _allowed(st, uid, gids, 0o2):
        return (f"the socket is {stat.S_IMODE(st.st_mode):04o} "
                f"{_user(st.st_uid)}:{_group(st.st_gid)} and it is neither that user nor "
                "in a group allowed to write it", None)
    return None, None


def _allowed(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    if uid == st.st_uid:
        return bool(mode & (bit << 6))
    if st.st_gid in gids:
        return bool(mode & (bit << 3))
    return bool(mode & bit)


def link_facts(name: str) -> dict:
    """The kernel's view of interface ``name`` and, for a veth, of its peer."""
    try:
        import asyncio
        asyncio.get_running_loop()
    except RuntimeError:
        return _link_facts(name)
    # pyroute2 runs an asyncio loop of its own, which cannot start inside the
    # daemon's (as in linux_iface.lookup).
    return _in_thread(lambda: _link_facts(name))


def _link_facts(name: str) -> dict:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return {"exists": False}
        link = ipr.get_links(found[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        out: dict[str, Any] = {
            "exists": True, "ifindex": found[0], "admin_up": bool(link["flags"] & IFF_UP),
            "carrier": bool(link.get_attr("IFLA_CARRIER")),
            "operstate": link.get_attr("IFLA_OPERSTATE"), "mtu": link.get_attr("IFLA_MTU"),
            "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None}
        if out["kind"] == "veth":
            out["peer"] = _veth_peer(ipr, link)
    return out


def _veth_peer(ipr, link) -> dict:
    index = link.get_attr("IFLA_LINK")
    nsid = link.get_attr("IFLA_LINK_NETNSID")
    peer: dict[str, Any] = {"ifindex": index, "netns": None, "netns_name": None,
                            "name": None, "admin_up": None}
    if nsid is None:
        try:
            p = ipr.get_links(index)[0]
        except Exception:
            return peer
        peer.update(name=p.get_attr("IFLA_IFNAME"), admin_up=bool(p["flags"] & IFF_UP))
        return peer
    ns_name = _netns_name(ipr, nsid)
    peer["netns"] = ns_name if ns_name else f"nsid {nsid}"
    peer["netns_name"] = ns_name
    if ns_name:
        try:
            name, flags = _in_netns(f"{NETNS_DIR}/{ns_name}", lambda: _flags_of(index))
            peer.update(name=name, admin_up=bool(flags & IFF_UP))
        except OSError:
            pass
    return peer


def _netns_name(ipr, nsid: int) -> str | None:
    """The name under /run/netns of the namespace this one calls ``nsid``."""
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return None
    for name in names:
        try:
            fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if ipr.get_netnsid(fd=fd).get("nsid") == nsid:
                return name
        except Exception:
            pass
        finally:
            os.close(fd)
    return None


def _flags_of(index: int) -> tuple[str, int]:
    import socket
    from ovsd.netdev.afpacket.ring import if_flags
    name = socket.if_indextoname(index)
    return name, if_flags(name)


def _in_thread(fn: Callable[[], Any]) -> Any:
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _in_netns(path: str, fn: Callable[[], Any]) -> Any:
    """``fn()`` in a short-lived thread that joined the namespace at ``path``
    (setns moves only that thread; sockets it opens belong to the namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, name="port-status-netns", daemon=True)
    t.start()
    t.join(5.0)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise OSError(E.ETIMEDOUT, f"entering {path} took too long")
    return box["value"]
