"""The Open_vSwitch schema file and the column types built from it."""

from __future__ import annotations

import json
import pickle
import re
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovsd.db.schema import (
    DEFAULT_SCHEMA_PATH, SWITCH_OWNED, BaseType, ColumnType, ColumnValueError, FrozenMap,
    Schema, SchemaError, default_schema)

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")

REQUIRED = {
    "Open_vSwitch": "bridges other_config external_ids next_cfg cur_cfg ovs_version db_version "
                    "system_type system_version iface_types datapath_types dpdk_initialized "
                    "statistics",
    "Bridge": "name ports datapath_type datapath_id datapath_version fail_mode protocols "
              "other_config external_ids status mcast_snooping_enable stp_enable rstp_enable",
    "Port": "name interfaces tag trunks vlan_mode other_config external_ids status",
    "Interface": "name type options ofport ofport_request admin_state link_state link_speed "
                 "mac_in_use mac mtu mtu_request statistics status external_ids other_config "
                 "error duplex ifindex",
}


def posix_cksum(data: bytes) -> tuple[int, int]:
    """What the cksum(1) utility prints: CRC-32/POSIX and the length."""
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    n = len(data)
    while n:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ (n & 0xFF)]
        n >>= 8
    return (~crc) & 0xFFFFFFFF, len(data)


def test_posix_cksum_matches_known_value():
    # `printf 'hello\n' | cksum` prints "3015617425 6".
    assert posix_cksum(b"hello\n") == (3015617425, 6)


def test_schema_file_has_the_tables_and_columns_ovsd_needs():
    schema = default_schema()
    assert schema.name == "Open_vSwitch"
    assert schema.version == "8.3.1"  # OVS 3.1's
    assert list(schema.tables) == ["Open_vSwitch", "Bridge", "Port", "Interface"]
    for table, names in REQUIRED.items():
        assert set(names.split()) <= set(schema.tables[table].columns), table


def test_schema_file_checksum_is_computed_as_ovs_does():
    text = DEFAULT_SCHEMA_PATH.read_bytes()
    kept = b"".join(line for line in text.splitlines(keepends=True)
                    if not re.search(rb'"cksum": *"[0-9]+ [0-9]+",', line))
    crc, length = posix_cksum(kept)
    assert default_schema().cksum == f"{crc} {length}"


def test_table_properties_match_ovs():
    schema = default_schema()
    root = schema.tables["Open_vSwitch"]
    assert root.is_root and root.max_rows == 1 and root.indexes == ()
    for name in ("Bridge", "Port", "Interface"):
        t = schema.tables[name]
        assert not t.is_root and t.max_rows is None and t.indexes == (("name",),)
        assert t.name_column == "name"
        assert not t.columns["name"].mutable
    assert root.name_column is None


@pytest.mark.skipif(not OVS_SCHEMA.exists(), reason="OVS's schema is not installed")
def test_every_kept_column_is_exactly_ovs_31s():
    ours = json.loads(DEFAULT_SCHEMA_PATH.read_text())
    theirs = json.loads(OVS_SCHEMA.read_text())
    assert ours["version"] == theirs["version"]
    for tname, table in ours["tables"].items():
        real = theirs["tables"][tname]
        for key in ("isRoot", "maxRows", "indexes"):
            assert table.get(key) == real.get(key), (tname, key)
        for cname, col in table["columns"].items():
            assert col == real["columns"][cname], (tname, cname)
        # Kept in OVS's order, so that a diff against OVS's file stays readable.
        order = [c for c in real["columns"] if c in table["columns"]]
        assert list(table["columns"]) == order


def test_references_point_at_kept_tables():
    schema = default_schema()
    for t in schema.tables.values():
        for c in t.columns.values():
            for base in (c.type.key, c.type.value):
                if base is not None and base.ref_table is not None:
                    assert base.ref_table in schema.tables


def test_schema_round_trips_through_json():
    schema = default_schema()
    again = Schema.from_json(json.loads(json.dumps(schema.to_json())))
    assert again == schema
    # OVS's normal form: a bare type name where no constraint or size needs more.
    iface = schema.to_json()["tables"]["Interface"]["columns"]
    assert iface["type"] == {"type": "string"}
    assert iface["mac_in_use"] == {"type": {"key": "string", "min": 0}, "ephemeral": True}
    assert iface["name"] == {"type": "string", "mutable": False}


