"""Datapath actions: what the slow path tells the datapath to do with a packet.

An action list is a tuple of small tuples, cheap to build, hash and execute:

    (OUTPUT, port)                         send the packet as it is now
    (SET, header, ((name, value, mask),))  masked header rewrite, OVS's
                                           set(ipv4(src=...)) attributes
    (PUSH_VLAN, tpid, tci)                 new outermost tag
    (POP_VLAN,)                            remove the outermost tag
    (USERSPACE, reason)                    would go to a controller; counted

An empty tuple drops the packet.  ``format_actions`` prints a list the way
``ovs-appctl ofproto/trace`` prints its ``Datapath actions:`` line.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

OUTPUT = "output"
SET = "set"
PUSH_VLAN = "push_vlan"
POP_VLAN = "pop_vlan"
USERSPACE = "userspace"

# Attribute order within each header, as OVS prints them.
HEADER_FIELDS: dict[str, tuple[str, ...]] = {
    "eth": ("src", "dst"),
    "ipv4": ("src", "dst", "proto", "tos", "ttl", "frag"),
    "ipv6": ("src", "dst", "label", "proto", "tclass", "hlimit", "frag"),
    "tcp": ("src", "dst"),
    "udp": ("src", "dst"),
    "sctp": ("src", "dst"),
    "icmp": ("type", "code"),
    "icmpv6": ("type", "code"),
    "arp": ("sip", "tip", "op", "sha", "tha"),
    "nd": ("target", "sll", "tll"),
}

FIELD_WIDTH: dict[tuple[str, str], int] = {}
for _h, _names in HEADER_FIELDS.items():
    for _n in _names:
        FIELD_WIDTH[_h, _n] = 8
FIELD_WIDTH.update({
    ("eth", "src"): 48, ("eth", "dst"): 48,
    ("ipv4", "src"): 32, ("ipv4", "dst"): 32,
    ("ipv6", "src"): 128, ("ipv6", "dst"): 128, ("ipv6", "label"): 20,
    ("arp", "sip"): 32, ("arp", "tip"): 32, ("arp", "op"): 16,
    ("arp", "sha"): 48, ("arp", "tha"): 48,
    ("nd", "target"): 128, ("nd", "sll"): 48, ("nd", "tll"): 48,
})
for _h in ("tcp", "udp", "sctp"):
    FIELD_WIDTH[_h, "src"] = FIELD_WIDTH[_h, "dst"] = 16

_MAC_FIELDS = {("eth", "src"), ("eth", "dst"), ("arp", "sha"), ("arp", "tha"),
               ("nd", "sll"), ("nd", "tll")}
_IP4_FIELDS = {("ipv4", "src"), ("ipv4", "dst"), ("arp", "sip"), ("arp", "tip")}
_IP6_FIELDS = {("ipv6", "src"), ("ipv6", "dst"), ("nd", "target")}
_HEX_FIELDS = {("ipv4", "tos"), ("ipv6", "tclass"), ("ipv6", "label")}
_FRAG_NAMES = {0: "no", 1: "first", 3: "later"}


def output(port: int) -> tuple:
    return (OUTPUT, port)


def set_fields(header: str, fields) -> tuple:
    """A SET action; ``fields`` are (name, value, mask) in any order."""
    order = HEADER_FIELDS[header]
    return (SET, header, tuple(sorted(fields, key=lambda f: order.index(f[0]))))


def push_vlan(tpid: int, tci: int) -> tuple:
    return (PUSH_VLAN, tpid, tci)


def pop_vlan() -> tuple:
    return (POP_VLAN,)


def userspace(reason: str) -> tuple:
    return (USERSPACE, reason)


def _format_value(header: str, name: str, v: int) -> str:
    hn = (header, name)
    if hn in _MAC_FIELDS:
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    if hn in _IP4_FIELDS:
        return str(ipaddress.IPv4Address(v))
    if hn in _IP6_FIELDS:
        return str(ipaddress.IPv6Address(v))
    if hn in _HEX_FIELDS:
        return f"{v:#x}"
    if name == "frag":
        return _FRAG_NAMES.get(v, f"{v:#x}")
    return str(v)


def format_field(header: str, name: str, value: int, mask: int) -> str:
    full = (1 << FIELD_WIDTH[header, name]) - 1
    text = f"{name}={_format_value(header, name, value)}"
    if mask != full:
        text += "/" + _format_value(header, name, mask)
    return text


def format_action(action: tuple, port_namer: Callable[[int], str] = str) -> str:
    op = action[0]
    if op == OUTPUT:
        return port_namer(action[1])
    if op == SET:
        _, header, fields = action
        inner = ",".join(format_field(header, n, v, m) for n, v, m in fields)
        return f"set({header}({inner}))"
    if op == PUSH_VLAN:
        _, tpid, tci = action
        tp = "" if tpid == 0x8100 else f"tpid={tpid:#x},"
        return f"push_vlan({tp}vid={tci & 0xfff},pcp={tci >> 13})"
    if op == POP_VLAN:
        return "pop_vlan"
    if op == USERSPACE:
        return f"userspace(controller(reason={action[1]}))"
    raise ValueError(f"unknown datapath action {action!r}")


def format_actions(actions, port_namer: Callable[[int], str] = str) -> str:
    if not actions:
        return "drop"
    return ",".join(format_action(a, port_namer) for a in actions)
