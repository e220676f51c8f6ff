"""Monitors: "monitor" (RFC 7047 section 4.1.5, "update" notifications),
"monitor_cond" ("update2") and "monitor_cond_since" ("update3"), as OVS
extends the RFC (ovsdb-server(7)).

A monitor watches some columns of some tables, optionally only rows that
meet a condition (monitor_cond's "where" clauses are alternatives).  It
turns each commit's :class:`~ovsd.db.store.Changes` into the table updates
a client gets; a row that starts or stops meeting the condition is sent as an
insert or a delete.

update (version 1): ``{"new": row}`` for initial rows and inserts,
``{"old": row}`` for deletes, ``{"old": changed columns' old values, "new":
row}`` for modifications.  update2/update3: ``{"initial"|"insert": row}``
(columns at their default value left out), ``{"delete": null}``,
``{"modify": diff}`` (see :func:`ovsd.ovsdb.datum.diff`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ovsd.db.schema import Table
from ovsd.db.store import Changes
from ovsd.ovsdb import datum as D
from ovsd.ovsdb.catalog import Served
from ovsd.ovsdb.conditions import Clause, parse_where
from ovsd.ovsdb.errors import OvsdbError, syntax

SELECT_KINDS = ("initial", "insert", "delete", "modify")


@dataclass
class TableMonitor:
    table: Table
    columns: list[str]
    select: dict[str, bool]
    where: list[Clause] | None = None  # None: every row

    def matches(self, uid, row, version) -> bool:
        if row is None:
            return False
        if self.where is None:
            return True
        return any(c.test(self.table, uid, row, version) for c in self.where)


@dataclass
class Monitor:
    id: Any
    served: Served
    version: int  # 1 monitor, 2 monitor_cond, 3 monitor_cond_since
    tables: dict[str, TableMonitor] = field(default_factory=dict)

    @classmethod
    def parse(cls, monitor_id: Any, served: Served, requests: Any, version: int) -> Monitor:
        if not isinstance(requests, dict):
            raise syntax("monitor requests must be an object of table names", requests)
        mon = cls(monitor_id, served, version)
        for tname, reqs in requests.items():
            tbl = served.schema.tables.get(tname)
            if tbl is None:
                raise syntax(f"no table named {tname}")
            if isinstance(reqs, dict):
                reqs = [reqs]
            if not isinstance(reqs, list) or not reqs:
                raise syntax(f"table {tname}: a monitor request is an object or an "
                             "array of them", reqs)
            columns: list[str] = []
            select = dict.fromkeys(SELECT_KINDS, False)
            where: list[Clause] | None = []
            for req in reqs:
                if not isinstance(req, dict):
                    raise syntax(f"table {tname}: a monitor request is an object", req)
                unknown = set(req) - {"columns", "select", "where"}
                if unknown or ("where" in req and version == 1):
                    raise syntax(f"table {tname}: unexpected member(s) in a monitor "
                                 f"request: {sorted(unknown or {'where'})}", req)
                cols = req.get("columns", list(tbl.columns))
                if not isinstance(cols, list):
                    raise syntax("\"columns\" must be an array", cols)
                for c in cols:
                    if not isinstance(c, str) or c not in tbl.columns:
                        raise syntax(f"{c} is not a valid column name", cols)
                    if c not in columns:
                        columns.append(c)
                sel = req.get("select", {})
                if not isinstance(sel, dict) or any(
                        k not in SELECT_KINDS or not isinstance(v, bool)
                        for k, v in sel.items()):
                    raise syntax("\"select\" must map initial/insert/delete/modify to "
                                 "booleans", sel)
                for k in SELECT_KINDS:
                    select[k] = select[k] or sel.get(k, True)
                if "where" not in req:
                    where = None
                elif where is not None:
                    where.extend(parse_where(tbl, req["where"], allow_bool=True))
            mon.tables[tname] = TableMonitor(tbl, columns, select,
                                             None if where is None or not where else where)
        return mon

    # -- rows ---------------------------------------------------------------------

    def _version(self, tname: str):
        return lambda uid: self.served.version(tname, uid)

    def _row(self, tm: TableMonitor, row, columns=None) -> dict:
        out = {}
        for c in columns or tm.columns:
            ctype = tm.table.columns[c].type
            value = row[c]
            if self.version > 1 and columns is None and value == ctype.default():
                continue
            out[c] = D.datum_to_json(ctype, value)
        return out

    def _entry(self, tm: TableMonitor, kind: str, old, new) -> dict | None:
        if not tm.select[kind if kind != "initial" else "initial"]:
            return None
        if self.version == 1:
            if kind in ("initial", "insert"):
                return {"new": self._row(tm, new, tm.columns)}
            if kind == "delete":
                return {"old": self._row(tm, old, tm.columns)}
            changed = [c for c in tm.columns if old[c] != new[c]]
            if not changed:
                return None
            return {"old": self._row(tm, old, changed), "new": self._row(tm, new, tm.columns)}
        if kind in ("initial", "insert"):
            return {kind: self._row(tm, new)}
        if kind == "delete":
            return {"delete": None}
        d = {c: D.diff(tm.table.columns[c].type, old[c], new[c])
             for c in tm.columns if old[c] != new[c]}
        return {"modify": d} if d else None

    def initial(self) -> dict:
        out: dict = {}
        for tname, tm in self.tables.items():
            if not tm.select["initial"]:
                continue
            version = self._version(tname)
            rows = {}
            for uid, row in self.served.db.rows(tname).items():
                if tm.matches(uid, row, version):
                    rows[str(uid)] = self._entry(tm, "initial", None, row)
            if rows:
                out[tname] = rows
        return out

    def updates(self, changes: Changes) -> dict:
        """The table updates ``changes`` makes for this monitor (maybe empty)."""
        out: dict = {}
        for c in changes.rows:
            tm = self.tables.get(c.table)
            if tm is None:
                continue
            version = self._version(c.table)
            was = tm.matches(c.uuid, c.old, version)
            now = tm.matches(c.uuid, c.new, version)
            if was and now:
                entry = self._entry(tm, "modify", c.old, c.new)
            elif now:
                entry = self._entry(tm, "insert", None, c.new)
            elif was:
                entry = self._entry(tm, "delete", c.old, None)
            else:
                continue
            if entry is not None:
                out.setdefault(c.table, {})[str(c.uuid)] = entry
        return out

    def change_conditions(self, requests: Any) -> dict:
        """monitor_cond_change: new conditions; the rows that enter or leave."""
        if not isinstance(requests, dict):
            raise syntax("monitor_cond_change requests must be an object", requests)
        new_where: dict[str, list[Clause] | None] = {}
        for tname, reqs in requests.items():
            tm = self.tables.get(tname)
            if tm is None:
                raise syntax(f"table {tname} is not monitored by this monitor")
            if isinstance(reqs, dict):
                reqs = [reqs]
            if not isinstance(reqs, list):
                raise syntax("a condition change is an array of requests", reqs)
            where: list[Clause] | None = []
            for req in reqs:
                if not isinstance(req, dict):
                    raise syntax("a condition change request is an object", req)
                if "columns" in req and req["columns"] != tm.columns:
                    raise OvsdbError("not supported",
                                     "monitor_cond_change cannot change the columns")
                if "where" not in req:
                    where = None
                elif where is not None:
                    where.extend(parse_where(tm.table, req["where"], allow_bool=True))
            new_where[tname] = None if where is None or not where else where
        out: dict = {}
        for tname, where in new_where.items():
            tm = self.tables[tname]
            old_tm = TableMonitor(tm.table, tm.columns, tm.select, tm.where)
            tm.where = where
            version = self._version(tname)
            for uid, row in self.served.db.rows(tname).items():
                was = old_tm.matches(uid, row, version)
                now = tm.matches(uid, row, version)
                entry = None
                if now and not was:
                    entry = self._entry(tm, "insert", None, row)
                elif was and not now:
                    entry = self._entry(tm, "delete", row, None)
                if entry is not None:
                    out.setdefault(tname, {})[str(uid)] = entry
        return out
