"""ovs-vsctl's value notation: reading what `set` accepts, printing what `get` shows."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsd.db.schema import BaseType, Column, ColumnType, ColumnValueError, default_schema
from ovsd.db.values import (
    format_atom, format_value, needs_quotes, next_token, parse_atom, parse_value, quote,
    unquote)


def col(table, name) -> Column:
    return default_schema().tables[table].columns[name]


STRING = BaseType("string")

# Recorded from OVS 3.1: `ovs-vsctl set bridge br0 external_ids:KEY=ARG` then
# `ovs-vsctl get bridge br0 external_ids:KEY` (ARG as the shell passes it).
RECORDED_STRINGS = [
    ("hello", "hello", "hello"),
    ('"with space"', "with space", '"with space"'),
    ("true", "true", '"true"'),
    ("1.5", "1.5", '"1.5"'),
    ('""', "", '""'),
    ('"tab\\there"', "tab\there", '"tab\\there"'),
    ("héllo", "héllo", '"héllo"'),
    ("a-b.c_d", "a-b.c_d", "a-b.c_d"),
    ("9abc", "9abc", '"9abc"'),
    ('"quote\\"in"', 'quote"in', '"quote\\"in"'),
    ("back\\\\slash", "back\\\\slash", '"back\\\\\\\\slash"'),
    ("7e2ca5bf-2e2f-49d6-824e-6b43c8fdd8df", "7e2ca5bf-2e2f-49d6-824e-6b43c8fdd8df",
     '"7e2ca5bf-2e2f-49d6-824e-6b43c8fdd8df"'),
    ('"\\u0001"', "\x01", '"\\u0001"'),
    ("_x", "_x", "_x"),
    ("a,b", "a,b", '"a,b"'),
    ("false", "false", '"false"'),
    ("yes", "yes", "yes"),
]


@pytest.mark.parametrize("arg,stored,printed", RECORDED_STRINGS)
def test_map_value_strings_like_ovs_vsctl(arg, stored, printed):
    c = col("Bridge", "external_ids")
    assert parse_atom(c, c.type.value, arg, "value") == [stored]
    assert format_atom(STRING, stored) == printed


def test_whole_map_printed_like_ovs_vsctl():
    value = {k: stored for k, (_, stored, _) in zip("abcdefghijklmnopq", RECORDED_STRINGS)}
    c = col("Bridge", "external_ids")
    assert format_value(c.type, c.convert(value)) == (
        '{a=hello, b="with space", c="true", d="1.5", e="", f="tab\\there", g="héllo", '
        'h=a-b.c_d, i="9abc", j="quote\\"in", k="back\\\\\\\\slash", '
        'l="7e2ca5bf-2e2f-49d6-824e-6b43c8fdd8df", m="\\u0001", n=_x, o="a,b", p="false", '
        'q=yes}')


@pytest.mark.parametrize("table,column,text,expected", [
    ("Port", "trunks", "1-3,7", frozenset({1, 2, 3, 7})),
    ("Port", "trunks", "[ 10 , 2  3]", frozenset({2, 3, 10})),
    ("Port", "trunks", "[]", frozenset()),
    ("Port", "trunks", "+5", frozenset({5})),
    ("Port", "tag", "5", 5),
    ("Port", "tag", "[5]", 5),
    ("Port", "tag", "[]", None),
    ("Bridge", "protocols", "OpenFlow13,OpenFlow10", frozenset({"OpenFlow10", "OpenFlow13"})),
    ("Bridge", "stp_enable", "yes", True),
    ("Bridge", "stp_enable", "off", False),
    ("Bridge", "stp_enable", "1", True),
    ("Bridge", "other_config", "{a=b, c=\"d e\"}", {"a": "b", "c": "d e"}),
    ("Bridge", "other_config", "a=b c=d", {"a": "b", "c": "d"}),
    ("Bridge", "other_config", "{}", {}),
    ("Bridge", "other_config", '{"k=1"="v,2"}', {"k=1": "v,2"}),
    ("Bridge", "other_config", "{a\\=b=c}", {"a=b": "c"}),
    ("Interface", "statistics", "{rx=1, tx=-2}", {"rx": 1, "tx": -2}),
    ("Interface", "type", '""', ""),
    ("Interface", "type", "dpdkvhostuserclient", "dpdkvhostuserclient"),
    ("Open_vSwitch", "next_cfg", "-7", -7),
    ("Bridge", "ports", "[7e2ca5bf-2e2f-49d6-824e-6b43c8fdd8df]",
     frozenset({uuid.UUID("7e2ca5bf-2e2f-49d6-824e-6b43c8fdd8df")})),
])
def test_parse_value(table, column, text, expected):
    assert parse_value(col(table, column), text) == expected


@pytest.mark.parametrize("table,column,text,message", [
    ("Interface", "ofport_request", "abc", "expects an integer in 1..65279, got 'abc'"),
    ("Interface", "ofport_request", "1x", "got '1x'"),
    ("Interface", "ofport_request", "70000", "expects an integer in 1..65279, got 70000"),
    ("Interface", "ofport_request", "1,2", "expects at most 1 value, got 2 values (1,2)"),
    ("Port", "trunks", "5-1", "its end is before its start"),
    ("Port", "trunks", "1-5000", "larger than 4096 values"),
    ("Port", "trunks", "[1,2", 'missing "]" at the end'),
    ("Port", "trunks", "[1] x", 'unexpected text after "]"'),
    ("Port", "interfaces", "[]", "expects at least 1 value, got 0 values"),
    ("Bridge", "protocols", "[OpenFlow10,OpenFlow10]", "the set has a value twice"),
    ("Bridge", "other_config", "{a=b,a=c}", "the map has a key twice"),
    ("Bridge", "other_config", "x", 'expected "=" after the key \'x\', found the end'),
    ("Bridge", "other_config", "{a=b", 'missing "}" at the end'),
    ("Bridge", "other_config", "", 'write {} for an empty map'),
    ("Port", "trunks", "  ", 'write [] for an empty set'),
    ("Bridge", "other_config", "{=b}", 'unexpected "="'),
    ("Bridge", "fail_mode", "bogus", "expects one of 'secure', 'standalone', got 'bogus'"),
    ("Bridge", "stp_enable", "maybe", "expects a boolean (true or false), got 'maybe'"),
    ("Interface", "type", '"abc', "quoted string extends past end of argument"),
    ("Interface", "type", '"a\\qb"', "bad escape"),
    ("Interface", "type", "abc\\", "backslash at end of argument"),
    ("Bridge", "ports", "[not-a-uuid]", "expects the UUID of a Port row, got 'not-a-uuid'"),
    ("Interface", "statistics", "{rx=x}", "expects an integer as a map value, got 'x'"),
])
def test_parse_errors(table, column, text, message):
    with pytest.raises(ColumnValueError) as e:
        parse_value(col(table, column), text)
    assert message in str(e.value)
    assert f"column '{column}' of table '{table}'" in str(e.value)


def test_tokens():
    assert next_token('a"b:c"d:e') == ('a"b:c"d', 7)
    assert next_token("a\\:b:c") == ("a:b", 4)
    assert next_token(':x') == ("", 0)
    assert unquote('"a\\"b"') == 'a"b'
    with pytest.raises(ValueError, match="missing quote"):
        unquote('"abc')
    with pytest.raises(ValueError, match="unescaped"):
        unquote('"a"b"')


@pytest.mark.parametrize("table,column,value,printed", [
    ("Port", "trunks", frozenset({10, 2, 3}), "[2, 3, 10]"),
    ("Port", "trunks", frozenset(), "[]"),
    ("Port", "tag", None, "[]"),
    ("Port", "tag", 5, "5"),
    ("Bridge", "fail_mode", "secure", "secure"),
    ("Bridge", "stp_enable", False, "false"),
    ("Bridge", "other_config", {}, "{}"),
    ("Bridge", "other_config", {"b": "2", "a": "1"}, '{a="1", b="2"}'),
    ("Interface", "statistics", {"tx": 5, "rx": 1}, "{rx=1, tx=5}"),
    ("Interface", "mac_in_use", "aa:55:aa:55:00:0f", '"aa:55:aa:55:00:0f"'),
    ("Interface", "type", "", '""'),
])
def test_format_value(table, column, value, printed):
    c = col(table, column)
    assert format_value(c.type, c.convert(value)) == printed


def test_format_reals_like_c():
    real = BaseType("real")
    assert format_atom(real, 1.5) == "1.5"
    assert format_atom(real, 1e20) == "1e+20"
    assert format_atom(real, 1e-5) == "1e-05"
    assert format_atom(real, 0.1) == "0.1"
    assert format_atom(real, 1 / 3) == "0.333333333333333"


def test_needs_quotes():
    assert not needs_quotes("br0")
    assert needs_quotes("") and needs_quotes("0br") and needs_quotes("a b")
    assert needs_quotes("true") and needs_quotes("false")
    assert quote('a"\\\n\x7f') == '"a\\"\\\\\\n\x7f"'


# -- round trip: anything `get` prints, `set` reads back as the same value --------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _atoms(base: BaseType):
    if base.enum is not None:
        return st.sampled_from(sorted(base.enum))
    if base.type == "integer":
        lo = -(1 << 63) if base.min_integer is None else base.min_integer
        hi = (1 << 63) - 1 if base.max_integer is None else base.max_integer
        return st.integers(lo, hi)
    if base.type == "boolean":
        return st.booleans()
    if base.type == "string":
        return _TEXT
    if base.type == "real":
        return st.integers(-10**6, 10**6).map(lambda i: i / 8)
    return st.uuids()


def _values(ctype: ColumnType):
    if ctype.is_map:
        return st.dictionaries(_atoms(ctype.key), _atoms(ctype.value), max_size=4)
    if ctype.is_scalar:
        return _atoms(ctype.key)
    if ctype.is_optional:
        return st.none() | _atoms(ctype.key)
    return st.frozensets(_atoms(ctype.key), min_size=ctype.n_min, max_size=5)


ALL_COLUMNS = [c for t in default_schema().tables.values() for c in t.columns.values()]


@settings(max_examples=300)
@given(st.data())
def test_format_then_parse_round_trips(data):
    c = data.draw(st.sampled_from(ALL_COLUMNS))
    value = c.convert(data.draw(_values(c.type)))
    text = format_value(c.type, value)
    assert parse_value(c, text) == value


@given(_TEXT)
def test_string_atoms_round_trip(s):
    c = col("Interface", "type")
    assert parse_value(c, format_atom(STRING, s)) == s


def test_real_column_round_trip():
    c = Column("T", "r", ColumnType(BaseType("real"), None, 0, None))
    v = c.convert([1.5, -2.0, 1e20])
    assert format_value(c.type, v) == "[-2, 1.5, 1e+20]"
    assert parse_value(c, format_value(c.type, v)) == v
