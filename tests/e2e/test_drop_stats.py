"""`ofctl drop-stats`: each pipeline drop reason provoked with dummy ports
and seen in the counts, per port and in total (the real-port reasons are in
tests/integration/test_drop_reasons.py and the vhost-user tests)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import udp_frame

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


@pytest.fixture
def sw(daemon):
    daemon.ofctl("add-br", "br0")
    for n in (1, 2):
        daemon.ofctl("add-port", "br0", f"p{n}", "type=dummy", f"ofport_request={n}")
    daemon.ofctl("del-flows", "br0")
    return daemon


def drops(d, target: str | None = None) -> dict:
    return json.loads(d.ofctl("--json", "drop-stats", *([target] if target else [])))


def provoke(d, flows: list[str], frame: str, port: str = "p1", times: int = 3) -> dict:
    d.ofctl("del-flows", "br0")
    for f in flows:
        d.ofctl("add-flow", "br0", f)
    before = drops(d, port)["ports"].get(port, {})
    for _ in range(times):
        d.ofctl("inject", "br0", port, frame)
    after = drops(d, port)["ports"].get(port, {})
    return {r: n - before.get(r, 0) for r, n in after.items() if n != before.get(r, 0)}


@pytest.mark.parametrize("reason, flows, frame", [
    ("table_miss", ["in_port=2,actions=output:1"], udp_frame()),
    ("drop_action", ["actions=drop"], udp_frame()),
    ("no_output", ["actions=mod_dl_src:02:00:00:00:00:09"], udp_frame()),
    ("output_to_input_port", ["in_port=1,actions=output:1"], udp_frame()),
    ("ttl_expired", ["ip,actions=dec_ttl,output:2"], udp_frame(ttl=1)),
    ("resubmit_loop", ["table=0,actions=resubmit(,1)", "table=1,actions=resubmit(,0)"],
     udp_frame()),
    ("output_port_unknown", ["actions=output:99"], udp_frame()),
])
def test_each_pipeline_reason_is_counted_on_the_input_port(sw, reason, flows, frame):
    assert provoke(sw, flows, frame) == {reason: 3}


def test_normal_does_not_send_back_where_the_destination_was_learned(sw):
    sw.ofctl("add-flow", "br0", "actions=NORMAL")
    sw.ofctl("inject", "br0", "p1", udp_frame(src=B, dst="ff:ff:ff:ff:ff:ff"))  # B on p1
    assert provoke(sw, ["actions=NORMAL"], udp_frame(src=A, dst=B)) == \
        {"output_to_input_port": 3}


def test_output_to_a_port_that_is_not_ready(sw):
    # A vhost-user port nobody connected to: it cannot take frames yet.
    sw.ofctl("add-port", "br0", "vh0", "type=dpdkvhostuser", "ofport_request=3")
    assert provoke(sw, ["in_port=1,actions=output:3"], udp_frame(), times=2) == {}
    assert drops(sw, "vh0")["ports"]["vh0"] == {"output_port_down": 2}


def test_totals_bridges_zeros_and_errors(sw):
    provoke(sw, ["actions=drop"], udp_frame(), port="p2", times=2)
    everything = drops(sw)
    assert everything["total"]["drop_action"] >= 2
    assert drops(sw, "br0")["ports"]["p2"]["drop_action"] == 2
    listed = json.loads(sw.ofctl("--json", "drop-stats", "p1", "--all"))
    assert set(listed["total"]) == set(listed["reasons"]) and listed["total"]["runt_frame"] == 0
    text = sw.ofctl("drop-stats", "p2")
    assert text.startswith("total: 2 packets dropped\n") and "port p2: 2 dropped" in text
    assert "a flow's actions were empty or `drop`" in text
    watched = sw.ofctl("drop-stats", "p2", "--watch", "--count", "2", "--interval", "0.1")
    assert watched.count("total: 2 packets dropped") == 2
    bad = sw.ofctl_run("drop-stats", "nope")
    assert bad.returncode == 1 and "no bridge or port named nope" in bad.stderr
