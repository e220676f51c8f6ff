"""The configuration database: tables of rows, transactions, one file on disk.

Rows are keyed by ``uuid.UUID``; a row is a read-only mapping from column
name to the column's canonical value (see :mod:`ovsd.db.schema`: the atom
for a scalar column, the atom or ``None`` for an optional one, a
``frozenset`` for a set, a :class:`~ovsd.db.schema.FrozenMap` for a map).
Committed rows are never changed in place: a commit replaces them, so a
reader may keep a row it got and it stays as it was.

Changes go through a transaction::

    with db.transaction() as txn:
        br = txn.insert("Bridge", {"name": "br0"})
        txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])

which commits when the block ends and changes nothing when an exception
escapes it.  At commit the new state is checked as OVSDB checks it: strong
references point at existing rows, rows of non-root tables that nothing
references are garbage-collected (a Port that no Bridge lists disappears with
its Interfaces), set sizes, unique indexes (Bridge/Port/Interface names),
exactly one Open_vSwitch row.  Then the whole database is written to its
file (atomically: temp file, fsync, rename, fsync of the directory) and the
listeners get a :class:`Changes` summary.  A commit made with
``writeback=True`` (the switch reporting ``ofport``, ``status``, ...) is
flagged so that the daemon does not reconfigure from its own reports.

Ephemeral columns (statistics, status, link_state, ...) are not written to
the file, as in OVS: a commit that changes only those does not rewrite it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import uuid as uuidlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import msgpack

from ovsd.db.schema import Column, ColumnValueError, FrozenMap, Schema, Table, default_schema

log = logging.getLogger(__name__)

FORMAT = 1
ROOT_TABLE = "Open_vSwitch"

UUID = uuidlib.UUID
Row = Mapping[str, Any]
Listener = Callable[["Changes"], None]


class DatabaseError(Exception):
    """Base of the database's errors."""


class TransactionError(DatabaseError, ValueError):
    """A transaction would break a rule of the schema; nothing was changed."""


class DatabaseLoadError(DatabaseError):
    """The database file exists but cannot be used."""


class DatabaseLockedError(DatabaseError):
    """Another process has the database open."""


class PersistError(DatabaseError):
    """Writing the database file failed; the commit did not happen."""


@dataclass(frozen=True)
class RowChange:
    """One row's change: ``old`` is None for an insert, ``new`` for a delete."""

    table: str
    uuid: UUID
    old: Row | None
    new: Row | None

    @property
    def kind(self) -> str:
        return "insert" if self.old is None else "delete" if self.new is None else "update"

    @property
    def columns(self) -> frozenset[str]:
        """The columns whose value changed (every column for an insert or delete)."""
        if self.old is None or self.new is None:
            return frozenset((self.old or self.new).keys())
        return frozenset(c for c, v in self.new.items() if self.old[c] != v)


@dataclass(frozen=True)
class Changes:
    """What one commit changed, handed to the listeners."""

    generation: int
    writeback: bool
    rows: tuple[RowChange, ...]

    def table(self, name: str) -> list[RowChange]:
        return [c for c in self.rows if c.table == name]

    def touches(self, table: str, column: str | None = None) -> bool:
        """Whether the commit changed a row of ``table`` (in ``column``, if given)."""
        return any(c.table == table and (column is None or column in c.columns)
                   for c in self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)


def _freeze(row: dict) -> Row:
    return MappingProxyType(row)


def describe_row(table: Table, uid: UUID, row: Row | None) -> str:
    """'Bridge "br0"' for a named row, 'Open_vSwitch row 1b2c...' otherwise."""
    name_col = table.name_column
    if name_col and row is not None:
        name = row.get(name_col)
        if isinstance(name, str):
            return f'{table.name} "{name}"'
    return f"{table.name} row {uid}"


def _refs(table: Table, row: Row, *, strong: bool) -> Iterator[tuple[Column, str, UUID]]:
    """(column, referenced table, uuid) for every reference ``row`` holds."""
    for cname, part, ref_table, is_strong in table.refs:
        if is_strong != strong:
            continue
        col = table.columns[cname]
        t = col.type
        value = row[cname]
        if t.is_map:
            atoms = value.keys() if part == "key" else value.values()
        else:
            atoms = t.atoms(value)
        for target in atoms:
            yield col, ref_table, target


