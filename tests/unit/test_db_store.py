"""The database: transactions, validation, garbage collection, listeners, the file."""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import uuid

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsd.db.schema import ColumnValueError, Schema
from ovsd.db.store import (
    Database, DatabaseError, DatabaseLoadError, DatabaseLockedError, PersistError,
    TransactionError)


def add_bridge(db, name, ports=()):
    """A bridge with one-interface ports, as add-br/add-port make them."""
    with db.transaction() as txn:
        port_ids = []
        for p in ports:
            iface = txn.insert("Interface", {"name": p, "type": "dummy"})
            port_ids.append(txn.insert("Port", {"name": p, "interfaces": [iface]}))
        br = txn.insert("Bridge", {"name": name, "ports": port_ids})
        txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])
    return br


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "conf.db")
    yield d
    d.close()


def names(db, table):
    return sorted(row["name"] for row in db.rows(table).values())


# -- basics -------------------------------------------------------------------------

def test_fresh_database_has_one_open_vswitch_row_and_is_on_disk(tmp_path):
    path = tmp_path / "conf.db"
    with Database(path) as db:
        assert len(db.rows("Open_vSwitch")) == 1
        root = db.root
        assert root["bridges"] == frozenset() and root["next_cfg"] == 0
        assert root["ovs_version"] is None and root["other_config"] == {}
    doc = msgpack.unpackb(path.read_bytes())
    assert doc["format"] == 1 and set(doc) == {"format", "tables", "aux"}
    assert len(doc["tables"]["Open_vSwitch"]) == 1


def test_insert_lookup_and_read(db):
    br = add_bridge(db, "br0", ["p1", "p2"])
    assert db.lookup("Bridge", "br0") == br
    assert db.lookup("Bridge", "nope") is None
    assert names(db, "Port") == ["p1", "p2"] and names(db, "Interface") == ["p1", "p2"]
    row = db.get("Bridge", br)
    assert row["ports"] == {db.lookup("Port", "p1"), db.lookup("Port", "p2")}
    assert db.root["bridges"] == {br}
    with pytest.raises(TypeError):
        row["name"] = "x"
    with pytest.raises(TypeError):
        db.root["other_config"]["a"] = "b"


def test_rows_handed_out_never_change(db):
    br = add_bridge(db, "br0")
    before = db.get("Bridge", br)
    with db.transaction() as txn:
        txn.update("Bridge", br, {"fail_mode": "secure"})
    assert before["fail_mode"] is None
    assert db.get("Bridge", br)["fail_mode"] == "secure"


def test_transaction_sees_its_own_changes(db):
    with db.transaction() as txn:
        i = txn.insert("Interface", {"name": "p1"})
        assert txn.lookup("Interface", "p1") == i
        assert txn.get("Interface", i)["name"] == "p1"
        p = txn.insert("Port", {"name": "p1", "interfaces": [i]})
        br = txn.insert("Bridge", {"name": "br0", "ports": [p]})
        txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])
        assert [u for u, _ in txn.rows("Bridge")] == [br]
        assert db.lookup("Bridge", "br0") is None  # not committed yet
    assert db.lookup("Bridge", "br0") == br


def test_exception_in_block_changes_nothing(db, tmp_path):
    add_bridge(db, "br0")
    data = (tmp_path / "conf.db").read_bytes()
    gen = db.generation
    with pytest.raises(RuntimeError):
        with db.transaction() as txn:
            txn.update("Open_vSwitch", txn.root_uuid, {"other_config": {"a": "b"}})
            raise RuntimeError("boom")
    assert db.root["other_config"] == {} and db.generation == gen
    assert (tmp_path / "conf.db").read_bytes() == data


def test_explicit_commit_and_abort(db):
    txn = db.transaction()
    txn.update("Open_vSwitch", txn.root_uuid, {"next_cfg": 3})
    changes = txn.commit()
    assert db.root["next_cfg"] == 3 and changes.generation == db.generation
    with pytest.raises(DatabaseError, match="already been committed"):
        txn.update("Open_vSwitch", db.root_uuid, {"next_cfg": 4})
    txn = db.transaction()
    txn.update("Open_vSwitch", txn.root_uuid, {"next_cfg": 9})
    txn.abort()
    assert db.root["next_cfg"] == 3


