"""The "transact" method (RFC 7047 section 5.2): operations on one store
transaction, committed all together or not at all.

:func:`execute` runs the operations in order on a
:class:`~ovsd.db.store.Transaction`; the first that fails aborts it, and the
result array holds the results so far, that operation's error, and nulls
for the rest.  When every operation succeeds, the commit checks what OVSDB
checks at commit (references, garbage collection, unique names, sizes); a
failure there adds one more element, the error.  Nothing is changed by a
failed transaction: the store applies a transaction only at commit.

A "wait" whose condition does not hold yet and whose timeout is not zero
raises :class:`Blocked`: the caller runs the transaction again after the
next commit, or with ``can_block=False`` once the timeout has passed.
"""

from __future__ import annotations

import logging
import math
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from ovsd.db.schema import BaseType, ColumnType, ColumnValueError, FrozenMap, Table
from ovsd.db.store import PersistError, Transaction, TransactionError
from ovsd.ovsdb import datum as D
from ovsd.ovsdb.catalog import Served
from ovsd.ovsdb.conditions import (Clause, column_type, parse_where, uuid_shortcut,
                                   value_of)
from ovsd.ovsdb.errors import (ABORTED, CONSTRAINT_VIOLATION, DOMAIN_ERROR,
                               DUPLICATE_UUID_NAME, IO_ERROR, NOT_OWNER, RANGE_ERROR,
                               REFERENTIAL_INTEGRITY, TIMED_OUT, UNKNOWN_COLUMN,
                               OvsdbError, _show, syntax)

log = logging.getLogger(__name__)

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
ARITH = ("+=", "-=", "*=", "/=", "%=")
OPS = ("insert", "select", "update", "mutate", "delete", "wait", "commit", "abort",
       "comment", "assert")
WRITES = ("insert", "update", "mutate", "delete")


class Blocked(Exception):
    """A "wait" is not satisfied yet; try again until ``timeout_ms`` passes."""

    def __init__(self, timeout_ms: float):
        super().__init__(f"waiting up to {timeout_ms} ms")
        self.timeout_ms = timeout_ms


@dataclass
class _Symbols:
    """named-uuid -> uuid; a name may be used before the insert that creates it."""

    uuids: dict[str, uuidlib.UUID] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)

    def ref(self, name: str) -> uuidlib.UUID:
        uid = self.uuids.get(name)
        if uid is None:
            uid = self.uuids[name] = uuidlib.uuid4()
        return uid

    def create(self, name: str, wanted: uuidlib.UUID | None) -> uuidlib.UUID:
        if name in self.created:
            raise OvsdbError(DUPLICATE_UUID_NAME, "This \"uuid-name\" appeared on an "
                             "earlier \"insert\" operation.", _show(name))
        self.created.add(name)
        if wanted is not None:
            if name in self.uuids and self.uuids[name] != wanted:
                raise syntax(f"uuid-name {name} was referred to before its insert, which "
                             "then asked for a different uuid", name)
            self.uuids[name] = wanted
        return self.ref(name)


def execute(served: Served, ops: list, *, owns_lock: Callable[[str], bool] = lambda n: False,
            can_block: bool = False) -> list:
    """The "result" array for ``ops`` (the params after the database name)."""
    txn = served.db.transaction()
    results: list = []
    symbols = _Symbols()
    try:
        for i, op in enumerate(ops):
            try:
                results.append(_run(served, txn, op, i, len(ops), symbols, owns_lock,
                                    can_block))
            except OvsdbError as e:
                txn.abort()
                results.append(e.to_json())
                results.extend([None] * (len(ops) - len(results)))
                return results
        missing = sorted(n for n in symbols.uuids if n not in symbols.created)
        if missing:
            txn.abort()
            results.append(OvsdbError(REFERENTIAL_INTEGRITY,
                                      f"named-uuid {missing[0]} is used but no \"insert\" in "
                                      "this transaction creates it").to_json())
            return results
        try:
            txn.commit()
        except TransactionError as e:
            results.append(OvsdbError(_classify(str(e)), str(e)).to_json())
        except ColumnValueError as e:
            results.append(OvsdbError(CONSTRAINT_VIOLATION, str(e)).to_json())
        except PersistError as e:
            log.error("OVSDB transaction not committed: %s", e)
            results.append(OvsdbError(IO_ERROR, str(e)).to_json())
        return results
    finally:
        if not txn._done:
            txn.abort()


