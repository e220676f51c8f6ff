"""Target ``jsonrpc``: request lines into the RPC dispatcher, and OVSDB messages
into an OVSDB session, in-process.

Byte 0 picks the side.  RPC: the rest is split into lines and each goes to
Dispatcher.handle_line with ovsd's real method table on a switch whose
database is in memory; every port type opens as a dummy port without pcap
files and PMD cores are never started, so nothing touches the host.  Each
reply must be None or JSON holding a result or an error object; -32603
(internal error) is what the dispatcher answers when a method raised
something unexpected, so it counts as a crash.  OVSDB: the bytes go through
JsonSplitter into Session.receive; FramingError and BadMessage are the
documented ways to drop a connection, every message sent must encode as
JSON, and an "internal error" is a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging

MAX_LEN = 4096
RESET = 500
_STATE: dict = {}
_RUNDIR: list[str] = []


class _Crash(AssertionError):
    pass


def setup() -> None:
    from ovsd.netdev import registry
    from ovsd.netdev.dummy.device import DummyNetdev
    from ovsd.pmds import PmdManager

    class _Sandboxed(DummyNetdev):
        def __init__(self, name, options):
            super().__init__(name, {})

        def reconfigure(self, options):
            pass

    for kind in list(registry.TYPES):
        registry.TYPES[kind] = _Sandboxed

    async def no_cores(self, cores):
        return None
    PmdManager.set_cores = no_cores
    logging.disable(logging.CRITICAL)  # expected failures log; the oracle is the reply
    import os
    import tempfile
    # FUZZ_TMP: a directory the caller removes (libFuzzer's exit() skips
    # Python's clean-up, so this process cannot).
    _RUNDIR.append(tempfile.mkdtemp(prefix="rundir-", dir=os.environ.get("FUZZ_TMP")))
    if not os.environ.get("FUZZ_TMP"):  # --replay ends normally: clean up here
        import atexit
        import shutil
        atexit.register(shutil.rmtree, _RUNDIR[0], True)
    _build()


def _build() -> None:
    """A fresh switch and OVSDB service: fuzzed requests pile up bridges,
    ports, flows and rows, so state is started over every RESET inputs."""
    from ovsd.db.store import Database
    from ovsd.ovsdb.service import Service
    from ovsd.rpc import methods
    from ovsd.rpc.server import Dispatcher
    from tests.support.switch import dummy_switch

    old = _STATE.get("loop")
    if old is not None:
        old.close()
    _STATE.clear()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    switch = dummy_switch(_RUNDIR[0])
    _STATE.update(n=0, loop=loop, switch=switch,
                  rpc=Dispatcher(methods.build_methods(switch), error_codes=methods.ERROR_CODES),
                  ovsdb=Service(Database(None)))


def _rpc(body: bytes) -> None:
    from ovsd.rpc.server import INTERNAL_ERROR
    loop, disp = _STATE["loop"], _STATE["rpc"]
    for line in body.split(b"\n")[:8]:
        reply = loop.run_until_complete(disp.handle_line(line.rstrip(b"\r")))
        if reply is None:
            continue
        msg = json.loads(reply)
        for m in (msg if isinstance(msg, list) else [msg]):
            assert m.get("jsonrpc") == "2.0", m
            assert ("result" in m) != ("error" in m), m
            if "error" in m:
                err = m["error"]
                assert isinstance(err.get("code"), int) and isinstance(err.get("message"), str)
                if err["code"] == INTERNAL_ERROR:
                    raise _Crash(f"internal error for {line!r}: {err['message']}")


def _ovsdb(body: bytes) -> None:
    from ovsd.ovsdb import jsonrpc
    from ovsd.ovsdb.session import Session
    loop, service = _STATE["loop"], _STATE["ovsdb"]
    sent: list = []
    session = Session(service, sent.append, "fuzz")
    splitter = jsonrpc.JsonSplitter(max_message=1 << 16)
    try:
        try:
            values = splitter.feed(body)
        except (jsonrpc.FramingError, ValueError):
            # ValueError: a complete value that is not JSON (the I/O layer
            # drops the connection on it, as on FramingError).
            return
        for v in values[:16]:
            try:
                loop.run_until_complete(session.receive(v))
            except jsonrpc.BadMessage:
                break
    finally:
        session.close()
        # Let cancelled waits (blocking "wait" operations) finish.
        loop.run_until_complete(asyncio.sleep(0))
    for m in sent:
        jsonrpc.encode(m)
        err = m.get("error") if isinstance(m, dict) else None
        if isinstance(err, dict) and err.get("error") == "internal error":
            raise _Crash(f"OVSDB internal error: {err}")


def one_input(data: bytes) -> None:
    if not data:
        return
    _STATE["n"] += 1
    if _STATE["n"] > RESET:
        _build()
    if data[0] & 1:
        _ovsdb(data[1:])
    else:
        _rpc(data[1:])


def seeds() -> list[bytes]:
    rpc = [
        {"jsonrpc": "2.0", "id": 1, "method": "add_flow",
         "params": {"bridge": "br0", "flow": "ip,actions=dec_ttl,output:2"}},
        {"jsonrpc": "2.0", "id": 2, "method": "dump_flows", "params": {"bridge": "br0"}},
        {"jsonrpc": "2.0", "id": 3, "method": "trace",
         "params": {"bridge": "br0", "flow": "in_port=1,tcp,tp_dst=80"}},
        {"jsonrpc": "2.0", "id": 4, "method": "inject",
         "params": {"bridge": "br0", "port": "p1", "packet": "ffffffffffff0200000000010800"
                    "4500001c00014000401126ce0a0000010a00000204d2005000080000"}},
        {"jsonrpc": "2.0", "id": 5, "method": "db_set",
         "params": {"table": "Interface", "record": "p1", "assignments": ["mtu_request=1400"]}},
        {"jsonrpc": "2.0", "id": 6, "method": "add_port",
         "params": {"bridge": "br0", "port": "p3", "settings": ["type=dummy"]}},
        [{"jsonrpc": "2.0", "id": 7, "method": "show", "params": ["br0"]},
         {"jsonrpc": "2.0", "method": "version"}],
        {"jsonrpc": "2.0", "id": 8, "method": "capture_start", "params": {"port": "p1"}},
        {"jsonrpc": "2.0", "id": 9, "method": "del_flows", "params": {"bridge": "br0",
                                                                       "match": "ip"}},
    ]
    ovsdb = [
        {"method": "list_dbs", "params": [], "id": 1},
        {"method": "get_schema", "params": ["Open_vSwitch"], "id": 2},
        {"method": "transact", "params": ["Open_vSwitch",
         {"op": "insert", "table": "Bridge", "row": {"name": "b1"}, "uuid-name": "b"},
         {"op": "mutate", "table": "Open_vSwitch", "where": [],
          "mutations": [["bridges", "insert", ["named-uuid", "b"]]]},
         {"op": "select", "table": "Bridge", "where": [["name", "==", "b1"]]}], "id": 3},
        {"method": "monitor_cond", "params": ["Open_vSwitch", "m",
         {"Bridge": [{"columns": ["name"], "where": [["name", "!=", "x"]]}]}], "id": 4},
        {"method": "transact", "params": ["Open_vSwitch", {"op": "wait", "timeout": 0,
         "table": "Bridge", "where": [], "columns": ["name"], "until": "==", "rows": []}],
         "id": 5},
        {"method": "lock", "params": ["l"], "id": 6},
        {"method": "echo", "params": [], "id": "echo"},
    ]
    out = [b"\x00" + json.dumps(m).encode() for m in rpc]
    out.append(b"\x00" + b"\n".join(json.dumps(m).encode() for m in rpc))
    out += [b"\x01" + json.dumps(m).encode() for m in ovsdb]
    out.append(b"\x01" + b"".join(json.dumps(m).encode() for m in ovsdb))
    return out
