"""The trace tree prints with OVS's indentation (expected text recorded from OVS 3.1)."""
from ovsd.ofproto.trace import ACTION, BRIDGE, DETAIL, ERROR, TABLE, TraceNode, format_tree


def test_goto_table_into_a_miss_then_action_set():
    br = TraceNode(BRIDGE, 'bridge("br0")')
    t0 = br.add(TABLE, " 0. priority 32768")
    t0.add(ACTION, "write_actions(output:2)")
    t0.add(DETAIL, "action set is: output:2")
    t0.add(ACTION, "goto_table:1")
    t1 = t0.add(TABLE, " 1. No match.")
    t1.add(ACTION, "drop")
    aset = t0.add(TABLE, "--. Executing action set:")
    aset.add(ACTION, "output:2")
    assert format_tree([br]) == (
        "\n"
        'bridge("br0")\n'
        "-------------\n"
        " 0. priority 32768\n"
        "    write_actions(output:2)\n"
        "     -> action set is: output:2\n"
        "    goto_table:1\n"
        "     1. No match.\n"
        "            drop\n"
        "--. Executing action set:\n"
        "    output:2\n")


def test_resubmit_chain_stays_flat_and_errors_are_marked():
    br = TraceNode(BRIDGE, 'bridge("br0")')
    t = br.add(TABLE, " 0. priority 32768")
    t.add(ACTION, "resubmit(,1)")
    t = t.add(TABLE, " 1. priority 32768")
    t.add(ACTION, "resubmit(,0)")
    t.add(ERROR, "over max translation depth 64")
    assert format_tree([br]) == (
        "\n"
        'bridge("br0")\n'
        "-------------\n"
        " 0. priority 32768\n"
        "    resubmit(,1)\n"
        " 1. priority 32768\n"
        "    resubmit(,0)\n"
        "     >>>> over max translation depth 64 <<<<\n")


def test_nested_resubmit_followed_by_more_actions():
    # recorded: table 0 "udp,priority 20: resubmit(,1),output:4"
    br = TraceNode(BRIDGE, 'bridge("br0")')
    t0 = br.add(TABLE, " 0. udp, priority 20")
    t0.add(ACTION, "resubmit(,1)")
    t1 = t0.add(TABLE, " 1. ip,nw_dst=10.0.0.0/8, priority 5")
    for a in ("dec_ttl", "push_vlan:0x8100", "set_field:4101->vlan_vid", "output:3"):
        t1.add(ACTION, a)
    t0.add(ACTION, "output:4")
    assert format_tree([br]) == (
        "\n"
        'bridge("br0")\n'
        "-------------\n"
        " 0. udp, priority 20\n"
        "    resubmit(,1)\n"
        "     1. ip,nw_dst=10.0.0.0/8, priority 5\n"
        "            dec_ttl\n"
        "            push_vlan:0x8100\n"
        "            set_field:4101->vlan_vid\n"
        "            output:3\n"
        "    output:4\n")