def test_persistent_columns():
    t = default_schema().tables
    assert not t["Interface"].columns["statistics"].persistent
    assert t["Interface"].columns["ofport"].persistent
    assert t["Bridge"].columns["ports"].persistent


def test_switch_owned_columns_exist_and_are_flagged():
    schema = default_schema()
    for table, names in SWITCH_OWNED.items():
        for n in names:
            assert schema.tables[table].columns[n].switch_owned
    assert not schema.tables["Interface"].columns["ofport_request"].switch_owned
    assert not schema.tables["Open_vSwitch"].columns["next_cfg"].switch_owned


# -- conversion ---------------------------------------------------------------

def col(table, name):
    return default_schema().tables[table].columns[name]


def test_convert_scalars():
    assert col("Open_vSwitch", "next_cfg").convert(5) == 5
    assert col("Bridge", "stp_enable").convert(True) is True
    assert col("Interface", "type").convert("dummy") == "dummy"


def test_convert_optional_uses_none_or_the_atom():
    c = col("Interface", "ofport_request")
    assert c.convert(None) is None
    assert c.convert(7) == 7
    assert c.convert([7]) == 7
    assert c.convert(frozenset()) is None
    assert c.default() is None


def test_convert_sets_and_maps():
    assert col("Port", "trunks").convert([1, 2, 2]) == frozenset({1, 2})
    m = col("Interface", "options").convert({"a": "b"})
    assert isinstance(m, FrozenMap) and m == {"a": "b"}
    u = uuid.uuid4()
    assert col("Bridge", "ports").convert([str(u)]) == frozenset({u})


@pytest.mark.parametrize("table,column,value,message", [
    ("Interface", "ofport_request", "abc",
     "column 'ofport_request' of table 'Interface' expects an integer in 1..65279, got 'abc'"),
    ("Interface", "ofport_request", 0,
     "column 'ofport_request' of table 'Interface' expects an integer in 1..65279, got 0"),
    ("Interface", "ofport_request", True,
     "column 'ofport_request' of table 'Interface' expects an integer in 1..65279, got True"),
    ("Interface", "ofport_request", [1, 2],
     "column 'ofport_request' of table 'Interface' expects at most 1 value, got 2 values"),
    ("Bridge", "fail_mode", "open",
     "column 'fail_mode' of table 'Bridge' expects one of 'secure', 'standalone', got 'open'"),
    ("Bridge", "stp_enable", "yes",
     "column 'stp_enable' of table 'Bridge' expects a boolean (true or false), got 'yes'"),
    ("Port", "interfaces", [],
     "column 'interfaces' of table 'Port' expects at least 1 value, got 0 values"),
    ("Port", "trunks", "5",
     "column 'trunks' of table 'Port' expects a set (set, frozenset, list or tuple), got '5'"),
    ("Port", "trunks", [4096],
     "column 'trunks' of table 'Port' expects an integer in 0..4095, got 4096"),
    ("Interface", "statistics", {"rx": "x"},
     "column 'statistics' of table 'Interface' expects an integer as a map value, got 'x'"),
    ("Interface", "options", {1: "x"},
     "column 'options' of table 'Interface' expects a string as a map key, got 1"),
    ("Interface", "options", ["a"],
     "column 'options' of table 'Interface' expects a map (dict), got ['a']"),
    ("Bridge", "ports", ["nope"],
     "column 'ports' of table 'Bridge' expects the UUID of a Port row, got 'nope'"),
    ("Interface", "type", "\ud800",
     "column 'type' of table 'Interface' expects a string of valid Unicode"),
    ("Open_vSwitch", "next_cfg", 1 << 63,
     "column 'next_cfg' of table 'Open_vSwitch' expects a 64-bit signed integer"),
])
def test_convert_errors_name_column_table_expectation_and_value(table, column, value, message):
    with pytest.raises(ColumnValueError) as e:
        col(table, column).convert(value)
    assert str(e.value).startswith(message)
    assert e.value.table == table and e.value.column == column


