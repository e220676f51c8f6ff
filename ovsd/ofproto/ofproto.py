"""One OpenFlow bridge: its ports, its flow tables and its MAC table.

Flow-mod semantics follow OVS (ofproto.c): ``add`` replaces a rule with the
same match and priority (keeping its counters unless ``reset_counts``),
``modify`` changes the actions of matching rules (strict: same match and
priority) and adds the flow when nothing matched, ``delete`` removes matching
rules, filtered by cookie and out_port.  Every change bumps ``version`` so
cached datapath flows can be revalidated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ovsd.ofproto import actions as A
from ovsd.ofproto.classifier import Classifier
from ovsd.ofproto.fields import OFPP_LOCAL, OFPP_MAX, OFPP_NONE
from ovsd.ofproto.mac_learning import MacTable
from ovsd.ofproto.normal_vlan import PortVlan
from ovsd.ofproto.rule import Rule

N_TABLES = 255
ALL_TABLES = 255


class OfprotoError(Exception):
    """A flow table request that cannot be done; the message says why."""


@dataclass
class OfPort:
    ofport: int
    name: str
    odp_port: int
    type: str
    vlan: PortVlan = field(default_factory=PortVlan)


class Ofproto:
    def __init__(self, name: str, mac_table: MacTable | None = None,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.tables = [Classifier() for _ in range(N_TABLES)]
        self.ports: dict[int, OfPort] = {}
        self._port_names: dict[str, int] = {}
        self.mac_table = mac_table or MacTable()
        self.clock = clock
        self.version = 0
        self._index: dict[int, Rule] = {}
        self._index_version = -1

    # -- ports ----------------------------------------------------------------

    def add_port(self, port: OfPort) -> None:
        self.ports[port.ofport] = port
        self._port_names[port.name] = port.ofport
        self.version += 1

    def del_port(self, ofport: int) -> OfPort:
        port = self.ports.pop(ofport)
        del self._port_names[port.name]
        self.mac_table.flush(port=ofport)
        self.version += 1
        return port

    def port_no(self, name: str) -> int | None:
        """Port-name resolver for flow syntax (names as ovs-ofctl accepts them)."""
        return self._port_names.get(name)

    def port_name(self, ofport: int) -> str | None:
        port = self.ports.get(ofport)
        return port.name if port else None

    def free_ofport(self) -> int:
        return next(n for n in range(1, OFPP_MAX) if n not in self.ports)

    @property
    def local_port(self) -> OfPort | None:
        return self.ports.get(OFPP_LOCAL)

    # -- rules ------------------------------------------------------------------

    def rules(self, table_id: int = ALL_TABLES) -> Iterable[Rule]:
        tables = range(N_TABLES) if table_id == ALL_TABLES else (table_id,)
        for t in tables:
            yield from sorted(self.tables[t], key=lambda r: -r.priority)

    def n_rules(self) -> int:
        return sum(len(t) for t in self.tables)

    def rule_index(self) -> dict[int, Rule]:
        """Rules by id (rebuilt only after a change)."""
        if self._index_version != self.version:
            self._index = {r.id: r for t in self.tables for r in t}
            self._index_version = self.version
        return self._index

    def _check_table(self, table_id: int, allow_all: bool) -> None:
        if table_id == ALL_TABLES and allow_all:
            return
        if not 0 <= table_id < N_TABLES:
            raise OfprotoError(f"table {table_id} does not exist; tables are 0..254")

    def add_flow(self, fm) -> Rule:
        """Insert ``fm``'s rule; a rule with the same match and priority is replaced."""
        table_id = fm.table
        self._check_table(table_id, allow_all=False)
        self._check_actions(fm, table_id)
        table = self.tables[table_id]
        if "check_overlap" in fm.flags:
            for other in table:
                if other.priority == fm.priority and _overlaps(other.match, fm.match):
                    raise OfprotoError(
                        f"flow overlaps an existing flow of priority {fm.priority} "
                        "in the same table (check_overlap was given)")
        now = self.clock()
        rule = Rule(table_id, fm.priority, fm.match, fm.actions, cookie=fm.new_cookie or 0,
                    idle_timeout=fm.idle_timeout, hard_timeout=fm.hard_timeout,
                    importance=fm.importance, flags=frozenset(fm.flags), created=now)
        old = table.insert(rule)
        if old is not None and "reset_counts" not in fm.flags:
            rule.n_packets, rule.n_bytes = old.n_packets, old.n_bytes
        self.version += 1
        return rule

    def modify_flows(self, fm, strict: bool) -> int:
        """Replace the actions of matching rules; returns how many changed.
        When nothing matches (and no cookie mask restricts it), the flow is
        added, as OVS does."""
        self._check_table(fm.table_id, allow_all=True)
        self._check_actions(fm, fm.table_id)
        targets = self._select(fm, strict, check_out_port=False)
        if not targets:
            if fm.cookie_mask == 0:
                # Nothing matched: the flow is added, to table 0 when no table
                # was named (OVS does the same).
                self.add_flow(fm)
                return 1
            return 0
        now = self.clock()
        for rule in targets:
            rule.actions = fm.actions
            rule.rev += 1
            rule.modified = now
            if fm.new_cookie is not None:
                rule.cookie = fm.new_cookie
            if "reset_counts" in fm.flags:
                rule.n_packets = rule.n_bytes = 0
        self.version += 1
        return len(targets)

    def delete_flows(self, fm, strict: bool) -> list[Rule]:
        self._check_table(fm.table_id, allow_all=True)
        gone = self._select(fm, strict, check_out_port=True)
        for rule in gone:
            self.tables[rule.table_id].remove(rule)
        if gone:
            self.version += 1
        return gone

    def dump_flows(self, fm) -> list[Rule]:
        self._check_table(fm.table_id, allow_all=True)
        return self._select(fm, strict=False, check_out_port=True)

    def expire(self, now: float) -> list[tuple[Rule, str]]:
        """Remove rules whose idle or hard timeout has passed."""
        gone = []
        for table in self.tables:
            for rule in [r for r in table if r.idle_timeout or r.hard_timeout]:
                why = rule.expired(now)
                if why:
                    table.remove(rule)
                    gone.append((rule, why))
        if gone:
            self.version += 1
        return gone

    def _select(self, fm, strict: bool, check_out_port: bool) -> list[Rule]:
        tables = range(N_TABLES) if fm.table_id == ALL_TABLES else (fm.table_id,)
        chosen = []
        for t in tables:
            table = self.tables[t]
            if strict:
                r = table.find_exact(fm.match.value, fm.match.mask, fm.priority)
                candidates = [r] if r is not None else []
            else:
                candidates = list(table.find_loose(fm.match.value, fm.match.mask))
            for r in candidates:
                if (r.cookie & fm.cookie_mask) != (fm.cookie & fm.cookie_mask):
                    continue
                if check_out_port and fm.out_port != OFPP_NONE and \
                        not _outputs_to(r.actions, fm.out_port):
                    continue
                chosen.append(r)
        chosen.sort(key=lambda r: (r.table_id, -r.priority))
        return chosen

    def _check_actions(self, fm, table_id: int) -> None:
        for target in _goto_tables(fm.actions):
            if table_id != ALL_TABLES and target <= table_id:
                raise OfprotoError(
                    f"goto_table:{target} in a flow of table {table_id}: "
                    "goto_table must go to a later table (use resubmit to go back)")


def _overlaps(a, b) -> bool:
    common = a.mask & b.mask
    return (a.value & common) == (b.value & common)


def _walk(actions) -> Iterable[A.Action]:
    """Every action, including those inside write_actions."""
    for a in actions or ():
        yield a
        if isinstance(a, A.WriteActions):
            yield from _walk(a.actions)


def _goto_tables(actions) -> Iterable[int]:
    return (a.table for a in _walk(actions) if isinstance(a, A.GotoTable))


def _outputs_to(actions, port: int) -> bool:
    """OpenFlow's out_port filter: the rule has an output to ``port``."""
    for a in _walk(actions):
        if isinstance(a, (A.Output, A.Enqueue)) and a.port == port:
            return True
    return False
