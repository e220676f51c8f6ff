"""Text for `ofctl vhost-show` and the vhost lines of `ofctl show`.

The question these answer is the one OVS-DPDK users ask most: why is my vhost
port down?  So the text leads with the state and the last error and says
what the switch is waiting for.
"""

from __future__ import annotations

import time

_WAITING_FOR = {
    "waiting": {"server": "a frontend (QEMU or a DPDK application) to connect to {socket}",
                "client": "the frontend to listen on {socket} (ovsd keeps retrying)"},
    "connected": "the frontend to finish the handshake (memory table, rings, enable)",
}


def summary(d: dict) -> str:
    """One line: state and queue pairs, for `ofctl show`."""
    queues = d["queues"]
    pairs = {}
    for q in queues:
        pairs.setdefault(q["queue_pair"], []).append(q["state"])
    ready = sum(1 for states in pairs.values()
                if len(states) == 2 and all(s == "ready" for s in states))
    text = f"vhost {d['mode']} {d['socket']}: {d['state']}"
    if pairs:
        text += f", {ready}/{len(pairs)} queue pairs ready"
    return text


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    ago = max(0.0, time.time() - ts)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"{stamp} ({ago:.0f} s ago)"


def details_text(d: dict) -> str:
    lines = [f"{d['name']} ({d['type']}):",
             f"  socket:             {d['socket']} ({d['mode']} mode: "
             f"{'ovsd connects' if d['mode'] == 'client' else 'ovsd listens'})",
             f"  state:              {d['state']}"]
    waiting = _WAITING_FOR.get(d["state"])
    if isinstance(waiting, dict):
        waiting = waiting[d["mode"]]
    if waiting:
        lines.append(f"  waiting for:        {waiting.format(socket=d['socket'])}")
    if d["connected_since"]:
        lines.append(f"  connected since:    {_when(d['connected_since'])}")
    if d.get("connections") is not None:
        lines.append(f"  connections made:   {d['connections']}")
    if d["features"] is not None:
        lines.append(f"  features:           0x{d['features']:016x} "
                     f"({' '.join(d['feature_names'])})")
        lines.append(f"  virtio-net header:  {d['hdr_len']} bytes")
    else:
        lines.append(f"  features:           not negotiated yet (offered "
                     f"0x{d['offered_features']:016x})")
    lines.append(f"  protocol features:  0x{d['protocol_features']:x} "
                 f"({' '.join(d['protocol_feature_names']) or 'none'})")
    regions = d["memory_regions"]
    lines.append(f"  memory regions:     {len(regions)}"
                 + (f" ({sum(r['size'] for r in regions) >> 20} MiB)" if regions else ""))
    for q in d["queues"]:
        lines.append(f"  ring {q['ring']:<2} (queue {q['queue_pair']}, {q['direction']}): "
                     f"size={q['size']} enabled={'yes' if q['enabled'] else 'no'} "
                     f"state={q['state']} avail_idx={q['last_avail_idx']} "
                     f"used_idx={q['used_idx']} notify={q['notify']}")
    s = d["stats"]
    lines.append(f"  rx: packets={s['rx_packets']} bytes={s['rx_bytes']} "
                 f"dropped={s['rx_dropped']}")
    lines.append(f"  tx: packets={s['tx_packets']} bytes={s['tx_bytes']} "
                 f"dropped={s['tx_dropped']} (guest ring full: "
                 f"{s['ovs_tx_failure_drops']}) retries={s['ovs_tx_retries']} "
                 f"(tx-retries-max={d['tx_retries_max']})")
    if d["last_error"]:
        lines.append(f"  last error:         {d['last_error']}")
        lines.append(f"                      at {_when(d['last_error_time'])}")
    else:
        lines.append("  last error:         none")
    return "\n".join(lines) + "\n"