def test_empty_commit_changes_nothing(db):
    gen = db.generation
    with db.transaction() as txn:
        txn.update("Open_vSwitch", txn.root_uuid, {"next_cfg": 0})
    assert not txn.changes and db.generation == gen


def test_values_are_checked_when_written(db):
    with pytest.raises(ColumnValueError, match="expects an integer in 1..65279, got 'x'"):
        with db.transaction() as txn:
            txn.insert("Interface", {"name": "p1", "ofport_request": "x"})
    with pytest.raises(KeyError, match="no column 'bogus'"):
        with db.transaction() as txn:
            txn.update("Open_vSwitch", txn.root_uuid, {"bogus": 1})
    with pytest.raises(KeyError, match="no table 'Mirror'"):
        with db.transaction() as txn:
            txn.insert("Mirror", {})


# -- rules checked at commit ---------------------------------------------------------

def test_dangling_strong_reference_is_refused(db):
    ghost = uuid.uuid4()
    with pytest.raises(TransactionError, match=f'Bridge "br0" refers in column \'ports\' to a '
                                               f"Port row {ghost} that does not exist"):
        with db.transaction() as txn:
            br = txn.insert("Bridge", {"name": "br0", "ports": [ghost]})
            txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])
    assert not db.rows("Bridge")


def test_names_are_unique(db):
    add_bridge(db, "br0", ["p1"])
    with pytest.raises(TransactionError, match="two Bridge rows would have the same name='br0'"):
        add_bridge(db, "br0")
    with pytest.raises(TransactionError, match="two Port rows would have the same "
                                               "name='p1'"):
        add_bridge(db, "br1", ["p1"])
    assert names(db, "Bridge") == ["br0"]


def test_minimum_set_size_is_checked_for_defaults(db):
    with pytest.raises(TransactionError, match='Port "p1": column \'interfaces\' of table '
                                               "'Port' expects at least 1 value, got 0"):
        with db.transaction() as txn:
            p = txn.insert("Port", {"name": "p1"})
            br = txn.insert("Bridge", {"name": "br0", "ports": [p]})
            txn.mutate_add("Open_vSwitch", txn.root_uuid, "bridges", [br])


def test_exactly_one_open_vswitch_row(db):
    with pytest.raises(TransactionError, match="at most 1 row, not 2"):
        with db.transaction() as txn:
            txn.insert("Open_vSwitch")
    with pytest.raises(TransactionError, match="must hold exactly one row"):
        with db.transaction() as txn:
            txn.delete("Open_vSwitch", txn.root_uuid)
    assert len(db.rows("Open_vSwitch")) == 1


def test_immutable_name(db):
    br = add_bridge(db, "br0")
    with pytest.raises(TransactionError, match="cannot change column 'name' of Bridge \"br0\""):
        with db.transaction() as txn:
            txn.update("Bridge", br, {"name": "br1"})
    with db.transaction() as txn:
        txn.update("Bridge", br, {"name": "br0"})  # same value: fine
        i = txn.insert("Interface", {"name": "x"})
        txn.update("Interface", i, {"name": "y"})  # a new row's name may change
        txn.delete("Interface", i)


def test_deleting_a_referenced_row_is_refused(db):
    add_bridge(db, "br0", ["p1"])
    with pytest.raises(TransactionError, match='cannot delete Port "p1": Bridge "br0" still '
                                               "refers to it in column 'ports'"):
        with db.transaction() as txn:
            txn.delete("Port", txn.lookup("Port", "p1"))


def test_insert_with_existing_uuid_and_update_of_missing_row(db):
    with pytest.raises(TransactionError, match="already exists"):
        with db.transaction() as txn:
            txn.insert("Open_vSwitch", uuid=txn.root_uuid)
    with pytest.raises(TransactionError, match="no Bridge row with uuid"):
        with db.transaction() as txn:
            txn.update("Bridge", uuid.uuid4(), {"fail_mode": "secure"})


def test_concurrent_delete_makes_the_other_transaction_fail(db):
    br = add_bridge(db, "br0")
    slow = db.transaction()
    slow.update("Bridge", br, {"fail_mode": "secure"})
    with db.transaction() as txn:
        txn.mutate_remove("Open_vSwitch", txn.root_uuid, "bridges", [br])
    with pytest.raises(TransactionError, match="deleted by another change"):
        slow.commit()
    assert db.get("Bridge", br) is None


