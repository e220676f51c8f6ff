"""The metrics endpoint in-process: a real Switch (in-memory database, dummy
ports, no PMD, no kernel device) behind a real MetricsServer on a loopback
port.  The address syntax, what the exposition holds, and the HTTP side
against bad clients: silent, oversized, too many at once, wrong method."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ovsd.metrics import MetricsServer, address_arg, parse_address
from ovsd.rpc import methods
from ovsd.switch import VERSION, Switch
from tests.support.switch import dummy_switch

FRAME = ("ffffffffffff02000000000108004500001c00014000401126ce0a0000010a000002"
         "04d2005000080000")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- the address ---------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("9100", ("127.0.0.1", 9100)),
    (":9100", ("127.0.0.1", 9100)),
    ("0", ("127.0.0.1", 0)),
    ("localhost:9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("10.1.2.3:80", ("10.1.2.3", 80)),
    ("[::1]:9100", ("::1", 9100)),
    ("[::]:1", ("::", 1)),
])
def test_address_forms(text, want):
    assert parse_address(text) == want


@pytest.mark.parametrize("text, says", [
    ("", "port must be a number"),
    ("abc", "port must be a number"),
    ("65536", "port must be a number"),
    ("127.0.0.1:", "port must be a number"),
    ("127.0.0.1:-1", "port must be a number"),
    ("host.example:9100", "not an IP address"),
    ("300.1.1.1:9100", "not an IP address"),
    ("::1:9100", "in brackets"),
    ("[127.0.0.1]:9100", "brackets are for IPv6"),
])
def test_bad_addresses_say_why(text, says):
    with pytest.raises(ValueError, match=says):
        parse_address(text)
    with pytest.raises(Exception, match=says):
        address_arg(text)


# -- a switch to serve ---------------------------------------------------------------

def make_switch(tmp_path) -> Switch:
    return dummy_switch(tmp_path, "mbr")


async def http(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def scrape(port: int) -> dict:
    status, headers, body = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) == len(body)
    return samples(body.decode())


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value}"""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def port_labels(name: str, bridge: str = "mbr", type_: str = "dummy") -> frozenset:
    return frozenset({"bridge": bridge, "port": name, "type": type_}.items())


class Serving:
    def __init__(self, tmp_path, **kwargs):
        self.tmp_path = tmp_path
        self.kwargs = kwargs

    async def __aenter__(self) -> MetricsServer:
        self.switch = make_switch(self.tmp_path)
        self.server = MetricsServer(self.switch, "127.0.0.1", 0, **self.kwargs)
        await self.server.start()
        return self.server

    async def __aexit__(self, *exc) -> None:
        await self.server.close()
        await self.switch.close()


# -- what it serves --------------------------------------------------------------------

def test_ports_daemon_and_main_thread(tmp_path):
    async def main():
        async with Serving(tmp_path) as server:
            sw = server.switch
            for _ in range(3):
                methods.inject(sw, "mbr", "p1", FRAME)
            m = await scrape(server.address[1])
            p1, p2 = port_labels("p1"), port_labels("p2")
            assert m[("ovsd_port_rx_packets_total", p1)] == 3
            assert m[("ovsd_port_rx_bytes_total", p1)] == 3 * len(FRAME) // 2
            assert m[("ovsd_port_tx_packets_total", p2)] == 3
            assert m[("ovsd_port_tx_bytes_total", p2)] == 3 * len(FRAME) // 2
            shown = {p["name"]: p["statistics"] for p in methods.show(sw, "mbr")["ports"]}
            for name, labels in (("p1", p1), ("p2", p2)):
                for key, value in shown[name].items():
                    assert m[(f"ovsd_port_{key}_total", labels)] == value, (name, key)
            assert m[("ovsd_port_admin_state", p1)] == 1
            assert m[("ovsd_port_link_state", p1)] == 1
            assert m[("ovsd_port_info", p1 | {("ofport", "1")})] == 1
            assert m[("ovsd_info", frozenset({("version", VERSION)}))] == 1
            assert m[("ovsd_bridges", frozenset())] == 1
            assert m[("ovsd_bridge_ports", frozenset({("bridge", "mbr")}))] == 2
            assert m[("ovsd_bridge_flows", frozenset({("bridge", "mbr")}))] == 2
            main_thread = frozenset({("pmd", "main"), ("core", "")})
            assert m[("ovsd_pmd_packets_total", main_thread)] == 3
            # The first frame misses every cache; the megaflow it installs
            # serves the other two (EMC insertion is probabilistic).
            assert m[("ovsd_pmd_upcalls_total", main_thread)] == 1
            hits = (m[("ovsd_pmd_emc_hits_total", main_thread)]
                    + m[("ovsd_pmd_megaflow_hits_total", main_thread)]
                    + m[("ovsd_pmd_simple_match_hits_total", main_thread)])
            assert hits == 2
            assert m[("ovsd_pmd_megaflows", main_thread)] == 1
            assert ("ovsd_process_resident_memory_bytes", frozenset()) in m
    run(main())


