"""Where a reader without a position starts on a TPACKET_V3 ring
(ovsd.netdev.afpacket.rx.first_unread), with the block headers scripted:
the kernel may hand a block over and open the next one while they are read."""

from ovsd.netdev.afpacket.ring import TP_STATUS_KERNEL, TP_STATUS_USER
from ovsd.netdev.afpacket.rx import SCAN_BUDGET, RxQueue, first_unread

K, U = TP_STATUS_KERNEL, TP_STATUS_USER
TRIES = 1000


def scripted(*scans):
    """states() returning each scan in turn, then the last one forever."""
    calls = []

    def states():
        calls.append(1)
        return list(scans[min(len(calls), len(scans)) - 1])
    states.calls = calls
    return states


def test_idle_fresh_ring_starts_at_the_open_block():
    assert first_unread(scripted([(K, 1), (K, 0), (K, 0), (K, 0)]), TRIES) == 0


def test_idle_ring_that_wrapped_starts_at_the_open_block():
    assert first_unread(scripted([(K, 5), (K, 6), (K, 7), (K, 4)]), TRIES) == 2


def test_oldest_block_handed_over_and_not_given_back():
    assert first_unread(scripted([(U, 5), (U, 6), (K, 7), (U, 4)]), TRIES) == 3


def test_a_block_handed_over_during_the_scan_is_not_skipped():
    # The first scan read block 0 while it was open, then block 1 after the
    # kernel had handed block 0 over and opened block 1: alone, it says
    # "start at block 1" and block 0's frames would never be read.
    torn = [(K, 1), (K, 2), (K, 0)]
    settled = [(U, 1), (K, 2), (K, 0)]
    assert first_unread(scripted(torn), TRIES) == 1   # the scan by itself
    states = scripted(torn, settled, settled)
    assert first_unread(states, TRIES) == 0
    assert len(states.calls) == 3


def test_a_ring_that_never_settles_is_scanned_a_bounded_number_of_times():
    seq = iter(range(1, 10**6))

    def states():   # a new block opened at every scan
        n = next(seq)
        return [(U, n), (K, n + 1)]
    assert first_unread(states, tries=50) == 0
    assert next(seq) == 52


def test_a_huge_ring_is_scanned_within_the_budget(monkeypatch):
    """A 65536-block ring that changes at every scan is read a few times, not
    a thousand (~12 ms a scan): the PMD taking the queue is not stalled."""
    calls = []

    def states(self):
        calls.append(1)
        n = len(calls)
        return [(U, n)] + [(K, 0)] * 65535
    monkeypatch.setattr(RxQueue, "_block_states", states)
    q = RxQueue.__new__(RxQueue)
    q._block_nr = 65536
    assert q._first_unread() == 0
    assert len(calls) == 1 + max(2, SCAN_BUDGET // 65536) == 5
