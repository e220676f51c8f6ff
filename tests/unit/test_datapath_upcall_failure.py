"""A slow path that fails costs the packet, never the PMD: the datapath counts
it as upcall_failed (drop-stats), logs it, and keeps forwarding.  ovsd's
upcalls run in the PMD itself, so the only way one fails is a bug in xlate:
here an upcall that raises stands in for that bug."""

from __future__ import annotations

import asyncio
import logging

from ovsd.dpif import drops as D
from ovsd.dpif.datapath import Datapath
from ovsd.rpc import methods
from tests.support.datapath import udp_frame
from tests.support.switch import dummy_switch


def test_a_failing_upcall_is_counted_and_the_next_packets_still_go_up(caplog):
    calls = []

    def upcall(key, frame):
        calls.append(key)
        if len(calls) <= 2:
            raise RuntimeError("xlate bug")
        return None   # a slow path that gives up without raising: counted the same

    dp = Datapath(upcall)
    with caplog.at_level(logging.ERROR, logger="ovsd.dpif"):
        dp.process(1, [udp_frame(1000), udp_frame(1001), udp_frame(1002)])
    assert len(calls) == 3
    assert dp.drops[(1, D.UPCALL_FAILED)] == 3
    assert dp.stats.n_lost == 3 and dp.stats.n_upcalls == 3
    assert caplog.text.count("upcall failed; dropping the packet") == 2
    assert "RuntimeError: xlate bug" in caplog.text


def test_upcall_failed_reaches_drop_stats(tmp_path):
    """The same through a whole switch with dummy ports: inject, then the
    drop_stats method (what `ofctl drop-stats` prints) names the reason."""

    def broken(key, frame):
        raise RuntimeError("xlate bug")

    async def scenario() -> dict:
        switch = dummy_switch(tmp_path)
        try:
            switch.backer.dp.upcall = broken
            methods.inject(switch, "br0", "p1", udp_frame(7).hex())
            return methods.drop_stats(switch, "p1")
        finally:
            await switch.close()

    report = asyncio.run(scenario())
    assert report["total"] == {D.UPCALL_FAILED: 1}, report
