"""Whole flows in ovs-ofctl syntax: flow_mods, dump-flows lines, trace flows.

:func:`parse_flow` reads what ``ovs-ofctl [-O V] add-flow/mod-flows/
del-flows/dump-flows`` accept and returns a :class:`FlowMod` holding what a
switch would store or use (the match and actions after their trip through
the negotiated OpenFlow version).  :func:`format_flow_stats` prints one
``dump-flows`` line; :func:`parse_trace_flow` reads the flow argument of
``ofproto/trace``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field as dc_field
from typing import Any, Iterable

from ovsd.ofproto import action_syntax as AS
from ovsd.ofproto import fields as F
from ovsd.ofproto import values as V
from ovsd.ofproto.actions import Action, format_actions
from ovsd.ofproto.fields import FlowSyntaxError, PortNamer, PortResolver
from ovsd.ofproto.match import PROTOCOLS, Match, MatchBuilder, format_match, split_key_values
from ovsd.ofproto.match_wire import dump_match, wire_match
from ovsd.ofproto.protocols import choose_protocol, version_name, version_number
from ovsd.packet import key as K

__all__ = ["FlowMod", "FlowSyntaxError", "parse_flow", "format_flow_stats",
           "parse_trace_flow", "FLAG_NAMES", "DEFAULT_PRIORITY"]

DEFAULT_PRIORITY = 32768
# Flow flags in the order OVS prints them.
FLAG_NAMES = ("send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts",
              "no_byte_counts")
# The OpenFlow version from which each flag survives a flow_mod.
_FLAG_MIN_VERSION = {"send_flow_rem": 1, "check_overlap": 1, "reset_counts": 3,
                     "no_packet_counts": 4, "no_byte_counts": 4}
_FLAG_USABLE = {"reset_counts": F.P_OF12_UP, "no_packet_counts": F.P_OF13_UP,
                "no_byte_counts": F.P_OF13_UP}
COMMANDS = ("add", "modify", "modify_strict", "delete", "delete_strict", "dump")
_RESERVED_TABLE = 254  # OVS keeps table 254 for itself


@dataclass(frozen=True)
class FlowMod:
    """A parsed flow: what ``add-flow``/``mod-flows``/``del-flows``/
    ``dump-flows`` asks the switch.

    ``table_id`` is 255 when no table was given (table 0 for ``add``, all
    tables otherwise).  ``match`` and ``actions`` are as the switch stores
    them.  ``cookie``/``cookie_mask`` select rules (modify/delete/dump);
    ``new_cookie`` is the cookie to give the rule (add/modify; None: keep).
    ``out_port`` (``fields.OFPP_NONE`` = any) filters delete/dump."""

    command: str
    version: str
    protocol: int
    table_id: int = 255
    priority: int = DEFAULT_PRIORITY
    match: Match = Match(0, 0)
    actions: tuple[Action, ...] | None = None
    cookie: int = 0
    cookie_mask: int = 0
    new_cookie: int | None = None
    idle_timeout: int = 0
    hard_timeout: int = 0
    importance: int = 0
    flags: frozenset[str] = frozenset()
    out_port: int = V.OFPP_NONE
    typed_match: Match = dc_field(default=Match(0, 0), compare=False)

    @property
    def table(self) -> int:
        """The table an ``add`` goes to (0 when none was given)."""
        return 0 if self.table_id == 255 else self.table_id


def _extract_actions(text: str) -> tuple[str, str | None]:
    """OVS's ofp_extract_actions: everything after the first "action...="."""
    pos = text.find("action")
    if pos < 0:
        return text, None
    eq = text.find("=", pos + 1)
    return text[:pos], (text[eq + 1:] if eq >= 0 else None)


def _u64(text: str) -> int:
    if not text:
        raise FlowSyntaxError("missing required numeric argument")
    value = V.parse_uint(text, 64)
    if value is None:
        raise FlowSyntaxError(f"invalid numeric format {text}")
    return value