def _classify(message: str) -> str:
    """The OVSDB error for a commit the store refused (it reports in words).
    tests/unit/test_ovsdb_transact.py pins each message this relies on."""
    if "refers in column" in message or "still refers to it" in message:
        return REFERENTIAL_INTEGRITY
    return CONSTRAINT_VIOLATION


def _run(served: Served, txn: Transaction, op: Any, i: int, n: int, symbols: _Symbols,
         owns_lock, can_block: bool) -> dict:
    if not isinstance(op, dict):
        raise syntax(f"Parsing ovsdb operation {i + 1} of {n} failed: Object expected.")
    name = op.get("op")
    if name not in OPS:
        raise syntax(f"Parsing ovsdb operation {i + 1} of {n} failed: No operation "
                     f"{name!r}", op)
    if name == "commit":
        durable = op.get("durable", False)
        if not isinstance(durable, bool):
            raise syntax("\"durable\" must be a boolean", op)
        return {}  # every commit is durable: the store fsyncs before it returns
    if name == "abort":
        raise OvsdbError(ABORTED, "aborted by request")
    if name == "comment":
        comment = op.get("comment")
        if not isinstance(comment, str):
            raise syntax("\"comment\" must be a string", op)
        log.debug("OVSDB transaction comment: %s", comment[:500])
        return {}
    if name == "assert":
        lock = op.get("lock")
        if not isinstance(lock, str):
            raise syntax("\"lock\" must be a string", op)
        if not owns_lock(lock):
            raise OvsdbError(NOT_OWNER, f"Asserted lock {lock} not held.")
        return {}
    table_name = op.get("table")
    if not isinstance(table_name, str) or table_name not in served.schema.tables:
        raise syntax(f"Parsing ovsdb operation {i + 1} of {n} failed: No table named "
                     f"{table_name}.", op)
    tbl = served.schema.tables[table_name]
    if served.read_only and name in WRITES:
        raise OvsdbError("not allowed", f"{name} operation not allowed on table in "
                         f"reserved database {served.name}")
    ctx = _Op(served, txn, tbl, op, symbols)
    if name == "insert":
        return ctx.insert()
    if name == "select":
        return ctx.select()
    if name == "update":
        return ctx.update()
    if name == "mutate":
        return ctx.mutate()
    if name == "delete":
        return ctx.delete()
    return ctx.wait(can_block)


def row_to_json(tbl: Table, uid, row, columns, version) -> dict:
    out = {}
    for c in columns:
        if c in ("_uuid", "_version"):
            out[c] = D.atom_to_json(value_of(tbl, c, uid, row, version))
        else:
            out[c] = D.datum_to_json(tbl.columns[c].type, row[c])
    return out


