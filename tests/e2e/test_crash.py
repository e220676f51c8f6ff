"""kill -9 of ovsd while ofctl streams add-flow / add-port / set commands at it,
several times on one rundir: every restart loads the database, and every
change ofctl saw acknowledged (exit status 0) is there."""

from __future__ import annotations

import json
import random
import threading
import time

from tests.e2e.conftest import parse_flows

BR = "brcrash"
CYCLES = 5


class Stream(threading.Thread):
    """Runs ofctl commands until one fails (the daemon is gone); keeps the acknowledged."""

    def __init__(self, d, make_args):
        super().__init__(daemon=True)
        self.d = d
        self.make_args = make_args
        self.acked: list[tuple] = []

    def run(self) -> None:
        i = 0
        while True:
            args, record = self.make_args(i)
            if self.d.ofctl_run(*args).returncode != 0:
                return
            self.acked.append(record)
            i += 1


def test_kill_9_during_a_stream_of_changes(daemons):
    run = daemons.rundir()
    rng = random.Random(2024)
    flows: set[tuple] = set()  # (cookie, table, priority)
    ports: dict[str, int] = {}  # name -> ofport_request
    ids: dict[str, str] = {}
    next_ofport = [1]
    for cycle in range(CYCLES):
        d = daemons.start(run)
        if cycle == 0:
            d.ofctl("add-br", BR)

        def flow_args(base):
            def make(i):
                cookie = (cycle << 24) | (base << 16) | i
                table, prio = i % 7, 1 + (i % 500)
                # A distinct match for every flow of the test, so none replaces another.
                match = f"{('tcp', 'udp', 'sctp')[base]},nw_dst=10.0.{cycle}.{i % 256}"
                return (("add-flow", BR, f"cookie={cookie:#x},table={table},priority={prio},"
                         f"{match},tp_dst={i // 256},actions=drop"), (cookie, table, prio))
            return make

        def port_args(i):
            name, ofport = f"k{cycle}p{i}", next_ofport[0] + i
            return (("add-port", BR, name, "type=dummy", f"ofport_request={ofport}"),
                    (name, ofport))

        def id_args(i):
            return (("set", "Open_vSwitch", ".", f"external_ids:c{cycle}i{i}=v{i}"),
                    (f"c{cycle}i{i}", f"v{i}"))

        streams = [Stream(d, flow_args(b)) for b in range(3)]
        streams += [Stream(d, port_args), Stream(d, id_args)]
        for s in streams:
            s.start()
        time.sleep(rng.uniform(0.4, 1.2))
        d.kill()
        for s in streams:
            s.join(60)
            assert not s.is_alive()
        for s in streams[:3]:
            flows.update(s.acked)
        ports.update(streams[3].acked)
        # Leave room above anything the lost commands may have taken.
        next_ofport[0] += len(streams[3].acked) + 2
        ids.update(streams[4].acked)
        assert sum(len(s.acked) for s in streams) > 0, "no command got through"
        d.stop()

        # The database loads, and everything acknowledged is in it.
        d = daemons.start(run)
        got = {(f["cookie"], f["table"], f["priority"])
               for f in parse_flows(d.ofctl("dump-flows", BR))}
        assert flows <= got, f"cycle {cycle}: lost flows {sorted(flows - got)[:5]}"
        listed = {p["name"]: p["ofport"]
                  for p in json.loads(d.ofctl("--json", "list-ports", BR))["ports"]}
        assert {n: listed.get(n) for n in ports} == ports, f"cycle {cycle}: lost ports"
        ext = d.ofctl("get", "Open_vSwitch", ".", "external_ids")
        missing = [k for k, v in ids.items() if f"{k}={v}" not in ext]
        assert not missing, f"cycle {cycle}: lost external_ids {missing[:5]}"
        # Untouched by the crash: the switch still takes changes.
        d.ofctl("add-flow", BR, "cookie=0xffff,priority=1,actions=drop")
        d.stop()
    assert len(flows) > 20 and len(ports) > 3
