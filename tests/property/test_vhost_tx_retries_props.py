"""tx-retries-max against a reference model: whatever the guest's ring holds,
however fast the guest refills it and whatever the limit, a burst places
exactly the frames the model places, in order, with the tries and counts
OVS's rule gives (retry while the last try placed some, at most
tx-retries-max times)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsd.netdev.vhost_user.mapping import VhostMapping
from ovsd.netdev.vhost_user.vring import COUNTERS_STRIDE, RingCounters
from tests.support.polling_guest import PollingGuest
from tests.support.virtq_driver import GuestRam, VirtqDriver

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def model(n: int, posted: int, refills: list[int], limit: int) -> tuple[int, list[int]]:
    """(frames placed, frames offered per call).  Each call places what the
    ring has room for, then the guest posts refills[call] buffers; another
    call follows while frames are left, the last call placed some, and
    fewer than ``limit`` retries were made."""
    room, sent, offered = posted, 0, []
    while True:
        offered.append(n - sent)
        placed = min(room, n - sent)
        sent += placed
        room += _refill(refills, len(offered) - 1) - placed
        if sent == n or not placed or len(offered) > limit:
            return sent, offered


def _refill(refills: list[int], call: int) -> int:
    return refills[call] if call < len(refills) else 0


@SETTINGS
@given(n=st.integers(1, 24), posted=st.integers(0, 24),
       refills=st.lists(st.integers(0, 4), max_size=30), limit=st.integers(0, 32),
       sizes=st.data())
def test_placed_frames_and_tries_follow_the_model(n, posted, refills, limit, sizes):
    frames = [bytes([i]) * sizes.draw(st.integers(14, 300)) for i in range(n)]
    with GuestRam([1 << 20]) as ram:
        mem = ram.memory()
        drv = VirtqDriver(ram, 256)
        for _ in range(posted):
            drv.add_rx([2048])
        vring = drv.vring(mem, RingCounters(bytearray(COUNTERS_STRIDE * 2)))
        try:
            guest = PollingGuest(drv, vring, lambda call: _refill(refills, call))
            m = VhostMapping("vhu0", 3, on_error=lambda odp, reason: None)
            m.tx_ring, m.tx_retries_max = guest, limit
            sent, offered = model(n, posted, refills, limit)
            assert m.tx_burst(frames) == sent
            assert guest.received == frames[:sent]
            assert guest.tries == offered
            assert (m.tx_packets, m.tx_bytes) == (sent, sum(map(len, frames[:sent])))
            assert (m.tx_dropped, m.tx_failures) == (n - sent, n - sent)
            assert m.tx_retries == len(offered) - 1
        finally:
            vring.release()
            mem.close()
