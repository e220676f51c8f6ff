"""Prometheus metrics: ``ovsd --metrics [ADDR:]PORT`` serves ``GET /metrics``.

The HTTP server runs on the daemon's asyncio loop, and the metric families
are built from the switch in that loop, inside the request handler: nothing
here reads switch state from another thread.  The protocol side is a minimal
HTTP/1.x server (one request per connection, then close), bounded against
clients that are slow or hostile: a deadline for the request head, a size
limit on it, a deadline for sending the reply, and a cap on connections open
at once (the next ones get 503 without being read).

Counters that PMDs keep (theirs, and the port counters of vhost-user and
afxdp ports) reach the control process by a round trip to every PMD
(``PmdManager.collect_stats``).  Scrapes share one such round trip at a time
and reuse its result for ``STATS_MAX_AGE`` seconds, so many scrapers (or
one that retries fast) cannot pile barriers onto the PMDs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import (CollectorRegistry, CounterMetricFamily,
                                    GaugeMetricFamily, InfoMetricFamily, Metric)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector

from ovsd.dpif import perf

if TYPE_CHECKING:
    from ovsd.switch import Switch

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
PATH = "/metrics"
STATS_MAX_AGE = 1.0         # seconds a PMD counter round trip is reused
STATS_WAIT = 5.0            # a scrape serves older counters rather than wait longer
HEAD_TIMEOUT = 5.0          # seconds for the whole request head to arrive
WRITE_TIMEOUT = 10.0        # seconds for the reply to leave
MAX_HEAD = 8192             # bytes of request line + headers
MAX_CLIENTS = 16            # connections open at once
REFUSE_LINGER = 1.0         # seconds a refused connection stays half-open

VHOST_STATES = ("waiting", "connected", "ready")
PORT_STATS = ("rx_packets", "rx_bytes", "rx_dropped", "rx_errors",
              "tx_packets", "tx_bytes", "tx_dropped", "tx_errors")
# perf counter -> (metric name, help); hit rates are the scraper's to derive.
PMD_COUNTERS = (
    ("packets", "ovsd_pmd_packets", "Packets received by the PMD's datapath"),
    ("simple_hits", "ovsd_pmd_simple_match_hits",
     "Packets forwarded by the simple-match cache"),
    ("emc_hits", "ovsd_pmd_emc_hits", "Packets forwarded by the exact-match cache"),
    ("megaflow_hits", "ovsd_pmd_megaflow_hits", "Packets forwarded by the megaflow cache"),
    ("subtable_probes", "ovsd_pmd_megaflow_subtable_lookups",
     "Megaflow subtables searched (divide by megaflow hits for lookups per hit)"),
    ("upcalls", "ovsd_pmd_upcalls",
     "Cache misses sent up to the OpenFlow tables (failed ones included)"),
    ("lost", "ovsd_pmd_lost", "Cache misses whose upcall failed (packets dropped)"),
    ("batches", "ovsd_pmd_rx_batches", "Non-empty receive bursts"),
)


# -- the address ------------------------------------------------------------------------

def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``ADDR:PORT`` or ``[IPV6]:PORT`` -> (host, port).
    Without an address: loopback.  Port 0 asks the kernel for a free one (the
    log says which).  ADDR must be an IP address (or ``localhost``): nothing
    here waits for a name server."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses")
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9100")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535 "
                         "(expected PORT, :PORT or ADDR:PORT, e.g. 127.0.0.1:9100)")
    if host in ("", "localhost"):
        host = DEFAULT_HOST
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address (expected PORT, "
                         ":PORT or ADDR:PORT, e.g. 127.0.0.1:9100)") from None
    return host, int(port_text)


def address_arg(text: str) -> tuple[str, int]:
    """``parse_address`` for argparse (whose own message would hide why)."""
    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the metrics ------------------------------------------------------------------------

class SwitchCollector:
    """Builds every metric family from the switch; call only in the loop thread."""

    def __init__(self, switch: "Switch"):
        self.switch = switch

    def collect(self) -> Iterator[Metric]:
        yield from self._daemon()
        yield from self._ports()
        yield from self._drops()
        yield from self._pmds()

    def _drops(self) -> Iterator[Metric]:
        """Packets dropped per port and reason, as `ofctl drop-stats` counts them."""
        from ovsd.rpc.drop_stats import drop_counts
        fam = CounterMetricFamily("ovsd_port_drops", "Packets dropped, by port and reason "
                                  "(see `ofctl drop-stats --all` for what each means)",
                                  labels=["bridge", "port", "reason"])
        counts = drop_counts(self.switch)
        for name, iface in sorted(self.switch.ifaces.items()):
            for reason, n in sorted(counts.get(name, {}).items()):
                fam.add_metric([iface.bridge, name, reason], n)
        yield fam

    def _daemon(self) -> Iterator[Metric]:
        from ovsd.switch import VERSION
        sw = self.switch
        yield InfoMetricFamily("ovsd", "ovsd version", value={"version": VERSION})
        yield GaugeMetricFamily("ovsd_start_time_seconds",
                                "When the daemon started (Unix time)", value=sw.started)
        bridges = sw.backer.bridges
        yield GaugeMetricFamily("ovsd_bridges", "Bridges", value=len(bridges))
        ports = GaugeMetricFamily("ovsd_bridge_ports",
                                  "Ports of the bridge (its own LOCAL port included)",
                                  labels=["bridge"])
        flows = GaugeMetricFamily("ovsd_bridge_flows", "OpenFlow rules of the bridge",
                                  labels=["bridge"])
        n_ports: dict[str, int] = {}
        for iface in sw.ifaces.values():
            n_ports[iface.bridge] = n_ports.get(iface.bridge, 0) + 1
        for name in sorted(bridges):
            ports.add_metric([name], n_ports.get(name, 0))
            flows.add_metric([name], bridges[name].n_rules())
        yield ports
        yield flows

    def _ports(self) -> Iterator[Metric]:
        labels = ["bridge", "port", "type"]
        counters = {k: CounterMetricFamily(f"ovsd_port_{k}",
                                           f"{k.replace('_', ' ').capitalize()} "
                                           "(the port's netdev counters, as `ofctl show`)",
                                           labels=labels)
                    for k in PORT_STATS}
        admin = GaugeMetricFamily("ovsd_port_admin_state",
                                  "1 when the port's device is open, else 0", labels=labels)
        link = GaugeMetricFamily("ovsd_port_link_state", "1 when the port's link is up",
                                 labels=labels)
        info = InfoMetricFamily("ovsd_port", "The port's OpenFlow number",
                                labels=labels + ["ofport"])
        rxqs = GaugeMetricFamily("ovsd_port_rxqs", "Receive queues of the port",
                                 labels=labels)
        vhost_state = GaugeMetricFamily(
            "ovsd_vhost_state", "vhost-user port state: 1 for the current one of "
            "waiting (no frontend), connected (handshake not finished), ready",
            labels=labels + ["state"])
        vhost_info = InfoMetricFamily("ovsd_vhost", "vhost-user socket and mode",
                                      labels=labels + ["mode", "socket"])
        vhost_queue = GaugeMetricFamily(
            "ovsd_vhost_queue_ready", "1 when the ring is ready; direction is ovsd's "
            "(rx: the guest transmits)", labels=labels + ["queue", "ring", "direction"])
        vhost_retries = CounterMetricFamily(
            "ovsd_vhost_tx_retries", "Transmit bursts offered again after the guest's "
            "ring took only part (options:tx-retries-max; OVS's ovs_tx_retries)",
            labels=labels)
        afxdp = InfoMetricFamily("ovsd_afxdp", "afxdp port: the XDP mode in use",
                                 labels=labels + ["xdp_mode", "xdp_mode_requested",
                                                  "use_need_wakeup"])
        sw = self.switch
        for iface in sorted(sw.ifaces.values(), key=lambda i: (i.bridge, i.name)):
            lv = [iface.bridge, iface.name, iface.type]
            dev = iface.netdev
            admin.add_metric(lv, 1 if dev is not None else 0)
            link.add_metric(lv, 1 if dev is not None and dev.link_up else 0)
            info.add_metric(lv + [str(iface.ofport)], {})
            if dev is None:
                continue
            stats = dev.stats.as_dict()
            for k, fam in counters.items():
                fam.add_metric(lv, stats[k])
            rxqs.add_metric(lv, dev.n_rxq)
            if hasattr(dev, "details"):
                d = dev.details()
                for state in VHOST_STATES:
                    vhost_state.add_metric(lv + [state], 1 if d["state"] == state else 0)
                vhost_info.add_metric(lv + [d["mode"], str(d["socket"])], {})
                vhost_retries.add_metric(lv, stats["ovs_tx_retries"])
                for q in d["queues"]:
                    vhost_queue.add_metric(
                        lv + [str(q["queue_pair"]), str(q["ring"]),
                              "rx" if q["ring"] % 2 else "tx"],
                        1 if q["state"] == "ready" else 0)
            if dev.type == "afxdp":
                st = dev.status()
                afxdp.add_metric(lv + [st.get("xdp-mode", ""),
                                       st.get("xdp-mode-requested", ""),
                                       st.get("use-need-wakeup", "")], {})
        yield from counters.values()
        yield from (admin, link, info, rxqs, vhost_state, vhost_info, vhost_queue,
                    vhost_retries, afxdp)

    def _pmds(self) -> Iterator[Metric]:
        # Raw counters, not pmd-stats-show's (which subtract the pmd-stats-clear
        # snapshot): the main thread's then never go back, and a PMD's go back
        # only when it restarts or pmd-stats-clear zeroes it, which Prometheus
        # handles as a counter reset.
        labels = ["pmd", "core"]
        fams = {key: CounterMetricFamily(name, text, labels=labels)
                for key, name, text in PMD_COUNTERS}
        busy = CounterMetricFamily("ovsd_pmd_busy_seconds",
                                   "Time spent on polls that received packets",
                                   labels=labels)
        idle = CounterMetricFamily("ovsd_pmd_idle_seconds",
                                   "Time spent on polls that received nothing",
                                   labels=labels)
        megaflows = GaugeMetricFamily("ovsd_pmd_megaflows",
                                      "Megaflows cached in the datapath", labels=labels)
        alive = GaugeMetricFamily("ovsd_pmd_alive", "1 while the PMD process runs",
                                  labels=labels)
        restarts = CounterMetricFamily("ovsd_pmd_restarts",
                                       "Times the PMD died and was restarted",
                                       labels=labels)
        rxq_busy = CounterMetricFamily(
            "ovsd_pmd_rxq_busy_seconds", "Time the PMD spent on the rx queue's packets",
            labels=labels + ["port", "queue"])
        sw = self.switch
        for pmd in sorted(sw.pmds.pmds.values(), key=lambda p: p.pmd_id):
            lv = [str(pmd.pmd_id), str(pmd.core)]
            c = {**perf.new_counters(), **pmd.counters}
            for key, fam in fams.items():
                fam.add_metric(lv, c[key])
            busy.add_metric(lv, c["busy_ns"] / 1e9)
            idle.add_metric(lv, c["idle_ns"] / 1e9)
            megaflows.add_metric(lv, pmd.n_flows)
            alive.add_metric(lv, 1 if pmd.alive else 0)
            restarts.add_metric(lv, pmd.restarts)
            for (_, qid), (port, busy_ns) in sorted(pmd.rxq_load.items()):
                rxq_busy.add_metric(lv + [port, str(qid)], busy_ns / 1e9)
        # The control process's datapath (dummy and internal ports): "main
        # thread" in pmd-stats-show; it has no busy or idle time.
        lv = ["main", ""]
        c = sw.main_counters()
        for key, fam in fams.items():
            fam.add_metric(lv, c[key])
        megaflows.add_metric(lv, sw.backer.dp.megaflows.n_flows)
        yield from fams.values()
        yield from (busy, idle, megaflows, alive, restarts, rxq_busy)


# -- HTTP -----------------------------------------------------------------------------

class _Reject(Exception):
    def __init__(self, status: str, text: str, headers: tuple = ()):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, headers


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: tuple = (), head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head_only else body)


class MetricsServer:
    def __init__(self, switch: "Switch", host: str, port: int, *,
                 max_clients: int = MAX_CLIENTS, head_timeout: float = HEAD_TIMEOUT,
                 write_timeout: float = WRITE_TIMEOUT, max_head: int = MAX_HEAD,
                 stats_max_age: float = STATS_MAX_AGE, stats_wait: float = STATS_WAIT):
        self.switch = switch
        self.host, self.port = host, port
        self.max_clients = max_clients
        self.head_timeout = head_timeout
        self.write_timeout = write_timeout
        self.max_head = max_head
        self.stats_max_age = stats_max_age
        self.stats_wait = stats_wait
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SwitchCollector(switch))
        ProcessCollector(namespace="ovsd", registry=self.registry)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()
        self._collect: asyncio.Task | None = None
        self._collected_at = float("-inf")
        self._lingering = 0
        self.scrapes = 0

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when 0 was asked for)."""
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[:2]
        return self.host, self.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  limit=self.max_head, reuse_address=True)
        host, port = self.address
        log.info("metrics on http://%s%s", format_address(host, port), PATH)
        if not ipaddress.ip_address(host).is_loopback:
            log.warning("metrics on %s are reachable from other hosts, without "
                        "authentication", format_address(host, port))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._collect is not None and not self._collect.done():
            self._collect.cancel()
            with contextlib.suppress(BaseException):
                await self._collect
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    # -- connections --------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._clients) >= self.max_clients:
            self._refuse(writer)
            return
        self._clients.add(task)
        try:
            reply = await self._handle(reader)
            writer.write(reply)
            await asyncio.wait_for(writer.drain(), self.write_timeout)
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), self.write_timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.CancelledError):
            # Cancelled only by close(): ending quietly spares asyncio's
            # "exception never retrieved" noise for each open connection.
            writer.transport.abort()
        finally:
            self._clients.discard(task)

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """503 without reading the request, and no task: a flood costs a small
        write and a timer per connection.  The socket stays half-open for a
        moment, since closing it with the request unread would make the kernel
        reset the connection, and the client might lose the 503 with it."""
        transport = writer.transport
        transport.write(_response("503 Service Unavailable",
                                  b"too many connections; try again\n",
                                  headers=("Retry-After: 1",)))
        if self._lingering >= 4 * self.max_clients or transport.get_write_buffer_size():
            transport.abort()
            return
        self._lingering += 1
        with contextlib.suppress(OSError, RuntimeError):
            transport.write_eof()

        def done() -> None:
            self._lingering -= 1
            transport.abort()
        asyncio.get_running_loop().call_later(REFUSE_LINGER, done)

    async def _handle(self, reader: asyncio.StreamReader) -> bytes:
        try:
            method, target, headers = await asyncio.wait_for(self._read_head(reader),
                                                             self.head_timeout)
        except asyncio.TimeoutError:
            return _response("408 Request Timeout",
                             f"no complete request within {self.head_timeout} s\n".encode())
        except _Reject as r:
            return _response(r.status, (r.text + "\n").encode(), headers=r.headers)
        path = target.split("?", 1)[0]
        head_only = method == "HEAD"
        if path != PATH:
            return _response("404 Not Found", f"ovsd serves metrics at {PATH}\n".encode(),
                             head_only=head_only)
        try:
            await self._fresh_stats()
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            body = encoder(self.registry)
        except Exception:
            log.exception("metrics: building the reply failed")
            return _response("500 Internal Server Error", b"see the ovsd log\n")
        self.scrapes += 1
        extra: tuple = ()
        if "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            extra = ("Content-Encoding: gzip",)
        return _response("200 OK", body, content_type, extra, head_only)

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str, dict]:
        """Request line and headers, at most ``max_head`` bytes in all."""
        lines: list[bytes] = []
        size = 0
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Reject("431 Request Header Fields Too Large",
                              f"request head over {self.max_head} bytes") from None
            except asyncio.IncompleteReadError:
                raise _Reject("400 Bad Request", "incomplete request") from None
            size += len(line)
            if size > self.max_head:
                raise _Reject("431 Request Header Fields Too Large",
                              f"request head over {self.max_head} bytes")
            line = line.rstrip(b"\r\n")
            if not line:
                if lines:
                    break
                continue  # blank lines before the request line are allowed (RFC 9112)
            lines.append(line)
        parts = lines[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Reject("400 Bad Request", "expected: GET /metrics HTTP/1.1")
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            raise _Reject("405 Method Not Allowed", "only GET and HEAD",
                          ("Allow: GET, HEAD",))
        headers = {}
        for raw in lines[1:]:
            name, sep, value = raw.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return method, target, headers

    # -- PMD counters ---------------------------------------------------------------

    async def _fresh_stats(self) -> None:
        """PMD counters no older than ``stats_max_age``, from at most one round
        trip at a time; past ``stats_wait`` the scrape goes on with older ones."""
        if self._collect is None or (self._collect.done() and
                                     time.monotonic() - self._collected_at
                                     > self.stats_max_age):
            self._collect = asyncio.get_running_loop().create_task(self._collect_stats())
        if not self._collect.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._collect), self.stats_wait)
            except asyncio.TimeoutError:
                log.warning("metrics: PMDs did not report within %s s; serving older "
                            "counters", self.stats_wait)

    async def _collect_stats(self) -> None:
        try:
            await self.switch.pmds.collect_stats()
        except Exception:
            log.exception("metrics: collecting PMD counters failed")
        self._collected_at = time.monotonic()


async def start_metrics(switch: "Switch", host: str, port: int) -> MetricsServer:
    server = MetricsServer(switch, host, port)
    await server.start()
    return server