class _Op:
    def __init__(self, served: Served, txn: Transaction, tbl: Table, op: dict,
                 symbols: _Symbols):
        self.served = served
        self.txn = txn
        self.tbl = tbl
        self.op = op
        self.symbols = symbols

    def _version(self, uid):
        return self.served.version(self.tbl.name, uid)

    def _member(self, key: str, required: bool = True) -> Any:
        if key not in self.op:
            if required:
                raise syntax(f"\"{self.op.get('op')}\" needs \"{key}\"", self.op)
            return None
        return self.op[key]

    def _where(self) -> list[tuple[uuidlib.UUID, Any]]:
        clauses = parse_where(self.tbl, self._member("where"), self.symbols.ref)
        return self._matching(clauses)

    def _matching(self, clauses: list[Clause]) -> list[tuple[uuidlib.UUID, Any]]:
        tname = self.tbl.name
        uid = uuid_shortcut(clauses)
        if uid is not None:
            row = self.txn.get(tname, uid)
            candidates = [] if row is None else [(uid, row)]
        else:
            candidates = list(self.txn.rows(tname))
        return [(u, r) for u, r in candidates
                if all(c.test(self.tbl, u, r, self._version) for c in clauses)]

    def _columns(self, default: list[str]) -> list[str]:
        j = self.op.get("columns")
        if j is None:
            return default
        if not isinstance(j, list):
            raise syntax("\"columns\" must be an array of column names", self.op)
        for c in j:
            column_type(self.tbl, c, j)
        return list(dict.fromkeys(j))

    def _row(self, j: Any, *, for_update: bool) -> dict:
        if not isinstance(j, dict):
            raise syntax("\"row\" must be an object", self.op)
        out = {}
        for cname, value in j.items():
            col = self.tbl.columns.get(cname)
            if col is None:
                if cname in ("_uuid", "_version"):
                    raise syntax(f"{cname} may not be written", j)
                raise OvsdbError(UNKNOWN_COLUMN, f"No column {cname} in table "
                                 f"{self.tbl.name}.", _show(j))
            if for_update and not col.mutable:
                raise OvsdbError(CONSTRAINT_VIOLATION, f"Cannot update immutable column "
                                 f"{cname} in table {self.tbl.name}.", _show(self.op))
            out[cname] = D.datum_from_json(col.type, value, self.symbols.ref,
                                           what=f"column {cname}")
        return out

    # -- operations ---------------------------------------------------------------

    def insert(self) -> dict:
        values = self._row(self.op.get("row", {}), for_update=False)
        wanted = None
        if "uuid" in self.op:
            j = self.op["uuid"]
            try:
                wanted = uuidlib.UUID(j if isinstance(j, str) else
                                      j[1] if isinstance(j, list) and len(j) == 2 else "")
            except (ValueError, TypeError):
                raise syntax("\"uuid\" must be a UUID", self.op) from None
        name = self.op.get("uuid-name")
        if name is not None:
            if not isinstance(name, str) or not D.ID_RE.match(name):
                raise syntax("\"uuid-name\" must be an <id>", self.op)
            uid = self.symbols.create(name, wanted)
        else:
            uid = wanted or uuidlib.uuid4()
        if self.txn.get(self.tbl.name, uid) is not None:
            raise OvsdbError("duplicate uuid", f"This UUID would duplicate a UUID already "
                             f"present within the table {self.tbl.name}.", str(uid))
        try:
            self.txn.insert(self.tbl.name, values, uuid=uid)
        except (TransactionError, ColumnValueError) as e:
            raise OvsdbError(CONSTRAINT_VIOLATION, str(e)) from None
        return {"uuid": ["uuid", str(uid)]}

    def select(self) -> dict:
        rows = self._where()
        columns = self._columns(["_uuid", "_version", *self.tbl.columns])
        return {"rows": [row_to_json(self.tbl, u, r, columns, self._version)
                         for u, r in rows]}

    def update(self) -> dict:
        values = self._row(self._member("row"), for_update=True)
        rows = self._where()
        for uid, _ in rows:
            self._write(uid, values)
        return {"count": len(rows)}

    def _write(self, uid, values: dict) -> None:
        try:
            self.txn.update(self.tbl.name, uid, values)
        except (TransactionError, ColumnValueError) as e:
            raise OvsdbError(CONSTRAINT_VIOLATION, str(e)) from None

    def delete(self) -> dict:
        rows = self._where()
        for uid, _ in rows:
            self.txn.delete(self.tbl.name, uid)
        return {"count": len(rows)}

    def mutate(self) -> dict:
        mutations = self._mutations(self._member("mutations"))
        rows = self._where()
        for uid, row in rows:
            values = {}
            for cname, mutator, arg in mutations:
                col = self.tbl.columns[cname]
                current = values.get(cname, row[cname])
                values[cname] = _mutate(col.type, current, mutator, arg, cname)
            self._write(uid, values)
        return {"count": len(rows)}

    def _mutations(self, j: Any) -> list[tuple[str, str, Any]]:
        if not isinstance(j, list):
            raise syntax("\"mutations\" must be an array", self.op)
        out = []
        for m in j:
            if not (isinstance(m, list) and len(m) == 3 and isinstance(m[1], str)):
                raise syntax("Parse error in mutation.", m)
            cname, mutator, arg_json = m
            ctype = column_type(self.tbl, cname, m)
            if cname in ("_uuid", "_version"):
                raise OvsdbError(CONSTRAINT_VIOLATION, f"Cannot mutate column {cname}.",
                                 _show(m))
            if not self.tbl.columns[cname].mutable:
                raise OvsdbError(CONSTRAINT_VIOLATION, f"Cannot mutate immutable column "
                                 f"{cname} in table {self.tbl.name}.", _show(m))
            if mutator in ARITH:
                if ctype.is_map or ctype.key.type not in ("integer", "real") or (
                        mutator == "%=" and ctype.key.type == "real"):
                    raise syntax(f"Type mismatch: \"{mutator}\" may not be applied to "
                                 f"column {cname} of type {ctype.key.type}"
                                 f"{' map' if ctype.is_map else ''}.", m)
                arg = D.atom_from_json(BaseType(ctype.key.type), arg_json, check=False)
            elif mutator in ("insert", "delete"):
                if ctype.is_map and mutator == "delete" and not (
                        isinstance(arg_json, list) and arg_json[:1] == ["map"]):
                    keys = ColumnType(ctype.key, None, 0, None)
                    arg = D.datum_from_json(keys, arg_json, self.symbols.ref,
                                            check_size=False, check=False)
                else:
                    arg = D.datum_from_json(ColumnType(ctype.key, ctype.value, 0, None),
                                            arg_json, self.symbols.ref, check_size=False,
                                            check=mutator == "insert")
            else:
                raise syntax(f"Unknown mutator {mutator!r}.", m)
            out.append((cname, mutator, arg))
        return out

    def wait(self, can_block: bool) -> dict:
        timeout = self._member("timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise syntax("\"timeout\" must be a non-negative number of milliseconds", self.op)
        until = self._member("until")
        if until not in ("==", "!="):
            raise syntax("\"until\" must be \"==\" or \"!=\"", self.op)
        columns = self._columns(["_uuid", "_version", *self.tbl.columns])
        expected_json = self._member("rows")
        if not isinstance(expected_json, list):
            raise syntax("\"rows\" must be an array of rows", self.op)
        expected = Counter()
        for rj in expected_json:
            if not isinstance(rj, dict):
                raise syntax("\"rows\" must be an array of rows", self.op)
            missing = [c for c in columns if c not in rj]
            extra = [c for c in rj if c not in columns]
            if missing or extra:
                raise syntax("each of \"rows\" must have exactly the \"columns\"", rj)
            # check_size=False gives the set form that as_set gives below.
            expected[tuple(_hashable(D.datum_from_json(column_type(self.tbl, c), rj[c],
                                                       self.symbols.ref, check_size=False,
                                                       check=False))
                           for c in columns)] += 1
        actual = Counter(
            tuple(_hashable(D.as_set(column_type(self.tbl, c),
                                     value_of(self.tbl, c, u, r, self._version)))
                  for c in columns)
            for u, r in self._where())
        if (actual == expected) == (until == "=="):
            return {}
        if timeout > 0 and can_block:
            raise Blocked(timeout)
        raise OvsdbError(TIMED_OUT, "\"where\" clause test failed")


