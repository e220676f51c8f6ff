"""An OVSDB session without sockets: methods, monitors and their update,
update2 and update3 notifications, locks, echo, and errors."""

import asyncio

import pytest

from ovsd.db.store import Database
from ovsd.ovsdb.service import Service
from ovsd.ovsdb.session import Session
from ovsd.ovsdb.jsonrpc import BadMessage


class Client:
    """A session and everything it sent."""

    def __init__(self, service, name="c"):
        self.out = []
        self.session = Session(service, self.out.append, name)
        self._id = 0

    def call(self, method, *params):
        self._id += 1
        self.out.clear()
        asyncio.run(self.session.receive({"method": method, "params": list(params),
                                          "id": self._id}))
        replies = [m for m in self.out if m.get("id") == self._id]
        assert len(replies) == 1, self.out
        return replies[0]

    def result(self, method, *params):
        msg = self.call(method, *params)
        assert msg["error"] is None, msg
        return msg["result"]

    def notes(self, method=None):
        return [m for m in self.out if m.get("id") is None
                and (method is None or m["method"] == method)]


@pytest.fixture
def service():
    db = Database(None)
    svc = Service(db)
    yield svc
    svc.close()


def add_bridge(client, name):
    return client.result("transact", "Open_vSwitch",
                         {"op": "insert", "table": "Interface", "uuid-name": "i",
                          "row": {"name": name, "type": "internal"}},
                         {"op": "insert", "table": "Port", "uuid-name": "p",
                          "row": {"name": name, "interfaces": ["named-uuid", "i"]}},
                         {"op": "insert", "table": "Bridge", "uuid-name": "b",
                          "row": {"name": name, "ports": ["named-uuid", "p"]}},
                         {"op": "mutate", "table": "Open_vSwitch", "where": [],
                          "mutations": [["bridges", "insert", ["named-uuid", "b"]]]})


def test_basic_methods(service):
    c = Client(service)
    assert c.result("list_dbs") == ["Open_vSwitch", "_Server"]
    assert c.result("echo", 1, "x") == [1, "x"]
    schema = c.result("get_schema", "Open_vSwitch")
    assert schema["name"] == "Open_vSwitch" and schema["version"] == "8.3.1"
    assert "Interface" in schema["tables"]
    server = c.result("get_schema", "_Server")
    assert set(server["tables"]["Database"]["columns"]) == {
        "name", "model", "connected", "leader", "schema", "cid", "sid", "index"}
    assert len(c.result("get_server_id")) == 36
    assert c.result("set_db_change_aware", True) == {}
    assert c.call("frobnicate")["error"] == "unknown method"
    err = c.call("get_schema", "Nope")["error"]
    assert err["error"] == "unknown database"
    assert c.call("transact", "Nope")["error"]["error"] == "unknown database"
    assert c.call("get_schema")["error"]["error"] == "syntax error"


def test_bad_messages():
    svc = Service(Database(None))
    c = Client(svc)
    with pytest.raises(BadMessage):
        asyncio.run(c.session.receive([1, 2]))
    with pytest.raises(BadMessage):
        asyncio.run(c.session.receive({"method": "echo", "params": "x", "id": 5}))
    assert c.out[-1]["id"] == 5 and c.out[-1]["error"]["error"] == "syntax error"
    # A reply to one of our echo probes is fine.
    asyncio.run(c.session.receive({"result": [], "error": None, "id": "echo"}))
    svc.close()


def test_monitor_v1_initial_and_updates(service):
    c = Client(service)
    add_bridge(c, "br0")
    init = c.result("monitor", "Open_vSwitch", "m",
                    {"Bridge": {"columns": ["name", "fail_mode"]}})
    (uid, entry), = init["Bridge"].items()
    assert entry == {"new": {"name": "br0", "fail_mode": ["set", []]}}
    c.result("transact", "Open_vSwitch", {"op": "update", "table": "Bridge", "where": [],
                                          "row": {"fail_mode": "secure"}})
    (note,) = c.notes("update")
    assert note["params"] == ["m", {"Bridge": {uid: {"old": {"fail_mode": ["set", []]},
                                                     "new": {"name": "br0",
                                                             "fail_mode": "secure"}}}}]
    # A change to an unmonitored column sends nothing.
    c.result("transact", "Open_vSwitch", {"op": "update", "table": "Bridge", "where": [],
                                          "row": {"external_ids": ["map", [["a", "b"]]]}})
    assert c.notes() == []
    assert c.result("monitor_cancel", "m") == {}
    assert c.call("monitor_cancel", "m")["error"] == "unknown monitor"


