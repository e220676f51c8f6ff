"""VLAN rules of the NORMAL action: which VLAN a packet belongs to on input,
which ports carry that VLAN, and how it is tagged on output.

They follow the Port table's columns as OVS reads them: ``tag`` (access
VLAN), ``trunks`` (the VLANs a trunk carries; empty = all) and ``vlan_mode``
(access, trunk, native-tagged, native-untagged; the default is access when
``tag`` is set, trunk otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCESS = "access"
TRUNK = "trunk"
NATIVE_TAGGED = "native-tagged"
NATIVE_UNTAGGED = "native-untagged"
VLAN_MODES = (ACCESS, TRUNK, NATIVE_TAGGED, NATIVE_UNTAGGED)

VID_MASK = 0x0FFF
PCP_MASK = 0xE000
CFI = 0x1000


@dataclass(frozen=True)
class PortVlan:
    mode: str = TRUNK
    tag: int = 0
    trunks: frozenset = frozenset()  # empty: every VLAN

    @classmethod
    def from_port_columns(cls, tag, trunks, vlan_mode) -> "PortVlan":
        tag = tag or 0
        mode = vlan_mode or (ACCESS if tag else TRUNK)
        return cls(mode, tag, frozenset(trunks or ()))

    def trunks_vlan(self, vid: int) -> bool:
        return not self.trunks or vid in self.trunks

    def input_vlan(self, vid: int) -> int | None:
        """The VLAN of a packet that arrived with tag VID (0: untagged or
        priority-tagged), or None when the port must drop it."""
        if self.mode == ACCESS:
            return None if vid else self.tag
        if self.mode in (NATIVE_TAGGED, NATIVE_UNTAGGED) and not vid:
            return self.tag
        return vid if self.trunks_vlan(vid) else None

    def carries(self, vlan: int) -> bool:
        """Whether NORMAL may send VLAN ``vlan`` out of this port."""
        if self.mode == ACCESS:
            return vlan == self.tag
        if self.mode in (NATIVE_TAGGED, NATIVE_UNTAGGED) and vlan == self.tag:
            return True
        return self.trunks_vlan(vlan)

    def output_tci(self, vlan: int, pcp_bits: int) -> int:
        """The 802.1Q TCI for a packet of ``vlan`` leaving this port (0 =
        untagged).  ``pcp_bits`` is the packet's PCP (already shifted)."""
        if self.mode == ACCESS:
            return 0
        if self.mode == NATIVE_UNTAGGED and vlan == self.tag:
            return 0
        # A tag with VID 0 and PCP 0 carries nothing: it is dropped, while a
        # priority tag (VID 0, PCP != 0) is kept, as OVS does.
        tci = vlan | pcp_bits
        return tci | CFI if tci else 0


def is_reserved_multicast(mac: int) -> bool:
    """01:80:c2:00:00:00-0f (STP, LACP, LLDP...): NORMAL never forwards them."""
    return mac >> 4 == 0x0180C200000


def is_multicast(mac: int) -> bool:
    return bool((mac >> 40) & 1)