@dataclass
class _Keywords:
    """The non-match keywords of a flow, as ovs-ofctl accepts them per command."""

    command: str
    port_resolver: PortResolver | None
    table_id: int = 255
    priority: int = DEFAULT_PRIORITY
    cookie: int = 0
    cookie_mask: int = 0
    new_cookie: int | None = None
    idle_timeout: int = 0
    hard_timeout: int = 0
    importance: int = 0
    flags: set[str] = dc_field(default_factory=set)
    out_port: int = V.OFPP_NONE
    usable: int = F.P_ANY

    @property
    def has_actions(self) -> bool:
        return self.command in ("add", "modify", "modify_strict")

    def flag(self, key: str) -> bool:
        """Take a flag keyword (send_flow_rem, ...) if this command has flags."""
        if not self.has_actions or key not in FLAG_NAMES:
            return False
        self.flags.add(key)
        self.usable &= _FLAG_USABLE.get(key, F.P_ANY)
        return True

    def keyword(self, key: str, value: str) -> None:
        """Any other ``key=value``; unknown keys raise like ovs-ofctl."""
        command = self.command
        if not value:
            raise FlowSyntaxError(f"field {key} missing value")
        if key == "table":
            table = V.parse_table(value)
            if table is None:
                raise FlowSyntaxError(f'unknown table "{value}" (expected 0 to 255)')
            self.table_id = table
        elif key == "out_port" and command in ("delete", "delete_strict", "dump"):
            port = V.parse_port(value, self.port_resolver)
            if port is None:
                raise FlowSyntaxError(f"{value} is not a valid OpenFlow port")
            self.out_port = port
        elif key == "priority" and command not in ("delete", "dump"):
            self.priority = V.parse_small_int(value, "priority", 16)
        elif key in ("idle_timeout", "hard_timeout") and self.has_actions:
            setattr(self, key, V.parse_small_int(value, key, 16))
        elif key == "importance" and command == "add":
            self.importance = V.parse_small_int(value, "importance", 16)
        elif key == "cookie":
            self._cookie(value)
        elif key not in ("duration", "n_packets", "n_bytes", "idle_age", "hard_age"):
            # (those are ignored so that dump-flows output can be fed back in)
            raise FlowSyntaxError(f"unknown keyword {key}")

    def _cookie(self, value: str) -> None:
        if "/" in value:
            if self.command == "add":
                raise FlowSyntaxError("flow additions cannot use a cookie mask")
            cookie, _, mask = value.partition("/")
            self.cookie, self.cookie_mask = _u64(cookie), _u64(mask)
            if self.cookie_mask:
                self.usable &= F.P_NXM_OF11_UP
        elif self.has_actions:
            self.new_cookie = _u64(value)
        else:
            raise FlowSyntaxError(f"cannot set cookie (to match on a cookie, "
                                  f"specify a mask, e.g. cookie={value}/-1)")


