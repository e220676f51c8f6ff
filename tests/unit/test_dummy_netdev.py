import pytest

from ovsd.netdev.base import NetdevError
from ovsd.netdev.dummy.device import DummyNetdev
from ovsd.netdev.pcap import read_pcap


def test_tx_pcap_records_every_frame_and_is_flushed(tmp_path):
    path = str(tmp_path / "tx.pcap")
    dev = DummyNetdev("p1", {"tx_pcap": path})
    dev.tx_burst(0, [b"\x01" * 60, b"\x02" * 14])
    # flushed: readable while the writer is still open
    assert list(read_pcap(path)) == [b"\x01" * 60, b"\x02" * 14]
    assert dev.stats.tx_packets == 2 and dev.stats.tx_bytes == 74
    dev.close()


def test_receive_then_rx_burst_counts_and_records(tmp_path):
    path = str(tmp_path / "rx.pcap")
    dev = DummyNetdev("p1", {"rx_pcap": path})
    for i in range(3):
        dev.receive(bytes([i]) * 20)
    assert len(dev.rx_burst(0, 2)) == 2
    assert len(dev.rx_burst(0, 2)) == 1
    assert dev.rx_burst(0, 2) == []
    assert dev.stats.rx_packets == 3
    assert len(list(read_pcap(path))) == 3
    dev.close()


def test_pcap_option_records_both_directions(tmp_path):
    path = str(tmp_path / "both.pcap")
    dev = DummyNetdev("p1", {"pcap": path})
    dev.receive(b"\xaa" * 20)
    dev.rx_burst(0)
    dev.tx_burst(0, [b"\xbb" * 20])
    assert list(read_pcap(path)) == [b"\xaa" * 20, b"\xbb" * 20]
    dev.close()


def test_relative_pcap_path_is_refused():
    with pytest.raises(NetdevError, match="must be absolute"):
        DummyNetdev("p1", {"tx_pcap": "x.pcap"})


def test_unwritable_pcap_path_is_a_clear_error(tmp_path):
    with pytest.raises(NetdevError, match="cannot open pcap"):
        DummyNetdev("p1", {"tx_pcap": str(tmp_path / "nodir" / "x.pcap")})


def test_reconfigure_to_a_new_pcap(tmp_path):
    a, b = str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")
    dev = DummyNetdev("p1", {"tx_pcap": a})
    dev.tx_burst(0, [b"\x01" * 20])
    dev.reconfigure({"tx_pcap": b})
    dev.tx_burst(0, [b"\x02" * 20])
    assert list(read_pcap(a)) == [b"\x01" * 20]
    assert list(read_pcap(b)) == [b"\x02" * 20]
    dev.close()


def test_reopening_a_pcap_appends_instead_of_truncating(tmp_path):
    path = str(tmp_path / "tx.pcap")
    dev = DummyNetdev("p1", {"tx_pcap": path})
    dev.tx_burst(0, [b"\x01" * 20])
    dev.close()
    dev = DummyNetdev("p1", {"tx_pcap": path})
    dev.tx_burst(0, [b"\x02" * 20])
    dev.close()
    assert list(read_pcap(path)) == [b"\x01" * 20, b"\x02" * 20]