def test_monitor_cond_update2_diffs_and_conditions(service):
    c = Client(service)
    add_bridge(c, "br0")
    add_bridge(c, "br1")
    init = c.result("monitor_cond", "Open_vSwitch", ["id", 2], {
        "Bridge": [{"columns": ["name", "external_ids", "fail_mode", "protocols"],
                    "where": [["name", "==", "br1"]]}]})
    (uid, entry), = init["Bridge"].items()
    assert entry == {"initial": {"name": "br1"}}  # default-valued columns left out
    where1 = [["name", "==", "br1"]]
    c.result("transact", "Open_vSwitch",
             {"op": "update", "table": "Bridge", "where": where1,
              "row": {"external_ids": ["map", [["a", "1"], ["b", "2"]]],
                      "protocols": ["set", ["OpenFlow10", "OpenFlow13"]],
                      "fail_mode": "secure"}},
             {"op": "update", "table": "Bridge", "where": [["name", "==", "br0"]],
              "row": {"fail_mode": "secure"}})
    (note,) = c.notes("update2")
    assert note["params"] == [["id", 2], {"Bridge": {uid: {"modify": {
        "external_ids": ["map", [["a", "1"], ["b", "2"]]],
        "protocols": ["set", ["OpenFlow10", "OpenFlow13"]],
        "fail_mode": "secure"}}}}]
    c.result("transact", "Open_vSwitch",
             {"op": "update", "table": "Bridge", "where": where1,
              "row": {"external_ids": ["map", [["a", "9"], ["c", "3"]]],
                      "protocols": "OpenFlow13", "fail_mode": ["set", []]}})
    (note,) = c.notes("update2")
    # Maps and sets: what changed; a column of at most one value: the new value.
    assert note["params"][1]["Bridge"][uid] == {"modify": {
        "external_ids": ["map", [["a", "9"], ["b", "2"], ["c", "3"]]],
        "protocols": "OpenFlow10", "fail_mode": ["set", []]}}
    # Changing the condition: br1 leaves, br0 enters.
    assert c.result("monitor_cond_change", ["id", 2], "new",
                    {"Bridge": [{"where": [["name", "==", "br0"]]}]}) == {}
    (note,) = c.notes("update2")
    kinds = {k: list(v) for k, v in note["params"][1]["Bridge"].items()}
    assert kinds[uid] == ["delete"] and sorted(kinds.values()) == [["delete"], ["insert"]]
    assert note["params"][0] == "new"


def test_monitor_cond_since_and_update3(service):
    c = Client(service)
    found, last, init = c.result("monitor_cond_since", "Open_vSwitch", "m3",
                                 {"Open_vSwitch": [{"columns": ["next_cfg", "cur_cfg"]}]},
                                 "00000000-0000-0000-0000-000000000000")
    assert found is False and len(last) == 36
    (entry,) = init["Open_vSwitch"].values()
    assert entry == {"initial": {}}
    c.result("transact", "Open_vSwitch", {"op": "mutate", "table": "Open_vSwitch",
                                          "where": [], "mutations": [["next_cfg", "+=", 1]]})
    (note,) = c.notes("update3")
    mon_id, txn_id, updates = note["params"]
    assert mon_id == "m3" and txn_id != last
    assert list(updates["Open_vSwitch"].values()) == [{"modify": {"next_cfg": 1}}]
    # A client that saw that transaction last gets nothing again.
    c2 = Client(service, "c2")
    found, last2, init2 = c2.result("monitor_cond_since", "Open_vSwitch", "m3",
                                    {"Open_vSwitch": [{"columns": ["next_cfg"]}]}, txn_id)
    assert (found, last2, init2) == (True, txn_id, {})


def test_monitors_see_other_writers_and_other_clients(service):
    a, b = Client(service, "a"), Client(service, "b")
    b.result("monitor_cond", "Open_vSwitch", None, {"Interface": [{"columns": ["name",
                                                                             "ofport"]}]})
    add_bridge(a, "br0")
    (note,) = b.notes("update2")
    (entry,) = note["params"][1]["Interface"].values()
    assert entry == {"insert": {"name": "br0"}}
    b.out.clear()
    # A write that is not OVSDB's (the switch writing ofport back) is seen too.
    db = service.main.db
    uid = db.lookup("Interface", "br0")
    db.writeback([("Interface", uid, {"ofport": 65534})])
    (note,) = b.notes("update2")
    assert note["params"][1]["Interface"][str(uid)] == {"modify": {"ofport": 65534}}


