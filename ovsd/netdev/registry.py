"""Port types by name, as Interface.type spells them."""

from __future__ import annotations

from typing import Callable

from ovsd.netdev.base import Netdev, NetdevError


def _dummy(name: str, options: dict[str, str]) -> Netdev:
    from ovsd.netdev.dummy.device import DummyNetdev
    return DummyNetdev(name, options)


def _internal(name: str, options: dict[str, str]) -> Netdev:
    from ovsd.netdev.internal.device import InternalNetdev
    return InternalNetdev(name, options)


def _system(name: str, options: dict[str, str]) -> Netdev:
    from ovsd.netdev.afpacket.device import SystemNetdev
    return SystemNetdev(name, options)


def _vhost_server(name: str, options: dict[str, str]) -> Netdev:
    from ovsd.netdev.vhost_user.device import VhostUserNetdev
    return VhostUserNetdev(name, options, client=False)


def _vhost_client(name: str, options: dict[str, str]) -> Netdev:
    from ovsd.netdev.vhost_user.device import VhostUserNetdev
    return VhostUserNetdev(name, options, client=True)


def _afxdp(name: str, options: dict[str, str]) -> Netdev:
    from ovsd.netdev.afxdp.device import AfxdpNetdev
    return AfxdpNetdev(name, options)


def set_run_dir(path: str) -> None:
    """ovsd's rundir: where dpdkvhostuser ports create their sockets, and where
    afxdp ports record the XDP programs they attach (and a start after a crash
    detaches what is recorded there)."""
    from pathlib import Path

    from ovsd.netdev.afxdp import leftovers
    from ovsd.netdev.vhost_user import device
    device.SOCKET_DIR = path
    leftovers.STATE_DIR = Path(path) / "afxdp"
    leftovers.remove_all()


TYPES: dict[str, Callable[[str, dict[str, str]], Netdev]] = {
    "afxdp": _afxdp,
    "dummy": _dummy,
    "dpdkvhostuser": _vhost_server,
    "dpdkvhostuserclient": _vhost_client,
    "internal": _internal,
    "system": _system,
}

# Types OVS knows that this ovsd cannot open: a clear error, not "unknown".
NOT_AVAILABLE: dict[str, str] = {}


def iface_types() -> list[str]:
    return sorted(TYPES)


def open_netdev(type_: str, name: str, options: dict[str, str]) -> Netdev:
    """A new netdev of Interface type ``type_`` ("" means "system", as in OVS)."""
    kind = type_ or "system"
    factory = TYPES.get(kind)
    if factory is None:
        if kind in NOT_AVAILABLE:
            raise NetdevError(f"{NOT_AVAILABLE[kind]} (type={kind}) are not "
                              f"available in this ovsd yet; available types: "
                              f"{', '.join(iface_types())}")
        raise NetdevError(f"unknown interface type {kind!r}; available types: "
                          f"{', '.join(iface_types())}")
    return factory(name, options)