class Transaction:
    """Pending changes to the database; reads see them on top of the committed state."""

    def __init__(self, db: Database, writeback: bool = False):
        self.db = db
        self.schema = db.schema
        self.writeback = writeback
        self._inserted: dict[tuple[str, UUID], dict] = {}
        self._updated: dict[tuple[str, UUID], dict] = {}  # only the columns written
        self._deleted: set[tuple[str, UUID]] = set()
        self._done = False
        self.changes: Changes | None = None  # set by commit()

    # -- context manager ---------------------------------------------------

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self._done:
            raise DatabaseError("this transaction has already been committed or aborted")

    # -- reading -----------------------------------------------------------

    def get(self, table: str, uid: UUID) -> Row | None:
        """The row as this transaction sees it, or None."""
        key = (table, uid)
        if key in self._deleted:
            return None
        row = self._inserted.get(key)
        if row is not None:
            return _freeze(row)
        base = self.db._tables[self.schema.table(table).name].get(uid)
        if base is None:
            return None
        writes = self._updated.get(key)
        return _freeze({**base, **writes}) if writes else base

    def rows(self, table: str) -> Iterator[tuple[UUID, Row]]:
        """(uuid, row) of every row of ``table`` as this transaction sees it."""
        for uid in list(self.db._tables[self.schema.table(table).name]):
            row = self.get(table, uid)
            if row is not None:
                yield uid, row
        for (t, uid), row in list(self._inserted.items()):
            if t == table:
                yield uid, _freeze(row)

    def lookup(self, table: str, name: str) -> UUID | None:
        """The row of ``table`` whose name (its ``name`` index) is ``name``."""
        tbl = self.schema.table(table)
        col = tbl.name_column
        if col is None:
            raise KeyError(f"rows of table '{table}' have no name")
        for (t, uid), row in self._inserted.items():
            if t == table and row[col] == name:
                return uid
        uid = self.db._names[table].get(name)
        if uid is not None and (table, uid) not in self._deleted:
            return uid
        return None

    @property
    def root_uuid(self) -> UUID:
        """The Open_vSwitch row's uuid."""
        for uid, _ in self.rows(ROOT_TABLE):
            return uid
        raise TransactionError("the Open_vSwitch table has no row")

    # -- writing -----------------------------------------------------------

    def insert(self, table: str, values: Mapping[str, Any] | None = None,
               uuid: UUID | None = None) -> UUID:
        """Add a row (columns not given get their defaults); returns its uuid."""
        self._check_open()
        tbl = self.schema.table(table)
        uid = uuid or uuidlib.uuid4()
        if self.get(table, uid) is not None or (table, uid) in self._deleted:
            raise TransactionError(f"a {table} row with uuid {uid} already exists")
        row = {name: col.default() for name, col in tbl.columns.items()}
        for name, value in (values or {}).items():
            row[name] = tbl.column(name).convert(value)
        self._inserted[(table, uid)] = row
        return uid

    def update(self, table: str, uid: UUID, values: Mapping[str, Any]) -> None:
        """Set some columns of an existing row."""
        self._check_open()
        tbl = self.schema.table(table)
        current = self.get(table, uid)
        if current is None:
            raise TransactionError(f"no {table} row with uuid {uid}")
        converted = {}
        for name, value in values.items():
            col = tbl.column(name)
            new = col.convert(value)
            if (not col.mutable and (table, uid) not in self._inserted
                    and new != current[name]):
                raise TransactionError(
                    f"cannot change column '{name}' of {describe_row(tbl, uid, current)}: "
                    f"the schema makes it read-only once the row exists")
            converted[name] = new
        key = (table, uid)
        if key in self._inserted:
            self._inserted[key].update(converted)
        else:
            self._updated.setdefault(key, {}).update(converted)

    def delete(self, table: str, uid: UUID) -> None:
        """Remove a row (rows still referring to it must drop the reference too)."""
        self._check_open()
        self.schema.table(table)
        key = (table, uid)
        if self.get(table, uid) is None:
            raise TransactionError(f"no {table} row with uuid {uid}")
        if key in self._inserted:
            del self._inserted[key]
        else:
            self._updated.pop(key, None)
            self._deleted.add(key)

    def mutate_add(self, table: str, uid: UUID, column: str,
                   items: Iterable[Any] | Mapping[Any, Any]) -> None:
        """Add atoms to a set column, or pairs to a map column (a key already there
        keeps its value, as with OVSDB's "insert" mutation)."""
        col, current, items = self._mutation(table, uid, column, items)
        if col.type.is_map:
            if not isinstance(items, dict):
                raise col.error("needs key-value pairs (a mapping) to add")
            self.update(table, uid, {column: {**items, **current}})
        else:
            merged = set(col.type.atoms(current)) | items
            self.update(table, uid, {column: merged if col.type.is_set else list(merged)})

    def mutate_remove(self, table: str, uid: UUID, column: str,
                      items: Iterable[Any] | Mapping[Any, Any]) -> None:
        """Remove atoms from a set column; from a map column, remove keys (given as
        an iterable) or the key=value pairs that match exactly (given as a mapping)."""
        col, current, items = self._mutation(table, uid, column, items)
        if isinstance(items, dict):
            kept = {k: v for k, v in current.items() if items.get(k, _MISSING) != v}
            self.update(table, uid, {column: kept})
        elif col.type.is_map:
            self.update(table, uid, {column: {k: v for k, v in current.items()
                                              if k not in items}})
        else:
            left = set(col.type.atoms(current)) - items
            self.update(table, uid, {column: left if col.type.is_set else list(left)})

    def _mutation(self, table: str, uid: UUID, column: str,
                  items: Iterable[Any] | Mapping[Any, Any]) -> tuple[Column, Any, Any]:
        """The column, its current value, and ``items`` checked: a dict of pairs
        (for a mapping) or a set of atoms (keys, for a map column)."""
        row = self._row_for_write(table, uid)
        col = self.schema.table(table).column(column)
        ctype = col.type
        if isinstance(items, (str, bytes)):
            raise TypeError(f"items for column '{column}' must be a collection, not a string")
        if isinstance(items, Mapping):
            if not ctype.is_map:
                raise col.error(f"is not a map; got pairs {dict(items)!r}")
            return col, row[column], {col.check_atom(ctype.key, k, "key"):
                                      col.check_atom(ctype.value, v, "value")
                                      for k, v in items.items()}
        return col, row[column], {col.check_atom(ctype.key, a, "key" if ctype.is_map else "")
                                  for a in items}

    def _row_for_write(self, table: str, uid: UUID) -> Row:
        self._check_open()
        row = self.get(table, uid)
        if row is None:
            raise TransactionError(f"no {table} row with uuid {uid}")
        return row

    # -- finishing ---------------------------------------------------------

    def abort(self) -> None:
        self._done = True
        self._inserted.clear()
        self._updated.clear()
        self._deleted.clear()

    def commit(self) -> Changes:
        """Check, persist and apply the changes; returns what changed."""
        self._check_open()
        try:
            self.changes = self.db._commit(self)
        finally:
            self._done = True
        return self.changes


