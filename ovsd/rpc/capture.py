"""`capture_start`, `capture_read`, `capture_stop`: the RPC side of `ofctl
capture` (ovsd.capture holds the sessions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ovsd.capture import CaptureError
from ovsd.rpc.server import E_INVALID, E_NOT_FOUND, RpcError

if TYPE_CHECKING:
    from ovsd.switch import Switch

MAX_READ = 5000


def capture_start(switch: "Switch", port: str, direction: str = "both",
                  filter: str | None = None) -> dict:
    """Start copying the frames port ``port`` receives (rx), sends (tx) or both,
    those matching ``filter`` (ovs-ofctl match syntax) if given."""
    try:
        s = switch.captures.start(port, direction, filter)
    except CaptureError as e:
        code = E_NOT_FOUND if "no port named" in str(e) else E_INVALID
        raise RpcError(code, str(e)) from None
    return {"id": s.id, "port": s.port, "direction": s.direction, "filter": s.filter}


def capture_read(switch: "Switch", id: int, max: int = 1000) -> dict:
    """Up to ``max`` captured packets, oldest first: time (seconds since the
    epoch), dir (rx/tx), frame (hex), drop (the drop reason of a dropped
    received frame, else null); ``lost``: packets the capture could not keep."""
    s = switch.captures.read(id, max)
    if s is None:
        raise RpcError(E_NOT_FOUND, f"no capture {id} (it ended: stopped, its port was "
                                    "deleted, or nobody read it for 10 s)")
    n = min(max, MAX_READ, len(s.queue))
    packets = [s.queue.popleft() for _ in range(n)]
    return {"packets": [{"time": t, "dir": d, "frame": f.hex(), "drop": r}
                        for t, d, f, r in packets],
            "lost": s.lost, "seen": s.seen}


def capture_stop(switch: "Switch", id: int) -> dict:
    """End capture ``id``; returns its totals."""
    s = switch.captures.stop(id)
    if s is None:
        raise RpcError(E_NOT_FOUND, f"no capture {id}")
    return {"seen": s.seen, "lost": s.lost}
