"""OVSDB's JSON forms of values (RFC 7047 section 5.1) <-> the store's values.

``<atom>``: a number, boolean, string, ``["uuid", U]`` or, inside a
transaction, ``["named-uuid", NAME]``; ``<set>``: one atom or
``["set", [atoms]]``; ``<map>``: ``["map", [[key, value], ...]]``.  The store
keeps a scalar column as its atom, an optional one as the atom or None, a set
as a frozenset and a map as a FrozenMap (see :mod:`ovsd.db.schema`).

Errors follow OVSDB: a value of the wrong shape or atomic type is a "syntax
error"; one of the right type outside the column's constraints (an enum, a
range, a length, the number of elements) is a "constraint violation".
"""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any, Callable

from ovsd.db.schema import BaseType, ColumnType, FrozenMap
from ovsd.ovsdb.errors import CONSTRAINT_VIOLATION, OvsdbError, syntax

UUID = uuidlib.UUID
ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Resolves ["named-uuid", NAME] inside a transaction; None outside one.
Symbols = Callable[[str], UUID] | None

UUID_TYPE = ColumnType(BaseType("uuid"))


def atom_from_json(base: BaseType, j: Any, symbols: Symbols = None, *,
                   check: bool = True) -> Any:
    """The canonical atom for ``j``; ``check=False`` skips the constraints
    (enum, ranges, lengths) but never the type."""
    kind = base.type
    if kind == "uuid":
        if isinstance(j, list) and len(j) == 2 and isinstance(j[1], str):
            if j[0] == "uuid":
                try:
                    atom = UUID(j[1])
                except ValueError:
                    raise syntax(f"{j[1]!r} is not a valid UUID", j) from None
            elif j[0] == "named-uuid" and symbols is not None:
                if not ID_RE.match(j[1]):
                    raise syntax(f"{j[1]!r} is not a valid <id> for a named-uuid", j)
                atom = symbols(j[1])
            else:
                raise syntax("expected [\"uuid\", <uuid>]" + (
                    " or [\"named-uuid\", <id>]" if symbols is not None else ""), j)
        else:
            raise syntax("expected a UUID ([\"uuid\", <uuid>])", j)
    elif kind == "integer":
        if isinstance(j, bool) or not isinstance(j, int):
            raise syntax("expected an integer", j)
        if not -(1 << 63) <= j < (1 << 63):
            raise OvsdbError(CONSTRAINT_VIOLATION, f"{j} is out of the 64-bit integer range")
        atom = j
    elif kind == "real":
        if isinstance(j, bool) or not isinstance(j, (int, float)):
            raise syntax("expected a real number", j)
        atom = float(j)
    elif kind == "boolean":
        if not isinstance(j, bool):
            raise syntax("expected a boolean", j)
        atom = j
    else:
        if not isinstance(j, str):
            raise syntax("expected a string", j)
        atom = j
    if not check:
        return atom
    try:
        return base.check(atom)
    except ValueError as e:
        raise OvsdbError(CONSTRAINT_VIOLATION,
                         f"{_show_atom(atom)} is not {e}") from None


def _show_atom(atom: Any) -> str:
    text = repr(atom) if isinstance(atom, str) else str(atom)
    return text if len(text) <= 80 else text[:77] + "..."


def atom_to_json(atom: Any) -> Any:
    return ["uuid", str(atom)] if isinstance(atom, UUID) else atom


def _elements(ctype: ColumnType, j: Any) -> list:
    """The JSON elements of a set (pairs for a map)."""
    if ctype.is_map:
        if not (isinstance(j, list) and len(j) == 2 and j[0] == "map"
                and isinstance(j[1], list)):
            raise syntax("expected a map ([\"map\", [[key, value], ...]])", j)
        for pair in j[1]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise syntax("a map's elements are [key, value] pairs", pair)
        return j[1]
    if isinstance(j, list) and len(j) == 2 and j[0] == "set":
        if not isinstance(j[1], list):
            raise syntax("expected [\"set\", [...]]", j)
        return j[1]
    return [j]


def datum_from_json(ctype: ColumnType, j: Any, symbols: Symbols = None, *,
                    check_size: bool = True, check: bool = True,
                    what: str = "value") -> Any:
    """The store's canonical value of a column of type ``ctype`` for ``j``.

    ``check_size=False`` accepts any number of elements and then always
    returns a frozenset (a FrozenMap for maps): the form conditions and
    mutations work on.
    """
    elements = _elements(ctype, j)
    if ctype.is_map:
        out: dict = {}
        for k, v in elements:
            key = atom_from_json(ctype.key, k, symbols, check=check)
            if key in out:
                raise OvsdbError(CONSTRAINT_VIOLATION, f"{what}: map has duplicate key "
                                 f"{_show_atom(key)}")
            out[key] = atom_from_json(ctype.value, v, symbols, check=check)
        value: Any = FrozenMap(out)
        n = len(out)
    else:
        atoms = [atom_from_json(ctype.key, a, symbols, check=check) for a in elements]
        value = frozenset(atoms)
        if len(value) != len(atoms):
            raise OvsdbError(CONSTRAINT_VIOLATION, f"{what}: set has duplicate values")
        n = len(value)
    if not check_size:
        return value
    if n < ctype.n_min or (ctype.n_max is not None and n > ctype.n_max):
        limit = "unlimited" if ctype.n_max is None else ctype.n_max
        raise OvsdbError(CONSTRAINT_VIOLATION, f"{what} has {n} element(s); the column "
                         f"takes {ctype.n_min} to {limit}")
    return canonical(ctype, value)


def canonical(ctype: ColumnType, value: Any) -> Any:
    """A frozenset (or map) of elements in the store's form for ``ctype``."""
    if ctype.is_map or ctype.is_set:
        return value
    if ctype.is_scalar:
        return next(iter(value))
    return next(iter(value)) if value else None


def as_set(ctype: ColumnType, value: Any) -> Any:
    """The store's value as a frozenset of atoms (or a map): uniform for comparing."""
    if ctype.is_map:
        return value
    if ctype.is_set:
        return value
    if value is None:
        return frozenset()
    return frozenset((value,))


def _sorted(atoms) -> list:
    try:
        return sorted(atoms)
    except TypeError:
        return list(atoms)


def datum_to_json(ctype: ColumnType, value: Any) -> Any:
    if ctype.is_map:
        return ["map", [[atom_to_json(k), atom_to_json(value[k])] for k in _sorted(value)]]
    atoms = as_set(ctype, value)
    if len(atoms) == 1:
        return atom_to_json(next(iter(atoms)))
    return ["set", [atom_to_json(a) for a in _sorted(atoms)]]


def set_to_json(ctype: ColumnType, elements: Any) -> Any:
    """A set (or map) of elements as JSON, whatever the column's size limits."""
    if ctype.is_map:
        return datum_to_json(ctype, elements)
    if len(elements) == 1:
        return atom_to_json(next(iter(elements)))
    return ["set", [atom_to_json(a) for a in _sorted(elements)]]


def diff(ctype: ColumnType, old: Any, new: Any) -> Any:
    """What update2's "modify" carries for a column: the new value for a column
    of at most one element, else the elements (pairs) in one value but not
    the other, a changed map value counting as the new pair."""
    if ctype.n_max == 1:
        return datum_to_json(ctype, new)
    if ctype.is_map:
        out = {k: v for k, v in old.items() if k not in new}
        out.update({k: v for k, v in new.items() if old.get(k, _MISSING) != v})
        return datum_to_json(ctype, out)
    return set_to_json(ctype, old ^ new)


_MISSING = object()
