"""Fault injection: kill -9 of ovsd at 100 random moments while a client
streams configuration changes over JSON-RPC (flows, ports, database values).
After every kill the database loads, and it holds every change the client
saw acknowledged - a reply means durable, whatever the moment of the kill.

One JSON-RPC connection and no subprocess per change keep the 100 rounds to
about a second each; tests/e2e/test_crash.py does the same through ofctl."""

from __future__ import annotations

import json
import random
import socket
import threading
import time

from tests.e2e.conftest import wait_serving

BR = "brk9"
ROUNDS = 100


class Client(threading.Thread):
    """Sends changes one at a time until the daemon is gone; keeps what was
    acknowledged."""

    def __init__(self, path: str, rnd: int, first_port: int):
        super().__init__(daemon=True)
        self.path, self.rnd, self.first_port = path, rnd, first_port
        self.flows: list[int] = []           # cookies
        self.ports: list[tuple[str, int]] = []
        self.ids: list[str] = []

    def run(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.path)
                f = s.makefile("rwb")
                for i in range(100000):
                    kind = i % 3
                    if kind == 0:
                        cookie = self.rnd << 20 | i
                        # A match of its own (round, i): no flow replaces another.
                        params = {"bridge": BR, "flow": f"cookie={cookie:#x},priority=5,"
                                                        f"udp,nw_dst=10.9.0.{self.rnd},"
                                                        f"tp_dst={i},actions=drop"}
                        method, record = "add_flow", ("flows", cookie)
                    elif kind == 1:
                        name, ofport = f"r{self.rnd}p{i}", self.first_port + len(self.ports)
                        params = {"bridge": BR, "port": name,
                                  "settings": ["type=dummy", f"ofport_request={ofport}"]}
                        method, record = "add_port", ("ports", (name, ofport))
                    else:
                        key = f"r{self.rnd}k{i}"
                        params = {"table": "Open_vSwitch", "record": ".",
                                  "assignments": [f"external_ids:{key}=v"]}
                        method, record = "db_set", ("ids", key)
                    f.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                                        "params": params}).encode() + b"\n")
                    f.flush()
                    line = f.readline()
                    if not line:
                        return
                    reply = json.loads(line)
                    assert "result" in reply, reply
                    getattr(self, record[0]).append(record[1])
        except (ConnectionError, OSError, ValueError):
            return  # the daemon died mid-exchange: that change was not acknowledged


def call(d, method: str, **params) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(d.sock))
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                              "params": params}).encode() + b"\n")
        f = s.makefile("rb")
        return json.loads(f.readline())["result"]


def test_100_kills_lose_nothing_acknowledged(daemons):
    run = daemons.rundir()
    rng = random.Random(9)
    flows: set[int] = set()
    ports: dict[str, int] = {}
    ids: set[str] = set()
    next_port = 1
    d = daemons.start(run)
    call(d, "add_br", bridge=BR)
    for rnd in range(ROUNDS):
        client = Client(str(d.sock), rnd, next_port)
        client.start()
        time.sleep(rng.uniform(0.0, 0.25))  # the kill lands anywhere in the stream
        d.kill()
        client.join(30)
        assert not client.is_alive()
        flows.update(client.flows)
        ports.update(client.ports)
        ids.update(client.ids)
        # Numbers a change in flight may have taken stay unused.
        next_port += len(client.ports) + 2
        d.stop()
        d = daemons.start(run)
        wait_serving(d)
        cookies = {f["cookie"] for f in call(d, "dump_flows", bridge=BR)["flows"]}
        assert flows <= cookies, f"round {rnd}: lost flows {sorted(flows - cookies)[:5]}"
        listed = {p["name"]: p["ofport"] for p in call(d, "list_ports", bridge=BR)["ports"]}
        assert {n: listed.get(n) for n in ports} == ports, f"round {rnd}: lost ports"
        ext = call(d, "db_get", table="Open_vSwitch", record=".",
                   columns=["external_ids"])["text"]
        missing = [k for k in ids if f"{k}=v" not in ext]
        assert not missing, f"round {rnd}: lost external_ids {missing[:5]}"
    print(f"{ROUNDS} kills: {len(flows)} flows, {len(ports)} ports, {len(ids)} database "
          "values acknowledged, all of them found after every restart")
    assert len(flows) > 100 and len(ports) > 30 and len(ids) > 30