def parse_flow(text: str, command: str = "add", version: str | int | None = "OpenFlow10",
               port_resolver: PortResolver | None = None) -> FlowMod:
    """Parse a flow the way ``ovs-ofctl [-O version]`` does for ``command``
    (add, modify, modify_strict, delete, delete_strict, dump) and return
    what the switch would get.  Raises FlowSyntaxError with OVS's message."""
    if command not in COMMANDS:
        raise FlowSyntaxError(f"unknown flow command {command!r} (expected one of "
                              f"{', '.join(COMMANDS)})")
    vnum = version_number(version)
    kw = _Keywords(command, port_resolver)
    act_text = None
    if kw.has_actions:
        text, act_text = _extract_actions(text)
        if act_text is None:
            raise FlowSyntaxError("must specify an action (expected actions=... at the "
                                  "end of the flow)")
    mb = MatchBuilder()
    for key, value in split_key_values(text):
        if key in PROTOCOLS or key == "eth":
            mb.add(key, value)
        elif kw.flag(key) or key in ("no_readonly_table", "allow_hidden_fields"):
            pass
        elif F.find(key) is not None or "[" in key:
            mb.add(key, value, port_resolver)
        else:
            kw.keyword(key, value)
    typed = mb.finish()
    usable = kw.usable & mb.usable
    if kw.new_cookie is None and kw.has_actions and not kw.cookie_mask:
        kw.new_cookie = 0  # an add (or a modify that adds) without a cookie gets 0

    actions = None
    if kw.has_actions:
        acts, act_usable = AS.parse_ofctl_actions(act_text, port_resolver)
        checked, check_usable = AS.check_actions(acts, typed, kw.table_id)
        usable &= act_usable & check_usable
        if not usable:
            raise FlowSyntaxError("actions are invalid with specified match "
                                  "(OFPBAC_MATCH_INCONSISTENT): no OpenFlow flow format "
                                  "can express this match together with these actions")
    protocol = choose_protocol(vnum, usable)
    stored = wire_match(typed, protocol)
    flags = kw.flags
    if kw.has_actions:
        if kw.table_id == _RESERVED_TABLE:
            raise FlowSyntaxError(f"table {kw.table_id} cannot hold flows (the switch "
                                  "answers OFPBRC_EPERM; use tables 0 to 253)")
        switch_table = 0 if kw.table_id == 255 and command == "add" else kw.table_id
        actions = AS.store_actions(checked, protocol, stored, switch_table)
        flags = {f for f in flags if vnum >= _FLAG_MIN_VERSION[f]}
        if command == "add" and vnum <= 2:
            flags.add("reset_counts")  # OpenFlow 1.0/1.1 adds always reset counters
    return FlowMod(command=command, version=version_name(vnum), protocol=protocol,
                   table_id=kw.table_id, priority=kw.priority, match=stored,
                   actions=actions, cookie=kw.cookie, cookie_mask=kw.cookie_mask,
                   new_cookie=kw.new_cookie, idle_timeout=kw.idle_timeout,
                   hard_timeout=kw.hard_timeout,
                   importance=kw.importance if vnum >= 5 else 0,  # an OpenFlow 1.4 field
                   flags=frozenset(flags), out_port=kw.out_port, typed_match=typed)


# -- dump-flows lines -------------------------------------------------------------

def _msec(t: float) -> int:
    """Milliseconds, as OVS's clock counts them."""
    return math.floor(t * 1000)


def format_duration(msecs: int) -> str:
    """OVS's ofp_print_duration for a millisecond count."""
    sec, ms = divmod(max(msecs, 0), 1000)
    return f"{sec}.{ms:03d}s" if ms else f"{sec}s"


def _flags_of(rule: Any) -> list[str]:
    flags = getattr(rule, "flags", ()) or ()
    if isinstance(flags, int):
        return [name for i, name in enumerate(FLAG_NAMES) if flags >> i & 1]
    flags = set(flags)
    return [name for name in FLAG_NAMES if name in flags]