# -- garbage collection ----------------------------------------------------------------

def test_removing_a_port_from_its_bridge_collects_it_and_its_interfaces(db):
    br = add_bridge(db, "br0", ["p1", "p2"])
    p1 = db.lookup("Port", "p1")
    with db.transaction() as txn:
        txn.mutate_remove("Bridge", br, "ports", [p1])
    assert names(db, "Port") == ["p2"] and names(db, "Interface") == ["p2"]
    kinds = sorted((c.table, c.kind) for c in txn.changes.rows)
    assert kinds == [("Bridge", "update"), ("Interface", "delete"), ("Port", "delete")]


def test_removing_a_bridge_collects_everything_under_it(db):
    add_bridge(db, "br0", ["p1"])
    keep = add_bridge(db, "br1", ["p9"])
    with db.transaction() as txn:
        txn.update("Open_vSwitch", txn.root_uuid, {"bridges": [keep]})
    assert names(db, "Bridge") == ["br1"]
    assert names(db, "Port") == ["p9"] and names(db, "Interface") == ["p9"]


def test_unreferenced_new_rows_are_collected(db):
    with db.transaction() as txn:
        txn.insert("Interface", {"name": "orphan"})
    assert not db.rows("Interface") and not txn.changes


def test_moving_a_port_between_bridges_keeps_it(db):
    br0 = add_bridge(db, "br0", ["p1"])
    br1 = add_bridge(db, "br1")
    p1 = db.lookup("Port", "p1")
    with db.transaction() as txn:
        txn.mutate_remove("Bridge", br0, "ports", [p1])
        txn.mutate_add("Bridge", br1, "ports", [p1])
    assert db.get("Bridge", br1)["ports"] == {p1}
    assert names(db, "Interface") == ["p1"]


# -- mutations ----------------------------------------------------------------------

def test_map_mutations(db):
    root = db.root_uuid
    with db.transaction() as txn:
        txn.update("Open_vSwitch", root, {"other_config": {"a": "1", "b": "2"}})
        txn.mutate_add("Open_vSwitch", root, "other_config", {"a": "9", "c": "3"})
    assert db.root["other_config"] == {"a": "1", "b": "2", "c": "3"}
    with db.transaction() as txn:
        txn.mutate_remove("Open_vSwitch", root, "other_config", ["a"])
        txn.mutate_remove("Open_vSwitch", root, "other_config", {"b": "nope", "c": "3"})
    assert db.root["other_config"] == {"b": "2"}


def test_mutation_items_are_checked_and_normalized(db):
    br = add_bridge(db, "br0", ["p1"])
    p1 = db.lookup("Port", "p1")
    with db.transaction() as txn:
        txn.mutate_remove("Bridge", br, "ports", [str(p1)])  # a uuid given as text
    assert db.get("Bridge", br)["ports"] == frozenset()
    root = db.root_uuid
    with pytest.raises(ColumnValueError, match="needs key-value pairs"):
        with db.transaction() as txn:
            txn.mutate_add("Open_vSwitch", root, "other_config", ["a"])
    with pytest.raises(ColumnValueError, match="is not a map"):
        with db.transaction() as txn:
            txn.mutate_add("Open_vSwitch", root, "bridges", {"a": "b"})
    with pytest.raises(ColumnValueError, match="expects a string as a map value, got 1"):
        with db.transaction() as txn:
            txn.mutate_add("Open_vSwitch", root, "other_config", {"a": 1})
    with pytest.raises(TypeError, match="must be a collection"):
        with db.transaction() as txn:
            txn.mutate_remove("Open_vSwitch", root, "other_config", "abc")


def test_optional_and_set_mutations(db):
    add_bridge(db, "br0", ["p1"])
    p1 = db.lookup("Port", "p1")
    with db.transaction() as txn:
        txn.mutate_add("Port", p1, "tag", [5])
        txn.mutate_add("Port", p1, "trunks", [1, 2])
    assert db.get("Port", p1)["tag"] == 5
    with db.transaction() as txn:
        txn.mutate_remove("Port", p1, "tag", [5])
        txn.mutate_remove("Port", p1, "trunks", [1])
    assert db.get("Port", p1)["tag"] is None and db.get("Port", p1)["trunks"] == {2}


