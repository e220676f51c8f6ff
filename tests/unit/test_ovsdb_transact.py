"""OVSDB "transact" on the store: every operation, named-uuid, and the RFC's
error objects; a failed transaction changes nothing."""

import pytest

from ovsd.db.store import Database
from ovsd.ovsdb import transact as T
from ovsd.ovsdb.catalog import Served, server_database
from ovsd.ovsdb.transact import Blocked, execute

DB = "Open_vSwitch"


@pytest.fixture
def served(tmp_path):
    db = Database(tmp_path / "conf.db")
    yield Served(DB, db)
    db.close()


def root_where(served):
    return [["_uuid", "==", ["uuid", str(served.db.root_uuid)]]]


def add_bridge_ops(served, name="br0", iface_type="internal"):
    # As ovs-vsctl sends it: the Port refers to the Interface before its insert.
    return [
        {"op": "insert", "table": "Port", "uuid-name": "p",
         "row": {"name": name, "interfaces": ["named-uuid", "i"]}},
        {"op": "insert", "table": "Interface", "uuid-name": "i",
         "row": {"name": name, "type": iface_type}},
        {"op": "insert", "table": "Bridge", "uuid-name": "b",
         "row": {"name": name, "ports": ["named-uuid", "p"]}},
        {"op": "mutate", "table": "Open_vSwitch", "where": root_where(served),
         "mutations": [["bridges", "insert", ["set", [["named-uuid", "b"]]]]]},
    ]


def snapshot(served):
    return {t: dict(served.db.rows(t)) for t in served.schema.tables}


def test_insert_with_forward_named_uuids_and_select(served):
    res = execute(served, add_bridge_ops(served))
    assert [list(r) for r in res] == [["uuid"], ["uuid"], ["uuid"], ["count"]]
    assert res[3] == {"count": 1}
    br = served.db.lookup("Bridge", "br0")
    assert res[2] == {"uuid": ["uuid", str(br)]}
    port = served.db.get("Port", served.db.get("Bridge", br)["ports"].__iter__().__next__())
    assert port["name"] == "br0"
    sel = execute(served, [{"op": "select", "table": "Bridge",
                            "where": [["name", "==", "br0"]], "columns": ["name", "ports"]}])
    assert sel == [{"rows": [{"name": "br0", "ports": res[0]["uuid"]}]}]
    full = execute(served, [{"op": "select", "table": "Bridge", "where": []}])[0]["rows"][0]
    assert full["_uuid"] == ["uuid", str(br)]
    assert full["_version"][0] == "uuid"
    assert full["fail_mode"] == ["set", []]
    assert full["external_ids"] == ["map", []]


def test_update_mutate_delete_and_wait(served):
    execute(served, add_bridge_ops(served))
    where = [["name", "==", "br0"]]
    assert execute(served, [{"op": "update", "table": "Bridge", "where": where,
                             "row": {"external_ids": ["map", [["a", "1"], ["b", "2"]]],
                                     "fail_mode": "secure"}}]) == [{"count": 1}]
    assert execute(served, [{"op": "mutate", "table": "Bridge", "where": where,
                             "mutations": [["external_ids", "insert",
                                            ["map", [["a", "X"], ["c", "3"]]]],
                                           ["external_ids", "delete", ["set", ["b"]]]]},
                            {"op": "mutate", "table": "Open_vSwitch", "where": [],
                             "mutations": [["next_cfg", "+=", 5]]},
                            {"op": "select", "table": "Open_vSwitch", "where": [],
                             "columns": ["next_cfg"]}]) == \
        [{"count": 1}, {"count": 1}, {"rows": [{"next_cfg": 5}]}]
    row = served.db.get("Bridge", served.db.lookup("Bridge", "br0"))
    assert dict(row["external_ids"]) == {"a": "1", "c": "3"}  # insert keeps existing keys
    assert row["fail_mode"] == "secure"
    ok = {"op": "wait", "table": "Bridge", "where": where, "columns": ["fail_mode"],
          "until": "==", "rows": [{"fail_mode": "secure"}], "timeout": 0}
    assert execute(served, [ok]) == [{}]
    bad = {**ok, "rows": [{"fail_mode": "standalone"}]}
    assert execute(served, [bad]) == [{"error": "timed out",
                                       "details": "\"where\" clause test failed"}]
    with pytest.raises(Blocked):
        execute(served, [{**bad, "timeout": 100}], can_block=True)
    assert execute(served, [{**bad, "until": "!="}]) == [{}]
    # Deleting the bridge's reference collects the Bridge, Port and Interface.
    assert execute(served, [{"op": "mutate", "table": "Open_vSwitch", "where": [],
                             "mutations": [["bridges", "delete",
                                            ["uuid", str(served.db.lookup("Bridge",
                                                                          "br0"))]]]}]) \
        == [{"count": 1}]
    assert not served.db.rows("Bridge") and not served.db.rows("Interface")