def test_frozen_map_refuses_changes_but_behaves_like_a_dict():
    m = FrozenMap({"a": "1"})
    for attempt in (lambda: m.__setitem__("b", "2"), lambda: m.update(b="2"),
                    lambda: m.pop("a"), m.clear, lambda: m.setdefault("c", "3"),
                    lambda: m.__delitem__("a"), m.popitem):
        with pytest.raises(TypeError):
            attempt()
    assert m == {"a": "1"} and json.dumps(m) == '{"a": "1"}'
    assert pickle.loads(pickle.dumps(m)) == m
    assert {**m, "b": "2"} == {"a": "1", "b": "2"}


# -- parsing schema JSON --------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    ({"name": "x", "version": "1.0", "tables": {"T": {"columns": {}}}}, "not of the form x.y.z"),
    ({"name": "x", "version": "1.0.0", "tables": {}}, "non-empty"),
    ({"name": "x", "version": "1.0.0",
      "tables": {"T": {"columns": {"c": {"type": "blob"}}}}}, "unknown atomic type 'blob'"),
    ({"name": "x", "version": "1.0.0", "tables": {"T": {"columns": {
        "c": {"type": {"key": {"type": "uuid", "refTable": "U"}}}}}}},
     "refers to undefined table 'U'"),
    ({"name": "x", "version": "1.0.0", "tables": {"T": {"columns": {
        "c": {"type": {"key": {"type": "integer", "minInteger": 5, "maxInteger": 1}}}}}}},
     "minInteger exceeds"),
    ({"name": "x", "version": "1.0.0", "tables": {"T": {"columns": {
        "c": {"type": {"key": "string", "min": 2}}}}}}, "min must be 0 or 1"),
    ({"name": "x", "version": "1.0.0", "tables": {"T": {"columns": {"c": {"type": "string"}},
                                                        "indexes": [["d"]]}}},
     "names unknown columns"),
    ({"name": "x", "version": "1.0.0", "tables": {"T": {"columns": {
        "_c": {"type": "string"}}}}}, "reserved"),
])
def test_bad_schemas_are_refused_clearly(bad, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        Schema.from_json(bad)


def test_schema_without_roots_makes_every_table_root():
    s = Schema.from_json({"name": "x", "version": "1.0.0",
                          "tables": {"A": {"columns": {"n": {"type": "string"}}},
                                     "B": {"columns": {"n": {"type": "string"}}}}})
    assert all(t.is_root for t in s.tables.values())


def test_load_errors_name_the_file(tmp_path):
    p = tmp_path / "s.ovsschema"
    p.write_text("{not json")
    with pytest.raises(SchemaError, match=str(p)):
        Schema.load(p)
    with pytest.raises(SchemaError, match="cannot read"):
        Schema.load(tmp_path / "missing")


def test_describe():
    assert BaseType("integer", min_integer=0).describe() == "an integer >= 0"
    assert BaseType("real", max_real=1.5).describe() == "a real number <= 1.5"
    assert BaseType("string", min_length=1, max_length=4).describe() == \
        "a string of 1..4 characters"
    ct = ColumnType.from_json({"key": "string", "value": "integer", "min": 0,
                               "max": "unlimited"}, "t")
    assert ct.describe() == "a map of pairs with keys a string and values an integer"


atomic = st.sampled_from(["integer", "real", "boolean", "string", "uuid"])


@st.composite
def base_types(draw):
    kind = draw(atomic)
    if kind == "integer" and draw(st.booleans()):
        lo = draw(st.integers(-100, 100))
        return {"type": "integer", "minInteger": lo,
                "maxInteger": lo + draw(st.integers(0, 100))}
    if kind == "string" and draw(st.booleans()):
        return {"type": "string", "enum": ["set", sorted(draw(st.sets(
            st.text("abc", min_size=1, max_size=3), min_size=2, max_size=4)))]}
    return kind


@given(base_types(), st.one_of(st.none(), base_types()), st.sampled_from([0, 1]),
       st.sampled_from([1, 2, 4096, "unlimited"]))
def test_column_types_round_trip_through_json(key, value, n_min, n_max):
    j = {"key": key, "min": n_min, "max": n_max}
    if value is not None:
        j["value"] = value
    ct = ColumnType.from_json(j, "t")
    assert ColumnType.from_json(ct.to_json(), "t") == ct
