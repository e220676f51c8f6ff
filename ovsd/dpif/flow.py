"""A datapath flow: what the fast path knows about one megaflow.

Created from an upcall's answer (actions + wildcard mask) and shared by the
megaflow cache and the EMC entries that point at it.  ``dead`` is set when
revalidation removes it, so an EMC entry still pointing at it is ignored
rather than used.
"""

from __future__ import annotations

from ovsd.dpif.odp_actions import OUTPUT


class DpFlow:
    __slots__ = ("key", "mask", "actions", "n_packets", "n_bytes", "used", "created",
                 "dead", "rules", "learned", "credited_packets", "credited_bytes",
                 "out_ports", "out_port", "drop_reason")

    def __init__(self, key: int, mask: int, actions: tuple, rules: tuple = (),
                 learned: tuple = (), now: float = 0.0, drop_reason: str | None = None):
        self.key = key  # already masked
        self.mask = mask
        self.actions = actions
        # The output ports when the actions do nothing else (the common case):
        # the packets then go out as they came, with no per-packet work.
        self.out_ports = (tuple(a[1] for a in actions)
                          if all(a[0] == OUTPUT for a in actions) else None)
        # The one port when it is exactly one and nothing else happens: a whole
        # burst of such flows to the same port is forwarded as one list.
        self.out_port = (self.out_ports[0] if self.out_ports is not None
                         and len(self.out_ports) == 1 and drop_reason is None else None)
        self.drop_reason = drop_reason  # why its packets go nowhere (drops.*), or None
        self.rules = rules  # what the OpenFlow rules' counters are credited to
        self.learned = learned  # (mac, vlan, port, bridge) NORMAL learned: kept fresh
        self.n_packets = 0
        self.n_bytes = 0
        self.credited_packets = 0
        self.credited_bytes = 0
        self.used = 0.0
        self.created = now
        self.dead = False
