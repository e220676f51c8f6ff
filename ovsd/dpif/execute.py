"""Run a datapath action list on packets, collecting output per port.

Frames stay immutable ``bytes`` until an action rewrites them: the common
forwarding case (only outputs) appends the same object to each port's list
with no copy.  A rewrite copies the frame once into a bytearray; an output
after which more rewrites follow snapshots it, so each port gets the packet as
it was at that point of the action list.
"""

from __future__ import annotations

from ovsd.dpif.odp_actions import OUTPUT, POP_VLAN, PUSH_VLAN, SET, USERSPACE
from ovsd.packet.rewrite import apply_set, pop_vlan, push_vlan


def _is_output_only(actions) -> bool:
    return all(a[0] == OUTPUT for a in actions)


def execute(frame, actions, outputs: dict[int, list]) -> int:
    """Apply ``actions`` to one frame; returns how many userspace actions ran."""
    if _is_output_only(actions):
        for a in actions:
            port_list = outputs.get(a[1])
            if port_list is None:
                outputs[a[1]] = [frame]
            else:
                port_list.append(frame)
        return 0
    return _execute_slow(frame, actions, outputs)


def execute_batch(frames: list, actions, outputs: dict[int, list]) -> int:
    """Apply the same ``actions`` to every frame of a batch (one megaflow's packets)."""
    if _is_output_only(actions):
        for a in actions:
            port_list = outputs.get(a[1])
            if port_list is None:
                outputs[a[1]] = list(frames)
            else:
                port_list.extend(frames)
        return 0
    n = 0
    for frame in frames:
        n += _execute_slow(frame, actions, outputs)
    return n


def _execute_slow(frame, actions, outputs: dict[int, list]) -> int:
    pkt = frame
    owned = False  # True once pkt is our private bytearray
    n_userspace = 0
    last = len(actions) - 1
    for i, a in enumerate(actions):
        op = a[0]
        if op == OUTPUT:
            # A later rewrite must not change what this port got.
            out = bytes(pkt) if owned and i != last else pkt
            outputs.setdefault(a[1], []).append(out)
        elif op == SET:
            if not owned:
                pkt = bytearray(pkt)
                owned = True
            apply_set(pkt, a[1], a[2])
        elif op == PUSH_VLAN:
            pkt = push_vlan(pkt, a[1], a[2])
            owned = True
        elif op == POP_VLAN:
            pkt = pop_vlan(pkt)
            owned = True
        elif op == USERSPACE:
            n_userspace += 1
    return n_userspace
