"""Conditions (RFC 7047 section 5.1 <condition>) and the row views they test.

A condition is ``[column, function, value]``; ``_uuid`` and ``_version`` are
columns too.  In "transact" the conditions of a "where" all must hold; in
monitor_cond they are alternatives, and ``true``/``false`` stand for
always/never.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable

from ovsd.db.schema import BaseType, ColumnType, Table
from ovsd.ovsdb import datum as D
from ovsd.ovsdb.errors import UNKNOWN_COLUMN, OvsdbError, syntax

FUNCTIONS = ("==", "!=", "<", "<=", ">", ">=", "includes", "excludes")
VIRTUAL = {"_uuid": D.UUID_TYPE, "_version": D.UUID_TYPE}

# (uuid, row) -> the row's _version
Versioner = Callable[[uuidlib.UUID], uuidlib.UUID]


def column_type(tbl: Table, name: Any, where: Any = None) -> ColumnType:
    if not isinstance(name, str):
        raise syntax("a column name is a string", where if where is not None else name)
    if name in VIRTUAL:
        return VIRTUAL[name]
    col = tbl.columns.get(name)
    if col is None:
        raise OvsdbError(UNKNOWN_COLUMN, f"No column {name} in table {tbl.name}.",
                         D_show(where if where is not None else name))
    return col.type


def D_show(j: Any) -> str:
    from ovsd.ovsdb.errors import _show
    return _show(j)


def value_of(tbl: Table, column: str, uid: uuidlib.UUID, row, version: Versioner | None):
    if column == "_uuid":
        return uid
    if column == "_version":
        return version(uid) if version else uuidlib.UUID(int=0)
    return row[column]


@dataclass(frozen=True)
class Clause:
    column: str
    function: str
    ctype: ColumnType
    value: Any  # a frozenset / FrozenMap of elements (any size)
    const: bool | None = None  # a literal true/false clause

    def test(self, tbl: Table, uid, row, version: Versioner | None) -> bool:
        if self.const is not None:
            return self.const
        have = D.as_set(self.ctype, value_of(tbl, self.column, uid, row, version))
        want = self.value
        f = self.function
        if f == "==":
            return have == want
        if f == "!=":
            return have != want
        if f == "includes":
            if self.ctype.is_map:
                return all(have.get(k, _MISSING) == v for k, v in want.items())
            return want <= have
        if f == "excludes":
            if self.ctype.is_map:
                return all(have.get(k, _MISSING) != v for k, v in want.items())
            return not (want & have)
        if not have or not want:
            return False
        a, b = next(iter(have)), next(iter(want))
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[f]


_MISSING = object()


def parse_clause(tbl: Table, j: Any, symbols: D.Symbols = None,
                 allow_bool: bool = False) -> Clause:
    if allow_bool and isinstance(j, bool):
        return Clause("", "", D.UUID_TYPE, frozenset(), const=j)
    if not (isinstance(j, list) and len(j) == 3 and isinstance(j[1], str)):
        raise syntax("Parse error in condition.", j)
    name, function, value_json = j
    ctype = column_type(tbl, name, j)
    if function not in FUNCTIONS:
        raise syntax(f"Unknown function {function!r} in condition.", j)
    if function in ("<", "<=", ">", ">="):
        if ctype.key.type not in ("integer", "real") or ctype.is_map or ctype.n_max != 1:
            raise syntax(f"Type mismatch: \"{function}\" operator may not be applied to "
                         f"column {name} of type {ctype.key.type}.", j)
    # Compared values may be of any size and need not meet the column's
    # constraints: a condition only asks a question.
    loose = ColumnType(BaseType(ctype.key.type, ref_table=ctype.key.ref_table),
                       None if ctype.value is None else BaseType(ctype.value.type),
                       0, None)
    value = D.datum_from_json(loose, value_json, symbols, check_size=False, check=False,
                              what=f"condition on {name}")
    return Clause(name, function, ctype, value)


def parse_where(tbl: Table, j: Any, symbols: D.Symbols = None, *,
                allow_bool: bool = False) -> list[Clause]:
    if not isinstance(j, list):
        raise syntax("\"where\" must be an array of conditions", j)
    return [parse_clause(tbl, c, symbols, allow_bool) for c in j]


def uuid_shortcut(clauses: list[Clause]) -> uuidlib.UUID | None:
    """The row a where clause names by ``_uuid ==``, if any: the common case,
    answered without scanning the table."""
    for c in clauses:
        if c.column == "_uuid" and c.function == "==" and len(c.value) == 1:
            return next(iter(c.value))
    return None
