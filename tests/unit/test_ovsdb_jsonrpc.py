"""OVSDB's JSON-RPC 1.0 framing: concatenated JSON values, split by depth."""

import json

import pytest

from ovsd.ovsdb import jsonrpc
from ovsd.ovsdb.jsonrpc import BadMessage, FramingError, JsonSplitter, parse_message

MESSAGES = [
    {"method": "echo", "params": [], "id": 0},
    {"method": "transact", "params": ["Open_vSwitch", {"op": "comment",
                                                        "comment": "a } ] \" \\ {["}],
     "id": "x"},
    [1, [2, [3]], {"a": "]"}],
    {"method": "echo", "params": ["\u00e9\u4e2d"], "id": None},
]


def stream() -> bytes:
    # No separator at all between some values, whitespace between others.
    return (json.dumps(MESSAGES[0]) + json.dumps(MESSAGES[1]) + " \n\t"
            + json.dumps(MESSAGES[2]) + "\r\n" + json.dumps(MESSAGES[3],
                                                             ensure_ascii=False)).encode()


def test_whole_stream_at_once():
    assert JsonSplitter().feed(stream()) == MESSAGES


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_chunking_gives_the_same_values(size):
    data = stream()
    s = JsonSplitter()
    out = []
    for i in range(0, len(data), size):
        out += s.feed(data[i:i + size])
    assert out == MESSAGES
    assert s.buffered == 0


def test_partial_value_waits_for_the_rest():
    s = JsonSplitter()
    assert s.feed(b'{"method":"ec') == []
    assert s.feed(b'ho","params":[],"id":1}{"a"') == [{"method": "echo", "params": [],
                                                        "id": 1}]
    assert s.feed(b":1}") == [{"a": 1}]


@pytest.mark.parametrize("data, message", [
    (b'"just a string"', "expected a JSON object or array"),
    (b"42", "expected a JSON object or array"),
    (b"{} x", "expected a JSON object or array"),
    (b'{"a": tru}', "not valid JSON"),
    (b'{"a": NaN}', "not valid JSON"),
    (b'{"a": "\xff\xfe"}', "not valid UTF-8"),
    (b"[" * 300, "nested deeper"),
])
def test_broken_streams_raise_framing_errors(data, message):
    with pytest.raises(FramingError, match=message):
        JsonSplitter().feed(data)


def test_a_message_over_the_limit_is_refused_before_it_is_complete():
    s = JsonSplitter(max_message=1000)
    with pytest.raises(FramingError, match="longer than the limit"):
        s.feed(b'{"method":"echo","params":["' + b"x" * 2000)


def test_parse_message_kinds():
    assert parse_message({"method": "echo", "params": [], "id": 1}).kind == "request"
    assert parse_message({"method": "update", "params": [], "id": None}).kind == "notify"
    assert parse_message({"result": [], "error": None, "id": 1}).kind == "reply"
    assert parse_message({"result": None, "error": "x", "id": 1}).kind == "error"


@pytest.mark.parametrize("value, id_", [
    ([1, 2], None),
    ({"method": 3, "params": [], "id": 7}, 7),
    ({"method": "echo", "params": {}, "id": 8}, 8),
    ({"method": "echo", "id": 9}, 9),
    ({"id": 10}, 10),
])
def test_bad_messages_keep_their_id_when_there_is_one(value, id_):
    with pytest.raises(BadMessage) as e:
        parse_message(value)
    assert e.value.id == id_


def test_encode_is_compact_ascii_and_handles_lone_surrogates():
    data = jsonrpc.encode(jsonrpc.reply(1, ["\ud800", "é"]))
    assert data == b'{"result":["\\ud800","\\u00e9"],"error":null,"id":1}'
    assert json.loads(data)["result"] == ["\ud800", "é"]
