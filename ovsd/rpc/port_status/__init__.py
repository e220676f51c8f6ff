"""`port_status`: one port's state, what is wrong with it and what to do.

Two halves, so the diagnosis can be tested without a switch or a kernel:
``gather`` reads plain facts from the running switch, the kernel (netlink,
the socket file, /proc) and the drop counters; ``diagnose`` turns those
facts alone into (forwarding, why, do, notes).  Every diagnosis names the
fact it rests on; when the facts do not explain a state, it says so rather
than guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ovsd.rpc.port_status.diagnose import Diagnosis, diagnose
from ovsd.rpc.port_status.facts import frontends, gather, may_connect, socket_file
from ovsd.rpc.port_status.text import render

if TYPE_CHECKING:
    from ovsd.switch import Switch

__all__ = ["Diagnosis", "diagnose", "frontends", "gather", "may_connect", "port_status",
           "render", "socket_file"]


def port_status(switch: "Switch", port: str) -> dict:
    """One port's state, why it does or does not forward, and what to do."""
    f = gather(switch, port)
    d = diagnose(f)
    facts = {k: v for k, v in f.items() if k not in ("port", "type", "bridge", "ofport")}
    facts["notes"] = d.notes
    result = {"port": port, "type": f["type"], "bridge": f["bridge"], "ofport": f["ofport"],
              "forwarding": d.forwarding, "why": d.why, "do": d.do, "facts": facts}
    result["text"] = render(result)
    return result
