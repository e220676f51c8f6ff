"""The database schema: OVS's Open_vSwitch schema, as column type objects.

``vswitch.ovsschema`` beside this file is OVS 3.1's schema trimmed to the
tables and columns ovsd implements; names, types and constraints are OVS's,
so that OVSDB clients (ovs-vsctl, the OVS Python IDL) accept it.

Every column value has one canonical Python form, which the store keeps and
hands out:

- a scalar column (exactly one value) holds the atom itself:
  ``int``, ``float``, ``bool``, ``str`` or ``uuid.UUID``;
- an optional column (zero or one value, not a map) holds the atom or
  ``None``;
- a set column (more than one value allowed) holds a ``frozenset`` of atoms;
- a map column holds a :class:`FrozenMap` (a read-only ``dict``) of atoms.

:meth:`Column.convert` turns a Python value into that form, checking every
constraint of the schema, and raises :class:`ColumnValueError` naming the
column, its table, what was expected and what was given.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ATOMIC_TYPES = ("integer", "real", "boolean", "string", "uuid")
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UNLIMITED = None  # n_max of a column whose schema says "max": "unlimited"

DEFAULT_SCHEMA_PATH = Path(__file__).with_name("vswitch.ovsschema")

# Columns the switch fills in to report its state.  OVS lets ovs-vsctl write
# them; ovsd refuses that in its own verbs, since the next write-back would
# silently undo the user's change.
SWITCH_OWNED: dict[str, frozenset[str]] = {
    "Open_vSwitch": frozenset({
        "cur_cfg", "statistics", "ovs_version", "db_version", "system_type",
        "system_version", "datapath_types", "iface_types", "dpdk_initialized"}),
    "Bridge": frozenset({"datapath_id", "datapath_version", "status"}),
    "Port": frozenset({"status"}),
    "Interface": frozenset({
        "ofport", "error", "statistics", "status", "admin_state", "link_state",
        "link_speed", "duplex", "mtu", "mac_in_use", "ifindex"}),
}


class SchemaError(ValueError):
    """The schema file itself is malformed."""


class ColumnValueError(ValueError):
    """A value does not fit a column's type or constraints."""

    def __init__(self, table: str, column: str, message: str):
        super().__init__(f"column '{column}' of table '{table}' {message}")
        self.table = table
        self.column = column


