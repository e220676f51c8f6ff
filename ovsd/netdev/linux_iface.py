"""An existing Linux interface as a port sees it: found by name through
netlink, then followed by ifindex (a rename keeps the port; a deleted
interface shows as down, with the reason in status).

Shared by the port types that sit on a kernel interface (``system``,
``afxdp``); they differ only in how frames move.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from dataclasses import dataclass

from ovsd.netdev.afpacket.ring import (ARPHRD_ETHER, IFF_RUNNING, IFF_UP, IFNAMSIZ,
                                       if_driver, if_flags, if_hwaddr, if_mtu)
from ovsd.netdev.base import NetdevError


@dataclass(frozen=True)
class Link:
    ifindex: int
    mac: bytes
    mtu: int


def lookup(name: str, kind: str) -> Link:
    """The interface's facts, or a NetdevError saying what is wrong; ``kind``
    is the port type, for the messages."""
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name:
        raise NetdevError(f"{kind} port {name!r}: not a valid interface name "
                          f"(1 to {IFNAMSIZ - 1} characters, no '/' or spaces)")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _lookup_netlink(name, kind)
    # pyroute2 runs an asyncio loop of its own, which cannot start inside the
    # daemon's: ask from a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_lookup_netlink, name, kind).result()


def _lookup_netlink(name: str, kind: str) -> Link:
    from pyroute2 import IPRoute  # slow to import; only the control process needs it

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise NetdevError(
                f"{kind} port {name}: no network interface named {name!r} in this network "
                f"namespace (see `ip link`); create it first, or use type=internal for a "
                f"port whose interface the switch creates")
        link = ipr.get_links(found[0])[0]
    if link["ifi_type"] != ARPHRD_ETHER:
        raise NetdevError(f"{kind} port {name}: {name} is not an Ethernet interface "
                          f"(link type {link['ifi_type']}); {kind} ports carry Ethernet "
                          "frames")
    mac = bytes.fromhex((link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00")
                        .replace(":", ""))
    return Link(found[0], mac, link.get_attr("IFLA_MTU") or 1500)


class KernelIface:
    """Link state and address of the interface ``ifindex``, read live."""

    ifindex: int
    name: str
    _mac: bytes | None

    def _find(self, kind: str) -> None:
        """Look the interface up by name (NetdevError when it cannot be a port)."""
        link = lookup(self.name, kind)
        self.ifindex, self._mac, self.mtu = link.ifindex, link.mac, link.mtu
        self._driver = if_driver(self.name)

    def current_name(self) -> str | None:
        """The interface's name now, None once it no longer exists."""
        try:
            return socket.if_indextoname(self.ifindex)
        except OSError:
            return None

    @property
    def link_up(self) -> bool:
        name = self.current_name()
        if name is None:
            return False
        try:
            flags = if_flags(name)
        except OSError:
            return False
        return flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING

    @property
    def mac(self) -> bytes | None:
        name = self.current_name()
        if name is not None:
            try:
                self._mac = if_hwaddr(name)[1]
            except OSError:
                pass
        return self._mac

    def link_status(self) -> dict[str, str]:
        """ifindex and MTU, or why the interface is missing."""
        out = {"ifindex": str(self.ifindex)}
        name = self.current_name()
        if name is None:
            out["error"] = f"interface {self.name} (ifindex {self.ifindex}) no longer exists"
        else:
            try:
                out["mtu"] = str(if_mtu(name))
            except OSError:
                pass
        return out