def format_flow_stats(rule: Any, version: str | int | None = "OpenFlow10",
                      now: float | None = None, port_namer: PortNamer | None = None,
                      show_stats: bool = True) -> str:
    """One ``ovs-ofctl [-O version] dump-flows`` line (with its leading
    space) for a rule-like object: cookie, table_id, priority, match,
    actions, n_packets, n_bytes, created, last_used (and optionally
    modified), idle_timeout, hard_timeout, importance, flags.  ``now`` and
    the times are epoch seconds.  ``show_stats=False`` is ``--no-stats``."""
    vnum = version_number(version)
    now_ms = _msec(time.time() if now is None else now)
    created = _msec(rule.created)
    used = _msec(getattr(rule, "last_used", None) or rule.created)
    modified = _msec(getattr(rule, "modified", None) or rule.created)
    duration = max(now_ms - created, 0)
    parts = []
    if show_stats or rule.cookie:
        parts.append(f"cookie={rule.cookie:#x}, ")
    if show_stats:
        parts.append(f"duration={format_duration(duration)}, ")
    if show_stats or rule.table_id:
        parts.append(f"table={rule.table_id}, ")
    if show_stats:
        parts.append(f"n_packets={rule.n_packets}, n_bytes={rule.n_bytes}, ")
    if rule.idle_timeout:
        parts.append(f"idle_timeout={rule.idle_timeout}, ")
    if rule.hard_timeout:
        parts.append(f"hard_timeout={rule.hard_timeout}, ")
    if vnum >= 4:
        parts.extend(f"{flag} " for flag in _flags_of(rule))
    if vnum >= 5 and getattr(rule, "importance", 0):
        parts.append(f"importance={rule.importance}, ")
    if show_stats and vnum in (1, 6):
        parts.append(f"idle_age={max(now_ms - used, 0) // 1000}, ")
    if show_stats and vnum == 1:
        hard_age = max(now_ms - modified, 0) // 1000
        if hard_age != duration // 1000:
            parts.append(f"hard_age={hard_age}, ")
    match = dump_match(rule.match, vnum)
    match_text = format_match(match, port_namer, rule.priority)
    if match_text:
        parts.append(match_text + " ")
    parts.append("actions=" + format_actions(rule.actions, vnum, port_namer))
    return " " + "".join(parts)


# -- ofproto/trace flows ----------------------------------------------------------

def parse_trace_flow(text: str, port_resolver: PortResolver | None = None) -> int:
    """The FLOW argument of ``ofproto/trace BRIDGE FLOW`` as a flow key.

    Fields not mentioned are 0, except in_port (``OFPP_NONE``); a field may
    be set once, after its prerequisites (``tcp,tp_dst=80``, not
    ``tp_dst=80,tcp``).  Tagged flows get TPID 0x8100."""
    key = 0
    for name, value in split_key_values(text):
        if name in PROTOCOLS:
            dl_type, proto = PROTOCOLS[name]
            if K.get(key, "dl_type"):
                raise FlowSyntaxError(f"{text}: Ethernet type set multiple times")
            key = K.put(key, "dl_type", dl_type)
            if proto:
                if K.get(key, "nw_proto"):
                    raise FlowSyntaxError(f"{text}: network protocol set multiple times")
                key = K.put(key, "nw_proto", proto)
            continue
        mf = F.find(name)
        if mf is None:
            raise FlowSyntaxError(f"{text}: unknown field {name}")
        if not mf.prereqs_ok(key):
            raise FlowSyntaxError(f"{text}: prerequisites not met for setting {name}")
        if mf.from_key(key):
            raise FlowSyntaxError(f"{text}: field {name} set multiple times")
        try:
            v, m = mf.parse(value, port_resolver)
            if m != mf.all_ones:
                raise FlowSyntaxError(f"{value}: wildcards not allowed here")
        except FlowSyntaxError as e:
            raise FlowSyntaxError(f"{text}: bad value for {name} ({e})") from None
        mb = MatchBuilder(Match(key, K.ALL_MASK))
        mb.set(mf, v, m)
        key = mb.value
    if not K.get(key, "in_port"):
        key = K.put(key, "in_port", V.OFPP_NONE)
    if K.get(key, "vlan_tci") & K.VLAN_CFI and not K.get(key, "vlan_tpid"):
        key = K.put(key, "vlan_tpid", 0x8100)
    return key


def parse_flows(lines: Iterable[str], command: str = "add",
                version: str | int | None = "OpenFlow10",
                port_resolver: PortResolver | None = None) -> list[FlowMod]:
    """Several flows (``add-flows FILE``): blank lines and ``#`` comments
    are skipped; errors name the line."""
    out = []
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            out.append(parse_flow(stripped, command, version, port_resolver))
        except FlowSyntaxError as e:
            raise FlowSyntaxError(f"line {n}: {e}") from None
    return out
