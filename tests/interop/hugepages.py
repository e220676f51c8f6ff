"""2 MiB hugepages for DPDK processes started by the interop tests.

The pool is shared with whatever else runs on the machine, so this only ever
raises the number of reserved pages, never lowers it, and a caller that needs
pages *now* should look at ``free_hugepages()`` (testpmd falls back to
``--no-huge`` when they are short).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PAGE_KB = 2048
SYSFS = Path(f"/sys/kernel/mm/hugepages/hugepages-{PAGE_KB}kB")
MOUNTPOINT = Path("/dev/hugepages")


class HugepageError(RuntimeError):
    """Hugepages could not be reserved or mounted."""


def _read_count(name: str) -> int:
    try:
        return int((SYSFS / name).read_text())
    except FileNotFoundError as e:
        raise HugepageError(f"this kernel has no {PAGE_KB} kB hugepages ({SYSFS} missing)") from e


def reserved_hugepages() -> int:
    """Pages of 2 MiB in the pool (free or in use)."""
    return _read_count("nr_hugepages")


def free_hugepages() -> int:
    """Pages of 2 MiB reserved and not in use by anyone."""
    return _read_count("free_hugepages")


def hugetlbfs_mounted(path: Path = MOUNTPOINT) -> bool:
    """Whether a hugetlbfs with 2 MiB pages is mounted at ``path``."""
    with open("/proc/mounts") as f:
        for line in f:
            _dev, mnt, fstype, opts, *_ = line.split()
            if fstype != "hugetlbfs" or mnt != str(path):
                continue
            sizes = [o for o in opts.split(",") if o.startswith("pagesize=")]
            # a mount without pagesize= uses the default size; only reject an explicit other size
            return not sizes or sizes[0] in ("pagesize=2M", "pagesize=2048k")
    return False


def ensure_hugepages(pages: int = 512) -> None:
    """Make the 2 MiB pool hold at least ``pages`` pages and mount hugetlbfs at
    /dev/hugepages.  Never lowers the pool; idempotent.  Raises HugepageError
    naming what failed (not root, memory too fragmented, mount refused)."""
    if pages < 0:
        raise ValueError(f"pages must be >= 0, got {pages}")
    have = reserved_hugepages()
    if have < pages:
        try:
            (SYSFS / "nr_hugepages").write_text(f"{pages}\n")
        except OSError as e:
            raise HugepageError(
                f"cannot raise {SYSFS}/nr_hugepages from {have} to {pages}: {e}"
                + ("" if os.geteuid() == 0 else " (needs root)")) from e
        got = reserved_hugepages()
        if got < pages:
            raise HugepageError(f"asked the kernel for {pages} hugepages of {PAGE_KB} kB, "
                                f"it reserved {got} (free memory too fragmented?)")
    if not hugetlbfs_mounted():
        MOUNTPOINT.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev",
                               str(MOUNTPOINT)], capture_output=True, text=True, timeout=10)
        if proc.returncode and not hugetlbfs_mounted():
            raise HugepageError(f"cannot mount hugetlbfs at {MOUNTPOINT}: "
                                f"{proc.stderr.strip() or f'mount exit {proc.returncode}'}")