# -- listeners and write-back ---------------------------------------------------------

def test_listeners_get_a_summary(db):
    seen = []
    db.add_listener(seen.append)
    br = add_bridge(db, "br0", ["p1"])
    (changes,) = seen
    assert not changes.writeback and changes.generation == db.generation
    assert changes.touches("Bridge") and changes.touches("Open_vSwitch", "bridges")
    assert not changes.touches("Open_vSwitch", "next_cfg")
    assert {c.kind for c in changes.table("Interface")} == {"insert"}
    (ovs,) = changes.table("Open_vSwitch")
    assert ovs.kind == "update" and ovs.columns == {"bridges"} and ovs.new["bridges"] == {br}
    db.remove_listener(seen.append)
    add_bridge(db, "br1")
    assert len(seen) == 1


def test_writeback_is_flagged_and_skips_vanished_rows(db):
    add_bridge(db, "br0", ["p1"])
    iface = db.lookup("Interface", "p1")
    seen = []
    db.add_listener(seen.append)
    changes = db.writeback([("Interface", iface, {"ofport": 1, "error": None}),
                            ("Interface", uuid.uuid4(), {"ofport": 2})])
    assert changes.writeback and seen == [changes]
    assert db.get("Interface", iface)["ofport"] == 1
    assert db.writeback([("Interface", iface, {"ofport": 1})]).rows == ()
    assert len(seen) == 1


def test_ephemeral_only_changes_do_not_rewrite_the_file(db, monkeypatch):
    add_bridge(db, "br0", ["p1"])
    iface = db.lookup("Interface", "p1")
    writes = []
    real = db._write
    monkeypatch.setattr(db, "_write", lambda *a: (writes.append(1), real(*a)))
    db.writeback([("Interface", iface, {"statistics": {"rx_packets": 5}, "link_state": "up"})])
    assert writes == []
    db.writeback([("Interface", iface, {"ofport": 1})])
    assert writes == [1]


def test_listener_commits_are_delivered_after_the_current_commit(db):
    order = []

    def reconfigure(changes):
        order.append(("reconfigure", changes.generation, changes.writeback))
        if not changes.writeback:
            db.writeback([("Open_vSwitch", db.root_uuid, {"cur_cfg": changes.generation})])

    def monitor(changes):
        order.append(("monitor", changes.generation, changes.writeback))

    db.add_listener(reconfigure)
    db.add_listener(monitor)
    add_bridge(db, "br0")
    g = db.generation
    assert order == [("reconfigure", g - 1, False), ("monitor", g - 1, False),
                     ("reconfigure", g, True), ("monitor", g, True)]
    assert db.root["cur_cfg"] == g - 1


def test_a_failing_listener_does_not_stop_the_others(db, caplog):
    seen = []
    db.add_listener(lambda c: 1 / 0)
    db.add_listener(seen.append)
    with caplog.at_level(logging.ERROR):
        add_bridge(db, "br0")
    assert len(seen) == 1 and "ZeroDivisionError" in caplog.text


# -- the file --------------------------------------------------------------------------

def test_reopen_restores_everything_but_ephemeral_columns(tmp_path):
    path = tmp_path / "conf.db"
    with Database(path) as db:
        add_bridge(db, "br0", ["p1"])
        iface = db.lookup("Interface", "p1")
        with db.transaction() as txn:
            txn.update("Interface", iface, {"options": {"n_rxq": "2"}, "ofport_request": 7})
            txn.update("Open_vSwitch", txn.root_uuid, {"other_config": {"pmd-cpu-mask": "0x6"}})
        db.writeback([("Interface", iface, {"ofport": 7, "statistics": {"rx": 1}})])
        db.set_aux("openflow", {"format": 1, "bridges": {"br0": [b"\x00\x01", 2**64 - 1]}})
        before = {t: dict(db.rows(t)) for t in db.schema.tables}
        root = db.root_uuid
    with Database(path) as db:
        assert db.root_uuid == root
        after = {t: dict(db.rows(t)) for t in db.schema.tables}
        assert after["Bridge"] == before["Bridge"] and after["Port"] == before["Port"]
        row = db.get("Interface", iface)
        assert row["ofport"] == 7 and row["ofport_request"] == 7
        assert row["options"] == {"n_rxq": "2"} and row["statistics"] == {}
        assert db.root["other_config"] == {"pmd-cpu-mask": "0x6"}
        assert db.lookup("Port", "p1") is not None
        assert db.get_aux("openflow") == {"format": 1,
                                          "bridges": {"br0": [b"\x00\x01", 2**64 - 1]}}
        assert db.get_aux("missing", 5) == 5