_MISSING = object()


class Database:
    """The in-memory database, backed by one msgpack file (or none: ``path=None``).

    Opening a missing file creates a fresh database with its Open_vSwitch row;
    a file that cannot be loaded raises :class:`DatabaseLoadError` naming it.
    The file is locked while the database is open.
    """

    def __init__(self, path: str | os.PathLike | None, schema: Schema | None = None):
        self.schema = schema or default_schema()
        self.path = Path(path) if path is not None else None
        self._tables: dict[str, dict[UUID, Row]] = {t: {} for t in self.schema.tables}
        self._names: dict[str, dict[str, UUID]] = {t: {} for t in self.schema.tables}
        self._aux: dict[str, Any] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._pending: deque[Changes] = deque()
        self._delivering = False
        self.generation = 0
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        if self.path is not None:
            self._open_file()
        if ROOT_TABLE in self.schema.tables and not self._tables[ROOT_TABLE]:
            try:
                with self.transaction() as txn:
                    txn.insert(ROOT_TABLE)
            except PersistError:
                self.close()
                raise

    # -- file --------------------------------------------------------------

    def _open_file(self) -> None:
        path = self.path
        directory = path.parent
        try:
            self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise DatabaseLoadError(f"cannot open the directory of the database {path}: "
                                    f"{e.strerror or e}") from None
        lock_path = directory / f".{path.name}.~lock~"
        try:
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise DatabaseLockedError(f"the database {path} is in use by another process "
                                      f"(it holds the lock {lock_path})") from None
        except OSError as e:
            self.close()
            raise DatabaseLoadError(f"cannot lock the database {path} ({lock_path}): "
                                    f"{e.strerror or e}") from None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            self.close()
            raise DatabaseLoadError(f"cannot read the database {path}: {e.strerror or e}") \
                from None
        try:
            self._load(data)
        except (DatabaseLoadError, ColumnValueError, TransactionError, KeyError,
                TypeError, ValueError) as e:
            self.close()
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise DatabaseLoadError(
                f"cannot load the database {path}: {msg}. ovsd does not start over an "
                f"existing database it cannot read: repair the file or move it away") from None

    def _load(self, data: bytes) -> None:
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as e:  # msgpack raises several unrelated types on bad input
            raise DatabaseLoadError(f"the file is not valid msgpack ({e})") from None
        if not isinstance(doc, dict):
            raise DatabaseLoadError("the file does not hold a database object")
        if doc.get("format") != FORMAT:
            raise DatabaseLoadError(f"the file has format {doc.get('format')!r}; this ovsd "
                                    f"reads format {FORMAT}")
        tables = doc.get("tables")
        aux = doc.get("aux", {})
        if not isinstance(tables, dict) or not isinstance(aux, dict):
            raise DatabaseLoadError("'tables' and 'aux' must be maps")
        loaded: dict[str, dict[UUID, Row]] = {t: {} for t in self.schema.tables}
        for tname, rows in tables.items():
            tbl = self.schema.tables.get(tname)
            if tbl is None:
                log.warning("database %s: dropping table %r, which this ovsd's schema "
                            "does not have", self.path, tname)
                continue
            if not isinstance(rows, dict):
                raise DatabaseLoadError(f"table {tname} is not a map of rows")
            for key, stored in rows.items():
                try:
                    uid = UUID(key)
                except (ValueError, TypeError, AttributeError):
                    raise DatabaseLoadError(f"table {tname}: {key!r} is not a UUID") from None
                if not isinstance(stored, dict):
                    raise DatabaseLoadError(f"table {tname} row {key} is not a map")
                row = {name: col.default() for name, col in tbl.columns.items()}
                for cname, value in stored.items():
                    col = tbl.columns.get(cname)
                    if col is None:
                        log.warning("database %s: dropping column %s.%s, which this "
                                    "ovsd's schema does not have", self.path, tname, cname)
                        continue
                    row[cname] = _decode(col, value)
                loaded[tname][uid] = _freeze(row)
        collected = _check_state(self.schema, loaded, loaded, touched=None,
                                 explicit_deletes=(), write=loaded.__getitem__)
        for c in collected:
            # OVSDB would have collected these at the commit that orphaned them.
            log.warning("database %s: dropping %s, which nothing refers to", self.path,
                        describe_row(self.schema.tables[c.table], c.uuid, c.old))
        self._tables = loaded
        self._names = _build_names(self.schema, loaded)
        self._aux = aux

    def _write(self, tables: dict[str, dict[UUID, Row]], aux: dict[str, Any]) -> None:
        if self.path is None:
            return
        if self._dir_fd is None:
            raise PersistError(f"the database {self.path} has been closed")
        payload = _encode_db(self.schema, tables, aux)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            # The rename is durable only once the directory entry is.
            os.fsync(self._dir_fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise PersistError(f"cannot write the database {self.path}: "
                               f"{e.strerror or e}") from None

    def close(self) -> None:
        """Release the file lock; the in-memory state stays readable."""
        for attr in ("_lock_fd", "_dir_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------

    def get(self, table: str, uid: UUID) -> Row | None:
        return self._tables[self.schema.table(table).name].get(uid)

    def rows(self, table: str) -> Mapping[UUID, Row]:
        """Every row of ``table``: a read-only mapping uuid -> row."""
        return MappingProxyType(self._tables[self.schema.table(table).name])

    def lookup(self, table: str, name: str) -> UUID | None:
        """The uuid of the row of ``table`` named ``name`` (Bridge, Port, Interface)."""
        if self.schema.table(table).name_column is None:
            raise KeyError(f"rows of table '{table}' have no name")
        return self._names[table].get(name)

    @property
    def root_uuid(self) -> UUID:
        return next(iter(self._tables[ROOT_TABLE]))

    @property
    def root(self) -> Row:
        return next(iter(self._tables[ROOT_TABLE].values()))

    def get_aux(self, key: str, default: Any = None) -> Any:
        return self._aux.get(key, default)

    # -- writing -----------------------------------------------------------

    def transaction(self, *, writeback: bool = False) -> Transaction:
        """A new transaction; ``writeback=True`` marks the switch's own reports."""
        return Transaction(self, writeback)

    def writeback(self, updates: Iterable[tuple[str, UUID, Mapping[str, Any]]]) -> Changes:
        """Write columns the switch fills in, in one flagged commit.

        Rows that no longer exist are skipped: the switch may report on a row
        that a user deleted a moment ago.
        """
        with self.transaction(writeback=True) as txn:
            for table, uid, values in updates:
                if txn.get(table, uid) is not None:
                    txn.update(table, uid, values)
        return txn.changes

    def set_aux(self, key: str, data: Any) -> None:
        """Store an opaque msgpack-able blob beside the tables, durably."""
        try:
            msgpack.packb(data, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise DatabaseError(f"aux data {key!r} cannot be stored: {e}") from None
        with self._lock:
            aux = {**self._aux, key: data}
            self._write(self._tables, aux)
            self._aux = aux
            self.generation += 1

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(changes)`` after every commit that changed something."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _commit(self, txn: Transaction) -> Changes:
        with self._lock:
            new = dict(self._tables)  # tables are copied when first changed
            copied: set[str] = set()

            def table_for_write(name: str) -> dict[UUID, Row]:
                if name not in copied:
                    new[name] = dict(new[name])
                    copied.add(name)
                return new[name]

            # A dict, not a set: the summary lists rows in the order they changed.
            touched: dict[tuple[str, UUID], None] = {}
            for table, uid in txn._deleted:
                rows = table_for_write(table)
                if uid in rows:
                    del rows[uid]
                    touched[(table, uid)] = None
            for (table, uid), writes in txn._updated.items():
                rows = table_for_write(table)
                base = rows.get(uid)
                if base is None:
                    raise TransactionError(
                        f"the {table} row {uid} was deleted by another change while this "
                        "transaction was open; try again")
                rows[uid] = _freeze({**base, **writes})
                touched[(table, uid)] = None
            for (table, uid), row in txn._inserted.items():
                rows = table_for_write(table)
                if uid in rows:
                    raise TransactionError(f"a {table} row with uuid {uid} already exists")
                rows[uid] = _freeze(dict(row))
                touched[(table, uid)] = None
            if not touched:
                return Changes(self.generation, txn.writeback, ())
            collected = _check_state(self.schema, self._tables, new, touched,
                                     explicit_deletes=txn._deleted, write=table_for_write)
            touched.update(dict.fromkeys((c.table, c.uuid) for c in collected))
            row_changes = []
            persist = False
            for table, uid in touched:
                old = self._tables[table].get(uid)
                cur = new[table].get(uid)
                if old is cur:
                    continue
                change = RowChange(table, uid, old, cur)
                if change.kind == "update":
                    cols = change.columns
                    if not cols:
                        new[table][uid] = old  # keep the committed object
                        continue
                    tbl = self.schema.tables[table]
                    persist = persist or any(tbl.columns[c].persistent for c in cols)
                else:
                    persist = True
                row_changes.append(change)
            if not row_changes:
                return Changes(self.generation, txn.writeback, ())
            if persist:
                self._write(new, self._aux)
            self._tables = new
            for table in copied:
                if self.schema.tables[table].name_column:
                    self._names[table] = _build_table_names(self.schema.tables[table],
                                                            new[table])
            self.generation += 1
            changes = Changes(self.generation, txn.writeback, tuple(row_changes))
            self._pending.append(changes)
            self._deliver()
            return changes

    def _deliver(self) -> None:
        # A listener may commit (the daemon writes back what it learned); its
        # changes are queued and delivered after every listener has seen this
        # commit, so that all listeners see commits in order.
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                changes = self._pending.popleft()
                for listener in list(self._listeners):
                    try:
                        listener(changes)
                    except Exception:
                        log.exception("database listener %r failed on commit %d",
                                      listener, changes.generation)
        finally:
            self._delivering = False


def _check_state(schema: Schema, old: dict[str, dict[UUID, Row]],
                 new: dict[str, dict[UUID, Row]], touched: dict | None,
                 explicit_deletes: Iterable[tuple[str, UUID]],
                 write: Callable[[str], dict[UUID, Row]]) -> list[RowChange]:
    """Check ``new`` (mutating it through ``write`` for garbage collection and
    weak references); returns the rows garbage-collected.  ``touched`` None
    means check every row (loading a file)."""
    def describe(table: str, uid: UUID, row: Row | None = None) -> str:
        if row is None:
            row = new[table].get(uid) or old[table].get(uid)
        return describe_row(schema.tables[table], uid, row)

    # Reference counts, then garbage collection of unreferenced non-root rows.
    refcount: dict[tuple[str, UUID], int] = {}
    for tname, tbl in schema.tables.items():
        if not tbl.refs:
            continue
        for row in new[tname].values():
            for _, ref, target in _refs(tbl, row, strong=True):
                refcount[(ref, target)] = refcount.get((ref, target), 0) + 1
    garbage = deque((tname, uid) for tname, tbl in schema.tables.items() if not tbl.is_root
                    for uid in new[tname] if not refcount.get((tname, uid)))
    collected: list[RowChange] = []
    while garbage:
        tname, uid = garbage.popleft()
        rows = write(tname)
        row = rows.pop(uid, None)
        if row is None:
            continue
        collected.append(RowChange(tname, uid, row, None))
        for _, ref, target in _refs(schema.tables[tname], row, strong=True):
            key = (ref, target)
            refcount[key] -= 1
            if refcount[key] == 0 and not schema.tables[ref].is_root:
                garbage.append(key)

    # Weak references to rows that are gone are dropped, as in OVSDB.
    for tname, tbl in schema.tables.items():
        if all(strong for *_, strong in tbl.refs):
            continue
        for uid, row in list(new[tname].items()):
            dangling = {(col.name, target) for col, ref, target in _refs(tbl, row, strong=False)
                        if target not in new[ref]}
            if not dangling:
                continue
            fixed = dict(row)
            for cname, target in dangling:
                ctype = tbl.columns[cname].type
                value = fixed[cname]
                if ctype.is_map:
                    value = FrozenMap((k, v) for k, v in value.items()
                                      if k != target and v != target)
                else:
                    value = ctype.from_atoms(a for a in ctype.atoms(value) if a != target)
                fixed[cname] = value
            write(tname)[uid] = _freeze(fixed)
            if touched is not None:
                touched[(tname, uid)] = None

    # Strong references must point at rows that exist.
    for table, uid in explicit_deletes:
        if refcount.get((table, uid)):
            for tname, tbl in schema.tables.items():
                for rid, row in new[tname].items():
                    for col, ref, target in _refs(tbl, row, strong=True):
                        if ref == table and target == uid:
                            raise TransactionError(
                                f"cannot delete {describe(table, uid)}: "
                                f"{describe(tname, rid, row)} still refers to it in column "
                                f"'{col.name}'")
    check_rows = (((t, u) for t, u in touched if u in new[t]) if touched is not None
                  else ((t, u) for t in new for u in new[t]))
    check_rows = list(check_rows)
    for tname, uid in check_rows:
        tbl = schema.tables[tname]
        row = new[tname][uid]
        for col, ref, target in _refs(tbl, row, strong=True):
            if target not in new[ref]:
                raise TransactionError(
                    f"{describe(tname, uid, row)} refers in column '{col.name}' to a {ref} "
                    f"row {target} that does not exist")
        for col in tbl.columns.values():
            try:
                col.check_size(col.type.size(row[col.name]))
            except ColumnValueError as e:
                raise TransactionError(f"{describe(tname, uid, row)}: {e}") from None

    # Unique indexes.
    touched_tables = {t for t, _ in check_rows}
    for tname, tbl in schema.tables.items():
        if tname not in touched_tables:
            continue
        for index in tbl.indexes:
            seen: dict[tuple, UUID] = {}
            for uid, row in new[tname].items():
                key = tuple(_hashable(row[c]) for c in index)
                other = seen.setdefault(key, uid)
                if other != uid:
                    shown = ", ".join(f"{c}={row[c]!r}" for c in index)
                    raise TransactionError(
                        f"two {tname} rows would have the same {shown} ({other} and {uid}): "
                        f"{tname} {'/'.join(index)} must be unique")

    # Row counts.
    for tname, tbl in schema.tables.items():
        n = len(new[tname])
        if tbl.max_rows is not None and n > tbl.max_rows:
            raise TransactionError(f"table {tname} may hold at most {tbl.max_rows} "
                                   f"row{'s' if tbl.max_rows != 1 else ''}, not {n}")
    if ROOT_TABLE in new and not new[ROOT_TABLE]:
        raise TransactionError(f"the {ROOT_TABLE} table must hold exactly one row, "
                               "and this change would leave it empty")
    return collected


def _hashable(value: Any) -> Any:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _build_table_names(tbl: Table, rows: dict[UUID, Row]) -> dict[str, UUID]:
    col = tbl.name_column
    return {row[col]: uid for uid, row in rows.items()} if col else {}


def _build_names(schema: Schema, tables: dict[str, dict[UUID, Row]]) -> dict[str, dict]:
    return {t: _build_table_names(schema.tables[t], rows) for t, rows in tables.items()}


# -- file encoding ------------------------------------------------------------

def _enc_atom(atom: Any) -> Any:
    return str(atom) if isinstance(atom, UUID) else atom


def _encode_value(col: Column, value: Any) -> Any:
    t = col.type
    if t.is_map:
        return [[_enc_atom(k), _enc_atom(value[k])] for k in sorted(value)]
    if t.is_set:
        return [_enc_atom(a) for a in sorted(value)]
    return None if value is None else _enc_atom(value)


def _decode(col: Column, stored: Any) -> Any:
    t = col.type
    if t.is_map:
        if not isinstance(stored, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in stored):
            raise DatabaseLoadError(f"column {col.table}.{col.name} does not hold a list "
                                    "of pairs")
        return col.convert({k: v for k, v in stored})
    if t.is_set and not isinstance(stored, list):
        raise DatabaseLoadError(f"column {col.table}.{col.name} does not hold a list")
    return col.convert(stored)


def _encode_db(schema: Schema, tables: dict[str, dict[UUID, Row]], aux: dict) -> bytes:
    out_tables = {}
    for tname, rows in tables.items():
        cols = [c for c in schema.tables[tname].columns.values() if c.persistent]
        out_tables[tname] = {str(uid): {c.name: _encode_value(c, row[c.name]) for c in cols}
                             for uid, row in rows.items()}
    return msgpack.packb({"format": FORMAT, "tables": out_tables, "aux": aux},
                         use_bin_type=True)