def test_conditions(served):
    execute(served, add_bridge_ops(served, "br0"))
    execute(served, add_bridge_ops(served, "br1"))
    def names(where):
        res = execute(served, [{"op": "select", "table": "Bridge", "where": where,
                                "columns": ["name"]}])
        return sorted(r["name"] for r in res[0]["rows"])
    assert names([]) == ["br0", "br1"]
    assert names([["name", "!=", "br0"]]) == ["br1"]
    assert names([["name", "includes", "br0"]]) == ["br0"]
    assert names([["fail_mode", "==", ["set", []]]]) == ["br0", "br1"]
    assert names([["external_ids", "excludes", ["map", [["k", "v"]]]]]) == ["br0", "br1"]
    ofp = execute(served, [{"op": "select", "table": "Open_vSwitch", "where": [
        ["next_cfg", ">=", 0], ["next_cfg", "<", 1]], "columns": ["next_cfg"]}])
    assert ofp == [{"rows": [{"next_cfg": 0}]}]


def test_commit_comment_assert_abort(served):
    assert execute(served, [{"op": "comment", "comment": "hi"},
                            {"op": "commit", "durable": True}]) == [{}, {}]
    assert execute(served, [{"op": "assert", "lock": "l"}]) == [
        {"error": "not owner", "details": "Asserted lock l not held."}]
    assert execute(served, [{"op": "assert", "lock": "l"}],
                   owns_lock=lambda n: n == "l") == [{}]
    before = snapshot(served)
    res = execute(served, add_bridge_ops(served) + [{"op": "abort"},
                                                     {"op": "comment", "comment": "x"}])
    assert res[4] == {"error": "aborted", "details": "aborted by request"}
    assert res[5] is None
    assert snapshot(served) == before


