"""The JSON-RPC socket of the real daemon under bad clients: invalid JSON,
invalid UTF-8, a line over 16 MiB, a client that disconnects mid-request or
never sends anything.  The offending client gets an error or is dropped; the
daemon and the other clients go on.  Also the protocol itself: batches,
notifications, the error codes."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.daemon import Daemon

MAX_LINE = 16 << 20


class Client:
    """A raw connection: bytes out, reply lines in."""

    def __init__(self, d: Daemon, timeout: float = 20.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(d.sock))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError(f"connection closed; unread: {self.buf[:200]!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def reply(self) -> dict | list:
        return json.loads(self.line())

    def call(self, method: str, params=None, req_id=1):
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(json.dumps(msg).encode() + b"\n")
        return self.reply()

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("rpc")) as daemon:
        daemon.ofctl("add-br", "brrpc")
        yield daemon


@pytest.fixture
def bystander(d):
    """A client connected before the trouble, which must keep working."""
    c = Client(d)
    assert c.call("list_br")["result"] == {"bridges": ["brrpc"]}
    yield c
    assert c.call("list_br", req_id="after")["result"] == {"bridges": ["brrpc"]}
    c.close()
    assert d.proc.poll() is None, "ovsd died"
    assert "brrpc" in d.ofctl("list-br")


def error_of(reply: dict) -> tuple[int, str]:
    assert reply["jsonrpc"] == "2.0" and "result" not in reply, reply
    return reply["error"]["code"], reply["error"]["message"]


def test_invalid_json_gets_parse_error_and_the_connection_goes_on(d, bystander):
    c = Client(d)
    for junk in (b"{not json\n", b'{"jsonrpc": "2.0", "id": 1, "method": \n', b"NaN\n",
                 b"]]]\n", b"\x00\x01\x02\n"):
        c.send(junk)
        reply = c.reply()
        assert reply["id"] is None
        code, msg = error_of(reply)
        assert code == -32700 and msg.startswith("parse error"), (junk, msg)
    assert c.call("list_br")["result"] == {"bridges": ["brrpc"]}
    c.close()


def test_invalid_utf8_gets_parse_error(d, bystander):
    c = Client(d)
    c.send(b'{"jsonrpc":"2.0","id":1,"method":"list_br\xff\xfe"}\n')
    code, msg = error_of(c.reply())
    assert code == -32700 and "not valid UTF-8" in msg
    assert c.call("list_br")["result"] == {"bridges": ["brrpc"]}
    c.close()


def test_line_over_16_mib_is_refused_and_the_client_dropped(d, bystander):
    c = Client(d, timeout=60)
    chunk = b"x" * (1 << 20)
    failure: list[BaseException] = []

    def flood():
        try:
            for _ in range(MAX_LINE // len(chunk) + 2):
                c.send(chunk)
        except OSError as e:  # the daemon may close before we are done
            failure.append(e)

    t = threading.Thread(target=flood)
    t.start()
    # Other clients are served while the flood is being read.
    assert bystander.call("list_br", req_id=2)["result"] == {"bridges": ["brrpc"]}
    code, msg = error_of(c.reply())
    assert code == -32600 and "longer than 16777216 bytes" in msg
    t.join(60)
    assert not t.is_alive()
    assert c.closed_by_peer()
    c.close()


def test_huge_but_valid_request_under_the_limit_is_served(d, bystander):
    c = Client(d)
    big = "y" * (4 << 20)
    reply = c.call("list_br", {"unused": big})  # wrong params, but read whole
    code, msg = error_of(reply)
    assert code == -32602 and "unused" in msg
    c.close()


def test_disconnect_mid_request(d, bystander):
    for partial in (b'{"jsonrpc":"2.0","id":1,"method":"add_br","params":{"bridge":"brh',
                    b"[", b'{"jsonrpc":"2.0"'):
        c = Client(d)
        c.send(partial)
        c.close()
    # A client that resets the connection with a request in flight.
    c = Client(d)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.send(b'{"jsonrpc":"2.0","id":1,"method":"dump_flows","params":{"bridge":"brrpc"}}\n')
    c.close()
    time.sleep(0.2)
    assert "brh" not in d.ofctl("list-br")


def test_silent_client_does_not_block_others(d, bystander):
    silent = [Client(d) for _ in range(5)]
    silent[0].send(b'{"jsonrpc":"2.0","id":1,"method":"list_br"')  # never finished
    assert d.ofctl("list-br") == "brrpc\n"
    for c in silent:
        c.close()


def test_many_requests_on_one_connection_in_order(d, bystander):
    c = Client(d)
    lines = b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "version"}).encode()
                     + b"\n" for i in range(200))
    c.send(lines)
    assert [c.reply()["id"] for _ in range(200)] == list(range(200))
    c.close()


def test_batch_and_notifications(d, bystander):
    c = Client(d)
    batch = [{"jsonrpc": "2.0", "id": "a", "method": "list_br"},
             {"jsonrpc": "2.0", "method": "fdb_flush"},  # a notification: no reply
             {"jsonrpc": "2.0", "id": "b", "method": "no_such_method"},
             {"jsonrpc": "2.0", "id": "c", "method": "show", "params": ["brrpc"]},
             42]
    c.send(json.dumps(batch).encode() + b"\n")
    replies = c.reply()
    assert isinstance(replies, list) and len(replies) == 4
    assert replies[0] == {"jsonrpc": "2.0", "id": "a", "result": {"bridges": ["brrpc"]}}
    assert replies[1]["id"] == "b" and replies[1]["error"]["code"] == -32601
    assert replies[2]["id"] == "c" and replies[2]["result"]["bridge"] == "brrpc"
    assert replies[3]["id"] is None and replies[3]["error"]["code"] == -32600
    # Notifications alone get no reply at all, even failing ones.
    c.send(b'{"jsonrpc":"2.0","method":"add_br","params":{"bridge":"brnote"}}\n')
    c.send(b'{"jsonrpc":"2.0","method":"del_br","params":{"bridge":"nosuch"}}\n')
    c.send(b'[{"jsonrpc":"2.0","method":"version"}]\n')
    c.send(b"\n")  # an empty line is ignored
    assert c.call("list_br", req_id=9) == {"jsonrpc": "2.0", "id": 9,
                                          "result": {"bridges": ["brnote", "brrpc"]}}
    c.call("del_br", {"bridge": "brnote"})
    c.send(b"[]\n")
    code, _ = error_of(c.reply())
    assert code == -32600
    c.close()


@pytest.mark.parametrize("request_,code,text", [
    ({"id": 1, "method": "list_br"}, -32600, '"jsonrpc" must be "2.0"'),
    ({"jsonrpc": "1.0", "id": 1, "method": "list_br"}, -32600, '"jsonrpc" must be "2.0"'),
    ({"jsonrpc": "2.0", "id": 1}, -32600, '"method" must be a string'),
    ({"jsonrpc": "2.0", "id": 1, "method": "list_br", "params": 5}, -32600,
     '"params" must be an object or an array'),
    ({"jsonrpc": "2.0", "id": [1], "method": "list_br"}, -32600, '"id" must be'),
    ({"jsonrpc": "2.0", "id": 1, "method": "add-br"}, -32601, "method not found: 'add-br'"),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_br"}, -32602, "bridge"),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_br", "params": {"bridge": 5}}, -32602,
     "'bridge' must be a string, got an integer"),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_br", "params": {"bridge": "b", "x": 1}},
     -32602, "x"),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_flows",
      "params": {"bridge": "brrpc", "flows": "actions=drop"}}, -32602, "must be an array"),
    ({"jsonrpc": "2.0", "id": 1, "method": "list_ports", "params": {"bridge": "nob"}},
     -32001, "no bridge named nob"),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_br", "params": {"bridge": "brrpc"}},
     -32002, "bridge brrpc already exists"),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_flow",
      "params": {"bridge": "brrpc", "flow": "actions=output:9x"}}, -32003, "9x"),
    ({"jsonrpc": "2.0", "id": 1, "method": "db_set",
      "params": {"table": "Nope", "record": ".", "assignments": ["a=b"]}}, -32003,
     'unknown table "Nope"'),
    ({"jsonrpc": "2.0", "id": 1, "method": "add_port",
      "params": {"bridge": "brrpc", "port": "zz", "settings": ["type=bogus"]}}, -32005,
     "unknown interface type 'bogus'"),
])
def test_error_codes(d, request_, code, text):
    c = Client(d)
    c.send(json.dumps(request_).encode() + b"\n")
    reply = c.reply()
    got_code, msg = error_of(reply)
    assert (got_code, text in msg) == (code, True), msg
    c.close()
