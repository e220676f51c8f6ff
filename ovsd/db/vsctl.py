"""ovs-vsctl's generic database verbs: set, get, list, add, remove, clear.

Arguments and output follow ``man ovs-vsctl`` ("Database Commands"): table
names may be abbreviated (case-insensitively, '-' for '_'), as may column
names; a record is named by its ``name`` (Bridge, Port, Interface), by its
UUID or a unique prefix of at least 4 characters of it, or ``.`` for a table's
only row; values use ovs-vsctl's notation (:mod:`ovsd.db.values`).  Output is
what ovs-vsctl prints, byte for byte: ``get`` one value per line, ``list``
"column : value" blocks.

One difference on purpose: the columns the switch writes back (``ofport``,
``status``, ``statistics``, ...; see :data:`ovsd.db.schema.SWITCH_OWNED`)
cannot be changed with set/add/remove/clear.  ovs-vsctl allows it, but
ovsd would overwrite the change at its next report.

A list of commands runs as one transaction: all of them take effect, or none
(and :class:`VsctlError` says why).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ovsd.db.schema import Column, ColumnValueError, Table
from ovsd.db.store import UUID, Database, Row, Transaction, TransactionError
from ovsd.db.values import format_atom, format_value, next_token, parse_atom, parse_value

HEADING_WIDTH = 20  # ovs-vsctl's list pads column names to 20 characters

_FULL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        r"[0-9a-fA-F]{12}")
_TEMPLATE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

# What to use instead of a column the switch owns.
_HINTS = {
    ("Interface", "ofport"): "set ofport_request to ask for an OpenFlow port number",
    ("Interface", "mtu"): "set mtu_request to ask for an MTU",
    ("Interface", "mac_in_use"): "set mac to ask for a MAC address",
    ("Open_vSwitch", "cur_cfg"): "ovsd sets it to next_cfg once it has applied a change",
}


class VsctlError(Exception):
    """A command that cannot be carried out; nothing was changed."""


@dataclass
class Command:
    verb: str
    args: list[str]
    if_exists: bool = False
    columns: str | None = None  # list's --columns

    @classmethod
    def parse(cls, argv: Sequence[str]) -> Command:
        """A command from ovs-vsctl-style words: [--if-exists] [--columns=...] VERB ARGS."""
        words = list(argv)
        cmd = cls("", [])
        while words and words[0].startswith("--"):
            opt = words.pop(0)
            if opt == "--if-exists":
                cmd.if_exists = True
            elif opt.startswith("--columns="):
                cmd.columns = opt[len("--columns="):]
            else:
                raise VsctlError(f"unknown option {opt!r}; expected --if-exists or "
                                 "--columns=COLUMN,...")
        if not words:
            raise VsctlError("missing command name")
        cmd.verb = words[0]
        cmd.args = words[1:]
        return cmd


@dataclass(frozen=True)
class _Verb:
    min_args: int
    usage: str


VERBS = {
    "set": _Verb(3, "set TABLE RECORD COLUMN[:KEY]=VALUE..."),
    "get": _Verb(2, "get TABLE RECORD [COLUMN[:KEY]]..."),
    "list": _Verb(1, "list TABLE [RECORD]..."),
    "add": _Verb(4, "add TABLE RECORD COLUMN [KEY=]VALUE..."),
    "remove": _Verb(4, "remove TABLE RECORD COLUMN KEY|VALUE|KEY=VALUE..."),
    "clear": _Verb(3, "clear TABLE RECORD COLUMN..."),
}


# -- entry points ---------------------------------------------------------------

def execute(db: Database, commands: Iterable[Command | Sequence[str]]) -> list[str]:
    """Run commands in one transaction; returns each command's output text."""
    cmds = [c if isinstance(c, Command) else Command.parse(c) for c in commands]
    for c in cmds:
        spec = VERBS.get(c.verb)
        if spec is None:
            raise VsctlError(f"unknown command '{c.verb}'; expected one of "
                             f"{', '.join(VERBS)}")
        if len(c.args) < spec.min_args:
            raise VsctlError(f"'{c.verb}' command requires at least {spec.min_args} "
                             f"arguments: {spec.usage}")
    try:
        with db.transaction() as txn:
            return [_run(txn, c) for c in cmds]
    except (ColumnValueError, TransactionError) as e:
        raise VsctlError(str(e)) from None


