"""Where a reader without a position starts on a TPACKET_V3 ring
(ovsd.netdev.afpacket.rx.first_unread), with the block headers scripted:
the kernel may hand a block over and open the next one while they are read."""

from ovsd.netdev.afpacket.ring import TP_STATUS_KERNEL, TP_STATUS_USER
from ovsd.netdev.afpacket.rx import first_unread

K, U = TP_STATUS_KERNEL, TP_STATUS_USER


def scripted(*scans):
    """states() returning each scan in turn, then the last one forever."""
    calls = []

    def states():
        calls.append(1)
        return list(scans[min(len(calls), len(scans)) - 1])
    states.calls = calls
    return states


def test_idle_fresh_ring_starts_at_the_open_block():
    assert first_unread(scripted([(K, 1), (K, 0), (K, 0), (K, 0)])) == 0


def test_idle_ring_that_wrapped_starts_at_the_open_block():
    assert first_unread(scripted([(K, 5), (K, 6), (K, 7), (K, 4)])) == 2


def test_oldest_block_handed_over_and_not_given_back():
    assert first_unread(scripted([(U, 5), (U, 6), (K, 7), (U, 4)])) == 3


def test_a_block_handed_over_during_the_scan_is_not_skipped():
    # The first scan read block 0 while it was open, then block 1 after the
    # kernel had handed block 0 over and opened block 1: alone, it says
    # "start at block 1" and block 0's frames would never be read.
    torn = [(K, 1), (K, 2), (K, 0)]
    settled = [(U, 1), (K, 2), (K, 0)]
    assert first_unread(scripted(torn)) == 1   # the scan by itself
    states = scripted(torn, settled, settled)
    assert first_unread(states) == 0
    assert len(states.calls) == 3


def test_a_ring_that_never_settles_is_scanned_a_bounded_number_of_times():
    seq = iter(range(1, 10**6))

    def states():   # a new block opened at every scan
        n = next(seq)
        return [(U, n), (K, n + 1)]
    assert first_unread(states, tries=50) == 0
    assert next(seq) == 52
