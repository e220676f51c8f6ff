from ovsd.ofproto.mac_learning import MacTable, format_fdb


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_learn_lookup_per_vlan():
    t = MacTable(clock=Clock())
    assert t.learn(0x020000000001, 10, 1)
    assert t.lookup(0x020000000001, 10) == 1
    assert t.lookup(0x020000000001, 20) is None
    assert t.lookup(0x020000000001, 0) is None


def test_relearn_same_port_is_not_a_change_but_a_move_is():
    t = MacTable(clock=Clock())
    assert t.learn(1, 0, 1)
    assert not t.learn(1, 0, 1)
    assert t.learn(1, 0, 2)
    assert t.lookup(1, 0) == 2
    assert t.n_moved == 1


def test_aging():
    clock = Clock()
    t = MacTable(aging=300, clock=clock)
    t.learn(1, 0, 1)
    clock.t += 299
    assert t.lookup(1, 0) == 1
    clock.t += 1
    assert t.lookup(1, 0) is None
    assert t.n_expired == 1


def test_seen_again_refreshes_age():
    clock = Clock()
    t = MacTable(aging=10, clock=clock)
    t.learn(1, 0, 1)
    clock.t += 8
    t.learn(1, 0, 1)
    clock.t += 8
    assert t.lookup(1, 0) == 1


def test_full_table_evicts_least_recently_seen():
    clock = Clock()
    t = MacTable(max_entries=2, clock=clock)
    t.learn(1, 0, 1)
    clock.t += 1
    t.learn(2, 0, 1)
    clock.t += 1
    t.learn(1, 0, 1)  # 1 is now fresher than 2
    t.learn(3, 0, 1)
    assert t.lookup(2, 0) is None
    assert t.lookup(1, 0) == 1 and t.lookup(3, 0) == 1
    assert t.n_evicted == 1


def test_flush_all_and_by_port():
    t = MacTable(clock=Clock())
    t.learn(1, 0, 1)
    t.learn(2, 0, 2)
    assert t.flush(port=1) == 1
    assert t.lookup(2, 0) == 2
    assert t.flush() == 1
    assert len(t) == 0


def test_format_like_ovs_fdb_show():
    clock = Clock()
    t = MacTable(clock=clock)
    t.learn(0x020000000001, 0, 1)
    t.learn(0x020000000002, 5, 2)
    clock.t += 3
    text = format_fdb(t.entries(), str)
    assert text == (" port  VLAN  MAC                Age\n"
                    "    1     0  02:00:00:00:00:01    3\n"
                    "    2     5  02:00:00:00:00:02    3\n")