def db_set(db: Database, table: str, record: str, assignments: Sequence[str], *,
           if_exists: bool = False) -> str:
    return execute(db, [Command("set", [table, record, *assignments], if_exists)])[0]


def db_get(db: Database, table: str, record: str, columns: Sequence[str], *,
           if_exists: bool = False) -> str:
    return execute(db, [Command("get", [table, record, *columns], if_exists)])[0]


def db_list(db: Database, table: str, records: Sequence[str] = (),
            columns: Sequence[str] | str | None = None, *, if_exists: bool = False) -> str:
    if columns is not None and not isinstance(columns, str):
        columns = ",".join(columns)
    return execute(db, [Command("list", [table, *records], if_exists, columns)])[0]


def db_add(db: Database, table: str, record: str, column: str, values: Sequence[str], *,
           if_exists: bool = False) -> str:
    return execute(db, [Command("add", [table, record, column, *values], if_exists)])[0]


def db_remove(db: Database, table: str, record: str, column: str, values: Sequence[str],
              *, if_exists: bool = False) -> str:
    return execute(db, [Command("remove", [table, record, column, *values], if_exists)])[0]


def db_clear(db: Database, table: str, record: str, columns: Sequence[str], *,
             if_exists: bool = False) -> str:
    return execute(db, [Command("clear", [table, record, *columns], if_exists)])[0]


def apply_assignments(txn: Transaction, table: str, uid: UUID,
                      assignments: Sequence[str]) -> None:
    """``set``'s COLUMN[:KEY]=VALUE assignments applied to one row inside an
    open transaction (add-port uses it for the new Interface's columns)."""
    if not assignments:
        return
    tbl = resolve_table(txn, table)
    try:
        _set(txn, tbl, uid, txn.get(tbl.name, uid),
             Command("set", [tbl.name, str(uid), *assignments]))
    except ColumnValueError as e:
        raise VsctlError(str(e)) from None


# -- name resolution --------------------------------------------------------------

def _score(name: str, given: str) -> int:
    """How well user input ``given`` matches ``name`` (0 = not at all), as ovs-vsctl
    scores it: exact, then equal but for case and '-'/'_', then the prefix length."""
    if name == given:
        return 1 << 30
    norm = lambda s: s.lower().replace("-", "_")  # noqa: E731
    n, g = norm(name), norm(given)
    if n == g:
        return (1 << 30) - 1
    return len(g) if n.startswith(g) else 0


def _best(names: Iterable[str], given: str) -> list[str]:
    scored = [(s, n) for n in names if (s := _score(n, given))]
    if not scored:
        return []
    top = max(s for s, _ in scored)
    return sorted(n for s, n in scored if s == top)


def resolve_table(txn: Transaction, given: str) -> Table:
    matches = _best(txn.schema.tables, given)
    if not matches:
        raise VsctlError(f'unknown table "{given}"; the tables are '
                         f'{", ".join(txn.schema.tables)}')
    if len(matches) > 1:
        raise VsctlError(f'"{given}" matches multiple table names: {", ".join(matches)}')
    return txn.schema.tables[matches[0]]


def resolve_column(table: Table, given: str) -> Column:
    matches = _best(table.columns, given)
    if not matches:
        raise VsctlError(f'{table.name} does not contain a column whose name matches '
                         f'"{given}"')
    if len(matches) > 1:
        raise VsctlError(f'{table.name} contains more than one column whose name matches '
                         f'"{given}": {", ".join(matches)}')
    return table.columns[matches[0]]


def _partial_uuid_length(s: str) -> int:
    if len(s) > len(_TEMPLATE):
        return 0
    for c, t in zip(s, _TEMPLATE):
        if (t == "x" and c not in "0123456789abcdefABCDEF") or (t == "-" and c != "-"):
            return 0
    return len(s)


def resolve_row(txn: Transaction, table: Table, record: str,
                must_exist: bool) -> tuple[UUID, Row] | None:
    if _FULL_UUID.fullmatch(record):
        uid = UUID(record)
        row = txn.get(table.name, uid)
        if row is not None:
            return uid, row
    if record == ".":
        rows = list(txn.rows(table.name))
        if len(rows) == 1:
            return rows[0]
    if table.name_column is not None:
        uid = txn.lookup(table.name, record)
        if uid is not None:
            return uid, txn.get(table.name, uid)
    if _partial_uuid_length(record) >= 4:
        found = [(u, r) for u, r in txn.rows(table.name) if str(u).startswith(record)]
        if len(found) > 1:
            raise VsctlError(f"{table.name} contains 2 or more rows whose UUIDs begin with "
                             f"{record}: at least {found[0][0]} and {found[1][0]}")
        if found:
            return found[0]
    if must_exist:
        raise VsctlError(f'no row "{record}" in table {table.name}')
    return None