def test_set_aux_refuses_what_msgpack_cannot_store(db):
    with pytest.raises(DatabaseError, match="aux data 'x' cannot be stored"):
        db.set_aux("x", object())
    with pytest.raises(DatabaseError):
        db.set_aux("x", 1 << 70)
    assert db.get_aux("x") is None


def test_writes_are_atomic_and_durable(db, monkeypatch, tmp_path):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", fd)), real_fsync(fd)))
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (calls.append(("replace", str(a), str(b))),
                                      real_replace(a, b)))
    add_bridge(db, "br0")
    path = str(tmp_path / "conf.db")
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync"]
    assert calls[1] == ("replace", path + ".tmp", path)
    assert calls[2] == ("fsync", db._dir_fd)
    assert sorted(os.listdir(tmp_path)) == [".conf.db.~lock~", "conf.db"]


def test_a_failed_write_leaves_memory_and_file_as_they_were(db, monkeypatch, tmp_path):
    add_bridge(db, "br0")
    data = (tmp_path / "conf.db").read_bytes()

    def fail(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PersistError, match="cannot write the database .*No space left"):
        add_bridge(db, "br1")
    assert names(db, "Bridge") == ["br0"]
    assert (tmp_path / "conf.db").read_bytes() == data
    assert not (tmp_path / "conf.db.tmp").exists()


def test_a_second_opener_is_refused(tmp_path):
    with Database(tmp_path / "conf.db"):
        with pytest.raises(DatabaseLockedError, match="in use by another process"):
            Database(tmp_path / "conf.db")
    Database(tmp_path / "conf.db").close()


def test_closed_database_refuses_commits(tmp_path):
    db = Database(tmp_path / "conf.db")
    db.close()
    with pytest.raises(PersistError, match="has been closed"):
        add_bridge(db, "br0")


def _write_doc(path, doc):
    path.write_bytes(msgpack.packb(doc, use_bin_type=True))


def _valid_doc(tmp_path):
    path = tmp_path / "conf.db"
    with Database(path) as db:
        add_bridge(db, "br0", ["p1"])
    return msgpack.unpackb(path.read_bytes())


@pytest.mark.parametrize("corrupt,message", [
    (lambda d: b"\xc1garbage", "not valid msgpack"),
    (lambda d: b"", "not valid msgpack"),
    (lambda d: {**d, "format": 2}, "format 2; this ovsd reads format 1"),
    (lambda d: [1, 2], "does not hold a database object"),
    (lambda d: {**d, "tables": {"Bridge": {"not-a-uuid": {}}}}, "'not-a-uuid' is not a UUID"),
    (lambda d: _set_col(d, "Interface", "ofport_request", "x"),
     "column 'ofport_request' of table 'Interface' expects an integer"),
    (lambda d: _set_col(d, "Bridge", "ports", [str(uuid.uuid4())]), "does not exist"),
    (lambda d: {**d, "tables": {**d["tables"], "Open_vSwitch": {}}},
     "must hold exactly one row"),
    (lambda d: _set_col(d, "Bridge", "other_config", {"a": "b"}), "list of pairs"),
])
def test_a_damaged_file_is_refused_naming_it(tmp_path, corrupt, message):
    doc = _valid_doc(tmp_path)
    path = tmp_path / "conf.db"
    out = corrupt(copy.deepcopy(doc))
    if isinstance(out, bytes):
        path.write_bytes(out)
    else:
        _write_doc(path, out)
    with pytest.raises(DatabaseLoadError) as e:
        Database(path)
    assert str(path) in str(e.value) and message in str(e.value)
    assert "move it away" in str(e.value)
    # The lock was released: a repaired file can be opened by the same process.
    _write_doc(path, doc)
    Database(path).close()


def _set_col(doc, table, column, value):
    rows = doc["tables"][table]
    key = next(iter(rows))
    rows[key] = {**rows[key], column: value}
    return doc


