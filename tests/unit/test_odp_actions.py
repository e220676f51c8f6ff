from ovsd.dpif import odp_actions as odp


def test_drop():
    assert odp.format_actions(()) == "drop"


def test_outputs_and_masked_set_like_ovs():
    acts = (odp.set_fields("ipv4", [("tos", 0xb8, 0xfc), ("src", 0x0a090807, 0xffffffff)]),
            odp.set_fields("tcp", [("src", 4321, 0xffff)]),
            odp.output(2))
    assert odp.format_actions(acts) == \
        "set(ipv4(src=10.9.8.7,tos=0xb8/0xfc)),set(tcp(src=4321)),2"


def test_vlan_actions():
    acts = (odp.pop_vlan(), odp.push_vlan(0x8100, 0x1000 | 5), odp.output(3),
            odp.push_vlan(0x88a8, 0x1000 | (3 << 13) | 7))
    assert odp.format_actions(acts) == \
        "pop_vlan,push_vlan(vid=5,pcp=0),3,push_vlan(tpid=0x88a8,vid=7,pcp=3)"


def test_eth_and_ipv6_values():
    acts = (odp.set_fields("eth", [("src", 0x001122334455, (1 << 48) - 1)]),
            odp.set_fields("ipv6", [("dst", 1, (1 << 128) - 1)]))
    assert odp.format_actions(acts) == \
        "set(eth(src=00:11:22:33:44:55)),set(ipv6(dst=::1))"