def test_port_whose_device_failed_is_down_without_counters(tmp_path):
    async def main():
        async with Serving(tmp_path) as server:
            iface = server.switch.ifaces["p2"]
            server.switch._close_iface(iface, "gone for the test")
            m = await scrape(server.address[1])
            p2 = port_labels("p2")
            assert m[("ovsd_port_admin_state", p2)] == 0
            assert m[("ovsd_port_link_state", p2)] == 0
            assert ("ovsd_port_rx_packets_total", p2) not in m
            assert ("ovsd_port_rx_packets_total", port_labels("p1")) in m
    run(main())


def test_openmetrics_and_gzip_and_head(tmp_path):
    async def main():
        async with Serving(tmp_path) as server:
            port = server.address[1]
            status, headers, body = await http(
                port, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; "
                      b"version=1.0.0\r\nAccept-Encoding: gzip\r\n\r\n")
            assert status == 200
            assert headers["content-type"].startswith("application/openmetrics-text")
            assert headers["content-encoding"] == "gzip"
            text = gzip.decompress(body).decode()
            assert text.endswith("# EOF\n")
            assert "ovsd_port_rx_packets_total{" in text
            status, headers, body = await http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
            assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    run(main())


def test_pmd_counter_round_trips_are_shared_and_cached(tmp_path):
    async def main():
        async with Serving(tmp_path, stats_max_age=0.5) as server:
            calls = []

            async def slow_collect():
                calls.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0.2)

            server.switch.pmds.collect_stats = slow_collect
            port = server.address[1]
            await asyncio.gather(*(scrape(port) for _ in range(10)))
            assert len(calls) == 1, "concurrent scrapes must share one round trip"
            await scrape(port)
            assert len(calls) == 1, "a round trip younger than max age is reused"
            await asyncio.sleep(0.6)
            await scrape(port)
            assert len(calls) == 2
    run(main())


def test_hung_pmds_do_not_hang_scrapes(tmp_path):
    async def main():
        async with Serving(tmp_path, stats_wait=0.3) as server:
            async def never():
                await asyncio.sleep(3600)

            server.switch.pmds.collect_stats = never
            t0 = asyncio.get_running_loop().time()
            m = await scrape(server.address[1])
            assert asyncio.get_running_loop().time() - t0 < 5
            assert ("ovsd_port_rx_packets_total", port_labels("p1")) in m
    run(main())


# -- bad clients ------------------------------------------------------------------------

def test_silent_client_does_not_block_others_and_is_timed_out(tmp_path):
    async def main():
        async with Serving(tmp_path, head_timeout=1.0) as server:
            port = server.address[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /metr")  # and nothing more
            await w.drain()
            t0 = asyncio.get_running_loop().time()
            await scrape(port)
            assert asyncio.get_running_loop().time() - t0 < 0.9
            data = await asyncio.wait_for(r.read(), 5)
            assert data.startswith(b"HTTP/1.1 408 ")
            w.close()
    run(main())


def test_oversized_head_is_refused(tmp_path):
    async def main():
        async with Serving(tmp_path, max_head=1024) as server:
            port = server.address[1]
            status, _, _ = await http(
                port, b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 5000 + b"\r\n\r\n")
            assert status == 431
            many = b"".join(b"X-%d: 12345678901234567890\r\n" % i for i in range(100))
            status, _, _ = await http(port, b"GET /metrics HTTP/1.1\r\n" + many + b"\r\n")
            assert status == 431
            await scrape(port)
    run(main())


def test_connections_beyond_the_cap_get_503_then_service_resumes(tmp_path):
    async def main():
        async with Serving(tmp_path, max_clients=3, head_timeout=30) as server:
            port = server.address[1]
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await asyncio.sleep(0.1)
            assert len(server._clients) == 3
            status, headers, _ = await http(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            assert status == 503 and headers["retry-after"] == "1"
            for _, w in idle:
                w.close()
            for _ in range(50):
                if not server._clients:
                    break
                await asyncio.sleep(0.05)
            await scrape(port)
    run(main())


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\n\r\n", 404),
    (b"GET /metricsx HTTP/1.1\r\n\r\n", 404),
    (b"hello\r\n\r\n", 400),
    (b"GET /metrics SPDY/3\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\n", 400),  # closed before the blank line
])
def test_bad_requests(tmp_path, request_bytes, status):
    async def main():
        async with Serving(tmp_path) as server:
            port = server.address[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_bytes)
            if not request_bytes.endswith(b"\r\n\r\n"):
                writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert data.split()[1] == str(status).encode(), data
            await scrape(port)  # and the server goes on
    run(main())


def test_query_string_is_ignored(tmp_path):
    async def main():
        async with Serving(tmp_path) as server:
            status, _, body = await http(server.address[1],
                                         b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n")
            assert status == 200 and b"ovsd_info" in body
    run(main())


def test_bind_failure_is_an_oserror(tmp_path):
    async def main():
        async with Serving(tmp_path) as server:
            other = MetricsServer(server.switch, "127.0.0.1", server.address[1])
            with pytest.raises(OSError):
                await other.start()
            await other.close()
    run(main())