def test_unknown_tables_and_columns_are_dropped_with_a_warning(tmp_path, caplog):
    doc = _valid_doc(tmp_path)
    _set_col(doc, "Bridge", "sflow", [])
    doc["tables"]["Mirror"] = {}
    _write_doc(tmp_path / "conf.db", doc)
    with caplog.at_level(logging.WARNING):
        with Database(tmp_path / "conf.db") as db:
            assert names(db, "Bridge") == ["br0"]
    assert "Bridge.sflow" in caplog.text and "'Mirror'" in caplog.text


def test_an_unreadable_path_is_an_error(tmp_path):
    (tmp_path / "conf.db").mkdir()
    with pytest.raises(DatabaseLoadError, match="cannot read the database"):
        Database(tmp_path / "conf.db")


def test_in_memory_database():
    db = Database(None)
    add_bridge(db, "br0", ["p1"])
    assert names(db, "Port") == ["p1"]


# -- weak references (none in Open_vSwitch, but the schema language has them) -----------

WEAK_SCHEMA = Schema.from_json({
    "name": "T", "version": "1.0.0", "tables": {
        "Root": {"isRoot": True, "columns": {
            "things": {"type": {"key": {"type": "uuid", "refTable": "Thing"},
                                "min": 0, "max": "unlimited"}},
            "fav": {"type": {"key": {"type": "uuid", "refTable": "Thing", "refType": "weak"},
                             "min": 0, "max": 1}},
            "must": {"type": {"key": {"type": "uuid", "refTable": "Thing", "refType": "weak"},
                              "min": 0, "max": "unlimited"}}}},
        "Thing": {"columns": {"n": {"type": "integer"}}}}})


def test_weak_references_to_deleted_rows_are_dropped():
    db = Database(None, WEAK_SCHEMA)
    with db.transaction() as txn:
        a = txn.insert("Thing", {"n": 1})
        b = txn.insert("Thing", {"n": 2})
        root = txn.insert("Root", {"things": [a, b], "fav": a, "must": [a, b]})
    with db.transaction() as txn:
        txn.update("Root", root, {"things": [b]})
    row = db.get("Root", root)
    assert row["fav"] is None and row["must"] == {b}
    assert set(db.rows("Thing")) == {b}


# -- property: whatever happens, the file holds what memory holds -----------------------

ops = st.lists(st.tuples(st.sampled_from(["add_br", "del_br", "add_port", "del_port",
                                          "config", "bad"]),
                         st.sampled_from(["br0", "br1", "br2"]),
                         st.sampled_from(["p1", "p2", "p3"])), max_size=12)


def _apply(db, op, br, port):
    if op == "add_br":
        add_bridge(db, br)
    elif op == "del_br":
        with db.transaction() as txn:
            uid = txn.lookup("Bridge", br)
            txn.mutate_remove("Open_vSwitch", txn.root_uuid, "bridges", [uid] if uid else [])
    elif op == "add_port":
        with db.transaction() as txn:
            uid = txn.lookup("Bridge", br)
            i = txn.insert("Interface", {"name": port})
            p = txn.insert("Port", {"name": port, "interfaces": [i]})
            txn.mutate_add("Bridge", uid, "ports", [p])
    elif op == "del_port":
        with db.transaction() as txn:
            p = txn.lookup("Port", port)
            for uid, row in list(txn.rows("Bridge")):
                if p in row["ports"]:
                    txn.mutate_remove("Bridge", uid, "ports", [p])
    elif op == "config":
        with db.transaction() as txn:
            txn.mutate_add("Open_vSwitch", txn.root_uuid, "external_ids", {br: port})
    else:
        with db.transaction() as txn:
            txn.insert("Bridge", {"name": br, "ports": [uuid.uuid4()]})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_file_always_matches_memory(sequence):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "conf.db")
        with Database(path) as db:
            for op in sequence:
                try:
                    _apply(db, op[0], op[1], op[2])
                except (TransactionError, ColumnValueError, KeyError):
                    pass
            state = {t: dict(db.rows(t)) for t in db.schema.tables}
            bridges = {row["name"] for row in db.rows("Bridge").values()}
            assert {db.get("Bridge", u)["name"] for u in db.root["bridges"]} == bridges
        with Database(path) as again:
            assert {t: dict(again.rows(t)) for t in again.schema.tables} == state