def _split_column_key(table: Table, arg: str) -> tuple[Column, str | None, int]:
    """COLUMN[:KEY] at the start of ``arg``: the column, the key token, where it ended."""
    try:
        name, p = next_token(arg, 0)
    except ValueError as e:
        raise VsctlError(str(e)) from None
    if not name:
        raise VsctlError(f"{arg}: missing column name")
    column = resolve_column(table, name)
    key = None
    if p < len(arg) and arg[p] == ":":
        try:
            key, p = next_token(arg, p + 1)
        except ValueError as e:
            raise VsctlError(str(e)) from None
    return column, key, p


def _check_writable(table: Table, column: Column, row_is_new: bool) -> None:
    if not column.mutable and not row_is_new:
        raise VsctlError(f"cannot modify read-only column {column.name} in table "
                         f"{table.name}")
    if column.switch_owned:
        owned = sorted(c.name for c in table.columns.values() if c.switch_owned)
        hint = _HINTS.get((table.name, column.name))
        raise VsctlError(
            f"cannot modify column {column.name} in table {table.name}: ovsd writes it to "
            f"report the switch's state, and would overwrite any change"
            + (f" ({hint})" if hint else "")
            + f". Columns of {table.name} that ovsd writes: {', '.join(owned)}")


# -- verbs ------------------------------------------------------------------------

def _run(txn: Transaction, cmd: Command) -> str:
    table = resolve_table(txn, cmd.args[0])
    if cmd.verb == "list":
        return _list(txn, table, cmd)
    found = resolve_row(txn, table, cmd.args[1], must_exist=not cmd.if_exists)
    if found is None:
        return ""
    uid, row = found
    return {"set": _set, "get": _get, "add": _add, "remove": _remove,
            "clear": _clear}[cmd.verb](txn, table, uid, row, cmd)


def _set(txn: Transaction, table: Table, uid: UUID, row: Row, cmd: Command) -> str:
    for arg in cmd.args[2:]:
        column, key, p = _split_column_key(table, arg)
        if p >= len(arg) or arg[p] != "=" or p + 1 >= len(arg):
            raise VsctlError(f'{arg}: argument does not end in "=" followed by a value.')
        value_text = arg[p + 1:]
        _check_writable(table, column, txn.db.get(table.name, uid) is None)
        ctype = column.type
        if key is not None:
            if not ctype.is_map:
                raise VsctlError(f"cannot specify key to set for non-map column "
                                 f"{column.name}")
            k = parse_atom(column, ctype.key, key, "key")[0]
            v = parse_atom(column, ctype.value, value_text, "value")[0]
            current = txn.get(table.name, uid)[column.name]
            txn.update(table.name, uid, {column.name: {**current, k: v}})
        else:
            txn.update(table.name, uid, {column.name: parse_value(column, value_text)})
    return ""


def _get(txn: Transaction, table: Table, uid: UUID, row: Row, cmd: Command) -> str:
    out = []
    for arg in cmd.args[2:]:
        if arg.lower() in ("_uuid", "-uuid"):
            out.append(f"{uid}\n")
            continue
        column, key, p = _split_column_key(table, arg)
        if p < len(arg):
            raise VsctlError(f'{arg}: trailing garbage "{arg[p:]}" in argument')
        value = row[column.name]
        if key is None:
            out.append(format_value(column.type, value) + "\n")
            continue
        if not column.type.is_map:
            raise VsctlError(f"cannot specify key to get for non-map column {column.name}")
        k = parse_atom(column, column.type.key, key, "key")[0]
        if k in value:
            out.append(format_atom(column.type.value, value[k]) + "\n")
        elif cmd.if_exists:
            out.append("\n")
        else:
            raise VsctlError(f'no key "{key}" in {table.name} record "{cmd.args[1]}" '
                             f'column {column.name}')
    return "".join(out)


