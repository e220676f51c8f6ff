"""The PMD processes run the daemon's own code, wherever the daemon was started."""

from __future__ import annotations

import json
import time

import pytest

from tests.daemon import Daemon
from tests.integration import netns as N

pytestmark = pytest.mark.skipif(N.unavailable_reason() is not None,
                                reason=N.unavailable_reason() or "")


def test_pmds_do_not_import_an_ovsd_package_from_the_working_directory(tmp_path):
    """`python -m` puts the working directory first on sys.path: a daemon started
    in a directory holding another `ovsd` package (another checkout, say) had
    PMDs that ran that one."""
    marker = tmp_path / "decoy-imported"
    decoy = tmp_path / "elsewhere" / "ovsd"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    (decoy / "pmd_main.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                       "raise SystemExit(3)\n")
    with N.netns() as ns, N.veth(ns) as link, \
            Daemon(tmp_path / "run", cwd=decoy.parent) as d:
        d.ofctl("add-br", "br0")
        d.ofctl("add-port", "br0", link.outer)
        deadline = time.monotonic() + 15
        while True:
            pmds = json.loads(d.ofctl("--json", "pmd-rxq-show"))["pmds"]
            if any(q["port"] == link.outer for p in pmds for q in p["rxqs"]):
                break
            assert time.monotonic() < deadline, d.ofctl("pmd-rxq-show")
            time.sleep(0.2)
        assert not marker.exists()
