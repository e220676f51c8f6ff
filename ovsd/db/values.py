"""Column values in ovs-vsctl's notation, both ways.

Reading (what ``ovs-vsctl set`` accepts): atoms are bare words or JSON-style
"quoted strings"; a set is ``[a,b]`` (brackets optional unless empty), a map
``{k=v,k2=v2}`` (braces optional unless empty); elements are separated by
commas and/or spaces; an integer element of a set may be a range ``1-5``;
booleans are true/yes/on/1 and false/no/off/0.

Writing (what ``ovs-vsctl get`` and ``list`` print): sets and maps sorted,
elements joined by ", ", brackets always for a column that may hold more than
one value and for an empty value, strings quoted unless they are a plain word
that cannot be mistaken for another type.

Errors are :class:`~ovsd.db.schema.ColumnValueError`, naming the column.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ovsd.db.schema import BaseType, Column, ColumnType, FrozenMap

DELIMITERS = frozenset(':=, []{}!<>')
MAX_RANGE = 4096  # as OVS: "1-100000" in a set is refused rather than expanded

_INT_RE = re.compile(r"\s*[+-]?\d+")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def next_token(text: str, pos: int = 0) -> tuple[str, int]:
    """The token starting at ``text[pos]`` and the position just after it.

    A token runs up to the next delimiter (``:=, []{}!<>``) outside double
    quotes.  A backslash outside quotes escapes the next character (and is
    dropped); inside quotes it is kept for the string's own unescaping.  The
    quotes themselves stay in the token.
    """
    out: list[str] = []
    in_quotes = False
    i = pos
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"{text[pos:]}: backslash at end of argument")
            if in_quotes:
                out.append("\\")
            out.append(text[i + 1])
            i += 2
            continue
        if not in_quotes and c in DELIMITERS:
            break
        out.append(c)
        if c == '"':
            in_quotes = not in_quotes
        i += 1
    if in_quotes:
        raise ValueError(f"{text[pos:]}: quoted string extends past end of argument")
    return "".join(out), i


def unquote(token: str) -> str:
    """The string a token denotes: a "quoted" token is unescaped as JSON."""
    if not token.startswith('"'):
        return token
    if len(token) < 2 or not token.endswith('"'):
        raise ValueError(f"{token}: missing quote at end of quoted string")
    body = token[1:-1]
    if re.search(r'(?<!\\)(?:\\\\)*"', body):
        raise ValueError(f"{token}: quoted string may not include unescaped \"")
    try:
        # strict=False: OVS takes raw control characters inside quotes.
        return json.loads(token, strict=False)
    except ValueError as e:
        raise ValueError(f"{token}: bad escape in quoted string ({e.msg})") from None


def parse_atom(column: Column, base: BaseType, token: str, role: str = "",
               allow_range: bool = False) -> list[Any]:
    """The atom(s) a token denotes: one, or several for an integer range in a set."""
    kind = base.type
    if kind == "integer":
        m = _INT_RE.fullmatch(token)
        if not m and allow_range:
            parts = re.fullmatch(r"(\s*[+-]?\d+)-([+-]?\d+)", token)
            if parts:
                lo, hi = int(parts[1]), int(parts[2])
                if hi < lo:
                    raise column.error(f"cannot use range {token!r}: its end is before "
                                       "its start")
                if hi - lo >= MAX_RANGE:
                    raise column.error(f"cannot use range {token!r}: it is larger than "
                                       f"{MAX_RANGE} values")
                return [column.check_atom(base, i, role) for i in range(lo, hi + 1)]
        if not m:
            return [column.check_atom(base, token, role)]
        return [column.check_atom(base, int(token), role)]
    if kind == "real":
        try:
            value = float(token) if "_" not in token else token
        except ValueError:
            value = token
        return [column.check_atom(base, value, role)]
    if kind == "boolean":
        if token in _TRUE:
            return [column.check_atom(base, True, role)]
        if token in _FALSE:
            return [column.check_atom(base, False, role)]
        return [column.check_atom(base, token, role)]
    if kind == "string":
        if token == "":
            as_role = f" as a map {role}" if role else ""
            raise column.error(f'expects a string{as_role}; write "" for an empty string')
        try:
            s = unquote(token)
        except ValueError as e:
            raise column.error(f"got a bad quoted string: {e}") from None
        return [column.check_atom(base, s, role)]
    if not _UUID_RE.fullmatch(token):
        return [column.check_atom(base, token, role)]
    return [column.check_atom(base, uuid.UUID(token), role)]


def parse_value(column: Column, text: str, *, relaxed: bool = False,
                keys_only: bool = False) -> Any:
    """``text`` in ovs-vsctl notation, as ``column``'s canonical value.

    ``relaxed`` lifts the column's size limits (``add``/``remove`` pass a
    part of a value).  ``keys_only`` reads a map column's text as a set of
    keys (``remove`` accepts bare keys); the result is then a frozenset.
    """
    ctype = column.type
    is_map = ctype.is_map and not keys_only
    p = _skip_spaces(text, 0)
    if p < len(text) and text[p] == ("{" if is_map else "["):
        end_delim = "}" if is_map else "]"
        p = _skip_spaces(text, p + 1)
    elif p >= len(text):
        raise column.error(f'expects a value; write {"{}" if is_map else "[]"} for an '
                           f'empty {"map" if is_map else "set"}')
    else:
        end_delim = ""
    keys: list[Any] = []
    pairs: list[tuple[Any, Any]] = []
    while p < len(text) and text[p] != end_delim:
        if text[p] in DELIMITERS:
            raise column.error(f'cannot read {text!r}: unexpected "{text[p]}" at offset '
                               f'{p}')
        start = p
        token, p = _token(column, text, p)
        atoms = parse_atom(column, ctype.key, token, "key" if is_map else "",
                           allow_range=True)
        if is_map:
            p = _skip_spaces(text, p)
            if p >= len(text) or text[p] != "=":
                found = f'"{text[p]}"' if p < len(text) else "the end"
                raise column.error(f'cannot read {text[start:]!r}: expected "=" after the '
                                   f'key {token!r}, found {found}')
            p = _skip_spaces(text, p + 1)
            vtoken, p = _token(column, text, p)
            value = parse_atom(column, ctype.value, vtoken, "value")[0]
            pairs.extend((a, value) for a in atoms)
        else:
            keys.extend(atoms)
        p = _skip_spaces(text, p)
        if p < len(text) and text[p] == ",":
            p = _skip_spaces(text, p + 1)
    if end_delim:
        if p >= len(text):
            raise column.error(f'cannot read {text!r}: missing "{end_delim}" at the end')
        if _skip_spaces(text, p + 1) < len(text):
            raise column.error(f'cannot read {text!r}: unexpected text after '
                               f'"{end_delim}"')
    n = len(pairs) if is_map else len(keys)
    if is_map:
        value = FrozenMap(pairs)
        if len(value) != n:
            raise column.error(f"cannot read {text!r}: the map has a key twice")
    else:
        value = frozenset(keys)
        if len(value) != n:
            raise column.error(f"cannot read {text!r}: the set has a value twice")
    if not relaxed:
        column.check_size(n, text)
    if is_map or keys_only or ctype.is_set or relaxed:
        return value
    return ctype.from_atoms(value)


def _token(column: Column, text: str, pos: int) -> tuple[str, int]:
    try:
        return next_token(text, pos)
    except ValueError as e:
        raise column.error(f"cannot read {e}") from None


def _skip_spaces(text: str, p: int) -> int:
    while p < len(text) and text[p].isspace():
        p += 1
    return p


def needs_quotes(s: str) -> bool:
    """Whether ovs-vsctl prints this string quoted (so it reads back as a string)."""
    if not _WORD_RE.fullmatch(s) or not s.isascii():
        return True
    return s in ("true", "false") or bool(_UUID_RE.fullmatch(s))


def quote(s: str) -> str:
    """``s`` as a JSON string, escaped as OVS escapes it (non-ASCII kept as is)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch < " ":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                        "\r": "\\r"}.get(ch, f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_atom(base: BaseType, atom: Any) -> str:
    kind = base.type
    if kind == "integer":
        return str(atom)
    if kind == "real":
        return _format_real(atom)
    if kind == "boolean":
        return "true" if atom else "false"
    if kind == "string":
        return quote(atom) if needs_quotes(atom) else atom
    return str(atom)


def _format_real(x: float) -> str:
    # C's "%.15g": 15 significant digits, exponent with at least two digits.
    s = f"{x:.15g}"
    m = re.fullmatch(r"(-?[\d.]+)e([+-])(\d+)", s)
    if m:
        s = f"{m[1]}e{m[2]}{int(m[3]):02d}"
    return s


def format_value(ctype: ColumnType, value: Any) -> str:
    """A canonical value as ovs-vsctl prints it."""
    atoms = sorted(ctype.atoms(value))
    if ctype.is_map:
        body = ", ".join(f"{format_atom(ctype.key, k)}={format_atom(ctype.value, value[k])}"
                         for k in atoms)
    else:
        body = ", ".join(format_atom(ctype.key, a) for a in atoms)
    if ctype.n_max != 1 or not atoms:
        return ("{" + body + "}") if ctype.is_map else ("[" + body + "]")
    return body