def _hashable(v: Any) -> Any:
    return frozenset(v.items()) if isinstance(v, dict) else v


def _mutate(ctype: ColumnType, current: Any, mutator: str, arg: Any, cname: str) -> Any:
    elems = D.as_set(ctype, current)
    if mutator in ARITH:
        new = frozenset(_arith(ctype.key, a, mutator, arg) for a in elems)
    elif ctype.is_map:
        if mutator == "insert":
            new = FrozenMap({**arg, **elems})
        elif isinstance(arg, dict):
            new = FrozenMap({k: v for k, v in elems.items() if arg.get(k, _MISSING) != v})
        else:
            new = FrozenMap({k: v for k, v in elems.items() if k not in arg})
    else:
        new = elems | arg if mutator == "insert" else elems - arg
    n = len(new)
    if n < ctype.n_min or (ctype.n_max is not None and n > ctype.n_max):
        raise OvsdbError(CONSTRAINT_VIOLATION, f"\"{mutator}\" on column {cname} would "
                         f"leave {n} element(s); the column takes {ctype.n_min} to "
                         f"{'unlimited' if ctype.n_max is None else ctype.n_max}")
    return D.canonical(ctype, new)


_MISSING = object()


def _arith(base: BaseType, a, mutator: str, b):
    if mutator in ("/=", "%=") and b == 0:
        raise OvsdbError(DOMAIN_ERROR, "Division by zero.")
    if base.type == "integer":
        if mutator == "+=":
            r = a + b
        elif mutator == "-=":
            r = a - b
        elif mutator == "*=":
            r = a * b
        else:
            q = abs(a) // abs(b)  # C's division truncates toward zero
            q = q if (a >= 0) == (b >= 0) else -q
            r = q if mutator == "/=" else a - b * q
        if not INT64_MIN <= r <= INT64_MAX:
            raise OvsdbError(RANGE_ERROR, f"Result of \"{mutator}\" operation is out of "
                             "range.")
    else:
        r = {"+=": a + b, "-=": a - b, "*=": a * b}.get(mutator)
        if r is None:
            r = a / b
        if not math.isfinite(r):
            raise OvsdbError(RANGE_ERROR, f"Result of \"{mutator}\" operation is out of "
                             "range.")
    try:
        return base.check(r)
    except ValueError as e:
        raise OvsdbError(CONSTRAINT_VIOLATION, f"Result of \"{mutator}\" operation is "
                         f"{r}, which is not {e}") from None
