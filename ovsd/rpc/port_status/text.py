"""The screen `ofctl port-status` prints."""

from __future__ import annotations

from ovsd.ofproto.fields import OFPP_LOCAL
from ovsd.rpc.port_status.diagnose import _last_error_text


def render(r: dict) -> str:
    f = r["facts"]
    ofport = "LOCAL" if r["ofport"] == OFPP_LOCAL else str(r["ofport"])
    lines = [f"{r['port']} ({r['type']}) on bridge {r['bridge']}, OpenFlow port {ofport}: "
             f"{'forwarding' if r['forwarding'] else 'NOT forwarding'}",
             f"why: {r['why']}"]
    if r["do"]:
        lines.append(f"do:  {r['do']}")
    for note in f.get("notes") or []:
        lines.append(f"note: {note}")
    lines.append(f"  state:      {f['state']}" + (f" (error: {f['error']})"
                                                   if f.get("error") else ""))
    link = f.get("link")
    if link:
        lines.append("  link:       " + _link_text(link))
    if "system" in f:
        s = f["system"]
        lines.append(f"  rings:      n_rxq={s['n_rxq']}, rx {s['rx_ring_blocks']} blocks x "
                     f"{s['rx_block_size']} bytes ({s['rx_ring_bytes'] >> 10} KiB per queue),"
                     f" tx {s['tx_ring_frames']} frames")
    if "afxdp" in f:
        x = f["afxdp"]
        lines.append(f"  xdp-mode:   {x['xdp_mode']} (requested {x['requested']}), "
                     f"n_rxq={x['n_rxq']}, use-need-wakeup={str(x['use_need_wakeup']).lower()}")
        for mode, reason in x.get("refused") or []:
            lines.append(f"  refused:    {mode}: {reason}")
    if "vhost" in f:
        lines.extend(_vhost_text(f["vhost"]))
    if "dummy" in f:
        pcaps = ", ".join(f"{k}={v}" for k, v in f["dummy"].items() if v) or "none"
        lines.append(f"  pcap:       {pcaps}")
    s = f.get("statistics") or {}
    if s:
        lines.append(f"  rx:         packets={s['rx_packets']} bytes={s['rx_bytes']} "
                     f"dropped={s['rx_dropped']} errors={s['rx_errors']}")
        lines.append(f"  tx:         packets={s['tx_packets']} bytes={s['tx_bytes']} "
                     f"dropped={s['tx_dropped']} errors={s['tx_errors']}")
    drops = f.get("drops") or {}
    lines.append("  drops:      " + (", ".join(f"{k}={v}" for k, v in drops.items())
                                     if drops else "none"))
    return "\n".join(lines) + "\n"


def _link_text(link: dict) -> str:
    if not link.get("exists"):
        return "no such interface"
    text = (f"ifindex {link['ifindex']}, admin {'up' if link['admin_up'] else 'down'}, "
            f"carrier {'yes' if link['carrier'] else 'no'}, operstate {link['operstate']}, "
            f"mtu {link['mtu']}")
    if link.get("kind"):
        text += f", {link['kind']}"
    peer = link.get("peer")
    if peer:
        state = {True: "up", False: "down", None: "state unknown"}[peer.get("admin_up")]
        text += (f"; peer {peer.get('name') or 'ifindex ' + str(peer.get('ifindex'))} "
                 f"({state}" + (f", in {peer['netns']}" if peer.get("netns") else "") + ")")
    return text


def _vhost_text(v: dict) -> list[str]:
    sf = v.get("socket_file") or {}
    perms = (f"{sf['mode']} {sf['user']}:{sf['group']}" if sf.get("exists")
             else "no such file")
    mode_word = "ovsd connects" if v["mode"] == "client" else "ovsd listens"
    lines = [f"  socket:     {v['socket']} ({mode_word}; {perms})"]
    if v["mode"] == "server":
        cfg = v.get("configured") or {}
        lines.append(f"  options:    vhost-sock-mode={cfg.get('mode')}, "
                     f"vhost-sock-owner={cfg.get('owner') or '(ovsd user)'}")
    lines.append(f"  vhost:      {v['state']}"
                 + (f", connections made: {v['connections']}"
                    if v.get("connections") is not None else "")
                 + (", features " + f"0x{v['features']:x}" if v["features"] is not None
                    else ", features not negotiated"))
    for q in v.get("queues") or []:
        lines.append(f"  ring {q['ring']}:     size={q['size']} state={q['state']} "
                     f"enabled={'yes' if q['enabled'] else 'no'}")
    if v.get("last_error"):
        lines.append(f"  last error: {_last_error_text(v)}")
    return lines


# -- the facts -----------------------------------------------------------------------------
