"""options:tx-retries-max: a transmit burst the guest's receive ring took only
part of is offered again, as OVS-DPDK does, while each try places some
(VhostMapping.tx_burst on a real SplitVring, a guest driver on shared memory)."""

from __future__ import annotations

import pytest

from ovsd.dpif import drops as D
from ovsd.netdev.base import NetdevError
from ovsd.netdev.vhost_user import device
from ovsd.netdev.vhost_user.device import VhostStats, VhostUserNetdev
from ovsd.netdev.vhost_user.mapping import VhostMapping
from ovsd.netdev.vhost_user.vring import COUNTERS_STRIDE, RingCounters
from tests.support.polling_guest import PollingGuest
from tests.support.virtq_driver import GuestRam, VirtqDriver


def frame(i: int, size: int = 60) -> bytes:
    return bytes((i + k) & 0xFF for k in range(size))


@pytest.fixture
def ring():
    ram = GuestRam([1 << 20])
    mem = ram.memory()
    built = []

    def make(posted: int, refill: int) -> PollingGuest:
        drv = VirtqDriver(ram, 64)
        for _ in range(posted):
            drv.add_rx([2048])
        vring = drv.vring(mem, RingCounters(bytearray(COUNTERS_STRIDE * 2)))
        built.append(vring)
        return PollingGuest(drv, vring, refill)
    yield make
    for vring in built:
        vring.release()
    mem.close()
    ram.close()


def mapping_on(guest: PollingGuest, retries: int) -> VhostMapping:
    m = VhostMapping("vhu0", 3, on_error=lambda odp, reason: None)
    m.tx_ring, m.tx_retries_max = guest, retries
    return m


FRAMES = [frame(i, 60 + i) for i in range(10)]


@pytest.mark.parametrize("retries, sent, tries", [
    (8, 10, 3),   # 4, then 2 + 2 + 2 as the guest refills
    (2, 8, 2),    # stops after two tries: 2 frames dropped
    (0, 4, 0),    # tx-retries-max=0: no second try
])
def test_a_short_burst_is_offered_again_while_the_guest_makes_room(ring, retries, sent, tries):
    guest = ring(posted=4, refill=2)
    m = mapping_on(guest, retries)
    assert m.tx_burst(FRAMES) == sent
    assert guest.received == FRAMES[:sent]   # in order, each frame once
    assert guest.tries == [10, 6, 4, 2][:1 + tries]
    assert (m.tx_packets, m.tx_bytes, m.tx_dropped, m.tx_retries, m.tx_failures) == (
        sent, sum(map(len, FRAMES[:sent])), 10 - sent, tries, 10 - sent)
    if sent < 10:
        assert m.tx_drop_reason == D.GUEST_RING_FULL


def test_a_try_that_places_nothing_ends_the_retries(ring):
    guest = ring(posted=4, refill=0)   # the guest does not take frames any more
    m = mapping_on(guest, 8)
    assert m.tx_burst(FRAMES) == 4
    assert guest.tries == [10, 6]
    assert (m.tx_dropped, m.tx_retries, m.tx_failures) == (6, 1, 6)


def test_a_ring_with_no_room_at_all_is_not_retried(ring):
    guest = ring(posted=0, refill=2)
    m = mapping_on(guest, 8)
    assert m.tx_burst(FRAMES) == 0
    assert guest.tries == [10]
    assert (m.tx_dropped, m.tx_retries, m.tx_failures) == (10, 0, 10)


def test_retries_and_failures_go_up_with_the_port_counts(ring):
    guest = ring(posted=4, refill=2)
    m = mapping_on(guest, 2)
    m.tx_burst(FRAMES)
    counts = m.take_stats()
    assert counts == [0, 0, 8, sum(map(len, FRAMES[:8])), 2, 0, 2, 2]
    assert m.take_stats() is None
    stats = VhostStats()
    stats.add_counts(*counts)
    stats.add_counts(1, 60, 0, 0, 0)   # a report of a port without them (afxdp's shape)
    shown = stats.as_dict()
    assert (shown["ovs_tx_retries"], shown["ovs_tx_failure_drops"]) == (2, 2)
    assert (shown["tx_packets"], shown["tx_dropped"], shown["rx_packets"]) == (8, 2, 1)


def test_a_port_without_rings_drops_but_not_as_a_full_ring():
    m = VhostMapping("vhu0", 3, on_error=lambda odp, reason: None)
    assert m.tx_burst(FRAMES[:3]) == 0
    assert (m.tx_dropped, m.tx_failures, m.tx_drop_reason) == (3, 0, D.OUTPUT_PORT_DOWN)


# -- the option --------------------------------------------------------------------------

@pytest.fixture
def sockdir(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "SOCKET_DIR", str(tmp_path))
    return tmp_path


def test_the_option_defaults_to_ovs_value_and_reaches_the_pmds(sockdir):
    dev = VhostUserNetdev("vhu0", {}, client=False)
    try:
        assert dev.tx_retries_max == 8 and dev.vhost_info()[0]["tx_retries_max"] == 8
        epoch = dev.epoch
        dev.reconfigure({"tx-retries-max": "0"})
        assert dev.vhost_info()[0]["tx_retries_max"] == 0
        assert dev.epoch > epoch   # the PMDs are sent the port's state again
        assert dev.details()["tx_retries_max"] == 0
        assert dev.stats.as_dict()["ovs_tx_retries"] == 0
        assert dev.stats.as_dict()["ovs_tx_failure_drops"] == 0
    finally:
        dev.close()


@pytest.mark.parametrize("value", ["33", "-1", "eight", ""])
def test_a_bad_value_says_the_range(sockdir, value):
    with pytest.raises(NetdevError, match=rf"options:tx-retries-max='{value}': expected an "
                                          r"integer from 0 to 32"):
        VhostUserNetdev("vhu0", {"tx-retries-max": value}, client=False)
    dev = VhostUserNetdev("vhu0", {"tx-retries-max": "4"}, client=False)
    try:
        with pytest.raises(NetdevError, match="tx-retries-max"):
            dev.reconfigure({"tx-retries-max": value})
        assert dev.tx_retries_max == 4   # the port keeps what it had
    finally:
        dev.close()
