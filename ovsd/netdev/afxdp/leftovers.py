"""Which interfaces carry an XDP program that this ovsd attached, written down
in the rundir so that the next start can take it off after a crash.

One small file per interface (``RUNDIR/afxdp/IFINDEX.json``): written after
the program is attached, removed after it is detached.  A record is only
acted on when the interface still has exactly that program (by its id, which
the kernel does not hand out twice while the machine runs) in that mode, so
a program someone attached since is never touched.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("ovsd.afxdp")

#: Set from the daemon's rundir (registry.set_run_dir); None: keep no records.
STATE_DIR: Path | None = None


def _path(ifindex: int) -> Path | None:
    return None if STATE_DIR is None else STATE_DIR / f"{ifindex}.json"


def record(ifindex: int, ifname: str, prog_id: int, mode: str) -> None:
    path = _path(ifindex)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"ifindex": ifindex, "ifname": ifname, "prog_id": prog_id,
                               "mode": mode}))
    os.replace(tmp, path)


def forget(ifindex: int) -> None:
    path = _path(ifindex)
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove(ifindex: int) -> bool:
    """Detach the program a previous run recorded on ``ifindex``, if it is still
    there; True when one was removed."""
    path = _path(ifindex)
    if path is None or not path.exists():
        return False
    try:
        rec = json.loads(path.read_text())
        prog_id, mode, ifname = int(rec["prog_id"]), str(rec["mode"]), str(rec["ifname"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("afxdp: ignoring the unreadable record %s", path)
        forget(ifindex)
        return False
    from ovsd.netdev.afxdp import bpf  # only when there is something to undo

    removed = False
    try:
        removed = bpf.detach(ifindex, mode, expected_prog_id=prog_id)
    except OSError as e:
        if e.errno != errno.ENODEV:  # gone with its interface: nothing to do
            log.warning("afxdp: could not detach the program a previous run left on %s "
                        "(ifindex %d): %s", ifname, ifindex, e)
            return False
    if removed:
        log.info("afxdp: detached XDP program %d that a previous run left on %s",
                 prog_id, ifname)
    forget(ifindex)
    return removed


def remove_all() -> int:
    """At start: every recorded program a crashed run left attached."""
    if STATE_DIR is None or not STATE_DIR.is_dir():
        return 0
    count = 0
    for path in sorted(STATE_DIR.glob("*.json")):
        if path.stem.isdigit():
            count += remove(int(path.stem))
    return count
