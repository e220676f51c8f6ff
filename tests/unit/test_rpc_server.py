"""The JSON-RPC 2.0 server, driven over real unix sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsd.rpc.server import (
    E_EXISTS, E_INVALID, E_NOT_FOUND, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST,
    METHOD_NOT_FOUND, PARSE_ERROR, Dispatcher, RpcError, RpcServer)

TIMEOUT = 5


class Boom(Exception):
    pass


def make_methods(log: list):
    def add(a: int, b: int = 1) -> int:
        return a + b

    async def echo(text: str, delay: float = 0.0):
        await asyncio.sleep(delay)
        return text

    def note(event: str) -> None:
        log.append(event)

    def lookup(bridge: str):
        raise RpcError(E_NOT_FOUND, f"no bridge named {bridge}", {"bridge": bridge})

    def crash():
        raise KeyError("oops")

    def mapped():
        raise Boom("bad flow syntax")

    def objects():
        return {"uuid": uuid.UUID(int=1), "set": frozenset({3, 1, 2})}

    def unencodable():
        return object()

    def deep():
        out: list = []
        for _ in range(100000):
            out = [out]
        return out

    def big(n: int) -> str:
        return "x" * n

    def anything(value, opt: str | None = None):
        return [value, opt]

    def many(*args: int, **kwargs):
        return [list(args), kwargs]

    return {"add": add, "echo": echo, "note": note, "lookup": lookup, "crash": crash,
            "mapped": mapped, "objects": objects, "unencodable": unencodable, "big": big,
            "deep": deep, "anything": anything, "many": many}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path):
        return cls(*await asyncio.open_unix_connection(path, limit=64 << 20))

    async def send(self, data: bytes | str | object):
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            data = json.dumps(data).encode()
        self.writer.write(data + b"\n")
        await self.writer.drain()

    async def recv(self):
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), line
        return json.loads(line)

    async def call(self, method, params=None, id=1):
        req = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            req["params"] = params
        await self.send(req)
        return await self.recv()

    async def close(self):
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def with_server(tmp_path, body, **kwargs):
    log: list = []
    path = str(tmp_path / "ovsd.sock")
    server = RpcServer(make_methods(log), path, **kwargs)
    await server.start()
    try:
        return await body(server, path, log)
    finally:
        await server.close()


def error_of(reply):
    assert "result" not in reply, reply
    return reply["error"]["code"], reply["error"]["message"]


# -- good calls -----------------------------------------------------------------------

def test_calls_with_keyword_and_positional_params(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        assert await c.call("add", {"a": 2}) == {"jsonrpc": "2.0", "id": 1, "result": 3}
        assert (await c.call("add", [2, 5], id="x"))["result"] == 7
        assert (await c.call("echo", {"text": "hi", "delay": 0.01}))["result"] == "hi"
        assert (await c.call("anything", [None]))["result"] == [None, None]
        assert (await c.call("many", [1, 2], id=None)) == {"jsonrpc": "2.0", "id": None,
                                                           "result": [[1, 2], {}]}
        assert (await c.call("objects"))["result"] == {
            "uuid": "00000000-0000-0000-0000-000000000001", "set": [1, 2, 3]}
        await c.send('{"jsonrpc": "2.0", "id": 9, "method": "add", "params": [1]}\r')
        assert (await c.recv())["result"] == 2
        await c.close()
    run(with_server(tmp_path, body))


def test_notifications_get_no_reply(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        await c.send({"jsonrpc": "2.0", "method": "note", "params": {"event": "a"}})
        await c.send({"jsonrpc": "2.0", "method": "missing"})
        await c.send({"jsonrpc": "2.0", "method": "crash"})
        await c.send("")  # blank lines are ignored too
        assert (await c.call("add", {"a": 1}, id=2))["id"] == 2  # the next line is this reply
        assert log == ["a"]
        await c.close()
    run(with_server(tmp_path, body))


def test_batches(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        await c.send([{"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 1]},
                      {"jsonrpc": "2.0", "method": "note", "params": ["n"]},
                      {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                      5])
        replies = await c.recv()
        assert replies[0] == {"jsonrpc": "2.0", "id": 1, "result": 2}
        assert error_of(replies[1])[0] == METHOD_NOT_FOUND and replies[1]["id"] == 2
        assert error_of(replies[2])[0] == INVALID_REQUEST and replies[2]["id"] is None
        assert len(replies) == 3 and log == ["n"]
        # One result that cannot be sent spoils only its own reply.
        await c.send([{"jsonrpc": "2.0", "id": 1, "method": "unencodable"},
                      {"jsonrpc": "2.0", "id": 2, "method": "add", "params": [2]}])
        bad, good = await c.recv()
        assert error_of(bad)[0] == INTERNAL_ERROR and bad["id"] == 1
        assert good == {"jsonrpc": "2.0", "id": 2, "result": 3}
        # A batch of notifications only: no reply at all.
        await c.send([{"jsonrpc": "2.0", "method": "note", "params": ["m"]}])
        await c.send([])
        assert error_of(await c.recv()) == (INVALID_REQUEST, "invalid request: an empty batch")
        assert log == ["n", "m"]
        await c.close()
    run(with_server(tmp_path, body))


# -- every error code -------------------------------------------------------------------

@pytest.mark.parametrize("line,code,message", [
    (b"{bad json", PARSE_ERROR, "parse error"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": [NaN]}', PARSE_ERROR,
     "NaN is not valid JSON"),
    (b"\xff\xfe\x00garbage", PARSE_ERROR, "not valid UTF-8"),
    (b'"just a string"', INVALID_REQUEST, "expected an object, got a string"),
    (b'{"id": 1, "method": "add"}', INVALID_REQUEST, '"jsonrpc" must be "2.0"'),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "add"}', INVALID_REQUEST, '"jsonrpc" must be'),
    (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', INVALID_REQUEST, '"method" must be a string'),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": 3}', INVALID_REQUEST,
     '"params" must be an object or an array'),
    (b'{"jsonrpc": "2.0", "id": [1], "method": "add"}', INVALID_REQUEST, '"id" must be'),
    (b'{"jsonrpc": "2.0", "id": true, "method": "add"}', INVALID_REQUEST, '"id" must be'),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "nope"}', METHOD_NOT_FOUND,
     "method not found: 'nope'"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add"}', INVALID_PARAMS,
     "invalid params for 'add': missing a required argument: 'a'"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": 1, "c": 2}}',
     INVALID_PARAMS, "got an unexpected keyword argument 'c'"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2, 3]}', INVALID_PARAMS,
     "too many positional arguments"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": "1"}}', INVALID_PARAMS,
     "'a' must be an integer, got a string"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": true}}', INVALID_PARAMS,
     "'a' must be an integer, got a boolean"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["x", "soon"]}',
     INVALID_PARAMS, "'delay' must be a number, got a string"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "anything", "params": [1, 2]}', INVALID_PARAMS,
     "'opt' must be a string or null, got an integer"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "many", "params": [1, "x"]}', INVALID_PARAMS,
     "'args[1]' must be an integer, got a string"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "crash"}', INTERNAL_ERROR,
     "internal error in 'crash': KeyError: 'oops'"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "unencodable"}', INTERNAL_ERROR,
     "the result cannot be sent as JSON"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "deep"}', INTERNAL_ERROR,
     "the result cannot be sent as JSON"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "mapped"}', E_INVALID, "bad flow syntax"),
])
def test_error_codes(tmp_path, line, code, message):
    async def body(server, path, log):
        c = await Client.connect(path)
        await c.send(line)
        reply = await c.recv()
        got_code, got_message = error_of(reply)
        assert got_code == code and message in got_message, reply
        assert reply["jsonrpc"] == "2.0"
        # The connection and the server carry on.
        assert (await c.call("add", [1], id=2))["result"] == 2
        await c.close()
    run(with_server(tmp_path, body, error_codes={Boom: E_INVALID}))


def test_var_args_are_checked_element_by_element():
    d = Dispatcher(make_methods([]))
    assert run(d.call("many", [1, 2])) == [[1, 2], {}]
    assert run(d.call("many", {"k": [1]})) == [[], {"k": [1]}]


def test_application_errors_carry_code_and_data(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        reply = await c.call("lookup", {"bridge": "br9"}, id=4)
        assert reply == {"jsonrpc": "2.0", "id": 4,
                         "error": {"code": E_NOT_FOUND, "message": "no bridge named br9",
                                   "data": {"bridge": "br9"}}}
        await c.close()
    run(with_server(tmp_path, body))


def test_internal_errors_are_logged_with_a_traceback(tmp_path, caplog):
    async def body(server, path, log):
        c = await Client.connect(path)
        with caplog.at_level(logging.ERROR):
            await c.call("crash")
        await c.close()
    run(with_server(tmp_path, body))
    assert "RPC method 'crash' failed" in caplog.text and "Traceback" in caplog.text


def test_rpc_error_codes_are_distinct():
    assert len({E_NOT_FOUND, E_EXISTS, E_INVALID}) == 3
    assert all(-32099 <= c <= -32000 for c in (E_NOT_FOUND, E_EXISTS, E_INVALID))


# -- hostile and broken clients -----------------------------------------------------------

def test_a_line_longer_than_max_line_is_refused_and_the_connection_closed(tmp_path):
    async def body(server, path, log):
        other = await Client.connect(path)
        c = await Client.connect(path)
        c.writer.write(b"[" + b"1," * 2000)  # no newline yet: refused as soon as it is too long
        await c.writer.drain()
        reply = await c.recv()
        assert error_of(reply) == (INVALID_REQUEST, "invalid request: line longer than 1024 "
                                                    "bytes; closing the connection")
        assert await asyncio.wait_for(c.reader.read(), TIMEOUT) == b""  # closed
        await c.close()
        c2 = await Client.connect(path)
        await c2.send(b" " * 1030)  # the same when the newline comes with it
        assert error_of(await c2.recv())[0] == INVALID_REQUEST
        await c2.close()
        assert (await other.call("add", [1]))["result"] == 2
        await other.close()
    run(with_server(tmp_path, body, max_line=1024))


def test_a_line_of_exactly_max_line_is_served(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["x"]})
        await c.send(req + " " * (256 - len(req)))
        assert (await c.recv())["result"] == "x"
        await c.close()
    run(with_server(tmp_path, body, max_line=256))


def test_a_client_that_leaves_mid_request_is_forgotten(tmp_path):
    async def body(server, path, log):
        for _ in range(5):
            c = await Client.connect(path)
            c.writer.write(b'{"jsonrpc": "2.0", "id": 1, "meth')
            await c.writer.drain()
            await c.close()
        # One that leaves while its (slow) call is running.
        c = await Client.connect(path)
        await c.send({"jsonrpc": "2.0", "id": 1, "method": "echo",
                      "params": {"text": "x", "delay": 0.2}})
        await c.close()
        await asyncio.sleep(0.3)
        c = await Client.connect(path)
        assert (await c.call("add", [1]))["result"] == 2
        await c.close()
        assert not server._clients or len(server._clients) <= 1
    run(with_server(tmp_path, body))


def test_garbage_bytes_never_hurt_the_server(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        junk = bytes(range(256)).replace(b"\n", b"") * 4
        await c.send(junk)
        assert error_of(await c.recv())[0] == PARSE_ERROR
        await c.send(b"[" * 100000 + b"]" * 100000)  # deep nesting
        assert error_of(await c.recv())[0] in (PARSE_ERROR, INVALID_REQUEST)
        await c.send(b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1e999999]}')
        assert error_of(await c.recv())[0] == INVALID_PARAMS
        await c.send(b'{"jsonrpc": "2.0", "id": 1, "method": "add", "params": [' +
                     b"9" * 5000 + b"]}")
        assert error_of(await c.recv())[0] == PARSE_ERROR
        assert (await c.call("add", [1]))["result"] == 2
        await c.close()
    run(with_server(tmp_path, body))


def test_a_slow_reader_does_not_stall_the_others(tmp_path):
    async def body(server, path, log):
        slow = await Client.connect(path)
        for i in range(40):  # 40 MB of replies it never reads
            await slow.send({"jsonrpc": "2.0", "id": i, "method": "big", "params": [1 << 20]})
        fast = await Client.connect(path)
        for i in range(20):
            assert (await fast.call("add", [i], id=i))["result"] == i + 1
        await fast.close()
        await slow.close()
    run(with_server(tmp_path, body))


def test_a_slow_method_does_not_stall_the_others(tmp_path):
    async def body(server, path, log):
        slow = await Client.connect(path)
        await slow.send({"jsonrpc": "2.0", "id": 1, "method": "echo",
                         "params": {"text": "late", "delay": 1.0}})
        fast = await Client.connect(path)
        t0 = asyncio.get_running_loop().time()
        assert (await fast.call("add", [1]))["result"] == 2
        assert asyncio.get_running_loop().time() - t0 < 0.5
        assert (await slow.recv())["result"] == "late"
        await fast.close()
        await slow.close()
    run(with_server(tmp_path, body))


def test_many_concurrent_clients(tmp_path):
    async def one(path, n):
        c = await Client.connect(path)
        for i in range(10):
            reply = await c.call("echo", {"text": f"{n}-{i}", "delay": 0.001}, id=i)
            assert reply == {"jsonrpc": "2.0", "id": i, "result": f"{n}-{i}"}
        await c.close()

    async def body(server, path, log):
        await asyncio.gather(*(one(path, n) for n in range(100)))
    run(with_server(tmp_path, body))


def test_pipelined_requests_are_answered_in_order(tmp_path):
    async def body(server, path, log):
        c = await Client.connect(path)
        lines = "".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "add",
                                    "params": [i]}) + "\n" for i in range(200))
        c.writer.write(lines.encode())
        await c.writer.drain()
        for i in range(200):
            assert await c.recv() == {"jsonrpc": "2.0", "id": i, "result": i + 1}
        await c.close()
    run(with_server(tmp_path, body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode)
       | st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                      lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "params"])
                                        | st.text(max_size=3), c, max_size=4),
                      max_leaves=10).map(lambda v: json.dumps(v).encode()))
def test_dispatcher_answers_anything_with_valid_json_or_nothing(line):
    d = Dispatcher(make_methods([]))
    reply = run(d.handle_line(line.replace(b"\n", b" ")))
    if reply is not None:
        decoded = json.loads(reply)
        for r in decoded if isinstance(decoded, list) else [decoded]:
            assert r["jsonrpc"] == "2.0" and ("result" in r) != ("error" in r)


# -- the socket file ------------------------------------------------------------------------

def test_socket_mode_and_removal(tmp_path):
    async def body(server, path, log):
        st_ = os.stat(path)
        assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
        assert sorted(os.listdir(tmp_path)) == ["ovsd.sock"]
    run(with_server(tmp_path, body, mode=0o600))
    assert not os.path.exists(tmp_path / "ovsd.sock")

    async def default_mode(server, path, log):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    run(with_server(tmp_path, default_mode))


def test_a_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path):
    path = tmp_path / "ovsd.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens

    async def body(server, p, log):
        c = await Client.connect(p)
        assert (await c.call("add", [1]))["result"] == 2
        await c.close()
        second = RpcServer({}, p)
        with pytest.raises(OSError, match="another server is listening"):
            await second.start()
    run(with_server(tmp_path, body))

    path.write_text("not a socket")
    with pytest.raises(OSError, match="is not a socket"):
        run(RpcServer({}, str(path)).start())


def test_close_drops_connected_clients(tmp_path):
    async def body():
        path = str(tmp_path / "s.sock")
        server = RpcServer(make_methods([]), path)
        await server.start()
        c = await Client.connect(path)
        assert (await c.call("add", [1]))["result"] == 2
        await server.close()
        assert await asyncio.wait_for(c.reader.read(), TIMEOUT) == b""
        await c.close()
    run(body())


def test_async_context_manager(tmp_path):
    async def body():
        path = str(tmp_path / "s.sock")
        async with RpcServer(make_methods([]), path):
            c = await Client.connect(path)
            assert (await c.call("add", {"a": 5, "b": 5}))["result"] == 10
            await c.close()
        assert not os.path.exists(path)
    run(body())


def test_a_bug_in_the_dispatcher_costs_one_reply(monkeypatch, caplog):
    d = Dispatcher(make_methods([]))

    async def broken(line):
        raise AttributeError("bug")

    monkeypatch.setattr(d, "_handle_line", broken)
    with caplog.at_level(logging.ERROR):
        reply = json.loads(run(d.handle_line(b"{}")))
    assert reply["error"]["code"] == INTERNAL_ERROR and "AttributeError: bug" in caplog.text