def test_monitor_errors(service):
    c = Client(service)
    c.result("monitor", "Open_vSwitch", "x", {"Bridge": {}})
    assert c.call("monitor", "Open_vSwitch", "x", {"Bridge": {}})["error"]["details"] == \
        "duplicate monitor ID"
    assert c.call("monitor", "Open_vSwitch", "y", {"Nope": {}})["error"]["error"] == \
        "syntax error"
    assert c.call("monitor_cond", "Open_vSwitch", "y",
                  {"Bridge": [{"columns": ["nope"]}]})["error"]["error"] == "syntax error"
    assert c.call("monitor_cond_change", "zz", "zz", {})["error"]["error"] == "syntax error"


def test_server_database_monitor_as_the_idl_asks(service):
    c = Client(service)
    init = c.result("monitor_cond", "_Server", ["monid", "_Server"], {
        "Database": [{"columns": ["name", "model", "connected", "leader", "schema", "cid",
                                  "index"]}]})
    rows = {r["initial"]["name"]: r["initial"] for r in init["Database"].values()}
    assert set(rows) == {"Open_vSwitch", "_Server"}
    ovs = rows["Open_vSwitch"]
    assert ovs["model"] == "standalone" and ovs["connected"] and ovs["leader"]
    assert "cid" not in ovs and '"name":"Open_vSwitch"' in ovs["schema"]


def test_locks(service):
    a, b = Client(service, "a"), Client(service, "b")
    assert a.result("lock", "l") == {"locked": True}
    assert a.call("lock", "l")["error"]["error"] == "syntax error"
    assert b.result("lock", "l") == {"locked": False}
    assert b.call("lock", "1 bad")["error"]["error"] == "syntax error"
    assert b.result("transact", "Open_vSwitch", {"op": "assert", "lock": "l"})[0][
        "error"] == "not owner"
    a.out.clear()
    assert a.result("unlock", "l") == {}
    # b was told when the lock came to it.
    assert {"method": "locked", "params": ["l"], "id": None} in a.out + b.out
    assert b.result("transact", "Open_vSwitch", {"op": "assert", "lock": "l"}) == [{}]
    assert a.result("steal", "l") == {"locked": True}
    assert {"method": "stolen", "params": ["l"], "id": None} in b.out
    assert a.call("unlock", "zz")["error"]["error"] == "syntax error"
    # A closed session passes its locks on.
    b.out.clear()
    a.session.close()
    assert {"method": "locked", "params": ["l"], "id": None} in b.out


def test_blocked_wait_completes_after_a_commit(service):
    c, other = Client(service, "c"), Client(service, "other")

    async def scenario():
        wait = {"op": "wait", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"],
                "until": "==", "rows": [{"next_cfg": 1}], "timeout": 5000}
        await c.session.receive({"method": "transact", "params": ["Open_vSwitch", wait],
                                 "id": 1})
        assert c.out == []  # waiting
        await other.session.receive({"method": "transact", "params": [
            "Open_vSwitch", {"op": "mutate", "table": "Open_vSwitch", "where": [],
                             "mutations": [["next_cfg", "+=", 1]]}], "id": 1})
        for _ in range(100):
            if c.out:
                break
            await asyncio.sleep(0.01)
        assert c.out == [{"result": [{}], "error": None, "id": 1}]
        c.out.clear()
        await c.session.receive({"method": "transact", "params": [
            "Open_vSwitch", {**wait, "timeout": 50, "rows": [{"next_cfg": 7}]}], "id": 2})
        await asyncio.sleep(0.3)
        assert c.out[0]["result"][0]["error"] == "timed out"
        c.out.clear()
        await c.session.receive({"method": "transact", "params": [
            "Open_vSwitch", {**wait, "rows": [{"next_cfg": 7}]}], "id": 3})
        await c.session.receive({"method": "cancel", "params": [3], "id": None})
        assert c.out == [{"result": None, "error": {"error": "canceled"}, "id": 3}]

    asyncio.run(scenario())