# (ops, the error, the operation it is reported at; None = at commit, after the ops)
ERRORS = [
    ([{"op": "select", "table": "Nope", "where": []}], "syntax error", 0),
    ([{"op": "frob"}], "syntax error", 0),
    (["not an object"], "syntax error", 0),
    ([{"op": "insert", "table": "Bridge", "row": {"nope": 1}}], "unknown column", 0),
    ([{"op": "insert", "table": "Bridge", "row": {"name": 1}}], "syntax error", 0),
    ([{"op": "insert", "table": "Bridge", "row": {"name": "x", "fail_mode": "bad"}}],
     "constraint violation", 0),
    ([{"op": "insert", "table": "Interface", "row": {"name": "x", "ofport_request": 0}}],
     "constraint violation", 0),
    ([{"op": "insert", "table": "Port", "row": {"name": "x", "trunks": ["set", ["a"]]}}],
     "syntax error", 0),
    ([{"op": "update", "table": "Bridge", "where": [], "row": {"name": "q"}}],
     "constraint violation", 0),
    ([{"op": "mutate", "table": "Open_vSwitch", "where": [],
       "mutations": [["next_cfg", "/=", 0]]}], "domain error", 0),
    ([{"op": "mutate", "table": "Open_vSwitch", "where": [],
       "mutations": [["next_cfg", "+=", (1 << 63) - 1]]},
      {"op": "mutate", "table": "Open_vSwitch", "where": [],
       "mutations": [["next_cfg", "+=", 1]]}], "range error", 1),
    ([{"op": "select", "table": "Bridge", "where": [["name", "<", "a"]]}], "syntax error", 0),
    ([{"op": "update", "table": "Open_vSwitch", "where": [],
       "row": {"bridges": ["uuid", "11111111-1111-1111-1111-111111111111"]}}],
     "referential integrity violation", None),
    ([{"op": "update", "table": "Open_vSwitch", "where": [],
       "row": {"bridges": ["named-uuid", "nowhere"]}}], "referential integrity violation",
     None),
    ([{"op": "insert", "table": "Bridge", "uuid-name": "a", "row": {"name": "a"}},
      {"op": "insert", "table": "Bridge", "uuid-name": "a", "row": {"name": "b"}}],
     "duplicate uuid-name", 1),
    ([{"op": "insert", "table": "Bridge", "uuid-name": "a", "row": {"name": "same"}},
      {"op": "insert", "table": "Bridge", "uuid-name": "b", "row": {"name": "same"}},
      {"op": "mutate", "table": "Open_vSwitch", "where": [],
       "mutations": [["bridges", "insert", ["set", [["named-uuid", "a"],
                                                    ["named-uuid", "b"]]]]]}],
     "constraint violation", None),
    ([{"op": "delete", "table": "Open_vSwitch", "where": []}], "constraint violation", None),
    ([{"op": "wait", "table": "Bridge", "where": [], "until": "==", "rows": [{}],
       "columns": [], "timeout": "soon"}], "syntax error", 0),
]


@pytest.mark.parametrize("ops, error, at", ERRORS)
def test_errors_change_nothing(served, ops, error, at):
    execute(served, add_bridge_ops(served))  # something to break
    before = snapshot(served)
    generation = served.db.generation
    res = execute(served, ops)
    where = len(ops) if at is None else at
    assert res[where]["error"] == error, res
    assert all("error" not in (r or {}) for r in res[:where])
    assert res[where + 1:] == [None] * (len(ops) - where - 1)
    assert len(res) == len(ops) + (1 if at is None else 0)
    assert snapshot(served) == before
    assert served.db.generation == generation


def test_deleting_a_referenced_row_is_a_referential_integrity_violation(served):
    execute(served, add_bridge_ops(served))
    res = execute(served, [{"op": "delete", "table": "Bridge", "where": []}])
    assert res[0] == {"count": 1}
    assert res[1]["error"] == "referential integrity violation"
    assert "still refers" in res[1]["details"]


def test_server_database_is_read_only(served):
    server = server_database([served])
    rows = execute(server, [{"op": "select", "table": "Database", "where": [],
                             "columns": ["name", "model", "connected", "leader", "cid"]}])
    assert sorted(rows[0]["rows"], key=lambda r: r["name"]) == [
        {"name": "Open_vSwitch", "model": "standalone", "connected": True, "leader": True,
         "cid": ["set", []]},
        {"name": "_Server", "model": "standalone", "connected": True, "leader": True,
         "cid": ["set", []]}]
    res = execute(server, [{"op": "delete", "table": "Database", "where": []}])
    assert res[0]["error"] == "not allowed"


@pytest.mark.parametrize("message, error", [
    ("Bridge \"b\" refers in column 'ports' to a Port row x that does not exist",
     "referential integrity violation"),
    ("cannot delete Bridge \"b\": Open_vSwitch row x still refers to it in column 'bridges'",
     "referential integrity violation"),
    ("two Bridge rows would have the same name='a' (x and y): Bridge name must be unique",
     "constraint violation"),
])
def test_store_messages_are_classified(message, error):
    # The store words its refusals; these are the phrases the mapping relies on.
    assert T._classify(message) == error