class FrozenMap(dict):
    """A dict that refuses changes: the store's form of a map column.

    A subclass of ``dict`` so that msgpack, json and ``==`` treat it as one;
    changing it raises ``TypeError`` so that nobody edits a committed row in
    place (the store would never notice).
    """

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("a database map is read-only; build a new dict and write it "
                        "in a transaction")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return (FrozenMap, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenMap({dict.__repr__(self)})"


EMPTY_MAP = FrozenMap()


def _quote(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class BaseType:
    """One atomic type with its constraints (RFC 7047 <base-type>)."""

    type: str
    enum: frozenset | None = None
    min_integer: int | None = None
    max_integer: int | None = None
    min_real: float | None = None
    max_real: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    ref_table: str | None = None
    ref_type: str = "strong"

    @classmethod
    def from_json(cls, j: Any, where: str) -> BaseType:
        if isinstance(j, str):
            if j not in ATOMIC_TYPES:
                raise SchemaError(f"{where}: unknown atomic type {j!r}")
            return cls(j)
        if not isinstance(j, dict) or not isinstance(j.get("type"), str):
            raise SchemaError(f"{where}: a base type is a type name or an object with 'type'")
        kind = j["type"]
        if kind not in ATOMIC_TYPES:
            raise SchemaError(f"{where}: unknown atomic type {kind!r}")
        allowed = {"type", "enum"} | {
            "integer": {"minInteger", "maxInteger"}, "real": {"minReal", "maxReal"},
            "string": {"minLength", "maxLength"}, "uuid": {"refTable", "refType"},
            "boolean": set()}[kind]
        unknown = set(j) - allowed
        if unknown:
            raise SchemaError(f"{where}: unknown member(s) {sorted(unknown)} for a {kind}")
        base = cls(kind, min_integer=j.get("minInteger"), max_integer=j.get("maxInteger"),
                   min_real=j.get("minReal"), max_real=j.get("maxReal"),
                   min_length=j.get("minLength"), max_length=j.get("maxLength"),
                   ref_table=j.get("refTable"), ref_type=j.get("refType", "strong"))
        if base.ref_type not in ("strong", "weak"):
            raise SchemaError(f"{where}: refType must be 'strong' or 'weak', not "
                              f"{base.ref_type!r}")
        for lo, hi, what in ((base.min_integer, base.max_integer, "minInteger"),
                             (base.min_real, base.max_real, "minReal"),
                             (base.min_length, base.max_length, "minLength")):
            if lo is not None and hi is not None and lo > hi:
                raise SchemaError(f"{where}: {what} exceeds its maximum")
        if "enum" in j:
            plain = cls(kind)
            values = j["enum"]
            if isinstance(values, list) and len(values) == 2 and values[0] == "set":
                values = values[1]
            else:
                values = [values]
            try:
                enum = frozenset(plain.check(_atom_from_json(kind, v)) for v in values)
            except ValueError as e:
                raise SchemaError(f"{where}: bad enum: {e}") from None
            base = cls(kind, enum=enum)
        return base

    def to_json(self) -> Any:
        if self == BaseType(self.type):
            return self.type
        j: dict[str, Any] = {"type": self.type}
        if self.enum is not None:
            atoms = sorted(self.enum)
            j["enum"] = (["set", [_atom_to_json(self.type, a) for a in atoms]]
                         if len(atoms) != 1 else _atom_to_json(self.type, atoms[0]))
        for key, v in (("minInteger", self.min_integer), ("maxInteger", self.max_integer),
                       ("minReal", self.min_real), ("maxReal", self.max_real),
                       ("minLength", self.min_length), ("maxLength", self.max_length),
                       ("refTable", self.ref_table)):
            if v is not None:
                j[key] = v
        if self.ref_table is not None and self.ref_type != "strong":
            j["refType"] = self.ref_type
        return j

    @property
    def is_strong_ref(self) -> bool:
        return self.type == "uuid" and self.ref_table is not None and self.ref_type == "strong"

    @property
    def is_weak_ref(self) -> bool:
        return self.type == "uuid" and self.ref_table is not None and self.ref_type == "weak"

    def describe(self) -> str:
        """What a valid atom is, in words: 'an integer in 1..65279'."""
        if self.enum is not None:
            return "one of " + ", ".join(_quote(a) if self.type == "string" else str(a)
                                         for a in sorted(self.enum))
        if self.type == "integer":
            return "an integer" + _bounds(self.min_integer, self.max_integer)
        if self.type == "real":
            return "a real number" + _bounds(self.min_real, self.max_real)
        if self.type == "boolean":
            return "a boolean (true or false)"
        if self.type == "string":
            lo, hi = self.min_length, self.max_length
            if lo is None and hi is None:
                return "a string"
            if hi is None:
                return f"a string of at least {lo} characters"
            return f"a string of {lo or 0}..{hi} characters"
        if self.ref_table:
            return f"the UUID of a {self.ref_table} row"
        return "a UUID"

    def default(self) -> Any:
        if self.enum is not None:
            return min(self.enum)
        return {"integer": 0, "real": 0.0, "boolean": False, "string": "",
                "uuid": uuid.UUID(int=0)}[self.type]

    def check(self, atom: Any) -> Any:
        """The canonical form of ``atom``; ValueError (the expectation) if it does not fit."""
        kind = self.type
        if kind == "integer":
            if isinstance(atom, bool) or not isinstance(atom, int):
                raise ValueError(self.describe())
            lo = INT64_MIN if self.min_integer is None else self.min_integer
            hi = INT64_MAX if self.max_integer is None else self.max_integer
            if not lo <= atom <= hi:
                raise ValueError(self.describe() if self.min_integer is not None
                                 or self.max_integer is not None
                                 else "a 64-bit signed integer")
        elif kind == "real":
            if isinstance(atom, bool) or not isinstance(atom, (int, float)):
                raise ValueError(self.describe())
            atom = float(atom)
            if not math.isfinite(atom):
                raise ValueError(self.describe() + " (finite)")
            if ((self.min_real is not None and atom < self.min_real)
                    or (self.max_real is not None and atom > self.max_real)):
                raise ValueError(self.describe())
            atom = atom + 0.0  # -0.0 -> 0.0, as OVS's JSON reader does
        elif kind == "boolean":
            if not isinstance(atom, bool):
                raise ValueError(self.describe())
        elif kind == "string":
            if not isinstance(atom, str):
                raise ValueError(self.describe())
            try:
                atom.encode()
            except UnicodeEncodeError:
                raise ValueError("a string of valid Unicode (no lone surrogates)") from None
            if ((self.min_length is not None and len(atom) < self.min_length)
                    or (self.max_length is not None and len(atom) > self.max_length)):
                raise ValueError(self.describe())
        else:
            if isinstance(atom, str):
                try:
                    atom = uuid.UUID(atom)
                except ValueError:
                    raise ValueError(self.describe()) from None
            elif not isinstance(atom, uuid.UUID):
                raise ValueError(self.describe())
        if self.enum is not None and atom not in self.enum:
            raise ValueError(self.describe())
        return atom


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _atom_from_json(kind: str, j: Any) -> Any:
    if kind == "uuid":
        if (isinstance(j, list) and len(j) == 2 and j[0] == "uuid"
                and isinstance(j[1], str)):
            return j[1]
        raise ValueError(f"expected [\"uuid\", <uuid>], got {j!r}")
    if kind == "real" and isinstance(j, int) and not isinstance(j, bool):
        return float(j)
    return j


def _atom_to_json(kind: str, atom: Any) -> Any:
    return ["uuid", str(atom)] if kind == "uuid" else atom


@dataclass(frozen=True)
class ColumnType:
    """A column's type: key (and value, for maps) with set size limits."""

    key: BaseType
    value: BaseType | None = None
    n_min: int = 1
    n_max: int | None = 1  # None = unlimited

    @classmethod
    def from_json(cls, j: Any, where: str) -> ColumnType:
        if isinstance(j, str):
            return cls(BaseType.from_json(j, where))
        if not isinstance(j, dict) or "key" not in j:
            raise SchemaError(f"{where}: a column type is a type name or an object with 'key'")
        unknown = set(j) - {"key", "value", "min", "max"}
        if unknown:
            raise SchemaError(f"{where}: unknown member(s) {sorted(unknown)} in a type")
        key = BaseType.from_json(j["key"], where)
        value = BaseType.from_json(j["value"], where) if "value" in j else None
        n_min = j.get("min", 1)
        n_max = j.get("max", 1)
        if n_max == "unlimited":
            n_max = UNLIMITED
        if (not isinstance(n_min, int) or n_min not in (0, 1)
                or (n_max is not None and (not isinstance(n_max, int) or n_max < 1))
                or (n_max is not None and n_min > n_max)):
            raise SchemaError(f"{where}: min must be 0 or 1 and max a positive integer "
                              f"or \"unlimited\" no less than min, got min={n_min!r} "
                              f"max={j.get('max', 1)!r}")
        return cls(key, value, n_min, n_max)

    def to_json(self) -> Any:
        if self.is_scalar and self.value is None and self.key == BaseType(self.key.type):
            return self.key.type
        j: dict[str, Any] = {"key": self.key.to_json()}
        if self.value is not None:
            j["value"] = self.value.to_json()
        if self.n_min != 1:
            j["min"] = self.n_min
        if self.n_max is None:
            j["max"] = "unlimited"
        elif self.n_max != 1:
            j["max"] = self.n_max
        return j

    @property
    def is_map(self) -> bool:
        return self.value is not None

    @property
    def is_scalar(self) -> bool:
        return self.n_min == 1 and self.n_max == 1 and self.value is None

    @property
    def is_optional(self) -> bool:
        return self.n_min == 0 and self.n_max == 1 and self.value is None

    @property
    def is_set(self) -> bool:
        """A set column: held as a frozenset (more than one value allowed)."""
        return self.value is None and self.n_max != 1

    def default(self) -> Any:
        if self.is_map:
            return EMPTY_MAP
        if self.is_scalar:
            return self.key.default()
        if self.is_optional:
            return None
        return frozenset()

    def describe(self) -> str:
        if self.is_scalar:
            return self.key.describe()
        if self.is_optional:
            return f"{self.key.describe()}, or nothing"
        limit = "" if self.n_max is None else f"up to {self.n_max} "
        if self.is_map:
            return (f"a map of {limit}pairs with keys {self.key.describe()} and "
                    f"values {self.value.describe()}")
        return f"a set of {limit}values, each {self.key.describe()}"

    def atoms(self, value: Any) -> Iterable[Any]:
        """The atoms of a canonical value (keys only, for a map)."""
        if self.is_map or self.is_set:
            return value
        if self.is_optional:
            return () if value is None else (value,)
        return (value,)

    def size(self, value: Any) -> int:
        if self.is_map or self.is_set:
            return len(value)
        if self.is_optional:
            return 0 if value is None else 1
        return 1

    def from_atoms(self, atoms: Iterable[Any]) -> Any:
        """A canonical value from already checked atoms (or pairs, for a map)."""
        if self.is_map:
            return FrozenMap(atoms)
        if self.is_set:
            return frozenset(atoms)
        items = list(atoms)
        if self.is_optional:
            return items[0] if items else None
        return items[0] if items else self.key.default()


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    type: ColumnType
    mutable: bool = True
    ephemeral: bool = False
    persistent: bool = True  # written to the database file
    switch_owned: bool = False  # filled in by the switch, refused in ovsd's own verbs

    def error(self, message: str) -> ColumnValueError:
        return ColumnValueError(self.table, self.name, message)

    def default(self) -> Any:
        return self.type.default()

    def check_atom(self, base: BaseType, atom: Any, role: str = "") -> Any:
        """``atom`` checked against ``base``; ``role`` says 'key' or 'value' for maps."""
        try:
            return base.check(atom)
        except ValueError as e:
            as_role = f" as a map {role}" if role else ""
            raise self.error(f"expects {e}{as_role}, got {_quote(atom)}") from None

    def check_size(self, n: int, shown: str | None = None) -> None:
        t = self.type
        unit = "pair" if t.is_map else "value"
        got = f"{n} {unit}{'s' if n != 1 else ''}" + (f" ({shown})" if shown else "")
        if n < t.n_min:
            raise self.error(f"expects at least {t.n_min} {unit}{'s' if t.n_min != 1 else ''}, "
                             f"got {got}")
        if t.n_max is not None and n > t.n_max:
            raise self.error(f"expects at most {t.n_max} {unit}{'s' if t.n_max != 1 else ''}, "
                             f"got {got}")

    def convert(self, value: Any) -> Any:
        """``value`` in canonical form, checked against every constraint."""
        t = self.type
        if t.is_map:
            if not isinstance(value, Mapping):
                raise self.error(f"expects a map (dict), got {_quote(value)}")
            out = FrozenMap((self.check_atom(t.key, k, "key"),
                             self.check_atom(t.value, v, "value"))
                            for k, v in value.items())
            if len(out) != len(value):
                raise self.error(f"got two keys that are the same value: {value!r}")
            self.check_size(len(out))
            return out
        if t.is_scalar:
            return self.check_atom(t.key, value)
        if t.is_optional:
            if value is None:
                return None
            if isinstance(value, (set, frozenset, list, tuple)):
                self.check_size(len(value))
                return self.check_atom(t.key, next(iter(value))) if value else None
            return self.check_atom(t.key, value)
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise self.error(f"expects a set (set, frozenset, list or tuple), got "
                             f"{_quote(value)}")
        out = frozenset(self.check_atom(t.key, a) for a in value)
        self.check_size(len(out))
        return out

    def to_json(self) -> dict:
        j: dict[str, Any] = {"type": self.type.to_json()}
        if self.ephemeral:
            j["ephemeral"] = True
        if not self.mutable:
            j["mutable"] = False
        return j


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column]  # in the schema file's order
    is_root: bool = False
    max_rows: int | None = None
    indexes: tuple[tuple[str, ...], ...] = ()
    sorted_names: tuple[str, ...] = field(default=(), compare=False)
    # (column, "key" or "value", referenced table, strong?) for each reference.
    refs: tuple[tuple[str, str, str, bool], ...] = field(default=(), compare=False)

    def column(self, name: str) -> Column:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"table '{self.name}' has no column '{name}'; its columns are "
                           f"{', '.join(self.sorted_names)}") from None

    @property
    def name_column(self) -> str | None:
        """The column that names a row for people ('name' where it is an index)."""
        return "name" if ("name",) in self.indexes else None

    def to_json(self) -> dict:
        j: dict[str, Any] = {"columns": {n: c.to_json() for n, c in self.columns.items()}}
        if self.is_root:
            j["isRoot"] = True
        if self.max_rows is not None:
            j["maxRows"] = self.max_rows
        if self.indexes:
            j["indexes"] = [list(ix) for ix in self.indexes]
        return j


