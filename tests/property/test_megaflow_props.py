"""Megaflow soundness: xlate's wildcard mask covers everything its answer
depended on.  For random flow tables and random flow keys, any other key that
agrees with the first under the returned mask must get the same datapath
actions.  This is what makes it safe to cache a translation as a megaflow."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsd.ofproto.flow_syntax import parse_flow
from ovsd.ofproto.ofproto import OfPort, Ofproto
from ovsd.ofproto.xlate import xlate
from ovsd.packet import key as K

MATCHES = [
    "", "in_port=1", "in_port=2", "dl_dst=02:00:00:00:00:02",
    "dl_src=02:00:00:00:00:00/ff:ff:ff:ff:ff:f0", "dl_type=0x0800", "ip", "tcp", "udp",
    "arp", "ipv6", "ip,nw_src=10.0.0.0/8", "ip,nw_dst=10.0.0.1", "tcp,tp_dst=80",
    "udp,tp_src=0x1000/0xf000", "ip,nw_ttl=1", "ip,nw_tos=0x20", "ip,ip_frag=later",
    "vlan_tci=0x1000/0x1000", "dl_vlan=5", "vlan_tci=0", "icmp,icmp_type=8",
    "arp,arp_op=1", "tcp,tcp_flags=+syn", "reg0=1", "metadata=0x5",
]
ACTIONS = [
    "output:1", "output:2", "output:3", "in_port", "all", "NORMAL", "drop",
    "mod_nw_src:1.2.3.4,output:2", "mod_tp_dst:443,output:3", "dec_ttl,output:2",
    "push_vlan:0x8100,set_field:4101->vlan_vid,output:3", "strip_vlan,output:1",
    "mod_vlan_vid:9,output:2", "mod_vlan_pcp:3,output:4", "mod_dl_src:02:00:00:00:00:99,output:4",
    "load:1->NXM_NX_REG0[],resubmit(,1)", "resubmit(,1),output:4",
    "move:NXM_OF_IP_SRC[0..7]->NXM_NX_REG0[0..7],resubmit(,1)",
    "set_field:46->ip_dscp,output:2", "mod_nw_ttl:1,dec_ttl,output:3",
    "write_metadata:0x5,goto_table:1", "output:NXM_NX_REG0[0..1]",
]


def _bridge() -> Ofproto:
    br = Ofproto("br0")
    for n in (1, 2, 3, 4):
        br.add_port(OfPort(n, f"p{n}", n, "dummy"))
    # Something learned, so NORMAL has a decision to make.
    br.mac_table.learn(0x020000000002, 0, 2)
    br.mac_table.learn(0x020000000001, 5, 1)
    return br


flows = st.lists(st.tuples(st.sampled_from([0, 0, 1]), st.integers(0, 5),
                           st.sampled_from(MATCHES), st.sampled_from(ACTIONS)),
                 min_size=1, max_size=12)

_KEY_FIELDS = {
    "in_port": [1, 2, 3, 4],
    "dl_type": [0x0800, 0x0800, 0x0800, 0x0806, 0x86DD, 0x86DD, 0x8100, 0x1234],
    "dl_src": [0x020000000001, 0x020000000002, 0x020000000005, 0x010000000000],
    "dl_dst": [0x020000000001, 0x020000000002, 0xFFFFFFFFFFFF, 0x0180C2000000],
    "vlan_tci": [0, 0x1000 | 5, 0x1000 | 9, 0x1000 | 0x6005, 0x1000],
    "nw_src": [0x0A000001, 0x0B000001, 0], "nw_dst": [0x0A000001, 0x0A000002, 0],
    "nw_proto": [0, 1, 6, 17, 58], "nw_ttl": [0, 1, 2, 64], "nw_tos": [0, 0x20, 0xB9],
    "nw_frag": [0, 1, 3], "tp_src": [0, 8, 0x1234, 80], "tp_dst": [0, 80, 443],
    "tcp_flags": [0, 2, 0x12], "arp_sha": [0, 0x020000000003],
    "ipv6_src": [0, 1], "ipv6_dst": [0, 2],
}

keys = st.fixed_dictionaries({name: st.sampled_from(vals)
                              for name, vals in _KEY_FIELDS.items()})


def _key(fields: dict) -> int:
    fields = dict(fields)
    if fields["vlan_tci"]:
        fields["vlan_tpid"] = 0x8100
    return K.make(**fields)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows, keys, st.randoms(use_true_random=False))
def test_keys_equal_under_the_mask_get_the_same_actions(rules, fields, rnd):
    br = _bridge()
    for table, prio, match, actions in rules:
        text = f"table={table},priority={prio},{match + ',' if match else ''}actions={actions}"
        try:
            br.add_flow(parse_flow(text, "add", "OpenFlow10", br.port_no))
        except ValueError:
            continue  # a combination OVS refuses too (e.g. goto_table backwards)
    k1 = _key(fields)
    r1 = xlate(br, k1, side_effects=False)
    mask = r1.mask & K.PACKET_MASK
    assert r1.mask & K.FIELDS["in_port"].mask == K.FIELDS["in_port"].mask
    for _ in range(24):
        noise = rnd.getrandbits(K.PACKET_BITS) & K.PACKET_MASK
        # Stay within keys a parser can produce for the noisy fields.
        k2 = (k1 & mask) | (_key({n: rnd.choice(v) for n, v in _KEY_FIELDS.items()}) & ~mask)
        if noise & 1:
            k2 = (k1 & mask) | (noise & ~mask & ~K.FIELDS["vlan_tpid"].mask)
            k2 = K.put(k2, "vlan_tpid", 0x8100 if K.get(k2, "vlan_tci") & K.VLAN_CFI else 0)
            if K.get(k2, "vlan_tpid") != K.get(k1, "vlan_tpid") and \
                    mask & K.FIELDS["vlan_tpid"].mask:
                continue
        r2 = xlate(br, k2, side_effects=False)
        assert r2.actions == r1.actions, (
            f"k1 and k2 agree under the mask but translate differently:\n"
            f"  r1={r1.actions}\n  r2={r2.actions}\n  diff fields: "
            f"{[n for n in _KEY_FIELDS if K.get(k1, n) != K.get(k2, n)]}")