def _list_columns(table: Table, spec: str | None) -> list[Column | None]:
    """The columns to show (None stands for _uuid): all by default, _uuid first."""
    if spec is None:
        return [None, *(table.columns[n] for n in table.sorted_names)]
    names = [n for n in re.split(r"[, ]", spec) if n]
    if not names:
        raise VsctlError("must specify at least one column name")
    return [None if n.lower() == "_uuid" else resolve_column(table, n) for n in names]


def _list(txn: Transaction, table: Table, cmd: Command) -> str:
    columns = _list_columns(table, cmd.columns)
    if cmd.args[1:]:
        rows = [r for rec in cmd.args[1:]
                if (r := resolve_row(txn, table, rec, must_exist=not cmd.if_exists))]
    else:
        rows = list(txn.rows(table.name))
    blocks = []
    for uid, row in rows:
        lines = []
        for col in columns:
            if col is None:
                lines.append(f"{'_uuid':<{HEADING_WIDTH}}: {uid}\n")
            else:
                text = format_value(col.type, row[col.name])
                lines.append(f"{col.name:<{HEADING_WIDTH}}: {text}\n")
        blocks.append("".join(lines))
    return "\n".join(blocks)


def _parse_part(column: Column, text: str, verb: str, keys_only: bool = False) -> Any:
    value = parse_value(column, text, relaxed=True, keys_only=keys_only)
    if not value:
        raise VsctlError(f"{text}: 0 value(s) specified but \"{verb}\" needs at least 1")
    return value


def _add(txn: Transaction, table: Table, uid: UUID, row: Row, cmd: Command) -> str:
    column = resolve_column(table, cmd.args[2])
    _check_writable(table, column, txn.db.get(table.name, uid) is None)
    ctype = column.type
    current = row[column.name]
    if ctype.is_map:
        merged: dict = dict(current)
        for text in cmd.args[3:]:
            for k, v in _parse_part(column, text, "add").items():
                merged.setdefault(k, v)  # as OVS: a key already there keeps its value
        n = len(merged)
    else:
        merged = set(ctype.atoms(current))
        for text in cmd.args[3:]:
            merged |= _parse_part(column, text, "add")
        n = len(merged)
    if ctype.n_max is not None and n > ctype.n_max:
        raise VsctlError(f'"add" operation would put {n} {"pairs" if ctype.is_map else "values"}'
                         f" in column {column.name} of table {table.name} but the maximum "
                         f"number is {ctype.n_max}")
    txn.update(table.name, uid, {column.name: ctype.from_atoms(
        merged.items() if ctype.is_map else merged)})
    return ""


def _remove(txn: Transaction, table: Table, uid: UUID, row: Row, cmd: Command) -> str:
    column = resolve_column(table, cmd.args[2])
    _check_writable(table, column, txn.db.get(table.name, uid) is None)
    ctype = column.type
    current = row[column.name]
    if ctype.is_map:
        kept = dict(current)
        for text in cmd.args[3:]:
            try:
                pairs = _parse_part(column, text, "remove")
            except ColumnValueError:
                # Not KEY=VALUE pairs: then bare keys.
                for k in _parse_part(column, text, "remove", keys_only=True):
                    kept.pop(k, None)
                continue
            for k, v in pairs.items():
                if kept.get(k, _MISSING) == v:
                    del kept[k]
        left: Any = kept
        n = len(kept)
    else:
        left = set(ctype.atoms(current))
        for text in cmd.args[3:]:
            left -= _parse_part(column, text, "remove")
        n = len(left)
    if n < ctype.n_min:
        raise VsctlError(f'"remove" operation would put {n} '
                         f'{"pairs" if ctype.is_map else "values"} in column {column.name} '
                         f"of table {table.name} but the minimum number is {ctype.n_min}")
    txn.update(table.name, uid, {column.name: ctype.from_atoms(
        left.items() if ctype.is_map else left)})
    return ""


_MISSING = object()


def _clear(txn: Transaction, table: Table, uid: UUID, row: Row, cmd: Command) -> str:
    for name in cmd.args[2:]:
        column = resolve_column(table, name)
        _check_writable(table, column, txn.db.get(table.name, uid) is None)
        if column.type.n_min > 0:
            raise VsctlError(f'"clear" operation cannot be applied to column {column.name} '
                             f"of table {table.name}, which is not allowed to be empty")
        txn.update(table.name, uid, {column.name: column.default()})
    return ""