@dataclass(frozen=True)
class Schema:
    name: str
    version: str
    tables: dict[str, Table]
    cksum: str | None = None

    @classmethod
    def from_json(cls, j: Any) -> Schema:
        if not isinstance(j, dict):
            raise SchemaError("a schema is a JSON object")
        for key in ("name", "version", "tables"):
            if key not in j:
                raise SchemaError(f"the schema has no '{key}'")
        version = j["version"]
        parts = version.split(".") if isinstance(version, str) else []
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise SchemaError(f"schema version {version!r} is not of the form x.y.z")
        raw_tables = j["tables"]
        if not isinstance(raw_tables, dict) or not raw_tables:
            raise SchemaError("the schema's 'tables' must be a non-empty object")
        any_root = any(isinstance(t, dict) and t.get("isRoot") for t in raw_tables.values())
        # As in OVS: a schema that predates isRoot (no table has it) makes every table root.
        roots = {name: (bool(t.get("isRoot")) if any_root else True)
                 for name, t in raw_tables.items() if isinstance(t, dict)}
        tables: dict[str, Table] = {}
        for tname, tj in raw_tables.items():
            if not isinstance(tj, dict) or not isinstance(tj.get("columns"), dict):
                raise SchemaError(f"table {tname!r} has no 'columns' object")
            columns = {}
            for cname, cj in tj["columns"].items():
                where = f"column {tname}.{cname}"
                if cname.startswith("_"):
                    raise SchemaError(f"{where}: names beginning with '_' are reserved")
                if not isinstance(cj, dict) or "type" not in cj:
                    raise SchemaError(f"{where}: a column is an object with a 'type'")
                ctype = ColumnType.from_json(cj["type"], where)
                ephemeral = bool(cj.get("ephemeral", False))
                for base in (ctype.key, ctype.value):
                    if base is not None and base.ref_table is not None:
                        if base.ref_table not in raw_tables:
                            raise SchemaError(f"{where} refers to undefined table "
                                              f"{base.ref_table!r}")
                # As in OVS: a strong reference to a non-root table is always
                # stored, or reloading the file would garbage-collect its target.
                persistent = not ephemeral or any(
                    b is not None and b.is_strong_ref and not roots[b.ref_table]
                    for b in (ctype.key, ctype.value))
                columns[cname] = Column(tname, cname, ctype,
                                        mutable=bool(cj.get("mutable", True)),
                                        ephemeral=ephemeral, persistent=persistent,
                                        switch_owned=cname in SWITCH_OWNED.get(tname, ()))
            indexes = []
            for ix in tj.get("indexes", []):
                if (not isinstance(ix, list) or not ix
                        or any(c not in columns for c in ix)):
                    raise SchemaError(f"table {tname!r}: index {ix!r} names unknown columns")
                indexes.append(tuple(ix))
            max_rows = tj.get("maxRows")
            if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
                raise SchemaError(f"table {tname!r}: maxRows must be a positive integer")
            refs = tuple((c.name, part, base.ref_table, base.is_strong_ref)
                         for c in columns.values()
                         for base, part in ((c.type.key, "key"), (c.type.value, "value"))
                         if base is not None and base.ref_table is not None)
            tables[tname] = Table(tname, columns, roots[tname], max_rows, tuple(indexes),
                                  tuple(sorted(columns)), refs)
        return cls(j["name"], version, tables, j.get("cksum"))

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise SchemaError(f"cannot read schema {path}: {e.strerror or e}") from None
        try:
            j = json.loads(text)
        except ValueError as e:
            raise SchemaError(f"schema {path} is not JSON: {e}") from None
        try:
            return cls.from_json(j)
        except SchemaError as e:
            raise SchemaError(f"schema {path}: {e}") from None

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table '{name}' in the {self.name} schema; its tables are "
                           f"{', '.join(self.tables)}") from None

    def to_json(self) -> dict:
        j: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.cksum is not None:
            j["cksum"] = self.cksum
        j["tables"] = {n: t.to_json() for n, t in self.tables.items()}
        return j


@functools.cache
def default_schema() -> Schema:
    """The Open_vSwitch schema that ovsd implements (loaded once)."""
    return Schema.load(DEFAULT_SCHEMA_PATH)
