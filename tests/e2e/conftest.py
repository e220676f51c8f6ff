"""What the end-to-end tests share: real daemons, frames to inject, and the
parsing of ofctl's output (dump-flows lines, pcap files).

Every test here starts the real ``ovsd`` and drives it with the real ``ofctl``
as subprocesses (tests/daemon.py).  Daemons are stopped by PID when the test
(or the module, for shared ones) ends.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from pathlib import Path

import pytest

from ovsd.netdev.pcap import read_pcap
from tests.daemon import Daemon


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


# -- daemons --------------------------------------------------------------------------

class Daemons:
    """Starts daemons for one test (or module) and stops every one at the end."""

    def __init__(self, base: Path):
        self.base = base
        self.started: list[Daemon] = []
        self._n = 0

    def rundir(self) -> Path:
        self._n += 1
        return self.base / f"run{self._n}"

    def start(self, rundir: Path | None = None, *extra: str) -> Daemon:
        d = Daemon(rundir or self.rundir(), *extra)
        self.started.append(d)
        d.start()
        wait_serving(d)
        return d

    def stop_all(self) -> None:
        for d in self.started:
            d.stop()


def wait_serving(d: Daemon, timeout: float = 30.0) -> None:
    """Wait until ``d`` accepts connections.  Daemon.start returns as soon as
    the socket file exists, which a killed predecessor may have left behind."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(d.sock))
                return
            except (ConnectionRefusedError, FileNotFoundError):
                pass
        if d.proc.poll() is not None:
            raise RuntimeError(f"ovsd exited with {d.proc.returncode}:\n"
                               + (d.rundir / "stderr.log").read_text())
        if time.monotonic() > deadline:
            raise RuntimeError("ovsd does not accept connections")
        time.sleep(0.02)


@pytest.fixture
def daemons(tmp_path):
    ds = Daemons(tmp_path)
    yield ds
    ds.stop_all()


@pytest.fixture
def daemon(daemons):
    """A fresh daemon with an empty database."""
    return daemons.start()


def add_dummy_ports(d: Daemon, bridge: str, names: list[str]) -> dict[str, Path]:
    """Dummy ports 1..n on ``bridge`` recording to RUNDIR/NAME.pcap."""
    pcaps = {}
    for n, name in enumerate(names, 1):
        pcaps[name] = d.rundir / f"{name}.pcap"
        d.ofctl("add-port", bridge, name, "type=dummy", f"ofport_request={n}",
                f"options:tx_pcap={pcaps[name]}")
    return pcaps


# -- frames ---------------------------------------------------------------------------

def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src: str = "02:00:00:00:00:01", dst: str = "ff:ff:ff:ff:ff:ff",
              nw_src: str = "10.0.0.1", nw_dst: str = "10.0.0.2", sport: int = 1234,
              dport: int = 80, payload: bytes = b"ovsd-e2e", vlan: int | None = None,
              ttl: int = 64) -> str:
    """An Ethernet/IPv4/UDP frame (valid IP checksum, UDP checksum 0) as hex."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, ttl, 17, 0,
                     bytes(map(int, nw_src.split("."))), bytes(map(int, nw_dst.split("."))))
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return (mac(dst) + mac(src) + tag + b"\x08\x00" + ip + udp).hex()


def frames(path: Path) -> list[bytes]:
    """The frames in a pcap file (none if the file does not exist yet)."""
    return list(read_pcap(str(path))) if Path(path).exists() else []


# -- dump-flows -----------------------------------------------------------------------

# One line of ovs-ofctl dump-flows: the stats part, then the match, then actions.
# (A duration of whole seconds prints without decimals, as in OVS: "2s".)
FLOW_LINE = re.compile(
    r"^ cookie=(?P<cookie>0x[0-9a-f]+), duration=(?P<duration>\d+(?:\.\d{3})?)s, "
    r"table=(?P<table>\d+), n_packets=(?P<n_packets>\d+), n_bytes=(?P<n_bytes>\d+), "
    r"(?:idle_timeout=(?P<idle_timeout>\d+), )?(?:hard_timeout=(?P<hard_timeout>\d+), )?"
    r"(?P<flags>(?:(?:reset_counts|send_flow_rem|check_overlap|no_packet_counts|"
    r"no_byte_counts) )*)"
    r"(?:idle_age=(?P<idle_age>\d+), (?:hard_age=(?P<hard_age>\d+), )?)?"
    r"(?:(?P<match>\S+) )?actions=(?P<actions>\S+)$")


def parse_flows(text: str) -> list[dict]:
    """dump-flows output as dicts; fails the test on a line of another shape."""
    out = []
    for line in text.splitlines():
        m = FLOW_LINE.match(line)
        assert m, f"not a dump-flows line: {line!r}"
        d = m.groupdict()
        d["priority"] = 32768
        match = d["match"] or ""
        if match.startswith("priority="):
            prio, _, match = match.partition(",")
            d["priority"] = int(prio.split("=")[1])
        d["match"] = match
        for k in ("table", "n_packets", "n_bytes"):
            d[k] = int(d[k])
        d["cookie"] = int(d["cookie"], 16)
        out.append(d)
    return out


def stable_flows(text: str) -> str:
    """dump-flows output without what changes by itself (durations, ages)."""
    text = re.sub(r"duration=\d+(?:\.\d+)?s", "duration=Xs", text)
    return re.sub(r"(idle_age|hard_age)=\d+", r"\1=X", text)
