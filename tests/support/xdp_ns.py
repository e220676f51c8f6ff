"""``xdp_state(name)``: what ``ip -d link show`` says about XDP, to check our
netlink view against iproute2's (veths for the AF_XDP tests come from
tests.integration.netns.veth, with ``queues=`` for several rx queues)."""

from __future__ import annotations

import re
import subprocess

from tests.integration.netns import IP_TIMEOUT


def xdp_state(ifname: str) -> list[str]:
    """The XDP words of ``ip -d link show dev IFNAME``: e.g. ["xdpgeneric",
    "prog/xdp id 42"]; [] when nothing is attached."""
    out = subprocess.run(["ip", "-d", "link", "show", "dev", ifname], capture_output=True,
                         text=True, timeout=IP_TIMEOUT, check=True).stdout
    return re.findall(r"\bxdp\w*(?:/xdp id \d+)?|prog/xdp\w* id \d+", out)
