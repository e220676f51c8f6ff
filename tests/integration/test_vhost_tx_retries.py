"""options:tx-retries-max on a running switch: a guest whose receive ring
takes only part of a burst costs one retry (the try after it places
nothing), counted as OVS counts it (``ovs_tx_retries`` in the Interface's
statistics, vhost-show, metrics), and the frames it had no room for as
``ovs_tx_failure_drops``; with tx-retries-max=0 there is no retry.
Two Python frontends (tests/support/vhost_frontend.py) are the guests, so
the ring's room is exact."""

from __future__ import annotations

import json
import time

from tests.daemon import Daemon
from tests.support.vhost_frontend import Frontend


def frame(i: int) -> bytes:
    return (bytes.fromhex("020000000002020000000001") + b"\x88\xb5"
            + i.to_bytes(4, "big") + bytes(46))


def vhost(d: Daemon, port: str) -> dict:
    return json.loads(d.ofctl("--json", "vhost-show", port))


def wait_stats(d: Daemon, port: str, want: dict, timeout: float = 10.0) -> dict:
    """The port's counters once they show ``want`` (PMDs report once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = vhost(d, port)["stats"]
        if all(stats[k] == v for k, v in want.items()):
            return stats
        assert time.monotonic() < deadline, f"{port}: {stats}, wanted {want}"
        time.sleep(0.1)


def ready(d: Daemon, *ports: str) -> None:
    deadline = time.monotonic() + 10
    while any(vhost(d, p)["state"] != "ready" for p in ports):
        assert time.monotonic() < deadline, [vhost(d, p)["state"] for p in ports]
        time.sleep(0.05)


def burst(guest: Frontend, frames: list[bytes]) -> None:
    """All of ``frames`` made available at once: the PMD takes them in one burst."""
    for f in frames:
        guest.tx.add_tx(f, publish=False)
    guest.tx.publish()
    guest.wait_tx_done(len(frames))


def test_a_full_guest_ring_costs_one_retry_then_none_with_the_option_at_0(tmp_path):
    with Daemon(tmp_path / "run") as d:
        d.ofctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        d.ofctl("add-br", "br0")
        d.ofctl("add-port", "br0", "vh0", "type=dpdkvhostuser", "ofport_request=1")
        d.ofctl("add-port", "br0", "vh1", "type=dpdkvhostuser", "ofport_request=2")
        d.ofctl("del-flows", "br0")
        d.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        assert vhost(d, "vh1")["tx_retries_max"] == 8   # OVS's default
        with Frontend(d.rundir / "vh0") as a, Frontend(d.rundir / "vh1") as b:
            a.start()
            b.start()
            ready(d, "vh0", "vh1")
            b.post_rx_buffers(16)
            sent = [frame(i) for i in range(64)]
            burst(a, sent)
            assert b.receive(16) == sent[:16]
            # 16 placed, then one retry that placed none: the rest dropped.
            wait_stats(d, "vh1", {"tx_packets": 16, "tx_dropped": 48, "ovs_tx_retries": 1,
                                  "ovs_tx_failure_drops": 48})
            assert ("dropped=48 (guest ring full: 48) retries=1 (tx-retries-max=8)"
                    in d.ofctl("vhost-show", "vh1"))

            d.ofctl("set", "Interface", "vh1", "options:tx-retries-max=0")
            assert vhost(d, "vh1")["tx_retries_max"] == 0
            b.post_rx_buffers(16)
            more = [frame(i) for i in range(64, 128)]
            burst(a, more)
            assert b.receive(16) == more[:16]
            wait_stats(d, "vh1", {"tx_packets": 32, "tx_dropped": 96, "ovs_tx_retries": 1,
                                  "ovs_tx_failure_drops": 96})
            # The Interface's statistics column is written every few seconds.
            deadline = time.monotonic() + 15
            while (r := d.ofctl_run("get", "Interface", "vh1",
                                    "statistics:ovs_tx_retries")).stdout.strip() != "1":
                assert time.monotonic() < deadline, r
                time.sleep(0.2)


def test_a_bad_value_is_refused_and_the_port_keeps_its_own(tmp_path):
    with Daemon(tmp_path / "run") as d:
        d.ofctl("add-br", "br0")
        r = d.ofctl_run("add-port", "br0", "vhbad", "type=dpdkvhostuser",
                        "options:tx-retries-max=33")
        assert r.returncode != 0
        assert "options:tx-retries-max='33': expected an integer from 0 to 32" in r.stderr
        d.ofctl("add-port", "br0", "vh1", "type=dpdkvhostuser", "options:tx-retries-max=3")
        # As with ovs-vsctl, the change is stored and the Interface's error
        # says why the port did not take it; the port goes on with its own.
        d.ofctl("set", "Interface", "vh1", "options:tx-retries-max=many")
        assert "options:tx-retries-max='many'" in d.ofctl("get", "Interface", "vh1", "error")
        assert vhost(d, "vh1")["tx_retries_max"] == 3
        d.ofctl("set", "Interface", "vh1", "options:tx-retries-max=5")
        assert vhost(d, "vh1")["tx_retries_max"] == 5
        assert d.ofctl("get", "Interface", "vh1", "error").strip() == "[]"
