"""The OVSDB listener on real sockets, in-process: unix and TCP, a client
that never reads its monitor updates, inactivity probes (echo from the
server), and that the socket file is removed at close."""

import asyncio
import json
import logging

from ovsd.db.store import Database
from ovsd.ovsdb.server import OvsdbServer
from ovsd.ovsdb.service import Service


async def call(reader, writer, method, *params, msg_id=1):
    writer.write(json.dumps({"method": method, "params": list(params),
                             "id": msg_id}).encode())
    await writer.drain()
    dec = json.JSONDecoder()
    buf = ""
    while True:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, "connection closed"
        buf += data.decode()
        try:
            msg, _ = dec.raw_decode(buf)
            return msg
        except ValueError:
            continue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_unix_and_tcp_serve_the_same_database(tmp_path):
    async def main():
        db = Database(None)
        server = OvsdbServer(Service(db), tmp_path / "db.sock", ("127.0.0.1", 0))
        await server.start()
        try:
            ur, uw = await asyncio.open_unix_connection(str(tmp_path / "db.sock"))
            tr, tw = await asyncio.open_connection("127.0.0.1", server.tcp_port)
            msg = await call(ur, uw, "transact", "Open_vSwitch",
                             {"op": "mutate", "table": "Open_vSwitch", "where": [],
                              "mutations": [["external_ids", "insert",
                                             ["map", [["via", "unix"]]]]]})
            assert msg["result"] == [{"count": 1}]
            msg = await call(tr, tw, "transact", "Open_vSwitch",
                             {"op": "select", "table": "Open_vSwitch", "where": [],
                              "columns": ["external_ids"]})
            assert msg["result"] == [{"rows": [{"external_ids": ["map", [["via", "unix"]]]}]}]
            uw.close()
            tw.close()
        finally:
            await server.close()
        assert not (tmp_path / "db.sock").exists()
    run(main())


def test_a_client_that_never_reads_is_dropped(tmp_path, caplog):
    async def main():
        db = Database(None)
        server = OvsdbServer(Service(db), tmp_path / "db.sock", max_backlog=256 << 10)
        await server.start()
        try:
            # The lazy client monitors everything and then never reads again.
            lr, lw = await asyncio.open_unix_connection(str(tmp_path / "db.sock"))
            await call(lr, lw, "monitor", "Open_vSwitch", "m",
                       {"Open_vSwitch": {"columns": ["external_ids"]}})
            wr, ww = await asyncio.open_unix_connection(str(tmp_path / "db.sock"))
            big = "x" * 20000
            for i in range(400):
                msg = await call(wr, ww, "transact", "Open_vSwitch",
                                 {"op": "update", "table": "Open_vSwitch", "where": [],
                                  "row": {"external_ids": ["map", [["k", f"{i}{big}"]]]}},
                                 msg_id=i)
                assert msg["result"] == [{"count": 1}]
            assert len(server._conns) == 1  # only the writer is left
            # The writer's own session is unaffected.
            msg = await call(wr, ww, "echo", "ok", msg_id="e")
            assert msg["result"] == ["ok"]
            ww.close()
            lw.close()
        finally:
            await server.close()
    with caplog.at_level(logging.WARNING, logger="ovsd.ovsdb.server"):
        run(main())
    assert any("does not read its replies and monitor updates" in r.getMessage()
               for r in caplog.records)


def test_inactivity_probe_echo_and_drop(tmp_path, caplog):
    async def main():
        db = Database(None)
        server = OvsdbServer(Service(db), tmp_path / "db.sock", unix_probe=0.2)
        await server.start()
        try:
            # A client that answers the server's echo stays connected.
            r, w = await asyncio.open_unix_connection(str(tmp_path / "db.sock"))
            data = await asyncio.wait_for(r.read(65536), 5)
            probe = json.loads(data)
            assert probe["method"] == "echo" and probe["params"] == [] and probe["id"]
            w.write(json.dumps({"result": [], "error": None, "id": probe["id"]}).encode())
            await w.drain()
            data = await asyncio.wait_for(r.read(65536), 5)
            assert json.loads(data)["method"] == "echo"
            # ...and one that does not is dropped.
            data = await asyncio.wait_for(r.read(65536), 5)
            assert data == b""
            w.close()
        finally:
            await server.close()
    with caplog.at_level(logging.WARNING, logger="ovsd.ovsdb.server"):
        run(main())
    assert any("no reply to an inactivity probe" in r.getMessage() for r in caplog.records)


def test_framing_errors_answer_then_close(tmp_path):
    async def main():
        db = Database(None)
        server = OvsdbServer(Service(db), tmp_path / "db.sock", max_message=1000)
        await server.start()
        try:
            for junk in (b'"bare string"', b'{"a":}', b'{"method":"echo","params":["'
                         + b"x" * 2000):
                r, w = await asyncio.open_unix_connection(str(tmp_path / "db.sock"))
                w.write(junk)
                await w.drain()
                data = await asyncio.wait_for(r.read(65536), 5)
                assert json.loads(data)["error"]["error"] == "syntax error"
                assert await asyncio.wait_for(r.read(65536), 5) == b""
                w.close()
            r, w = await asyncio.open_unix_connection(str(tmp_path / "db.sock"))
            assert (await call(r, w, "echo", 1))["result"] == [1]
            w.close()
        finally:
            await server.close()
    run(main())
